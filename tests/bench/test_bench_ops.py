"""pytest-benchmark suite: every fastact function next to its baselines (disabled by default).

The baselines (NumPy formula, PyTorch kernel, SciPy function) come from
``fastact.bench.baselines.COMPARISONS``, the table ``python -m fastact bench``
reads too; items are (op, implementation) with implementation one of fastact,
numpy, torch, scipy, for each direction, dtype and size. A missing PyTorch
skips its items (SciPy is in the test extra: its items need it).

``pytest`` runs each benchmark once as a plain test (``--benchmark-disable`` is
in the project's pytest options), checking that fastact and each baseline
compute the same function. To measure:

    pytest tests/bench --benchmark-enable --benchmark-autosave
    pytest tests/bench --benchmark-enable --benchmark-compare --benchmark-compare-fail=min:10%

Groups are ``op|dtype|size``, so the report puts an op's implementations,
forward and backward (in the test name), side by side.
"""

import importlib.util

import numpy as np
import pytest

import fastact
from fastact.bench.baselines import (
    COMPARISONS,
    numpy_baselines,
    scipy_forward,
    torch_backward,
    torch_forward,
    torch_grad_from_y,
)
from fastact.bench.common import ROW_LEN
from fastact.catalog import CATALOG
from fastact.devtools.accuracy import BOUNDS, PREC_BITS

SIZES = [1 << 12, 1 << 20]  # the softmax family: (size // 1024, 1024)
DTYPES = ["float32", "float64"]
OPS = list(fastact.ACTIVATIONS) + list(fastact.ROW_FUNCTIONS) + list(fastact.GATED_FUNCTIONS)

# Every item checks its result against the other side (a baseline against
# fastact, fastact against the NumPy formula). fastact is within a few ulp; the
# NumPy formulas round at each step and cancel where a term nears 1
# (1 - tanh(x)^2 for large |x|, 1 + erf(x / sqrt 2) for x -> -inf; in float32
# the first rounds to 0 past |x| = 9). So inputs are kept to [-8, 8], and the
# absolute tolerance is relative to the output's scale (those cancellations lose
# a few ulp of the terms, not of the result): atol = RTOL * max|expected|. RTOL
# is ~800 ulp in float32 and ~5e5 ulp in float64; the worst baseline here uses
# under 1% of it, while a wrong formula fails: gelu in place of gelu_tanh
# (5e-4 apart) fails every float64 item.
RTOL = {"float32": 1e-4, "float64": 1e-10}
# Peers that are less accurate than RTOL by construction, with the reason.
# torch 2.13 hardsigmoid_backward multiplies by 1.0f / 6.0f (float32) in every
# dtype: 3e-8 relative in float64 (measured; fastact's g / 6 is correctly rounded).
PEER_RTOL = {("torch", "hardsigmoid", "backward", "float64"): 1e-7}


def _kind(op):
    if op in fastact.ROW_FUNCTIONS:
        return "rows"
    return "gated" if op in fastact.GATED_FUNCTIONS else "elementwise"


def _impls(op, direction):
    c = COMPARISONS.get(op)
    if c is None:  # tests/bench/test_baselines.py reports the missing row
        return ["fastact"]
    forward = direction == "forward"
    impls = ["fastact", "numpy"]
    if (c.torch if forward else c.torch_grad) is not None:
        impls.append("torch")
    if forward and c.scipy is not None:
        impls.append("scipy")
    return impls


def _params(direction):
    return [pytest.param(op, impl, id=f"{op}-{impl}") for op in OPS for impl in _impls(op, direction)]


def _inputs(op, direction, dtype, size):
    """fastact's arguments for (op, direction) and an output array of the result's shape."""
    rng = np.random.default_rng(0)
    # N(0, 3) as in `python -m fastact bench`, clipped to the range where the baselines are checked
    x = np.clip(rng.standard_normal(size) * 3, -8, 8).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    kind, forward = _kind(op), direction == "forward"
    if kind == "gated":
        b = rng.standard_normal(size).astype(dtype)
        return ((x, b) if forward else (g, x, b)), np.empty_like(x)
    if kind == "rows":
        x, g = x.reshape(-1, ROW_LEN), g.reshape(-1, ROW_LEN)
        if not forward:
            return (g, fastact.ROW_FUNCTIONS[op](x)), np.empty_like(x)  # the row gradients take y
    return ((x,) if forward else (g, x)), np.empty_like(x)


