"""CUDA row kernels of the softmax family (fastact.cuda.rows), in Numba's CUDA
simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1): against the CPU
functions (NaN pattern, values within 4 ulp) and mpmath, both paths (warp per
row, block per row), special rows, strided views, float16/32/64, backward."""

import mpmath as mp
import numba.cuda  # noqa: F401  (numba-cuda: in the test extra)
import numpy as np
import pytest

import fastact
from fastact.cuda import rows as R
from fastact.cuda import target as _cuda
from fastact.devtools import accuracy as A

pytestmark = pytest.mark.skipif(not _cuda.simulated() and not _cuda.cuda().is_available(),
                                reason="FASTACT_TEST_REAL_GPU set, no GPU")

BOUND = 4.0
DTYPES = [np.float16, np.float32, np.float64]
LENGTHS = [1, 2, 31, 32, 33, 100]
CPU = {"softmax": fastact.softmax, "log_softmax": fastact.log_softmax}


@pytest.fixture(scope="module")
def cuda():
    return _cuda.cuda()


def gpu(cuda, name, *arrays, views=None, out=None):
    """Run ``name`` on device copies of ``arrays`` (or device ``views``)."""
    ins = views if views is not None else [cuda.to_device(np.ascontiguousarray(a)) for a in arrays]
    o = out if out is not None else cuda.device_array(ins[0].shape, dtype=ins[0].dtype)
    R.run(name, ins, o, cuda.default_stream())
    return o.copy_to_host()


def cpu(name, *arrays):
    if name.endswith("_backward"):
        return CPU[name[: -len("_backward")]].backward(*arrays)
    return CPU[name](*arrays)


def ulps(got, ref):
    """Max distance in ulps of ``ref``'s dtype; NaN and infinities must match."""
    got = np.asarray(got)
    ref = np.asarray(ref)
    assert got.dtype == ref.dtype
    assert np.array_equal(np.isnan(got), np.isnan(ref)), (got, ref)
    fin = np.isfinite(ref)
    assert np.array_equal(got[~fin], ref[~fin], equal_nan=True)
    if not fin.any():
        return 0.0
    g = got[fin].astype(np.float64)
    r = ref[fin].astype(np.float64)
    sp = np.spacing(np.abs(ref[fin])).astype(np.float64)
    return float(np.max(np.abs(g - r) / sp))


def rows_for(n, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, n)) * 8
    if n >= 3:
        x[1, 1] = -np.inf
        x[2, :] -= 300  # another scale
    return x.astype(dtype)


# ---------------------------------------------------------------- forward


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_matches_cpu_all_lengths(cuda, dtype):
    worst = 0.0
    for n in LENGTHS:
        x = rows_for(n, dtype, n)
        for name in ("softmax", "log_softmax"):
            worst = max(worst, ulps(gpu(cuda, name, x), cpu(name, x)))
    assert worst <= BOUND, worst


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_rows_take_the_block_path(cuda, dtype):
    n = 1500
    assert n > R.WARP_MAX_N
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((2, n)) * 10).astype(dtype)
    x[1, 700] = 40.0  # a dominant entry
    for name in ("softmax", "log_softmax"):
        assert ulps(gpu(cuda, name, x), cpu(name, x)) <= BOUND
    g = rng.standard_normal((2, n)).astype(dtype)
    y = fastact.log_softmax(x)
    assert ulps(gpu(cuda, "log_softmax_backward", g, y), cpu("log_softmax_backward", g, y)) <= BOUND


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_path_on_short_rows(cuda, dtype, monkeypatch):
    # 5 rows over 2 blocks (grid stride), 2 warps per block (shared-memory merge)
    monkeypatch.setattr(R, "WARP_MAX_N", 8)
    x = np.concatenate([rows_for(33, dtype, 1), rows_for(33, dtype, 2)[:2]])
    x[0, 0] = -np.inf  # the first entry is no reference: per-thread references
    x[3, 5] = np.nan
    rng = np.random.default_rng(5)
    for name in ("softmax", "log_softmax"):
        assert ulps(gpu(cuda, name, x), cpu(name, x)) <= BOUND
        y = cpu(name, x[[0, 1, 2, 4]])
        g = rng.standard_normal(y.shape).astype(dtype)
        b = name + "_backward"
        assert ulps(gpu(cuda, b, g, y), cpu(b, g, y)) <= BOUND


def test_many_rows_grid_stride(cuda):
    # more rows than warps in the (simulated) grid: 2 blocks x 2 warps
    x = np.random.default_rng(3).standard_normal((11, 5)).astype(np.float32)
    assert ulps(gpu(cuda, "softmax", x), fastact.softmax(x)) <= BOUND


