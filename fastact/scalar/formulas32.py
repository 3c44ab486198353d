"""float32 evaluations of the transcendental activations.

``formulas`` defines every activation in float64; a float32 kernel could
evaluate that definition (widen, compute, round once), but float64 runs on
half as many SIMD lanes and needs longer polynomials. The functions here are
the same mathematics evaluated in float32 throughout, for a float32 result
within the catalog's float32 bounds (2 ulp forward, 4 ulp backward), which
they spend on speed: no float64 operation anywhere (one would halve the
loop's vector width), and the rounding errors that matter carried with
fused multiply-adds (``fastact.scalar.fma``: a product's error is one fma, a
division is corrected by one fma), so that each result is rounded about
once. The catalog links each one to its activation (``forward32`` /
``grad32``); the accuracy tests measure them against mpmath, and
``python -m fastact.devtools.sweep32`` against the float64 kernels on every
float32 input.

The shared steps (exp as parts, 1/(1 + e) as a pair, products rounded once)
are in ``parts32``.

Conventions: ``x`` is a float32; parameters arrive as float64 holding float32
values (exactly) and are used as float32; results are float32.

exp: ``exp_parts`` / ``exp_fast_parts`` of ``vmath32`` give 2^k times a pair
(or 1 + u); where exp multiplies another factor the pair is kept (a rounded
exp in a coarser binade than the product would cost up to an ulp of it).
Where e = exp(x) alone would be subnormal (x < -87.3) but p e is not (silu,
mish, gelu), e is carried times 2**64 and the product scaled back once at
the end. Arguments of exp that are themselves rounded (beta x, x/alpha,
gelu_tanh's z, -x^2/2) are carried as pairs into exp's reduction.
"""

import math

import numpy as np

from fastact.scalar.eft import two_sum_err
from fastact.scalar.fma import fma
from fastact.scalar.formulas import (
    GT_C2_HI,
    GT_K_HI,
    SELU_SCALE,
    SELU_SCALE_ALPHA,
)
from fastact.scalar.generated import rootpolys as RP
from fastact.scalar.mathlib32 import expm1f, log1pf, tanhf
from fastact.scalar.parts32 import (
    _F0,
    _F1,
    _LO,
    _LO120,
    _SHIFT64,
    _TWO_M64_32,
    exp_m,
    exp_neg_scaled,
    expm1_neg,
    prod3,
    recip_1p,
    sig_fast,
    sig_parts,
    sigmoid_fast,
    sigmoid_pair,
    times,
    times_pow2,
)
from fastact.scalar.registry import scalar
from fastact.scalar.vmath32 import _scale, exp_parts

_SOFTPLUS_SWITCH = 16.0  # exp(-16) < ulp(16)/2 in float32


# Every function below is float32 throughout (a float64 operation in a
# float32 loop halves its vector width): the rounding errors that matter are
# carried with fused multiply-adds (a product's error is one fma, a division
# is corrected by one fma), so that the result is rounded about once after
# exp's own ~0.5 ulp.
_F = np.float32
_F2 = _F(2.0)
_SELU_S_HI = _F(SELU_SCALE)
_SELU_S_LO = _F(SELU_SCALE - float(_SELU_S_HI))
_SELU_SA_HI = _F(SELU_SCALE_ALPHA)
_SELU_SA_LO = _F(SELU_SCALE_ALPHA - float(_SELU_SA_HI))
_SILU_ROOT32 = RP.ROOTS32["silu"]
_SOFTPLUS_SWITCH32 = _F(_SOFTPLUS_SWITCH)
_HALF32 = _F(0.5)


# ------------------------------------------------------------------- sigmoid


@scalar
def sigmoid(x):
    # e = exp(-|x|) in (0, 1]: 1/(1 + e) for x >= 0, e/(1 + e) below (no
    # overflow; subnormal results keep their bits through the 2**64 tail
    # scaling); e's error enters with a factor <= 1, the rest is rounded once.
    # exp as a pair (``sig_parts``), not ``sigmoid_fast``: that one is
    # within 1.37 ulp, but its ~0.5 ulp exp makes adjacent results step down
    # (5 reversals near x = -0.45): sigmoid stays monotone at ~0.5 ulp
    return sigmoid_pair(x, _F0)


