"""float32 evaluations of the transcendental activations.

``formulas`` defines every activation in float64; a float32 kernel may
evaluate that definition (widen, compute, round once) and be within 0.5 ulp,
but float64 arithmetic runs on half as many SIMD lanes and its exp needs a
degree-14 polynomial where float32 needs degree 6. The functions here are the
same mathematics evaluated for a float32 result: the transcendental core
(exp, expm1, log1p, tanh) runs in float32 (``_mathlib32``, <= 1-2 ulp), the
few operations around it in float64, and the result is rounded once to
float32 by the kernel. The catalog links each one to its activation
(``forward32`` / ``grad32``); the accuracy tests measure them against mpmath
with the float32 bounds (2 ulp forward, 4 ulp backward) and against the
float64 definition on millions of points.

Argument conventions: ``x`` is a float32, parameters are float64 (the
float32 parameter values, exactly); a function returns float64 (rounded once
by the kernel) or, where it is float32 throughout, float32.

Why the mixed precision is enough: a float32 exp with <= 1 ulp error enters
1/(1 + e), x/(1 + e), ... with a condition number <= 1, the float64
operations add ~2**-29 ulp, and the final rounding adds 0.5 ulp. Arguments
of exp that are themselves rounded (beta*x, x/alpha) are formed in float64
(a product of two float32 is exact there) and their float32 rounding error
``zl`` is carried as exp(z) = exp(zf) * (1 + zl).

Where exp(x) alone would be subnormal (x < -87.3) but p*exp(x) is not
(silu, mish), exp is taken of x + 64 ln2 and scaled by 2**-64 in float64;
exp(-x) is only ever taken where it cannot overflow (x >= -87).
"""

import numpy as np

from fastact.scalar.generated import rootpolys as RP
from fastact.scalar import formulas as F
from fastact.scalar.eft import two_prod_err32, two_sum_err
from fastact.scalar.registry import scalar
from fastact.scalar.mathlib32 import erfcf, expf, expm1f, log1pf, tanhf
from fastact.scalar.formulas import (
    GELU_ROOT,
    GELU_TANH_ROOT,
    GT_C2_HI,
    GT_K_HI,
    INV_SQRT2_HI,
    INV_SQRT_2PI,
    MISH_ROOT,
    SELU_SCALE,
    SELU_SCALE_ALPHA,
    SILU_ROOT,
    TWO_OVER_SQRT_PI,
    near_root,
    root_d,
)

_TAIL = -80.0  # below: p*exp(x) from exp(x + 64 ln2) * 2**-64 so exp keeps 24 bits
_SOFTPLUS_SWITCH = 16.0  # exp(-16) < ulp(16)/2 in float32
_LN2_64 = 44.3614195558365  # 64 ln2
_TWO_M64 = 2.0**-64


@scalar
def _d(x):
    return np.float64(x)


@scalar
def _recip(d):
    """1/d for a float64 d with |d| in [2**-126, 2**127] (every caller's
    denominator lies in [1, 6e37]): a float32 division refined by one Newton
    step in float64, relative error ~2**-46. A float64 division costs ~0.6 ns
    per element here (half the lanes, long latency), the float32 one ~0."""
    r = np.float64(np.float32(1.0) / np.float32(d))
    return r * (2.0 - d * r)


@scalar
def _split(z):
    """(zf, zl): the float32 nearest to the float64 ``z`` and the exact rest."""
    zf = np.float32(z)
    zl = z - np.float64(zf) if abs(z) < 1e30 else 0.0
    return zf, zl


# ------------------------------------------------------------------- sigmoid


# sigmoid and silu forward stay in float32 throughout: mixing float64 into a
# loop makes LLVM vectorize it 4 lanes wide instead of 8 (256-bit vectors on
# this target), which doubles the cost of the float32 exp (measured: 6.2 vs 3.7 ms per 2**22 elements). The
# rounding errors of 1 + e and of the division are carried instead
# (double-float arithmetic: two-sum, Dekker's product with a 12-bit split).
_F1 = np.float32(1.0)
# the tail threshold in float32; above it exp(-x) * 4097 (Dekker's split)
# also stays finite
_TAIL32 = np.float32(_TAIL)
# 64 ln2 as a float32 with 17 fractional bits (x + C_HI is exact for x in
# [-128, -64]) and the rest
_C_HI = np.float32(44.36141967773438)
_C_LO = np.float32(_LN2_64 - float(_C_HI))
_TWO_M64_32 = np.float32(2.0**-64)