def _fastact_call(op, direction, args, out):
    """(fastact's call, whether it returns ``out``); the gated gradients (da, db) take no out=."""
    f = fastact.FUNCTIONS[op]
    if direction == "forward":
        return (lambda: f(*args, out=out)), out is not None
    if _kind(op) == "gated":
        return (lambda: f.backward(*args)), False
    return (lambda: f.backward(*args, out=out)), out is not None


def _numpy_call(op, direction, args):
    fwd, bwd = numpy_baselines(op, have_scipy=importlib.util.find_spec("scipy") is not None)
    fn = fwd if direction == "forward" else bwd
    if fn is None:
        pytest.skip(f"the NumPy formula of {op} needs scipy.special, which is not installed")
    return lambda: fn(*args)


def _torch_call(op, direction, args, out):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: no torch baseline")
    t = [torch.from_numpy(a) for a in args]
    to = torch.from_numpy(out)
    if direction == "forward":
        fn = torch_forward(torch, op)
        return lambda: fn(*t, to)
    fn = torch_backward(torch, op)
    if _kind(op) == "rows":  # args are (grad, y)
        return lambda: fn(t[0], None, t[1], to)
    y = torch.from_numpy(fastact.FUNCTIONS[op](args[1])) if torch_grad_from_y(op) else None
    return lambda: fn(t[0], t[1], y, to)


def _scipy_call(op, args, out):
    import scipy.special  # scipy_forward calls scipy.special

    fn = scipy_forward(scipy, op)
    return lambda: fn(*args, out)


def _baseline_call(op, impl, direction, args, out):
    if impl == "numpy":
        return _numpy_call(op, direction, args)
    if impl == "torch":
        return _torch_call(op, direction, args, out)
    return _scipy_call(op, args, out)


def _as_arrays(result):
    result = result if isinstance(result, tuple) else (result,)
    return [r.numpy() if hasattr(r, "numpy") else np.asarray(r) for r in result]


def _assert_close(got, want, dtype, what, rtol=None):
    got, want = _as_arrays(got), _as_arrays(want)
    assert len(got) == len(want), what
    rtol = RTOL[dtype] if rtol is None else rtol
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)), err_msg=what)


def _reference(op, impl, direction, args):
    """What the item's result must be close to: fastact's for a baseline, the NumPy
    formula's for fastact (None where the table has none)."""
    if impl != "fastact":
        return _fastact_call(op, direction, args, None)[0]()
    if op not in COMPARISONS:
        return None
    fwd, bwd = numpy_baselines(op, have_scipy=importlib.util.find_spec("scipy") is not None)
    fn = fwd if direction == "forward" else bwd
    return None if fn is None else fn(*args)


# Every fastact item is also checked against mpmath, an independent reference
# with no cancellation, at points spread over the sorted inputs (the tails
# where outputs are tiny and x < 0 included), in ulps of the exact value: the
# NumPy comparison's atol, scaled to the largest output, cannot see a wrong
# sign or a wrong value where the output is small (gelu' for x < -4 is below
# 1e-3 of its maximum). Bounds: the catalog's (fastact.devtools.accuracy.BOUNDS),
# plus a rounding per product with grad or with the gate.
MP_POINTS = 64
GATE_ACTIVATION = {"swiglu": "silu", "geglu": "gelu"}  # the definitions: act(a) * b


def _spread(x):
    """MP_POINTS flat indices of x from its minimum to its maximum."""
    order = np.argsort(x, axis=None, kind="stable")
    return order[np.linspace(0, order.size - 1, MP_POINTS).astype(int)]


