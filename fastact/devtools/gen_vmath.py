"""Generate fastact/scalar/generated/vmath_coeffs.py: polynomial coefficients for fastact/scalar/vmath.py.

Each polynomial is a Chebyshev fit (mpmath.chebyfit, 300 bits) in monomial
form, highest degree first, chosen as the lowest degree whose relative fit
error is below 2**-60 on its interval (2**-58 for EXP_DD_P, see below, and
2**-12 for ERFC_SLOPE, which only scales a correction of relative size 2**-50).

erf/erfc use fdlibm's rational approximations (FreeBSD msun s_erf.c, below),
emitted as one numerator and one denominator whose coefficients are selected
per interval, so that a vectorized loop evaluates one rational function
instead of all four.

Run: python -m fastact.devtools.gen_vmath [--check]
"""

import pathlib
import sys

import mpmath as mp

from fastact.devtools.codegen import horner, log_q, write_or_check  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "fastact" / "scalar" / "generated" / "vmath_coeffs.py"
TARGET = mp.mpf(2) ** -60
RED = mp.log(2) / 2 + mp.mpf("1e-3")  # |r| after reduction by multiples of ln2, with slack


def fit(f, a, b, lo=3, hi=40, target=TARGET):
    a, b = mp.mpf(a), mp.mpf(b)
    fmin = min(abs(f(a + (b - a) * k / 64)) for k in range(65))
    for degree in range(lo, hi):
        coeffs, err = mp.chebyfit(f, [a, b], degree, error=True)
        if err < target * fmin:
            return [float(c) for c in coeffs], degree
    raise RuntimeError("no fit")


def exp_p(r):
    # (exp(r) - 1 - r) / r^2, analytic at 0
    if abs(r) < mp.mpf("1e-20"):
        return mp.mpf(1) / 2 + r / 6
    return (mp.expm1(r) - r) / r**2


def tanh_p(z):
    # (tanh(x) - x) / x^3 as a function of z = x^2, analytic at 0
    if z == 0:
        return mp.mpf(-1) / 3
    x = mp.sqrt(z)
    return (mp.tanh(x) - x) / (x * z)


def erfc_slope(z):
    # -d/dx erfc(x) = 2/sqrt(pi) exp(-x^2), as a function of z = x^2
    return 2 / mp.sqrt(mp.pi) * mp.exp(-z)


# From FreeBSD msun lib/msun/src/s_erf.c (fdlibm):
#   Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
#   Developed at SunPro, a Sun Microsystems, Inc. business.
#   Permission to use, copy, modify, and distribute this software is freely
#   granted, provided that this notice is preserved.
# Each interval's numerator and denominator, lowest degree first.
FDLIBM_ERF = {
    # |x| < 0.84375: erf(x) = x + x * pp(x^2)/qq(x^2)
    "small": (
        ["1.28379167095512558561e-01", "-3.25042107247001499370e-01", "-2.84817495755985104766e-02",
         "-5.77027029648944159157e-03", "-2.37630166566501626084e-05"],
        ["1", "3.97917223959155352819e-01", "6.50222499887672944485e-02", "5.08130628187576562776e-03",
         "1.32494738004321644526e-04", "-3.96022827877536812320e-06"],
    ),
    # |x| < 1.25: erf(x) = erx + pa(s)/qa(s), s = |x| - 1
    "mid": (
        ["-2.36211856075265944077e-03", "4.14856118683748331666e-01", "-3.72207876035701323847e-01",
         "3.18346619901161753674e-01", "-1.10894694282396677476e-01", "3.54783043256182359371e-02",
         "-2.16637559486879084300e-03"],
        ["1", "1.06420880400844228286e-01", "5.40397917702171048937e-01", "7.18286544141962662868e-02",
         "1.26171219808761642112e-01", "1.36370839120290507362e-02", "1.19844998467991074170e-02"],
    ),
    # |x| < 1/0.35: erfc(x) = exp(-x^2 - 0.5625 + ra(w)/sa(w)) / x, w = 1/x^2
    "near": (
        ["-9.86494403484714822705e-03", "-6.93858572707181764372e-01", "-1.05586262253232909814e+01",
         "-6.23753324503260060396e+01", "-1.62396669462573470355e+02", "-1.84605092906711035994e+02",
         "-8.12874355063065934246e+01", "-9.81432934416914548592e+00"],
        ["1", "1.96512716674392571292e+01", "1.37657754143519042600e+02", "4.34565877475229228821e+02",
         "6.45387271733267880336e+02", "4.29008140027567833386e+02", "1.08635005541779435134e+02",
         "6.57024977031928170135e+00", "-6.04244152148580987438e-02"],
    ),
    # |x| < 28: the same with rb/sb
    "far": (
        ["-9.86494292470009928597e-03", "-7.99283237680523006574e-01", "-1.77579549177547519889e+01",
         "-1.60636384855821916062e+02", "-6.37566443368389627722e+02", "-1.02509513161107724954e+03",
         "-4.83519191608651397019e+02"],
        ["1", "3.03380607434824582924e+01", "3.25792512996573918826e+02", "1.53672958608443695994e+03",
         "3.19985821950859553908e+03", "2.55305040643316442583e+03", "4.74528541206955367215e+02",
         "-2.24409524465858183362e+01"],
    ),
}


