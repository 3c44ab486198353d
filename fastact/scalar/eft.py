"""Error-free transforms: the exact rounding errors of a product and a sum.

Shared by the formulas, the math layers (vmath, vmath32) and the row
kernels. A product's error is one fused multiply-add, ``fma(a, b, -p)``,
where the target has FMA (every GPU, x86 since 2013); a CPU without it
compiles Dekker's product instead (a Veltkamp split of each factor, 17
operations), chosen once at compile time (``fastact.scalar.fma.has_fma``).
Both are exact. Kernels are compiled without the ``contract`` fast-math flag:
Dekker's product and the two-sums need their separate roundings.
"""

import numpy as np

from fastact.scalar.fma import fma, has_fma
from fastact.scalar.registry import scalar

_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp's splitting constant for float64
_SPLITTER32 = np.float32(4097.0)  # 2**12 + 1, the same for float32


@scalar
def split_hi(a):
    """High 26 bits of ``a`` (Veltkamp); ``a - split_hi(a)`` is exact.

    Valid for ``|a| < 2**996``; callers only split moderate magnitudes.
    """
    c = _SPLITTER * a
    return c - (c - a)


@scalar
def dekker_prod_err(a, b, p):
    """``a*b - p`` for float64 ``a``, ``b`` without FMA (Dekker); exact while
    neither the factors' splits overflow nor the partial products underflow."""
    ah = split_hi(a)
    al = a - ah
    bh = split_hi(b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


@scalar
def dekker_prod_err32(a, b, p):
    """``a*b - p`` for float32 ``a``, ``b`` without FMA (Dekker, 12-bit splits)."""
    ca = _SPLITTER32 * a
    ah = ca - (ca - a)
    al = a - ah
    cb = _SPLITTER32 * b
    bh = cb - (cb - b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _fused_prod_err(a, b, p):
    return fma(a, b, -p)


@scalar(cpu=lambda: _fused_prod_err if has_fma() else dekker_prod_err)
def two_prod_err(a, b, p):
    """Exact error ``a*b - p`` of the rounded product ``p = fl(a*b)``."""
    return fma(a, b, -p)


@scalar(cpu=lambda: _fused_prod_err if has_fma() else dekker_prod_err32)
def two_prod_err32(a, b, p):
    """Exact error ``a*b - p`` of ``p = fl(a*b)`` for float32 ``a``, ``b``."""
    return fma(a, b, -p)


@scalar
def two_sum_err(a, b, s):
    """Exact error ``a+b - s`` of the rounded sum ``s = fl(a+b)`` (Knuth)."""
    bb = s - a
    return (a - (s - bb)) + (b - bb)
