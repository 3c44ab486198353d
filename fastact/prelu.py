"""PReLU: leaky ReLU with a learned slope per channel (PyTorch semantics).

``prelu(x, weight, axis=1)`` = x if x > 0 else weight[c] * x, with c the index
along ``axis``; ``weight`` is a 1-D array of that axis' length (or of length
1) or a scalar. It is the catalog's leaky_relu ufunc with the weight
broadcast along ``axis`` as its slope input: no second formula.

``prelu.backward(grad, x, weight, axis=1)`` returns ``(dx, dweight)``:
dx = grad if x > 0 else weight * grad (prelu'(0) = weight, as PyTorch), and
dweight[c] = sum of grad * x over x <= 0 in channel c (all other axes), with
the shape of ``weight``. The sum is accumulated in float64 with compensation
(Neumaier) whatever the input dtype, so a reduction over 10^8 float32
elements keeps its digits; NaN in x or grad propagates into dweight.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from . import _cpu
from .api import ACTIVATIONS, _as_array, _compute_dtype, quiet_call

_LEAKY = ACTIVATIONS["leaky_relu"].catalog_entry
_reduce_kernel = None


def _get_reduce_kernel():
    global _reduce_kernel
    if _reduce_kernel is None:
        import numba

        from ._eft import two_sum_err
        from ._jit import ensure_registered

        ensure_registered()

        @numba.njit(cache=True, nogil=True)
        def prelu_dweight(x2, g2, acc, comp):
            # rows x channels; acc/comp: float64 compensated sum per channel
            for i in range(x2.shape[0]):
                for c in range(x2.shape[1]):
                    xv = np.float64(x2[i, c])
                    if not (xv > 0.0):
                        t = xv * np.float64(g2[i, c])
                        s = acc[c] + t
                        comp[c] += two_sum_err(acc[c], t, s)
                        acc[c] = s

        _reduce_kernel = prelu_dweight
    return _reduce_kernel


def _weight(where, weight, x, ax):
    w = _as_array(where, weight, "weight")
    nch = 1 if ax is None else x.shape[ax]
    if w.ndim > 1 or (w.ndim == 1 and w.shape[0] not in (1, nch)):
        what = "(x has no channel axis)" if ax is None else f"(x.shape[{ax}])"
        raise ValueError(
            f"fastact.{where}: weight must be a scalar or a 1-D array of length 1 or "
            f"{nch} {what}, got shape {w.shape}"
        )
    shape = [1] * x.ndim
    if w.ndim == 1 and ax is not None:
        shape[ax] = w.shape[0]
    return w, w.reshape(shape)


def _axis(where, x, axis):
    """The channel axis, or None: like PyTorch, inputs with fewer than 2
    dimensions have no channel axis under the default axis=1 (one weight)."""
    if x.ndim < 2 and axis == 1:
        return None
    return normalize_axis_index(axis, x.ndim)


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

    def __call__(self, x, weight, axis=1, *, out=None):
        x = _as_array("prelu", x, "x")
        ax = _axis("prelu", x, axis)
        w, wb = _weight("prelu", weight, x, ax)
        compute, result = _compute_dtype("prelu", [x, w])
        uf = _cpu.ufunc(_LEAKY, "forward", compute)
        if out is None and result != compute:
            out = np.empty(x.shape, result)
        return quiet_call(uf, x, wb, out=out, dtype=compute)

    def backward(self, grad, x, weight, axis=1):
        where = "prelu.backward"
        grad = _as_array(where, grad, "grad")
        x = _as_array(where, x, "x")
        if grad.shape != x.shape:
            raise ValueError(f"fastact.{where}: grad shape {grad.shape} != x shape {x.shape}")
        ax = _axis(where, x, axis)
        w, wb = _weight(where, weight, x, ax)
        compute, result = _compute_dtype(where, [grad, x, w])
        dx = quiet_call(_cpu.ufunc(_LEAKY, "backward", compute), grad, x, wb, dtype=compute)
        if result != compute:
            dx = dx.astype(result)
        nch = 1 if w.ndim == 0 or w.shape[0] == 1 else x.shape[ax]
        if nch == 1:
            x2, g2 = x.reshape(-1, 1), grad.reshape(-1, 1)
        else:
            x2 = np.moveaxis(x, ax, -1).reshape(-1, nch)
            g2 = np.moveaxis(grad, ax, -1).reshape(-1, nch)
        if x2.dtype.kind in "biu":
            x2 = x2.astype(np.float64)
        if g2.dtype.kind in "biu":
            g2 = g2.astype(np.float64)
        if x2.dtype == np.float16:
            x2 = x2.astype(np.float32)
        if g2.dtype == np.float16:
            g2 = g2.astype(np.float32)
        acc = np.zeros(nch)
        comp = np.zeros(nch)
        _get_reduce_kernel()(x2, g2, acc, comp)
        dw = (acc + comp).astype(result)
        dw = dw.reshape(w.shape) if w.ndim else dw.reshape(())[()]
        return dx, dw


prelu = PReLU()
