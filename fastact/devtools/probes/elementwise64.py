"""float64 elementwise probes: x -> y (forward), (grad, x) -> dx (backward),
at float64's contract (4 ulp forward, 8 backward), on ``cores.py``'s sigmoid
parts (sigmoid, silu, sigmoid', softplus', tanh') and on this module's own
cores (the others).

Own cores, with polynomials interpolated at import at Chebyshev nodes in
mpmath and rounded to float64 once (near-minimax), all selects, no calls:
- ``expm1n(a)``: expm1(a) for a <= 0 as 2^k u + (2^k - 1) in one fma, u =
  expm1(r), |r| <= ln2/2 (tanh, elu, selu, celu);
- ``exp64h(a)``: exp(a) 2^64 = (1 + u) c on a half-width reduction (|r| <=
  ln2/4, 2 polynomial terms fewer; c carries sqrt2 for odd k, from bits);
  the 2^64 keeps a subnormal exp(a) rounded once (softplus, log_sigmoid,
  log_sigmoid', celu', silu');
- ``log1p01(e)``: log1p(e) for e in [0, 1] without rounding 1 + e.
Timing on this machine (Zen 4, 512-bit loops): the loops are bound by the
FMA pipes (~1 multiply or fma per cycle per 8 lanes), so each formula is
counted in multiplies; adds, selects and integer ops run beside them.
"""

from __future__ import annotations

import math

import numpy as np


def _interp(f, a, b, n, dps=60):
    """Coefficients c0..cn (float64) of the polynomial interpolating f at
    n + 1 Chebyshev nodes of [a, b] (near-minimax), solved in mpmath."""
    import mpmath as mp

    with mp.workdps(dps):
        a, b = mp.mpf(a), mp.mpf(b)
        xs = [(a + b) / 2 + (b - a) / 2 * mp.cos(mp.pi * (i + mp.mpf(1) / 2) / (n + 1)) for i in range(n + 1)]
        m = mp.matrix([[x**j for j in range(n + 1)] for x in xs])
        c = mp.lu_solve(m, mp.matrix([f(x) for x in xs]))
        return tuple(float(c[j]) for j in range(n + 1))


def _exp_p(deg, frac=1.0):
    """c2..c_deg of expm1(r) ~ r + r^2 (c2 + c3 r + ...) on |r| <= frac ln2/2."""
    import mpmath as mp

    def f(r):  # (expm1(r) - r) / r^2 as its series: no cancellation at the nodes near 0
        return mp.fsum(r**j / mp.factorial(j + 2) for j in range(60))

    h = math.log(2.0) / 2 * frac * (1 + 2.0**-20)
    return _interp(f, -h, h, deg - 2)


_ZMAX = (0.5 / 2.5) ** 2  # s = f/(2+f) for f in [-0.25, 0.5]: |s| <= 0.2


def _log_q(deg):
    """q0..q_deg of R(z)/z, R(z) = (2 atanh(s) - 2s)/s = 2z/3 + 2z^2/5 + ..., z = s^2 in [0, _ZMAX]."""
    import mpmath as mp

    def f(z):
        return mp.fsum(2 * z**j / (2 * j + 3) for j in range(80))

    return _interp(f, 0.0, _ZMAX * (1 + 2.0**-20), deg)


def _ln2_lo(ln2):
    """ln2 - float64(ln2), rounded once (k ln2 = k ln2 + k ln2_lo to ~2^-106 relative)."""
    import mpmath as mp

    with mp.workdps(40):
        return float(mp.log(2) - mp.mpf(ln2))


def _silu_root(deg, w):
    """(root_hi, root_lo, q0..q_deg): silu'(x) ~ d Q(d), d = x - root, |d| <= w."""
    import mpmath as mp

    with mp.workdps(60):
        def g(x):
            s = 1 / (1 + mp.exp(-x))
            return s * (1 + x * (1 - s))

        x0 = mp.findroot(g, mp.mpf(-1.2784645427610738))
        hi = float(x0)
        lo = float(x0 - hi)
        dg = mp.diff(g, x0)
        q = _interp(lambda d: g(x0 + d) / d if abs(d) > 1e-30 else dg, -w, w, deg)
    return hi, lo, q


EXPM1_DEG = 11  # expm1(r) on |r| <= ln2/2 to ~0.4 ulp of 2^-53 relative (10: 25 ulp)
# (expm1 on the half-width reduction needs sqrt2's low part where 2^k c - 1
# cancels, two more selects: measured slower than the 2 fmas it saves)
EXP_DEG = 9  # exp(r) on |r| <= ln2/4 to ~0.6 ulp of 2^-53 (8: ~50 ulp)
LOG_DEG = 6  # R(z)/z on z <= 1/25 (5: 34 ulp)
ROOT_DEG, ROOT_W = 8, 0.08  # silu' near its zero (W 0.06: 5.6 ulp just outside)


