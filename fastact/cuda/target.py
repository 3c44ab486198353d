"""CUDA backend: the catalog's formulas as ``@cuda.jit`` kernels, built lazily.

Nothing here imports ``numba.cuda`` until a GPU array reaches fastact (or a
tool asks for PTX): ``import fastact`` and every CPU call work without
numba-cuda installed.

One formula, two targets: a kernel calls the same scalar formula the CPU
ufunc calls (``entry.forward`` / ``forward32`` / ``grad`` / ...). Per target
only the math primitives differ: on CUDA the float64 ``exp``, ``expm1``,
``log1p`` and ``tanh`` of ``_mathlib`` are libdevice's (<= 1 ulp, as accurate
as the CPU layer and cheaper on a GPU); erf/erfc keep the vmath layer
(libdevice's are 2 and 5 ulp, ours 0.7 and 0.8); float32 keeps the vmath32
layer (libdevice's expf/tanhf/erff are 2 ulp, erfcf 4; ours <= 1).

Kernels are compiled with FMA contraction off (NVVM's default is on): the
error-free transforms of the formulas (two-sums, Dekker products, the
double-float steps of float32 sigmoid/silu) require ``a*b + c`` to round
twice. Explicit fused multiply-adds (``_vmath_coeffs.fma``, libdevice) stay.

Kernels are grid-stride loops with 64-bit indices (arrays over 2**31
elements), one thread per element per step. Contiguous operands (all C- or
all F-ordered, same shape) run the 1-D kernel; anything else (strides,
broadcasting) the N-d kernel, which unravels the flat index.

In the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same kernels run as
Python, with the plain-Python formulas and primitives.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading

import numpy as np

from fastact.scalar import registry as _jit

_lock = threading.RLock()
_cuda = None
_local = threading.local()  # .exact: compiling a fastact kernel (FMA contraction off)
_kernels = {}

#: threads per block of the elementwise kernels (full warps; 256 leaves
#: the register file room for 8 blocks per SM at <= 32 registers)
THREADS = 256
#: grid-stride loops: at most this many blocks per SM
BLOCKS_PER_SM = 32


def simulated():
    """True when Numba's CUDA simulator is on (set before numba.cuda is imported)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def cuda():
    """``numba.cuda``, imported and set up for fastact's kernels on first use."""
    global _cuda
    if _cuda is None:
        with _lock:
            if _cuda is None:
                from numba import cuda as c

                if simulated():
                    _sim_fix_shared()
                else:
                    _setup_target()
                _cuda = c
    return _cuda


# ------------------------------------------------------------- the simulator


def _sim_fix_shared():
    """The simulator's ``cuda.shared.array`` looks its allocation up and
    creates it without a lock: two threads of a block that reach the line
    together can each get an array of their own (the last one stays shared),
    so a value one writes is never seen by the others (observed: a warp's
    partial sum lost, about one block launch in a few hundred). Make the
    look-up atomic (idempotent; the simulator only)."""
    import traceback

    from numba.cuda import types
    from numba.cuda.np import numpy_support
    from numba.cuda.simulator import kernelapi

    cls = kernelapi.FakeCUDAShared
    if getattr(cls.array, "_fastact_locked", False):
        return
    original = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        # keyed by the caller's file and line, as the simulator's own
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
            return res

    array._fastact_locked = True
    cls.array = array


# ------------------------------------------------------------- the target

_done_target = False


def _primitive_overloads():
    """The primitives CUDA replaces: stub -> libdevice function (float64 only)."""
    from fastact.scalar import mathlib as M

    return {M.exp: math.exp, M.expm1: math.expm1, M.log1p: math.log1p, M.tanh: math.tanh}


def _setup_target():
    """Register the formulas for the CUDA target and turn FMA contraction off
    for fastact's compilations (idempotent; no GPU needed)."""
    global _done_target
    if _done_target:
        return
    from numba.cuda.cudadrv import nvvm
    from numba.extending import overload

    prims = _primitive_overloads()
    _jit.register_for_target("cuda", replaced=set(prims))
    for stub, fn in prims.items():
        overload(stub, target="cuda")(_libdevice(fn))

    original = nvvm.compile_ir
    if not getattr(original, "_fastact", False):

        def compile_ir(llvmir, **options):
            if getattr(_local, "exact", False):
                options.setdefault("fma", False)
            return original(llvmir, **options)

        compile_ir._fastact = True
        nvvm.compile_ir = compile_ir
    _done_target = True


def _libdevice(fn):
    def ov(x):
        return lambda x: fn(x)

    return ov


@contextlib.contextmanager
def exact_fp():
    """Compile fastact kernels inside this block with FMA contraction off."""
    prev = getattr(_local, "exact", False)
    _local.exact = True
    try:
        yield
    finally:
        _local.exact = prev


#: (max threads per block, min blocks per SM) for the kernels listed in
#: ``_cuda_occupancy.FULL_OCCUPANCY``: 65536 registers / (256 x 8) = 32 each
LAUNCH_BOUNDS = (THREADS, 8)


