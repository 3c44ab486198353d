"""Row probes for the softmax family: one ``@njit`` loop per op over the rows
of a C-contiguous 2-D array, ``f(*inputs, out)``, rows of any length >= 1.

Every pass over a row is a loop LLVM vectorizes: integer-key maxima, sums
under ``reassoc`` only where the order of the additions does not matter (the
per-entry steps are separate functions compiled without the flag, so their
roundings stay as written: LLVM inlines them later, each instruction with
its own flags), no loop-carried two-sum. A row's later passes read it from
L1.

float64 sums are exact by construction, not compensated: each term t is
split on a grid fixed per row, hi = (sigma + t) - sigma, lo = t - hi, sigma a
power of two >= 2 n max|t|. The hi parts are multiples of ulp(sigma) and
their partial sums stay below sigma, so they add exactly in any order; the
lo parts are below ulp(sigma), so their plain sum is off by ~n^2 2^-106
max|t| (a term below the grid is its own lo part: a sum of tiny terms keeps
its relative accuracy). The forward grid is known in advance (terms below
2^201); the backward ones take a max pass first.

exp(x - c) takes its argument exactly: c = 0 (x is its own argument) unless
|max| is large (float64: > 2^20, where x - max is exact for every entry that
matters; float32: outside [-25, 175], where x - max is a two-sum whose low
part goes into exp).
Terms are scaled so that the max's is ~2^200 (float32: 2^100) and exp(-800)
(float32: exp(-150)) stays normal: entries further below are clamped there,
n exp(-800) being below every float64 next to the max's log_softmax.

Measured on measure's random rows against an exact reference (max ulps):
float32 softmax 1.55 (bound 2), log_softmax 1.0, backward 1.0 / 0.5 (bound
4); float64 1.5 / 1.6 (bound 4), backward 2.3 / 1.0 (bound 8). (The 80-bit
reference of ``measure._accuracy_rows`` loses a dominant entry's tiny
result: log_softmax's -log(s) with s = 1 + rest rounded at 2^-64, and
softmax.backward's sum g y with y = 1 rounded at 2^-64 |g|.)
"""

from __future__ import annotations

import math

import numpy as np

F32, F64 = np.float32, np.float64


def _cheb(f, h, deg, prec=200):
    """Coefficients (mpf, increasing) of a near-minimax polynomial of degree
    ``deg`` for f on [-h, h] (mpmath's Chebyshev fit)."""
    import mpmath as mp

    import inspect

    with mp.workprec(prec):
        if "asc" in inspect.signature(mp.chebyfit).parameters:  # mpmath >= 1.4 deprecates descending
            return [+v for v in mp.chebyfit(f, [-mp.mpf(h), mp.mpf(h)], deg + 1, asc=True)]
        poly = mp.chebyfit(f, [-mp.mpf(h), mp.mpf(h)], deg + 1)
        return [+v for v in poly[::-1]]


def _q_exp(deg, h):
    """Q(r) = (exp(r) - 1 - r) / r^2 on |r| <= h: c2, c3, ... (mpf)."""
    import mpmath as mp

    def q(r):
        return mp.fsum(r**j / mp.factorial(j + 2) for j in range(40))

    return _cheb(q, h, deg - 2)


def _exp_poly(deg, h):
    """exp(r) on |r| <= h: c0, c1, ... (mpf)."""
    import mpmath as mp

    return _cheb(mp.exp, h, deg)


def _pair(v):
    hi = float(v)
    return hi, float(v - hi)


def _pair_sqrt2():
    import mpmath as mp

    with mp.workprec(200):
        return _pair(mp.sqrt(2))


