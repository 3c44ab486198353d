"""PReLU: leaky ReLU with a learned slope per channel (PyTorch semantics).

``prelu(x, weight, axis=1)`` = x if x > 0 else weight[c] * x, with c the index
along ``axis``; ``weight`` is a 1-D array of that axis' length (or of length
1) or a scalar. It is the catalog's leaky_relu formula with weight[c] as its
slope: no second formula (a weight of 0 gives a zero at x = -inf too, the
limit, not 0 * -inf = NaN). The result dtype is NumPy's for x * weight
(NEP 50): a Python float or int weight does not promote (float32 x gives
float32, as leaky_relu with that slope), a NumPy float64 scalar or array
does. NumPy arrays run one compiled kernel
(``fastact.cpu.layers``) over a ``(outer, channels, inner)`` view, where the
weight is hoisted out of each row's loop so that it vectorizes (the
leaky_relu ufunc with a broadcast weight operand runs NumPy's strided loop);
its results are bitwise the ufunc's. An ``out=`` of x's shape in another
float dtype or layout, or overlapping x, receives a copy of the kernel's
results; any other ``out=`` (a broadcast shape, another kind) goes through
that ufunc, with NumPy's rules and errors.

``prelu.backward(grad, x, weight, axis=1)`` returns ``(dx, dweight)``:
dx = grad if x > 0 else weight * grad (prelu'(0) = weight, as PyTorch), and
dweight[c] = sum of grad * x over x <= 0 in channel c (all other axes), with
the shape of ``weight``, both from one pass of one kernel. The sum is
accumulated in float64 with compensation (Neumaier) whatever the input
dtype, so a reduction over 10^8 float32 elements keeps its digits. Special
values take the IEEE meaning of the exact sum of the products (as a plain
float64 sum, PyTorch's, for infinite terms): dweight[c] is +-inf where the
sum overflows or an infinite term (grad = +-inf or x = -inf) has no
opposite one, and NaN only where +inf meets -inf, 0 * inf occurs or a NaN
is summed (NaN in x, or in grad where x <= 0). Never the NaN of an
intermediate: a channel whose compensated sum is not finite (its error
terms are inf - inf once the running sum is infinite; float64 products may
overflow and cancel) is summed again from its operands
(``fastact.cpu.layers.prelu_dweight_split``), rare and per channel. On the
GPU the same rule (``fastact.cuda.layers.prelu_dweight``).
"""

from __future__ import annotations

import math

import numpy as np

from fastact.cpu import layers as cpu_layers
from fastact.cpu import threads as _threads
from fastact.cpu import ufuncs as _cpu
from fastact.cuda import interop as _gpu
from fastact.cuda import elementwise as gpu_kernels
from fastact.functions.elementwise import ACTIVATIONS
from fastact.functions import args
from fastact.functions.args import quiet_call
from fastact.scalar.eft import two_sum_err

_LEAKY = ACTIVATIONS["leaky_relu"].catalog_entry


def _weight(where, weight, x, ax):
    w = args.as_array(where, weight, "weight")
    args.check_weight_shape(where, w.shape, x.shape, ax)
    shape = [1] * x.ndim
    if w.ndim == 1 and ax is not None:
        shape[ax] = w.shape[0]
    return w, w.reshape(shape)


def _weak(weight):
    """Whether ``weight`` is a Python int or float, "weak" in NumPy 2's
    promotion (NEP 50): x's float dtype decides, as in np.multiply(x, 0.3)
    (float32 stays float32, with 0.3 rounded to float32, as NumPy and
    leaky_relu's negative_slope have it). A NumPy scalar or array is strong:
    np.multiply(x32, np.float64(0.3)) is float64."""
    return isinstance(weight, (int, float)) and not isinstance(weight, np.generic)


def _weight_type(arrays, weight, w):
    """What stands for the weight in ``args.compute_dtypes``: ``w`` itself, or
    for a weak Python scalar the dtype NumPy gives the others with it."""
    return np.result_type(*arrays, weight) if _weak(weight) else w


def _operands(arrays, w, ax, compute):
    """(shape3, arrays, w1): the kernels' C-contiguous ``(outer, C, inner)``
    views of ``arrays`` (copied only where the layout needs it, or the dtype:
    float16 and integers; the kernels widen float32 to a float64 compute
    dtype element by element) and the weight as ``C`` values in ``compute``
    (C = 1 for one weight)."""
    shape = arrays[0].shape
    if w.ndim == 1 and w.shape[0] > 1:
        shape3 = (math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:]))
    else:
        shape3 = (1, 1, arrays[0].size)
    views = [np.ascontiguousarray(a, a.dtype if a.dtype in (args.F32, args.F64) else compute).reshape(shape3)
             for a in arrays]
    return shape3, views, np.ascontiguousarray(w, compute).reshape(-1)


