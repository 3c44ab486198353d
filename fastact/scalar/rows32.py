"""float32 row kernels of the softmax family, vectorizable.

The float64 kernels of ``rows`` make one sequential pass with compensated
sums and a moving reference: exact to a few float64 ulps, but a loop-carried
chain that cannot use SIMD (~11 ns per element). A float32 row needs far
less, so every pass here is a loop LLVM vectorizes (float32 lanes wherever
the bound allows): the row (a few KB, in L1/L2 cache after the first pass) is
read several times, memory is read once and written once.

Forward, three passes:

* the maximum m and the NaN/+inf check, on integer keys (a float's bits made
  monotone: a signed integer max vectorizes, a float max does not);
* exp(x_i - c) = 2^k (1 + u) with the cheap float32 core
  (``vmath32.exp_fast_parts``, 2**-24.56 relative), u and 2^k kept in
  scratch rows (softmax), and the normaliser summed in float64 from each
  term's float32 value e and its exact rounding error (one fma:
  e + err = (1 + u) 2^k scaled, exactly), so the sum of millions of terms
  stays exact to ~2**-40, far below half a float32 ulp;
* softmax: y = (1 + u)(1/S) 2^k from the scratch rows (u and 2^k), with 1/S
  as a float32 pair and the product rounded once; log_softmax:
  (x - m) - lse in float64.

The reference c: exp turns the rounding error of an argument of size d into
d ulps, so x - c must be exact or carried. For a row whose maximum m lies in
[-32, 88], c = 0: every entry that matters (x >= m - 128) is its own exact
argument in the core's domain, the terms are exp(x) scaled by
2^(64 - round(m / ln2)) (softmax is the same for any c; log_softmax divides
the sum by exp(m), computed in float64). No two-sum: the common case, the
cheapest loop. Otherwise c = m, and the rounding of x - m (two-sum) goes
into ``exp_core32``, which carries it and the rounding of the reduced
argument (2**-24.96; the fast core with such an argument: 2**-24.14).
Entries more than 128 below the maximum are clamped there: their results
round to 0 either way. Terms are kept scaled so that none is subnormal and
the write rounds once, also into the subnormal range.

Accuracy (float32 ulps; tests/functions/test_rowwise.py against mpmath,
docs/accuracy.md): the core's relative error d enters an entry and the
normaliser, so softmax is within 2 d 2**24 + 0.5 ulp (1.86; measured 1.71 on
~10**7 random entries, 1.1 on the named rows); log_softmax within ~1 ulp
(measured 1.09 on rows of 2 to 5 entries, 0.5 on the named rows; the normaliser as k + rest, k the count of entries equal to
the maximum, so a dominant entry gets -log1p(rest), the tiny negative
number, not 0). ``exp_core32`` would bring the first path to 1.5 ulp but
costs 40% more in its loop (LLVM then interleaves it half as much).

Backward passes: one vectorized pass after a float64 dot product / sum, each
entry rounded once; a row where the result cancels is recomputed by the
compensated float64 kernel of ``rows``. softmax: y (g - S) with g - S as a
float32 pair (two-sum), one fma. log_softmax: g - exp(y) S in float64 with
exp(y) S to ~2**-40 (``mul_exp_rows64``: a degree-8 polynomial, no table),
trusted where |g - exp(y) S| >= 2**-14 |exp(y) S| (elsewhere the row falls
back).

The gufuncs are compiled for unit-stride rows (``rowwise`` passes strided
rows to the general build), since LLVM keeps loops over runtime-strided
arrays scalar.

Special rows as in ``rows``: -inf entries give 0 / -inf; a row with +inf or
NaN, or only -inf, is NaN.
"""

import math

import numpy as np

from fastact.scalar.eft import two_sum_err
from fastact.scalar.fma import fma
from fastact.scalar.mathlib32 import expf
from fastact.scalar.registry import bitcasts, scalar
from fastact.scalar.rows import (
    NEG_INF,
    fill_nan,
    log_softmax_backward_row,
    softmax_backward_row,
)
from fastact.scalar.vmath32 import exp_core32, exp_fast_parts

