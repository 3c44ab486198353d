"""Accuracy measurement against mpmath, shared by the tests and the docs script.

Needs the ``test`` extra (mpmath). Errors are in ulps of the *true* value in
the target dtype: ``|computed - exact| / ulp(exact)``, where ``ulp`` of a
subnormal or zero result is the smallest subnormal. Inf where the exact value
is finite (and does not round to inf), NaN, or a wrong sign count as an
infinite error.

The points (``points``) cover the whole float range: a dense sweep of
[-30, 30], every binade from the smallest subnormal to the largest finite
value (both signs, two mantissas per binade), the over/underflow thresholds of
exp in both dtypes with their float neighbours, every branch point used by a
formula with its neighbours, and, for derivatives that cross zero, a dense
sweep around the root. +-0 are included; +-inf and NaN are checked exactly by
the special-value tests instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastact.cpu import ufuncs as _cpu

# max ulp bounds (issue 2): forward 2 / 4, backward 4 / 8 (float32 / float64)
BOUNDS = {
    ("forward", "float32"): 2.0,
    ("forward", "float64"): 4.0,
    ("backward", "float32"): 4.0,
    ("backward", "float64"): 8.0,
    ("backward_y", "float32"): 4.0,
    ("backward_y", "float64"): 8.0,
}
ROOT_ABS_WINDOW = 1e-3  # within this distance of a derivative's zero: absolute bound
ROOT_ABS_FACTOR = 4.0  # |err| <= 4 * eps * max(1, |x|)

# branch points of the formulas (and of exp) whose neighbourhoods are probed
BREAKPOINTS = (
    0.55, 0.5, 1.0, 1.5, 2.0, 3.0, 6.0, 26.0, 30.0, 36.7, 40.0, 60.0,
    87.33654, 88.72284, 103.27893, 103.97208,  # float32 exp thresholds
    700.0, 708.39642, 709.78271, 744.44007, 745.13321, 800.0, 1e290,
)

PREC_BITS = 192


@dataclass
class Result:
    name: str
    kind: str
    dtype: str
    params: tuple
    n: int
    max_ulp: float
    p999_ulp: float
    worst_x: float
    failures: list  # (x, computed, exact, reason)

    @property
    def bound(self):
        return BOUNDS[(self.kind, self.dtype)]


def _neighbours(dtype, values, steps=3):
    out = []
    for v in values:
        v = dtype.type(v)
        up = dn = v
        out.append(v)
        for _ in range(steps):
            up = np.nextafter(up, dtype.type(np.inf))
            dn = np.nextafter(dn, dtype.type(-np.inf))
            out += [up, dn]
    return out


def points(entry, dtype, seed=0):
    """Finite test inputs (sorted, unique) for ``entry`` in ``dtype``."""
    dtype = np.dtype(dtype)
    fi = np.finfo(dtype)
    rng = np.random.default_rng(seed)
    pts = [np.linspace(-30, 30, 1201), rng.uniform(-30, 30, 800)]
    # every binade, two mantissas each, both signs
    emin_sub = fi.minexp - fi.nmant
    exps = np.arange(emin_sub, fi.maxexp)
    for m in (1.0, rng.uniform(1.0, 2.0)):
        mags = np.ldexp(m, exps).astype(dtype) if dtype == np.float64 else np.ldexp(m, exps)
        mags = mags[np.isfinite(mags.astype(dtype))]
        pts += [mags, -mags]
    pts.append(np.array([fi.smallest_subnormal, fi.tiny, fi.max], dtype=np.float64))
    pts.append(-np.array([fi.smallest_subnormal, fi.tiny, fi.max], dtype=np.float64))
    specials = [b for b in BREAKPOINTS if b < float(fi.max)]
    specials = specials + [-b for b in specials]
    if entry.params:
        for p in entry.params:  # parameter values are kinks too (hardtanh)
            specials += [p.default, p.test_value]
    pts.append(np.array(_neighbours(dtype, specials), dtype=np.float64))
    if entry.grad_root is not None:
        r = entry.grad_root
        pts.append(r + np.linspace(-2 * ROOT_ABS_WINDOW, 2 * ROOT_ABS_WINDOW, 201))
        pts.append(r + np.linspace(-1.0, 1.0, 1001))
        pts.append(np.array(_neighbours(dtype, [r, r - 0.6, r + 0.6]), dtype=np.float64))
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p in pts]).astype(dtype)
    x = x[np.isfinite(x)]
    x = np.unique(x)  # also merges -0.0 and 0.0: add both back
    x = np.concatenate([x[x != 0], np.array([0.0, -0.0], dtype=dtype)])
    return x


def _ulp_scale(mp, exact, dtype):
    fi = np.finfo(dtype)
    p = fi.nmant + 1
    if exact == 0:
        e = fi.minexp
    else:
        e = max(int(mp.frexp(exact)[1]) - 1, fi.minexp)
    return mp.ldexp(1, e - p + 1)


def ulp_error(mp, computed, exact, dtype):
    """Error of ``computed`` (a float of ``dtype``) in ulps of ``exact`` (mpf)."""
    dtype = np.dtype(dtype)
    fi = np.finfo(dtype)
    if np.isnan(computed):
        return np.inf
    if np.isinf(computed):
        limit = mp.mpf(float(fi.max)) * (1 + mp.ldexp(1, -(fi.nmant + 2)))
        if abs(exact) >= limit and (exact > 0) == (computed > 0):
            return 0.0
        return np.inf
    diff = abs(mp.mpf(float(computed)) - exact)
    return float(diff / _ulp_scale(mp, exact, dtype))


def ulps_f32(got, ref):
    """|got - ref| in float32 ulps of ``ref``, vectorized (``ref`` in float64,
    standing in for the exact value): the spacing of float32 in ref's binade,
    the smallest subnormal below FLT_MIN. A ref beyond the float32 range must
    come back as inf of its sign; NaN must match NaN and an infinite ref must
    match exactly (else the error is inf)."""
    fi = np.finfo(np.float32)
    mag = np.maximum(np.abs(ref), float(fi.tiny))
    spacing = np.exp2(np.floor(np.log2(mag)) - fi.nmant)
    over = np.abs(ref) >= float(fi.max) * (1 + 2.0**-25)
    err = np.abs(got.astype(np.float64) - ref) / spacing
    err = np.where(over, np.where(np.isinf(got) & (np.sign(got) == np.sign(ref)), 0.0, np.inf), err)
    both_nan = np.isnan(got) & np.isnan(ref)
    same_inf = np.isinf(ref) & (got.astype(np.float64) == ref)
    return np.where(both_nan | same_inf, 0.0, np.where(np.isnan(err), np.inf, err))


def _param_values(entry, which, dtype):
    if which == "default":
        vals = entry.defaults
    else:
        vals = tuple(p.test_value for p in entry.params)
    return tuple(float(np.dtype(dtype).type(v)) for v in vals)


def _evaluate(entry, kind, dtype, params, x):
    """(arg, got, ref_fn): the points the kernel is measured at, its results
    and the mpmath reference of ``kind``."""
    fwd = _cpu.ufunc(entry, "forward", dtype)
    # dtype=: the loop of ``dtype`` whichever loop was compiled first
    with np.errstate(all="ignore"):
        if kind == "forward":
            return x, fwd(x, *params, dtype=dtype), entry.ref
        if kind == "backward":
            got = _cpu.ufunc(entry, "backward", dtype)(np.ones_like(x), x, *params, dtype=dtype)
            return x, got, entry.ref_grad
        # backward_y: the derivative through y = f(x), y taken as exact
        y = fwd(x, *params, dtype=dtype)
        y = y[np.isfinite(y)]
        got = _cpu.ufunc(entry, "backward_y", dtype)(np.ones_like(y), y, *params, dtype=dtype)
        return y, got, entry.ref_grad_y


def _point_error(mp, entry, kind, dtype, a, c, exact, failures):
    """ulp error of result ``c`` at ``a`` (0 inside the absolute window next
    to a derivative's zero, where the absolute bound is checked instead)."""
    near_root = kind == "backward" and entry.grad_root is not None and abs(a - entry.grad_root) <= ROOT_ABS_WINDOW
    if near_root:
        abs_err = abs(mp.mpf(c) - exact) if np.isfinite(c) else mp.inf
        tol = ROOT_ABS_FACTOR * float(np.finfo(dtype).eps) * max(1.0, abs(a))
        if not abs_err <= tol:
            failures.append((a, c, float(exact), f"abs error {float(abs_err):.3g} > {tol:.3g}"))
        return 0.0
    if exact != 0 and c != 0 and (c > 0) != (exact > 0):
        failures.append((a, c, float(exact), "wrong sign"))
    return ulp_error(mp, np.dtype(dtype).type(c), exact, dtype)


def measure(entry, kind, dtype, which="default", seed=0, every=1):
    """Measure ``entry``'s ``kind`` kernel in ``dtype`` over :func:`points`
    (every ``every``-th of them: a cheaper check than the table's)."""
    import mpmath as mp

    dtype = np.dtype(dtype)
    params = _param_values(entry, which, dtype)
    arg, got, ref_fn = _evaluate(entry, kind, dtype, params, points(entry, dtype, seed)[::every])
    errs = np.empty(len(arg))
    failures = []
    with mp.workprec(PREC_BITS):
        mparams = [mp.mpf(p) for p in params]
        for i, (a, c) in enumerate(zip(arg.tolist(), got.tolist())):
            exact = ref_fn(mp, mp.mpf(a), *mparams)
            errs[i] = _point_error(mp, entry, kind, dtype, a, c, exact, failures)
    bound = BOUNDS[(kind, dtype.name)]
    for i in np.nonzero(errs > bound)[0]:
        failures.append((arg[i].item(), got[i].item(), None, f"{errs[i]:.3g} ulp > {bound}"))
    k = int(np.argmax(errs)) if len(errs) else 0
    return Result(
        name=entry.name,
        kind=kind,
        dtype=dtype.name,
        params=params,
        n=len(arg),
        max_ulp=float(errs.max()) if len(errs) else 0.0,
        p999_ulp=float(np.quantile(errs, 0.999)) if len(errs) else 0.0,
        worst_x=float(arg[k]) if len(arg) else float("nan"),
        failures=failures,
    )


def kinds(entry):
    return ("forward", "backward") + (("backward_y",) if entry.grad_y is not None else ())


# ------------------------------------------------------------ softmax family


def softmax_rows(dtype):
    """Named test rows for the softmax family (issue: spreads, ties, dominance)."""
    rng = np.random.default_rng(1)
    fi = np.finfo(dtype)
    rows = {
        "spread_1000": np.array([1000.0, 0.0, -1000.0]),
        "normal_x1000_4096": rng.standard_normal(4096) * 1000,
        "normal_4096": rng.standard_normal(4096),
        "normal_x10_4096": rng.standard_normal(4096) * 10,
        "identical": np.full(100, 7.25),
        "tiny_differences": 1.0 + np.arange(64) * float(fi.eps),
        "single": np.array([3.5]),
        "dominant_among_zeros": np.concatenate([[60.0], np.zeros(999)]),
        "dominant_last": np.concatenate([np.zeros(99), [25.0]]),
        # spans thousands, maximum 323 above the next: log_softmax of it is
        # -2.7e-141 (a sum holding the maximum's own term loses that rest)
        "dominant_wide_200": np.random.default_rng(1).standard_normal(200) * 1000,
        "ascending_span_4000": np.linspace(-2000, 2000, 4001),
        "descending": np.linspace(30, -30, 257),
        "with_neg_inf": np.array([0.5, -np.inf, -1.0, -np.inf, 2.0]),
        "large_values": np.array([1e30, 1e30, 1e30 - 1e15, -1e30]),
    }
    return {k: v.astype(dtype) for k, v in rows.items()}


def softmax_exact(mp, x):
    """(softmax, log_softmax) of a row as mpf lists."""
    xs = [mp.mpf(float(v)) for v in x]
    m = max(xs)
    k = xs.index(m)
    e = [mp.exp(v - m) if v != -mp.inf else mp.mpf(0) for v in xs]
    # log(1 + rest), rest summing every term but the maximum's: log(sum) at
    # the working precision would round a dominant entry's -rest (1e-141 in
    # a row spanning thousands) to 0, whatever the precision
    rest = mp.fsum(ei for i, ei in enumerate(e) if i != k)
    s = 1 + rest
    lse = mp.log1p(rest)
    return [ei / s for ei in e], [(v - m) - lse if v != -mp.inf else -mp.inf for v in xs]


def softmax_backward_exact(mp, g, y, log):
    # written so that nothing cancels at the working precision: where the
    # result is tiny next to g (the dominant entry, y = 1 - 1e-141) a plain
    # g - exp(y) S or g - dot would round it to 0 at any fixed precision
    gm = [mp.mpf(float(v)) for v in g]
    ym = [mp.mpf(float(v)) for v in y]
    if log:
        s = mp.fsum(gm)
        return [(gi - s) - mp.expm1(yi) * s if yi != -mp.inf else gi
                for gi, yi in zip(gm, ym)]
    k = max(range(len(ym)), key=lambda i: ym[i]) if ym else 0
    lead = gm[k] * ym[k] if ym else 0  # exact: products of two doubles
    rest = mp.fsum(a * b for i, (a, b) in enumerate(zip(gm, ym)) if i != k)
    return [yi * ((gi - lead) - rest) for gi, yi in zip(gm, ym)]


def max_ulp_row(mp, got, exact, dtype):
    """Max ulp error of a row; exact -inf must be matched exactly (else inf)."""
    worst = 0.0
    for c, r in zip(np.asarray(got).tolist(), exact):
        if r == -mp.inf:
            if c != -np.inf:
                return np.inf
            continue
        worst = max(worst, ulp_error(mp, np.dtype(dtype).type(c), r, dtype))
    return worst


def measure_softmax_family(dtype, impls, prec=256):
    """{(impl, function, direction): (worst ulp, worst row)} over softmax_rows.

    ``impls``: name -> (softmax, log_softmax) callables on 1-D rows; backward
    passes are measured for implementations that offer ``.backward``.
    """
    import mpmath as mp

    rng = np.random.default_rng(2)
    res = {}
    with mp.workprec(prec):
        for row, x in softmax_rows(dtype).items():
            exact_s, exact_l = softmax_exact(mp, x)
            g = rng.standard_normal(x.shape).astype(dtype)
            for impl, (sm, lsm) in impls.items():
                for fname, f, exact, log in (("softmax", sm, exact_s, False), ("log_softmax", lsm, exact_l, True)):
                    with np.errstate(all="ignore"):
                        y = np.asarray(f(x))
                    e = max_ulp_row(mp, y, exact, dtype)
                    key = (impl, fname, "forward")
                    if e > res.get(key, (-1, ""))[0]:
                        res[key] = (e, row)
                    if hasattr(f, "backward"):
                        exact_b = softmax_backward_exact(mp, g, y, log)
                        e = max_ulp_row(mp, f.backward(g, y), exact_b, dtype)
                        key = (impl, fname, "backward")
                        if e > res.get(key, (-1, ""))[0]:
                            res[key] = (e, row)
    return res
