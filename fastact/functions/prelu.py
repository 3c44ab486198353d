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

from fastact.cpu import layers as cpu_layers
from fastact.cpu import ufuncs as _cpu
from fastact.cuda import interop as _gpu
from fastact.cuda import elementwise as gpu_kernels
from fastact.functions.elementwise import ACTIVATIONS
from fastact.functions import args
from fastact.functions.args import quiet_call

_LEAKY = ACTIVATIONS["leaky_relu"].catalog_entry


def _weight(where, weight, x, ax):
    w = args.as_array(where, weight, "weight")
    args.check_weight_shape(where, w.shape, x.shape, ax)
    shape = [1] * x.ndim
    if w.ndim == 1 and ax is not None:
        shape[ax] = w.shape[0]
    return w, w.reshape(shape)


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
        ax = args.channel_axis(nd, axis)
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
        compute, result = args.compute_dtypes("prelu", [x, w])
        uf = _cpu.ufunc(_LEAKY, "forward", compute)
        if out is None and result != compute:
            out = np.empty(x.shape, result)
        return quiet_call(uf, x, wb, out=out, dtype=compute)

    def backward(self, grad, x, weight, axis=1):
        where = "prelu.backward"
        if _gpu.any_gpu(grad, x, weight):
            with _gpu.on_device(where, grad, x, weight):
                return self._backward_gpu(where, grad, x, weight, axis)
        grad = args.as_array(where, grad, "grad")
        x = args.as_array(where, x, "x")
        if grad.shape != x.shape:
            raise ValueError(f"fastact.{where}: grad shape {grad.shape} != x shape {x.shape}")
        ax = args.channel_axis(x.ndim, axis)
        w, wb = _weight(where, weight, x, ax)
        compute, result = args.compute_dtypes(where, [grad, x, w])
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
        cpu_layers.prelu_dweight()(x2, g2, acc, comp)
        dw = (acc + comp).astype(result)
        dw = dw.reshape(w.shape) if w.ndim else dw.reshape(())[()]
        return dx, dw

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
