"""softmax / log_softmax: accuracy vs mpmath, special rows, axes, layouts, errors."""

import numpy as np
import pytest

import fastact
from fastact import _threads

mp = pytest.importorskip("mpmath")
from fastact.accuracy import ulp_error  # noqa: E402

BOUND = 4.0
PREC = 256


def _rows(dtype):
    rng = np.random.default_rng(1)
    fi = np.finfo(dtype)
    rows = {
        "spread_1000": np.array([1000.0, 0.0, -1000.0]),
        "normal_x1000_4096": rng.standard_normal(4096) * 1000,
        "normal_4096": rng.standard_normal(4096),
        "identical": np.full(100, 7.25),
        "tiny_differences": 1.0 + np.arange(64) * float(fi.eps),
        "single": np.array([3.5]),
        "dominant_among_zeros": np.concatenate([[60.0], np.zeros(999)]),
        "dominant_f32_range": np.concatenate([[25.0], np.zeros(99)]),
        "ascending_span_4000": np.linspace(-2000, 2000, 4001),
        "descending": np.linspace(30, -30, 257),
        "with_neg_inf": np.array([0.5, -np.inf, -1.0, -np.inf, 2.0]),
        "large_values": np.array([1e30, 1e30, 1e30 - 1e15, -1e30]),
    }
    return {k: v.astype(dtype) for k, v in rows.items()}


def _ref_softmax(x):
    xs = [mp.mpf(float(v)) for v in x]
    m = max(v for v in xs)
    e = [mp.exp(v - m) if v != -mp.inf else mp.mpf(0) for v in xs]
    s = mp.fsum(e)
    return [ei / s for ei in e], [(v - m) - mp.log(s) if v != -mp.inf else -mp.inf for v in xs]


def _max_ulp(got, exact, dtype):
    worst = 0.0
    for c, r in zip(got.tolist(), exact):
        if r == -mp.inf:
            assert c == -np.inf
            continue
        worst = max(worst, ulp_error(mp, np.dtype(dtype).type(c), r, dtype))
    return worst


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_accuracy(dtype):
    with mp.workprec(PREC):
        for name, x in _rows(dtype).items():
            ref_s, ref_l = _ref_softmax(x)
            es = _max_ulp(fastact.softmax(x), ref_s, dtype)
            el = _max_ulp(fastact.log_softmax(x), ref_l, dtype)
            assert es <= BOUND, f"softmax {name}: {es} ulp"
            assert el <= BOUND, f"log_softmax {name}: {el} ulp"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_accuracy(dtype):
    rng = np.random.default_rng(2)
    with mp.workprec(PREC):
        for name, x in _rows(dtype).items():
            g = rng.standard_normal(x.shape).astype(dtype)
            y = fastact.softmax(x)
            gm = [mp.mpf(float(v)) for v in g]
            ym = [mp.mpf(float(v)) for v in y]
            dot = mp.fsum(a * b for a, b in zip(gm, ym))
            ref = [yi * (gi - dot) for gi, yi in zip(gm, ym)]
            e = _max_ulp(fastact.softmax.backward(g, y), ref, dtype)
            assert e <= BOUND, f"softmax.backward {name}: {e} ulp"

            ly = fastact.log_softmax(x)
            lym = [mp.mpf(float(v)) for v in ly]
            s = mp.fsum(gm)
            ref = [gi - (mp.exp(yi) * s if yi != -mp.inf else 0) for gi, yi in zip(gm, lym)]
            e = _max_ulp(fastact.log_softmax.backward(g, ly), ref, dtype)
            assert e <= BOUND, f"log_softmax.backward {name}: {e} ulp"


def test_dominant_entry_log_softmax_is_tiny_negative_not_zero():
    x = np.concatenate([[60.0], np.zeros(999)])
    v = fastact.log_softmax(x)[0]
    exact = -999 * np.exp(-60.0)
    assert v < 0 and abs(v - exact) <= 4 * np.spacing(abs(exact))
    assert fastact.log_softmax(np.array([0.0, -100.0]))[0] == pytest.approx(-np.exp(-100.0), rel=1e-15)
    # the gradient of a one-hot loss on the dominant entry: 1 - softmax = tiny, not 0
    ly = fastact.log_softmax(np.array([0.0, -100.0]))
    d = fastact.log_softmax.backward(np.array([1.0, 0.0]), ly)
    assert d[0] == pytest.approx(np.exp(-100.0), rel=1e-14)


