"""float32 row kernels of the softmax family, vectorizable.

The float64 kernels of ``_rowkernels`` make one sequential pass with
compensated sums and a moving reference: exact to a few float64 ulps, but a
loop-carried chain that cannot use SIMD (~11 ns per element). A float32 row
needs far less: differences ``x_i - max`` are exact in float64, a float32 exp
of them (``expf`` with the float64 rest carried, <= 1 ulp) and a float64 sum
of at most millions of such terms are far below half a float32 ulp. So every
pass here is a loop LLVM vectorizes: the row (a few KB, in L1/L2 cache after
the first pass) is read several times, memory is read once and written once.

* max and the NaN/+inf check: 8 independent accumulators (the vectorizer
  will not reorder a floating-point max, the SLP vectorizer packs these);
* exp(x_i - m) into ``out`` in float32, the rounding of x_i - m carried;
* the float64 sum of those terms (``reassoc``: vectorized, order-free);
* the scaling pass.

The gufuncs are compiled for unit-stride rows (``rowwise`` passes strided
rows to the general build), since LLVM keeps loops over runtime-strided
arrays scalar.

log_softmax keeps the normaliser as ``k + rest`` (k entries equal to the
maximum, rest the sum of all others) so a dominant entry gets
``-log1p(rest)``, the tiny negative number, not 0. Backward passes: one
vectorized pass with a plain float64 dot product / sum, then a compensated
recomputation of only the entries that cancel (see below).

Worst error (tests/test_rowwise.py, vs mpmath): see docs/accuracy.md.
Special rows as in ``_rowkernels``: -inf entries give 0 / -inf; a row with
+inf or NaN, or only -inf, is NaN.
"""

import math

import numpy as np

from ._eft import two_prod_err, two_sum_err
from ._jit import scalar
from ._mathlib import exp, exp_dd
from ._mathlib32 import expf

NEG_INF = -math.inf


@scalar(inline=True)
def _exp_diff(x, m):
    """exp(x - m) for float32 x <= m (m finite, x may be -inf), in float32:
    the rounding error of x - m is exact (two-sum) and carried to first order,
    exp(dh + dl) = e + e dl, because exp turns an error of size |d| ulp(1)
    in its argument into |d| ulps of the result."""
    dh = x - m
    dl = two_sum_err(x, -m, dh)
    e = expf(dh)
    return e + e * dl if dh > np.float32(-1e30) else e


@scalar
def row_max32(x):
    """(max, bad): the row's maximum and whether it holds NaN or +inf."""
    n = x.shape[0]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = np.float32(NEG_INF)
    b = 0
    n8 = n - n % 8
    for i in range(0, n8, 8):
        v0, v1, v2, v3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        v4, v5, v6, v7 = x[i + 4], x[i + 5], x[i + 6], x[i + 7]
        m0 = v0 if v0 > m0 else m0
        m1 = v1 if v1 > m1 else m1
        m2 = v2 if v2 > m2 else m2
        m3 = v3 if v3 > m3 else m3
        m4 = v4 if v4 > m4 else m4
        m5 = v5 if v5 > m5 else m5
        m6 = v6 if v6 > m6 else m6
        m7 = v7 if v7 > m7 else m7
        # NaN fails v == v
        b |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)
        b |= (v4 != v4) | (v5 != v5) | (v6 != v6) | (v7 != v7)
    for i in range(n8, n):
        v = x[i]
        m0 = v if v > m0 else m0
        b |= v != v
    m = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    return m, b != 0 or m == math.inf


@scalar(reassoc=True)
def _sum(a):
    """Sum of a float32 row in float64, in any order (vectorized): float64
    keeps ~2**-40 of relative accuracy for a million terms, far below a
    float32 ulp. For the normaliser only, whose terms are all >= 0."""
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
def _acc(s, c, p):
    """(s + p, c + its rounding error): one step of a compensated sum."""
    u = s + p
    return u, c + two_sum_err(s, p, u)


