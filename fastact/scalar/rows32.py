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
vectorized pass with a plain float64 dot product / sum; a row where the
result cancels is recomputed by the compensated float64 kernel (see below).

Worst error (tests/functions/test_rowwise.py, vs mpmath): see docs/accuracy.md.
Special rows as in ``_rowkernels``: -inf entries give 0 / -inf; a row with
+inf or NaN, or only -inf, is NaN.
"""

import math

import numpy as np

from fastact.scalar.eft import two_sum_err
from fastact.scalar.registry import scalar
from fastact.scalar.mathlib import exp
from fastact.scalar.mathlib32 import expf
from fastact.scalar.rows import NEG_INF, fill_nan, log_softmax_backward_row, softmax_backward_row


@scalar(inline=True)
def exp_diff(x, m):
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
def log_softmax_elem32(v, m, lse):
    """(v - m) - lse: v - m is exact in float64 for float32 v, m (the write
    step of every backend's float32 log_softmax)."""
    return (np.float64(v) - np.float64(m)) - lse


@scalar
def softmax_row32(x, out):
    m, bad = row_max32(x)
    if bad or m == NEG_INF:
        fill_nan(out)
        return
    for i in range(x.shape[0]):
        out[i] = exp_diff(x[i], m)
    inv = 1.0 / _sum(out)
    for i in range(x.shape[0]):
        out[i] = np.float32(np.float64(out[i]) * inv)


@scalar
def log_softmax_row32(x, out):
    m, bad = row_max32(x)
    if bad or m == NEG_INF:
        fill_nan(out)
        return
    # exp of every entry below the maximum (the maximum's own terms are the k)
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = exp_diff(v, m) if v < m else np.float32(0.0)
    rest = _sum(out)
    k = 0
    for i in range(x.shape[0]):
        k += x[i] == m
    lse = math.log(k) + math.log1p(rest / k)
    for i in range(x.shape[0]):
        out[i] = np.float32(log_softmax_elem32(x[i], m, lse))


# Backward: a vectorized pass with a plain float64 sum S, counting the
# entries where the result cancels (|g - S| < 2**-20 |S| for softmax,
# |g - S e| < 2**-20 |S e| for log_softmax: the gradient of a dominant entry,
# made of the terms a plain sum absorbs). Only a row with such an entry is
# recomputed, by the float64 kernel of _rowkernels (compensated sums, exp as
# a double-double where it cancels), rounded to float32 on the store.
CANCEL = 2.0**-20


@scalar
def softmax_backward_row32(g, y, out):
    s = _dot(g, y)
    cancels = 0
    for i in range(y.shape[0]):
        d = np.float64(g[i]) - s
        out[i] = np.float32(np.float64(y[i]) * d)
        cancels += abs(d) <= CANCEL * abs(s)
    if cancels:
        softmax_backward_row(g, y, out)


@scalar
def log_softmax_backward_row32(g, y, out):
    s = _sum(g)
    cancels = 0
    for i in range(y.shape[0]):
        # float64 exp: a float32 one would make g - S e lose digits wherever
        # |g - S e| < |S e|, which random gradients hit in every row
        p = s * exp(np.float64(y[i]))
        r = np.float64(g[i]) - p
        out[i] = np.float32(r)
        cancels += abs(r) < CANCEL * abs(p)
    if cancels:
        log_softmax_backward_row(g, y, out)