@scalar
def sigmoid_grad(x):
    # e/(1 + e)^2, e = exp(-|x|): symmetric, no 1 - s cancellation
    es, e = exp_neg_scaled(abs(x), np.int32(0))
    r, rl = recip_1p(e, _F0)
    r2 = r * r
    r2l = fma(r, r, -r2) + _F2 * (r * rl)
    y = fma(es, r2, es * r2l) * _TWO_M64_32
    return y if x == x else x


@scalar
def _x_sigmoid(x, z, zl, xc):
    """x sigmoid(z + zl) rounded about once; ``xc`` is x clamped to a finite
    range (products with e use it, so x = -inf gives -0, not -inf * 0)."""
    es, esl, _, r, rl = sig_parts(z, zl)
    pos = times(x, r, rl)
    neg = prod3(xc, _F0, es, esl, r, rl) * _TWO_M64_32
    return pos if z >= _F0 else neg


@scalar
def _x_sigmoid_grad(x, xc, dz, dzl, z, zl, d, near, half_width):
    """sigmoid(z) (1 + x z' (1 - sigmoid(z))), z' = dz + dzl, for z = z(x) with
    z(0) = 0 and z increasing: r (1 + t) with t = x z' e r for z >= 0;
    e r (1 + x z' r) below, whose last factor vanishes at the derivative's
    root, where ``near`` (d q(d)) is taken within ``half_width``; elsewhere
    1 + x z' r is carried as a pair."""
    es, esl, e, r, rl = sig_parts(z, zl)
    xd = xc * dz
    t = xd * e * r
    pos = fma(r, t, r + rl * (_F1 + _F2 * t))
    xdl = fma(xc, dz, -xd) + xc * dzl
    q = xd * r
    ql = fma(xd, r, -q) + (xd * rl + xdl * r)
    s = _F1 + q
    sl = two_sum_err(_F1, q, s) + ql
    neg = prod3(es, esl, r, rl, s, sl) * _TWO_M64_32
    neg = neg if neg != _F0 else _F(-0.0)  # below the root the derivative is < 0
    if abs(d) < half_width:
        return near
    if z >= _F0:
        return pos if x < _F(100.0) else _F1
    return neg if x == x else x


@scalar
def silu(x):
    # x sigmoid(x) = x (r + rl) for x >= 0, rounded to x above 17.3; below,
    # x e (r + rl) = (p + u p + pl) s with p + pl = x (r + rl), rounded once
    u, s, r, rl = sig_fast(x, _F0)
    xc = x if x > _LO120 else _LO120  # -inf: -120 * 0 = -0, not -inf * 0
    p = xc * r
    pl = fma(xc, r, -p) + xc * rl
    neg = ((p + fma(u, p, pl)) * s) * _TWO_M64_32
    y = p + pl if x >= _F0 else neg
    y = x if x > _F(20.0) else y
    # x sigmoid(x) has the sign of x, also at -0 and where it underflows
    return _F(math.copysign(y, x)) if x == x else x


@scalar
def silu_grad(x):
    # s (1 + x (1 - s)): zero at x = -1.278
    rt = _SILU_ROOT32
    d = (x - rt[0]) - rt[1]  # x - root_hi is exact in the window (Sterbenz)
    xc = x if x > _LO else _LO
    return _x_sigmoid_grad(x, xc, _F1, _F0, x, _F0, d, d * RP.silu_q32(d), rt[2])


# ---------------------------------------------------------------------- tanh


@scalar
def tanh(x):
    return tanhf(x)


