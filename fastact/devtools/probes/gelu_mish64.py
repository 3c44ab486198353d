"""float64 probes for mish, gelu (erf) and gelu_tanh, forward and backward.

Each is one exp (its own core below: degree-11 expm1, 2**k by bits, the
result kept as s (1 + u) with 2**64 folded into s so that products with it
round once and subnormal results round once at the end), one division
(vdivpd) and branch-free selects:

- mish: tanh(softplus(x)) as a rational in e = exp(-|x|), x - x 2e^2/(...)
  above 0 (the correction is small), x e (e + 2)/(e (e + 2) + 2) below;
- gelu: Phi(-|x|) = phi(a) P(a) / (a P(a) + S(a)), one rational of degree
  10/9 on [0, 38.75] instead of erfc (no interval selection, no second
  division); its derivative has the root as an exact factor;
- gelu_tanh: x / (1 + exp(-z)) with z as a double-double (z reaches -750).
The derivative roots of mish and gelu_tanh take a degree-8 polynomial in
x - root on a small window.
"""

from __future__ import annotations

import numpy as np

# exp core: expm1(r) = r + r^2 (e2 + e3 r + ... + e11 r^9) on |r| <= ln2/2, relative
# minimax (Lawson, mpmath): exp within 0.1 units of 2**-53 with these rounded
# coefficients (cores._fit_expm1(11), a float64 least-squares fit, is 1.3 off)
_E = (0.5000000000000011, 0.16666666666666413, 0.04166666666653025, 0.008333333333494335,
      0.001388888894360135, 0.00019841269506790164, 2.4801493132647698e-05, 2.755758624818923e-06,
      2.763023510421109e-07, 2.5000080062641922e-08)

# gelu, a = |x|: the Mills ratio R(a) = Phi(-a)/phi(a) = P(a) / (a P(a) + S(a))
# (P degree 10 with P(0) = 1, S degree 9: R = 1/(a + S/P), S/P ~ 1/a), so
# Horner's rounding in P and S (up to ~4 units of 2**-53 each where a is
# large and every term counts) enters R only times 1 - a R(a) <= 1, which is
# ~1/a^2 there: the plain ratio P/Q of the same degrees was 6.5 ulp off.
# gelu'(x) for x < 0 = phi(a) (a0 - a) T(a), T = TP / (TP - TU) (degrees
# 10/9, TU/TP ~ a0/a), a0 = 0.7518 the root of the derivative: the zero is an
# exact factor, so no window polynomial. Every coefficient is positive (a >= 0:
# Horner cannot cancel). phi's constant is K' = S(0)/2, S(0) the double
# nearest sqrt(2/pi), so that a phi(a) R(a) -> a/2 without a bias as a -> 0
# (sqrt(2/pi) rounded alone is 0.6 units off); R and T are fitted for K'
# (R K/K', T K/K'). Relative minimax (Lawson) with mpmath on [0, 39]: the
# denominators rounded, the numerators refitted and rounded one by one;
# rounded, R within 0.08 units of 2**-53, T within 0.15.
_RP = (1.0, 1.6943100756623501, 1.4198267224745211, 0.7618695750213524, 0.2874285788929187,
       0.07934484924570376, 0.016216828723288428, 0.002427435965825883, 0.00025583264703161915,
       1.7282700602558432e-05, 5.765530025148975e-07)
_RS = (0.7978845608028654, 0.9884836229513059, 0.626185846976141, 0.25750989817359893,
       0.07466283926043854, 0.01571092760212558, 0.002392870603017758, 0.0002546795402876214,
       1.7282700611121698e-05, 5.765530024703574e-07)
_TP = (1.0, 2.0184947457629043, 1.960154829396501, 1.191419092858419, 0.49939951834538815,
       0.15061467613694854, 0.033127305747372764, 0.005261372866197826, 0.0005801670399167433,
       4.039352076867805e-05, 1.3632419370509767e-06)
_TU = (0.4001571495045588, 0.6483889659206905, 0.5084446912667956, 0.24965570475455975,
       0.08405626200945324, 0.020079619431060087, 0.003405655997418346, 0.00039679601645014456,
       2.9004264629725724e-05, 1.0248737343799872e-06)
_A0_HI, _A0_LO = 0.7517915246935645, -1.4956759177009883e-17
_LNK_HI, _LNK_LO = -0.9189385332046727, -9.76598253322989e-18  # ln K' = ln(S(0)/2)

