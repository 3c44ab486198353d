"""Scalar math primitives shared by every formula, in float64.

Formulas call these instead of ``math.*`` directly so that a backend can swap
the implementation of a primitive without touching any formula. exp, expm1,
log1p, tanh, erf and erfc are the vectorizable layer of ``vmath`` (pure
arithmetic, so the CPU loops vectorize).

Besides the elementary functions: ``mul_exp(p, z)``, ``p * exp(z)`` without
the subnormal-underflow loss of ``exp(z)`` when ``|p|`` is large (it squares
``exp(z/2)``); ``mul_exp_dd`` and ``mul_erfc_dd``, a product with exp / erfc
of a double-double argument rounded about once (vmath); and ``exp_dd``, exp
as a double-double. The error-free transforms (two_prod_err, two_sum_err)
are in ``eft``.
"""

import math

from fastact.scalar.eft import two_prod_err, two_sum_err
from fastact.scalar.registry import scalar
from fastact.scalar.vmath import verf, verfc, vexp, vexpm1, vlog1p, vmul_erfc_dd, vmul_exp_dd, vtanh

# ---------------------------------------------------------------- primitives


@scalar
def exp(x):
    return vexp(x)


@scalar
def expm1(x):
    return vexpm1(x)


@scalar
def log1p(x):
    return vlog1p(x)


@scalar
def tanh(x):
    return vtanh(x)


@scalar
def erf(x):
    return verf(x)


@scalar
def erfc(x):
    return verfc(x)


@scalar
def mul_erfc_dd(p, x, xl):
    """``p * erfc(x + xl)`` for a double-double argument, rounded about once,
    also where ``erfc`` alone would be subnormal."""
    return vmul_erfc_dd(p, x, xl)


@scalar
def mul_exp_dd(ph, pl, zh, zl):
    """``(ph + pl) * exp(zh + zl)`` rounded once (subnormal results on the
    subnormal grid)."""
    return vmul_exp_dd(ph, pl, zh, zl)


@scalar
def mul_half_exp_squared(p, z, h):
    """``(p*h)*h`` for ``h = exp(z/2)``: ``p * exp(z)`` without the loss of a
    subnormal ``exp(z)`` (half a subnormal ulp, magnified by a large ``|p|``);
    0 with p's sign once h underflows, NaN for NaN z."""
    if h == 0.0:
        return math.copysign(0.0, p) if z == z else z
    return (p * h) * h


@scalar
def mul_exp(p, z):
    """``p * exp(z)``, accurate even where ``exp(z)`` alone is subnormal.

    Below z = -700 through ``mul_half_exp_squared``; above, ``p * exp(z)``
    (one rounding less). Both are computed and one is selected, so kernels
    stay straight-line code.
    """
    tail = mul_half_exp_squared(p, z, exp(0.5 * z))
    return p * exp(z) if z >= -700.0 else tail


# ------------------------------------------------------- double-double exp
# For the rare places where even a correctly rounded exp is not enough (a
# result that cancels against exp(y) * S): exp(y) to about 2**-100.

_LN2_1 = 0.6931471803691238  # 32 significant bits: k * _LN2_1 is exact for |k| < 2**20
_LN2_2 = 1.9082149292705877e-10
_LN2_3 = 1.1612227229362532e-26
_INV_LN2 = 1.4426950408889634
_EXP_C_HI = (1.0, 1.0, 0.5, 0.16666666666666666, 0.041666666666666664, 0.008333333333333333, 0.001388888888888889, 0.0001984126984126984, 2.48015873015873e-05, 2.7557319223985893e-06, 2.755731922398589e-07, 2.505210838544172e-08, 2.08767569878681e-09, 1.6059043836821613e-10, 1.1470745597729725e-11, 7.647163731819816e-13, 4.779477332387385e-14, 2.8114572543455206e-15, 1.5619206968586225e-16, 8.22063524662433e-18, 4.110317623312165e-19, 1.9572941063391263e-20, 8.896791392450574e-22)
_EXP_C_LO = (0.0, 0.0, 0.0, 9.25185853854297e-18, 2.3129646346357427e-18, 1.1564823173178714e-19, -5.300543954373577e-20, 1.7209558293420705e-22, 2.1511947866775882e-23, -1.858393274046472e-22, 2.3767714622250297e-23, -1.448814070935912e-24, -1.20734505911326e-25, 1.2585294588752098e-26, 2.0655512752830745e-28, 7.03872877733453e-30, 4.399205485834081e-31, 1.6508842730861433e-31, 1.1910679660273754e-32, 2.2141894119604265e-34, 1.4412973378659527e-36, -1.3643503830087908e-36, -7.911402614872376e-38)


@scalar
def exp_dd(y):
    """exp(y) as a double-double (hi, lo), |error| ~ 2**-100 relative, for -745 < y < 709."""
    k = math.floor(y * _INV_LN2 + 0.5)
    t = y - k * _LN2_1  # exact (Sterbenz)
    p = k * _LN2_2
    pe = two_prod_err(k, _LN2_2, p)
    r = t - p
    rl = two_sum_err(t, -p, r) - pe - k * _LN2_3
    hi = _EXP_C_HI[22]
    lo = _EXP_C_LO[22]
    for n in range(21, -1, -1):
        ph = hi * r
        pl = two_prod_err(hi, r, ph) + lo * r
        s = ph + _EXP_C_HI[n]
        e = two_sum_err(ph, _EXP_C_HI[n], s) + pl + _EXP_C_LO[n]
        hi = s + e
        lo = e - (hi - s)
    lo += hi * rl  # exp(r + rl) = exp(r) (1 + rl)
    ki = int(k)
    return math.ldexp(hi, ki), math.ldexp(lo, ki)
