"""float32 probes for mish, gelu (erf) and gelu_tanh, forward and backward.

Each probe widens x to float64, evaluates a short formula there and rounds
once to float32. In float64 nothing needs a carried low part: x^2 is exact,
exp's reduced argument is exact enough, a division is good to 2^-53, so the
error is the fits' (below 0.1 float32 ulp) plus the final rounding. Measured
on this machine (Zen 4, 512-bit loops, one thread), the float32 alternatives
were not faster:
- float32 throughout: mish forward without any carried part (two branches,
  one float32 division each) took as long as the float64 probe (~0.77 vs
  ~0.66 ns) and is invalid (2.55 ulp near x = -0.05, where the rational
  tanh(softplus(x)) has no damping); the carried parts it needs add ~15 ops;
- a float32 reciprocal seed (division on 16 lanes) with one float64 Newton
  step instead of the float64 division: slower (the two extra conversions
  cost more than the division they replace; a float32 <-> float64 round
  trip is ~0.15 ns per element here, the float64 division overlaps);
- piecewise polynomials picked by nested selects (4 pieces, 9 coefficients:
  +0.43 ns) or by a table gather (~2.9 ns) cost more than one rational
  variable w = 1/(a + K) (one division).

Formulas (float64 inside, default parameters):
- gelu(x) = x Phi(x): with a = |x|, Phi(-a) = exp(-a^2/2) M(a), M the scaled
  Mills ratio, fitted as M(a) = w P(w), w = 1/(a + K), one polynomial of
  degree 8 over a in [0, 14.4] (relative fit error ~2e-8); y = x Phi(-a)
  (x < 0) or x - x Phi(-a) (x >= 0); -0.0 below -14.4, x above 14.4.
- gelu'(x) = Phi(x) + x phi(x) = exp(-a^2/2) G(a) (x < 0) or
  1 - exp(-a^2/2) G(a) (x >= 0), G(a) = M(a) - a/sqrt(2 pi) fitted as
  (a - a0) Q(w), a0 = 0.7518 its zero (a - a0 exact in float64): relative
  accuracy at the gradient's zero with no window.
- gelu_tanh(x) = x e/(1 + e), e = exp(z), z = 2 sqrt(2/pi) (x + 0.044715 x^3);
  x clamped to [-12, 6] (the result is -0.0 / x beyond).
- gelu_tanh'(x) = e (1 + e + x z') / (1 + e)^2: 1 + e + x z' cancels at the
  zero x0 = -0.75246 of the gradient; there exp's polynomial is made exact
  at x0's reduced argument (its constant term moved by its error there), so
  the rest of its error is ~4e-8 (r - r0), linear in the distance to x0 like
  the gradient itself: no window, no longer polynomial.
- mish(x) = x n/(n + 2), n = e (e + 2), e = exp(x) for every x <= 20 (e^4
  fits in float64, no branch); x above 20.
- mish'(x) = e B/(n + 2)^2, B = 4(1 + x) + e((6 + 4x) + e(4 + e)); B
  cancels at x0 = -1.19243: the same exp made exact at x0.
- exp(t) (t in [-700, 700]): k = round(t/ln2) by the 1.5 * 2^52 shift, one
  fma for r, a degree-6 polynomial (relative ~2e-9), 2^k added to the
  exponent bits.
- backward: g * float32(f'(x)) in float32 (two roundings, within 4 ulp; one
  conversion fewer than widening g).

Note: the catalog's grad_root of gelu_tanh (-0.7528244) and mish
(-1.1923834) are off; the zeros are -0.7524614 and -1.1924312 (mpmath).
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32

# gelu: w = 1/(a + K) with a = |x| clamped to AMAX (forward) / AMAX_B (backward)
_KF, _KB = 3.8, 4.2
_AMAX = 14.4  # gelu(x) rounds to -0.0 below -14.4; x Phi(-x) < 2**-25 x above 5.9
_AMAX_B = 15.0  # gelu'(x) is a subnormal down to -14.4, 0 below -15


def _fit_rel(vals, lo, hi, deg, n=400, iters=60):
    """Monomial coefficients (c0..c_deg, float64) of a near-minimax polynomial
    for the relative error on [lo, hi]: least squares at Chebyshev nodes on the
    Chebyshev basis, reweighted toward minimax (Lawson). ``vals(t)`` gives the
    target at the nodes (float64 array)."""
    from numpy.polynomial import Polynomial
    from numpy.polynomial import chebyshev as C

    k = np.arange(n)
    t = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (k + 0.5) / n)
    y = vals(t)
    s = (t - (lo + hi) / 2) / ((hi - lo) / 2)
    v = C.chebvander(s, deg)
    w = np.ones(n)
    for _ in range(iters):
        sw = np.sqrt(w)
        c, *_ = np.linalg.lstsq(v * (sw / np.abs(y))[:, None], sw * np.sign(y), rcond=None)
        e = np.abs(v @ c - y) / np.abs(y)
        w = w * e
        w /= w.sum()
    m, h = (lo + hi) / 2, (hi - lo) / 2
    p = Polynomial(C.cheb2poly(c))(Polynomial([-m / h, 1 / h]))
    return tuple(float(v) for v in p.coef)


def _exp_exact_at(cs, t0):
    """cs with c0 moved so that the polynomial equals exp(r0) at the reduced
    argument r0 of t0 (to float64 rounding)."""
    import mpmath as mp

    with mp.workdps(40):
        k = mp.nint(t0 / mp.log(2))
        r0 = t0 - k * mp.log(2)
        p = mp.mpf(0)
        for c in cs[::-1]:
            p = p * r0 + mp.mpf(c)
        return (float(mp.mpf(cs[0]) - (p - mp.exp(r0))),) + tuple(cs[1:])


def _fits():
    """(exp6, exp6 exact at mish's root, exp6 exact at gelu_tanh's root,
    gelu P, gelu Q, gelu root hi, lo)."""
    import mpmath as mp

    h = math.log(2.0) / 2 * (1 + 2.0**-20)
    e6 = _fit_rel(np.exp, -h, h, 6)
    with mp.workdps(30):
        c2 = 2 * mp.sqrt(2 / mp.pi)
        kk = mp.mpf("0.044715")

        def gt_grad(x):
            z = c2 * (x + kk * x**3)
            s = 1 / (1 + mp.exp(-z))
            return s + x * c2 * (1 + 3 * kk * x**2) * s * (1 - s)

        def mish_grad(x):
            e = mp.exp(x)
            return e * (4 * (1 + x) + e * ((6 + 4 * x) + e * (4 + e))) / (e * (e + 2) + 2) ** 2

        x_gt = mp.findroot(gt_grad, mp.mpf(-0.7525))
        x_mish = mp.findroot(mish_grad, mp.mpf(-1.1924))
        e6_mish = _exp_exact_at(e6, x_mish)
        e6_gt = _exp_exact_at(e6, c2 * (x_gt + kk * x_gt**3))

        def m(a):  # scaled Mills ratio Phi(-a) exp(a^2/2)
            return mp.ncdf(-a) * mp.exp(a * a / 2)

        inv_s2pi = 1 / mp.sqrt(2 * mp.pi)
        a0 = mp.findroot(lambda a: m(a) - a * inv_s2pi, mp.mpf(0.75))

        def p_vals(ws):
            return np.array([float(m(1 / mp.mpf(w) - _KF) / mp.mpf(w)) for w in ws])

        def q_vals(ws):
            out = []
            for w in ws:
                a = 1 / mp.mpf(w) - _KB
                out.append(float((m(a) - a * inv_s2pi) / (a - a0)))
            return np.array(out)

        p = _fit_rel(p_vals, 1 / (_AMAX + _KF), 1 / _KF, 8)
        q = _fit_rel(q_vals, 1 / (_AMAX_B + _KB), 1 / _KB, 7)
        a0_hi = float(a0)
        a0_lo = float(a0 - a0_hi)
    return e6, e6_mish, e6_gt, p, q, a0_hi, a0_lo


def probes(c):
    """[(\"op kind float32\", scalar function, Numba signature)]."""
    from fastact.scalar.registry import bitcasts

    fma, b2f64, scalar = c.fma, c.b2f64, c.scalar
    _, f2b64 = bitcasts(64)
    e6, e6_mish, e6_gt, pc, qc, a0_hi, a0_lo = _fits()

    inv_ln2, ln2 = 1.4426950408889634, math.log(2.0)
    shift = 6755399441055744.0  # 1.5 * 2**52: kf's low bits hold k
    shift_bits = np.int64(f2b64(np.float64(shift)))

    def make_exp(cs):
        a0, a1, a2, a3, a4, a5, a6 = cs

        @scalar
        def exp6(t):
            """exp(t) for t in [-700, 700] (float64), relative error ~2e-9."""
            kf = fma(t, inv_ln2, shift)
            k = kf - shift
            r = fma(-k, ln2, t)
            p = fma(fma(fma(fma(fma(fma(a6, r, a5), r, a4), r, a3), r, a2), r, a1), r, a0)
            return b2f64(f2b64(p) + ((f2b64(kf) - shift_bits) << np.int64(52)))

        return exp6

    exp6, exp_mish, exp_gt = make_exp(e6), make_exp(e6_mish), make_exp(e6_gt)

    p0, p1, p2, p3, p4, p5, p6, p7, p8 = pc
    q0, q1, q2, q3, q4, q5, q6, q7 = qc
    kf, kb = _KF, _KB
    amax, amax_b = F32(_AMAX), F32(_AMAX_B)
    zero = F32(0.0)

    def gelu(x):
        a = abs(x)
        ac = np.float64(amax if a > amax else a)  # NaN stays
        w = 1.0 / (ac + kf)
        p = fma(fma(fma(fma(fma(fma(fma(fma(p8, w, p7), w, p6), w, p5), w, p4), w, p3), w, p2), w, p1), w, p0)
        t = exp6(-0.5 * (ac * ac)) * (p * w)  # Phi(-a)
        xd = np.float64(x)
        y = F32(xd * t if xd <= 0.0 else fma(-xd, t, xd))  # -0.0 -> -0.0
        y = x if a > amax else y
        return F32(-0.0) if x < -amax else y

    def gelu_grad(g, x):
        a = abs(x)
        ac = np.float64(amax_b if a > amax_b else a)  # NaN stays
        w = 1.0 / (ac + kb)
        q = fma(fma(fma(fma(fma(fma(fma(q7, w, q6), w, q5), w, q4), w, q3), w, q2), w, q1), w, q0)
        t = exp6(-0.5 * (ac * ac)) * (((ac - a0_hi) - a0_lo) * q)  # exp(-a^2/2) G(a)
        return g * F32(t if x < zero else 1.0 - t)

    c2 = 2.0 * math.sqrt(2.0 / math.pi)
    c2k = c2 * 0.044715
    c2k3 = 3.0 * c2k
    lo_t, hi_t = F32(-12.0), F32(6.0)

    def gelu_tanh(x):
        xc = lo_t if x < lo_t else x  # NaN stays
        xc = np.float64(hi_t if xc > hi_t else xc)
        e = exp6(xc * fma(c2k, xc * xc, c2))
        y = F32(xc * e / (1.0 + e))
        return x if x > hi_t else y

    def gelu_tanh_grad(g, x):
        xc = lo_t if x < lo_t else x
        xc = np.float64(hi_t if xc > hi_t else xc)
        x2 = xc * xc
        e = exp_gt(xc * fma(c2k, x2, c2))
        d = 1.0 + e
        return g * F32((e * fma(xc, fma(c2k3, x2, c2), d)) / (d * d))

    lo_m, hi_m = F32(-120.0), F32(20.0)

    def mish(x):
        xc = lo_m if x < lo_m else x  # NaN stays
        xc = np.float64(hi_m if xc > hi_m else xc)
        e = exp6(xc)
        n = e * (e + 2.0)
        y = F32((xc * n) / (n + 2.0))
        return x if x > hi_m else y

    def mish_grad(g, x):
        xc = lo_m if x < lo_m else x
        xc = np.float64(hi_m if xc > hi_m else xc)
        e = exp_mish(xc)
        b = fma(e, fma(e, 4.0 + e, fma(4.0, xc, 6.0)), fma(4.0, xc, 4.0))
        d = fma(e, e + 2.0, 2.0)
        return g * F32((e * b) / (d * d))

    f1, f2 = "float32(float32)", "float32(float32, float32)"
    return [
        ("mish forward float32", mish, f1),
        ("mish backward float32", mish_grad, f2),
        ("gelu forward float32", gelu, f1),
        ("gelu backward float32", gelu_grad, f2),
        ("gelu_tanh forward float32", gelu_tanh, f1),
        ("gelu_tanh backward float32", gelu_tanh_grad, f2),
    ]
