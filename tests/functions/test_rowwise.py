"""softmax / log_softmax: accuracy vs mpmath, special rows, axes, layouts, errors."""

import mpmath as mp
import numpy as np
import pytest

import fastact
from fastact.cpu import threads as _threads
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


# ------------------------------------------------------------ float32 kernels
# fastact.scalar.rows32: a row whose maximum lies in [-32, 88] takes exp(x)
# directly (no x - max), others x - max with its rounding carried; the bounds
# are 2 ulp forward, 4 backward (BOUND above).
BOUND32_FORWARD = 2.0


def _ref64(x):
    """(softmax, log_softmax) of float32 rows in float64, far below a float32
    ulp: x - max is exact, the normaliser kept as 1 + rest."""
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    d = x - m
    e = np.exp(d)
    rows = np.arange(x.shape[0])
    e_rest = e.copy()
    e_rest[rows, x.argmax(-1)] = 0.0
    rest = e_rest.sum(-1, keepdims=True)
    return e / (1.0 + rest), d - np.log1p(rest)


def _f32_rows(rng, n, offsets, scale=5.0, rows=64):
    base = rng.standard_normal((rows, n)) * scale
    return {off: (base + off).astype(np.float32) for off in offsets}


@pytest.mark.parametrize("n", [3, 1024, 4099])
def test_float32_forward_on_each_reference_path(n):
    # maxima around the direct path's limits (-32, 88) and the exact-difference
    # limit 256 (carried below it), and far out
    rng = np.random.default_rng(20)
    offsets = [-1e6, -300.0, -256.0, -100.0, -40.0, -32.5, -31.5, 0.0, 40.0, 80.0, 87.5, 88.5, 100.0, 200.0, 250.0, 300.0, 1e5]
    for off, x in _f32_rows(rng, n, offsets).items():
        rs, rl = _ref64(x)
        es = A.ulps_f32(fastact.softmax(x), rs).max()
        el = A.ulps_f32(fastact.log_softmax(x), rl).max()
        assert es <= BOUND32_FORWARD and el <= BOUND32_FORWARD, (off, es, el)


def test_float32_forward_exact_boundaries_and_special_entries():
    # the maximum exactly at the path limits, -inf entries, entries far below
    # the maximum (clamped: their results are 0) and subnormal results
    f32 = np.float32
    rows = []
    for m in (-32.0, 88.0, np.nextafter(f32(-32.0), f32(-40.0)), np.nextafter(f32(88.0), f32(90.0)), 256.0, -256.0):
        rows.append([m, m - 1.5, m - 20.0, -np.inf, m - 90.0, m - 95.5, m - 100.0, m - 102.5, m - 130.0, m - 500.0])
    x = np.array(rows, dtype=np.float32)
    rs, rl = _ref64(x)
    s, ls = fastact.softmax(x), fastact.log_softmax(x)
    assert (s[:, 3] == 0.0).all() and (ls[:, 3] == -np.inf).all()
    assert (s[:, 8:] == 0.0).all()
    assert (s[:, 4:8] > 0).all() and (s[:, 4:8] < np.finfo(np.float32).tiny).all()  # subnormal
    assert A.ulps_f32(s, rs).max() <= BOUND32_FORWARD
    finite = np.isfinite(rl)
    assert A.ulps_f32(ls[finite], rl[finite]).max() <= BOUND32_FORWARD


def test_float32_dominant_entry_and_ties():
    f32 = np.float32
    for m in (0.0, 50.0, 100.0, 1000.0):  # direct and carried paths
        x = np.full(1000, m - 60.0, dtype=np.float32)
        x[7] = m
        v = fastact.log_softmax(x)[7]
        exact = -999 * np.exp(-60.0)
        assert v < 0 and abs(v - exact) <= 2 * np.spacing(f32(abs(exact))), m
        x2 = x.copy()
        x2[500] = m  # two maxima: log(2) + log1p(rest / 2)
        _, rl = _ref64(x2[None])
        assert A.ulps_f32(fastact.log_softmax(x2)[None], rl).max() <= BOUND32_FORWARD
    x = np.array([[3.0, 3.0, 3.0]], np.float32)
    assert fastact.softmax(x).tolist() == [[np.float32(1 / 3)] * 3]


