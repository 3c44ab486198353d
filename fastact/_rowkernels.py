"""Row kernels of the softmax family, written once for every Numba target.

Plain functions marked ``@scalar`` (see ``_jit``) that process one row: the
CPU backend wraps them in gufuncs ``(n)->(n)`` (``rowwise.py``); a GPU backend
can call the same functions per row.

Accuracy (<= 4 ulp vs mpmath for float64 rows too) comes from three details:

* ``x - m`` is carried as a double-double into exp (``exp_diff``), because
  exp turns the rounding error of a difference of size d into d ulps
  (this is the 64 / 129 ulp loss of PyTorch, JAX and SciPy);
* the normaliser is a compensated (Neumaier) sum, so 4096 terms cost no digits;
* the normaliser is kept as ``1 + rest`` where ``rest`` sums every term but one
  occurrence of the maximum, so ``log_softmax`` of a dominant entry is
  ``-log1p(rest)``, the tiny negative number, not 0.

One read pass computes the maximum and the normaliser together: terms are
summed relative to a reference ``mref`` that only moves when an element
exceeds it by more than ``RESCALE_GAP`` (exp(600) cannot overflow a float64
sum), so the sum is rescaled (and loses an ulp) only for rows spanning more
than 600, not on every new maximum; the final rescale to the true maximum is
exact to an ulp. The write pass reads the row again.
"""

import math

import numpy as np

from ._jit import scalar
from ._eft import two_prod_err, two_sum_err
from ._mathlib import exp, exp_dd, log1p

RESCALE_GAP = 600.0
NEG_INF = -math.inf


@scalar
def exp_diff(a, b):
    """exp(a - b) with the rounding error of a - b carried into exp (a, b finite)."""
    d = a - b
    if d < -800.0:
        return 0.0  # also keeps -inf differences (huge finite a, b) out of two_sum
    return exp(d) * (1.0 + two_sum_err(a, -b, d))


@scalar
def row_stats(x):
    """(m, rest, ok) of a row: max, and sum_i exp(x_i - m) - 1 (one pass).

    The sum is kept relative to a reference element ``mref`` whose own term
    (exactly 1) is left out, so ``rest`` is accumulated directly and keeps its
    relative accuracy even when it is far below 1 (a dominant entry).
    ok is False when the row holds NaN or +inf, or only -inf (the result row
    is then NaN); an empty row is never written.
    """
    m = NEG_INF
    mref = NEG_INF
    s = 0.0
    c = 0.0
    ok = True
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        if v > m:
            m = v
            if v == math.inf:
                ok = False
            elif v > mref + RESCALE_GAP:
                if mref != NEG_INF:
                    # the old reference becomes an ordinary term; exp(-600) makes
                    # the rounding of this rescale negligible next to the new 1
                    r = exp_diff(mref, v)
                    s = (s + 1.0) * r
                    c *= r
                mref = v
                continue
        elif not (v <= m):
            ok = False  # NaN
        if v != NEG_INF and ok:
            t = exp_diff(v, mref)
            u = s + t
            c += two_sum_err(s, t, u)
            s = u
    if not ok or m == NEG_INF:
        return m, 0.0, False
    if mref == m:
        return m, s + c, True
    # the maximum's term (added as exp_diff(m, mref)) is swapped for the
    # reference's 1, then everything is scaled to be relative to m
    emax = exp_diff(m, mref)
    r = s - emax
    big = (r + (two_sum_err(s, -emax, r) + c)) + 1.0
    # one rescale per row: exp as a double-double so it adds no ulp of its own
    d = mref - m
    qh, ql = exp_dd(d)
    rest = big * qh + big * (ql + qh * two_sum_err(mref, -m, d))
    return m, rest, True


@scalar
def _fill_nan(out):
    for i in range(out.shape[0]):
        out[i] = math.nan


# The per-entry steps below are the write passes of every backend (the CPU
# row functions here, the CUDA row kernels of ``_cuda_rows``): a row's
# statistics (m, norm / lse, s, c) are computed however the backend splits a
# row, the value of each entry only here.


@scalar
def softmax_elem(v, m, norm):
    """exp(v - m) / norm, the rounding error of v - m carried (m finite)."""
    return 0.0 if v == NEG_INF else exp_diff(v, m) / norm


@scalar
def log_softmax_elem(v, m, lse):
    """(v - m) - lse, the rounding error of v - m added back (m finite)."""
    if v == NEG_INF:
        return NEG_INF
    d = v - m
    return (d - lse) + two_sum_err(v, -m, d)


@scalar
def softmax_backward_elem(g, y, s, c):
    """y * (g - S) for the row's dot product S = s + c (a double-double)."""
    return y * ((g - s) - c)


@scalar
def log_softmax_backward_elem(g, y, s, c):
    """g - exp(y) S for the row's sum of gradients S = s + c; exp(y) as a
    double-double where the result cancels (|result| < |exp(y) S| / 2), e.g.
    the one-hot gradient of a dominant entry, where exp(y) = 1 - tiny. (NaN y
    and exp overflow, y >= 709, keep the plain step.)"""
    e = exp(y) if y == y else y
    p = e * s
    r = (g - p) - (two_prod_err(e, s, p) + e * c)
    if not (abs(r) >= 0.5 * abs(p)) and y > -700.0 and y < 709.0:
        eh, el = exp_dd(y)
        p = eh * s
        r = (g - p) - (two_prod_err(eh, s, p) + (eh * c + el * s))
    return r


@scalar
def softmax_row(x, out):
    m, rest, ok = row_stats(x)
    if not ok:
        _fill_nan(out)
        return
    norm = 1.0 + rest
    for i in range(x.shape[0]):
        out[i] = softmax_elem(np.float64(x[i]), m, norm)


@scalar
def log_softmax_row(x, out):
    m, rest, ok = row_stats(x)
    if not ok:
        _fill_nan(out)
        return
    lse = log1p(rest)
    for i in range(x.shape[0]):
        out[i] = log_softmax_elem(np.float64(x[i]), m, lse)


@scalar
def softmax_backward_row(g, y, out):
    """y * (g - sum(g*y)) with the dot product as a double-double (Dot2)."""
    # the error terms are themselves summed with compensation (c, c2): when a
    # dominant y ~ 1 absorbs every other product into s, the result is made of
    # those absorbed terms alone and a plainly summed c would lose ~sqrt(n) ulps
    s = 0.0
    c = 0.0
    c2 = 0.0
    for i in range(y.shape[0]):
        gi = np.float64(g[i])
        yi = np.float64(y[i])
        p = gi * yi
        u = s + p
        t = two_sum_err(s, p, u) + two_prod_err(gi, yi, p)
        s = u
        v = c + t
        c2 += two_sum_err(c, t, v)
        c = v
    c += c2
    for i in range(y.shape[0]):
        out[i] = softmax_backward_elem(np.float64(g[i]), np.float64(y[i]), s, c)


@scalar
def log_softmax_backward_row(g, y, out):
    """g - exp(y) * sum(g), compensated sum (see log_softmax_backward_elem)."""
    s = 0.0
    c = 0.0
    for i in range(y.shape[0]):
        gi = np.float64(g[i])
        u = s + gi
        c += two_sum_err(s, gi, u)
        s = u
    for i in range(y.shape[0]):
        out[i] = log_softmax_backward_elem(np.float64(g[i]), np.float64(y[i]), s, c)