def launch_bounds(name):
    """The ``launch_bounds`` of kernel ``name``: ``LAUNCH_BOUNDS`` where ptxas
    fits it in 32 registers without spilling (the generated list
    ``_cuda_occupancy.FULL_OCCUPANCY``), else None (its natural register count)."""
    from fastact.cuda.occupancy import FULL_OCCUPANCY

    return LAUNCH_BOUNDS if name in FULL_OCCUPANCY else None


def jit(pyfunc):
    """``cuda.jit`` of a kernel function, with its launch bounds (every
    backend module builds its kernels through this)."""
    lb = launch_bounds(pyfunc.__name__)
    if lb is None or simulated():  # the simulator takes no launch bounds
        return cuda().jit(pyfunc)
    return cuda().jit(pyfunc, launch_bounds=lb)


def compile_ptx(pyfunc, sig, cc=(9, 0), bounds="auto"):
    """PTX of a kernel for compute capability ``cc``, compiled as fastact's
    launches compile it (no GPU needed): ``(ptx, resty)``. ``bounds``: the
    launch bounds, by default those its launches use (``launch_bounds``)."""
    c = cuda()
    lb = launch_bounds(pyfunc.__name__) if bounds == "auto" else bounds
    with exact_fp():
        return c.compile_ptx(pyfunc, sig, cc=cc, launch_bounds=lb)


# ------------------------------------------------------------ kernel text
# Kernels of variable arity are generated as source text (as Numba's own
# vectorize does): CUDA kernels take no *args. The statements below are the
# whole kernel body per kind; the formulas are the catalog's, bound by name.

_BODY = {
    # forward: y = f(x, *params) in the compute precision
    "forward": ("o0[{i}] = f(W(i0[{i}]){params})",),
    # backward: dx = grad * f'(x), the product in float64 (as the CPU ufunc)
    "backward": ("o0[{i}] = D(i0[{i}]) * f(W(i1[{i}]){params})",),
    # gated unit: y = f(a) * b (float64, as the CPU gated ufunc)
    "gated": ("o0[{i}] = f(D(i0[{i}])) * D(i1[{i}])",),
    # gated backward: (grad, a, b) -> (grad * b * f'(a), grad * f(a))
    "gated_backward": (
        "g = D(i0[{i}])",
        "a = D(i1[{i}])",
        "o0[{i}] = (g * D(i2[{i}])) * fp(a)",
        "o1[{i}] = g * f(a)",
    ),
}
_ARITY = {"forward": (1, 1), "backward": (2, 1), "gated": (2, 1), "gated_backward": (3, 2)}


def _source(name, kind, nparams, ndim, param_arrays=False):
    """Source of the kernel ``name(i0.., o0.., p0..)``; ``ndim`` 1 is the
    contiguous kernel (flat views), more is the strided N-d kernel.
    ``param_arrays``: the parameters are arrays read like the inputs
    (prelu's per-channel slope), placed after them."""
    nin, nout = _ARITY[kind]
    if param_arrays:
        args = [f"i{k}" for k in range(nin + nparams)] + [f"o{k}" for k in range(nout)]
        params = "".join(f", D(i{nin + k}[{{i}}])" for k in range(nparams))
    else:
        args = [f"i{k}" for k in range(nin)] + [f"o{k}" for k in range(nout)]
        args += [f"p{k}" for k in range(nparams)]
        params = "".join(f", p{k}" for k in range(nparams))
    lines = [
        f"def {name}({', '.join(args)}):",
        "    i = cuda.grid(1)",  # 64-bit (mul.wide): no overflow past 2**31
        "    step = cuda.gridsize(1)",
        "    n = o0.size",
        "    while i < n:",
    ]
    if ndim == 1:
        idx = "i"
    else:
        # flat index -> N-d index over the output's shape (C order)
        lines.append("        r = i")
        for d in range(ndim - 1, 0, -1):
            lines.append(f"        j{d} = r % o0.shape[{d}]")
            lines.append(f"        r = r // o0.shape[{d}]")
        lines.append("        j0 = r")
        idx = "(" + ", ".join(f"j{d}" for d in range(ndim)) + ")"
    for stmt in _BODY[kind]:
        lines.append("        " + stmt.format(i=idx, params=params.format(i=idx)))
    lines.append("        i += step")
    return "\n".join(lines) + "\n"


def _names(kind, dtype):
    """(W, D): the compute-type constructor for ``dtype`` storage, and float64."""
    import numba

    w = numba.float64 if np.dtype(dtype) == np.float64 else numba.float32
    return w, numba.float64