def _out(out, x, compute):
    """(out, direct): ``out`` unwrapped from a 1-tuple (as NumPy accepts) and
    whether the kernel writes it directly (x's shape in the compute dtype,
    C-contiguous, x itself or apart from it: a partial overlap would read
    elements already written); else it takes a copy of the results when it
    is a writable float array of x's shape, and None otherwise."""
    if isinstance(out, tuple) and len(out) == 1:
        out = out[0]
    if not (isinstance(out, np.ndarray) and out.shape == x.shape and out.flags.writeable
            and out.dtype.kind == "f" and np.can_cast(compute, out.dtype, "same_kind")):
        return out, None
    return out, (out.dtype == compute and out.flags.c_contiguous
                 and (out is x or not np.may_share_memory(out, x)))


def _chunks(shape3, call):
    """``call(rows, chans)`` over the 3-D views, on the thread pool when large
    (as leaky_relu, a cheap entry): slices along outer, else the channels,
    else inner, each a C-contiguous view (the ones before it have length 1);
    ``chans`` selects the weights (and dweights) of the slice."""
    n = shape3[0] * shape3[1] * shape3[2]
    k = 0 if shape3[0] > 1 else 1 if shape3[1] > 1 else 2
    every = slice(None)
    if n < _threads.MIN_PARALLEL_ELEMENTS_CHEAP:
        call((every,), every)
        return

    def chunk(i0, i1):
        part = slice(i0, i1)
        call((every,) * k + (part,), part if k == 1 else every)

    _threads.for_chunks(chunk, shape3[k], n)


