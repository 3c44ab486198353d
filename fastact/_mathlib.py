"""Scalar math primitives shared by every formula, in float64.

Formulas call these instead of ``math.*`` directly so that a backend can swap
the implementation of a primitive (a vectorizable polynomial exp on the CPU,
libdevice on CUDA) without touching any formula.

Besides the elementary functions this module holds the error-free transforms
that let a formula keep the bits that a plain float64 expression would lose:

* ``two_prod_err(a, b, p)``: the exact rounding error of ``p = a*b`` (Dekker,
  no FMA needed, so it does not depend on the target contracting ``a*b+c``;
  kernels must therefore not be compiled with the ``contract`` fast-math flag).
* ``mul_exp(p, z)``: ``p * exp(z)`` without the subnormal-underflow loss of
  ``exp(z)`` when ``|p|`` is large (it squares ``exp(z/2)`` instead).
"""

import math

from ._jit import scalar

# ---------------------------------------------------------------- primitives


@scalar
def exp(x):
    return math.exp(x)


@scalar
def expm1(x):
    return math.expm1(x)


@scalar
def log1p(x):
    return math.log1p(x)


@scalar
def tanh(x):
    return math.tanh(x)


@scalar
def erf(x):
    return math.erf(x)


@scalar
def erfc(x):
    return math.erfc(x)


# ------------------------------------------------------ error-free transforms

_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp's splitting constant for float64


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


@scalar
def mul_exp(p, z):
    """``p * exp(z)``, accurate even where ``exp(z)`` alone is subnormal.

    For ``z < -700`` ``exp(z)`` would carry an absolute error of half a
    subnormal ulp that ``p`` then magnifies; ``(p*h)*h`` with ``h = exp(z/2)``
    keeps full relative accuracy down to the final rounding.
    """
    if z >= -700.0:
        return p * exp(z)
    h = exp(0.5 * z)
    if h == 0.0:
        return math.copysign(0.0, p)
    return (p * h) * h
