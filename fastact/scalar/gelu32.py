"""gelu and its derivative in float32 (the erf form), for the float32 kernels.

Split from ``formulas32`` (same conventions: float32 throughout, errors
carried by fused multiply-adds, results float32) because it has its own
approximation: the scaled Mills ratio M(a) = Phi(-a) exp(a^2/2) in four
generated pieces (``generated/gelu32_coeffs.py``, ``devtools/gen_gelu32.py``).
"""

import math

import numpy as np

from fastact.scalar.eft import two_sum_err
from fastact.scalar.fma import fma
from fastact.scalar.formulas import INV_SQRT_2PI
from fastact.scalar.parts32 import prod3
from fastact.scalar.generated import gelu32_coeffs as G32
from fastact.scalar.generated import rootpolys as RP
from fastact.scalar.registry import scalar
from fastact.scalar.vmath32 import _pow2i, _scale, exp_parts

_F = np.float32
_F0 = _F(0.0)
_F1 = _F(1.0)
_F2 = _F(2.0)
_HALF32 = _F(0.5)

# x Phi(x), float32 throughout. |x| < 0.5: x (1/2 + x P(x^2)). a = |x| >= 0.5:
# Phi(-a) = exp(-a^2/2) M(a) with M the scaled Mills ratio (generated
# piecewise polynomials, generated/gelu32_coeffs.py), a^2 exact as a pair,
# M's last step and a M carried: gelu = -a Phi(-a) below -0.5 (rounded once,
# subnormal results included), x - a Phi(-a) above 0.5 (the term is < 0.16 x).
# gelu'(x) = Phi(x) + x phi(x): 1/2 + x S(x^2) for |x| < 0.5; exp(-a^2/2) G(a)
# with G = M(a) - a/sqrt(2 pi) below (zero at the root -0.7518, where the
# generated root polynomial takes over), 1 - exp(-a^2/2) G(a) above.
_GELU_ROOT32 = RP.ROOTS32["gelu"]
_PHI0_HI = _F(INV_SQRT_2PI)  # 1/sqrt(2 pi) as a float32 pair
_PHI0_LO = _F(INV_SQRT_2PI - float(_PHI0_HI))
_A_MAX = _F(15.0)  # exp(-a^2/2) M(a) a rounds to 0 beyond


@scalar
def _gelu_tail(x):
    """(ac, k, eh, el, mh, ml): a = |x| clamped to [0.5, 15], exp(-a^2/2) =
    2^k (eh + el), M(a) = mh + ml, both to ~2**-28."""
    ax = abs(x)
    ac = ax if ax > _HALF32 else _HALF32  # NaN -> 0.5 (callers restore NaN)
    ac = ac if ac < _A_MAX else _A_MAX
    a2 = ac * ac
    a2l = fma(ac, ac, -a2)
    k, eh, el = exp_parts(_F(-0.5) * a2, _F(-0.5) * a2l)
    p1 = ac < _F1
    p2 = ac < _F2
    p3 = ac < _F(3.5)
    # the far piece is in w = 1/a^2: 1/a and its square carried as pairs
    t = _F1 / ac
    tl = fma(-t, ac, _F1) * t
    w = t * t
    wl = fma(t, t, -w) + _F2 * (t * tl)
    c = G32.gelu_mills_centre(p1, p2, p3)
    v = (ac - c) if p3 else ((w - c) + wl)  # a - c is exact (Sterbenz)
    c0h, c0l, q = G32.gelu_mills(v, p1, p2, p3)
    vq = v * q
    mh = c0h + vq
    ml = two_sum_err(c0h, vq, mh) + (fma(v, q, -vq) + c0l)
    # far piece: M = (mh + ml) (t + tl)
    fh = mh * t
    fl = fma(mh, t, -fh) + (mh * tl + ml * t)
    return ac, k, eh, el, (mh if p3 else fh), (ml if p3 else fl)


@scalar
def gelu(x):
    # small |x|: x/2 + x^2 (c0 + t Q), x^2 = t + tl carried
    t = x * x
    tl = fma(x, x, -t)
    c0h, c0l, q = G32.gelu_small_p(t)
    p = c0h + fma(t, q, c0l)
    small = fma(t, p, fma(tl, p, _HALF32 * x))
    # |x| >= 0.5: a Phi(-a) = 2^k (1 + u) a M, a M = th + tl2 carried
    ac, k, eh, el, mh, ml = _gelu_tail(x)
    th = ac * mh
    tl2 = fma(ac, mh, -th) + ac * ml
    m = prod3(th, tl2, eh, el, _F1, _F0)  # a M exp(-a^2/2) 2^-k, rounded once
    neg = -_scale(m, k)
    kc = k if k > np.int32(-126) else np.int32(-126)  # the term is negligible below
    pos = fma(-m, _pow2i(kc), x)
    if abs(x) < _HALF32:
        return _F(math.copysign(small, x))  # x Phi(x) has the sign of x, also at -0
    if x > _F0:
        return pos
    return neg if x == x else x


@scalar
def gelu_grad(x):
    rt = _GELU_ROOT32
    d = (x - rt[0]) - rt[1]
    t = x * x
    c0h, c0l, q = G32.gelu_small_s(t)
    p = c0h + fma(t, q, c0l)
    small = fma(x, p, _HALF32)
    # G = M - a phi0 as a pair, then exp(-a^2/2) G
    ac, k, eh, el, mh, ml = _gelu_tail(x)
    ph = ac * _PHI0_HI
    pl = fma(ac, _PHI0_HI, -ph) + ac * _PHI0_LO
    gh = mh - ph
    gl = two_sum_err(mh, -ph, gh) + (ml - pl)
    g = prod3(gh, gl, eh, el, _F1, _F0)  # G exp(-a^2/2) 2^-k, rounded once
    neg = _scale(g, k)
    kc = k if k > np.int32(-126) else np.int32(-126)
    pos = fma(-g, _pow2i(kc), _F1)
    if abs(d) < rt[2]:
        return d * RP.gelu_q32(d)
    if abs(x) < _HALF32:
        return small
    if x > _F0:
        return pos
    return neg if x == x else x
