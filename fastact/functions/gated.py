"""Gated linear units, fused: swiglu(a, b) = silu(a) * b, geglu(a, b) = gelu(a) * b.

The forward is one ufunc pass over (a, b) with no temporaries; the backward is
one gufunc pass over (grad, a, b) that writes both gradients. The activation
formulas are the catalog's (silu, gelu, gelu_tanh), not copies.

Either call with two arrays ``swiglu(a, b)`` (broadcasting), or with one array
split in two halves along ``axis`` (``swiglu(x, axis=-1)``: a = first half,
b = second half, the layout of LLM MLPs whose up-projection is
``[gate | up]``); the backward then returns dx of x's shape instead of (da, db).
"""

from __future__ import annotations

import numpy as np

from fastact.cpu import gufuncs as _cpu
from fastact.cuda import interop as _gpu
from fastact.cuda import elementwise as gpu_kernels
from fastact.functions import args
from fastact.functions.args import quiet_call
from fastact.catalog import CATALOG


def _split(where, x, axis):
    x = args.as_array(where, x, "x")
    ax, half = args.half_axis(where, x.shape, axis)
    idx_a = [slice(None)] * x.ndim
    idx_b = [slice(None)] * x.ndim
    idx_a[ax] = slice(0, half)
    idx_b[ax] = slice(half, 2 * half)
    return x, ax, x[tuple(idx_a)], x[tuple(idx_b)], tuple(idx_a), tuple(idx_b)


class GatedFunction:
    def __init__(self, name, variants, doc):
        self.__name__ = self.__qualname__ = name
        self.__module__ = "fastact"
        self.__doc__ = doc
        self._variants = variants  # approximate -> catalog entry

    def __repr__(self):
        return f"<fastact gated unit {self.__name__}>"

    def __reduce__(self):
        return self.__name__

    def _entry(self, approximate):
        if approximate not in self._variants:
            raise ValueError(
                f"fastact.{self.__name__}: approximate must be one of "
                f"{', '.join(map(repr, self._variants))}, got {approximate!r}"
            )
        return self._variants[approximate]

    def _kw(self, kw):
        approximate = kw.pop("approximate", "none")
        if kw:
            raise TypeError(f"fastact.{self.__name__}: unexpected keyword argument(s) {', '.join(kw)}")
        return self._entry(approximate)

    def __call__(self, a, b=None, *, axis=-1, out=None, **kw):
        entry = self._kw(kw)
        name = self.__name__
        if _gpu.any_gpu(a, b, out):
            with _gpu.on_device(name, a, b, out):
                if b is None:
                    _, _, a, b = _gpu.halves(name, a, axis)
                return gpu_kernels.elementwise(name, entry, "gated", [(a, "a"), (b, "b")], out, [])
        if b is None:
            _, _, a, b, _, _ = _split(name, a, axis)
        a = args.as_array(name, a, "a")
        b = args.as_array(name, b, "b")
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"fastact.{name}: a shape {a.shape} and b shape {b.shape} do not broadcast") from None
        compute, result = args.compute_dtypes(name, [a, b])
        uf = _cpu.gated_ufunc(entry, compute)
        out = args.check_out(name, out, shape, compute, broadcast=True)
        if out is None and result != compute:
            out = np.empty(shape, result)
        return quiet_call(uf, a, b, out=out, dtype=compute)

    def backward(self, grad, a, b=None, *, axis=-1, **kw):
        """(da, db) = (grad * b * f'(a), grad * f(a)); with one input x, dx of x's shape."""
        entry = self._kw(kw)
        name = f"{self.__name__}.backward"
        split = b is None
        if _gpu.any_gpu(grad, a, b):
            with _gpu.on_device(name, grad, a, b):
                return self._backward_gpu(name, entry, grad, a, b, axis)
        if split:
            x, ax, a, b, ia, ib = _split(name, a, axis)
        grad = args.as_array(name, grad, "grad")
        a = args.as_array(name, a, "a")
        b = args.as_array(name, b, "b")
        try:
            shape = np.broadcast_shapes(grad.shape, a.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"fastact.{name}: grad shape {grad.shape}, a shape {a.shape} and b shape "
                f"{b.shape} do not broadcast"
            ) from None
        compute, result = args.compute_dtypes(name, [grad, a, b])
        gu = _cpu.gated_backward_gufunc(entry, compute)
        if split:
            dx = np.empty(x.shape, compute)
            da, db = dx[ia], dx[ib]
        else:
            da = np.empty(shape, compute)
            db = np.empty(shape, compute)
        ops = [np.broadcast_to(v, shape) if v.shape != shape else v for v in (grad, a, b)]
        ops = [v.astype(compute, copy=False) for v in ops]
        if len(shape) == 0:
            quiet_call(gu, *[v.reshape(1) for v in ops], out=(da.reshape(1), db.reshape(1)))
        else:
            quiet_call(gu, *ops, out=(da, db))
        if split:
            return dx if result == compute else dx.astype(result)
        if result != compute:
            return da.astype(result), db.astype(result)
        return da, db

    @staticmethod
    def _backward_gpu(name, entry, grad, a, b, axis):
        if b is None:  # dx of x's shape, its two halves written in place
            x, _, a, b = _gpu.halves(name, a, axis)
            ga = _gpu.operands(name, [(grad, "grad")])[0]
            compute, _ = args.compute_dtypes(name, [ga, x])
            dx = _gpu.empty_like_input(x, x.shape, x.dtype if x.dtype.kind == "f" else compute, _gpu.stream_for([x]))
            _, ax, da, db = _gpu.halves(name, dx, axis)
            gpu_kernels.elementwise(name, entry, "gated_backward", [(grad, "grad"), (a, "a"), (b, "b")],
                                    (da, db), [], nout=2)
            return dx
        return gpu_kernels.elementwise(name, entry, "gated_backward", [(grad, "grad"), (a, "a"), (b, "b")],
                                       None, [], nout=2)


_DOC = """{name}(a, b=None, *, axis=-1, out=None{extra})

    y = {f}(a) * b          (fused: one pass, no temporaries)

With b=None, a is split in two halves along `axis`: a = first half, b = second half.
Backward: {name}.backward(grad, a, b) -> (da, db) = (grad * b * {f}'(a), grad * {f}(a));
{name}.backward(grad, x, axis=-1) -> dx (x's shape) for the split form.
{f} is the catalog's formula, with its accuracy and its limits (NaN in -> NaN out).

Examples
--------
    >>> import numpy as np, fastact
    >>> fastact.{name}(np.array([1.0, -1.0, 2.0, 3.0]))   # {f}([1, -1]) * [2, 3]
    {example}
"""

swiglu = GatedFunction(
    "swiglu",
    {"none": CATALOG["silu"]},
    _DOC.format(name="swiglu", f="silu", extra="", example="array([ 1.46211716, -0.80682426])"),
)
geglu = GatedFunction(
    "geglu",
    {"none": CATALOG["gelu"], "tanh": CATALOG["gelu_tanh"]},
    _DOC.format(
        name="geglu", f="gelu", extra=", approximate='none'|'tanh'",
        example="array([ 1.68268949, -0.47596576])",
    ),
)
GATED_FUNCTIONS = {"swiglu": swiglu, "geglu": geglu}