@scalar(inline=True)
def _sigmoid32_from(e, up):
    """(q, c): sigmoid = q + c to ~2**-40 relative given e: num/(1 + e) with
    num = 1, e = exp(-x) where ``up`` (x >= -80), num = e = exp(x) below."""
    num = _F1 if up else e
    dh = _F1 + e
    dl = two_sum_err(_F1, e, dh)
    q = num / dh
    p = q * dh
    rho = ((num - p) - two_prod_err32(q, dh, p)) - q * dl  # num - p is exact (Sterbenz)
    # rho/dh: 1/dh is q where num = 1, and 1 where num = e (dh = 1 there)
    return q, rho * (q if up else _F1)


@scalar
def sigmoid(x):
    # 1/(1 + exp(-x)) with exp(-x) finite, exp(x)/(1 + exp(x)) below -80
    # (subnormal results survive); one exp either way
    up = x >= _TAIL32
    q, c = _sigmoid32_from(expf(-x if up else x), up)
    return q + c


@scalar
def silu(x):
    # x sigmoid(x) = x q + x c with the product's error carried. In the tail
    # (x < -80) x exp(x), with exp taken of x + 64 ln2 (exact in float32 with
    # C_HI) and scaled back by 2**-64 in one rounding; x > 80 is x. One exp:
    # its argument is selected per lane.
    up = x >= _TAIL32
    e = expf(-x if up else x + _C_HI)
    q, c = _sigmoid32_from(e, True)
    yh = x * q
    y = yh + (two_prod_err32(x, q, yh) + x * c)
    et = e * (_F1 + _C_LO)
    tail = ((x * et) * _TWO_M64_32) if et != np.float32(0.0) else np.float32(-0.0)
    if x > np.float32(80.0):
        return x
    if up:
        return y
    if x < _TAIL32:
        return tail
    return x  # NaN


@scalar
def sigmoid_grad(x):
    e = _d(expf(-abs(x)))
    r = _recip(1.0 + e)
    return e * r * r


# ---------------------------------------------------------------------- tanh


@scalar
def tanh(x):
    return _d(tanhf(x))


@scalar
def tanh_grad(x):
    # sech(x)^2 = (2h/(1 + h^2))^2, h = exp(-|x|): the relative error of h
    # enters q with the factor (1 - h^2)/(1 + h^2) <= 1, so no 1 - tanh^2
    # cancellation anywhere, small |x| included; 0 at +-inf, NaN stays NaN
    h = _d(expf(-abs(x)))
    q = 2.0 * h * _recip(1.0 + h * h)
    return q * q


# ----------------------------------------------------------------- elu family


@scalar
def elu(x, alpha):
    if x > 0.0:
        return _d(x)
    return alpha * _d(expm1f(x))


@scalar
def elu_grad(x, alpha):
    if x > 0.0:
        return 1.0
    return alpha * _d(expf(x))


@scalar
def selu(x):
    if x > 0.0:
        return SELU_SCALE * _d(x)
    return SELU_SCALE_ALPHA * _d(expm1f(x))


@scalar
def selu_grad(x):
    if x > 0.0:
        return SELU_SCALE
    return SELU_SCALE_ALPHA * _d(expf(x))


@scalar
def celu(x, alpha):
    tf, tl = _split(_d(x) / alpha)
    em = _d(expm1f(tf))
    # expm1(t + tl) = em + (1 + em) * tl to first order
    r = alpha * (em + (1.0 + em) * tl) if tl != 0.0 else alpha * em  # no inf*0
    if x > 0.0:
        return _d(x)
    return r


@scalar
def celu_grad(x, alpha):
    tf, tl = _split(_d(x) / alpha)
    r = _d(expf(tf)) * (1.0 + tl)
    if x > 0.0:
        return 1.0
    return r


# ----------------------------------------------------------- softplus family


@scalar
def _exp_neg_abs(z):
    """exp(-|z|) for a float64 z (float32 exp plus the first-order rest)."""
    zf, zl = _split(z)
    e = _d(expf(-abs(zf)))
    return e * (1.0 - zl) if z > 0.0 else e * (1.0 + zl)


@scalar
def softplus(x, beta):
    # log1p(exp(z))/beta, z = beta*x, is a chain of monotone roundings and
    # cannot overflow up to z = 16, where x + log1p(exp(-z))/beta takes over
    # (exp(-16) is below half an ulp of 16, so both sides round alike): the
    # result never wobbles by an ulp, as in the float64 definition
    if beta != 1.0:
        # measured: this path is up to 2 ulp off the rounded definition at
        # beta = 0.7 (hypothesis, x = 0.00833); other betas run the float64
        # definition. The default-beta ufunc has beta as a constant: the
        # branch folds away there.
        return F.softplus(_d(x), beta)
    z = beta * _d(x)
    up = z > _SOFTPLUS_SWITCH
    zf, zl = _split(-z if up else z)
    w = _d(expf(zf)) * (1.0 + zl)
    wf = np.float32(w)
    # log1p(w) = log1p(wf) + (w - wf)/(1 + w): w keeps the rest of beta*x
    lp = (_d(log1pf(wf)) + (w - _d(wf)) * _recip(1.0 + w)) / beta
    return _d(x) + lp if up else lp


