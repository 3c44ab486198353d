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
    if want is None:
        assert all(np.isfinite(r).all() for r in _as_arrays(result)), f"{op} {direction}: non-finite output"
    else:
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
