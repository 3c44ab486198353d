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

from fastact.cuda import interop as _gpu
from fastact.cuda import elementwise as gpu_kernels
from fastact.functions import args
from fastact.functions.args import quiet_call


def _check_groups(where, shape, k, axis):
    """(ax, k) for grouping ``shape``'s ``axis`` in runs of k (clear errors)."""
    if len(shape) == 0:
        raise ValueError(f"fastact.{where}: needs at least 1 dimension, got a 0-d array")
    try:
        k = operator.index(k)
    except TypeError:
        raise TypeError(f"fastact.{where}: k must be an integer, got {k!r}") from None
    if k < 1:
        raise ValueError(f"fastact.{where}: k must be >= 1, got {k}")
    ax = args.axis_index(where, axis, len(shape))
    if shape[ax] % k:
        raise ValueError(f"fastact.{where}: axis {axis} has length {shape[ax]}, not divisible by k={k}")
    return ax, k


def _grouped(where, x, k, axis):
    x = args.as_array(where, x, "x")
    args.compute_dtypes(where, [x])  # dtype check
    ax, k = _check_groups(where, x.shape, k, axis)
    n = x.shape[ax]
    xm = np.moveaxis(x, ax, -1)
    return x, ax, k, xm.reshape(xm.shape[:-1] + (n // k, k))


# groups per block of the backward pass: their int64 argmax and flat
# positions (32 KiB each) stay in cache
BACKWARD_GROUPS = 1 << 12


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
        if _gpu.any_gpu(x, out):
            with _gpu.on_device("maxout", x, out):
                return self._forward_gpu(x, k, axis, out)
        x, ax, k, g = _grouped("maxout", x, k, axis)
        compute, result = args.compute_dtypes("maxout", [x])
        if out is not None:
            shape = x.shape[:ax] + (x.shape[ax] // k,) + x.shape[ax + 1 :]
            out = args.check_out("maxout", out, shape, compute)
            if out.dtype == g.dtype and g.dtype.kind == "f" and not np.may_share_memory(out, x):
                # the maxima straight into out (NaN-propagating, as below)
                np.max(g, axis=-1, out=np.moveaxis(out, ax, -1))
                return out
        if x.dtype.kind in "biu":
            g = g.astype(np.float64)
        res = np.max(g, axis=-1)  # NaN-propagating
        res = np.moveaxis(res, -1, ax)
        if res.dtype != result:  # a byte-swapped input: a native result
            res = res.astype(result)
        if out is None:
            return res
        # res is new memory: an out overlapping x is written after x is read
        out = args.check_out("maxout", out, res.shape, compute)
        quiet_call(np.copyto, out, res, casting="same_kind")  # float64 -> float32 may overflow to inf
        return out

    def backward(self, grad, x, k, axis=-1):
        if _gpu.any_gpu(grad, x):
            with _gpu.on_device("maxout.backward", grad, x):
                return self._backward_gpu(grad, x, k, axis)
        x, ax, k, g = _grouped("maxout.backward", x, k, axis)
        grad = args.as_array("maxout.backward", grad, "grad")
        expected = x.shape[:ax] + (x.shape[ax] // k,) + x.shape[ax + 1 :]
        if grad.shape != expected:
            raise ValueError(
                f"fastact.maxout.backward: grad shape {grad.shape} != output shape {expected}"
            )
        _, dtype = args.compute_dtypes("maxout.backward", [grad, x])  # float16 stays float16
        dx = np.zeros(x.shape, dtype=dtype)
        dm = np.moveaxis(dx, ax, -1)
        dg = dm.reshape(g.shape)  # dx is fresh and contiguous: a view
        gm = np.moveaxis(grad, ax, -1)
        # argmax's indices are int64, 8 bytes per group (the input's size for
        # float32 and k=2): blocks of groups bound them. Along the last axis
        # a block of dx is contiguous and takes its gradients by flat index;
        # elsewhere put_along_axis (an index array per dimension, and argmax
        # copies a strided block: half the groups per block)
        last = ax == x.ndim - 1
        limit = BACKWARD_GROUPS if last else BACKWARD_GROUPS // 2
        starts = np.arange(0, min(limit, dg.size // k) * k, k) if last else None
        for idx in args.blocks(g.shape[:-1], limit):
            first = np.argmax(g[idx], axis=-1)  # first max; first NaN if any
            if last:
                pos = first.reshape(-1)
                pos += starts[: pos.size]
                dg[idx].reshape(-1)[pos] = gm[idx].reshape(-1)
            else:
                np.put_along_axis(dg[idx], first[..., None], gm[idx][..., None].astype(dtype, copy=False), axis=-1)
        return dx

    # ---------------------------------------------------------------- GPU

    @staticmethod
    def _gpu_groups(where, x, k, axis, stream=None):
        """(xg, ax, k, x3): x as a (rows, groups, k) GPU view, axis last."""
        xg = _gpu.operands(where, [(x, "x")])[0]
        args.compute_dtypes(where, [xg])
        ax, k = _check_groups(where, xg.shape, k, axis)
        n = xg.shape[ax]
        stream = stream or _gpu.stream_for([xg])
        if xg.dtype.kind != "f":  # integers: compared in float64, as on the CPU
            xg = gpu_kernels.copy(where, xg, stream)
        r = gpu_kernels.rows_view(where, xg, ax, stream)
        x3 = r.derive((r.shape[0], n // k, k), (r.strides[0], k * r.strides[1], r.strides[1]))
        return xg, ax, k, x3, stream

    def _forward_gpu(self, x, k, axis, out):
        from fastact.cuda import layers as _cuda_misc

        xg, ax, k, x3, stream = self._gpu_groups("maxout", x, k, axis)
        shape = list(xg.shape)
        shape[ax] //= k
        if out is None:
            o = _gpu.GpuArray("maxout", _gpu.empty_like_input(xg, shape, xg.dtype, stream), "out")
        else:
            o = _gpu.check_out("maxout", out, shape, xg.dtype)
        if o.size:
            o2, finish = gpu_kernels.rows_out("maxout", o, ax, stream)
            _cuda_misc.maxout_forward(_gpu.device_view(x3), _gpu.device_view(o2), stream)
            finish()
        return o.obj if out is None else out

    def _backward_gpu(self, grad, x, k, axis):
        from fastact.cuda import layers as _cuda_misc

        where = "maxout.backward"
        gg = _gpu.operands(where, [(grad, "grad")])[0]
        xg, ax, k, x3, stream = self._gpu_groups(where, x, k, axis)
        expected = list(xg.shape)
        expected[ax] //= k
        if gg.shape != tuple(expected):
            raise ValueError(f"fastact.{where}: grad shape {gg.shape} != output shape {tuple(expected)}")
        dtype = np.result_type(gg.dtype, xg.dtype)
        dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
        dx = _gpu.GpuArray(where, _gpu.empty_like_input(xg, xg.shape, dtype, stream), "dx")
        if dx.size:
            g2 = gpu_kernels.rows_view(where, gg, ax, stream)
            d2, finish = gpu_kernels.rows_out(where, dx, ax, stream)
            d3 = d2.derive(x3.shape, (d2.strides[0], k * d2.strides[1], d2.strides[1]))
            _cuda_misc.maxout_backward(_gpu.device_view(g2), _gpu.device_view(x3),
                                       _gpu.device_view(d3), stream)
            finish()
        return dx.obj


maxout = Maxout()