_F = np.float32
_bits_f32, _f32_bits = bitcasts(32)
_bits_f64, _f64_bits = bitcasts(64)

_LO = _F(-128.0)  # x - m below this: exp < 2**-184, every result rounds to 0
_BIAS64 = 191  # 64 + 127: terms of the reference's row scaled by 2**64
_INV_LN2 = 1.4426950408889634


@scalar
def exp_diff(x, m):
    """exp(x - m) for float32 x <= m (m finite, x may be -inf), in float32:
    the rounding error of x - m is exact (two-sum) and carried to first order,
    exp(dh + dl) = e + e dl, because exp turns an error of size |d| ulp(1)
    in its argument into |d| ulps of the result. (The CUDA row kernels' step;
    the CPU kernels below keep exp unrounded instead.)"""
    dh = x - m
    dl = two_sum_err(x, -m, dh)
    e = expf(dh)
    return e + e * dl if dh > np.float32(-1e30) else e


@scalar
def row_max32(x):
    """(max, bad): the row's maximum and whether it holds NaN or +inf.

    On integer keys, key = bits ^ ((bits >> 31) & 0x7FFFFFFF), whose signed
    order is the float order (NaNs beyond the infinities): an integer max is
    a reduction LLVM vectorizes, a float max (with its NaN rules) is not. A
    second max over the magnitude bits finds a NaN of either sign."""
    km = np.int32(-2147483647 - 1)
    am = np.int32(0)
    for i in range(x.shape[0]):
        b = _f32_bits(x[i])
        key = np.int32(b ^ np.int32(np.int32(b >> np.int32(31)) & np.int32(0x7FFFFFFF)))
        km = max(km, key)
        a = np.int32(b & np.int32(0x7FFFFFFF))
        am = max(am, a)
    bad = (am > np.int32(0x7F800000)) | (km >= np.int32(0x7F800000))
    m = _bits_f32(np.int32(km ^ np.int32(np.int32(km >> np.int32(31)) & np.int32(0x7FFFFFFF))))
    return m, bad


@scalar(reassoc=True)
def _sum(a):
    """Sum of a float32 row in float64, in any order (vectorized): float64
    keeps ~2**-40 of relative accuracy for a million terms, far below a
    float32 ulp."""
    s = 0.0
    for i in range(a.shape[0]):
        s += np.float64(a[i])
    return s


@scalar(reassoc=True)
def _dot(a, b):
    """sum(a * b) of float32 rows in float64, in any order (vectorized)."""
    s = 0.0
    for i in range(a.shape[0]):
        s += np.float64(a[i]) * np.float64(b[i])
    return s


@scalar
def log_softmax_elem32(v, m, lse):
    """(v - m) - lse: v - m is exact in float64 for float32 v, m (the write
    step of every backend's float32 log_softmax)."""
    return (np.float64(v) - np.float64(m)) - lse


# ------------------------------------------------------------------ forward


@scalar
def reference32(m):
    """(direct, lo, bias) for a row with finite maximum m.

    direct: m in [-32, 88], so that every entry that matters (x >= m - 128)
    lies in the exp core's domain and is its own exact argument: the terms
    are exp(x), arguments below lo = m - 128 clamped to lo. Otherwise the
    kernels use x - m with its rounding carried, clamped at -128. Terms are
    scaled by 2^(bias - 127), the maximum's term by ~2^64."""
    if m >= _F(-32.0) and m <= _F(88.0):
        km = np.int32(math.floor(np.float64(m) * _INV_LN2 + 0.5))
        return True, m - _F(128.0), np.int32(np.int32(_BIAS64) - km)
    return False, _LO, np.int32(_BIAS64)