# the derivatives' zeros (mish, gelu_tanh): f'(x) = d q(d), d = (x - r_hi) - r_lo,
# q of degree 8 fitted (relative minimax, mpmath) on |d| < w, within 1.3 / 0.5
# units of 2**-53 rounded; w is where the generic formulas (whose sums cancel
# there) come back under ~5 ulp
_MISH_ROOT = (-1.1924312145154952, -4.8484829848031044e-17, 0.08)
_MISH_Q = (0.2669479140495345, 0.20473126408010836, 0.04190782104361806, -0.02027182272187079,
           -0.015821126572412733, -0.0033606820113337398, 0.0010924103542456405,
           0.0009892114468717506, 0.00025325092797022703)
_GT_ROOT = (-0.7524614220710163, 3.635560509207687e-17, 0.05)
_GT_Q = (0.4304000910248585, 0.38751844613578856, -0.015782853521847644, -0.11394448307902753,
         -0.016619328343254393, 0.019682306678208493, 0.0052610586564387175, -0.002421248028828625,
         -0.0009268856671197555)

# gelu_tanh: z = x (C + D x^2), C = 2 sqrt(2/pi), D = C * 0.044715, each a double-double
_C_HI, _C_LO = 1.5957691216057308, -9.96930880911092e-17
_D_HI, _D_LO = 0.07135481627260025, -6.175149918155315e-19