def _named_rows(dtype):
    rows = A.softmax_rows(dtype)
    keep = ["spread_1000", "identical", "tiny_differences", "single", "dominant_last",
            "descending", "with_neg_inf", "large_values"]
    out = {k: rows[k] for k in keep}
    out["dominant_among_zeros"] = np.concatenate([[60.0], np.zeros(299)]).astype(dtype)
    out["ascending_span_4000"] = np.linspace(-2000, 2000, 161).astype(dtype)
    out["normal_x1000"] = (np.random.default_rng(1).standard_normal(200) * 1000).astype(dtype)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", ["warp", "block"])
def test_named_rows_vs_mpmath(cuda, dtype, path, monkeypatch):
    if path == "block":
        monkeypatch.setattr(R, "WARP_MAX_N", 0)
    worst = {}
    # 1200 bits: log(1 + rest) of a dominant entry needs rest down to 2**-1074
    # (256 bits round 1 + 2.7e-141 of the normal_x1000 row to 1)
    with mp.workprec(1200):
        for rname, x in _named_rows(dtype).items():
            ref_s, ref_l = A.softmax_exact(mp, x)
            x2 = x[None, :]
            for name, ref in (("softmax", ref_s), ("log_softmax", ref_l)):
                e = A.max_ulp_row(mp, gpu(cuda, name, x2)[0], ref, dtype)
                worst[(name, rname)] = e
    bad = {k: v for k, v in worst.items() if v > BOUND}
    assert not bad, bad