def test_float32_special_rows():
    x = np.array(
        [
            [0.0, -np.inf, 1.0],
            [1.0, np.inf, 0.0],
            [1.0, np.nan, 0.0],
            [-np.nan, 0.0, 1.0],  # a NaN with the sign bit set
            [-np.inf, -np.inf, -np.inf],
            [-np.inf, 5.0, -np.inf],
            [3e38, -3e38, 3e38],  # x - max overflows to -inf
        ],
        dtype=np.float32,
    )
    s = fastact.softmax(x)
    ls = fastact.log_softmax(x)
    for r in (1, 2, 3, 4):
        assert np.isnan(s[r]).all() and np.isnan(ls[r]).all(), r
    assert s[5].tolist() == [0.0, 1.0, 0.0] and ls[5].tolist() == [-np.inf, 0.0, -np.inf]
    assert s[6].tolist() == [0.5, 0.0, 0.5] and ls[6][1] == -np.inf
    assert s[0, 1] == 0.0 and ls[0, 1] == -np.inf


def test_float32_backward():
    rng = np.random.default_rng(21)
    for scale in (1.0, 3.0, 30.0):
        x = (rng.standard_normal((64, 1024)) * scale).astype(np.float32)
        g = rng.standard_normal(x.shape).astype(np.float32)
        for f in (fastact.softmax, fastact.log_softmax):
            y = f(x)
            ref = f.backward(g.astype(np.float64), y.astype(np.float64))  # compensated float64
            assert A.ulps_f32(f.backward(g, y), ref).max() <= BOUND, (f, scale)


def test_float32_backward_cancellation_and_special_values():
    f32 = np.float32
    # one-hot gradient on a dominant entry: 1 - softmax = tiny, not 0
    # (rows where the vectorized pass cancels fall back to the float64 kernel)
    ly = fastact.log_softmax(np.array([0.0, -30.0], f32))
    d = fastact.log_softmax.backward(np.array([1.0, 0.0], f32), ly)
    assert d[0] == pytest.approx(-np.expm1(float(ly[0])), rel=1e-6) and d[0] > 0
    sy = fastact.softmax(np.array([0.0, -15.0], f32))  # 1 - y[0] = 3e-7 cancels
    d = fastact.softmax.backward(np.array([1.0, 0.0], f32), sy)
    exact = float(sy[0]) * (1.0 - float(sy[0]))
    assert d[0] == pytest.approx(exact, rel=1e-6) and d[0] > 0
    # y = -inf (a masked entry): the gradient is g; NaN y or g: NaN
    g = np.array([0.5, -2.0, 1.0], f32)
    y = np.array([-np.inf, -0.5, -1.5], f32)
    d = fastact.log_softmax.backward(g, y)
    assert d[0] == 0.5
    ref = fastact.log_softmax.backward(g.astype(np.float64), y.astype(np.float64))
    assert A.ulps_f32(d, ref).max() <= BOUND
    assert np.isnan(fastact.log_softmax.backward(g, np.array([np.nan, -1.0, -2.0], f32))[0])
    assert np.isnan(fastact.log_softmax.backward(np.array([np.nan, 1.0, 0.0], f32), y)).all()
    # y = +inf (no log-probability): as the float64 kernel
    yi = np.array([np.inf, -1.0, -2.0], f32)
    np.testing.assert_array_equal(
        fastact.log_softmax.backward(g, yi), fastact.log_softmax.backward(g.astype(np.float64), yi.astype(np.float64)).astype(f32)
    )
    assert np.isnan(fastact.softmax.backward(np.array([np.nan, 1.0, 0.0], f32), np.full(3, f32(1 / 3)))).all()


def test_float32_threads_and_layouts(monkeypatch):
    # the softmax kernel keeps state in a scratch row per call (per thread)
    x = (np.random.default_rng(22).standard_normal((512, 1024)) * 4).astype(np.float32)
    monkeypatch.setenv("FASTACT_NUM_THREADS", "1")
    one = fastact.softmax(x)
    lone = fastact.log_softmax(x)
    monkeypatch.setenv("FASTACT_NUM_THREADS", "2")
    np.testing.assert_array_equal(fastact.softmax(x), one)
    np.testing.assert_array_equal(fastact.log_softmax(x), lone)
    # strided rows (the general build) and the transposed layout agree
    np.testing.assert_array_equal(fastact.softmax(np.asfortranarray(x), axis=1), one)
    np.testing.assert_array_equal(fastact.softmax(x.T, axis=0), one.T)
    np.testing.assert_array_equal(fastact.softmax(x[:, ::2]), fastact.softmax(x[:, ::2].copy()))
    x2 = x.copy()
    fastact.softmax(x2, out=x2)
    np.testing.assert_array_equal(x2, one)


def test_float32_log_softmax_backward_zero_and_extreme_sums():
    f32 = np.float32
    y = np.array([-0.5, -1.5, -np.inf, -3.0], f32)
    g = np.array([1.0, -1.0, 0.5, -0.5], f32)  # sums to 0: the result is g
    np.testing.assert_array_equal(fastact.log_softmax.backward(g, y), g)
    for yi in (np.nan, np.inf):
        y2 = y.copy()
        y2[0] = yi
        ref = fastact.log_softmax.backward(g.astype(np.float64), y2.astype(np.float64)).astype(f32)
        np.testing.assert_array_equal(fastact.log_softmax.backward(g, y2), ref)
    for scale in (1e-42, 1e38):  # sums beyond the fast kernel's range (the float64 kernel)
        g2 = np.full(3000, scale, f32)
        y2 = np.full(3000, np.log(1 / 3000), f32)
        ref = fastact.log_softmax.backward(g2.astype(np.float64), y2.astype(np.float64))
        assert A.ulps_f32(fastact.log_softmax.backward(g2, y2), ref).max() <= BOUND


# ---------------------------------------------- overflow and infinities
# Rows where a difference, a product or a sum of the formulas overflows or
# holds +-inf: the result is the formula's value evaluated exactly and rounded
# once (IEEE: +-inf beyond max, a signed zero below the subnormals, NaN only
# from inf - inf or 0 * inf), never a NaN from an error term.

_W = 4000  # bits: every sum and product of these floats is exact in mpmath


def _mpf(v):
    v = float(v)
    return mp.mpf(v) if np.isfinite(v) else (mp.nan if np.isnan(v) else (mp.inf if v > 0 else -mp.inf))


def _round(v, dtype):
    """An mpmath value rounded to ``dtype`` (the sign of an underflow kept);
    ``v`` a float is an IEEE zero whose sign is already set."""
    if isinstance(v, float):
        return np.array(v, dtype)
    if mp.isnan(v):
        return np.array(np.nan, dtype)
    fi = np.finfo(dtype)
    if abs(v) >= mp.mpf(float(fi.max)) + mp.mpf(2) ** (fi.maxexp - 2 - fi.nmant):  # max + ulp / 2: +-inf
        return np.array(np.inf if v > 0 else -np.inf, dtype)
    with np.errstate(over="ignore"):
        return np.array(float(v), np.float64).astype(dtype)


def _times(y, d):
    """y * d for y a float: an exact zero y keeps the IEEE sign of the product."""
    if y == 0 and mp.isfinite(d):
        return y * (1.0 if d >= 0 else -1.0)
    return _mpf(y) * d


def _ref_softmax_backward(g, y):
    with mp.workprec(_W):
        dot = mp.fsum(_mpf(a) * _mpf(b) for a, b in zip(g, y))
        return [_times(b, _mpf(a) - dot) for a, b in zip(g, y)]


def _ref_log_softmax_backward(g, y):
    with mp.workprec(_W):
        s = mp.fsum(_mpf(a) for a in g)
        out = []
        for a, b in zip(g, y):
            e = mp.exp(_mpf(b)) if np.isfinite(b) else (mp.inf if b > 0 else (mp.mpf(0) if b < 0 else mp.nan))
            p = mp.nan if (e == 0 and mp.isinf(s)) else e * s
            out.append(_mpf(a) - p)
        return out


def _ref_log_softmax(x):
    with mp.workprec(_W):
        m = max(float(v) for v in x)
        top = x.index(m)  # rest: every term but one maximum's (1 + rest rounds)
        rest = mp.fsum(mp.exp(_mpf(v) - _mpf(m)) for i, v in enumerate(x) if v > -np.inf and i != top)
        return [(-np.inf if v == -np.inf else _mpf(v) - _mpf(m) - mp.log1p(rest)) for v in x]


