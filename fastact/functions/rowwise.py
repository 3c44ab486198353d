"""Softmax and log-softmax along any axis, forward and backward.

Public functions: ``softmax(x, axis=-1, *, out=None)``, ``log_softmax``, and
their ``.backward(grad, y, axis=-1, *, out=None)`` from the output y. The row
kernels are in ``fastact.scalar.rows`` / ``rows32`` (one definition for every backend); here they
become NumPy gufuncs ``(n)->(n)`` applied along ``axis`` with no copy of the
input, in parallel over rows for large inputs.
"""

from __future__ import annotations

import numpy as np

from fastact.cpu import gufuncs as _cpu
from fastact.cuda import interop as _gpu
from fastact.cuda import elementwise as gpu_kernels
from fastact.scalar import rows as K
from fastact.scalar import rows32 as K32
from fastact.cpu import threads as _threads
from fastact.functions import args
from fastact.functions.args import quiet_call


def _call_rows_gpu(name, arrays, axis, out, where_name):
    """The GPU path: CUDA row kernels (fastact.cuda.rows) over (rows, n)
    views of the arrays with ``axis`` last; layouts that allow no such view
    are copied on the GPU first (never through the host)."""
    from fastact.cuda import rows as _cuda_rows

    ins = _gpu.operands(where_name, arrays)
    ax = args.row_axis(where_name, [a.shape for a in ins], axis)
    shape = ins[0].shape
    compute, result = args.compute_dtypes(where_name, [a.dtype for a in ins])
    stream = _gpu.stream_for(ins)
    # one storage dtype for every operand (float16 stays float16)
    ins = [a if a.dtype == result else gpu_kernels.copy(where_name, a, stream, result) for a in ins]
    if out is None:
        o = _gpu.GpuArray(where_name, _gpu.empty_like_input(ins[0], shape, result, stream), "out")
    else:
        o = _gpu.check_out(where_name, out, shape, compute)
    if o.size == 0:
        return o.obj if out is None else out
    views = [gpu_kernels.rows_view(where_name, a, ax, stream) for a in ins]
    o2, finish = gpu_kernels.rows_out(where_name, o, ax, stream)
    _cuda_rows.run(name, [_gpu.device_view(v) for v in views], _gpu.device_view(o2), stream)
    finish()
    return o.obj if out is None else out


# row kernels that take scratch rows (n elements of the compute dtype each,
# their contents ignored) after their inputs: rows32.softmax_row32 keeps its
# per-entry state there between passes (see its docstring)
_SCRATCH_ROWS = {K32.softmax_row32: 2}

# elements of the compute dtype that a thread's buffers may hold, over all
# of a call's converted operands (float16 in or out) and the results of a
# call in place: 64 KiB of float32, in cache; larger blocks only save Python
# overhead (measured: in place 2**14 is as fast as NumPy's whole copy was)
BLOCK_ELEMENTS = 1 << 14