def test_special_rows():
    nan = np.nan
    x = np.array(
        [
            [0.0, -np.inf, 1.0],
            [1.0, np.inf, 0.0],
            [1.0, nan, 0.0],
            [-np.inf, -np.inf, -np.inf],
        ]
    )
    s = fastact.softmax(x)
    ls = fastact.log_softmax(x)
    assert s[0, 1] == 0.0 and ls[0, 1] == -np.inf
    assert s[0].sum() == pytest.approx(1.0)
    for r in (1, 2, 3):
        assert np.isnan(s[r]).all() and np.isnan(ls[r]).all()
    assert fastact.softmax(np.zeros((3, 0))).shape == (3, 0)
    assert fastact.log_softmax(np.zeros((0, 4))).shape == (0, 4)
    assert fastact.softmax(np.array([5.0])).tolist() == [1.0]
    assert fastact.log_softmax(np.array([5.0])).tolist() == [0.0]


@pytest.mark.parametrize("f", [fastact.softmax, fastact.log_softmax])
def test_any_axis_and_layouts(f):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5, 6)) * 10
    for axis in (0, 1, 2, -1, -3):
        ref = np.moveaxis(f(np.ascontiguousarray(np.moveaxis(x, axis, -1))), -1, axis)
        np.testing.assert_array_equal(f(x, axis=axis), ref)
        np.testing.assert_array_equal(f(np.asfortranarray(x), axis=axis), ref)
    xs = x[:, ::2, ::-1]
    np.testing.assert_array_equal(f(xs, axis=1), f(xs.copy(), axis=1))
    y = f(x, axis=1)
    g = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(
        f.backward(g, y, axis=1), np.moveaxis(f.backward(np.moveaxis(g, 1, -1).copy(), np.moveaxis(y, 1, -1).copy()), -1, 1)
    )


@pytest.mark.parametrize("f", [fastact.softmax, fastact.log_softmax])
def test_out_dtypes_and_in_place(f):
    x = np.random.default_rng(4).standard_normal((3, 7))
    ref = f(x)
    out = np.empty_like(x)
    assert f(x, out=out) is out and np.array_equal(out, ref)
    x2 = x.copy()
    f(x2, out=x2)
    np.testing.assert_array_equal(x2, ref)
    assert f(x.astype(np.float32)).dtype == np.float32
    h = f(x.astype(np.float16))
    assert h.dtype == np.float16
    np.testing.assert_array_equal(h, f(x.astype(np.float16).astype(np.float32)).astype(np.float16))
    assert f(np.array([[1, 2, 3]])).dtype == np.float64
    o32 = np.empty((3, 7), np.float32)
    f(x, out=o32)
    np.testing.assert_array_equal(o32, ref.astype(np.float32))


def test_bad_input():
    with pytest.raises(np.exceptions.AxisError):
        fastact.softmax(np.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="0-d"):
        fastact.log_softmax(np.float64(1.0))
    with pytest.raises(TypeError, match="softmax"):
        fastact.softmax(np.ones(3, complex))
    with pytest.raises(TypeError, match="softmax"):
        fastact.softmax(None)
    with pytest.raises(ValueError, match="differ"):
        fastact.softmax.backward(np.ones(3), np.ones(4))
    ro = np.empty(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fastact.softmax(np.ones(3), out=ro)
    with pytest.raises(ValueError, match="shape"):
        fastact.softmax(np.ones(3), out=np.empty(4))


def test_parallel_rows_match_single_thread(monkeypatch):
    x = np.random.default_rng(5).standard_normal((512, 1024))
    monkeypatch.setenv("FASTACT_NUM_THREADS", "1")
    one = fastact.softmax(x)
    lone = fastact.log_softmax.backward(x, fastact.log_softmax(x))
    monkeypatch.setenv("FASTACT_NUM_THREADS", "2")
    assert x.size >= _threads.MIN_PARALLEL_ELEMENTS
    np.testing.assert_array_equal(fastact.softmax(x), one)
    np.testing.assert_array_equal(fastact.log_softmax.backward(x, fastact.log_softmax(x)), lone)


def test_concurrent_callers():
    from concurrent.futures import ThreadPoolExecutor

    x = np.random.default_rng(6).standard_normal((256, 1024))
    ref = fastact.softmax(x)
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda _: fastact.softmax(x), range(32)))
    for r in results:
        np.testing.assert_array_equal(r, ref)


@pytest.mark.parametrize("f", [fastact.softmax, fastact.log_softmax])
def test_backward_matches_finite_differences(f):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(6)
    g = rng.standard_normal(6)
    y = f(x)
    h = 1e-6
    num = np.array(
        [np.dot(g, (f(x + h * np.eye(6)[j]) - f(x - h * np.eye(6)[j])) / (2 * h)) for j in range(6)]
    )
    np.testing.assert_allclose(f.backward(g, y), num, rtol=1e-6, atol=1e-9)