@scalar
def max_term32(m, direct, bias):
    """The maximum's scaled term in float64: exp(m or 0) 2^(bias - 127)."""
    return math.exp(np.float64(m) if direct else 0.0) * 2.0 ** (np.int64(bias) - 127)


@scalar
def _pow2_biased(k, bias):
    """2^(k + bias - 127) from its bits (k + bias in [1, 254])."""
    return _bits_f32(np.int32(np.int32(k + bias) << np.int32(23)))


@scalar
def _scaled_term(k, u, bias):
    """(s, e, err): s = 2^(k + bias - 127); e + err = (1 + u) s exactly, e
    rounded (s - e is exact and so is the fma's result, the rounding error
    of e)."""
    s = _pow2_biased(k, bias)
    e = fma(u, s, s)
    return s, e, fma(u, s, s - e)


# The per-entry steps below are separate functions so
# that they compile without the ``reassoc`` flag of the summing loops that
# call them: LLVM inlines them later, each instruction keeping its own flags.


@scalar
def _term_direct(v, lo, bias):
    k, u = exp_fast_parts(v if v > lo else lo, _F(-0.0))  # noqa: FURB136 (-0.0: t + xl is t)
    s, e, err = _scaled_term(k, u, bias)
    return u, s, e, err


@scalar
def _term_carried(v, m):
    dh = v - m
    dl = two_sum_err(v, -m, dh)
    near = dh > _LO  # -inf entries (and NaN two-sum errors) stay out
    k, u = exp_core32(dh if near else _LO, dl if near else _F(0.0))
    s, e, err = _scaled_term(k, u, np.int32(_BIAS64))
    return u, s, e, err


@scalar
def _rest_term_direct(v, m, lo, bias):
    _u, _s, e, err = _term_direct(v, lo, bias)
    below = v < m
    return (e if below else _F(0.0)), (err if below else _F(0.0))


@scalar
def _rest_term_carried(v, m):
    _u, _s, e, err = _term_carried(v, m)
    below = v < m
    return (e if below else _F(0.0)), (err if below else _F(0.0))


@scalar(reassoc=True)
def _expsum_direct(x, lo, bias, us, ss):
    """sum_i exp(x_i) 2^(bias - 127) in float64 (any order); each term's u
    and power of two into us, ss."""
    s = 0.0
    r = _F(0.0)
    for i in range(x.shape[0]):
        u, sb, e, err = _term_direct(x[i], lo, bias)
        us[i] = u
        ss[i] = sb
        s += np.float64(e)
        r += err
    return s + np.float64(r)


@scalar(reassoc=True)
def _expsum_carried(x, m, us, ss):
    s = 0.0
    r = _F(0.0)
    for i in range(x.shape[0]):
        u, sb, e, err = _term_carried(x[i], m)
        us[i] = u
        ss[i] = sb
        s += np.float64(e)
        r += err
    return s + np.float64(r)


@scalar(reassoc=True)
def _restsum_direct(x, m, lo, bias):
    """(sum over x_i < m of the scaled terms, count of x_i == m)."""
    s = 0.0
    r = _F(0.0)
    k = np.int32(0)
    for i in range(x.shape[0]):
        v = x[i]
        e, err = _rest_term_direct(v, m, lo, bias)
        s += np.float64(e)
        r += err
        k += np.int32(1) if v == m else np.int32(0)
    return s + np.float64(r), k


@scalar(reassoc=True)
def _restsum_carried(x, m):
    s = 0.0
    r = _F(0.0)
    k = np.int32(0)
    for i in range(x.shape[0]):
        v = x[i]
        e, err = _rest_term_carried(v, m)
        s += np.float64(e)
        r += err
        k += np.int32(1) if v == m else np.int32(0)
    return s + np.float64(r), k


