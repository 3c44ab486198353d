"""GPU arrays in the public API: detection, operands (``GpuArray``), views,
streams, devices and allocation. The kernels that run on them are in
``elementwise``, ``rows`` and ``layers``.

An argument is a GPU array when it exposes ``__cuda_array_interface__``
(CuPy arrays, PyTorch CUDA tensors, Numba device arrays, any other producer).
Nothing here imports cupy, torch or numba.cuda unless such an argument
arrives: the producer's own module is taken from ``sys.modules`` (it is
loaded, since the caller holds one of its arrays).

Rules, as a CuPy/PyTorch user expects them:
- the result has the input's type: a CuPy array for CuPy input, a tensor on
  the same device for a tensor, a Numba device array otherwise;
- kernels run on the producer's current stream (``cupy.cuda.get_current_stream()``,
  ``torch.cuda.current_stream()``, or the stream named by the interface /
  the Numba array), wrapped with ``cuda.external_stream``: no synchronisation
  is added and the data never visits the host;
- ``out=`` may be any writable GPU array of the result's shape;
- strided and broadcast operands are read in place by the N-d kernels;
- mixing host and GPU arrays raises TypeError;
- everything runs on the device holding the arrays (a CuPy array's
  ``.device``, a tensor's ``.device``), made current for the call
  (``on_device``); arrays on two devices raise ValueError.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

import numpy as np

from fastact.cuda import target
from fastact.functions.args import half_axis, out_rule


def is_gpu(obj):
    """True for an object exposing the CUDA array interface (no import)."""
    if type(obj) is np.ndarray or obj is None or isinstance(obj, (int, float, complex, bool)):
        return False
    try:
        if hasattr(obj, "__cuda_array_interface__"):
            return True
    except Exception:  # a producer whose property raises for host data (torch)
        return False
    # the simulator's device arrays have no interface
    return type(obj).__name__ == "FakeCUDAArray"


def any_gpu(*objs):
    return any(is_gpu(o) for o in objs)


def _library(obj):
    mod = type(obj).__module__.split(".")[0]
    if mod == "cupy":
        return "cupy"
    if mod == "torch":
        return "torch"
    return "numba"


def device_id(obj):
    """The ordinal of the device holding a CuPy array or a CUDA tensor;
    None for other producers (they live on the current device)."""
    lib = _library(obj)
    if lib == "cupy":
        return int(obj.device.id)
    if lib == "torch":
        idx = obj.device.index
        return None if idx is None else int(idx)
    return None


@contextlib.contextmanager
def on_device(where, *objs):
    """Make the device holding the GPU arrays among ``objs`` current (for
    CuPy / torch allocations and current streams, and for Numba's launches)
    for the duration of a call; ValueError if they are on different devices."""
    held = {}
    for o in objs:
        if o is not None and is_gpu(o):
            d = device_id(o)
            if d is not None:
                held.setdefault(d, o)
    if len(held) > 1:
        raise ValueError(f"fastact.{where}: GPU arrays on different devices {sorted(held)}; "
                         "move them to one device")
    with contextlib.ExitStack() as stack:
        for dev, o in held.items():  # at most one
            lib = _library(o)
            if lib == "cupy":
                stack.enter_context(sys.modules["cupy"].cuda.Device(dev))
            elif lib == "torch":
                stack.enter_context(sys.modules["torch"].cuda.device(dev))
            if not target.simulated() and target.cuda().get_current_device().id != dev:
                stack.enter_context(target.cuda().gpus[dev])
        yield


def _interface(obj):
    if type(obj).__name__ == "FakeCUDAArray":  # simulator: a host array inside
        a = obj._ary
        return {
            "shape": a.shape,
            "strides": a.strides,
            "typestr": a.dtype.str,
            "data": (a.ctypes.data, not a.flags.writeable),
            "version": 3,
        }
    return obj.__cuda_array_interface__


class GpuArray:
    """One GPU operand: its interface, dtype and the stream its producer uses."""

    def __init__(self, where, obj, argname):
        self.obj = obj
        self.lib = _library(obj)
        desc = _interface(obj)
        self.shape = tuple(desc["shape"])
        self.dtype = np.dtype(desc["typestr"])
        if "descr" in desc and len(desc["descr"]) > 1:
            raise TypeError(f"fastact.{where}: {argname} has a structured dtype")
        self.itemsize = self.dtype.itemsize
        strides = desc.get("strides")
        if strides is None:  # C-contiguous
            strides = []
            s = self.itemsize
            for d in reversed(self.shape):
                strides.append(s)
                s *= d
            strides = tuple(reversed(strides))
        self.strides = tuple(strides)
        self.ptr, self.readonly = desc["data"]
        self.stream_ptr = desc.get("stream")
        self.size = int(np.prod(self.shape, dtype=np.int64))
        if self.dtype.kind not in "biuf" or self.itemsize > 8:
            raise TypeError(
                f"fastact.{where}: unsupported {argname} of dtype {self.dtype} on the GPU; "
                "supported: float16, float32, float64 (bool and integers computed in float64)"
            )

    derived = False

    def derive(self, shape, strides, offset=0):
        """A view of the same memory (``offset`` in bytes)."""
        d = object.__new__(GpuArray)
        d.__dict__.update(self.__dict__)
        d.shape, d.strides = tuple(shape), tuple(strides)
        d.ptr = self.ptr + offset
        d.size = int(np.prod(d.shape, dtype=np.int64))
        d.derived = True
        return d

    def moved(self, ax):
        """The view with axis ``ax`` last (np.moveaxis)."""
        order = [d for d in range(len(self.shape)) if d != ax] + [ax]
        return self.derive([self.shape[d] for d in order], [self.strides[d] for d in order])

    def rows(self):
        """(rows, n) view of the leading axes collapsed, or None if the
        strides do not allow a view."""
        shape, strides = self.shape[:-1], self.strides[:-1]
        n, sn = self.shape[-1], self.strides[-1]
        rows, rs = 1, 0
        for d, st in zip(reversed(shape), reversed(strides)):
            if d == 1:
                continue
            if rows == 1:
                rows, rs = d, st
            elif st == rs * rows:
                rows *= d
            else:
                return None
        return self.derive((rows, n), (rs if rows > 1 else n * self.itemsize, sn))

    def contiguous(self, order):
        """True if the data is dense in C (or F) order."""
        shape, strides = (self.shape, self.strides) if order == "C" else (
            self.shape[::-1], self.strides[::-1])
        s = self.itemsize
        for d, st in zip(reversed(shape), reversed(strides)):
            if d != 1 and st != s:
                return False
            s *= d
        return True


def broadcast_strides(a, shape):
    """a's strides for a read at ``shape`` (0 where broadcast)."""
    pad = len(shape) - len(a.shape)
    out = [0] * pad
    for d, st, n in zip(a.shape, a.strides, shape[pad:]):
        out.append(st if d == n else 0)
    return tuple(out)


def view(a, shape, strides):
    """A Numba device array over ``a``'s memory (zero copy) with ``shape`` /
    ``strides``; no synchronisation on the producer's stream."""
    cuda = target.cuda()
    if target.simulated():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        if 0 in shape:
            host = np.empty(shape, a.dtype)
        else:
            lo = sum(min(0, st * (n - 1)) for n, st in zip(shape, strides))
            hi = sum(max(0, st * (n - 1)) for n, st in zip(shape, strides)) + a.itemsize
            buf = (ctypes.c_char * (hi - lo)).from_address(a.ptr + lo)
            host = np.ndarray(shape, a.dtype, buffer=buf, offset=-lo, strides=strides)
        return FakeCUDAArray(host)
    desc = {
        "shape": tuple(shape),
        "strides": tuple(strides),
        "typestr": a.dtype.str,
        "data": (a.ptr, False),
        "version": 3,
    }
    return cuda.from_cuda_array_interface(desc, owner=a.obj, sync=False)


def stream_for(arrays):
    """The stream to launch on: the producer's current stream (CuPy, torch),
    a Numba device array's own stream, or the one the interface names."""
    cuda = target.cuda()
    a = arrays[0]
    ptr = None
    if a.lib == "cupy":
        ptr = sys.modules["cupy"].cuda.get_current_stream().ptr
    elif a.lib == "torch":
        torch = sys.modules["torch"]
        ptr = torch.cuda.current_stream(a.obj.device).cuda_stream
    else:
        s = getattr(a.obj, "stream", None)
        if s is not None and not isinstance(s, int):
            return s  # a Numba stream object
        ptr = a.stream_ptr if a.stream_ptr is not None else s
    # the interface's ``stream`` (v3): None names no stream (the data is
    # ready); 1 and 2 are the legacy and per-thread default streams
    if not ptr:
        return cuda.default_stream()
    if ptr == 1:
        return cuda.legacy_default_stream()
    if ptr == 2:
        return cuda.per_thread_default_stream()
    return cuda.external_stream(ptr)


def empty_like_input(a, shape, dtype, stream):
    """A fresh C-contiguous GPU array of ``a``'s library (and device)."""
    if a.lib == "cupy":
        return sys.modules["cupy"].empty(shape, dtype)
    if a.lib == "torch":
        torch = sys.modules["torch"]
        tdt = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
               np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
        return torch.empty(shape, dtype=tdt, device=a.obj.device)
    return target.cuda().device_array(shape, dtype, stream=stream)


def operands(where, inputs):
    """GpuArray per (obj, name) input; TypeError for a host array among GPU ones."""
    gpu = [n for o, n in inputs if isinstance(o, GpuArray) or is_gpu(o)]
    host = [(o, n) for o, n in inputs if not (isinstance(o, GpuArray) or is_gpu(o))]
    if host and not gpu:
        raise TypeError(f"fastact.{where}: out is a GPU array but the inputs are host arrays")
    if host:
        o, n = host[0]
        raise TypeError(
            f"fastact.{where}: {gpu[0]} is a GPU array but {n} is a host "
            f"{type(o).__name__}; pass both on the same device (e.g. cupy.asarray({n}))"
        )
    return [o if isinstance(o, GpuArray) else GpuArray(where, o, n) for o, n in inputs]


def check_out(where, out, shape, compute):
    """A GPU ``out=`` as a GpuArray, checked by the public functions' one
    ``out=`` rule (``fastact.functions.args.out_rule``)."""
    if isinstance(out, GpuArray):
        return out
    if not is_gpu(out):
        raise TypeError(
            f"fastact.{where}: the inputs are GPU arrays but out is a host "
            f"{type(out).__name__}; pass a GPU array of shape {shape}"
        )
    o = GpuArray(where, out, "out")
    out_rule(where, o.shape, o.readonly, o.dtype, shape, compute)
    return o


def device_view(a):
    """The Numba device array of a GpuArray (its own shape and strides)."""
    return view(a, a.shape, a.strides)


def halves(where, x, axis):
    """(x, ax, a, b): a GPU array split in two halves along ``axis`` (views)."""
    g = operands(where, [(x, "x")])[0]
    ax, half = half_axis(where, g.shape, axis)
    shape = list(g.shape)
    shape[ax] = half
    return g, ax, g.derive(shape, g.strides), g.derive(shape, g.strides, half * g.strides[ax])