@scalar
def tanh_grad(x):
    # sech(x)^2 = 4e/(1 + e)^2, e = exp(-2|x|): no 1 - tanh^2 cancellation;
    # 4e is exp(-2|x|) scaled by 2**2, exactly; 0 at +-inf, NaN stays NaN
    ax = abs(x)
    a = ax if ax < _F(80.0) else _F(80.0)
    es4, e = exp_neg_scaled(a + a, np.int32(2))
    r, rl = recip_1p(e, _F0)
    r2 = r * r
    r2l = fma(r, r, -r2) + _F2 * (r * rl)
    y = fma(es4, r2, es4 * r2l) * _TWO_M64_32
    return y if ax == ax else x


# ----------------------------------------------------------------- elu family


@scalar
def elu(x, alpha):
    y = x if x > _F0 else _F(alpha) * expm1_neg(x)
    return y if x == x else x


@scalar
def elu_grad(x, alpha):
    es, _ = exp_neg_scaled(-x if x <= _F0 else _F0, np.int32(0))
    return _F1 if x > _F0 else ((_F(alpha) * es) * _TWO_M64_32 if x <= _F0 else x)


@scalar
def selu(x):
    pos = fma(_SELU_S_HI, x, _SELU_S_LO * x) if x != _F(np.inf) else x
    m = expm1_neg(x)
    y = pos if x > _F0 else fma(_SELU_SA_HI, m, _SELU_SA_LO * m)
    return y if x == x else x


@scalar
def selu_grad(x):
    es, _ = exp_neg_scaled(-x if x <= _F0 else _F0, np.int32(0))
    neg = fma(_SELU_SA_HI, es, _SELU_SA_LO * es) * _TWO_M64_32
    return _SELU_S_HI if x > _F0 else (neg if x <= _F0 else x)


@scalar
def celu(x, alpha):
    # alpha expm1(x/alpha) for x <= 0, with the rounding of t = x/alpha
    # carried: expm1(t + tl) = em + (1 + em) tl
    a = _F(alpha)
    t = x / a
    tl = fma(-t, a, x) / a  # exact remainder, divided
    tl = tl if abs(t) < _F(1e30) else _F0
    em = expm1f(t)
    neg = fma(a, em, a * ((_F1 + em) * tl))
    return neg if x < _F0 else x  # celu(+-0) = +-0, NaN stays NaN


@scalar
def celu_grad(x, alpha):
    # exp(x/alpha) for x <= 0, x/alpha carried as a pair
    a = _F(alpha)
    t = x / a
    tl = fma(-t, a, x) / a
    tc = t if t > _LO else _LO
    tl = tl if t > _LO else _F0
    k, th, tlo = exp_parts(tc, tl)
    e = _scale(th + tlo, k)
    return _F1 if x > _F0 else (e if x <= _F0 else x)


# ----------------------------------------------------------- softplus family


@scalar
def _pair_prod(b, x):
    """(z, zl): b x as a pair (zl = 0 where the product is not finite)."""
    z = b * x
    zl = fma(b, x, -z)
    return z, (zl if zl == zl else _F0)


@scalar
def _softplus_pair(z, zl):
    """log(1 + exp(z + zl)): log1p(exp(z)) up to z = 16, where
    z + log1p(exp(-z)) takes over (exp(-16) is below half an ulp of 16)."""
    up = z > _SOFTPLUS_SWITCH32
    a = -z if up else z
    al = (-zl if up else zl) if a > _LO else _F0  # a clamped: its rest is meaningless
    a = a if a > _LO else _LO  # NaN -> _LO (callers restore NaN)
    k, th, tl = exp_parts(a, al)
    w = _scale(th + tl, k)
    return z + (zl + w) if up else log1pf(w)


@scalar
def softplus(x, beta):
    # log1p(exp(beta x))/beta with beta x as a pair; for beta = 1 (the
    # default ufunc has it as a constant) the products and division fold away
    b = _F(beta)
    z, zl = _pair_prod(b, x)
    y = _softplus_pair(z, zl) / b
    return y if x == x else x


@scalar
def softplus_grad(x, beta):
    b = _F(beta)
    z, zl = _pair_prod(b, x)
    return sigmoid_fast(z, zl)