@scalar
def softplus_grad(x, beta):
    z = beta * _d(x)
    e = _exp_neg_abs(z)
    r = _recip(1.0 + e)
    return r if z > 0.0 else (e * r if z <= 0.0 else z)


@scalar
def log_sigmoid(x):
    # -log1p(exp(-x)) down to x = -16 (monotone chain, exp(-x) <= e^16), then
    # x - log1p(exp(x)): -softplus(-x) with softplus's switch
    up = x > -_SOFTPLUS_SWITCH
    lp = _d(log1pf(expf(-x if up else x)))
    return -lp if up else _d(x) - lp


@scalar
def log_sigmoid_grad(x):
    e = _d(expf(-abs(x)))
    r = _recip(1.0 + e)
    return e * r if x >= 0.0 else r


# ---------------------------------------------------------------------- silu


@scalar
def _exp_scaled(z, tail):
    """exp(z) for a float64 z, times 2**64 when ``tail``: where exp(z) alone
    would be subnormal or nearly so (z < -80) it is taken as exp(z + 64 ln2),
    which is normal, and the caller scales the product by 2**-64 in float64.
    The float64 argument is split into a float32 and its exact rest."""
    zf, zl = _split(z + _LN2_64 if tail else z)
    return _d(expf(zf)) * (1.0 + zl)


@scalar
def _exp_for_tail(x):
    """exp(-|x|), times 2**64 in the tail x < -80."""
    return _exp_scaled(-abs(_d(x)), x < _TAIL)


# ---------------------------------------------------------------------- mish


@scalar
def mish(x):
    # tanh(softplus(x)) = n/(n + 2), n = e(e + 2), e = exp(x); for x >= 0 with
    # e = exp(-x): (1 + 2e)/(1 + 2e + 2e^2). In the tail tanh(log1p(e)) = e(1 + O(e)).
    e = _exp_for_tail(x)
    xd = _d(x)
    n = e * (e + 2.0)
    pos = x >= 0.0
    r = _recip(1.0 + 2.0 * e * (1.0 + e) if pos else n + 2.0)
    if pos:
        return xd * (1.0 + 2.0 * e) * r
    if x < _TAIL:
        return (xd * e) * _TWO_M64 if e != 0.0 else -0.0
    return xd * n * r


# ------------------------------------------------ derivatives crossing zero
# Within the root window (+-0.6 around the zero) the float64 definition's
# polynomial in x - root is evaluated as is (it is cheap and exact for
# float32); outside it the cancellation in (1 + x) + e magnifies exp's
# relative error by less than 1, so the float32 exp suffices.


@scalar
def silu_grad(x):
    # s * (1 + x*(1 - s))
    d = root_d(_d(x), SILU_ROOT)
    near = d * RP.silu_q(d)
    e = _exp_for_tail(x)
    xd = _d(x)
    r = _recip(1.0 + e)
    if near_root(xd, SILU_ROOT):
        return near
    if x >= 0.0:
        return (1.0 + xd * e * r) * r if e != 0.0 else 1.0  # no inf*0
    if x < _TAIL:
        return ((1.0 + xd) * e) * _TWO_M64 if e != 0.0 else -0.0
    return e * ((1.0 + xd) + e) * (r * r)


@scalar
def mish_grad(x):
    # tanh(sp) + x * sech(sp)^2 * sigmoid(x), sp = softplus(x)
    d = root_d(_d(x), MISH_ROOT)
    near = d * RP.mish_q(d)
    e = _exp_for_tail(x)
    xd = _d(x)
    if near_root(xd, MISH_ROOT):
        return near
    pos = x >= 0.0
    q = 1.0 + 2.0 * e * (1.0 + e)
    dd = e * (e + 2.0) + 2.0
    rq = _recip(q if pos else dd)
    if pos:
        g = (1.0 + 2.0 * e) * rq + 4.0 * ((xd * e) * e) * (1.0 + e) * (rq * rq)
        return g if e != 0.0 else 1.0
    if x < _TAIL:
        return ((1.0 + xd) * e) * _TWO_M64 if e != 0.0 else -0.0
    b = 4.0 * (1.0 + xd) + e * ((6.0 + 4.0 * xd) + e * (4.0 + e))
    return e * b * (rq * rq)


# ----------------------------------------------------------------- gelu tanh


@scalar
def _gelu_tanh_z(xc):
    """z = 2*sqrt(2/pi)*x*(1 + 0.044715 x^2) in float64 (|x| <= 30): its
    relative rounding error ~1e-16 is far below what exp(z) can show in float32."""
    return GT_C2_HI * xc * (1.0 + GT_K_HI * xc * xc)


