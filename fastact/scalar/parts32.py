"""float32 building blocks of the activation formulas (``formulas32``, ``gelu32``).

exp times a power of two kept as parts, so that a product with it is
rounded once: ``exp_m`` (a pair, ~2**-30), ``sig_fast`` (1 + u unrounded,
2**-24.96) and ``exp_neg_scaled`` (the cheap core); 1/(1 + e) as a pair
(``recip_1p``); products of pairs rounded once (``times``, ``prod3``); the
sigmoid of an argument with a low part in two costs (``sigmoid_pair``,
monotone; ``sigmoid_fast``, within 1.4 ulp) and expm1 of x <= 0
(``expm1_neg``). Everything is float32 (see ``formulas32``).
"""

import numpy as np

from fastact.scalar.fma import fma
from fastact.scalar.registry import scalar
from fastact.scalar.vmath32 import _pow2i, exp_core32, exp_fast_parts, exp_parts, scale_fast

_F = np.float32
_F0 = _F(0.0)
_F1 = _F(1.0)
_SHIFT64 = np.int32(64)  # exp(x) * 2**64 keeps 24 bits down to x = -150
_TWO_M64_32 = _F(2.0**-64)
_LO = _F(-160.0)  # exp's argument clamp below: every result there is 0 anyway
_LO120 = _F(-120.0)  # exp(-120) 2**64 is normal; sigmoid(x), x sigmoid(x) are 0 below -110


@scalar
def exp_neg_scaled(ax, shift):
    """(es, e): es = exp(-ax) * 2**(64 + shift) (normal down to ax = 150 - shift),
    e = exp(-ax) (0 below 2**-126), for ax >= 0 or NaN (NaN -> garbage:
    callers restore NaN). Products with es are scaled by 2**-64 at the end,
    so that subnormal results keep their bits."""
    a = ax if ax < -_LO else -_LO
    k, u = exp_fast_parts(-a, _F0)
    return scale_fast(u, k + _SHIFT64 + shift), scale_fast(u, k)


@scalar
def exp_m(a, al):
    """(k, mh, ml): exp(a + al) = 2^k (mh + ml) to ~2**-30 (exp_parts carries
    the reduction's and the argument's rounding), for finite a in [-160, 89].
    Kept as a pair: a product e p rounded once is within ~0.5 ulp, where a
    rounded e could already be off by an ulp of the product (e and p e in
    different binades)."""
    k, th, tl = exp_parts(a, al)
    mh = th + tl
    return k, mh, tl - (mh - th)


@scalar
def times_pow2(m, k):
    """m 2^k, exact for normal results; 0 for k < -126 (callers use it for
    factors that only enter 1 + e, or with k shifted by 64)."""
    kc = max(min(k, np.int32(127)), np.int32(-127))
    return m * _pow2i(kc)  # _pow2i(-127) has all-zero bits: 0.0


@scalar
def recip_1p(e, el):
    """(r, rl): 1/(1 + e + el) = r + rl to ~2**-44 relative, for 0 <= e <= 1
    and a small el (the rounding error of e, or 0)."""
    d = _F1 + e
    dl = (e - (d - _F1)) + el  # e - (d - 1) is exact: e <= 1
    r = _F1 / d
    rho = fma(-r, d, _F1) - r * dl  # 1 - r (d + dl): fma(-r, d, 1) is exact
    return r, r * rho


@scalar
def times(a, r, rl):
    """a * (r + rl) rounded once (to ~2**-44)."""
    return fma(a, r, a * rl)


@scalar
def prod3(a, al, b, bl, r, rl):
    """(a + al) (b + bl) (r + rl) with the rounding of a*b carried: rounded
    about once."""
    p = a * b
    pl = fma(a, b, -p) + (a * bl + al * b)
    return fma(p, r, p * rl + pl * r)


