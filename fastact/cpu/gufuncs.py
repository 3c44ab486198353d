"""CPU backend, row and fused kernels: real NumPy gufuncs built lazily per dtype.

The softmax family's row kernels (``(n)->(n)``, from ``fastact.scalar.rows``
/ ``rows32``) and the fused gated units (``f(a) * b`` and its two-output
backward), cached on disk like the elementwise ufuncs of
``fastact.cpu.ufuncs`` (the same stamp in each kernel's closure).
"""

import numpy as np

from fastact.cpu.stamp import stamp
from fastact.cpu.ufuncs import DUFUNCS, NUMBA_NAME, add_loop, lazy_vectorize, named
from fastact.scalar.eft import prod3
from fastact.scalar.registry import KernelTable


def _row1(f, stamp):
    def row1(x, out):
        stamp  # noqa: B018
        f(x, out)

    return row1


def _row2(f, stamp):
    def row2(a, b, out):
        stamp  # noqa: B018
        f(a, b, out)

    return row2


def _row3(f, stamp):
    def row3(a, b, c, out):
        stamp  # noqa: B018
        f(a, b, c, out)

    return row3


_ROWS = {1: _row1, 2: _row2, 3: _row3}


def _gated_backward(f, fp, stamp):
    # one pass over (grad, a, b) writing both gradients of y = f(a) * b;
    # da = (grad * b) * f'(a) by prod3: a zero f'(a) after an overflowing
    # grad * b is the exact zero, not inf * 0 (the CUDA kernel's rule too)
    def gated_backward(g, a, b, da, db):
        stamp  # noqa: B018
        for i in range(a.shape[0]):
            gi = np.float64(g[i])
            ai = np.float64(a[i])
            da[i] = prod3(gi, np.float64(b[i]), fp(ai))
            db[i] = gi * f(ai)

    return gated_backward


def _gated_forward(f, stamp):
    def gated_forward(a, b):
        stamp  # noqa: B018
        return f(np.float64(a)) * np.float64(b)

    return gated_forward


GUFUNCS = KernelTable()  # (name, dtype) -> GUFunc


def _guvectorize(kernel, dtype, nargs, layout, contiguous=False):
    import numba

    t = NUMBA_NAME[np.dtype(dtype)]
    arr = f"{t}[::1]" if contiguous else f"{t}[:]"
    return numba.guvectorize([f"void({', '.join([arr] * nargs)})"], layout, cache=True)(kernel)


def gufunc(name, row_fn, nin, dtype, contiguous=False):
    """gufunc ``(n)[,(n)[,(n)]]->(n)`` running ``row_fn(*rows, out)`` in ``dtype``
    (``nin`` rows in: the inputs, then any scratch rows the kernel takes).

    ``contiguous=True`` compiles the rows as C-contiguous arrays, whose loops
    LLVM vectorizes (with runtime strides it keeps most of them scalar). Such
    a gufunc does NOT check its inputs: it reads a strided row as if it were
    contiguous, so callers pass it unit-stride rows only.
    """
    name = name + "_contiguous" if contiguous else name

    def build():
        kernel = named(_ROWS[nin](row_fn, stamp()), name)
        layout = ",".join(["(n)"] * nin) + "->(n)"
        return _guvectorize(kernel, dtype, nin + 1, layout, contiguous)

    return GUFUNCS.get((name, np.dtype(dtype)), build)


def gated_ufunc(entry, dtype):
    """ufunc ``(a, b) -> f(a) * b`` for a parameter-free catalog entry."""
    name = f"{entry.name}_gated"

    def build():
        return lazy_vectorize(named(_gated_forward(entry.forward, stamp()), name))

    uf = DUFUNCS.get((name, "forward"), build)
    return add_loop(uf, (name, "forward", np.dtype(dtype)), dtype, 2, in_place=2)


def gated_backward_gufunc(entry, dtype):
    """gufunc ``(n),(n),(n)->(n),(n)``: (grad, a, b) -> (da, db) for y = f(a) * b."""
    name = f"{entry.name}_gated_backward"

    def build():
        kernel = named(_gated_backward(entry.forward, entry.grad, stamp()), name)
        return _guvectorize(kernel, dtype, 5, "(n),(n),(n)->(n),(n)")

    return GUFUNCS.get((name, np.dtype(dtype)), build)
