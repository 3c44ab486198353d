"""Generate fastact/scalar/generated/vmath32_coeffs.py: polynomial coefficients for fastact/scalar/vmath32.py.

Each polynomial is a Chebyshev fit (mpmath.chebyfit, 200 bits) in monomial
form, of the lowest degree whose truncation error meets its target, with the
coefficients then rounded to float32; the error of the rounded polynomial
(evaluated exactly, on a dense grid) is written next to each function. That
rounding costs about one float32 rounding of the polynomial's largest term,
the same order as the roundings of its evaluation, which the accuracy tests
of vmath32 measure end to end.

The erfc tail ``erfc(a) = exp(-a^2 + L(a)) / a`` with
``L(a) = log(a erfc(a) exp(a^2))`` (in [-1.18, -0.57] for a >= 0.5) is fitted
on four intervals that share one evaluation (the coefficients are selected
per lane): [0.5, 1), [1, 2) and [2, 3.5) in v = a - centre (exact, Sterbenz),
and [3.5, 10.5] in v = w - centre with w = 1/a^2, where L is a slowly varying
function of w and the rounding of w costs little (a polynomial in a would
need twice the degree there). L is written as ``C + L0 + L1 v + v^2 Q(v)``:
C is a short constant (a multiple of 2**-8) that joins the exact part of the
exp argument, and L1 is split into a 12-bit head (exact products with the
12-bit halves of v) and a float32 tail, so that the large terms of L enter
the exp argument without rounding.

Run: python -m fastact.devtools.gen_vmath32 [--check]
"""

import pathlib
import sys

import mpmath as mp
import numpy as np

from fastact.devtools.codegen import log_q, write_or_check  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "fastact" / "scalar" / "generated" / "vmath32_coeffs.py"

# |r| after reduction by multiples of ln2 (rounded k), with slack
RED = mp.mpf("0.3467")
ERF_SMALL = mp.mpf("0.5")  # erf, erfc = x + x P(x^2), 1 - ... below this (vmath32)
# the erfc tail pieces: (lo, hi, variable); vmath32 selects them with a < 1, a < 2, a < 3.5
TAIL = (("0.5", "1", "s"), ("1", "2", "s"), ("2", "3.5", "s"), ("3.5", "10.5", "w"))


def f32(v):
    return float(np.float32(float(v)))


def lit(v):
    """Source of a float32 constant (shortest digits that round-trip)."""
    return f"np.float32({np.float32(v)!s})"