def test_dominant_entry_log_softmax_is_tiny_negative(cuda):
    x = np.array([[0.0, -100.0], [60.0, 0.0]])
    y = gpu(cuda, "log_softmax", x)
    assert y[0, 0] == pytest.approx(-np.exp(-100.0), rel=1e-15)
    assert y[1, 0] == pytest.approx(-np.exp(-60.0), rel=1e-15)
    d = gpu(cuda, "log_softmax_backward", np.array([[1.0, 0.0]]), y[:1])
    assert d[0, 0] == pytest.approx(np.exp(-100.0), rel=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_rows_as_cpu(cuda, dtype):
    inf, nan = np.inf, np.nan
    x = np.array(
        [
            [0.0, -inf, 1.0, 2.0],
            [1.0, inf, 0.0, 0.0],
            [1.0, nan, 0.0, 0.0],
            [-inf, -inf, -inf, -inf],
            [-inf, 0.0, -inf, 3.0],
            [inf, 0.0, 0.0, 0.0],
            [nan, nan, 0.0, 0.0],
            [5.0, 5.0, 5.0, 5.0],
        ],
        dtype=dtype,
    )
    for name in ("softmax", "log_softmax"):
        got, ref = gpu(cuda, name, x), cpu(name, x)
        assert np.isnan(got[[1, 2, 3, 5, 6]]).all()
        assert ulps(got, ref) <= BOUND
    assert gpu(cuda, "softmax", x)[0, 1] == 0.0
    assert gpu(cuda, "log_softmax", x)[4, 2] == -np.inf
    # backward: NaN in the upstream gradient or in y propagates as on the CPU
    y = fastact.softmax(x[[0, 4, 7]])
    g = np.array([[1.0, nan, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5], [1.0, 2.0, 3.0, 4.0]], dtype=dtype)
    for name in ("softmax_backward", "log_softmax_backward"):
        yy = y if name == "softmax_backward" else fastact.log_softmax(x[[0, 4, 7]])
        assert ulps(gpu(cuda, name, g, yy), cpu(name, g, yy)) <= BOUND


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_views(cuda, dtype):
    rng = np.random.default_rng(11)
    base = (rng.standard_normal((40, 6)) * 5).astype(dtype)
    # rows along the first axis of a C array: a transposed device view,
    # and every other row entry of it; outputs strided too
    d = cuda.to_device(base)
    for view, host in ((d.T, base.T), (d.T[:, ::2], base.T[:, ::2]), (d[::3, 1:4].T, base[::3, 1:4].T)):
        obig = cuda.device_array((host.shape[1], host.shape[0] * 2), dtype=dtype)
        o = obig.T[::2]
        assert tuple(o.shape) == host.shape
        for name in ("softmax", "log_softmax"):
            got = gpu(cuda, name, views=[view], out=o)
            assert ulps(got, cpu(name, np.ascontiguousarray(host))) <= BOUND
    y = fastact.softmax(base.T)
    dy = cuda.to_device(np.ascontiguousarray(y.T)).T
    got = gpu(cuda, "softmax_backward", views=[d.T, dy])
    assert ulps(got, fastact.softmax.backward(base.T, y)) <= BOUND


# --------------------------------------------------------------- backward


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_cpu_all_lengths(cuda, dtype):
    worst = 0.0
    for n in LENGTHS:
        x = rows_for(n, dtype, n + 100)
        g = np.random.default_rng(n).standard_normal(x.shape).astype(dtype)
        for name in ("softmax", "log_softmax"):
            y = cpu(name, x)
            b = name + "_backward"
            worst = max(worst, ulps(gpu(cuda, b, g, y), cpu(b, g, y)))
    assert worst <= BOUND, worst


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_vs_mpmath(cuda, dtype):
    rng = np.random.default_rng(4)
    rows = [
        rng.standard_normal(100) * 10,
        np.concatenate([[30.0], rng.standard_normal(40)]),  # dominant: cancellation
        np.linspace(-20, 20, 33),
    ]
    with mp.workprec(256):
        for x in rows:
            x = x.astype(dtype)
            g = rng.standard_normal(x.shape).astype(dtype)
            g1 = np.zeros_like(x)
            g1[0] = 1  # one-hot on the dominant entry
            for name, log in (("softmax", False), ("log_softmax", True)):
                y = cpu(name, x)
                for gg in (g, g1):
                    got = gpu(cuda, name + "_backward", gg[None, :], y[None, :])[0]
                    exact = A.softmax_backward_exact(mp, gg, y, log)
                    assert A.max_ulp_row(mp, got, exact, dtype) <= BOUND, (name, x[:3])


# ------------------------------------------------------------ edges / API


def test_empty_rows_and_axes(cuda):
    for shape in ((0, 5), (3, 0), (0, 0)):
        x = cuda.device_array(shape, dtype=np.float64)
        o = cuda.device_array(shape, dtype=np.float64)
        assert R.run("softmax", [x], o, cuda.default_stream()) is o
        assert R.run("log_softmax_backward", [x, x], o, cuda.default_stream()) is o


def test_bad_arguments(cuda):
    x = cuda.device_array((2, 3), dtype=np.float64)
    s = cuda.default_stream()
    with pytest.raises(ValueError):
        R.run("softmax_backward", [x], x, s)
    with pytest.raises(ValueError):
        R.run("sigmoid", [x], x, s)
    with pytest.raises(ValueError):
        R.run("softmax", [cuda.device_array((2, 4))], x, s)
    with pytest.raises(TypeError):
        R.run("softmax", [cuda.device_array((2, 3), dtype=np.int32)], x, s)


def test_float16_output_into_float32(cuda):
    x = rows_for(33, np.float16, 9)
    o = cuda.device_array(x.shape, dtype=np.float32)
    got = gpu(cuda, "softmax", views=[cuda.to_device(x)], out=o)
    ref = fastact.softmax(x.astype(np.float32))
    assert ulps(got, ref) <= BOUND


def test_kernel_specs():
    specs = list(R.kernel_specs())
    assert len(specs) == 4 * 2 * 3
    names = {n for n, _, _ in specs}
    assert len(names) == len(specs)
    for name, fn, sig in specs:
        assert callable(fn) and sig.startswith("void(")
        assert sig.count("[:, :]") == (3 if "backward" in name else 2)


# the simulator runs the steps as Python on NumPy scalars, in its own threads
# (where np.errstate does not reach): the error terms' inf - inf, dropped by
# the kernels, would warn
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("path", ["warp", "block"])
def test_backward_overflow_and_infinities_as_cpu(cuda, path, monkeypatch):
    # sums that overflow (finite terms: summed again scaled), g - S that
    # overflows, +-inf operands: the CPU's IEEE values, NaN only where the
    # formula has inf - inf or 0 * inf (the CPU values are checked against
    # mpmath in tests/functions/test_rowwise.py)
    if path == "block":
        monkeypatch.setattr(R, "WARP_MAX_N", 0)
    inf = np.inf
    for dtype in (np.float32, np.float64):
        M = float(np.finfo(dtype).max)
        g = np.array([[M, -M, M, 0.5], [M, M, -M, 0.0], [M, M, 1.0, 2.0], [1.0, inf, 2.0, 3.0],
                      [1.0, -inf, 2.0, 3.0], [M, M, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]], dtype)
        p = np.array([[0.25, 0.75, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1e-30, 0.0],
                      [0.125, 0.25, 0.0, 0.625], [0.125, 0.25, 0.0, 0.625], [0.5, 0.5, 0.0, 0.0],
                      [0.25, 0.25, 0.25, 0.25]])
        with np.errstate(divide="ignore"):
            lp = np.log(p)
        lp[6, 0] = inf  # exp(y) = inf
        for name, y in (("softmax_backward", p.astype(dtype)), ("log_softmax_backward", lp.astype(dtype))):
            with np.errstate(all="ignore"):
                got, ref = gpu(cuda, name, g, y), cpu(name, g, y)
            assert not np.isnan(ref[[0, 2, 5]]).any()
            np.testing.assert_array_equal(got, ref)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))
