"""Timing and accuracy of the probes, the table, the command line."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from fastact.devtools.accuracy import BOUNDS
from fastact.devtools.probes.build import build
from fastact.scalar.eft import dekker_prod_err

F32, F64 = np.float32, np.float64

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


def _row_sums_dd(parts):
    """Per row (hi, lo): hi + lo is the exact sum of the row's float64 parts to 2^-106 (fsum)."""
    import math

    hi = np.array([math.fsum(r) for r in parts])
    lo = np.array([math.fsum(np.append(r, -h)) for r, h in zip(parts, hi)])
    return hi[:, None], lo[:, None]


def _accuracy_rows(key, probe, nin):
    """Max ulp error of the row probe on random rows, against the row formula
    in 80-bit long double (both dtypes), kept exact where long double alone
    loses a dominant entry's tiny result: log_softmax's log(s) as log(k) +
    log1p(rest / k) (rest: the entries below the max, k: the max's count),
    softmax.backward's S = sum g y as an exact double-double (two-prods,
    fsum), so that g - S keeps its digits where it cancels."""
    op, kind, dt = key
    dtype = np.dtype(dt)
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2048, ROW_LEN)) * rng.uniform(0.1, 30, (2048, 1))).astype(dtype)
    wide = np.longdouble  # 64-bit significand (x86)
    xw = x.astype(wide)
    m = xw.max(-1, keepdims=True)
    e = np.exp(xw - m)
    if op == "softmax":
        y_ref = e / e.sum(-1, keepdims=True)
    else:
        k = (xw == m).sum(-1, keepdims=True).astype(wide)
        rest = np.where(xw < m, e, 0).sum(-1, keepdims=True)
        y_ref = (xw - m) - (np.log(k) + np.log1p(rest / k))
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
            g64, y64 = g.astype(F64), y.astype(F64)
            p = g64 * y64
            pe = dekker_prod_err(g64, y64, p)  # a*b = p + pe exactly, elementwise on arrays
            sh, sl = _row_sums_dd(np.concatenate([p, pe], axis=1))
            ref = yw * ((gw - sh.astype(wide)) - sl.astype(wide))
        else:
            sh, sl = _row_sums_dd(g.astype(F64))
            ref = gw - np.exp(yw) * (sh.astype(wide) + sl.astype(wide))
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

    vec, rows = build(only)
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
    ap = argparse.ArgumentParser(prog="python -m fastact.devtools.probes",
                                 description="Speed probes for the ops that miss the speed targets.")
    ap.add_argument("--size", type=int, default=1 << 22)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--step", type=int, default=257, help="float32 sweep step for the accuracy (1: every input)")
    ap.add_argument("--only", default=None, help="comma-separated op names")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run(a.size, a.repeat, a.step, set(a.only.split(",")) if a.only else None)
    print(json.dumps(res, indent=1) if a.json else table(res))
    return 0