class PReLU:
    __name__ = __qualname__ = "prelu"
    __module__ = "fastact"
    __doc__ = __doc__ + """
Examples
--------
    >>> import numpy as np, fastact
    >>> x = np.array([[-1.0, 2.0], [-4.0, -8.0]])
    >>> fastact.prelu(x, np.array([0.5, 0.25]), axis=1)
    array([[-0.5,  2. ],
           [-2. , -2. ]])
    >>> dx, dw = fastact.prelu.backward(np.ones_like(x), x, np.array([0.5, 0.25]), axis=1)
    >>> dw
    array([-5., -8.])
"""

    def __repr__(self):
        return "<fastact prelu>"

    def __reduce__(self):
        return "prelu"

    def _gpu_weight(self, where, x, weight, axis):
        """(xg, ax, slope operand or None, scalar slope or None, w)."""
        xg = _gpu.operands(where, [(x, "x")])[0]
        nd = len(xg.shape)
        ax = args.channel_axis(nd, axis, where)
        if not _gpu.is_gpu(weight):
            w = args.as_array(where, weight, "weight")
            if w.size != 1 or w.ndim > 1:
                raise TypeError(f"fastact.{where}: x is a GPU array but weight is a host array; "
                                "pass a GPU weight (or a scalar)")
            return xg, ax, None, float(w.reshape(())), w
        w = _gpu.operands(where, [(weight, "weight")])[0]
        args.check_weight_shape(where, w.shape, xg.shape, ax)
        shape, strides = [1] * nd, [0] * nd
        if len(w.shape) == 1 and ax is not None:
            shape[ax], strides[ax] = w.shape[0], w.strides[0]
        return xg, ax, w.derive(shape, strides), None, w

    def __call__(self, x, weight, axis=1, *, out=None):
        if _gpu.any_gpu(x, weight, out):
            with _gpu.on_device("prelu", x, weight, out):
                xg, _, wb, ws, _ = self._gpu_weight("prelu", x, weight, axis)
                if wb is None:
                    return gpu_kernels.elementwise("prelu", _LEAKY, "forward", [(xg, "x")], out, [ws])
                return gpu_kernels.elementwise("prelu", _LEAKY, "forward", [(xg, "x")], out, [],
                                               param_arrays=[(wb, "weight")])
        x = args.as_array("prelu", x, "x")
        ax = args.channel_axis(x.ndim, axis)
        w, wb = _weight("prelu", weight, x, ax)
        compute, result = args.compute_dtypes("prelu", [x, _weight_type([x], weight, w)])
        direct = False
        if out is not None:
            args.check_out("prelu", out, x.shape, compute, broadcast=True)
            out, direct = _out(out, x, compute)
            if direct is None:  # NumPy's ufunc machinery: broadcasting, casts, its errors
                return quiet_call(_cpu.ufunc(_LEAKY, "forward", compute), x, wb, out=out, dtype=compute)
        shape3, (x3,), w1 = _operands([x], w, ax, compute)
        y = out if direct else np.empty(x.shape, compute)
        y3 = y.reshape(shape3)
        kernel = cpu_layers.prelu_forward(_LEAKY)
        _chunks(shape3, lambda rows, chans: kernel(x3[rows], w1[chans], y3[rows]))
        # casts as quiet as the ufunc's: an overflow to +-inf is the result
        if out is not None:
            if not direct:
                quiet_call(np.copyto, out, y, casting="same_kind")
            return out
        y = y if result == compute else quiet_call(y.astype, result)
        return y[()] if y.ndim == 0 else y

    def backward(self, grad, x, weight, axis=1):
        where = "prelu.backward"
        if _gpu.any_gpu(grad, x, weight):
            with _gpu.on_device(where, grad, x, weight):
                return self._backward_gpu(where, grad, x, weight, axis)
        grad = args.as_array(where, grad, "grad")
        x = args.as_array(where, x, "x")
        if grad.shape != x.shape:
            raise ValueError(f"fastact.{where}: grad shape {grad.shape} != x shape {x.shape}")
        ax = args.channel_axis(x.ndim, axis, where)
        w, _ = _weight(where, weight, x, ax)
        compute, result = args.compute_dtypes(where, [grad, x, _weight_type([grad, x], weight, w)])
        shape3, (g3, x3), w1 = _operands([grad, x], w, ax, compute)
        dx = np.empty(x.shape, compute)
        dx3 = dx.reshape(shape3)
        kernel = cpu_layers.prelu_backward(_LEAKY)
        parts = []  # (chunk start, channels, float64 [sums, errors]) of each chunk

        def run(rows, chans):
            acc = np.zeros((2, w1[chans].size))
            kernel(g3[rows], x3[rows], w1[chans], dx3[rows], acc)
            parts.append((rows[-1].start or 0, chans, acc))

        _chunks(shape3, run)
        # an infinite partial sum makes its two-sum error NaN (inf - inf), as in
        # the kernel's own fold, which raises no warning: nor does any chunking
        with np.errstate(invalid="ignore", over="ignore"):
            if len(parts) == 1:
                s, e = parts[0][2]
            else:  # chunks of rows sum every channel: fold them with two-sums,
                # in the chunks' order (not the order they finished in), so that
                # a call's dweight does not depend on thread timing
                s, e = np.zeros((2, w1.size))
                for _, chans, (ps, pe) in sorted(parts, key=lambda p: p[0]):
                    t = s[chans] + ps
                    e[chans] += two_sum_err(s[chans], ps, t) + pe
                    s[chans] = t
            dw64 = s + e
        # a channel whose sum is not finite: an infinite running sum made its
        # error terms NaN (inf - inf), or products that overflow may cancel;
        # recomputed with the IEEE meaning of the exact sum (rare: zero cost
        # where every sum is finite)
        bad = np.flatnonzero(~np.isfinite(dw64))
        if bad.size:
            split = cpu_layers.prelu_dweight_split()
            for c in bad.tolist():
                dw64[c] = split(g3, x3, c)
        dw = quiet_call(dw64.astype, result)  # float64 sums: an overflow to +-inf is the result
        dw = dw.reshape(w.shape) if w.ndim else dw.reshape(())[()]
        if result != compute:
            dx = quiet_call(dx.astype, result)
        return (dx[()] if dx.ndim == 0 else dx), dw

    def _backward_gpu(self, where, grad, x, weight, axis):
        from fastact.cuda import layers as _cuda_misc

        xg, ax, wb, ws, w = self._gpu_weight(where, x, weight, axis)
        gg = _gpu.operands(where, [(grad, "grad")])[0]
        if gg.shape != xg.shape:
            raise ValueError(f"fastact.{where}: grad shape {gg.shape} != x shape {xg.shape}")
        if wb is None:
            dx = gpu_kernels.elementwise(where, _LEAKY, "backward", [(gg, "grad"), (xg, "x")], None, [ws])
        else:
            dx = gpu_kernels.elementwise(where, _LEAKY, "backward", [(gg, "grad"), (xg, "x")], None, [],
                                         param_arrays=[(wb, "weight")])
        stream = _gpu.stream_for([xg])
        per_channel = wb is not None and len(w.shape) == 1 and w.shape[0] > 1
        if per_channel:
            x2 = gpu_kernels.rows_view(where, xg, ax, stream)
            g2 = gpu_kernels.rows_view(where, gg, ax, stream)
        else:  # one weight: every element in one channel
            x2, g2 = _flat(where, xg, stream), _flat(where, gg, stream)
        dw64 = _cuda_misc.prelu_dweight(_gpu.device_view(x2), _gpu.device_view(g2), stream)
        compute, result = args.compute_dtypes(where, [gg, xg] + ([w] if wb is not None else []))
        # dweight in weight's shape (0-d for a scalar weight), on the GPU
        shape = tuple(w.shape)
        dwg = _gpu.empty_like_input(xg, shape, result, stream)
        d = _gpu.operands(where, [(dw64, "dweight")])[0]
        d = d.derive(shape, (d.itemsize,) * len(shape))
        gpu_kernels.elementwise(where, _ACT_IDENTITY, "forward", [(d, "dweight")], dwg, [])
        return dx, dwg


def _flat(where, a, stream):
    """(size, 1) GPU view of a (copied to contiguous first if strided)."""
    if not a.contiguous("C"):
        a = gpu_kernels.copy(where, a, stream)
    return a.derive((a.size, 1), (a.itemsize, a.itemsize))


_ACT_IDENTITY = ACTIVATIONS["identity"].catalog_entry

prelu = PReLU()