def _check_elementwise_ulps(name, dtype, got, exact_at, x, slack):
    """got.flat[i] within the catalog's ulp bound (+ slack roundings) of
    ``exact_at(mp, i)``; next to a derivative's zero, its absolute bound."""
    import mpmath as mp

    from fastact.devtools.accuracy import ROOT_ABS_FACTOR, ROOT_ABS_WINDOW, ulp_error

    e = CATALOG[name]
    bad = []
    with mp.workprec(PREC_BITS):
        for i in _spread(x):
            i = int(i)
            exact, scale, kind = exact_at(mp, i)
            c = got.flat[i]
            xi = float(x.flat[i])
            if kind == "backward" and e.grad_root is not None and abs(xi - e.grad_root) <= ROOT_ABS_WINDOW:
                tol = ROOT_ABS_FACTOR * float(np.finfo(dtype).eps) * max(1.0, abs(xi)) * scale
                if not abs(mp.mpf(float(c)) - exact) <= tol:
                    bad.append((xi, float(c), float(exact)))
            elif ulp_error(mp, c, exact, dtype) > BOUNDS[(kind, dtype)] + slack:
                bad.append((xi, float(c), float(exact)))
    assert not bad, f"{name} {dtype}: (x, fastact, exact) out of bounds: {bad[:5]}"


def _check_against_mpmath(op, direction, dtype, args, result):
    """fastact's result of (op, direction) against mpmath at MP_POINTS inputs."""
    kind = _kind(op)
    if kind == "rows":
        return _check_rows_against_mpmath(op, direction, dtype, args, result)
    if kind == "gated":
        e = CATALOG[GATE_ACTIVATION[op]]
        if direction == "forward":
            a, b = args
            return _check_elementwise_ulps(e.name, dtype, result, lambda mp, i: (
                e.ref(mp, mp.mpf(float(a.flat[i]))) * float(b.flat[i]), 1.0, "forward"), a, 1)
        g, a, b = args
        da, db = result
        _check_elementwise_ulps(e.name, dtype, da, lambda mp, i: (
            e.ref_grad(mp, mp.mpf(float(a.flat[i]))) * float(g.flat[i]) * float(b.flat[i]),
            abs(float(g.flat[i]) * float(b.flat[i])), "backward"), a, 2)
        _check_elementwise_ulps(e.name, dtype, db, lambda mp, i: (
            e.ref(mp, mp.mpf(float(a.flat[i]))) * float(g.flat[i]), 1.0, "forward"), a, 1)
        return None
    e = CATALOG[op]
    # the kernels of a dtype see the default parameters rounded to it
    p = [float(np.dtype(dtype).type(v)) for v in e.defaults]
    if direction == "forward":
        (x,) = args
        return _check_elementwise_ulps(op, dtype, result, lambda mp, i: (
            e.ref(mp, mp.mpf(float(x.flat[i])), *map(mp.mpf, p)), 1.0, "forward"), x, 0)
    g, x = args
    return _check_elementwise_ulps(op, dtype, result, lambda mp, i: (
        e.ref_grad(mp, mp.mpf(float(x.flat[i])), *map(mp.mpf, p)) * float(g.flat[i]),
        abs(float(g.flat[i])), "backward"), x, 1)


ROW_CHECKS = 4  # rows checked against mpmath per item
ROW_ULPS = 16  # error bound, in ulps of the condition-scaled magnitude below


