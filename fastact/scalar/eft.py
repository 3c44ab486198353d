"""Error-free transforms: the exact rounding errors of a product and a sum.

Shared by the formulas, the math layer (vmath) and the row kernels. Dekker's
product needs no FMA, so it does not depend on the target contracting
``a*b+c``; kernels must therefore not be compiled with the ``contract``
fast-math flag.
"""

import numpy as np

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
def two_prod_err(a, b, p):
    """Exact error ``a*b - p`` of the rounded product ``p = fl(a*b)``."""
    ah = split_hi(a)
    al = a - ah
    bh = split_hi(b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


@scalar
def two_sum_err(a, b, s):
    """Exact error ``a+b - s`` of the rounded sum ``s = fl(a+b)`` (Knuth)."""
    bb = s - a
    return (a - (s - bb)) + (b - bb)


@scalar(inline=True)
def two_prod_err32(a, b, p):
    """Exact error ``a*b - p`` of ``p = fl(a*b)`` for float32 ``a``, ``b``
    (Dekker, no FMA; inlined so the float32 loops calling it vectorize)."""
    ca = _SPLITTER32 * a
    ah = ca - (ca - a)
    al = a - ah
    cb = _SPLITTER32 * b
    bh = cb - (cb - b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl
