"""softmax / log_softmax: accuracy vs mpmath, special rows, axes, layouts, errors."""

import numpy as np
import pytest

import fastact
from fastact.cpu import threads as _threads

mp = pytest.importorskip("mpmath")
from fastact.devtools import accuracy as A

BOUND = 4.0
PREC = 256


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accuracy_forward_and_backward(dtype):
    res = A.measure_softmax_family(dtype, {"fastact": (fastact.softmax, fastact.log_softmax)})
    assert len(res) == 4
    for key, (ulp, row) in res.items():
        assert ulp <= BOUND, f"{key} on row {row}: {ulp} ulp"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_named_row(dtype):
    with mp.workprec(PREC):
        for name, x in A.softmax_rows(dtype).items():
            ref_s, ref_l = A.softmax_exact(mp, x)
            assert A.max_ulp_row(mp, fastact.softmax(x), ref_s, dtype) <= BOUND, name
            assert A.max_ulp_row(mp, fastact.log_softmax(x), ref_l, dtype) <= BOUND, name


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