@scalar
def log_sigmoid(x):
    # -softplus(-x)
    y = -_softplus_pair(-x, _F0)
    return y if x == x else x


@scalar
def log_sigmoid_grad(x):
    return sigmoid_fast(-x, _F0)  # 1 - sigmoid(x), without the cancellation


# ---------------------------------------------------------------------- mish
_MISH_ROOT32 = RP.ROOTS32["mish"]


@scalar
def _mish_parts(x):
    """(xc, es, e): x clamped to [-160, 20], e = exp(-|xc|) (0 below
    2**-126) and es = e * 2**64 (see sig_parts)."""
    xc = x if x > _LO else _LO
    xc = xc if xc < _F(20.0) else _F(20.0)
    a = -xc if xc >= _F0 else xc
    k, mh, _ = exp_m(a, _F0)
    return xc, times_pow2(mh, k + _SHIFT64), times_pow2(mh, k)


@scalar
def _ratio(nh, nl, dh, dl):
    """(q, ql): (nh + nl)/(dh + dl) = q + ql to ~2**-44, one division."""
    r = _F1 / dh
    q = nh * r
    rem = fma(-q, dh, nh) + (nl - q * dl)  # fma(-q, dh, nh) is exact
    return q, rem * r


@scalar
def _mish_pos_den(e):
    """(nh, nl, dh, dl): 1 + 2e and 1 + 2e + 2e^2 as pairs (e in [0, 1])."""
    e2 = e + e
    nh = _F1 + e2
    nl = two_sum_err(_F1, e2, nh)
    w = e2 * e
    dh = nh + w
    dl = two_sum_err(nh, w, dh) + (nl + fma(e2, e, -w))
    return nh, nl, dh, dl


@scalar
def _mish_neg_den(es, e):
    """(ns, nsl, dh, dl): n = e (e + 2) (times 2**64 like es) and n + 2, pairs."""
    u = _F2 + e
    ul = (_F2 - u) + e  # exact: e <= 2
    ns = es * u
    nsl = fma(es, u, -ns) + es * ul
    n = e * u
    dh = _F2 + n
    dl = two_sum_err(_F2, n, dh) + (fma(e, u, -n) + e * ul)
    return ns, nsl, dh, dl


@scalar
def mish(x):
    # x tanh(softplus(x)): tanh(log1p(e)) = n/(n + 2), n = e (e + 2),
    # e = exp(x), for x < 0; (1 + 2e)/(1 + 2e + 2e^2), e = exp(-x), above
    xc, es, e = _mish_parts(x)
    nh, nl, dh, dl = _mish_pos_den(e)
    qp, qpl = _ratio(nh, nl, dh, dl)
    ns, nsl, dh2, dl2 = _mish_neg_den(es, e)
    qn, qnl = _ratio(ns, nsl, dh2, dl2)
    neg = fma(xc, qn, xc * qnl) * _TWO_M64_32
    if x >= _F0:
        # x tanh(softplus(x)) has the sign of x: -0 stays -0
        return x if x > _F(20.0) else _F(math.copysign(fma(x, qp, x * qpl), x))
    return neg if x == x else x


