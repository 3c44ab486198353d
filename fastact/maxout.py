"""Maxout: the maximum over groups of k consecutive entries along an axis.

``maxout(x, k, axis=-1)`` splits ``axis`` (length n, divisible by k) into n/k
groups of k consecutive entries and returns each group's maximum (shape with
n/k along ``axis``). Splitting an axis is always a view in NumPy, so the
reduction reads x in place. NaN propagates: a group holding NaN gives NaN.

``maxout.backward(grad, x, k, axis=-1)`` routes each group's upstream gradient
to its argmax (the first one on ties; the first NaN if the group holds NaN),
zeros elsewhere, so dx has x's shape.
"""

from __future__ import annotations

import operator

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from .api import _as_array, _compute_dtype


def _grouped(where, x, k, axis):
    x = _as_array(where, x, "x")
    _compute_dtype(where, [x])  # dtype check
    if x.ndim == 0:
        raise ValueError(f"fastact.{where}: needs at least 1 dimension, got a 0-d array")
    try:
        k = operator.index(k)
    except TypeError:
        raise TypeError(f"fastact.{where}: k must be an integer, got {k!r}") from None
    if k < 1:
        raise ValueError(f"fastact.{where}: k must be >= 1, got {k}")
    ax = normalize_axis_index(axis, x.ndim)
    n = x.shape[ax]
    if n % k:
        raise ValueError(f"fastact.{where}: axis {axis} has length {n}, not divisible by k={k}")
    xm = np.moveaxis(x, ax, -1)
    return x, ax, k, xm.reshape(xm.shape[:-1] + (n // k, k))


class Maxout:
    __name__ = __qualname__ = "maxout"
    __module__ = "fastact"
    __doc__ = __doc__ + """
Examples
--------
    >>> import numpy as np, fastact
    >>> fastact.maxout(np.array([1.0, 5.0, -2.0, -3.0, 0.0, 4.0]), 2)
    array([ 5., -2.,  4.])
    >>> fastact.maxout.backward(np.array([10.0, 20.0, 30.0]), np.array([1.0, 5.0, -2.0, -3.0, 0.0, 4.0]), 2)
    array([ 0., 10., 20.,  0.,  0., 30.])
"""

    def __repr__(self):
        return "<fastact maxout>"

    def __reduce__(self):
        return "maxout"

    def __call__(self, x, k, axis=-1, *, out=None):
        x, ax, k, g = _grouped("maxout", x, k, axis)
        if x.dtype.kind in "biu":
            g = g.astype(np.float64)
        res = np.max(g, axis=-1)  # NaN-propagating
        res = np.moveaxis(res, -1, ax)
        if out is None:
            return res
        np.copyto(out, res, casting="same_kind")
        return out

    def backward(self, grad, x, k, axis=-1):
        x, ax, k, g = _grouped("maxout.backward", x, k, axis)
        grad = _as_array("maxout.backward", grad, "grad")
        expected = x.shape[:ax] + (x.shape[ax] // k,) + x.shape[ax + 1 :]
        if grad.shape != expected:
            raise ValueError(
                f"fastact.maxout.backward: grad shape {grad.shape} != output shape {expected}"
            )
        compute, _ = _compute_dtype("maxout.backward", [grad, x])
        dtype = np.result_type(grad, x) if compute == np.result_type(grad, x) else compute
        idx = np.argmax(g, axis=-1)  # first max; first NaN if any
        dx = np.zeros(x.shape, dtype=dtype)
        dm = np.moveaxis(dx, ax, -1)
        dg = dm.reshape(g.shape)  # dx is fresh and contiguous: a view
        gm = np.moveaxis(grad, ax, -1)
        np.put_along_axis(dg, idx[..., None], gm[..., None].astype(dtype, copy=False), axis=-1)
        return dx


maxout = Maxout()