@scalar
def _dot8c(a, b, ones):
    """sum(a * b) (or sum(a) when ``ones``) of float32 rows as a double-double
    (s, c): float64 products of float32 are exact, and the sums carry their
    rounding errors, so ``g - s`` keeps its digits when it cancels (the
    gradient of a dominant entry is made of the terms a plain sum absorbs).
    8 independent compensated accumulators."""
    n = a.shape[0]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = 0.0
    n8 = n - n % 8
    for i in range(0, n8, 8):
        p0 = np.float64(a[i]) * (1.0 if ones else np.float64(b[i]))
        p1 = np.float64(a[i + 1]) * (1.0 if ones else np.float64(b[i + 1]))
        p2 = np.float64(a[i + 2]) * (1.0 if ones else np.float64(b[i + 2]))
        p3 = np.float64(a[i + 3]) * (1.0 if ones else np.float64(b[i + 3]))
        p4 = np.float64(a[i + 4]) * (1.0 if ones else np.float64(b[i + 4]))
        p5 = np.float64(a[i + 5]) * (1.0 if ones else np.float64(b[i + 5]))
        p6 = np.float64(a[i + 6]) * (1.0 if ones else np.float64(b[i + 6]))
        p7 = np.float64(a[i + 7]) * (1.0 if ones else np.float64(b[i + 7]))
        s0, c0 = _acc(s0, c0, p0)
        s1, c1 = _acc(s1, c1, p1)
        s2, c2 = _acc(s2, c2, p2)
        s3, c3 = _acc(s3, c3, p3)
        s4, c4 = _acc(s4, c4, p4)
        s5, c5 = _acc(s5, c5, p5)
        s6, c6 = _acc(s6, c6, p6)
        s7, c7 = _acc(s7, c7, p7)
    for i in range(n8, n):
        s0, c0 = _acc(s0, c0, np.float64(a[i]) * (1.0 if ones else np.float64(b[i])))
    c = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7))
    s, c = _acc(s0, c, s1)
    s, c = _acc(s, c, s2)
    s, c = _acc(s, c, s3)
    s, c = _acc(s, c, s4)
    s, c = _acc(s, c, s5)
    s, c = _acc(s, c, s6)
    s, c = _acc(s, c, s7)
    return s, c


@scalar
def _fill_nan32(out):
    for i in range(out.shape[0]):
        out[i] = np.float32(math.nan)


@scalar
def softmax_row32(x, out):
    m, bad = row_max32(x)
    if bad or m == NEG_INF:
        _fill_nan32(out)
        return
    for i in range(x.shape[0]):
        out[i] = _exp_diff(x[i], m)
    inv = 1.0 / _sum(out)
    for i in range(x.shape[0]):
        out[i] = np.float32(np.float64(out[i]) * inv)


@scalar
def log_softmax_row32(x, out):
    m, bad = row_max32(x)
    if bad or m == NEG_INF:
        _fill_nan32(out)
        return
    # exp of every entry below the maximum (the maximum's own terms are the k)
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = _exp_diff(v, m) if v < m else np.float32(0.0)
    rest = _sum(out)
    k = 0
    for i in range(x.shape[0]):
        k += x[i] == m
    lse = math.log(k) + math.log1p(rest / k)
    md = np.float64(m)
    for i in range(x.shape[0]):
        out[i] = np.float32((np.float64(x[i]) - md) - lse)


# Backward: a vectorized pass with a plain float64 sum S, flagging the
# entries where the result cancels (|g - S| < 2**-20 |S| for softmax,
# |g - S e| < 2**-20 |S e| for log_softmax: the gradient of a dominant entry, made of the
# terms a plain sum absorbs); only then a compensated sum (double-double)
# and an exact recomputation of the flagged entries.
_CANCEL = 2.0**-20


@scalar
def softmax_backward_row32(g, y, out):
    n = y.shape[0]
    s = _dot(g, y)
    flags = np.empty(n, np.bool_)
    for i in range(n):
        d = np.float64(g[i]) - s
        out[i] = np.float32(np.float64(y[i]) * d)
        flags[i] = abs(d) <= _CANCEL * abs(s)
    if flags.any():
        sh, sl = _dot8c(g, y, False)
        for i in range(n):
            if flags[i]:
                out[i] = np.float32(np.float64(y[i]) * ((np.float64(g[i]) - sh) - sl))


@scalar
def log_softmax_backward_row32(g, y, out):
    n = y.shape[0]
    s = _sum(g)
    flags = np.empty(n, np.bool_)
    for i in range(n):
        # float64 exp: a float32 one would make g - S e lose digits wherever
        # |g - S e| < |S e|, which random gradients hit in every row
        p = s * exp(np.float64(y[i]))
        r = np.float64(g[i]) - p
        out[i] = np.float32(r)
        flags[i] = abs(r) < _CANCEL * abs(p)
    if flags.any():
        sh, sl = _dot8c(g, g, True)
        for i in range(n):
            yi = np.float64(y[i])
            if flags[i] and yi > -700.0:
                # exp(y) as a double-double: (g - S e) keeps its digits
                eh, el = exp_dd(yi)
                p = eh * sh
                r = (np.float64(g[i]) - p) - (two_prod_err(eh, sh, p) + (eh * sl + el * sh))
                out[i] = np.float32(r)