@scalar
def mish_grad(x):
    # tanh(sp) + x sech(sp)^2 sigmoid(x), sp = softplus(x). x >= 0 (e =
    # exp(-x)): (1 + 2e)/Q + 4x e^2 (1 + e)/Q^2, Q = 1 + 2e + 2e^2; x < 0
    # (e = exp(x)): e b/(n + 2)^2, b = 4(1 + x) + e((6 + 4x) + e(4 + e)),
    # which vanishes at the root -1.192 (polynomial window)
    rt = _MISH_ROOT32
    d = (x - rt[0]) - rt[1]
    xc, es, e = _mish_parts(x)
    nh, nl, dh, dl = _mish_pos_den(e)
    qp, qpl = _ratio(nh, nl, dh, dl)
    rp = _F1 / dh
    b2 = (_F(4.0) * ((xc * e) * e)) * (_F1 + e) * (rp * rp)
    pos = qp + (qpl + b2)
    b = fma(e, fma(e, _F(4.0) + e, fma(_F(4.0), xc, _F(6.0))), _F(4.0) * (_F1 + xc))
    _, _, dh2, dl2 = _mish_neg_den(es, e)
    r = _F1 / dh2
    rl = r * (fma(-r, dh2, _F1) - r * dl2)
    r2 = r * r
    r2l = fma(r, r, -r2) + _F2 * (r * rl)
    p = es * b
    neg = fma(p, r2, p * r2l + fma(es, b, -p) * r2) * _TWO_M64_32
    # |mish'(x)| < 2**-150 below -108.65: a negative zero, as mish' < 0 there
    neg = _F(-0.0) if x < _F(-110.0) else neg
    if abs(d) < rt[2]:
        return d * RP.mish_q32(d)
    if x >= _F0:
        return pos if x < _F(20.0) else _F1
    return neg if x == x else x


# ----------------------------------------------------------------- gelu tanh


_GT_C2_HI = _F(GT_C2_HI)  # 2 sqrt(2/pi) as a float32 pair
_GT_C2_LO = _F(GT_C2_HI - float(_GT_C2_HI))
_GT_K_HI = _F(GT_K_HI)  # 0.044715 as a float32 pair
_GT_K_LO = _F(GT_K_HI - float(_GT_K_HI))
_GT_ROOT32 = RP.ROOTS32["gelu_tanh"]


@scalar
def _gelu_tanh_z(xc):
    """(z, zl, a, al): z + zl = 2 sqrt(2/pi) x (1 + 0.044715 x^2) to ~2**-40
    relative (exp(-|z|) magnifies z's error by |z|), a + al = 0.044715 x^2."""
    x2 = xc * xc
    x2l = fma(xc, xc, -x2)
    a = _GT_K_HI * x2
    al = fma(_GT_K_HI, x2, -a) + (_GT_K_HI * x2l + _GT_K_LO * x2)
    b = _F1 + a
    bl = two_sum_err(_F1, a, b) + al
    m = xc * b
    ml = fma(xc, b, -m) + xc * bl
    z = _GT_C2_HI * m
    zl = fma(_GT_C2_HI, m, -z) + (_GT_C2_HI * ml + _GT_C2_LO * m)
    return z, zl, a, al


@scalar
def gelu_tanh(x):
    # 0.5 x (1 + tanh(u)) = x sigmoid(z), z = 2u; x beyond +-30: x, -0
    xc = x if x > _F(-30.0) else _F(-30.0)
    xc = xc if xc < _F(30.0) else _F(30.0)
    z, zl, _, _ = _gelu_tanh_z(xc)
    y = _x_sigmoid(x, z, zl, xc)
    y = x if x > _F(30.0) else y
    # x sigmoid(z) has the sign of x, also where it underflows (x < -12)
    return _F(math.copysign(y, x)) if x == x else x


@scalar
def gelu_tanh_grad(x):
    # sigmoid(z) + x z' sigmoid(z) (1 - sigmoid(z)), z' = 2c (1 + 3k x^2)
    rt = _GT_ROOT32
    d = (x - rt[0]) - rt[1]
    xc = x if x > _F(-30.0) else _F(-30.0)
    xc = xc if xc < _F(30.0) else _F(30.0)
    z, zl, a, al = _gelu_tanh_z(xc)
    # z' = 2c (1 + 3a) as a pair: near the root its error is not damped
    t3 = _F(3.0) * a
    w = _F1 + t3
    wl = two_sum_err(_F1, t3, w) + (fma(_F(3.0), a, -t3) + _F(3.0) * al)
    dz = _GT_C2_HI * w
    dzl = fma(_GT_C2_HI, w, -dz) + (_GT_C2_HI * wl + _GT_C2_LO * w)
    return _x_sigmoid_grad(x, xc, dz, dzl, z, zl, d, d * RP.gelu_tanh_q32(d), rt[2])