@scalar
def softmax_row32(x, us, ss, out):
    """softmax of a row; ``us``, ``ss``: scratch rows (n float32 each, their
    contents ignored) for each entry's u and power of two between the passes.
    Not ``out``: a last pass reading both x and out while writing out runs up
    to 1.5x slower on arrays placed so that out's row r shares its low
    address bits with x's row r + 1 (NumPy's huge-page-aligned arrays,
    allocated one after the other, are). The scratch rows stay in L1 and the
    last pass reads neither x nor out."""
    m, bad = row_max32(x)
    if bad or m == NEG_INF:
        fill_nan(out)
        return
    direct, lo, bias = reference32(m)
    s = _expsum_direct(x, lo, bias, us, ss) if direct else _expsum_carried(x, m, us, ss)
    # y = (1 + u)(ih + il) s: the scaled normaliser's inverse as a float32
    # pair, the product rounded once (also into the subnormal range: the last
    # factor is a power of two and the rest is normal)
    inv = 1.0 / s
    ih = _F(inv)
    il = _F(inv - np.float64(ih))
    for i in range(x.shape[0]):
        u = us[i]
        p = u * ih
        pe = fma(u, ih, -p)
        t = fma(il, u, il)
        out[i] = (ih + (p + (pe + t))) * ss[i]


@scalar
def log_softmax_row32(x, out):
    m, bad = row_max32(x)
    if bad or m == NEG_INF:
        fill_nan(out)
        return
    direct, lo, bias = reference32(m)
    if direct:
        s, k = _restsum_direct(x, m, lo, bias)
    else:
        s, k = _restsum_carried(x, m)
    # every entry but the maxima, relative to the maximum's term
    rest = s / max_term32(m, direct, bias)
    lse = math.log(k) + math.log1p(rest / k)
    m64 = np.float64(m)
    if lse >= 2.0**-23 * abs(m64):
        # x - (m + lse) with m + lse rounded: off by 2**-53 |m + lse| < 2**-29 |y|
        # (|y| >= lse), one subtraction fewer
        c = m64 + lse
        for i in range(x.shape[0]):
            out[i] = np.float32(np.float64(x[i]) - c)
    else:  # a dominant entry (lse tiny) next to a large maximum
        for i in range(x.shape[0]):
            out[i] = np.float32(log_softmax_elem32(x[i], m, lse))
        if lse < 2.0**-140:
            _lone_entry_zero(x, m, out)


@scalar
def _lone_entry_zero(x, m, out):
    """The sums clamp -inf entries to -128 below the maximum (a term of
    ~2**-185 that no result feels but this one): a row whose only finite
    entry is m has lse = 0 exactly, its log_softmax +0.0, not the -0.0 of
    -tiny (which is right where another finite entry lies far below)."""
    k = 0
    for i in range(x.shape[0]):
        k += 1 if x[i] > NEG_INF else 0
    if k == 1:
        for i in range(x.shape[0]):
            if x[i] == m:
                out[i] = np.float32(0.0)


# ----------------------------------------------------------------- backward
# A vectorized pass after a float64 sum S, counting the entries where the
# result cancels (|g - S| <= 2**-20 |S| for softmax; for log_softmax
# |g - S e| < 2**-13 |g|, which covers |g - S e| < 2**-14 |S e|, and y
# beyond 700, +inf or NaN: the gradient of a dominant entry is made of the
# terms a plain sum absorbs). Only a row with such an entry is recomputed, by
# the float64 kernel of ``rows`` (compensated sums, exp as a double-double
# where it cancels), rounded to float32. On random rows (the bench's) no row
# falls back: log_softmax.backward was slower than softmax.backward for its
# float64 exp (degree 13, two-factor scaling), not for the fallback.
CANCEL = 2.0**-20
BIG32 = 2.0**103
CANCEL_EXP = 2.0**-14

_SHIFT64 = 6755399441055744.0  # 1.5 * 2**52
_LN2 = 0.6931471805599453


