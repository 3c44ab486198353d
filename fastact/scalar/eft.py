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


@scalar
def prod3(a, b, c):
    """``(a * b) * c`` wherever that is finite (the same two roundings), else
    the IEEE value of the exact product: where ``a * b`` overflows and ``c``
    is small the exact product may be finite, or a zero for ``c`` = 0 (not
    ``inf * 0`` = NaN). Then it is ``(big * c) * small``, ``big`` the larger
    of ``|a|``, ``|b|``: ``|big| >= 2**512`` there, so ``big * c`` neither
    overflows (``|c| < 1`` for a finite result) nor becomes subnormal, and
    the one overflow left is the exact product's. NaN stays where the exact
    product has one (a NaN factor, an infinite factor times a zero). One
    branch, finite or not, always predicted right (choosing big by a select
    on random data made a mispredicted branch: swiglu.backward 10% slower)."""
    p = (a * b) * c
    if p - p == 0.0:
        return p
    big = a if abs(a) >= abs(b) else b
    small = b if abs(a) >= abs(b) else a
    return (big * c) * small


#: prelu's dweight recomputation (``split_prod``): products from this
#: magnitude on are summed scaled by TERM_SCALE**2 = 2**-1100, so neither sum
#: can overflow (below it, 2**53 terms sum to under 2**1023; scaled, a
#: product of two float64 is under 2**948), and none underflows (such a
#: product's factors are over 2**-54, scaled over 2**-604)
BIG_TERM = 2.0 ** 970
TERM_SCALE = 2.0 ** -550
TERM_UNSCALE = 2.0 ** 550


@scalar
def split_prod(a, b):
    """``a * b`` (float64) as ``(small, big, special)``, two of them 0.0: the
    rounded product where it is finite and under ``BIG_TERM``; else, for
    finite factors, the product scaled by ``TERM_SCALE**2`` (rounded once,
    never overflowing); for an infinite or NaN factor IEEE's product (+-inf,
    or NaN: 0 * inf). Summing each part apart, ``split_total`` gives a sum of
    products with the IEEE meaning of the exact sum: +-inf only where it
    overflows or an infinite term has no opposite one, NaN only where +inf
    meets -inf, 0 * inf or a NaN occurs."""
    p = a * b
    if abs(p) < BIG_TERM:
        return p, 0.0, 0.0
    if a - a == 0.0 and b - b == 0.0:  # finite: a product from 2**970 or one that overflowed
        return 0.0, (a * TERM_SCALE) * (b * TERM_SCALE), 0.0
    return 0.0, 0.0, p


@scalar
def split_total(small, big, special):
    """The float64 total of sums of ``split_prod``'s parts: the infinite or
    NaN ``special`` sum where there is one (finite terms cannot change it),
    else ``small + big * 2**1100`` (+-inf where that overflows; the scaling
    is exact: a nonzero sum of scaled terms is a normal number)."""
    if special != 0.0:
        return special
    return small + (big * TERM_UNSCALE) * TERM_UNSCALE