def _check_rows_against_mpmath(op, direction, dtype, args, result):
    """softmax / log_softmax rows against mpmath. The bound is relative to the
    sum of the magnitudes that enter the exact expression (its condition), so
    it holds where the result cancels: |err_i| <= ROW_ULPS eps * scale_i."""
    import mpmath as mp

    eps = float(np.finfo(dtype).eps)
    rows = np.linspace(0, result.shape[0] - 1, ROW_CHECKS).astype(int)
    bad = []
    with mp.workprec(PREC_BITS):
        for r in rows:
            if direction == "forward":
                x = [mp.mpf(float(v)) for v in args[0][r]]
                m = max(x)
                lse = m + mp.log(mp.fsum(mp.exp(v - m) for v in x))
                if op == "softmax":
                    exact = [mp.exp(v - lse) for v in x]
                    scale = [abs(v) * (1 + abs(xi - lse)) for v, xi in zip(exact, x)]
                else:
                    exact = [v - lse for v in x]
                    scale = [abs(xi - m) + abs(lse - m) for xi in x]
            else:
                g = [mp.mpf(float(v)) for v in args[0][r]]
                y = [mp.mpf(float(v)) for v in args[1][r]]
                if op == "softmax":
                    dot = mp.fsum(a * b for a, b in zip(g, y))
                    absdot = mp.fsum(abs(a * b) for a, b in zip(g, y))
                    exact = [yi * (gi - dot) for gi, yi in zip(g, y)]
                    scale = [abs(yi) * (abs(gi) + absdot) for gi, yi in zip(g, y)]
                else:
                    sg = mp.fsum(g)
                    absg = mp.fsum(abs(a) for a in g)
                    exact = [gi - mp.exp(yi) * sg for gi, yi in zip(g, y)]
                    scale = [abs(gi) + mp.exp(yi) * absg * (1 + abs(yi)) for gi, yi in zip(g, y)]
            for j, (ex, sc) in enumerate(zip(exact, scale)):
                c = mp.mpf(float(result[r, j]))
                if abs(c - ex) > ROW_ULPS * eps * sc + float(np.finfo(dtype).smallest_subnormal):
                    bad.append((int(r), j, float(c), float(ex)))
    assert not bad, f"{op} {direction} {dtype}: (row, col, fastact, exact): {bad[:5]}"


def _bench(benchmark, op, impl, direction, dtype, size):
    args, out = _inputs(op, direction, dtype, size)
    if impl == "fastact":
        call, returns_out = _fastact_call(op, direction, args, out)
    else:
        call, returns_out = _baseline_call(op, impl, direction, args, out), False
    want = _reference(op, impl, direction, args)
    call()  # compiles fastact's kernels (and warms a baseline up) outside the timing
    benchmark.group = f"{op}|{dtype}|{size}"
    benchmark.extra_info["implementation"] = impl
    gated_grad = _kind(op) == "gated" and direction == "backward"
    benchmark.extra_info["bytes"] = sum(a.nbytes for a in args) + out.nbytes * (2 if gated_grad else 1)
    result = benchmark(call)
    if returns_out:
        assert result is out
    if impl == "fastact":
        _check_against_mpmath(op, direction, dtype, args, result)
    if want is not None:
        _assert_close(result, want, dtype, f"{op} {direction}: {impl} vs {'numpy' if impl == 'fastact' else 'fastact'}",
                      PEER_RTOL.get((impl, op, direction, dtype)))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("op", "impl"), _params("forward"))
def test_forward(benchmark, op, impl, dtype, size):
    _bench(benchmark, op, impl, "forward", dtype, size)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("op", "impl"), _params("backward"))
def test_backward(benchmark, op, impl, dtype, size):
    _bench(benchmark, op, impl, "backward", dtype, size)


def test_mpmath_check_flags_a_wrong_sign_in_the_tail():
    """A gelu gradient with the wrong sign for x < -3 fails the mpmath check;
    for x < -5 (below 1e-5 of its maximum) the NumPy comparison's atol, scaled
    to the largest output, lets it through in float32. A softmax gradient
    missing the y * dot term fails too."""
    (g, x), _ = _inputs("gelu", "backward", "float32", 1 << 12)
    good = fastact.gelu.backward(g, x)
    _check_against_mpmath("gelu", "backward", "float32", (g, x), good)
    for cut in (-3.0, -5.0):
        with pytest.raises(AssertionError):
            _check_against_mpmath("gelu", "backward", "float32", (g, x), np.where(x < cut, -good, good))
    _assert_close(np.where(x < -5.0, -good, good), good, "float32", "the scaled atol's blind spot")
    (g, y), _ = _inputs("softmax", "backward", "float64", 1 << 12)
    with pytest.raises(AssertionError):
        _check_against_mpmath("softmax", "backward", "float64", (g, y), g * y)