def probes(c):
    """{(op, kind, dtype): (row loop, number of inputs)} for float32 and float64."""
    import numba

    from fastact.scalar.mathlib import (
        exp_dd,  # the rare fallback of float64 log_softmax.backward
    )
    from fastact.scalar.registry import bitcasts

    scalar, fma, b2f32, b2f64 = c.scalar, c.fma, c.b2f32, c.b2f64
    _, f2b32 = bitcasts(32)
    _, f2b64 = bitcasts(64)

    NAN = math.nan
    NEG_INF = -math.inf
    LN2 = math.log(2.0)
    H = LN2 / 2 * (1 + 2.0**-20)

    # ------------------------------------------------------------ shared
    @scalar
    def fill(o, v):
        for j in range(o.shape[0]):
            o[j] = v

    @scalar
    def pow2_at_least(n):
        """The least power of two >= n, at least 2."""
        p = 2.0
        while p < n:
            p *= 2.0
        return p

    @scalar
    def pow2_above(v):
        """A power of two > |v| (v finite, normal or 0): 2^(exponent + 1)."""
        e = (f2b64(abs(v)) >> np.int64(52)) - np.int64(1023)
        e = e if e > np.int64(-1022) else np.int64(-1022)
        return b2f64((e + np.int64(1024)) << np.int64(52))

    # ======================================================== float64 ==
    I64MIN = np.int64(-(2**63))
    ABS64 = np.int64(0x7FFFFFFFFFFFFFFF)
    INF64 = np.int64(0x7FF0000000000000)
    SHIFT = 6755399441055744.0  # 1.5 * 2^52: fma(a, 1/ln2, SHIFT) - SHIFT = round(a / ln2)
    SHIFT_BITS = np.int64(F64(SHIFT).view(np.int64))
    INV_LN2 = 1.4426950408889634
    LN2_HI = 0.6931471803691238  # 32 bits: k LN2_HI exact for |k| < 2^21
    LN2_LO = 1.9082149292705877e-10  # ln2 - LN2_HI to 53 bits

    @scalar
    def max64(row):
        """(max, bad): integer keys (a float's bits made monotone) so that
        the max is an integer reduction LLVM vectorizes; bad: NaN or +inf."""
        km = I64MIN
        am = np.int64(0)
        for j in range(row.shape[0]):
            b = f2b64(row[j])
            km = max(km, b ^ ((b >> np.int64(63)) & ABS64))
            am = max(am, b & ABS64)
        m = b2f64(km ^ ((km >> np.int64(63)) & ABS64))
        return m, (am > INF64) | (km >= INF64)

    q64 = [float(v) for v in _q_exp(11, H)]  # exp to 2^-55.8 (rounded coefficients)
    q2, q3, q4, q5, q6, q7, q8, q9, q10, q11 = q64

    @scalar
    def term64(x, c, lo, kb):
        """(e, err): e + err = 2^(k + kb - 1023) (1 + u) exactly, e rounded,
        k = round(a / ln2), a = x - c clamped below at lo; 1 + u = exp(r) to
        ~1 float64 ulp before its own rounding, which err carries."""
        a = x - c
        a = a if a > lo else lo
        t = fma(a, INV_LN2, SHIFT)
        k = t - SHIFT
        r = fma(-k, LN2_LO, fma(-k, LN2_HI, a))  # k LN2_HI and a - k LN2_HI exact
        p = fma(fma(fma(fma(fma(fma(fma(fma(fma(q11, r, q10), r, q9), r, q8), r, q7), r, q6), r, q5), r, q4), r, q3), r, q2)
        u = fma(r * r, p, r)
        s = b2f64((f2b64(t) - SHIFT_BITS + kb) << np.int64(52))
        e = fma(u, s, s)
        return e, fma(u, s, s - e)  # s - e exact

    @scalar
    def split_term64(x, c, lo, kb, sig):
        e, err = term64(x, c, lo, kb)
        hi = (sig + e) - sig
        return e, err, hi, (e - hi) + err

    @scalar(reassoc=True)
    def expsum64(x, c, lo, kb, sig, o, errs):
        """sum of the terms as (exact hi sum, lo sum); each term into (o, errs)."""
        sh = 0.0
        sl = 0.0
        for j in range(x.shape[0]):
            e, err, hi, lo_ = split_term64(x[j], c, lo, kb, sig)
            o[j] = e
            errs[j] = err
            sh += hi
            sl += lo_
        return sh, sl

    @scalar
    def split_rest64(x, m, c, lo, kb, sig):
        e, err = term64(x, c, lo, kb)
        below = x < m
        e = e if below else 0.0
        hi = (sig + e) - sig
        return hi, (e - hi) + (err if below else 0.0), np.int64(1) if x == m else np.int64(0)

    @scalar(reassoc=True)
    def restsum64(x, m, c, lo, kb, sig):
        """sum of the terms of the entries below the max (hi, lo), and the
        count of entries equal to it."""
        sh = 0.0
        sl = 0.0
        k = np.int64(0)
        for j in range(x.shape[0]):
            hi, lo_, one = split_rest64(x[j], m, c, lo, kb, sig)
            sh += hi
            sl += lo_
            k += one
        return sh, sl, k

    @scalar
    def reference64(m):
        """(c, lo, kb): x - c is exact for every x within 800 of m (c = 0,
        or c = m where |m| > 2^20: Sterbenz); lo = m - c - 800 (n exp(-800)
        is below every float64, also next to a subnormal log_softmax of the
        max); kb = 1023 + 200 - round((m - c) / ln2): terms are scaled so
        that the max's is ~2^200 and exp(-800)'s is normal."""
        cc = 0.0 if abs(m) <= 1048576.0 else m
        am = m - cc
        km = f2b64(fma(am, INV_LN2, SHIFT)) - SHIFT_BITS
        return cc, am - 800.0, np.int64(1223) - km

    @scalar
    def scale_rows64(o, errs, ih, il):
        for j in range(o.shape[0]):
            e = o[j]
            o[j] = fma(e, ih, fma(e, il, errs[j] * ih))  # (e + err)(ih + il), one rounding

    def softmax64(x, out):
        n = x.shape[1]
        sig = pow2_at_least(n) * 2.0**202  # terms < 2^201
        errs = np.empty(n)
        for i in range(x.shape[0]):
            row, o = x[i], out[i]
            m, bad = max64(row)
            if bad or m == NEG_INF:
                fill(o, NAN)
                continue
            cc, lo, kb = reference64(m)
            sh, sl = expsum64(row, cc, lo, kb, sig, o, errs)
            s = sh + sl
            s_l = sl - (s - sh)
            ih = 1.0 / s
            il = ih * (fma(-s, ih, 1.0) - s_l * ih)  # 1 / (s + s_l) = ih + il
            scale_rows64(o, errs, ih, il)  # terms and sum carry the same scale

    @scalar
    def logsub_rows64(x, o, ch, cl):
        for j in range(x.shape[0]):
            o[j] = (x[j] - ch) - cl

    def log_softmax64(x, out):
        n = x.shape[1]
        sig = pow2_at_least(n) * 2.0**202
        for i in range(x.shape[0]):
            row, o = x[i], out[i]
            m, bad = max64(row)
            if bad or m == NEG_INF:
                fill(o, NAN)
                continue
            cc, lo, kb = reference64(m)
            sh, sl, k = restsum64(row, m, cc, lo, kb, sig)
            # rest = (sh + sl) / (tm + tml) as q + ql: the max's term unrounded
            tm, tml = term64(m, cc, lo, kb)
            rh = sh + sl
            rl = sl - (rh - sh)
            q = rh / tm
            ql = ((fma(-q, tm, rh) + rl) - q * tml) / tm
            if k == 1:
                lse = math.log1p(q) + ql / (1.0 + q)
            else:
                lse = math.log(F64(k) + (q + ql))
            # y = x - (m + lse) with m + lse as a pair: x - ch is exact where
            # it cancels, so y is within ~1 ulp plus lse's error
            ch = m + lse
            bb = ch - m
            cl = (m - (ch - bb)) + (lse - bb)
            logsub_rows64(row, o, ch, cl)

    # ----------------------------------------------- softmax backward 64
    # y (g - S), S = sum g y, three passes: max |g y| over the entries with
    # y < 1/2 (the grid), their grid sum B of two-prods (the entry with y >=
    # 1/2, the dominant one, kept out as P, an exact pair), y ((g - sh) - sl)
    # with S = P + B as a pair (g - sh exact where it cancels). The dominant
    # entry then gets y (g (1 - y) - B), g (1 - y) a two-prod (1 - y exact):
    # its result, -sum_{j != k} g_j y_j for y = 1, does not cancel against S.
    # A tie at 1/2 retries with nothing kept out. Written for any input dtype
    # (float32 rows fall back to it).
    @scalar
    def small_abs_prod(g, y, big_at):
        g = F64(g)
        y = F64(y)
        return f2b64(abs(g * y)) if y < big_at else np.int64(0)

    @scalar
    def maxprod64(g, y, big_at):
        km = np.int64(0)
        for j in range(g.shape[0]):
            km = max(km, small_abs_prod(g[j], y[j], big_at))
        return b2f64(km)

    @scalar
    def split_prod64(g, y, sig, big_at):
        g = F64(g)
        y = F64(y)
        p = g * y
        pe = fma(g, y, -p)
        big = y >= big_at
        v = 0.0 if big else p
        hi = (sig + v) - sig
        lo = (v - hi) + (0.0 if big else pe)
        return (p if big else 0.0), (pe if big else 0.0), hi, lo, (np.int64(1) if big else np.int64(0))

    @scalar(reassoc=True)
    def dotsum64(g, y, sig, big_at):
        ph = 0.0
        pl = 0.0
        bh = 0.0
        bl = 0.0
        nb = np.int64(0)
        ib = np.int64(-1)
        for j in range(g.shape[0]):
            a, b, hi, lo, big = split_prod64(g[j], y[j], sig, big_at)
            ph += a
            pl += b
            bh += hi
            bl += lo
            nb += big
            ib = max(ib, np.int64(j) if big else np.int64(-1))
        return ph, pl, bh, bl, nb, ib

    @scalar
    def sub_rows64(g, y, o, ch, cl):
        for j in range(g.shape[0]):
            o[j] = F64(y[j]) * ((F64(g[j]) - ch) - cl)

    @scalar
    def sm_bwd_pass64(gr, yr, o, n2, big_at):
        """One try with entries y >= big_at kept out of the grid sum; False
        if two are (a tie at 1/2: their sum would round), then the caller
        passes big_at = 2 (no entry kept out: there is no dominant one)."""
        sig = pow2_above(maxprod64(gr, yr, big_at)) * n2 * 2.0
        ph, pl, bh, bl, nb, ib = dotsum64(gr, yr, sig, big_at)
        if nb > 1:
            return False
        b = bh + bl
        b_l = bl - (b - bh)
        # S = P + B as a pair: g - ch is exact where it cancels
        sh = ph + b
        bb = sh - ph
        sl = ((ph - (sh - bb)) + (b - bb)) + (pl + b_l)
        ch = sh + sl
        cl = sl - (ch - sh)
        sub_rows64(gr, yr, o, ch, cl)
        if nb == 1:
            gk = F64(gr[ib])
            yk = F64(yr[ib])
            w = 1.0 - yk  # exact
            qh = gk * w
            ql = fma(gk, w, -qh)
            o[ib] = yk * ((qh - b) + (ql - b_l))
        return True

    @scalar
    def sm_bwd_row64(gr, yr, o, n2):
        if not sm_bwd_pass64(gr, yr, o, n2, 0.5):
            sm_bwd_pass64(gr, yr, o, n2, 2.0)

    def softmax_grad64(g, y, out):
        n2 = pow2_at_least(g.shape[1])
        for i in range(g.shape[0]):
            sm_bwd_row64(g[i], y[i], out[i], n2)

    # ------------------------------------------- log_softmax backward 64
    # g - exp(y) S, S = sum g (grid sum, a pair). exp(y) S as a pair to
    # 2^-61 so that g - exp(y) S keeps its ulps down to |g - exp(y) S| =
    # 2^-10 |exp(y) S| (below that, fastact's double-double exp_dd
    # recomputes the entry: rare). y = k ln2 + j ln2/2 + r, |r| <= ln2/4; the
    # row's S and sqrt2 S as pairs, chosen by j; exp(r) = 1 + r + r^2/2 +
    # r^2 (Q(r) - 1/2), r^2/2 exact (a two-prod), the rest below 2^-10.
    h4 = LN2 / 4 * (1 + 2.0**-20)
    qb = _q_exp(11, h4)
    b2d = float(qb[0] - 0.5)
    b3, b4, b5, b6, b7, b8, b9, b10, b11 = [float(v) for v in qb[1:]]
    INV_LN2_2 = 2.0 / LN2
    LN2_HI_2 = LN2_HI / 2
    LN2_LO_2 = LN2_LO / 2
    SQ2H, SQ2L = _pair_sqrt2()

    @scalar
    def abs_bits(g):
        return f2b64(abs(F64(g)))

    @scalar
    def maxabs64(g):
        km = np.int64(0)
        for j in range(g.shape[0]):
            km = max(km, abs_bits(g[j]))
        return b2f64(km)

    @scalar
    def split_g64(g, sig):
        g = F64(g)
        hi = (sig + g) - sig
        return hi, g - hi

    @scalar(reassoc=True)
    def gsum64(g, sig):
        sh = 0.0
        sl = 0.0
        for j in range(g.shape[0]):
            hi, lo = split_g64(g[j], sig)
            sh += hi
            sl += lo
        return sh, sl

    @scalar
    def exp_s64(y, s0h, s0l, s1h, s1l):
        """exp(y) S as a pair, S = s0h + s0l, sqrt2 S = s1h + s1l, y in
        [-846, 709]: 2^k applied as two factors (the second product rounds
        once where exp(y) S is subnormal)."""
        t = fma(y, INV_LN2_2, SHIFT)
        kk = t - SHIFT
        h = fma(-kk, LN2_HI_2, y)  # exact
        r = fma(-kk, LN2_LO_2, h)
        rl = fma(-kk, LN2_LO_2, h - r)
        kj = f2b64(t) - SHIFT_BITS
        odd = (kj & np.int64(1)) != np.int64(0)
        sh = s1h if odd else s0h
        sl = s1l if odd else s0l
        p = fma(fma(fma(fma(fma(fma(fma(fma(b11, r, b10), r, b9), r, b8), r, b7), r, b6), r, b5), r, b4), r, b3)
        w = fma(r, p, b2d)  # Q - 1/2
        r2 = r * r
        h2 = r2 * 0.5
        uh = r + h2
        ul = (h2 - (uh - r)) + fma(fma(r, r, -r2), 0.5, r2 * w)  # u = r + r^2/2 + r^2 (Q - 1/2)
        eh = 1.0 + uh
        el = ((1.0 - eh) + uh) + fma(rl, eh, ul)  # exp(r + rl) = eh + el
        ah = eh * sh
        al = fma(eh, sh, -ah) + fma(el, sh, eh * sl)
        k = kj >> np.int64(1)
        k1 = k >> np.int64(1)
        s1 = b2f64((k1 + np.int64(1023)) << np.int64(52))
        s2 = b2f64((k - k1 + np.int64(1023)) << np.int64(52))
        return (ah * s1) * s2, (al * s1) * s2

    @scalar
    def lsm_bwd_elem64(g, y, s0h, s0l, s1h, s1l):
        """(g - exp(y) S, flag): flag where it cancels below 2^-10 of exp(y) S."""
        g = F64(g)
        y = F64(y)
        near = y > -846.0  # below: |exp(y) S| < 2^-1220 |S|
        ah, al = exp_s64(y if near else -846.0, s0h, s0l, s1h, s1l)
        r = (g - ah) - al
        r = r if near else g
        return r, abs(r) * 1024.0 < abs(ah)

    @scalar
    def lsm_bwd_rows64(g, y, o, s0h, s0l, s1h, s1l):
        bad = False
        for j in range(g.shape[0]):
            r, flag = lsm_bwd_elem64(g[j], y[j], s0h, s0l, s1h, s1l)
            o[j] = r
            bad |= flag
        return bad

    @scalar
    def lsm_bwd_fix64(g, y, o, sh, sl):
        """Entries that cancel below 2^-10: exp(y) as fastact's double-double
        ``exp_dd`` (2^-100)."""
        for j in range(g.shape[0]):
            gv = F64(g[j])
            v = F64(y[j])
            r = F64(o[j])
            if v > -846.0 and v < 709.0 and abs(r) * 1024.0 < abs(gv - r):
                eh, el = exp_dd(v)
                ah = eh * sh
                al = fma(eh, sh, -ah) + fma(el, sh, eh * sl)
                o[j] = (gv - ah) - al

    @scalar
    def lsm_bwd_row64(gr, yr, o, n2):
        sig = pow2_above(maxabs64(gr)) * n2 * 2.0
        sh, sl = gsum64(gr, sig)
        s = sh + sl
        s_l = sl - (s - sh)
        s1 = SQ2H * s
        s1_l = fma(SQ2H, s, -s1) + fma(SQ2H, s_l, SQ2L * s)
        if lsm_bwd_rows64(gr, yr, o, s, s_l, s1, s1_l):
            lsm_bwd_fix64(gr, yr, o, s, s_l)

    def log_softmax_grad64(g, y, out):
        n2 = pow2_at_least(g.shape[1])
        for i in range(g.shape[0]):
            lsm_bwd_row64(g[i], y[i], out[i], n2)

    # ======================================================== float32 ==
    c2, c3, c4, c5, c6, c7 = (F32(float(v)) for v in _q_exp(7, H))
    I32MIN = np.int32(-(2**31))
    ABS32 = np.int32(0x7FFFFFFF)
    INF32 = np.int32(0x7F800000)
    SHIFT_F = F32(12582912.0)  # 1.5 * 2^23
    SHIFT_F_BITS = np.int32(F32(12582912.0).view(np.int32))
    INV_LN2_F = F32(INV_LN2)
    LN2_HI_F = F32(0.693145751953125)  # 15 bits: k LN2_HI_F exact for |k| < 512
    LN2_LO_F = F32(LN2 - 0.693145751953125)
    ZERO_F = F32(0.0)
    LO_F = F32(-150.0)  # clamp of x - m: n exp(-150) is below every float32 next to 1 or to lse

    @scalar
    def max32(row):
        km = I32MIN
        am = np.int32(0)
        for j in range(row.shape[0]):
            b = f2b32(row[j])
            km = max(km, np.int32(b ^ np.int32(np.int32(b >> np.int32(31)) & ABS32)))
            am = max(am, np.int32(b & ABS32))
        m = b2f32(np.int32(km ^ np.int32(np.int32(km >> np.int32(31)) & ABS32)))
        return m, (am > INF32) | (km >= INF32)

    def make_exp32(low):
        @scalar
        def exp32(a, al, kb):
            """(u, s): exp(a + al) 2^(kb - 127) = (1 + u) s, s a power of two,
            1 + u unrounded, within 2^-24.7 (|a| < 177; al, a low part, carried
            if ``low``)."""
            t = fma(a, INV_LN2_F, SHIFT_F)
            k = t - SHIFT_F
            r = fma(-k, LN2_LO_F, fma(-k, LN2_HI_F, a))  # a - k LN2_HI_F exact
            p = fma(fma(fma(fma(fma(c7, r, c6), r, c5), r, c4), r, c3), r, c2)
            u = fma(r * r, p, r)
            if low:
                u = u + fma(al, u, al)  # exp(r + al) = (1 + u)(1 + al)
            return u, b2f32(np.int32(np.int32(f2b32(t) - SHIFT_F_BITS + kb) << np.int32(23)))

        return exp32

    exp32 = make_exp32(False)
    exp32l = make_exp32(True)

    @scalar
    def term32(v, cc, direct, kb):
        """(u, s) of exp(v - cc) 2^(kb - 127): direct (cc = 0: v its own
        argument; clamped at the cc passed, m - 150) or v - cc as a two-sum,
        its low part carried, clamped 150 below."""
        if direct:
            a = v if v > cc else cc
            return exp32(a, ZERO_F, kb)
        dh = v - cc
        bb = dh - v
        dl = (v - (dh - bb)) + (-cc - bb)
        near = dh > LO_F
        return exp32l(dh if near else LO_F, dl if near else ZERO_F, kb)

    @scalar
    def reference32(m):
        """(direct, clamp or max, kb): direct for m in [-25, 175] (every x
        within 150 of m has |x| < 177); terms scaled so that the max's is
        ~2^100 and exp(-150)'s is normal."""
        if m >= F32(-25.0) and m <= F32(175.0):
            km = np.int32(f2b32(fma(m, INV_LN2_F, SHIFT_F)) - SHIFT_F_BITS)
            return True, m - F32(150.0), np.int32(227) - km
        return False, m, np.int32(227)

    @scalar
    def parts32(v, cc, direct, kb):
        u, s = term32(v, cc, direct, kb)
        e = fma(u, s, s)
        return u, s, e, fma(u, s, s - e)  # e + err = (1 + u) s exactly

    @scalar(reassoc=True)
    def expsum32(x, cc, direct, kb, us, ss):
        s = 0.0
        r = ZERO_F
        for j in range(x.shape[0]):
            u, sb, e, err = parts32(x[j], cc, direct, kb)
            us[j] = u
            ss[j] = sb
            s += F64(e)
            r += err
        return s + F64(r)

    @scalar
    def write_sm32(us, ss, o, ih, il):
        for j in range(o.shape[0]):
            u = us[j]
            p = u * ih
            pe = fma(u, ih, -p)
            t = fma(il, u, il)
            o[j] = (ih + (p + (pe + t))) * ss[j]  # (1 + u)(ih + il) s, rounded once

    def softmax32(x, out):
        n = x.shape[1]
        us = np.empty(n, np.float32)
        ss = np.empty(n, np.float32)
        for i in range(x.shape[0]):
            row, o = x[i], out[i]
            m, bad = max32(row)
            if bad or m == NEG_INF:
                fill(o, F32(NAN))
                continue
            direct, cc, kb = reference32(m)
            s = expsum32(row, cc, direct, kb, us, ss)
            inv = 1.0 / s
            ih = F32(inv)
            il = F32(inv - F64(ih))
            write_sm32(us, ss, o, ih, il)

    @scalar
    def rest_parts32(v, m, cc, direct, kb):
        u, s = term32(v, cc, direct, kb)
        e = fma(u, s, s)
        err = fma(u, s, s - e)
        below = v < m
        return (e if below else ZERO_F), (err if below else ZERO_F), (np.int32(1) if v == m else np.int32(0))

    @scalar(reassoc=True)
    def restsum32(x, m, cc, direct, kb):
        s = 0.0
        r = ZERO_F
        k = np.int32(0)
        for j in range(x.shape[0]):
            e, err, one = rest_parts32(x[j], m, cc, direct, kb)
            s += F64(e)
            r += err
            k += one
        return s + F64(r), k

    @scalar
    def write_lsm32(x, o, m, lse):
        for j in range(x.shape[0]):
            o[j] = (x[j] - m) - lse

    def log_softmax32(x, out):
        for i in range(x.shape[0]):
            row, o = x[i], out[i]
            m, bad = max32(row)
            if bad or m == NEG_INF:
                fill(o, F32(NAN))
                continue
            direct, cc, kb = reference32(m)
            s, k = restsum32(row, m, cc, direct, kb)
            # the max's own term to float64 accuracy (x = m: exp(m) exactly
            # scaled, or 2^100): lse's error is then the rest's, 2^-24.7
            tm = math.exp(F64(m)) * 2.0 ** (np.int64(kb) - 127) if direct else 2.0**100
            rest = s / tm
            lse = math.log1p(rest) if k == 1 else math.log(F64(k) + rest)
            m64 = F64(m)
            ch = F32(m64 + lse)
            cl = F32((m64 - F64(ch)) + lse)  # m + lse = ch + cl (m - ch exact)
            write_lsm32(row, o, ch, cl)

    # y (g - S): products exact in float64, summed in float64 (any order),
    # with B, the sum without the dominant entry (y >= 1/2), whose result is
    # g (1 - y) - B (g (1 - y) exact: it does not cancel against S). S's and
    # B's errors are below ~2^-47 (A + |S - B|), A = sum |g y| over B's
    # entries (a rough float32 sum): an entry whose result is below 2^-22 of
    # that (a chance cancellation) sends the row to the float64 kernel, and
    # so does a tie at y = 1/2 (two entries kept out of B).
    # The write pass in float32: g - S with S as a pair (dh + dl), one rounding.
    @scalar
    def prod_parts32(g, y):
        p = F64(g) * F64(y)
        big = y >= F32(0.5)
        return p, (0.0 if big else p), (ZERO_F if big else abs(g * y)), (np.int32(1) if big else np.int32(0))

    @scalar(reassoc=True)
    def dotsum32(g, y):
        s = 0.0
        b = 0.0
        a = F32(0.0)
        nb = np.int32(0)
        ib = np.int32(-1)
        for j in range(g.shape[0]):
            pv, bv, av, big = prod_parts32(g[j], y[j])
            s += pv
            b += bv
            a += av
            nb += big
            ib = max(ib, np.int32(j) if big == np.int32(1) else np.int32(-1))
        return s, b, F64(a), nb, ib

    @scalar
    def sm_bwd_elem32(g, y, ch, cl, lim):
        dh = g - ch
        bb = dh - g
        dl = ((g - (dh - bb)) + (-ch - bb)) - cl  # g - S = dh + dl
        return fma(y, dh, y * dl), (abs(dh) < lim) & (y < F32(0.5))

    @scalar
    def sub_rows32(g, y, o, ch, cl, lim):
        bad = False
        for j in range(g.shape[0]):
            v, flag = sm_bwd_elem32(g[j], y[j], ch, cl, lim)
            o[j] = v
            bad |= flag
        return bad

    def softmax_grad32(g, y, out):
        n2 = pow2_at_least(g.shape[1])
        for i in range(g.shape[0]):
            gr, yr, o = g[i], y[i], out[i]
            s, b, a, nb, ib = dotsum32(gr, yr)
            ch = F32(s)
            cl = F32(s - F64(ch))
            lim = a * 2.0**-22  # B's error bound (A: the entries kept in B)
            bad = sub_rows32(gr, yr, o, ch, cl, F32(lim + abs(s - b) * 2.0**-22))
            if nb == 1:
                yk = F64(yr[ib])
                r = F64(gr[ib]) * (1.0 - yk) - b  # g (1 - y) exact
                o[ib] = F32(yk * r)
                bad |= abs(r) < lim
            if bad or nb > 1:
                sm_bwd_row64(gr, yr, o, n2)

    # g - exp(y) S in float64, exp(y) to 2^-39.8 (a degree-8 polynomial with S
    # folded into its coefficients), S summed in float64 (any order) with A =
    # sum |g|: an entry with |result| < 2^-14 K |exp(y) S|, K = 1 + A / |S|,
    # sends the row to the float64 kernel (checked in float32 as |result| <
    # 2^-13 K |g|).
    ec = [float(v) for v in _exp_poly(8, H)]
    f0, f1, f2, f3, f4, f5, f6, f7, f8 = ec

    @scalar
    def gsum_abs(g):
        g = F64(g)
        return g, abs(g)

    @scalar(reassoc=True)
    def gsum32(g):
        s = 0.0
        a = 0.0
        for j in range(g.shape[0]):
            v, av = gsum_abs(g[j])
            s += v
            a += av
        return s, a

    @scalar
    def exp_s32(y, s):
        """exp(y) s for float64 y in [-700, 709], to 2^-39.8."""
        t = fma(y, INV_LN2, SHIFT)
        k = t - SHIFT
        r = fma(-k, LN2_LO, fma(-k, LN2_HI, y))
        p = fma(r, s * f8, s * f7)
        p = fma(r, p, s * f6)
        p = fma(r, p, s * f5)
        p = fma(r, p, s * f4)
        p = fma(r, p, s * f3)
        p = fma(r, p, s * f2)
        p = fma(r, p, s * f1)
        p = fma(r, p, s * f0)
        return p * b2f64((f2b64(t) - SHIFT_BITS + np.int64(1023)) << np.int64(52))

    @scalar
    def lsm_bwd_elem32(g, y, s, kk):
        v = F64(y)
        near = v > -700.0
        e = exp_s32(v if near else -700.0, s)
        gv = F64(g)
        r = gv - e if near else gv
        v = F32(r)
        # |r| < 2^-14 K |exp(y) S| implies |r| < 2^-13 K |g| = kk |g| (exp(y) S = g - r)
        return v, abs(v) < abs(g) * kk

    @scalar
    def lsm_bwd_rows32(g, y, o, s, kk):
        bad = False
        for j in range(g.shape[0]):
            v, flag = lsm_bwd_elem32(g[j], y[j], s, kk)
            o[j] = v
            bad |= flag
        return bad

    def log_softmax_grad32(g, y, out):
        n2 = pow2_at_least(g.shape[1])
        for i in range(g.shape[0]):
            gr, yr, o = g[i], y[i], out[i]
            s, a = gsum32(gr)
            # K = 1 + A / |S| (S's error relative to S); S = 0 with A > 0: every entry
            kk = F32(2.0**-13 * (1.0 + a / abs(s)) if s != 0.0 else (0.0 if a == 0.0 else math.inf))
            if lsm_bwd_rows32(gr, yr, o, s, kk):
                lsm_bwd_row64(gr, yr, o, n2)

    jit = numba.njit
    return {
        ("softmax", "forward", "float32"): (jit(softmax32), 1),
        ("softmax", "backward", "float32"): (jit(softmax_grad32), 2),
        ("log_softmax", "forward", "float32"): (jit(log_softmax32), 1),
        ("log_softmax", "backward", "float32"): (jit(log_softmax_grad32), 2),
        ("softmax", "forward", "float64"): (jit(softmax64), 1),
        ("softmax", "backward", "float64"): (jit(softmax_grad64), 2),
        ("log_softmax", "forward", "float64"): (jit(log_softmax64), 1),
        ("log_softmax", "backward", "float64"): (jit(log_softmax_grad64), 2),
    }
