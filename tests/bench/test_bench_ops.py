"""pytest-benchmark suite, generated from the catalog (disabled by default).

``pytest`` runs each benchmark once as a plain test (``--benchmark-disable`` is
in the project's pytest options). To measure:

    pytest tests/bench --benchmark-enable --benchmark-autosave
    pytest tests/bench --benchmark-enable --benchmark-compare --benchmark-compare-fail=min:10%

Groups are ``op|dtype|size`` (direction in the test name), so the report
compares forward and backward of one op, dtype and size side by side.
"""

import numpy as np
import pytest

import fastact

OPS = sorted(fastact.ACTIVATIONS)
ROW_OPS = ["softmax", "log_softmax"]
SIZES = [1 << 12, 1 << 20]
DTYPES = ["float32", "float64"]


def _data(size, dtype, shape=None):
    rng = np.random.default_rng(0)
    shape = shape or (size,)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    return x, g, np.empty_like(x)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_forward(benchmark, op, dtype, size):
    f = fastact.ACTIVATIONS[op]
    x, _, out = _data(size, dtype)
    f(x, out=out)  # compile outside the timing
    benchmark.group = f"{op}|{dtype}|{size}"
    benchmark.extra_info["bytes"] = 2 * x.nbytes
    assert benchmark(f, x, out=out) is out
    assert np.array_equal(out, f(x), equal_nan=True)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_backward(benchmark, op, dtype, size):
    f = fastact.ACTIVATIONS[op]
    x, g, out = _data(size, dtype)
    f.backward(g, x, out=out)
    benchmark.group = f"{op}|{dtype}|{size}"
    benchmark.extra_info["bytes"] = 3 * x.nbytes
    assert benchmark(f.backward, g, x, out=out) is out


@pytest.mark.parametrize("rows", [16, 1024])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ROW_OPS)
def test_rows(benchmark, op, dtype, rows):
    f = getattr(fastact, op)
    x, g, out = _data(None, dtype, (rows, 1024))
    y = f(x)
    benchmark.group = f"{op}|{dtype}|{rows}x1024"
    benchmark.extra_info["bytes"] = 2 * x.nbytes
    assert benchmark(f, x, out=out) is out
    assert benchmark.name  # a benchmark, not a no-op
    np.testing.assert_array_equal(out, y)