def probes(c):
    """[(\"op kind float64\", scalar function, Numba signature)]."""
    from fastact.scalar.registry import bitcasts

    fma, scalar, b2f64 = c.fma, c.scalar, c.b2f64
    f2b64 = bitcasts(64)[1]
    e2, e3, e4, e5, e6, e7, e8, e9, e10, e11 = _E
    inv_ln2, shift = 1.4426950408889634, 6755399441055744.0
    ln2_hi = 0.6931471803691238  # 28 bits: k ln2_hi is exact
    ln2_lo = 1.9082149292705877e-10  # ln2 - ln2_hi (mpmath; longdouble log(2) is 1e-20 off)
    lo = -752.5  # exp(lo) 2**64 is normal; every result below it rounds to 0
    twom64 = 2.0**-64
    p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10 = _RP
    q0, q1, q2, q3, q4, q5, q6, q7, q8, q9 = _RS
    t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10 = _TP
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9 = _TU
    lnk_hi, lnk_lo = _LNK_HI, _LNK_LO
    mr_hi, mr_lo, mr_w = _MISH_ROOT
    m0, m1, m2, m3, m4, m5, m6, m7, m8 = _MISH_Q
    gr_hi, gr_lo, gr_w = _GT_ROOT
    n0, n1, n2, n3, n4, n5, n6, n7, n8 = _GT_Q
    a0_hi, a0_lo = _A0_HI, _A0_LO
    c_hi, c_lo, d_hi, d_lo, d3_hi = _C_HI, _C_LO, _D_HI, _D_LO, 3.0 * _D_HI

    @scalar
    def expm1_poly(r):
        p = fma(fma(fma(fma(fma(e11, r, e10), r, e9), r, e8), r, e7), r, e6)
        return fma(fma(fma(fma(fma(p, r, e5), r, e4), r, e3), r, e2), r * r, r)

    @scalar
    def pow2_64(kk):
        """2**(k + 64), kk = k + shift as rounded by the reduction, k in
        [-1086, 0]: the low bits of kk's pattern are k's (no float-to-int
        conversion); the shift by 52 drops shift's exponent."""
        return b2f64((f2b64(kk) + np.int64(1087)) << np.int64(52))

    @scalar
    def exp64(h, l):
        """(s, u): exp(h + l) 2**64 = s (1 + u), s a power of two, for h <= 0
        (clamped to lo; NaN -> lo), |l| small; (1 + u) left unrounded so
        that a product with it rounds once: fma(v s, u, v s)."""
        hc = h if h > lo else lo
        kk = fma(hc, inv_ln2, shift)
        k = kk - shift
        r = fma(-k, ln2_lo, fma(-k, ln2_hi, hc)) + l
        return pow2_64(kk), expm1_poly(r)

    @scalar
    def two_sum_err(a, b, s):
        bb = s - a
        return (a - (s - bb)) + (b - bb)

    # ------------------------------------------------------------------ mish
    # x <= 0, e = exp(x): mish = x e (e + 2) / (e (e + 2) + 2), 2**64 e carried
    # as s (1 + u) (its subnormal results round once at the end);
    # x > 0, e = exp(-x): mish = x - x 2e^2 / (1 + 2e (1 + e)): one division

    def mish(x):
        xc = x if x > lo else lo
        xc = xc if xc < 40.0 else 40.0  # NaN -> 40
        s, u = exp64(-abs(xc), 0.0)
        e = fma(s, u, s) * twom64
        neg = x <= 0.0
        t = e + 2.0
        xs = xc * s
        num = fma(xs, u, xs) * t if neg else (xc * e) * (2.0 * e)
        den = fma(e, t, 2.0) if neg else fma(2.0 * e, e + 1.0, 1.0)
        q = num / den
        y = q * twom64 if neg else x - q
        return y if x == x else x

    def mish_grad(g, x):
        xc = x if x > lo else lo
        xc = xc if xc < 40.0 else 40.0
        s, u = exp64(-abs(xc), 0.0)
        es = fma(s, u, s)
        e = es * twom64
        neg = x <= 0.0
        # x <= 0: e b / dd^2, b = 4(1 + x) + e (6 + 4x + e (4 + e)), dd = e (e + 2) + 2
        b = fma(e, fma(e, e + 4.0, fma(4.0, xc, 6.0)), 4.0 * (1.0 + xc))
        # x > 0: 1 + 2e^2 (2 (1 + e)(x - e) - 1) / q0^2, q0 = 1 + 2e (1 + e)
        ope = 1.0 + e
        bp = fma(2.0 * ope, xc - e, -1.0)
        num = es * b if neg else (2.0 * e) * e * bp
        den = fma(e, e + 2.0, 2.0) if neg else fma(2.0 * e, ope, 1.0)
        q = num / (den * den)
        y = q * twom64 if neg else 1.0 + q
        dr = (x - mr_hi) - mr_lo
        qr = fma(fma(fma(fma(m8, dr, m7), dr, m6), dr, m5), dr, m4)
        qr = fma(fma(fma(fma(qr, dr, m3), dr, m2), dr, m1), dr, m0)
        y = dr * qr if abs(dr) < mr_w else y
        return g * y if x == x else x

    # ------------------------------------------------------------------ gelu
    # a = |x|, a W = a Phi(-a) = phi(a) a R(a), a R = a P / (a P + S) (the
    # rounding of a P enters times 1 - a R only); gelu = -a W (x < 0), x - a W
    # (x >= 0); gelu' = phi(a) (a0 - a) T(a) (x < 0), 1 - that (x >= 0). One
    # division each, no erfc. phi(a) = exp(-a^2/2 + ln K') with the constant
    # inside the reduced argument: no rounded product with it.

    @scalar
    def phi64(ac):
        """(s, u): phi(a) 2**64 = s (1 + u) for 0 <= a <= 38.75, a^2's rounding
        carried; a^2/2 + 0.92 is reduced by k ln2, to which the constant's high
        part adds exactly (|r| < 0.35 and both are multiples of 2**-53 where
        a^2/2 >= 0.5)."""
        h = ac * ac
        hc = -0.5 * h  # >= -750.8
        kk = fma(hc + lnk_hi, inv_ln2, shift)
        k = kk - shift
        t = fma(-k, ln2_hi, hc) + lnk_hi
        r = fma(-k, ln2_lo, t) + (lnk_lo - 0.5 * fma(ac, ac, -h))
        return pow2_64(kk), expm1_poly(r)

    def gelu(x):
        a = abs(x)
        ac = a if a < 38.75 else 38.75  # NaN -> 38.75; beyond, gelu rounds to -0 or x
        s, u = phi64(ac)
        pp = fma(fma(fma(fma(fma(p10, ac, p9), ac, p8), ac, p7), ac, p6), ac, p5)
        pp = fma(fma(fma(fma(fma(pp, ac, p4), ac, p3), ac, p2), ac, p1), ac, p0)
        ss = fma(fma(fma(fma(q9, ac, q8), ac, q7), ac, q6), ac, q5)
        ss = fma(fma(fma(fma(fma(ss, ac, q4), ac, q3), ac, q2), ac, q1), ac, q0)
        ap = ac * pp
        qs = (ap / (ap + ss)) * s
        w = fma(qs, u, qs) * twom64  # a W
        y = -w if x < 0.0 else x - w
        return y if x == x else x

    def gelu_grad(g, x):
        a = abs(x)
        ac = a if a < 38.75 else 38.75
        s, u = phi64(ac)
        tp = fma(fma(fma(fma(fma(t10, ac, t9), ac, t8), ac, t7), ac, t6), ac, t5)
        tp = fma(fma(fma(fma(fma(tp, ac, t4), ac, t3), ac, t2), ac, t1), ac, t0)
        tu = fma(fma(fma(fma(v9, ac, v8), ac, v7), ac, v6), ac, v5)
        tu = fma(fma(fma(fma(fma(tu, ac, v4), ac, v3), ac, v2), ac, v1), ac, v0)
        d = (a0_hi - ac) + a0_lo  # a0 - a; exact near a0 (Sterbenz)
        ds = (d * (tp / (tp - tu))) * s
        v = fma(ds, u, ds) * twom64
        y = v if x < 0.0 else 1.0 - v
        return g * y if x == x else x

    # ------------------------------------------------------------- gelu_tanh
    # x * sigmoid(z), z = x (C + D x^2) as a double-double (exp(z) magnifies
    # z's rounding by |z|, up to 750); e = exp(-|z|) with z's low part.

    @scalar
    def gt_z(xc):
        x2 = xc * xc
        x2l = fma(xc, xc, -x2)
        m = d_hi * x2
        ml = fma(d_hi, x2, -m) + (d_hi * x2l + d_lo * x2)
        t = c_hi + m
        tl = two_sum_err(c_hi, m, t) + (ml + c_lo)
        z = xc * t
        return z, fma(xc, t, -z) + xc * tl, x2, x2l

    def gelu_tanh(x):
        xc = x if x > -30.0 else -30.0
        xc = xc if xc < 30.0 else 30.0  # NaN -> 30
        z, zl, _, _ = gt_z(xc)
        neg = x <= 0.0
        s, u = exp64(z if neg else -z, zl if neg else -zl)
        e = fma(s, u, s) * twom64
        xs = xc * s
        q = (fma(xs, u, xs) if neg else x) / (1.0 + e)
        y = q * twom64 if neg else q
        return y if x == x else x

    def gelu_tanh_grad(g, x):
        xc = x if x > -30.0 else -30.0
        xc = xc if xc < 30.0 else 30.0
        z, zl, x2, x2l = gt_z(xc)
        neg = x <= 0.0
        h = z if neg else -z
        s, u = exp64(h, zl if neg else -zl)
        s = s if h > lo else 0.0  # x z' e(lo) would still be 2 subnormal ulps (to -inf)
        s2 = s * twom64
        e = fma(s2, u, s2)
        # z' = C + 3D x^2 = dz + dzl (c - dz is exact for |x| < 2.7, where it matters)
        dz = fma(d3_hi, x2, c_hi)
        dzl = fma(d3_hi, x2, c_hi - dz) + fma(d3_hi, x2l, c_lo)
        ope = 1.0 + e
        # x <= 0: e B / (1 + e)^2, B = 1 + e + x z' (cancels near the root: e unrounded, z' carried)
        bb = fma(xc, dz, 1.0 + s2) + fma(s2, u, xc * dzl)
        sb = s * bb
        # x > 0: (1 + e + x z' e) / (1 + e)^2
        num = fma(sb, u, sb) if neg else fma(xc * dz, e, ope)
        q = num / (ope * ope)
        y = q * twom64 if neg else q
        dr = (x - gr_hi) - gr_lo
        qr = fma(fma(fma(fma(n8, dr, n7), dr, n6), dr, n5), dr, n4)
        qr = fma(fma(fma(fma(qr, dr, n3), dr, n2), dr, n1), dr, n0)
        y = dr * qr if abs(dr) < gr_w else y
        return g * y if x == x else x

    f1, f2 = "float64(float64)", "float64(float64, float64)"
    return [
        ("mish forward float64", mish, f1),
        ("mish backward float64", mish_grad, f2),
        ("gelu forward float64", gelu, f1),
        ("gelu backward float64", gelu_grad, f2),
        ("gelu_tanh forward float64", gelu_tanh, f1),
        ("gelu_tanh backward float64", gelu_tanh_grad, f2),
    ]