def formula(entry, kind, dtype):
    """(f, is_f32): the catalog's scalar formula a ``dtype`` kernel runs:
    the float32 evaluation for float32/float16 storage where the catalog
    has one (as the CPU float32 loop), else the float64 definition."""
    dtype = np.dtype(dtype)
    f64 = {"forward": entry.forward, "backward": entry.grad, "backward_y": entry.grad_y}[kind]
    f32 = {"forward": entry.forward32, "backward": entry.grad32}.get(kind)
    if f64 is None:
        raise AttributeError(f"fastact.{entry.name} has no {kind} formula")
    if dtype != np.float64 and f32 is not None:
        return f32, True
    return f64, False


def pyfunc(entry, kind, dtype, nparams, ndim=1, param_arrays=False):
    """The Python kernel function for ``entry``'s ``kind`` ("forward",
    "backward", "backward_y", "gated", "gated_backward") with ``dtype``
    storage, ``nparams`` parameters as scalar arguments."""
    import numba

    dtype = np.dtype(dtype)
    if kind in ("gated", "gated_backward"):
        f, fp, is32 = entry.forward, entry.grad, False
    else:
        f, is32 = formula(entry, kind, dtype)
        fp = None
    body_kind = "forward" if kind == "forward" else ("backward" if kind == "backward_y" else kind)
    name = f"{entry.name}_{kind}_{dtype.name}_{ndim}d" + ("_pa" if param_arrays else "")
    src = _source(name, body_kind, nparams, ndim, param_arrays)
    w = numba.float32 if is32 else numba.float64
    ns = {"cuda": cuda(), "f": f, "fp": fp, "W": w, "D": numba.float64}
    exec(compile(src, f"<fastact.cuda {name}>", "exec"), ns)
    fn = ns[name]
    fn.__fastact_source__ = src
    return fn


def signature(kind, dtype, nparams, ndim=1, param_arrays=False):
    """The Numba signature of a kernel of ``pyfunc`` (all arrays ``dtype``;
    parameters float64)."""
    nin, nout = _ARITY["forward" if kind == "forward" else
                      ("backward" if kind == "backward_y" else kind)]
    t = {np.dtype(np.float16): "float16", np.dtype(np.float32): "float32",
         np.dtype(np.float64): "float64"}[np.dtype(dtype)]
    arr = f"{t}[::1]" if ndim == 1 else f"{t}[{', '.join([':'] * ndim)}]"
    if param_arrays:
        return f"void({', '.join([arr] * (nin + nparams + nout))})"
    return f"void({', '.join([arr] * (nin + nout) + ['float64'] * nparams)})"


def kernel(entry, kind, dtype, nparams, ndim, param_arrays=False):
    """The lazily compiled ``@cuda.jit`` kernel (specialized on first launch)."""
    key = (entry.name, kind, np.dtype(dtype), nparams, ndim, param_arrays)
    k = _kernels.get(key)
    if k is None:
        with _lock:
            k = _kernels.get(key)
            if k is None:
                fn = pyfunc(entry, kind, dtype, nparams, ndim, param_arrays)
                k = _kernels[key] = jit(fn)
    return k


def launch(k, n, stream, *args):
    """Launch a grid-stride kernel over ``n`` elements on ``stream``."""
    c = cuda()
    if n == 0:
        return
    if simulated():
        # each simulated thread is a Python thread: few, and more than one
        # block so that the grid-stride step is exercised
        threads, blocks = 16, min(2, -(-n // 16))
    else:
        sms = c.get_current_device().MULTIPROCESSOR_COUNT
        threads = THREADS
        blocks = max(1, min(-(-n // THREADS), sms * BLOCKS_PER_SM))
    with exact_fp():
        k[blocks, threads, stream](*args)


# ------------------------------------------------------------ enumeration


def kernel_specs(dtypes=("float16", "float32", "float64")):
    """Every elementwise kernel fastact can launch, for PTX checks:
    yields (name, pyfunc, signature), the contiguous (1-d) kernels of every
    catalog entry and kind, with the catalog's parameter count, plus the
    strided (2-d) variant of each forward kernel and the gated units."""
    from fastact.catalog import CATALOG, ENTRIES

    for e in ENTRIES:
        kinds = ["forward", "backward"] + (["backward_y"] if e.grad_y is not None else [])
        for kind in kinds:
            for dt in dtypes:
                for ndim in (1, 2) if kind == "forward" else (1,):
                    fn = pyfunc(e, kind, dt, len(e.params), ndim)
                    yield fn.__name__, fn, signature(kind, dt, len(e.params), ndim)
    leaky = CATALOG["leaky_relu"]  # prelu: the slope as a broadcast array
    for kind in ("forward", "backward"):
        for dt in dtypes:
            fn = pyfunc(leaky, kind, dt, 1, 2, param_arrays=True)
            yield fn.__name__, fn, signature(kind, dt, 1, 2, param_arrays=True)
    for name in ("silu", "gelu", "gelu_tanh"):
        for kind in ("gated", "gated_backward"):
            for dt in dtypes:
                fn = pyfunc(CATALOG[name], kind, dt, 0, 1)
                yield fn.__name__, fn, signature(kind, dt, 0, 1)