@scalar
def sig_fast(x, xl):
    """(u, s, r, rl) for sigmoid(x + xl), xl a low part (the rounding of an
    argument like beta x, or 0): exp(-|x + xl|) 2**64 = (1 + u) s with s a
    power of two (0 below x = -120, where every result is 0) and 1 + u left
    unrounded (``exp_core32``: the reduction's and xl's rounding carried,
    2**-24.96), so that a product with e rounds once: e v = (v + u v) s;
    1/(1 + e) = r + rl, with e's rounding carried into 1 + e (without it
    sigmoid is not monotone near x = -0.45). Cheaper than ``sig_parts``
    (no exp pair)."""
    a = -abs(x)
    far = not (a > _LO120)  # NaN too: callers restore it
    al = _F0 if far else (-xl if x >= _F0 else xl)
    k, u = exp_core32(_LO120 if far else a, al)
    s = _F0 if far else _pow2i(k + _SHIFT64)
    es = fma(u, s, s)
    esl = fma(u, s, s - es)  # exact: (1 + u) s = es + esl
    r, rl = recip_1p(es * _TWO_M64_32, esl * _TWO_M64_32)
    return u, s, r, rl


@scalar
def sigmoid_fast(x, xl):
    """sigmoid(x + xl): r + rl for x >= 0; e (r + rl) = (r + u r + rl) s
    below, rounded once before the exact 2**-64 scaling (once more only into
    the subnormal range). Within 1.4 ulp, not monotone (exp's ~0.5 ulp): for
    gradients (log_sigmoid', softplus'), not sigmoid itself."""
    u, s, r, rl = sig_fast(x, xl)
    neg = ((r + fma(u, r, rl)) * s) * _TWO_M64_32
    y = r + rl if x >= _F0 else neg
    return y if x == x else x


@scalar
def sig_parts(z, zl):
    """(es, esl, e, r, rl) for sigmoid(z + zl): e = exp(-|z + zl|) (0 below
    2**-126: it only enters 1 + e), es + esl = e * 2**64 (normal down to z = -150,
    so that a product x e keeps its 24 bits where it is near or below the
    subnormal range: callers scale it by 2**-64 once, at the end),
    1/(1 + e) = r + rl."""
    zc = z if z > _LO else _LO  # NaN -> _LO (callers restore NaN)
    pos = zc >= _F0
    a = -zc if pos else zc
    al = -zl if (pos and a > _LO) else (zl if a > _LO else _F0)
    a = a if a > _LO else _LO
    k, mh, ml = exp_m(a, al)
    es = times_pow2(mh, k + _SHIFT64)
    esl = times_pow2(ml, k + _SHIFT64)
    e = times_pow2(mh, k)
    # e's rounding enters 1 + e: without it sigmoid is off by up to 0.2 ulp
    # before its final rounding, and not monotone (near x = -0.45)
    r, rl = recip_1p(e, times_pow2(ml, k))
    return es, esl, e, r, rl


@scalar
def sigmoid_pair(z, zl):
    """sigmoid(z + zl) rounded about once (NaN z -> NaN)."""
    es, esl, _, r, rl = sig_parts(z, zl)
    neg = fma(es, r, es * rl + esl * r) * _TWO_M64_32
    return times(_F1, r, rl) if z >= _F0 else (neg if z < _F0 else z)


@scalar
def expm1_neg(x):
    """expm1(x) for x <= 0 (elsewhere garbage: callers select; NaN -> -1:
    callers restore it): exp_core32's 2^k (1 + u) minus 1 in one fma, 2^k - 1
    being exact for k >= -24 (below, x < -16.6, the result rounds to -1
    anyway). u is x itself to first order for |x| < ln2/2 (k = 0), so small
    results keep their relative accuracy. Every 17th float32: elu within
    0.86 ulp. Half the cost of ``expm1f`` (no two-sums), which stays for
    arguments of either sign (celu with a negative alpha)."""
    xc = x if x > _F(-30.0) else _F(-30.0)  # k >= -44: 2^k is normal
    k, u = exp_core32(xc, _F0)
    s = _pow2i(k)
    y = fma(s, u, s - _F1)
    return y if x != _F0 else x  # -0 -> -0 (u is +0 there)
