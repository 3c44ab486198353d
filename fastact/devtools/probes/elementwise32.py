"""float32 elementwise probes: x -> y (forward), (grad, x) -> dx (backward).

Each is the shortest formula found for its op at float32's contract (2 ulp
forward, 4 backward), on the cores of ``cores.py`` or the lean exp cores and
polynomials fitted here; where a carried low part is kept, its comment says
what the bound is without it.
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


# ------------------------------------------------------------ own fits
# Fitted when the probes are built (numpy only, ~1 s): weighted least
# squares on Chebyshev nodes, reweighted towards a minimax fit (Lawson), in
# float64 with long double targets; coefficients rounded to float32 one at a
# time from the lowest, each refit with the earlier ones fixed.


def _nodes(lo, hi, n=2000):
    t = np.cos(np.pi * (np.arange(n) + 0.5) / n)
    return np.longdouble(lo) + (np.longdouble(hi) - np.longdouble(lo)) * (t + 1) / 2


def _minimax32(t, target, weight, deg, iters=40):
    """float32 coefficients c_0..c_deg of sum c_i t^i ~ target, minimizing
    max |weight (poly - target)|."""
    fixed = []
    for i in range(deg + 1):
        rest = target - sum(f * t**j for j, f in enumerate(fixed))
        a = np.vander(t, deg + 1, increasing=True)[:, i:]
        w = np.ones(len(t))
        for _ in range(iters):
            sw = weight * np.sqrt(w)
            c, *_ = np.linalg.lstsq(a * sw[:, None], rest * sw, rcond=None)
            err = np.abs((a @ c - rest) * weight)
            w = w * err / (w * err).sum()
        fixed.append(float(F32(c[0])))
    return tuple(F32(v) for v in fixed)


def _fit_exp_p(deg, relative_to):
    """P with expm1(r) ~ r + r^2 P(r) on |r| <= ln2/2, the error relative to
    exp(r) (``"exp"``) or to expm1(r) (``"expm1"``: for results that are
    expm1 itself, as near 0 tanh and celu are)."""
    h = math.log(2.0) / 2
    r = _nodes(-h, h)
    r = r[np.abs(r) > 1e-6]
    m1 = np.expm1(r)
    w = r * r / (np.exp(r) if relative_to == "exp" else np.abs(m1))
    return _minimax32(r.astype(np.float64), ((m1 - r) / (r * r)).astype(np.float64),
                      w.astype(np.float64), deg)


def _fit_log1p_r(deg, centre):
    """R with log1p(e) ~ e + e^2 R(e - centre) on e in [0, 1], relative error.
    In t = e - centre (|t| <= 1/2) the terms decay, so neither float32
    coefficients nor Horner's roundings cancel (in e itself, near e = 1, both
    cost ~1.6 ulp: log1p alone was 1.66 ulp off at degree 7)."""
    e = _nodes(1e-9, 1.0)
    y = np.log1p(e)
    return _minimax32((e - np.longdouble(centre)).astype(np.float64),
                      ((y - e) / (e * e)).astype(np.float64), (e * e / y).astype(np.float64), deg)


def _silu_root32(deg, half_width):
    """(x0_hi, x0_lo, Q): silu'(x0 + d) ~ d Q(d) for |d| <= half_width, x0 =
    -1.2785 the root of silu' (1 + x + e^x = 0), relative error. The target
    has no cancellation: 1 + x + e^x = d + e0 expm1(d) with e0 = e^x0 = -(1 + x0)."""
    x0 = np.longdouble(-1.28)
    for _ in range(8):  # Newton on 1 + x + e^x
        x0 -= (1 + x0 + np.exp(x0)) / (1 + np.exp(x0))
    x0h = F32(x0)
    x0l = F32(x0 - np.longdouble(x0h))
    e0 = -(1 + x0)
    d = _nodes(-half_width, half_width, 400)
    d = d[np.abs(d) > 1e-9]
    e = np.exp(x0 + d)
    q = e * (1 + e0 * np.expm1(d) / d) / (1 + e) ** 2  # silu'(x0 + d) / d
    return x0h, x0l, _minimax32(d.astype(np.float64), q.astype(np.float64),
                                (1 / np.abs(q)).astype(np.float64), deg)


def probes(c):
    """[(\"op kind float32\", scalar function, Numba signature)]."""
    from fastact.scalar.formulas import SELU_SCALE, SELU_SCALE_ALPHA
    from fastact.scalar.registry import bitcasts

    fma, exp64x_32, expm1_32 = c.fma, c.exp64x_32, c.expm1_32
    sig_parts32, sigmoid32 = c.sig_parts32, c.sigmoid32
    lo32, twom64 = c.lo32, c.twom64
    one, zero, two, four = F32(1), F32(0), F32(2), F32(4)
    selu_l, selu_la = F32(SELU_SCALE), F32(SELU_SCALE_ALPHA)

    def sigmoid(x):
        return sigmoid32(x)

    def sigmoid_grad(g, x):
        u, s, r = sig_parts32(x)
        r2 = r * r
        r2l = fma(r, r, -r2)  # exact: e r^2 = (1 + u)(r2 + r2l) s, rounded once
        y = g * (((r2 + fma(u, r2, r2l)) * s) * twom64)
        return y if x == x else x

    def softplus_grad(g, x):
        return g * sigmoid32(x)

    def silu(x):
        # x / (1 + e) needs 1/(1 + e) as a pair r + rl (2.2 ulp with r alone)
        u, s, r = sig_parts32(x)
        a = -abs(x)
        e = fma(u, s, s) * twom64
        d = one + e
        dl = (one - d) + e
        r = one / d
        rl = (fma(-r, d, one) - dl * r) * r  # 1/(d + dl) - r to first order
        xr = x * r
        t = fma(x, rl, fma(x, r, -xr))  # x (r + rl) - xr
        y = xr + t if x >= zero else ((xr + fma(u, xr, t)) * s) * twom64
        y = x if x > F32(20.0) else y  # x sigmoid(x) rounds to x; at inf, t is inf - inf
        return y if x == x else x

    def tanh_grad(g, x):
        u, s, r = sig_parts32(two * x)
        r4 = (four * r) * r
        r4l = fma(four * r, r, -r4)
        y = g * (((r4 + fma(u, r4, r4l)) * s) * twom64)
        return y if x == x else x

    def elu(x):
        y = x if x > zero else expm1_32(x)
        return y if x == x else x

    def elu_grad(g, x):
        u, s = exp64x_32(x if x > lo32 else lo32)
        e = (fma(u, s, s) * twom64) if x > lo32 else zero
        y = g if x > zero else g * e
        return y if x == x else x

    def selu(x):
        y = selu_l * x if x > zero else selu_la * expm1_32(x)
        return y if x == x else x

    # ---- lean exp cores for the probes below (own fits; no carried parts)
    scalar, b2f32 = c.scalar, c.b2f32
    inv_ln2, shift = F32(1.4426950408889634), F32(12582912.0)
    ln2_hi = F32(0.693145751953125)  # 16 bits: k * ln2_hi is exact
    ln2_lo = F32(math.log(2.0) - 0.693145751953125)
    ln2f = F32(math.log(2.0))  # 21 bits: fma(-k, ln2f, a) is exact for |a| < 128
    e0, e1, e2, e3, e4 = _fit_exp_p(4, "exp")  # exp to 2**-28.3 (degree 6)
    m0, m1, m2, m3, m4 = _fit_exp_p(4, "expm1")  # expm1 to ~2**-26 relative

    @scalar
    def exp64_lean(a):
        """(u, s): exp(a) 2**64 = (1 + u) s, s = 2^(k + 64), for a in [-120, 0];
        (1 + u) s within ~0.1 ulp before it is rounded (r rounded once, after
        2 fmas; polynomial of degree 6). cores.exp64x_32 also carries r's
        rounding and has degree 7: not needed by the probes below."""
        k = fma(a, inv_ln2, shift) - shift
        r = fma(-k, ln2_lo, fma(-k, ln2_hi, a))
        u = fma(r * r, fma(fma(fma(fma(e4, r, e3), r, e2), r, e1), r, e0), r)
        return u, b2f32(np.int32((np.int32(k) + np.int32(127 + 64)) << np.int32(23)))

    @scalar
    def expm1_parts(a):
        """(u, k): exp(a) = (1 + u) 2^k (k a float), for a in [-30, 0]: r = a -
        k ln2f in one exact fma, the rest of k ln2 (k 1.9e-9) left out (where
        k != 0, exp is not the whole result: < 0.1 ulp of tanh, expm1), and u
        = expm1(r) fitted relative to itself, so that k = 0 gives expm1 to
        ~0.5 ulp."""
        k = fma(a, inv_ln2, shift) - shift
        r = fma(-k, ln2f, a)
        u = fma(r * r, fma(fma(fma(fma(m4, r, m3), r, m2), r, m1), r, m0), r)
        return u, k

    # ---- softplus, log_sigmoid: log1p(e), e = exp(-|x|) in (0, 1], by one
    # polynomial in e - 1/2 (no division, no libm): e + e^2 R(e - 1/2), R of
    # degree 8: every float32 within 1.75 ulp (degree 7: 0.02 ns faster, 1.98
    # ulp every 17th input; x + log1p rounded twice is most of it)
    r0, r1, r2, r3, r4, r5, r6, r7, r8 = _fit_log1p_r(8, 0.5)
    half = F32(0.5)

    @scalar
    def softplus_core(x):
        """max(x, 0) + log1p(exp(-|x|)); for x > 20 that is x (exp(-20) is far
        below half an ulp of x); +-inf -> inf, 0. NaN -> garbage (callers)."""
        a = -abs(x)
        u, s = exp64_lean(a if a > lo32 else lo32)  # below -120 e is 0 after the scaling
        e = fma(u, s, s) * twom64  # subnormal e (x < -87.3) rounded once: the result there
        t = e - half
        rr = fma(fma(fma(fma(fma(fma(fma(fma(r8, t, r7), t, r6), t, r5), t, r4), t, r3), t, r2), t, r1), t, r0)
        return (x if x > zero else zero) + fma(e * e, rr, e)

    def softplus(x):
        y = softplus_core(x)
        return y if x == x else x

    def log_sigmoid(x):
        y = -softplus_core(-x)
        return y if x == x else x

    two64 = F32(2.0**64)

    def log_sigmoid_grad(g, x):
        # sigmoid(-x) = 1/(1 + e) for x <= 0, e/(1 + e) above, e = exp(-|x|):
        # both as quotients by 2**64 (1 + e) = 2**64 + es (es = e 2**64, never
        # subnormal), so subnormal results (x > 87.3) are rounded once; one
        # plain division, nothing carried: 2.3 ulp of the bound's 4
        a = -abs(x)
        u, s = exp64_lean(a if a > lo32 else lo32)
        es = fma(u, s, s)
        y = g * ((two64 if x <= zero else es) / (two64 + es))
        return y if x == x else x

    # ---- tanh: (1 - e)/(1 + e), e = exp(-2|x|) = 2^k (1 + u), as
    # (2^-k - 1 - u) / (2^-k + 1 + u): 2^-k -+ 1 is exact (k >= -24; below,
    # tanh rounds to 1), so numerator and denominator are each rounded once
    # and the quotient once more: no cancellation (numerator -u for k = 0, where
    # u is expm1 to ~0.5 ulp relative), no carried low parts. Every float32
    # (step 1): max 1.97 ulp, at x = 0.52 (k = -1: both roundings cost up to
    # 0.75 ulp there). The forms -expm1/(2 + expm1) and 1 - 2e/(1 + e) round
    # a denominator just above 1 (half an ulp of 1 is 2**-24 of it): 2.5 ulp
    # unless its low part is carried (4 fmas more: 0.41 ns against 0.28)
    mag, sgn = np.int32(0x7FFFFFFF), np.int32(-2147483648)
    _, f2b = bitcasts(32)  # float32 -> int32 bits (cores has only the other way)

    def tanh(x):
        a = abs(x)
        a = a if a < F32(9.1) else F32(9.1)  # tanh rounds to 1 from 9.01; NaN -> 9.1
        u, k = expm1_parts(-(a + a))
        p = b2f32(np.int32((np.int32(127) - np.int32(k)) << np.int32(23)))  # 2^-k, k in [-27, 0]
        q = ((p - one) - u) / ((p + one) + u)
        y = b2f32((f2b(q) & mag) | (f2b(x) & sgn))  # odd, -0 stays -0
        return y if x == x else x

    # ---- celu (alpha = 1: x/alpha is x, celu is elu): expm1 for x <= 0 as
    # 2^k (1 + u) - 1 in one fma (2^k - 1 exact for k >= -44)
    def celu(x):
        a = x if x < zero else zero
        u, k = expm1_parts(a if a > F32(-30.0) else F32(-30.0))
        s = b2f32(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))
        y = x if x > zero else fma(s, u, s - one)
        return y if x == x else x

    @scalar
    def exp64_neg(x):
        """exp(min(x, 0)) 2**64, rounded once (x clamped to [-120, 0])."""
        a = x if x < zero else zero
        u, s = exp64_lean(a if a > lo32 else lo32)
        return fma(u, s, s)

    def celu_grad(g, x):
        y = g if x > zero else g * (exp64_neg(x) * twom64)
        return y if x == x else x

    selu_la64 = selu_la * twom64  # exact: scale * alpha rounded, times 2**-64

    def selu_grad(g, x):
        y = g * (selu_l if x > zero else exp64_neg(x) * selu_la64)
        return y if x == x else x

    # ---- silu': (1 + e + x e)/(1 + e)^2 for x >= 0 and e (1 + x + e)/(1 + e)^2
    # below, e = exp(-|x|), one division; 1 + e's rounding is carried into
    # the denominator (it alone costs an ulp: 4.7 ulp without). Near the root
    # x0 = -1.2785 (1 + x + e = 0) the result has no relative accuracy from
    # any rounded e: within |x - x0| < 1/4 it is d Q(d), d = (x - x0_hi) -
    # x0_lo (the first difference exact), Q of degree 6 (fastact's window
    # too). Every float32: max 3.51 ulp, at x = -0.84 (e, e (1 + x) + e^2,
    # the denominator and the quotient each rounded once).
    x0h, x0l, sq = _silu_root32(6, 0.25)
    q0, q1, q2, q3, q4, q5, q6 = sq
    quarter = F32(0.25)

    def silu_grad(g, x):
        a = -abs(x)
        u, s = exp64_lean(a if a > lo32 else lo32)
        es = fma(u, s, s)
        e = es * twom64
        xc = x if x > lo32 else lo32  # x e -> 0, not inf * 0, at +-inf
        xc = xc if xc < F32(100.0) else F32(100.0)
        d = one + e
        dl = (one - d) + e  # exact: e <= 1
        pos = fma(xc, e, dl) + d
        neg = fma(es, one + xc, es * e) * twom64  # e (1 + x) + e^2: 1 + x exact for x <= -1/2
        y = (pos if x >= zero else neg) / fma(d, d, (dl + dl) * d)
        dd = (x - x0h) - x0l
        near = dd * fma(fma(fma(fma(fma(fma(q6, dd, q5), dd, q4), dd, q3), dd, q2), dd, q1), dd, q0)
        y = g * (near if abs(dd) < quarter else y)
        return y if x == x else x

    f1, f2 = "float32(float32)", "float32(float32, float32)"
    return [
        ("sigmoid forward float32", sigmoid, f1),
        ("sigmoid backward float32", sigmoid_grad, f2),
        ("softplus backward float32", softplus_grad, f2),
        ("silu forward float32", silu, f1),
        ("tanh backward float32", tanh_grad, f2),
        ("elu forward float32", elu, f1),
        ("elu backward float32", elu_grad, f2),
        ("selu forward float32", selu, f1),
        ("softplus forward float32", softplus, f1),
        ("log_sigmoid forward float32", log_sigmoid, f1),
        ("log_sigmoid backward float32", log_sigmoid_grad, f2),
        ("tanh forward float32", tanh, f1),
        ("celu forward float32", celu, f1),
        ("celu backward float32", celu_grad, f2),
        ("selu backward float32", selu_grad, f2),
        ("silu backward float32", silu_grad, f2),
    ]