def estrin(terms, var):
    """(statements, expression) of the polynomial sum terms[i] var^i in
    Estrin's scheme: var^2, var^4, ... and the pairs are independent, so the
    dependency chain is ~log2(degree) multiply-adds instead of Horner's
    degree, which matters once a kernel is latency- rather than
    throughput-bound (the out-of-order window holds only one or two
    iterations of the longer kernels). Each step is a ``muladd`` (one fused
    instruction where the target has FMA)."""
    stmts, level, power = [], list(terms), var
    while len(level) > 1:
        nxt = [f"muladd({power}, {level[i + 1]}, {level[i]})" for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        if len(level) > 1:
            sq = f"{var}{2 * (1 if power == var else int(power[len(var):]))}"
            stmts.append(f"{sq} = {power} * {power}")
            power = sq
    return stmts, level[0]


def grid(a, b, n=2001):
    return [a + (b - a) * k / (n - 1) for k in range(n)]


def max_err(f, coeffs, a, b, rel):
    worst = mp.mpf(0)
    for x in grid(a, b):
        e = abs(mp.polyval([mp.mpf(c) for c in coeffs], x) - f(x))
        if rel:
            e /= abs(f(x))
        worst = max(worst, e)
    return worst


def fit(f, a, b, target, rel, lo=1, hi=30):
    """Lowest-degree fit whose truncation error (unrounded coefficients)
    meets ``target``; returns the float32 coefficients and the error of the
    rounded polynomial, which is about one float32 rounding of its largest
    term (the same order as the rounding errors of its evaluation)."""
    a, b = mp.mpf(a), mp.mpf(b)
    for degree in range(lo + 1, hi):  # chebyfit's N terms: degree N - 1
        exact = mp.chebyfit(f, [a, b], degree)
        if max_err(f, exact, a, b, rel) < target:
            coeffs = [f32(c) for c in exact]
            return coeffs, degree - 1, max_err(f, coeffs, a, b, rel)
    raise RuntimeError("no fit")


def expm1_p3(r):
    # (expm1(r) - r - r^2/2) / r^3, analytic at 0
    if abs(r) < mp.mpf("1e-30"):
        return mp.mpf(1) / 6 + r / 24
    return (mp.expm1(r) - r - r * r / 2) / r**3


def exp_p2(r):
    # (expm1(r) - r) / r^2, analytic at 0
    if abs(r) < mp.mpf("1e-30"):
        return mp.mpf(1) / 2 + r / 6
    return (mp.expm1(r) - r) / r**2


def erf_p(z):
    # erf(x)/x - 1 as a function of z = x^2
    if z == 0:
        return 2 / mp.sqrt(mp.pi) - 1
    x = mp.sqrt(z)
    return mp.erf(x) / x - 1


def tail_l(a):
    return mp.log(a * mp.erfc(a)) + a * a


def fit_tail(target):
    """The L pieces, each at the lowest degree meeting ``target``:
    (centre, C, L0, L1h, L1l, [L2..Ln], degree, err) each."""
    pieces = []
    for lo, hi, var in TAIL:
        lo, hi = mp.mpf(lo), mp.mpf(hi)
        if var == "s":
            centre = (lo + hi) / 2
            f = lambda v, c=centre: tail_l(c + v)  # noqa: E731
        else:
            # v = w - centre is rounded, but |v| < 0.04 makes that ~2**-30
            centre = mp.mpf(f32((1 / hi**2 + 1 / lo**2) / 2))  # as vmath32 subtracts it
            f = lambda v, c=centre: tail_l(1 / mp.sqrt(c + v))  # noqa: E731
            lo, hi = 1 / hi**2, 1 / lo**2
        a, b = lo - centre, hi - centre
        big_c = mp.nint(f(0) * 256) / 256
        g = lambda v, f=f, big_c=big_c: f(v) - big_c  # noqa: E731
        for n in range(4, 30):
            coeffs, err = mp.chebyfit(g, [a, b], n, error=True)
            if err < target:
                break
        coeffs = coeffs[::-1]  # lowest degree first
        l0 = f32(coeffs[0])
        e1 = int(np.floor(np.log2(abs(float(coeffs[1])))))
        l1h = float(np.ldexp(np.round(np.ldexp(float(coeffs[1]), 11 - e1)), e1 - 11))  # 12 bits
        l1l = f32(coeffs[1] - l1h)
        rest = [f32(c) for c in coeffs[2:]]
        full = [mp.mpf(l0), mp.mpf(l1h) + mp.mpf(l1l)] + [mp.mpf(c) for c in rest]
        err = max(abs(mp.polyval(full[::-1], v) - g(v)) for v in grid(a, b))
        pieces.append((f32(centre), float(big_c), l0, l1h, l1l, rest, n - 1, err))
    nq = max(len(p[5]) for p in pieces)
    return [p[:5] + (p[5] + [0.0] * (nq - len(p[5])),) + p[6:] for p in pieces]


def select(values):
    """Nested selects of float32 constants on the piece flags p1, p2, ..."""
    expr = lit(values[-1])
    for i in range(len(values) - 2, -1, -1):
        inner = expr if i == len(values) - 2 else f"({expr})"
        expr = f"{lit(values[i])} if p{i + 1} else {inner}"
    return expr


def _fit_polys():
    """name -> (coeffs, degree, err, variable) of the fitted polynomials."""
    mp.mp.prec = 200
    return {
        # |r| <= ln2/2: r^3 P3(r) is below 0.0073 next to a result above 0.29,
        # so 2**-24 relative is ~2**-31 absolute
        "expm1_p3": fit(expm1_p3, -RED, RED, mp.mpf(2) ** -24, True) + ("r",),
        # exp(r) = 1 + r + r^2 P2(r): r^2 P2 is below 0.066 next to a result
        # above 0.7, so 2**-27 relative is ~2**-31 absolute
        "exp_p2": fit(exp_p2, -RED, RED, mp.mpf(2) ** -27, True) + ("r",),
        # s = f/(2+f) with f in [sqrt(1/2) - 1, sqrt(2) - 1]: |s| <= 3 - 2 sqrt(2)
        "log_q": fit(log_q, 0, (3 - 2 * mp.sqrt(2)) ** 2 * (1 + mp.mpf("1e-6")), mp.mpf(2) ** -24, True) + ("z",),
        # absolute 2**-29 (truncation): relative to erf(x) ~ x
        "erf_p": fit(erf_p, 0, ERF_SMALL**2 * (1 + mp.mpf("1e-6")), mp.mpf(2) ** -29, False) + ("z",),
    }


def _render_polys(polys):
    lines = []
    for name, (coeffs, degree, err, var) in polys.items():
        kind = "relative" if name != "erf_p" else "absolute"
        lines += ["", "", f"# degree {degree}, max {kind} error {float(err):.2e} (rounded coefficients)"]
        # c0 + x (Estrin of the rest): one rounding at the top, where Estrin's
        # last sum of two rounded halves would add up to half an ulp of P
        terms = [lit(c) for c in coeffs[::-1]]
        stmts, rest = estrin(terms[1:], var)
        expr = f"muladd({var}, {rest}, {terms[0]})"
        lines += ["@scalar", f"def {name}({var}):"] + [f"    {st}" for st in stmts]
        lines.append(f"    return {expr}")
    return lines


def _render_tail(tail):
    errs = ", ".join(f"{float(p[-1]):.2e}" for p in tail)
    degs = ", ".join(str(p[-2]) for p in tail)
    pieces = ", ".join(f"[{lo}, {hi}) in {'a' if v == 's' else '1/a^2'} - CENTRE" for lo, hi, v in TAIL)
    flags = ", ".join(f"p{i + 1} (a < {hi})" for i, (lo, hi, v) in enumerate(TAIL[:-1]))
    args = ", ".join(f"p{i + 1}" for i in range(len(TAIL) - 1))
    lines = [
        "",
        "",
        "# erfc tail: L(a) = log(a erfc(a) exp(a^2)) = C + L0 + L1 v + v^2 Q(v) on",
        f"# {pieces};",
        f"# degrees {degs}, max absolute error {errs} (rounded coefficients)",
        "@scalar",
        f"def erfc_tail_consts({args}):",
        f'    """(CENTRE, C, L0, L1h, L1l) of the piece selected by {flags}."""',
    ]
    names = ["centre", "big_c", "l0", "l1h", "l1l"]
    for i, nm in enumerate(names):
        lines.append(f"    {nm} = {select([p[i] for p in tail])}")
    lines.append(f"    return {', '.join(names)}")
    lines += ["", "", "@scalar", f"def erfc_tail_q(v, {args}):", '    """Q(v) of the selected piece."""']
    nq = len(tail[0][5])
    for j in range(nq):
        lines.append(f"    q{j} = {select([p[5][j] for p in tail])}")
    stmts, expr = estrin([f"q{j}" for j in range(nq)], "v")
    lines += [f"    {st}" for st in stmts]
    lines.append(f"    return {expr}")
    return lines


HEADER = [
    '"""Generated by fastact/devtools/gen_vmath32.py; do not edit.',
    "",
    "float32 polynomials for fastact/scalar/vmath32.py, written out in Estrin's scheme",
    "with float32 constants (a Python float would promote the arithmetic to",
    "float64), so that Numba emits straight-line float32 code.",
    '"""',
    "",
    "import numpy as np",
    "",
    "from fastact.scalar.fma import muladd",
    "from fastact.scalar.registry import scalar",
]


def render():
    polys = _fit_polys()
    tail = fit_tail(mp.mpf(2) ** -29)
    return "\n".join(HEADER + _render_polys(polys) + _render_tail(tail)) + "\n"


if __name__ == "__main__":
    write_or_check(OUT, render(), sys.argv)