@scalar
def gelu_tanh(x):
    # 0.5*x*(1 + tanh(u)) = x*sigmoid(z), z = 2u
    xd = _d(x)
    xc = min(max(xd, -30.0), 30.0)
    z = _gelu_tanh_z(xc)
    tail = z < _TAIL
    e = _exp_scaled(-abs(z), tail)
    r = _recip(1.0 + e)
    if x > 30.0:
        return xd
    if x < -30.0:
        return -0.0
    if x >= 0.0:
        return xd * r
    if tail:
        return (xd * e) * _TWO_M64
    if x < 0.0:
        return xd * e * r
    return xd  # NaN


@scalar
def gelu_tanh_grad(x):
    # sigmoid(z) + x z' sigmoid(z) (1 - sigmoid(z)), z' = 2c(1 + 3k x^2)
    xd = _d(x)
    d = root_d(xd, GELU_TANH_ROOT)
    near = d * RP.gelu_tanh_q(d)
    xc = min(max(xd, -30.0), 30.0)
    z = _gelu_tanh_z(xc)
    tail = z < _TAIL
    e = _exp_scaled(-abs(z), tail)
    dz = GT_C2_HI * (1.0 + 3.0 * GT_K_HI * xc * xc)
    r = _recip(1.0 + e)
    if near_root(xd, GELU_TANH_ROOT):
        return near
    if x > 30.0:
        return 1.0
    if x < -30.0:
        return -0.0
    if x >= 0.0:
        return (1.0 + xc * dz * e * r) * r
    if tail:
        return ((1.0 + xc * dz) * e) * _TWO_M64
    if x < 0.0:
        return ((1.0 + xc * dz * r) * r) * e
    return xd  # NaN


# ---------------------------------------------------------------------- gelu
# x Phi(x) = x/2 erfc(-x/sqrt2) from one float32 erfc (with the rounding of
# -x/sqrt2 carried to first order: erfc' = -2/sqrt(pi) exp(-u^2)) and one
# exp(-x^2/2); x^2 is exact in float64 for a float32 x. Below x = -9, where
# erfc(-x/sqrt2) would be subnormal before the product, the asymptotic
# series phi(x) S(x) of the definition takes over (9 terms: < 1e-9 there).


@scalar
def _mills_series(x):
    """S(x) with Phi(x) = phi(x)/|x| * S(x), asymptotic, for x <= -9 (the
    10th term there is below 2e-10, far under a float32 ulp)."""
    u = _recip(x * x)
    s = 0.0
    c = 34459425.0  # (2k-1)!! for k = 9 down to 1
    for k in range(9, 0, -1):
        s = (s + (c if k % 2 == 0 else -c)) * u
        c = c / (2 * k - 1)
    return 1.0 + s


@scalar
def _gelu_parts(x):
    """(xd, erfc(-x/sqrt2), exp(-x^2/2) [times 2**64 in the tail], tail)."""
    xd = _d(x)
    uf, ul = _split(-xd * INV_SQRT2_HI)
    z = -0.5 * (xd * xd)
    tail = z < _TAIL
    ephi = _exp_scaled(z, tail)
    ec = _d(erfcf(uf)) - ul * TWO_OVER_SQRT_PI * ephi
    return xd, ec, ephi, tail


@scalar
def _tail_x(xd):
    """x clamped to [-30, -9] for the series: every lane stays finite (x = 0
    would divide by zero, -inf would give inf/inf); beyond -30 exp(-x^2/2)
    is 0 anyway."""
    return max(min(xd, -9.0), -30.0)


@scalar
def gelu(x):
    xd, ec, ephi, tail = _gelu_parts(x)
    xt = _tail_x(xd)
    s = (-INV_SQRT_2PI * ephi) * _mills_series(xt)
    if x >= -9.0:
        return 0.5 * xd * ec
    if x < -9.0:
        return s * _TWO_M64 if tail else s
    return xd  # NaN


@scalar
def gelu_grad(x):
    # Phi(x) + x phi(x)
    xd, ec, ephi, tail = _gelu_parts(x)
    d = root_d(xd, GELU_ROOT)
    near = d * RP.gelu_q(d)
    if near_root(xd, GELU_ROOT):
        return near
    xt = _tail_x(xd)
    s = (INV_SQRT_2PI * ephi) * ((xt * xt - _mills_series(xt)) * _recip(xt))
    if x >= -9.0:
        return 0.5 * ec + xd * INV_SQRT_2PI * ephi if x <= 40.0 else 1.0
    if x < -9.0:
        return s * _TWO_M64 if tail else s
    return xd  # NaN