def _call_rows(name, row_fn, arrays, axis, out, where_name):
    if _gpu.any_gpu(out, *(a for a, _ in arrays)):
        with _gpu.on_device(where_name, out, *(a for a, _ in arrays)):
            return _call_rows_gpu(name, arrays, axis, out, where_name)
    arrays = [args.as_array(where_name, a, n) for a, n in arrays]
    ax = args.row_axis(where_name, [a.shape for a in arrays], axis)
    compute, result = args.compute_dtypes(where_name, arrays)
    x0 = arrays[0]
    out = args.check_out(where_name, out, x0.shape, compute)
    # an out partly overlapping an input gets the results of a separate
    # target: the rows run in chunks on threads, and a chunk's out rows can
    # be another chunk's input rows. out= an input itself runs in blocks of
    # rows, each computed into a buffer and then copied into out: handed the
    # input as its out, NumPy would copy the whole input (a gufunc gets no
    # exemption for identical operands)
    apart = out is None or not args.overlaps(out, arrays)
    if apart:
        target = np.empty(x0.shape, result) if out is None else out
    else:
        target = np.empty(x0.shape, compute)
    # sharing memory without a partial overlap: out= is an input itself
    in_place = apart and out is not None and any(np.may_share_memory(a, out) for a in arrays)
    # float16 operands are converted block by block (no float32 copy of the
    # input); in place, each block's results go to a buffer, then into out
    convert = [a.dtype != compute for a in arrays] + [target.dtype != compute or in_place]
    if compute == np.float32:  # the vectorized float32 kernels
        row_fn, name = row_fn[1], name + "_f32"
    else:
        row_fn = row_fn[0]
    moved = [np.moveaxis(a, ax, -1) for a in arrays]
    tmoved = np.moveaxis(target, ax, -1)
    # unit-stride rows (the usual case: the last axis of a C array) get the
    # kernel compiled for contiguous rows, which vectorizes
    n = tmoved.shape[-1]
    unit = all(m.strides[-1] == m.itemsize or n <= 1 for m in moved + [tmoved])
    scratch = _SCRATCH_ROWS.get(row_fn, 0)
    gu = _cpu.gufunc(name, row_fn, len(arrays) + scratch, compute, contiguous=unit)

    def call(ins, o):
        # scratch rows: new ones per call (per thread), broadcast over the rows
        quiet_call(gu, *ins, *(np.empty(n, compute) for _ in range(scratch)), out=o)

    if any(convert) or in_place:
        # a converted input's buffer of strided rows holds its entries two
        # apart (_converted); strided rows get half the elements per block
        # (the kernel's own scratch rows are as long), which costs little
        # overhead next to the kernel's 10-30 ns per element
        weight = sum((1 if unit else 2) for c in convert[:-1] if c) + convert[-1]
        limit = BLOCK_ELEMENTS // max(1, weight) // (1 if unit else 2)

        def blocks(ins, o):
            # buffers of the converted operands, the rows' layout kept
            # (unit-stride rows stay unit-stride): the kernel reads them as
            # it reads the float32 rows
            bufs = {}
            rows = [np.empty(n, compute) for _ in range(scratch)]
            for idx in args.blocks(o.shape, limit, whole_rows=True):
                ob = o[idx]
                if ob.size == 0:
                    continue
                bins = [_converted(bufs, k, a[idx], compute) if convert[k] else a[idx]
                        for k, a in enumerate(ins)]
                if convert[-1]:  # results are stored entry by entry: any layout
                    res = _converted(bufs, -1, ob, compute, strided=False)
                    gu(*bins, *rows, out=res)
                    np.copyto(ob, res, casting="same_kind")  # float16: overflow to inf
                else:
                    gu(*bins, *rows, out=ob)

        def run(ins, o):
            quiet_call(blocks, ins, o)
    else:
        run = call
    if tmoved.ndim == 1:
        run(moved, tmoved)
    else:
        def chunk(i0, i1):
            run([m[i0:i1] for m in moved], tmoved[i0:i1])

        _threads.for_chunks(chunk, tmoved.shape[0], tmoved.size)
    if out is None or target is out:
        return target
    quiet_call(np.copyto, out, target, casting="same_kind")  # an overflow to inf is the result
    return out


def _converted(bufs, key, a, dtype, strided=None):
    """A buffer of ``a``'s shape (a block of rows) in ``dtype``, kept in
    ``bufs`` under ``key``, holding ``a`` (``strided`` None) or to be written
    (False: C-ordered). A C-ordered array, or, for rows of ``a`` that are not
    unit-stride, the same rows strided (each row's entries two apart): the
    kernel's reductions run on the layout they run on for ``dtype`` input."""
    copy = strided is None
    if copy:
        strided = a.shape[-1] > 1 and a.strides[-1] != a.itemsize
    size = 2 * a.size if strided else a.size
    buf = bufs.get(key)
    if buf is None or buf.size < size:
        buf = bufs[key] = np.empty(size, dtype)
    b = buf[:size].reshape(a.shape[:-1] + (a.shape[-1], 2) if strided else a.shape)
    if strided:
        b = b[..., 0]
    if copy:
        np.copyto(b, a)
    return b