def _assert_ieee(got, ref, dtype, what):
    """NaN, infinities and zeros (with their sign) exactly, finite values
    within BOUND ulps."""
    want = np.array([_round(v, dtype) for v in ref])
    assert got.dtype == want.dtype
    for i, (a, b) in enumerate(zip(got, want)):
        if not np.isfinite(b) or b == 0:
            ok = (np.isnan(a) and np.isnan(b)) or (a == b and np.signbit(a) == np.signbit(b))
        else:
            ulp = 2.0 ** (np.frexp(float(b))[1] - 1 - np.finfo(dtype).nmant)  # np.spacing(max) is inf
            ok = np.isfinite(a) and abs(float(a) - float(b)) <= BOUND * ulp
        assert ok, f"{what} ({np.dtype(dtype)}) at {i}: got {a!r}, expected {b!r}; row {got!r}"


def _backward_cases(M):
    inf = np.inf
    p = [0.125, 0.25, 0.0, 0.625]
    return {
        # g - sum(g y) overflows: 1.5 max
        "softmax": [
            ([M, -M, M, 0.5], [0.25, 0.75, 0.0, 0.0]),
            ([1.0, inf, 2.0, 3.0], p),
            ([1.0, -inf, 2.0, 3.0], p),
            ([M, M, -M], [1.0, 1.0, 1.0]),  # the sum overflows, S = max
            ([M, M, 1.0], [1.0, 1.0, 1e-30]),  # S = 2 max: y (g - S) finite
            ([-M, -M, 0.5, 2.0], [0.5, 0.5, 0.25, 1e-30]),
        ],
        "log_softmax": [
            ([M, M, 1.0, 1.0], [np.log(0.5), np.log(0.5), -inf, -inf]),  # sum(g) overflows
            ([1.0, inf, 2.0, 3.0], np.log([0.1, 0.2, 0.3, 0.4])),
            ([1.0, -inf, 2.0, 3.0], np.log([0.1, 0.2, 0.3, 0.4])),
            ([1.0, 2.0, 3.0], [inf, -1.0, -2.0]),  # exp(y) = inf
            ([M, M, 1e-30], [np.log(0.25), np.log(0.25), -inf]),  # S = 2 max
            ([-M, -M, 3.0, 1e-30], [np.log(0.375), np.log(0.5), np.log(0.125), -inf]),
        ],
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_overflow_and_infinities_give_the_ieee_value(dtype):
    M = float(np.finfo(dtype).max)
    refs = {"softmax": _ref_softmax_backward, "log_softmax": _ref_log_softmax_backward}
    with np.errstate(all="ignore"):  # the references' own inf - inf
        for name, rows in _backward_cases(M).items():
            f = getattr(fastact, name)
            for g, y in rows:
                g = np.array(g, dtype)
                y = np.array(y, dtype)
                want = refs[name](g.tolist(), y.tolist())
                _assert_ieee(f.backward(g, y), want, dtype, f"{name}.backward({g!r}, {y!r})")
                # the same row among ordinary rows (row-wise fix-ups stay in their row)
                ordinary = np.tile(np.array([0.1, 0.2, 0.3, 0.4][: len(g)], dtype), (3, 1))
                G = np.vstack([ordinary, g[None, :], ordinary])
                Y = np.vstack([ordinary, y[None, :], ordinary])
                both = f.backward(G, Y)
                np.testing.assert_array_equal(both[3], f.backward(g, y))
                np.testing.assert_array_equal(both[0], f.backward(ordinary[0], ordinary[0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_overflowing_difference_and_zero_signs(dtype):
    M = float(np.finfo(dtype).max)
    inf = np.inf
    rows = [
        [M, -M, 0.0, 1.0],  # x - max = -2 max: -inf, not NaN; the maximum -0.0 (rest underflows)
        [M, M, -M, -M],
        [M, M / 2, -M, 0.0],
        [7.0],  # one entry: exactly 0, +0.0
        [5.0, -inf, -inf],
        [0.0, -800.0],  # float64: exp(-800) underflows, the maximum -0.0
    ]
    for x in rows:
        x = np.array(x, dtype)
        _assert_ieee(fastact.log_softmax(x), _ref_log_softmax(x.tolist()), dtype, f"log_softmax({x!r})")
