"""Standalone speed probes for the ops that miss issue 13's speed targets.

``python -m fastact.devtools.probes [--size N] [--repeat R] [--step S] [--json]``

Why: where fastact is slower than PyTorch or than the memory roofline, a
probe answers "how fast can this op be made from Numba on this machine, at
the contract's accuracy?". Each probe is the shortest formula written for
the op, outside fastact's layers: its own exp core (a polynomial fitted at
import, 2^k scaling by bits), a plain division, only the carried low parts
without which the bound fails (each says so), one ``@vectorize`` loop
(elementwise) or one ``@njit`` row loop (softmax family).
It borrows only two primitives from ``fastact.scalar``: ``fma`` (one
``vfmadd``) and the bit casts. If a probe is much faster than fastact at the
same accuracy, fastact's formula has room; if it is not, the op is bound by
the machine (memory or the arithmetic the bound needs), and a gap to torch
is accuracy torch does not keep.

What is reported, one thread, float32 (and float64 where listed):
- ns per element of the probe, of fastact's public call and of the roofline
  (np.copyto for 1-in-1-out, np.add for 2-in-1-out), median of --repeat
  runs on --size elements (default 2^22: beyond the caches here);
- the probe's max error in ulps of the exact value: float32 probes over
  every --step-th float32 bit pattern against fastact's float64 kernel
  (``sweep32.sweep``); float64 probes against mpmath at half of the accuracy
  table's points (``fastact.devtools.accuracy``); row probes on random rows
  against the row formula in 80-bit long double. Whether that meets the
  contract (float32 2 / 4 ulp forward / backward, float64 4 / 8): a probe
  over its bound is reported as such; it is not a valid floor, only an upper
  bound on the speed at that accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np

from fastact.devtools.accuracy import BOUNDS

F32, F64 = np.float32, np.float64

# ------------------------------------------------------------- the exp cores


def _fit_expm1(deg, dtype):
    """Coefficients c2..c_deg of expm1(r) ~ r + r^2 (c2 + c3 r + ...) on
    |r| <= ln2/2, by least squares on Chebyshev nodes in float64 (longdouble
    where it has more bits): good to well under 1 ulp of the target dtype."""
    h = math.log(2.0) / 2
    n = 400
    r = np.cos(np.pi * (np.arange(n) + 0.5) / n).astype(np.longdouble) * h
    target = (np.expm1(r) - r) / (r * r)  # smooth: c2 + c3 r + ...
    a = np.vander(r.astype(np.float64), deg - 1, increasing=True)
    c, *_ = np.linalg.lstsq(a, target.astype(np.float64), rcond=None)
    return tuple(dtype(v) for v in c)


_C32 = _fit_expm1(7, F32)
_C64 = _fit_expm1(12, F64)


def _build():
    """Compile the probes: {(op, kind, dtype): (callable, number of inputs)};
    elementwise probes are ufuncs, the softmax family's are row loops
    ``f(*inputs, out)``."""
    import numba

    from fastact.scalar.fma import fma
    from fastact.scalar.formulas import SELU_SCALE, SELU_SCALE_ALPHA
    from fastact.scalar.registry import bitcasts, ensure_registered, scalar

    ensure_registered()  # from here on, scalar() registers at once
    b2f32, _ = bitcasts(32)
    b2f64, _ = bitcasts(64)

    c2, c3, c4, c5, c6, c7 = _C32
    inv_ln2, shift = F32(1.4426950408889634), F32(12582912.0)
    ln2_hi = F32(0.693145751953125)
    ln2_lo = F32(math.log(2.0) - 0.693145751953125)
    one, zero, two, four, six = F32(1), F32(0), F32(2), F32(4), F32(6)
    selu_l, selu_la = F32(SELU_SCALE), F32(SELU_SCALE_ALPHA)
    lo32, twom64 = F32(-120.0), F32(2.0**-64)  # exp(-120) 2**64 is normal; x e(x) underflows below -110

    @scalar
    def exp64x_32(a):
        """(u, s): exp(a) * 2**64 = (1 + u) s, s a power of two, for a in
        [-120, 0] (the product normal); 1 + u to ~0.1 ulp before its own
        rounding (the rounding of the reduced argument r is carried: without
        it, sigmoid's 2 ulp bound fails). (1 + u) s is left unrounded so that
        a product with it rounds once: fma(u, v s, v s)."""
        k = fma(a, inv_ln2, shift) - shift
        t = fma(-k, ln2_hi, a)  # exact: k * ln2_hi has 8 + 16 bits
        r = fma(-k, ln2_lo, t)
        rl = fma(-k, ln2_lo, t - r)  # r's rounding error (t - r is exact)
        p = fma(fma(fma(fma(fma(c7, r, c6), r, c5), r, c4), r, c3), r, c2)
        u = fma(r * r, p, r)
        u = u + fma(rl, u, rl)  # exp(r + rl) = (1 + u)(1 + rl)
        return u, b2f32(np.int32((np.int32(k) + np.int32(127 + 64)) << np.int32(23)))

    d2, d3, d4, d5, d6, d7, d8, d9, d10, d11, d12 = _C64
    inv_ln2_d, shift_d = 1.4426950408889634, 6755399441055744.0
    ln2_hi_d = 0.6931471803691238  # 28 bits: k * ln2_hi_d is exact
    ln2_lo_d = float(np.log(np.longdouble(2)) - np.longdouble(ln2_hi_d))  # ln2 - hi to 53 bits
    lo64, twom64_d = -745.5, 2.0**-64

    @scalar
    def exp64x_64(a):
        """exp(a) * 2**64 for a in [-745.5, 0], within ~1 ulp (float64)."""
        k = fma(a, inv_ln2_d, shift_d) - shift_d
        r = fma(-k, ln2_lo_d, fma(-k, ln2_hi_d, a))
        p = fma(fma(fma(fma(fma(d12, r, d11), r, d10), r, d9), r, d8), r, d7)
        p = fma(fma(fma(fma(fma(p, r, d6), r, d5), r, d4), r, d3), r, d2)
        u = fma(r * r, p, r)
        kk = np.int64(k) + np.int64(64)
        k1 = kk >> np.int64(1)  # two factors: 2**kk alone may be below the normal range
        s1 = b2f64((k1 + np.int64(1023)) << np.int64(52))
        s2 = b2f64((kk - k1 + np.int64(1023)) << np.int64(52))
        return fma(u, s1, s1) * s2

    # ---- float32 elementwise probes: x -> y, (grad, x) -> dx

    @scalar
    def sig_parts32(x):
        """(u, s, r): exp(-|x|) 2**64 = (1 + u) s unrounded, r = 1 / (1 +
        exp(-|x|)) with the rounding of 1 + e carried (without: 2.7 ulp)."""
        a = -abs(x)
        u, s = exp64x_32(a if a > lo32 else lo32)
        s = s if a > lo32 else zero  # below every float32 result
        e = fma(u, s, s) * twom64
        d = one + e
        dl = (one - d) + e  # exact: 1 >= e
        r = one / d
        return u, s, fma(-dl, r * r, r)

    @scalar
    def sigmoid32(x):
        u, s, r = sig_parts32(x)
        y = r if x >= zero else (fma(u, r, r) * s) * twom64  # e r rounded once
        return y if x == x else x

    def sigmoid_grad32(g, x):
        u, s, r = sig_parts32(x)
        r2 = r * r
        r2l = fma(r, r, -r2)  # exact: e r^2 = (1 + u)(r2 + r2l) s, rounded once
        y = g * (((r2 + fma(u, r2, r2l)) * s) * twom64)
        return y if x == x else x

    def softplus_grad32(g, x):
        return g * sigmoid32(x)

    def silu32(x):
        # x / (1 + e) needs 1/(1 + e) as a pair r + rl (2.2 ulp with r alone)
        u, s, r = sig_parts32(x)
        a = -abs(x)
        e = fma(u, s, s) * twom64
        d = one + e
        dl = (one - d) + e
        r = one / d
        rl = (fma(-r, d, one) - dl * r) * r  # 1/(d + dl) - r to first order
        xr = x * r
        t = fma(x, rl, fma(x, r, -xr))  # x (r + rl) - xr
        y = xr + t if x >= zero else ((xr + fma(u, xr, t)) * s) * twom64
        return y if x == x else x

    def tanh_grad32(g, x):
        u, s, r = sig_parts32(two * x)
        r4 = (four * r) * r
        r4l = fma(four * r, r, -r4)
        y = g * (((r4 + fma(u, r4, r4l)) * s) * twom64)
        return y if x == x else x

    @scalar
    def expm1_32(x):
        """expm1(x) for x <= 0: u for |x| < ln2/2 (k = 0), else 2^k u + (2^k - 1)
        in one fma (2^k - 1 is exact); -1 below -88."""
        a = x if x > F32(-88.0) else F32(-88.0)
        u, s = exp64x_32(a)  # s = 2^(k + 64)
        s = s * twom64
        y = fma(s, u, s - one)
        return y if x > F32(-88.0) else -one

    def elu32(x):
        y = x if x > zero else expm1_32(x)
        return y if x == x else x

    def elu_grad32(g, x):
        u, s = exp64x_32(x if x > lo32 else lo32)
        e = (fma(u, s, s) * twom64) if x > lo32 else zero
        y = g if x > zero else g * e
        return y if x == x else x

    def selu32(x):
        y = selu_l * x if x > zero else selu_la * expm1_32(x)
        return y if x == x else x

    def relu_grad32(g, x):
        y = g if x > zero else zero * g
        return y if x == x else x

    def leaky_relu_grad32(g, x):
        y = g if x > zero else g * F32(0.01)
        return y if x == x else x

    def hardtanh_grad32(g, x):
        y = g if (x > -one) & (x < one) else zero * g
        return y if x == x else x

    def hardsigmoid_grad32(g, x):
        y = g * F32(1.0 / 6.0) if (x > F32(-3)) & (x < F32(3)) else zero * g
        return y if x == x else x

    # ---- float64 elementwise probes

    @scalar
    def sig_parts64(x):
        a = -abs(x)
        es = exp64x_64(a if a > lo64 else lo64)
        es = es if a > lo64 else 0.0
        e = es * twom64_d
        d = 1.0 + e
        r = 1.0 / d
        return es, fma(-((1.0 - d) + e), r * r, r)

    @scalar
    def sigmoid64(x):
        es, r = sig_parts64(x)
        y = r if x >= 0.0 else (es * r) * twom64_d
        return y if x == x else x

    def silu64(x):
        es, r = sig_parts64(x)
        y = x * r if x >= 0.0 else ((x * es) * r) * twom64_d
        return y if x == x else x

    def sigmoid_grad64(g, x):
        es, r = sig_parts64(x)
        y = g * (((es * r) * r) * twom64_d)
        return y if x == x else x

    def softplus_grad64(g, x):
        return g * sigmoid64(x)

    def tanh_grad64(g, x):
        es, r = sig_parts64(2.0 * x)
        y = g * ((((4.0 * es) * r) * r) * twom64_d)
        return y if x == x else x

    vec = {}
    for key, fn, sig in (
        ("sigmoid forward float32", sigmoid32, "float32(float32)"),
        ("sigmoid backward float32", sigmoid_grad32, "float32(float32, float32)"),
        ("softplus backward float32", softplus_grad32, "float32(float32, float32)"),
        ("silu forward float32", silu32, "float32(float32)"),
        ("tanh backward float32", tanh_grad32, "float32(float32, float32)"),
        ("relu backward float32", relu_grad32, "float32(float32, float32)"),
        ("elu forward float32", elu32, "float32(float32)"),
        ("elu backward float32", elu_grad32, "float32(float32, float32)"),
        ("selu forward float32", selu32, "float32(float32)"),
        ("leaky_relu backward float32", leaky_relu_grad32, "float32(float32, float32)"),
        ("hardtanh backward float32", hardtanh_grad32, "float32(float32, float32)"),
        ("hardsigmoid backward float32", hardsigmoid_grad32, "float32(float32, float32)"),
        ("sigmoid forward float64", sigmoid64, "float64(float64)"),
        ("silu forward float64", silu64, "float64(float64)"),
        ("sigmoid backward float64", sigmoid_grad64, "float64(float64, float64)"),
        ("softplus backward float64", softplus_grad64, "float64(float64, float64)"),
        ("tanh backward float64", tanh_grad64, "float64(float64, float64)"),
    ):
        vec[tuple(key.split())] = (numba.vectorize([sig], nopython=True)(fn), sig.count(",") + 1)

    # ---- the softmax family: one row loop each. Every sum, difference and
    # exp is in float64 (float32 rows: one rounding at the store); float64
    # rows are plain float64 arithmetic (no compensated sums)

    lo_d, tw_d = lo64, twom64_d

    @scalar(reassoc=True)
    def row_stats(row):
        """(m, s): the row's maximum and sum of exp(x - m) (any order: vectorized)."""
        m = row[0]
        for j in range(row.shape[0]):
            m = max(m, row[j])
        s = 0.0
        for j in range(row.shape[0]):
            d = np.float64(row[j]) - np.float64(m)
            s += exp64x_64(d if d > lo_d else lo_d) * tw_d
        return m, s

    def softmax(x, out):
        for i in range(x.shape[0]):
            row, o = x[i], out[i]
            m, s = row_stats(row)
            inv = 1.0 / s
            for j in range(row.shape[0]):
                d = np.float64(row[j]) - np.float64(m)
                o[j] = (exp64x_64(d if d > lo_d else lo_d) * tw_d) * inv

    def log_softmax(x, out):
        for i in range(x.shape[0]):
            row, o = x[i], out[i]
            m, s = row_stats(row)
            ls = np.log(s)
            for j in range(row.shape[0]):
                o[j] = (np.float64(row[j]) - np.float64(m)) - ls

    def softmax_grad(g, y, out):
        for i in range(g.shape[0]):
            gr, yr, o = g[i], y[i], out[i]
            d = 0.0
            for j in range(gr.shape[0]):
                d += np.float64(gr[j]) * np.float64(yr[j])
            for j in range(gr.shape[0]):
                o[j] = np.float64(yr[j]) * (np.float64(gr[j]) - d)

    def log_softmax_grad(g, y, out):
        for i in range(g.shape[0]):
            gr, yr, o = g[i], y[i], out[i]
            s = 0.0
            for j in range(gr.shape[0]):
                s += np.float64(gr[j])
            for j in range(gr.shape[0]):
                v = np.float64(yr[j])
                o[j] = np.float64(gr[j]) - (exp64x_64(v if v > lo_d else lo_d) * tw_d) * s

    # reassoc only, as fastact's row sums: the sums vectorize
    jit = numba.njit(fastmath={"reassoc"})
    fns = {"softmax": (softmax, 1), "log_softmax": (log_softmax, 1)}
    grads = {"softmax": (softmax_grad, 2), "log_softmax": (log_softmax_grad, 2)}
    rows = {}
    for dt in ("float32", "float64"):
        for op in fns:
            rows[(op, "forward", dt)] = (jit(fns[op][0]), 1)
            rows[(op, "backward", dt)] = (jit(grads[op][0]), 2)
    return vec, rows


# ---------------------------------------------------------------- measuring

ROW_LEN = 1024


def _fastact_call(op, kind, dtype, ins, out):
    import fastact

    f = fastact.ACTIVATIONS.get(op) or getattr(fastact, op)
    if op in ("softmax", "log_softmax"):
        if kind == "forward":
            return lambda: f(ins[0], axis=-1, out=out)
        return lambda: f.backward(ins[0], ins[1], axis=-1, out=out)
    if kind == "forward":
        return lambda: f(ins[0], out=out)
    return lambda: f.backward(ins[0], ins[1], out=out)


def _inputs(op, kind, dtype, size, rng):
    """The op's inputs as the bench builds them: x in [-6, 6] (elementwise),
    rows of ROW_LEN, the forward output y for the row backward."""
    import fastact

    if op in ("softmax", "log_softmax"):
        x = (rng.standard_normal((size // ROW_LEN, ROW_LEN)) * 3).astype(dtype)
        if kind == "forward":
            return [x]
        y = getattr(fastact, op)(x, axis=-1)
        return [rng.standard_normal(x.shape).astype(dtype), y]
    x = rng.uniform(-6, 6, size).astype(dtype)
    return [x] if kind == "forward" else [rng.standard_normal(size).astype(dtype), x]


def _median_ns(fn, n, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) / n * 1e9


def _ulp32(ref):
    a = np.abs(ref)
    a = np.where(a < np.finfo(F32).tiny, np.finfo(F32).tiny, a).astype(F32)
    return np.spacing(a).astype(F64)


def _accuracy_elementwise(key, probe, nin, step):
    """Max float32-ulp error over every ``step``-th float32 (float32 probes,
    fastact's float64 kernel as reference), or against mpmath at the
    accuracy table's points (float64 probes)."""
    import fastact
    from fastact.devtools import sweep32

    op, kind, dt = key
    f = fastact.ACTIVATIONS[op]
    if dt == "float32":
        if nin == 1:
            res = sweep32.sweep(probe, f, step=step, bound=BOUNDS[(kind, "float32")])
        else:
            res = sweep32.sweep(lambda x: probe(np.ones_like(x), x),
                                lambda x: f.backward(np.ones_like(x), x), step=step,
                                bound=BOUNDS[(kind, "float32")])
        return res.max_ulp, res.over_bound_count
    return _accuracy_mpmath(key, probe, nin)


def _accuracy_mpmath(key, probe, nin, every=2):
    """Max ulp error against mpmath at every ``every``-th point of the
    accuracy table's points for the op (``fastact.devtools.accuracy``: dense
    sweeps, every binade, the over/underflow thresholds, branch points), with
    the table's rules (absolute bound next to a derivative's zero)."""
    import mpmath as mp

    from fastact.catalog import ENTRIES
    from fastact.devtools import accuracy as A

    op, kind, dt = key
    entry = next(e for e in ENTRIES if e.name == op)
    dtype = np.dtype(dt)
    x = A.points(entry, dtype, 0)[::every]
    with np.errstate(all="ignore"):
        got = probe(x) if nin == 1 else probe(np.ones_like(x), x)
    ref = entry.ref if kind == "forward" else entry.ref_grad
    failures = []
    errs = np.empty(len(x))
    with mp.workprec(A.PREC_BITS):
        params = [mp.mpf(p.default) for p in entry.params]
        for i, (a, c) in enumerate(zip(x.tolist(), got.tolist())):
            errs[i] = A._point_error(mp, entry, kind, dtype, a, c, ref(mp, mp.mpf(a), *params), failures)
    bound = BOUNDS[(kind, dt)]
    return float(errs.max()), int((errs > bound).sum()) + len(failures)


def _accuracy_rows(key, probe, nin):
    """Max ulp error of the row probe on random rows, against the row formula
    in float64 (float32 probes) or 80-bit long double (float64 probes)."""
    op, kind, dt = key
    dtype = np.dtype(dt)
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2048, ROW_LEN)) * rng.uniform(0.1, 30, (2048, 1))).astype(dtype)
    wide = np.longdouble  # 64-bit significand (x86): the reference for both dtypes
    xw = x.astype(wide)
    m = xw.max(-1, keepdims=True)
    e = np.exp(xw - m)
    s = e.sum(-1, keepdims=True)
    y_ref = e / s if op == "softmax" else (xw - m) - np.log(s)
    if kind == "forward":
        got = np.empty_like(x)
        probe(x, got)
        ref = y_ref
    else:
        g = rng.standard_normal(x.shape).astype(dtype)
        y = y_ref.astype(dtype)
        got = np.empty_like(x)
        probe(g, y, got)
        gw, yw = g.astype(wide), y.astype(wide)
        if op == "softmax":
            ref = yw * (gw - (gw * yw).sum(-1, keepdims=True))
        else:
            ref = gw - np.exp(yw) * gw.sum(-1, keepdims=True)
    if dt == "float32":
        err = np.abs(got.astype(F64) - ref) / _ulp32(ref)
    else:
        err = np.abs(got.astype(wide) - ref) / np.spacing(np.abs(ref).astype(F64)).astype(wide)
    bound = BOUNDS[(kind, dt)]
    return float(err.max()), int((err > bound).sum())


def run(size=1 << 22, repeat=15, step=257, only=None):
    """One row per probe: ns/element of probe, fastact and the roofline (one
    thread), and the probe's accuracy against its bound."""
    import fastact

    vec, rows = _build()
    saved = fastact.get_num_threads()
    fastact.set_num_threads(1)
    rng = np.random.default_rng(0)
    out_rows = []
    try:
        roof = {}
        for dt in ("float32", "float64"):
            a = rng.standard_normal(size).astype(dt)
            b = rng.standard_normal(size).astype(dt)
            o = np.empty_like(a)
            roof[(dt, 1)] = _median_ns(lambda: np.copyto(o, a), size, repeat)
            roof[(dt, 2)] = _median_ns(lambda: np.add(a, b, out=o), size, repeat)
        for key, (probe, nin) in list(vec.items()) + list(rows.items()):
            op, kind, dt = key
            if only and op not in only:
                continue
            ins = _inputs(op, kind, dt, size, rng)
            out = np.empty_like(ins[-1])
            n = out.size
            if key in rows:
                p_ns = _median_ns(lambda: probe(*ins, out), n, repeat)
                max_ulp, n_over = _accuracy_rows(key, probe, nin)
            else:
                p_ns = _median_ns(lambda: probe(*ins, out=out), n, repeat)
                max_ulp, n_over = _accuracy_elementwise(key, probe, nin, step)
            f_ns = _median_ns(_fastact_call(op, kind, dt, ins, out), n, repeat)
            out_rows.append({
                "op": op, "kind": kind, "dtype": dt, "probe_ns": p_ns, "fastact_ns": f_ns,
                "roof_ns": roof[(dt, nin)], "roof": "copy" if nin == 1 else "add",
                "probe_max_ulp": max_ulp, "bound": BOUNDS[(kind, dt)], "probe_n_over": n_over,
                "probe_meets_bound": n_over == 0,
            })
    finally:
        fastact.set_num_threads(saved)
    return out_rows


def table(rows):
    lines = ["| op | kind | dtype | probe ns | fastact ns | roofline ns | probe max ulp (bound) | probe valid |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['kind']} | {r['dtype']} | {r['probe_ns']:.3f} | {r['fastact_ns']:.3f} | "
            f"{r['roof_ns']:.3f} ({r['roof']}) | {r['probe_max_ulp']:.2f} ({r['bound']:g}) | "
            f"{'yes' if r['probe_meets_bound'] else 'no: %d inputs over' % r['probe_n_over']} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m fastact.devtools.probes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1 << 22)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--step", type=int, default=257, help="float32 sweep step for the accuracy (1: every input)")
    ap.add_argument("--only", default=None, help="comma-separated op names")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run(a.size, a.repeat, a.step, set(a.only.split(",")) if a.only else None)
    print(json.dumps(res, indent=1) if a.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