def horner_fma(coeffs, var):
    """Horner form (highest degree first) with one fused multiply-add a step."""
    expr = repr(coeffs[0])
    for c in coeffs[1:]:
        expr = f"fma({var}, {expr}, {c!r})"
    return expr


def _selected(sets, i):
    a, b, c, d = (cs[i] for cs in sets)
    if a == b == c == d:
        return repr(a)
    return f"({a!r} if small else ({b!r} if mid else ({c!r} if near else {d!r})))"


def selected_horner(sets, var, var_lo, name, compensated=4):
    """Source lines computing ``name`` + ``name``_lo, the polynomials ``sets``
    (lowest degree first, one per interval small/mid/near/far) with each
    coefficient chosen per interval, at ``var`` + ``var_lo``: Horner with
    fused multiply-adds, the last ``compensated`` steps with their rounding
    errors and ``var_lo`` carried in ``name``_lo (the final steps' roundings
    and the argument's own rounding dominate the error of a ratio that
    cancels)."""
    n = max(len(c) for c in sets)
    sets = [[float(v) for v in c] + [0.0] * (n - len(c)) for c in sets]
    expr = _selected(sets, n - 1)
    for i in range(n - 2, compensated - 1, -1):
        expr = f"fma({var}, {expr}, {_selected(sets, i)})"
    lines = [f"    {name} = {expr}", f"    {name}_lo = 0.0"]
    for i in range(compensated - 1, -1, -1):
        lines += [
            f"    c = {_selected(sets, i)}",
            f"    p = {var} * {name}",
            "    s = p + c",
            f"    {name}_lo = (fma({var}, {name}, -p) + two_sum_err(p, c, s)) + ({var} * {name}_lo + {var_lo} * {name})",
            f"    {name} = s",
        ]
    return lines


def render_erf():
    names = ("small", "mid", "near", "far")
    num = selected_horner([FDLIBM_ERF[k][0] for k in names], "v", "vl", "num")
    den = selected_horner([FDLIBM_ERF[k][1] for k in names], "v", "vl", "den")
    return [
        "",
        "",
        "# fdlibm's erf/erfc rational approximations, from FreeBSD msun s_erf.c:",
        "#   Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.",
        "#   Developed at SunPro, a Sun Microsystems, Inc. business.",
        "#   Permission to use, copy, modify, and distribute this software is freely",
        "#   granted, provided that this notice is preserved.",
        "# Numerator and denominator of the interval (small: |x| < 0.84375, in x^2;",
        "# mid: < 1.25, in |x| - 1; near: < 1/0.35 and far, in 1/x^2), each coefficient",
        "# selected per interval, at v + vl; each as a double-double (the last four",
        "# Horner steps compensated: the terms of R1/S1 grow with the degree, so the",
        "# rounding of the higher steps matters too).",
        "@scalar",
        "def erf_rational(v, vl, small, mid, near):",
        *num,
        *den,
        "    return num, num_lo, den, den_lo",
    ]


FMA_TABLES = ("EXP_DD_P", "ERFC_SLOPE")


def render():
    mp.mp.prec = 300
    tables = {
        # wide enough for expm1's unreduced range |x| < 0.7 (no cancellation in
        # (2^k - 1) + 2^k expm1(r) once |k| >= 1 means |x| >= 0.7)
        "EXP_P": fit(exp_p, -mp.mpf("0.75"), mp.mpf("0.75")),
        # s = f/(2+f) with f in [-0.5, sqrt(2) - 1]: |s| <= 1/3
        "LOG_Q": fit(log_q, 0, mp.mpf(1) / 9 * (1 + mp.mpf("1e-6"))),
        # tanh(x) = x + x^3 P(x^2) for |x| < 0.55
        "TANH_P": fit(tanh_p, 0, mp.mpf("0.3025") * (1 + mp.mpf("1e-6"))),
        # exp_p for the double-double exp of erf/erfc (|r| <= ln2/2): it enters as
        # r^2 P(r) <= 0.061 P, so 2**-58 keeps its share below 2**-62
        "EXP_DD_P": fit(exp_p, -RED, RED, target=mp.mpf(2) ** -58),
        # erfc(x + xl) = erfc(x) - xl * ERFC_SLOPE(x^2) for |x| < 1.25
        "ERFC_SLOPE": fit(erfc_slope, 0, mp.mpf("1.5625") * (1 + mp.mpf("1e-6")), lo=2, target=mp.mpf(2) ** -12),
    }
    lines = [
        '"""Generated by fastact/devtools/gen_vmath.py; do not edit.',
        "",
        "Each polynomial is written out as a Horner expression (not a loop over a",
        "tuple), so that Numba emits straight-line code the loop vectorizer accepts.",
        "Those of erf/erfc use fused multiply-adds (``fma``: one rounding and one",
        "instruction a step).",
        '"""',
        "",
        "from fastact.scalar.eft import two_sum_err",
        "from fastact.scalar.fma import fma, muladd",
        "from fastact.scalar.registry import scalar",
    ]
    for name, (coeffs, degree) in tables.items():
        lines += ["", "", f"# degree {degree}", "@scalar", f"def {name.lower()}(x):"]
        poly = horner_fma if name in FMA_TABLES else horner
        lines.append(f"    return {poly(coeffs, 'x')}")
    lines += render_erf()
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    write_or_check(OUT, render(), sys.argv)