def probes(c):
    """[(\"op kind float64\", scalar function, Numba signature)]."""
    from fastact.scalar.formulas import SELU_SCALE, SELU_SCALE_ALPHA
    from fastact.scalar.registry import bitcasts

    fma, scalar = c.fma, c.scalar
    b2f, f2b = bitcasts(64)
    sig_parts64, sigmoid64, twom64_d = c.sig_parts64, c.sigmoid64, c.twom64_d

    def sigmoid(x):
        return sigmoid64(x)

    def silu(x):
        es, r = sig_parts64(x)
        y = x * r if x >= 0.0 else ((x * es) * r) * twom64_d
        return y if x == x else x

    def sigmoid_grad(g, x):
        es, r = sig_parts64(x)
        y = g * (((es * r) * r) * twom64_d)
        return y if x == x else x

    def softplus_grad(g, x):
        return g * sigmoid64(x)

    def tanh_grad(g, x):
        es, r = sig_parts64(2.0 * x)
        y = g * ((((4.0 * es) * r) * r) * twom64_d)
        return y if x == x else x

    # ------------------------------------------------------------ own cores
    inv_ln2, shift = 1.4426950408889634, 6755399441055744.0  # 1.5 * 2^52: t - shift = round(t)
    ln2 = math.log(2.0)
    ln2_lo = _ln2_lo(ln2)
    bias0, bias64 = 1023, 1023 + 64
    twom64 = 2.0**-64
    pe = _exp_p(EXPM1_DEG, 1.0)[::-1]  # c_deg .. c2
    ph = _exp_p(EXP_DEG, 0.5)[::-1]
    mant_sqrt2 = f2b(math.sqrt(2.0)) & ((1 << 52) - 1)
    lq = _log_q(LOG_DEG)[::-1]

    @scalar
    def horner(cs, x):
        """cs[0] x^n + ... + cs[n] (unrolled: cs is a constant tuple)."""
        p = cs[0]
        for i in range(1, len(cs)):
            p = fma(p, x, cs[i])
        return p

    @scalar
    def expm1n(a):
        """expm1(a) for a <= 0 (-1 below -40), NaN -> NaN: a = k ln2 + r,
        u = expm1(r) = r + r^2 P(r), |r| <= ln2/2, then 2^k u + (2^k - 1) in
        one fma (2^k - 1 is exact). k = 0 for |a| < ln2/2: u alone, no
        second branch for small |a|. 2^k from t's bits: t = 1.5 2^52 + k."""
        a = -40.0 if a < -40.0 else a  # this order keeps NaN
        t = fma(a, inv_ln2, shift)
        k = t - shift
        r = fma(k, -ln2_lo, fma(k, -ln2, a))  # the first fma is exact
        u = fma(r * r, horner(pe, r), r)
        s = b2f((f2b(t) + bias0) << 52)  # (2^51 + k + bias) << 52: k + bias in the exponent field
        return fma(s, u, s - 1.0)

    @scalar
    def exp64h(a):
        """(u, c): exp(a) 2^64 = (1 + u) c for a in [-752, 0] (or NaN),
        left unrounded. Half-width reduction a = k ln2/2 + r, |r| <= ln2/4,
        so P has 2 terms fewer (degree 9: ~0.6 ulp of 2^-53 relative, plus
        0.6 where c carries sqrt2's rounding): c = 2^(j + 64) for even
        k = 2j, 2^(j + 64) sqrt2 for odd k, from t's bits by integer ops
        only (sqrt2's mantissa or-ed in), which run beside the fmas: 5-8%
        faster than the full-width reduction's 2 more fmas. 2^64: a product
        with a subnormal exp(a) rounds once (c stays normal down to -752)."""
        t = fma(a, 2.0 * inv_ln2, shift)
        k = t - shift
        r = fma(k, -0.5 * ln2_lo, fma(k, -0.5 * ln2, a))
        u = fma(r * r, horner(ph, r), r)
        tb = f2b(t)
        return u, b2f((((tb >> 1) + bias64) << 52) | ((-(tb & 1)) & mant_sqrt2))

    @scalar
    def log1p01(e):
        """log1p(e) for e in [0, 1] (or NaN), ~1 ulp: f = e, or (e - 1)/2 with
        ln2 added for e >= 0.5 (f exact either way: 1 + e is never rounded),
        s = f/(2 + f) in [-1/7, 1/5], log1p(f) = 2 atanh(s) = 2s + s R(s^2)
        and 2s = f - f s, so y = f - s (f - R): the rounding of s enters only
        through the small s f (fdlibm's f - hfsq + s (hfsq + R) in 2 fmas)."""
        big = e >= 0.5
        f = (e - 1.0) * 0.5 if big else e
        s = f / (2.0 + f)
        z = s * s
        y = fma(-s, fma(-z, horner(lq, z), f), f)
        return y + ln2 if big else y

    # ------------------------------------------------------------- probes
    selu_l, selu_la = SELU_SCALE, SELU_SCALE_ALPHA

    def tanh(x):
        # tanh|x| = -em/(2 + em), em = expm1(-2|x|): one formula from 0 to the saturation
        ax = abs(x)
        em = expm1n(-ax - ax)
        return np.copysign(-em / (2.0 + em), x)

    def elu(x):  # alpha = 1 (also celu's forward at alpha = 1)
        return expm1n(x) if x < 0.0 else x  # -0 and NaN fall through

    def selu(x):
        return selu_la * expm1n(x) if x < 0.0 else selu_l * x

    def celu_grad(g, x):  # alpha = 1: exp(x) for x <= 0
        u, c = exp64h(-752.0 if x < -752.0 else x)
        return g * (fma(u, c, c) * twom64) if not x > 0.0 else g

    def softplus(x):  # max(x, 0) + log1p(exp(-|x|))
        a = -abs(x)
        u, c = exp64h(-752.0 if a < -752.0 else a)
        lp = log1p01(fma(u, c, c) * twom64)
        return x + lp if x > 0.0 else lp

    def log_sigmoid(x):  # min(x, 0) - log1p(exp(-|x|))
        a = -abs(x)
        u, c = exp64h(-752.0 if a < -752.0 else a)
        lp = log1p01(fma(u, c, c) * twom64)
        return x - lp if x < 0.0 else -lp

    def log_sigmoid_grad(g, x):
        # sigmoid(-x): 1/(1 + e) for x < 0, e/(1 + e) else, e = exp(-|x|);
        # 8 ulp leave 1 + e's rounding uncarried
        a = -abs(x)
        u, c = exp64h(-752.0 if a < -752.0 else a)
        es = fma(u, c, c)
        r = 1.0 / fma(es, twom64, 1.0)
        return g * r if x < 0.0 else g * ((es * r) * twom64)

    root_hi, root_lo, rq = _silu_root(ROOT_DEG, ROOT_W)
    rq = rq[::-1]
    root_w = ROOT_W

    def silu_grad(g, x):
        # s (1 + x (1 - s)) with e = exp(-|x|), r = 1/(1 + e): r^2 (1 + e + x e)
        # for x >= 0, r^2 e ((1 + x) + e) for x < 0 ((1 + x) exact near the
        # root, so the cancellation there costs e's error only: ~0.5/|x - root|
        # ulp, up to 5.6 ulp just outside the window where c carries sqrt2);
        # within ROOT_W of the root d Q(d), d = x - root (two parts)
        xc = 752.0 if x > 752.0 else (-752.0 if x < -752.0 else x)  # NaN stays
        u, c = exp64h(-abs(xc))
        es = fma(u, c, c)
        e = es * twom64
        d1 = 1.0 + e
        r = 1.0 / d1
        pos = xc >= 0.0
        y = (r * r) * (fma(xc, e, d1) if pos else es * ((1.0 + xc) + e))
        y = y if pos else y * twom64
        d = (x - root_hi) - root_lo
        y = d * horner(rq, d) if abs(d) < root_w else y
        return g * y

    f1, f2 = "float64(float64)", "float64(float64, float64)"
    return [
        ("sigmoid forward float64", sigmoid, f1),
        ("silu forward float64", silu, f1),
        ("sigmoid backward float64", sigmoid_grad, f2),
        ("softplus backward float64", softplus_grad, f2),
        ("tanh backward float64", tanh_grad, f2),
        ("tanh forward float64", tanh, f1),
        ("elu forward float64", elu, f1),
        ("selu forward float64", selu, f1),
        ("celu forward float64", elu, f1),
        ("celu backward float64", celu_grad, f2),
        ("softplus forward float64", softplus, f1),
        ("log_sigmoid forward float64", log_sigmoid, f1),
        ("log_sigmoid backward float64", log_sigmoid_grad, f2),
        ("silu backward float64", silu_grad, f2),
    ]