@scalar
def mul_exp_rows64(s, y):
    """s exp(y) to 2**-39.8 relative (1.06e-12) for float64 y in [-600, 600]
    (from a float32) and |s| in [2**-140, 2**140]: a degree-8 polynomial in
    r = y - k ln2, |r| <= ln2/2 (a Chebyshev fit, mpmath.chebyfit, its
    coefficients times s, which LLVM hoists out of a loop), and 2^k added to
    the exponent bits (the ranges keep the result normal). One fma reduces
    y: k ln2's error is below 2**-45. For log_softmax.backward, whose result
    is trusted only where it does not cancel below 2**-14 of s exp(y)."""
    t = fma(y, _INV_LN2, _SHIFT64)
    k = t - _SHIFT64
    r = fma(-k, _LN2, y)
    p = fma(r, s * 2.487616445358005e-05, s * 0.00019915867357972)
    p = fma(r, p, s * 0.0013888821676853941)
    p = fma(r, p, s * 0.008333266097172774)
    p = fma(r, p, s * 0.041666666890960886)
    p = fma(r, p, s * 0.16666666891049664)
    p = fma(r, p, s * 0.4999999999979793)
    p = fma(r, p, s * 0.9999999999797847)
    p = fma(r, p, s)
    return _bits_f64(_f64_bits(p) + (_f64_bits(t) << np.int64(52)))


@scalar
def softmax_backward_row32(g, y, out):
    # y (g - S), g - S as the pair dh + dl (S itself as a float32 pair):
    # one rounding per entry
    s = _dot(g, y)
    if not (abs(s) < BIG32):
        # g - S may overflow float32 (it needs |S| >= ulp(max) / 2 = 2**103),
        # or S is +-inf / NaN (a +-inf or NaN operand): the float64 kernel,
        # where neither overflows and the formula's IEEE value comes out
        softmax_backward_row(g, y, out)
        return
    sh = _F(s)
    sl = _F(s - np.float64(sh))
    lim = _F(CANCEL) * abs(sh)
    cancels = np.int32(0)
    for i in range(y.shape[0]):
        gv = g[i]
        yv = y[i]
        dh = gv - sh
        dl = two_sum_err(gv, -sh, dh) - sl
        out[i] = fma(yv, dh, yv * dl)
        cancels += np.int32(1) if abs(dh) <= lim else np.int32(0)
    if cancels:
        softmax_backward_row(g, y, out)


@scalar
def log_softmax_backward_row32(g, y, out):
    s = _sum(g)
    if s == 0.0:  # g - exp(y) 0; y NaN or +inf: NaN (the float64 kernel)
        for i in range(y.shape[0]):
            out[i] = g[i]
        if not _all_finite_or_neg_inf(y):
            log_softmax_backward_row(g, y, out)
        return
    if not (abs(s) >= 2.0**-140 and abs(s) <= 2.0**140):
        log_softmax_backward_row(g, y, out)
        return
    cancels = np.int32(0)
    for i in range(y.shape[0]):
        gv = g[i]
        yv = y[i]
        yc = yv if yv > _F(-600.0) else _F(-600.0)  # noqa: FURB136 (NaN kept out; -inf: r = g)
        r = _F(np.float64(gv) - mul_exp_rows64(s, np.float64(yc)))
        out[i] = r
        # |r| >= 2**-13 |g| implies |r| >= 2**-14 |exp(y) S| (exp(y) S = g - r),
        # checked in float32; NaN and y beyond 600 (+inf) are not ok either
        ok = (abs(r) >= _F(2.0 * CANCEL_EXP) * abs(gv)) & (yv <= _F(600.0))
        cancels += np.int32(0) if ok else np.int32(1)
    if cancels:
        log_softmax_backward_row(g, y, out)


@scalar
def _all_finite_or_neg_inf(y):
    bad = np.int32(0)
    for i in range(y.shape[0]):
        bad += np.int32(0) if y[i] <= _F(3.4028234663852886e38) else np.int32(1)  # NaN, +inf: 1
    return bad == 0
