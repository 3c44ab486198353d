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

One read pass computes the maximum and the normaliser together (the state
(m, r, s, c) of ``push64``): terms are summed relative to a reference that
only moves when an element exceeds it by more than ``RESCALE_GAP`` (exp(600)
cannot overflow a float64 sum), the current maximum's own term kept out of
the sum, so the sum is rescaled only for rows spanning more than 600, and a
dominant entry's tiny ``rest`` is never absorbed by its own large term; the
final rescale to the true maximum is a double-double exp. The write pass
reads the row again.
"""

import math

import numpy as np

from fastact.scalar.registry import scalar
from fastact.scalar.eft import two_prod_err, two_sum_err
from fastact.scalar.mathlib import exp, exp_dd, log1p

RESCALE_GAP = 600.0
NEG_INF = -math.inf
INF = math.inf


@scalar
def exp_diff(a, b):
    """exp(a - b) with the rounding error of a - b carried into exp (a, b finite)."""
    d = a - b
    if d < -800.0:
        return 0.0  # also keeps -inf differences (huge finite a, b) out of two_sum
    return exp(d) * (1.0 + two_sum_err(a, -b, d))


# The statistics of a row as a state (m, r, s, c) updated per entry: the
# maximum m so far, a reference r (finite, or -inf before the first finite
# entry), and the compensated sum s + c of exp(x_i - r) over the entries seen
# except one occurrence of m, whose term stays implicit: a new maximum moves
# the old one's term into the sum, so the sum never holds a term far above
# the others (a dominant entry's tiny rest survives: log_softmax of it is
# -log1p(rest), not 0). r moves only when an entry exceeds it by more than
# RESCALE_GAP (exp(600) cannot overflow the sum); the sum is then rescaled
# by a double-double exp. A maximum of +inf marks a bad row (NaN or +inf
# seen). ``merge64`` joins the states of two parts of a row (the CUDA row
# kernels split rows over threads); both parts start from the same r.

@scalar
def rescale_dd(s, c, a, b):
    """(s + c) * exp(a - b) as a new (s, c) pair, a <= b finite; exp as a
    double-double with the rounding error of a - b carried (no ulp lost)."""
    d = a - b
    if d < -745.0:
        return 0.0, 0.0
    qh, ql = exp_dd(d)
    ql = ql + qh * two_sum_err(a, -b, d)
    sh = s * qh
    sl = two_prod_err(s, qh, sh) + (c * qh + s * ql)
    return sh, sl


@scalar
def push64(v, m, r, s, c):
    """The state after one more entry ``v``."""
    if v > m:
        if v == INF:
            return INF, r, s, c
        lo = m
        m = v
        if v > r + RESCALE_GAP:  # also the first entry when r is -inf
            if s != 0.0 or c != 0.0:
                s, c = rescale_dd(s, c, r, v)
            r = v
    elif v <= m:
        lo = v
    else:  # NaN
        return INF, r, s, c
    if lo > NEG_INF and m < INF:
        t = exp_diff(lo, r)
        u = s + t
        c += two_sum_err(s, t, u)
        s = u
    return m, r, s, c


@scalar
def merge64(m1, r1, s1, c1, m2, r2, s2, c2):
    """The state of two disjoint parts of a row (symmetric in the parts)."""
    if r2 > r1:
        m1, r1, s1, c1, m2, r2, s2, c2 = m2, r2, s2, c2, m1, r1, s1, c1
    if r2 != r1 and r2 > NEG_INF and (s2 != 0.0 or c2 != 0.0):
        s2, c2 = rescale_dd(s2, c2, r2, r1)
    u = s1 + s2
    c = (c1 + c2) + two_sum_err(s1, s2, u)
    hi = max(m1, m2)
    lo = min(m1, m2)
    if lo > NEG_INF and hi < INF:  # the smaller maximum becomes a term
        t = exp_diff(lo, r1)
        s = u + t
        c += two_sum_err(u, t, s)
        u = s
    return hi, r1, u, c


@scalar
def rest64(m, r, s, c):
    """sum over the row but one maximum of exp(x_i - m), from a good state."""
    if r == m:
        return s + c
    d = r - m
    qh, ql = exp_dd(d)
    return s * qh + (c * qh + s * (ql + qh * two_sum_err(r, -m, d)))


@scalar
def row_stats(x):
    """(m, rest, ok) of a row: max, and sum_i exp(x_i - m) - 1 (one pass).

    ok is False when the row holds NaN or +inf, or only -inf (the result row
    is then NaN); an empty row is never written.
    """
    n = x.shape[0]
    r0 = np.float64(x[0]) if n > 0 else NEG_INF
    r = r0 if (r0 > NEG_INF and r0 < INF) else NEG_INF
    m = NEG_INF
    s = 0.0
    c = 0.0
    for i in range(n):
        m, r, s, c = push64(np.float64(x[i]), m, r, s, c)
    if not (m > NEG_INF and m < INF):
        return m, 0.0, False
    return m, rest64(m, r, s, c), True


@scalar
def fill_nan(out):
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
    """(v - m) - lse, the rounding error of v - m added back (m finite).

    A difference that overflows (v = -max, m = max) or a -inf entry gives
    d = -inf, whose two-sum error is NaN: the error is dropped there (one
    return; a conditional expression, which LLVM makes a select, and which
    the CUDA simulator, running this as Python, does not evaluate into an
    inf - inf warning)."""
    d = v - m
    return (d - lse) + (two_sum_err(v, -m, d) if d > NEG_INF else 0.0)


@scalar
def softmax_backward_elem(g, y, s, c):
    """y * (g - S) for the row's dot product S = s + c (a double-double; c
    is 0 where s is not finite)."""
    return y * ((g - s) - c)


@scalar
def softmax_backward_elem_wide(g, y, s, c):
    """``softmax_backward_elem`` where g - S may overflow although y (g - S)
    does not (|S| >= 2**970, e.g. g = max, S = -max / 2): there halved,
    2 (y (g/2 - S/2)), which is exact while y (g - S) / 2 is normal, as it is
    for |g - S| >= 2**917 (the nonzero differences of such g and S). A
    select: the plain value wherever g - s is finite."""
    d = g - s
    return y * (d - c) if abs(d) < INF else 2.0 * (y * ((0.5 * g - 0.5 * s) - 0.5 * c))


@scalar
def log_softmax_backward_elem(g, y, s, c):
    """g - exp(y) S for the row's sum of gradients S = s + c; exp(y) as a
    double-double where the result cancels (|result| < |exp(y) S| / 2), e.g.
    the one-hot gradient of a dominant entry, where exp(y) = 1 - tiny. (NaN y
    and exp overflow, y >= 709, keep the plain step.)"""
    e = exp(y) if y == y else y
    p = e * s
    r = (g - p) - (two_prod_err(e, s, p) + e * c)
    if not (abs(r) >= 0.5 * abs(p)):
        # cancels, or NaN: an infinite p (y = +inf, exp(y) S overflowing,
        # S = +-inf with c = 0) has a NaN product error, dropped, as g - p
        # is then the IEEE value (here, not in the common path: a select
        # there costs 7%)
        if y > -700.0 and y < 709.0:
            eh, el = exp_dd(y)
            p = eh * s
            t = two_prod_err(eh, s, p) + (eh * c + el * s)
        else:
            t = two_prod_err(e, s, p) + e * c
        r = (g - p) - (t if abs(p) < INF else 0.0)
    return r


@scalar
def softmax_row(x, out):
    m, rest, ok = row_stats(x)
    if not ok:
        fill_nan(out)
        return
    norm = 1.0 + rest
    for i in range(x.shape[0]):
        out[i] = softmax_elem(np.float64(x[i]), m, norm)


@scalar
def log_softmax_row(x, out):
    m, rest, ok = row_stats(x)
    if not ok:
        fill_nan(out)
        return
    lse = log1p(rest)
    for i in range(x.shape[0]):
        out[i] = log_softmax_elem(np.float64(x[i]), m, lse)
    if rest == 0.0:
        dominant_zero_sign(x, m, out)


@scalar
def dominant_zero_sign(x, m, out):
    """A rest of 0 with another finite entry is an underflow (the others lie
    more than 745 below m): the maximum's -log1p(rest) is then a negative
    number too small for a float, -0.0 (a lone finite entry's is +0.0, as
    written). Rows of one finite entry come here too: one short scan."""
    k = 0
    for i in range(x.shape[0]):
        k += 1 if np.float64(x[i]) > NEG_INF else 0
    if k > 1:
        for i in range(x.shape[0]):
            if np.float64(x[i]) == m:
                out[i] = -0.0


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
    if not (abs(s) < WIDE):  # rare: see softmax_backward_wide
        softmax_backward_wide(g, y, s, c, out)
        return
    for i in range(y.shape[0]):
        out[i] = softmax_backward_elem(np.float64(g[i]), np.float64(y[i]), s, c)


# Rows whose sum is huge or not finite. Below WIDE no g - S overflows (it
# would need |S| >= ulp(max) / 2 = 2**970); a sum that overflowed although
# its terms are finite is recomputed scaled by 2**-64 (then no sum of up to
# 2**64 terms below max overflows).
WIDE = 2.0**970
SCALE = 2.0**64
INV_SCALE = 2.0**-64


@scalar
def softmax_backward_elem_scaled(g, y, s, c):
    """y (g - S) from S 2**-64 = s + c: 2**64 (y (g 2**-64 - s - c))."""
    return SCALE * softmax_backward_elem(g * INV_SCALE, y, s, c)


@scalar
def log_softmax_backward_elem_scaled(g, y, s, c):
    """g - exp(y) S from S 2**-64 = s + c: 2**64 (g 2**-64 - exp(y) (s + c));
    a g not exact when scaled (|g| < 2**-958) is added unscaled."""
    gs = g * INV_SCALE
    if gs * SCALE == g:
        return SCALE * log_softmax_backward_elem(gs, y, s, c)
    return g + SCALE * log_softmax_backward_elem(0.0, y, s, c)


@scalar
def softmax_backward_wide(g, y, s, c, out):
    """softmax_backward_row's write for |s| >= WIDE, inf or NaN. A non-finite
    s leaves NaN error terms (inf - inf), dropped: a grad of +-inf gives the
    formula's IEEE value, +-inf off that entry. An s overflowed from finite
    products is recomputed scaled: if the dot product fits after all, the
    write as above; else (|S| > max) y (g - S) = 2**64 (y (g 2**-64 - S
    2**-64)), the scaling exact unless y (g - S) 2**-64 is subnormal, which
    would take g within 2**-958 / y of such an S; a g too small to scale
    exactly (|g| < 2**-958) is absorbed by it."""
    if abs(s) < INF:
        for i in range(y.shape[0]):
            out[i] = softmax_backward_elem_wide(np.float64(g[i]), np.float64(y[i]), s, c)
        return
    s2 = 0.0
    c2 = 0.0
    for i in range(y.shape[0]):
        gi = np.float64(g[i]) * INV_SCALE
        yi = np.float64(y[i])
        p = gi * yi
        u = s2 + p
        c2 += two_sum_err(s2, p, u) + two_prod_err(gi, yi, p)
        s2 = u
    if not (abs(s2) < INF):  # a +-inf or NaN term (or one beyond max 2**64)
        for i in range(y.shape[0]):
            out[i] = softmax_backward_elem(np.float64(g[i]), np.float64(y[i]), s, 0.0)
    elif abs(s2 * SCALE) < INF:  # S fits: only g - S may overflow
        s2 *= SCALE
        c2 *= SCALE
        for i in range(y.shape[0]):
            out[i] = softmax_backward_elem_wide(np.float64(g[i]), np.float64(y[i]), s2, c2)
    else:
        for i in range(y.shape[0]):
            out[i] = softmax_backward_elem_scaled(np.float64(g[i]), np.float64(y[i]), s2, c2)


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
    if not (abs(s) < INF):  # rare: see log_softmax_backward_wide
        log_softmax_backward_wide(g, y, s, out)
        return
    for i in range(y.shape[0]):
        out[i] = log_softmax_backward_elem(np.float64(g[i]), np.float64(y[i]), s, c)


@scalar
def log_softmax_backward_wide(g, y, s, out):
    """log_softmax_backward_row's write for a sum s of +-inf or NaN. Summed
    again scaled by 2**-64: if that is not finite either, a grad entry is
    +-inf or NaN and the formula's IEEE value is written (the NaN error
    term of inf - inf dropped); else S overflowed from finite terms (e.g.
    g = [max, max], where g - exp(y) S is finite): S as the scaled sum, the
    plain write where S fits, else g - exp(y) S = 2**64 (g 2**-64 -
    exp(y) S 2**-64): exp(y) S 2**-64 >= 2**-50 where exp(y) > 0, so the
    scaled result is normal where nonzero and the scaling exact; a g below
    2**-958 (not exact when scaled) is added unscaled, which is g itself
    where exp(y) = 0."""
    s2 = 0.0
    c2 = 0.0
    for i in range(y.shape[0]):
        gi = np.float64(g[i]) * INV_SCALE
        u = s2 + gi
        c2 += two_sum_err(s2, gi, u)
        s2 = u
    if not (abs(s2) < INF):
        for i in range(y.shape[0]):
            out[i] = log_softmax_backward_elem(np.float64(g[i]), np.float64(y[i]), s, 0.0)
    elif abs(s2 * SCALE) < INF:
        s2 *= SCALE
        c2 *= SCALE
        for i in range(y.shape[0]):
            out[i] = log_softmax_backward_elem(np.float64(g[i]), np.float64(y[i]), s2, c2)
    else:
        for i in range(y.shape[0]):
            out[i] = log_softmax_backward_elem_scaled(np.float64(g[i]), np.float64(y[i]), s2, c2)