class RowFunction:
    """A softmax-family function: ``f(x, axis=-1, *, out=None)`` and ``f.backward``."""

    def __init__(self, name, row_fn, backward_fn, doc):
        # row_fn / backward_fn: (float64 kernel, float32 kernel)
        self.__name__ = self.__qualname__ = name
        self.__module__ = "fastact"
        self.__doc__ = doc
        self._row_fn = row_fn
        self._backward_fn = backward_fn

    def __repr__(self):
        return f"<fastact row function {self.__name__}>"

    def __reduce__(self):
        return self.__name__

    def __call__(self, x, axis=-1, *, out=None):
        return _call_rows(self.__name__, self._row_fn, [(x, "x")], axis, out, self.__name__)

    def backward(self, grad, y, axis=-1, *, out=None):
        """dL/dx from the upstream ``grad`` and the forward output ``y``."""
        return _call_rows(
            f"{self.__name__}_backward", self._backward_fn, [(grad, "grad"), (y, "y")], axis, out,
            f"{self.__name__}.backward",
        )


_COMMON = """
Special rows: -inf entries are excluded (softmax 0, log_softmax -inf); a row holding
+inf or NaN is NaN throughout; a row of only -inf is NaN throughout (PyTorch's
choice: max-subtraction gives -inf - (-inf) = NaN and there is no finite
distribution to return; returning a uniform row would hide the bad input).
An empty axis gives an empty result.

Stability and accuracy: max-subtracted, with the rounding error of x - max
carried into exp (PyTorch, JAX and SciPy lose up to 64 / 129 ulp on small
probabilities by dropping it), so every entry is within 4 ulp of the exact
value. float64: the maximum and the normaliser come from one read pass (the
running sum is rescaled only when the row spans more than 600), a second pass
writes; x - max is a double-double and the normaliser a compensated sum kept
as 1 + rest. float32: vectorized row kernels (max, float32 exp with each
term's rounding error carried into a float64 sum, write; the row stays in
cache between passes), within 2 ulp forward, with the normaliser as k + rest
(k entries equal to the maximum), see fastact/scalar/rows32.py.

Any axis, any number of dimensions, strided inputs (no copy); parallel over rows
for large inputs. float16 is computed in float32, integers in float64.
"""

softmax = RowFunction(
    "softmax",
    (K.softmax_row, K32.softmax_row32),
    (K.softmax_backward_row, K32.softmax_backward_row32),
    """softmax(x, axis=-1, *, out=None)

    y_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x))

Gradient (from the output): softmax.backward(grad, y, axis=-1)
    = y * (grad - sum(grad * y, axis, keepdims=True)), the dot product kept as a
    double-double so grad - dot does not cancel away digits.
Limits: an entry -> -inf gives 0; a dominant entry gives 1 - (sum of the rest).
"""
    + _COMMON
    + """
Examples
--------
    >>> import numpy as np, fastact
    >>> fastact.softmax(np.array([1000.0, 0.0, -1000.0]))
    array([1., 0., 0.])
    >>> fastact.softmax(np.array([[0.0, np.log(3.0)]]), axis=1)
    array([[0.25, 0.75]])
""",
)

log_softmax = RowFunction(
    "log_softmax",
    (K.log_softmax_row, K32.log_softmax_row32),
    (K.log_softmax_backward_row, K32.log_softmax_backward_row32),
    """log_softmax(x, axis=-1, *, out=None)

    y_i = x_i - max(x) - log(sum_j exp(x_j - max(x)))

Gradient (from the output): log_softmax.backward(grad, y, axis=-1)
    = grad - exp(y) * sum(grad, axis, keepdims=True), with a compensated sum and
    (grad - S) - expm1(y) S where exp(y) is close to 1.
Limits: an entry -> -inf gives -inf; the dominant entry of [0, -100] gives
    -log1p(exp(-100)) = -3.7e-44, not 0.
"""
    + _COMMON
    + """
Examples
--------
    >>> import numpy as np, fastact
    >>> fastact.log_softmax(np.array([0.0, -100.0]))
    array([-3.72007598e-44, -1.00000000e+02])
""",
)

ROW_FUNCTIONS = {"softmax": softmax, "log_softmax": log_softmax}
