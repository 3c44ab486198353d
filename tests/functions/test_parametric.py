"""Gated units (swiglu, geglu), maxout and prelu: accuracy, gradients, layouts, errors;
the elementwise activations with parameter values: their specialized loops."""

import math

import mpmath as mp
import numpy as np
import pytest

import fastact
from fastact.catalog import CATALOG, ENTRIES
from fastact.cpu import ufuncs as _cpu
from fastact.devtools import accuracy as A
from fastact.functions.args import channel_axis

GATED = [
    (fastact.swiglu, {}, CATALOG["silu"]),
    (fastact.geglu, {}, CATALOG["gelu"]),
    (fastact.geglu, {"approximate": "tanh"}, CATALOG["gelu_tanh"]),
]
GATED_IDS = ["swiglu", "geglu", "geglu_tanh"]


def _sample(entry, dtype, n=1500):
    x = A.points(entry, dtype)
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(x, size=min(n, len(x)), replace=False))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("f,kw,entry", GATED, ids=GATED_IDS)
def test_gated_accuracy_vs_mpmath(f, kw, entry, dtype):
    dt = np.dtype(dtype)
    a = _sample(entry, dt)
    rng = np.random.default_rng(1)
    b = rng.uniform(-4, 4, a.shape).astype(dt)
    g = rng.uniform(-4, 4, a.shape).astype(dt)
    with np.errstate(over="ignore"):  # silu(1e308) * 4 overflows, correctly
        y = f(a, b, **kw)
        da, db = f.backward(g, a, b, **kw)
    assert y.dtype == dt and da.dtype == dt and db.dtype == dt
    eps = float(np.finfo(dt).eps)
    worst = {"y": 0.0, "da": 0.0, "db": 0.0}
    with mp.workprec(A.PREC_BITS):
        for i in range(len(a)):
            am, bm, gm = (mp.mpf(float(v[i])) for v in (a, b, g))
            fa = entry.ref(mp, am)
            checks = {"y": (y[i], fa * bm), "db": (db[i], gm * fa)}
            exact_da = gm * bm * entry.ref_grad(mp, am)
            if entry.grad_root is not None and abs(float(a[i]) - entry.grad_root) <= A.ROOT_ABS_WINDOW:
                tol = A.ROOT_ABS_FACTOR * eps * max(1.0, abs(float(a[i]))) * abs(float(g[i] * b[i]))
                assert abs(mp.mpf(float(da[i])) - exact_da) <= tol * 1.01 + 1e-300
            else:
                checks["da"] = (da[i], exact_da)
            for k, (got, exact) in checks.items():
                worst[k] = max(worst[k], A.ulp_error(mp, dt.type(got), exact, dt))
    # forward bound of the elementwise functions + the product's rounding; backward likewise
    assert worst["y"] <= A.BOUNDS[("forward", dtype)], worst
    assert worst["db"] <= A.BOUNDS[("backward", dtype)], worst
    assert worst["da"] <= A.BOUNDS[("backward", dtype)], worst


@pytest.mark.parametrize("f,kw,entry", GATED, ids=GATED_IDS)
def test_gated_is_the_catalog_activation_times_b(f, kw, entry):
    rng = np.random.default_rng(2)
    a, b, g = rng.standard_normal((3, 4, 5)) * 3
    act = fastact.ACTIVATIONS[entry.name]
    np.testing.assert_allclose(f(a, b, **kw), act(a) * b, rtol=2e-16, atol=0)
    da, db = f.backward(g, a, b, **kw)
    np.testing.assert_allclose(db, g * act(a), rtol=2e-16, atol=0)
    np.testing.assert_allclose(da, act.backward(g * b, a), rtol=3e-16, atol=0)
    # finite differences
    h = 1e-6
    np.testing.assert_allclose(da, g * (f(a + h, b, **kw) - f(a - h, b, **kw)) / (2 * h), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("f", [fastact.swiglu, fastact.geglu])
def test_gated_split_form_and_broadcasting(f):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 8))
    a, b = x[:, :4], x[:, 4:]
    np.testing.assert_array_equal(f(x), f(a, b))
    np.testing.assert_array_equal(f(x.T, axis=0), f(a, b).T)
    g = rng.standard_normal((3, 4))
    dx = f.backward(g, x)
    da, db = f.backward(g, a, b)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, np.concatenate([da, db], axis=1))
    bb = rng.standard_normal(4)
    np.testing.assert_array_equal(f(a, bb), f(a, np.broadcast_to(bb, a.shape)))
    da2, db2 = f.backward(g, a, bb)
    assert da2.shape == db2.shape == (3, 4)
    out = np.empty((3, 4))
    assert f(a, b, out=out) is out and np.array_equal(out, f(a, b))
    assert f(x.astype(np.float32)).dtype == np.float32
    assert f(x.astype(np.float16)).dtype == np.float16
    assert np.isnan(f(np.array([np.nan, 1.0]))).all()


def test_gated_bad_input():
    with pytest.raises(ValueError, match="odd"):
        fastact.swiglu(np.ones(5))
    with pytest.raises(ValueError, match="broadcast"):
        fastact.swiglu(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="approximate"):
        fastact.geglu(np.ones(4), approximate="fast")
    with pytest.raises(TypeError, match="swiglu"):
        fastact.swiglu(np.ones(4, complex))
    with pytest.raises(np.exceptions.AxisError):
        fastact.swiglu(np.ones((2, 4)), axis=2)


def _exact_float(v, dt):
    """An mpf as the nearest ``dt`` value (IEEE: +-inf past the largest, a
    zero with v's sign below the smallest subnormal)."""
    big = float(np.finfo(dt).max)
    if abs(v) >= mp.mpf(big) * (1 + mp.mpf(2) ** -(np.finfo(dt).nmant + 1)):
        return dt.type(math.copysign(math.inf, v))
    with np.errstate(under="ignore"):
        r = dt.type(float(v)) if v != 0 else dt.type(0.0)
    return r if r != 0 or v == 0 else dt.type(math.copysign(0.0, v))


@pytest.mark.parametrize("f,kw,entry", GATED, ids=GATED_IDS)
def test_gated_backward_overflowing_grad_times_b_is_the_ieee_product(f, kw, entry):
    """da = grad * b * f'(a) where grad * b overflows (float64): the exact
    product rounded, +-inf only where it overflows, a signed zero where
    f'(a) underflows to zero (not inf * 0 = NaN); NaN only where the exact
    product has inf * 0 or a NaN."""
    dt = np.dtype(np.float64)
    M = float(np.finfo(dt).max)
    g = np.array([M, M, -M, M, M, M / 3, 0.0, M, np.inf, M, -M, 2.0])
    a = np.array([-M, -M, -M, -0.75, 0.5, 1.5, 1.0, -5.0, -np.inf, np.nan, -700.0, 3.0])
    b = np.array([M, -M, M, 1.5, 2.0, -M, M, M / 8, 1.0, 1.0, 4.0, 5.0])
    with np.errstate(over="ignore"):
        da, db = f.backward(g, a, b, **kw)
    with mp.workprec(200):
        for i in range(len(g)):
            if math.isnan(a[i]) or math.isinf(a[i]) or math.isinf(g[i]):
                continue
            fp = entry.ref_grad(mp, mp.mpf(float(a[i])))
            want = _exact_float(mp.mpf(float(g[i])) * mp.mpf(float(b[i])) * fp, dt)
            what = f"grad={g[i]!r} a={a[i]!r} b={b[i]!r}: da={da[i]!r}, exact {want!r}"
            if want == 0 or math.isinf(want):
                assert _bits(da[i]) == _bits(want), what  # the sign of a zero too
            else:
                assert A.ulp_error(mp, da[i], mp.mpf(float(g[i])) * mp.mpf(float(b[i])) * fp, dt) <= 2, what
    assert np.isnan(da[8]) and np.isnan(da[9])  # inf * 1 * f'(-inf) = inf * 0; a NaN operand
    assert np.all(da[:8] == da[:8])  # none of the finite operands gives NaN


# -------------------------------------------------------------------- maxout


def test_maxout_values_ties_nan_and_axes():
    x = np.array([1.0, 5.0, -2.0, -3.0, 0.0, 4.0, 2.0, 2.0])
    np.testing.assert_array_equal(fastact.maxout(x, 2), [5.0, -2.0, 4.0, 2.0])
    dx = fastact.maxout.backward(np.array([1.0, 2.0, 3.0, 4.0]), x, 2)
    np.testing.assert_array_equal(dx, [0, 1, 2, 0, 0, 3, 4, 0])  # first one on ties
    xn = np.array([1.0, np.nan, 3.0, 0.0])
    y = fastact.maxout(xn, 2)
    assert np.isnan(y[0]) and y[1] == 3.0
    np.testing.assert_array_equal(fastact.maxout.backward(np.array([5.0, 6.0]), xn, 2), [0, 5, 6, 0])
    rng = np.random.default_rng(4)
    x3 = rng.standard_normal((4, 6, 5))
    for axis in (0, 1, -2):
        ax = axis % 3
        k = 2 if x3.shape[ax] % 2 == 0 else 3
        ref = np.moveaxis(np.moveaxis(x3, ax, -1).reshape(*np.moveaxis(x3, ax, -1).shape[:-1], -1, k).max(-1), -1, ax)
        np.testing.assert_array_equal(fastact.maxout(x3, k, axis=axis), ref)
        g = rng.standard_normal(ref.shape)
        dx = fastact.maxout.backward(g, x3, k, axis=axis)
        assert dx.shape == x3.shape
        assert np.isclose(dx.sum(), g.sum())
        h = 1e-7
        for _ in range(5):  # finite differences at random coordinates
            idx = tuple(rng.integers(0, s) for s in x3.shape)
            e = np.zeros_like(x3)
            e[idx] = h
            num = np.sum(g * (fastact.maxout(x3 + e, k, axis=axis) - fastact.maxout(x3 - e, k, axis=axis))) / (2 * h)
            assert num == pytest.approx(dx[idx], abs=1e-6)
    xs = rng.standard_normal((6, 7))[:, ::-1].T  # strided, negative stride
    np.testing.assert_array_equal(fastact.maxout(xs, 3, axis=1), fastact.maxout(xs.copy(), 3, axis=1))
    assert fastact.maxout(np.ones(4, np.float32), 2).dtype == np.float32
    assert fastact.maxout(np.arange(4), 2).dtype == np.float64


def test_maxout_bad_input():
    with pytest.raises(ValueError, match="divisible"):
        fastact.maxout(np.ones(5), 2)
    with pytest.raises(np.exceptions.AxisError):
        fastact.maxout(np.ones((2, 4)), 2, axis=3)
    with pytest.raises(TypeError, match="integer"):
        fastact.maxout(np.ones(4), 2.5)
    with pytest.raises(ValueError, match=">= 1"):
        fastact.maxout(np.ones(4), 0)
    with pytest.raises(ValueError, match="grad shape"):
        fastact.maxout.backward(np.ones(3), np.ones(4), 2)
    with pytest.raises(TypeError, match="maxout"):
        fastact.maxout(np.array(["a", "b"]), 2)


# --------------------------------------------------------------------- prelu


def test_prelu_forward_is_per_channel_leaky_relu():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4)) * 3
    w = np.array([0.1, -0.2, 0.3])
    ref = np.where(x > 0, x, w[None, :, None] * x)
    np.testing.assert_array_equal(fastact.prelu(x, w), ref)
    np.testing.assert_array_equal(fastact.prelu(x, 0.25), np.where(x > 0, x, 0.25 * x))
    np.testing.assert_array_equal(fastact.prelu(x, np.array([0.25])), np.where(x > 0, x, 0.25 * x))
    w4 = np.array([0.5, 1.5, -1.0, 2.0])
    np.testing.assert_array_equal(fastact.prelu(x, w4, axis=-1), np.where(x > 0, x, w4 * x))
    assert fastact.prelu(x.astype(np.float32), w.astype(np.float32)).dtype == np.float32
    assert np.isnan(fastact.prelu(np.array([np.nan]), 0.1)).all()


def test_prelu_backward_values_and_dweight_vs_exact_sum():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3, 7))
    g = rng.standard_normal(x.shape)
    w = np.array([0.1, -0.2, 0.3])
    dx, dw = fastact.prelu.backward(g, x, w)
    np.testing.assert_array_equal(dx, np.where(x > 0, g, w[None, :, None] * g))
    assert dw.shape == (3,)
    for c in range(3):
        xc, gc = x[:, c].ravel(), g[:, c].ravel()
        exact = mp.fsum(mp.mpf(float(a)) * mp.mpf(float(b)) for a, b in zip(xc, gc) if not a > 0)
        assert A.ulp_error(mp, dw[c], exact, np.float64) <= 1
    # PyTorch's prelu'(0) = weight, like leaky_relu
    dx0, _ = fastact.prelu.backward(np.ones(2), np.array([0.0, -0.0]), 0.3, axis=0)
    np.testing.assert_array_equal(dx0, [0.3, 0.3])
    _, dws = fastact.prelu.backward(g, x, 0.5)
    assert np.ndim(dws) == 0 and dws == pytest.approx(np.sum(np.where(x > 0, 0, x * g)), rel=1e-14)
    # finite difference in the weight
    h = 1e-6
    num = (np.sum(g * fastact.prelu(x, w + [h, 0, 0])) - np.sum(g * fastact.prelu(x, w - [h, 0, 0]))) / (2 * h)
    assert num == pytest.approx(dw[0], rel=1e-7)


def test_prelu_dweight_float32_accumulates_in_float64():
    n = 1 << 20
    rng = np.random.default_rng(7)
    x = -rng.uniform(0.5, 1.5, (n, 1)).astype(np.float32)
    g = rng.uniform(0.5, 1.5, (n, 1)).astype(np.float32)
    _, dw = fastact.prelu.backward(g, x, np.array([0.2], np.float32))
    exact = math.fsum((x[:, 0].astype(np.float64) * g[:, 0].astype(np.float64)).tolist())
    assert dw.dtype == np.float32
    assert A.ulp_error(mp, dw[0], mp.mpf(exact), np.float32) <= 0.5 + 1e-9
    naive = np.float32(0)
    naive = np.cumsum(x[:, 0] * g[:, 0], dtype=np.float32)[-1]  # what float32 accumulation gives
    assert abs(float(naive) - exact) > abs(float(dw[0]) - exact)


# The CPU kernels (fastact.cpu.layers) over (outer, channels, inner) views:
# bitwise the leaky_relu ufuncs with the weight broadcast as slope input,
# over layouts that take each branch (rows, channels last, one weight), the
# copies of strided or converted inputs, and the chunking over threads.

def _prelu_cases():
    rng = np.random.default_rng(8)
    special = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, -5e-324, 1e-310, -1e300, 1e300]
    cases = []
    for dtype in (np.float32, np.float64):
        for shape, axis in [((5, 3, 37), 1), ((5, 3, 37), 0), ((5, 3, 37), -1), ((2, 3, 4, 5), 2),
                            ((6, 64), 1), ((6, 64), -1), ((64,), 0), ((40,), 1), ((3, 1, 70), 1),
                            ((2, 17, 16), 1), ((0, 3, 4), 1), ((), 1)]:
            with np.errstate(over="ignore"):
                x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)).astype(dtype)
                if x.size:
                    flat = x.reshape(-1)
                    idx = rng.choice(flat.size, min(flat.size, len(special)), replace=False)
                    flat[idx] = np.array(special[:len(idx)]).astype(dtype)
            ax = channel_axis(x.ndim, axis)
            n = 1 if ax is None else x.shape[ax]
            for w in (rng.uniform(-0.5, 1.5, n).astype(dtype), 0.25, np.array([0.3], dtype), np.asarray(dtype(-0.2))):
                cases.append((x, w, axis))
        x = rng.standard_normal((4, 6, 10)).astype(dtype)
        w = rng.uniform(0, 1, 6).astype(dtype)
        for view in (x[:, :, ::2], x[:, ::-1], x.transpose(2, 1, 0), np.asfortranarray(x)):
            cases.append((view, w if view.shape[1] == 6 else 0.1, 1))
    return cases


def _slope(x, w, axis):
    """The weight broadcast along x's channel axis, as the ufuncs take it."""
    w = np.asarray(w)
    ax = channel_axis(x.ndim, axis)
    shape = [1] * x.ndim
    if w.ndim == 1 and ax is not None:
        shape[ax] = w.shape[0]
    return w.reshape(shape)


def test_prelu_kernels_are_bitwise_the_leaky_relu_ufuncs():
    entry = CATALOG["leaky_relu"]
    rng = np.random.default_rng(9)
    for x, w, axis in _prelu_cases():
        compute = np.result_type(x.dtype, w)  # a Python float weight is weak (NEP 50)
        wb = _slope(x, w, axis)
        g = rng.standard_normal(x.shape).astype(x.dtype)
        with np.errstate(all="ignore"):
            want_y = _cpu.ufunc(entry, "forward", compute)(x, wb, dtype=compute)
            want_dx = _cpu.ufunc(entry, "backward", compute)(g, x, wb, dtype=compute)
            ref_y = np.where(x > 0, x, (wb * x).astype(compute))
            ref_dx = np.where(x > 0, g, (wb * g).astype(compute))
        y = fastact.prelu(x, w, axis)
        dx, dw = fastact.prelu.backward(g, x, w, axis)
        what = f"{x.dtype} {x.shape} {x.strides} axis={axis} w={w!r}"
        for got, want in ((y, want_y), (dx, want_dx)):
            assert np.shape(got) == x.shape and np.result_type(got) == compute, what
            np.testing.assert_array_equal(_bits(np.asarray(got)), _bits(np.asarray(want)), err_msg=what)
        ok = ~np.isnan(x)  # NaN x: dx is grad * NaN (the ufunc's), checked above
        np.testing.assert_array_equal(_bits(np.asarray(y)), _bits(np.asarray(ref_y)), err_msg=what)
        np.testing.assert_array_equal(_bits(np.asarray(dx)[ok]), _bits(ref_dx[ok]), err_msg=what)
        assert np.shape(dw) == np.shape(w) and np.result_type(dw) == compute, what
        terms = np.where(x > 0, 0.0, x.astype(np.float64) * g)  # NaN x included
        ax = channel_axis(x.ndim, axis)
        cols = np.moveaxis(terms, ax, -1).reshape(-1, np.size(w)) if np.size(w) > 1 else terms.reshape(-1, 1)
        for c in range(np.size(w)):
            col = cols[:, c]
            got = np.reshape(dw, -1)[c]
            if np.isfinite(col).all():
                exact = mp.mpf(math.fsum(col.tolist()))
                assert A.ulp_error(mp, got, exact, compute) <= (1 if compute == np.float64 else 0.5 + 1e-9), what
            else:  # an infinity or NaN among the terms (from inf / NaN operands): IEEE's sum
                want = np.nan if np.isnan(col).any() or (np.inf in col and -np.inf in col) else col[np.isinf(col)][0]
                assert _bits(np.asarray(got, np.float64)) == _bits(np.asarray(want)) or np.isnan(got) and np.isnan(want), what


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["rows", "channels_first", "channels_last", "one_weight"])
def test_prelu_dweight_large_random_signs_vs_fsum(dtype, layout, monkeypatch):
    """2**20 products of random signs and magnitudes (cancellation) summed per
    channel, within the bounds of the small tests, on one thread and on three
    (chunks of rows, of channels or of one channel's elements folded with two-sums)."""
    from fastact.cpu import threads

    dt = np.dtype(dtype)
    rng = np.random.default_rng(10)
    shape, axis, w = {
        "rows": ((16, 4, 1 << 14), 1, rng.uniform(0, 1, 4)),
        "channels_first": ((4, 1 << 18), 0, rng.uniform(0, 1, 4)),
        "channels_last": ((1 << 14, 64), -1, rng.uniform(0, 1, 64)),
        "one_weight": ((1 << 20,), 1, 0.25),
    }[layout]
    x = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-4, 4, shape)).astype(dt)
    g = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-4, 4, shape)).astype(dt)
    w = np.asarray(w, dt)
    terms = np.where(x > 0, 0.0, x.astype(np.float64) * g.astype(np.float64))
    cols = np.moveaxis(terms, axis, -1).reshape(-1, np.size(w)) if np.size(w) > 1 else terms.reshape(-1, 1)
    exact = [mp.mpf(math.fsum(cols[:, c].tolist())) for c in range(cols.shape[1])]
    bound = 1 if dt == np.float64 else 0.5 + 1e-9
    monkeypatch.setattr(threads, "MIN_PARALLEL_ELEMENTS_CHEAP", 1 << 10)
    old = fastact.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            fastact.set_num_threads(n)
            dx, dw = fastact.prelu.backward(g, x, w, axis)
            results.append(dx)
            assert dw.dtype == dt and np.shape(dw) == w.shape
            for c, ex in enumerate(exact):
                assert A.ulp_error(mp, np.reshape(dw, -1)[c], ex, dw.dtype) <= bound, (n, c)
    finally:
        fastact.set_num_threads(old)
    np.testing.assert_array_equal(results[0], results[1])


def test_prelu_out_dtypes_and_conversions():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4, 5))
    w = rng.uniform(0, 1, 4)
    want = fastact.prelu(x, w)
    out = np.empty_like(x)
    assert fastact.prelu(x, w, out=out) is out and np.array_equal(out, want)
    xc = x.copy()
    assert fastact.prelu(xc, w, out=xc) is xc and np.array_equal(xc, want)  # in place
    # a copy of the results: another dtype, strides, a 1-tuple; NumPy's ufunc: a broadcast shape
    for out in (np.empty((3, 4, 5), np.float32), np.empty((3, 4, 10))[:, :, ::2], (np.empty_like(x),),
                np.empty((2, 3, 4, 5))):
        res = fastact.prelu(x, w, out=out)
        assert res is (out[0] if isinstance(out, tuple) else out)
        np.testing.assert_array_equal(res, np.broadcast_to(want, res.shape).astype(res.dtype))
    big = np.concatenate([x.ravel(), x.ravel()[:3]])
    shifted = big[3:].reshape(x.shape)  # out overlapping x, shifted by 3 elements
    np.testing.assert_array_equal(fastact.prelu(big[:-3].reshape(x.shape), w, out=shifted), want)
    with pytest.raises(ValueError):
        fastact.prelu(x, w, out=np.empty((3, 4)))
    # float16 computes in float32, integers in float64; results as the ufunc's
    h = x.astype(np.float16)
    np.testing.assert_array_equal(fastact.prelu(h, w.astype(np.float16)),
                                  fastact.prelu(h.astype(np.float32), w.astype(np.float16).astype(np.float32)).astype(np.float16))
    dx, dw = fastact.prelu.backward(h, h, w.astype(np.float16))
    assert dx.dtype == dw.dtype == np.float16
    # overflow in the cast to the result dtype: +-inf, quietly (RuntimeWarnings are errors here)
    big = np.array([-6e4, 1.0], np.float16)
    np.testing.assert_array_equal(fastact.prelu(big, np.float16(6e4)), [-np.inf, 1.0])
    np.testing.assert_array_equal(fastact.prelu(np.array([-1e300, 1.0]), 1e10, out=np.empty((2, 2), np.float32)[:, 0]),
                                  [-np.inf, 1.0])
    xi = rng.integers(-5, 5, (3, 4, 5))
    y = fastact.prelu(xi, w)
    assert y.dtype == np.float64 and np.array_equal(y, np.where(xi > 0, xi, w[:, None] * xi))
    dx, dw = fastact.prelu.backward(xi, xi, np.array([2, 3, 4, 5]))
    assert dx.dtype == dw.dtype == np.float64
    np.testing.assert_array_equal(dw, [np.sum(np.where(xi[:, c] > 0, 0, xi[:, c] ** 2)) for c in range(4)])
    # float32 operands of a float64 call (widened in the kernel), as the ufunc computes them
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    back = _cpu.ufunc(CATALOG["leaky_relu"], "backward", np.float64)
    for g_, x_, w_ in ((x, x32, w32), (x32, x32, w), (x32, x, w32)):
        dx, dw = fastact.prelu.backward(g_, x_, w_)
        assert dx.dtype == dw.dtype == np.float64
        np.testing.assert_array_equal(_bits(dx), _bits(back(g_, x_, w_[:, None], dtype=np.float64)))
        terms = np.where(x_ > 0, 0.0, x_.astype(np.float64) * g_)
        np.testing.assert_array_max_ulp(dw, np.array([math.fsum(terms[:, c].ravel().tolist()) for c in range(4)]), 1)
    # a Python float weight is weak (NEP 50): float32, as NumPy's x32 * 0.3
    np.testing.assert_array_equal(_bits(fastact.prelu(x32, 0.3)), _bits(np.where(x32 > 0, x32, x32 * 0.3)))
    # 0-d: NumPy scalars, as the ufuncs return
    assert type(fastact.prelu(-2.0, 0.5)) is np.float64 and fastact.prelu(-2.0, 0.5) == -1.0
    dx0, dw0 = fastact.prelu.backward(np.float32(3), np.float32(-2), np.float32(0.5))
    assert type(dx0) is np.float32 and type(dw0) is np.float32 and (dx0, dw0) == (1.5, -6.0)


def _ieee_dweight(g, x):
    """sum of g*x over not (x > 0) with the IEEE meaning of the exact sum, by
    exact arithmetic: NaN for a NaN operand, 0 * inf or +inf with -inf; else
    an infinite term's infinity; else the exact sum rounded once (+-inf past
    the largest float, +0.0 for an exact zero, as the round-to-nearest sum)."""
    from fractions import Fraction

    total, infs = Fraction(0), set()
    for gv, xv in zip(np.asarray(g, np.float64).tolist(), np.asarray(x, np.float64).tolist()):
        if xv > 0:
            continue
        if math.isnan(gv) or math.isnan(xv):
            return math.nan
        if math.isinf(gv) or math.isinf(xv):
            if gv == 0 or xv == 0:
                return math.nan
            infs.add(math.copysign(1.0, gv) * math.copysign(1.0, xv))
            continue
        total += Fraction(gv) * Fraction(xv)
    if infs:
        return math.nan if len(infs) == 2 else math.inf * infs.pop()
    try:
        return float(total)
    except OverflowError:
        return math.inf if total > 0 else -math.inf


def _dweight_columns():
    """(g, x) columns of float64 cases: infinite sums, overflowing products
    that cancel, sums that overflow, and the NaN cases that stay."""
    M = float(np.finfo(np.float64).max)
    p = 2.0 ** 515
    return [
        ([np.inf, 1.0], [-1.0, -2.0]),  # -inf
        ([1.0, 2.0, -np.inf], [-np.inf, -2.0, -3.0]),  # -inf twice (x = -inf, grad = -inf)
        ([1.0, -1.0], [-np.inf, -np.inf]),  # -inf + inf: NaN
        ([0.0, 1.0], [-np.inf, -1.0]),  # 0 * inf: NaN
        ([np.nan, 1.0], [-1.0, -1.0]),  # NaN grad at x <= 0: NaN
        ([1.0, 1.0], [np.nan, -1.0]),  # NaN x: NaN
        ([np.nan, np.inf, 2.0], [1.0, 1.0, -1.0]),  # NaN and inf grads at x > 0: not counted
        ([M, -M], [-M, -M]),  # products overflow, cancel: 0
        ([M, -M, 3.0], [-M, -M, -2.0]),  # ... leaving -6
        ([p, -p, 3.0], [-p, -(p - 2.0 ** 463), 1.0]),  # -2**1030 + 2**1030 - 2**978: -2**978
        ([M, M, -M], [-M, -M / 2, -M]),  # -M**2 / 2: overflows to -inf
        ([M / 2, M / 2, M / 2, -1.0], [-1.0, -1.0, -1.0, -M]),  # the sum overflows: -inf
        ([M / 2, M / 2, -M], [-1.0, -1.0, -1.0]),  # the running sum overflows, the total is 0
        ([1e300, -1e300, 5e-324], [-1e10, -1e10, -1.0]),  # products of 1e310 that cancel: -5e-324
    ]


@pytest.mark.parametrize("layout", ["channels_last", "channels_first", "one_weight"])
@pytest.mark.parametrize("threads", [1, 3])
def test_prelu_dweight_is_the_ieee_sum(layout, threads, monkeypatch):
    """dweight where a sum is infinite or a product overflows: the IEEE value
    of the exact sum (as PyTorch's float64 sum for the infinite terms), never
    the NaN of a compensation (inf - inf) or of products that overflow and
    cancel; NaN where +inf meets -inf, 0 * inf, or a NaN is summed. Exact
    references (Fraction), zero signs compared; one thread and several
    (chunks folded with two-sums)."""
    from fastact.cpu import threads as _threads

    cols = _dweight_columns()
    n = max(len(g) for g, _ in cols) + 2
    # padding: x > 0 (not counted) with finite grads; rows of 2, rows of 1
    g = np.ones((n, len(cols)))
    x = np.full((n, len(cols)), 5.0)
    for c, (gc, xc) in enumerate(cols):
        g[:len(gc), c], x[:len(xc), c] = gc, xc
    monkeypatch.setattr(_threads, "MIN_PARALLEL_ELEMENTS_CHEAP", 4)
    old = fastact.get_num_threads()
    fastact.set_num_threads(threads)
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # the inputs' own products, below
            want = np.array([_ieee_dweight(g[:, c], x[:, c]) for c in range(len(cols))])
        for c in range(len(cols)):
            if layout == "channels_last":
                _, dw = fastact.prelu.backward(g, x, np.full(len(cols), 0.5), axis=-1)
                got = dw[c]
            elif layout == "channels_first":
                _, dw = fastact.prelu.backward(g.T.copy(), x.T.copy(), np.full(len(cols), 0.5), axis=0)
                got = dw[c]
            else:
                _, got = fastact.prelu.backward(np.tile(g[:, c], 3), np.tile(x[:, c], 3), 0.5)
                with np.errstate(over="ignore", invalid="ignore"):
                    want[c] = _ieee_dweight(np.tile(g[:, c], 3), np.tile(x[:, c], 3))
            what = f"{layout} column {c}: {cols[c]}: got {got!r}, exact {want[c]!r}"
            assert _bits(np.float64(got)) == _bits(np.float64(want[c])) or (np.isnan(got) and np.isnan(want[c])), what
    finally:
        fastact.set_num_threads(old)


def test_prelu_dweight_float32_infinities():
    """float32: an infinite x or grad (no opposite one) gives +-inf in float32,
    a NaN only where +inf meets -inf or 0 * inf."""
    g = np.array([[1.0, np.inf, 1.0, 0.0], [2.0, 1.0, -1.0, 1.0]], np.float32)
    x = np.array([[-np.inf, -1.0, -np.inf, -np.inf], [-1.0, -2.0, -np.inf, -1.0]], np.float32)
    _, dw = fastact.prelu.backward(g, x, np.full(4, 0.25, np.float32))
    assert dw.dtype == np.float32
    np.testing.assert_array_equal(dw, np.array([-np.inf, -np.inf, np.nan, np.nan], np.float32))
    # float32 finite terms cannot overflow float64: a float32 overflow of the sum is the cast's
    big = np.float32(np.finfo(np.float32).max)
    _, dw = fastact.prelu.backward(np.full(4, big), np.full(4, -big), np.float32(1.0))
    assert dw == np.float32(-np.inf)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_slope_zero_at_minus_inf_is_a_signed_zero(dtype):
    """leaky_relu and prelu with a slope of 0: slope * x is a zero for every
    finite x < 0 (-0.0 for +0.0, +0.0 for -0.0, IEEE), and so is the limit
    at x = -inf, where the product 0 * -inf would be NaN; the catalog's limits
    say the same. The derivative there is the slope (no product with x)."""
    dt = np.dtype(dtype)
    x = np.array([-np.inf, -np.finfo(dt).max, -2.0, -0.0, 0.0, 3.0, np.inf, np.nan], dt)
    leaky = CATALOG["leaky_relu"]
    for s in (0.0, -0.0):
        want = np.array([s * -1.0, s * -1.0, s * -1.0, s * -0.0, s * 0.0, 3.0, np.inf, np.nan], dt)
        assert _bits(np.asarray(leaky.limits(s)[0], dt)) == _bits(np.asarray(s * -1.0, dt))
        for y in (fastact.leaky_relu(x, negative_slope=s), fastact.prelu(x, s, axis=0),
                  fastact.prelu(x, np.full(x.size, s, dt), axis=0), fastact.prelu(x[:, None], np.array([s, 0.5], dt)[:1])):
            y = np.asarray(y).reshape(-1)
            assert y.dtype == dt
            assert np.array_equal(np.isnan(y), np.isnan(want))
            np.testing.assert_array_equal(_bits(y[:-1]), _bits(want[:-1]))
        for i, v in enumerate(x[:-1]):  # the scalar path agrees
            assert _bits(np.asarray(fastact.leaky_relu(v, negative_slope=s))) == _bits(want[i:i + 1])[0]
        gr = np.array([1.0, -1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0], dt)
        dx = fastact.leaky_relu.backward(gr, x, negative_slope=s)
        dxp, _ = fastact.prelu.backward(gr, x, np.array([s], dt), axis=0)
        wd = np.array([s * 1.0, s * -1.0, s * 2.0, s, s, 1.0, 1.0, np.nan], dt)
        for d in (dx, dxp):
            np.testing.assert_array_equal(_bits(d[:-1]), _bits(wd[:-1]))
            assert np.isnan(d[-1])
    # a nonzero slope keeps its infinite limit
    np.testing.assert_array_equal(fastact.leaky_relu(x[:1], negative_slope=0.5), [-np.inf])
    np.testing.assert_array_equal(fastact.leaky_relu(x[:1], negative_slope=-0.5), [np.inf])


def test_prelu_weight_dtype_follows_numpy_promotion():
    """NumPy 2 (NEP 50): a Python float or int weight is weak (float32 x stays
    float32, as x * w in NumPy and leaky_relu with that slope, bitwise), a
    NumPy float64 scalar or array is strong (float64, as np.multiply);
    forward, dx and dweight."""
    rng = np.random.default_rng(12)
    x32 = (rng.standard_normal((3, 4)) * 3).astype(np.float32)
    g32 = rng.standard_normal((3, 4)).astype(np.float32)
    for w in (0.3, 2):
        want = np.multiply(x32, w).dtype
        assert want == np.float32
        y = fastact.prelu(x32, w)
        dx, dw = fastact.prelu.backward(g32, x32, w)
        assert y.dtype == dx.dtype == dw.dtype == want
        np.testing.assert_array_equal(_bits(y), _bits(fastact.leaky_relu(x32, negative_slope=w)))
        np.testing.assert_array_equal(_bits(y), _bits(np.where(x32 > 0, x32, x32 * w)))
        np.testing.assert_array_equal(_bits(dx), _bits(fastact.leaky_relu.backward(g32, x32, negative_slope=w)))
        terms = np.where(x32 > 0, 0.0, x32.astype(np.float64) * g32)
        assert dw == np.float32(math.fsum(terms.ravel().tolist()))
        out = np.empty((2, 3, 4), np.float32)  # a broadcast out=: NumPy's ufunc, the same values
        np.testing.assert_array_equal(_bits(fastact.prelu(x32, w, out=out)[1]), _bits(y))
    for w in (np.float64(0.3), np.full(4, 0.3), np.asarray(0.3)):
        want = np.multiply(x32, w).dtype
        assert want == np.float64
        y = fastact.prelu(x32, w, axis=-1)
        dx, dw = fastact.prelu.backward(g32, x32, w, axis=-1)
        assert y.dtype == dx.dtype == dw.dtype == want
    assert fastact.prelu(x32, np.float32(0.3)).dtype == np.float32
    assert fastact.prelu(x32.astype(np.float16), 0.3).dtype == np.float16
    assert fastact.prelu(np.arange(-3, 3), 0.5).dtype == np.float64


def test_prelu_kernels_are_vectorized():
    """Each kernel's loops (rows with the weight hoisted, rows of channels)
    run on vectors: packed arithmetic in the LLVM IR, for the backward the
    compensated chains (fsub on double vectors) too."""
    import re

    import numba

    from fastact.cpu import layers

    entry = CATALOG["leaky_relu"]
    for dt in (np.float32, np.float64):
        for kind, kernel in (("forward", layers.prelu_forward(entry)), ("backward", layers.prelu_backward(entry))):
            jit = numba.njit(nogil=True)(kernel.py_func)  # uncached: the cache keeps no IR
            x = np.ones((2, 3, 4), dt)
            w = np.ones(3, dt)
            if kind == "forward":
                jit(x, w, x.copy())
            else:
                jit(x, x, w, x.copy(), np.zeros((2, 3)))
            llvm_ir = jit.inspect_llvm(jit.signatures[0])
            blocks = {}  # vectorized loop bodies -> their packed operations
            label = None
            for line in llvm_ir.splitlines():
                m = re.match(r"^([\w.]+):", line)
                if m:
                    label = m.group(1)
                op = re.search(r"= (fadd|fsub|fmul) <(\d+) x (float|double)>", line)
                if op and label and label.startswith("vector.body") and int(op.group(2)) >= 4:
                    blocks.setdefault(label, set()).add(op.group(1) + " " + op.group(3))
            assert len(blocks) >= 2, f"{kind} {dt.__name__}: {blocks}"  # both layouts' loops
            if kind == "backward":
                chains = [b for b, ops in blocks.items() if {"fadd double", "fsub double"} <= ops]
                assert len(chains) >= 2, f"{kind} {dt.__name__}: {blocks}"


def test_prelu_bad_input():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="weight"):
        fastact.prelu(x, np.ones(2))
    with pytest.raises(ValueError, match="weight"):
        fastact.prelu(x, np.ones((3, 1)))
    with pytest.raises(np.exceptions.AxisError):
        fastact.prelu(x, np.ones(3), axis=2)
    with pytest.raises(ValueError, match="grad shape"):
        fastact.prelu.backward(np.ones(3), x, 0.1)
    with pytest.raises(TypeError, match="prelu"):
        fastact.prelu(x.astype(complex), 0.1)


def test_docstring_examples_run():
    import doctest

    for f in (fastact.softmax, fastact.log_softmax, fastact.swiglu, fastact.geglu, fastact.maxout, fastact.prelu):
        test = doctest.DocTestParser().get_doctest(f.__doc__, {}, f.__name__, None, 0)
        assert test.examples, f.__name__
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        runner.run(test)
        assert runner.failures == 0, f.__name__



# ------------------------------------------- elementwise activations with parameters
# A public call with scalar parameters runs a loop with the values built in
# (fastact.cpu.ufuncs.select; a value set other than the defaults from its
# second call on). Its results are bitwise those of the general ufunc, which
# takes the parameters as inputs rounded to the compute dtype.

PARAM_ENTRIES = [e for e in ENTRIES if e.params]
KINDS = ("forward", "backward", "backward_y")
#: (entry, kind) with a formula for the kind (backward_y: entries with backward_from_output)
ENTRY_KINDS = [(e, k) for e in PARAM_ENTRIES for k in KINDS if k != "backward_y" or e.grad_y is not None]
#: value sets beyond the defaults, the catalog's test values and 0.3 * defaults
#: (inexact in float32): signed zeros, float32 overflow, NaN, infinite bounds
EXTRA_VALUES = {
    "leaky_relu": [(-0.0,), (0.0,)],
    "elu": [(1e39,), (math.nan,)],
    "celu": [(-1.5,)],
    "softplus": [(1e-30,)],
    "hardtanh": [(-math.inf, 0.0)],
}


def _value_sets(entry, kind):
    sets = [
        entry.defaults,
        tuple(p.test_value for p in entry.params),
        tuple(0.3 * v for v in entry.defaults),
    ]
    sets += EXTRA_VALUES.get(entry.name, [])
    checks = [entry.check] + ([entry.check_y] if kind == "backward_y" else [])
    return [v for v in sets if not any(c is not None and c(*v) for c in checks)]


def _inputs(vals, dt):
    """Special values, values at and around the parameters, a log-spread sample."""
    fi = np.finfo(dt)
    special = [
        np.nan,
        -np.nan,
        np.inf,
        -np.inf,
        0.0,
        -0.0,
        1.0,
        -1.0,
        float(fi.smallest_subnormal),
        -float(fi.smallest_subnormal),
        float(fi.tiny),
        -float(fi.tiny),
        float(fi.max),
        -float(fi.max),
    ]
    near = [
        v * k
        for v in vals
        for k in (1.0, -1.0, 0.5, -2.0, 1 + 1e-7)
        if math.isfinite(v * k)
    ]
    rng = np.random.default_rng(11)
    spread = 10.0 ** rng.uniform(-9, 2.5, 300) * rng.choice([-1.0, 1.0], 300)
    with np.errstate(over="ignore"):
        return np.concatenate([special, near, spread]).astype(dt)


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _call(f, kind, ins, kw):
    call = {"forward": f, "backward": f.backward}.get(kind) or f.backward_from_output
    return call(*ins, **kw)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("entry,kind", ENTRY_KINDS, ids=[f"{e.name}-{k}" for e, k in ENTRY_KINDS])
def test_specialized_loop_is_bitwise_the_general_ufunc(entry, kind, dtype):
    dt = np.dtype(dtype)
    f = fastact.ACTIVATIONS[entry.name]
    general = _cpu.ufunc(entry, kind, dt)
    for vals in _value_sets(entry, kind):
        x = _inputs(vals, dt)
        ins = (
            (x,)
            if kind == "forward"
            else (np.resize(_inputs((), dt)[::-1], x.shape), x)
        )
        with np.errstate(all="ignore"):
            want = general(*ins, *vals, dtype=dt)
        kw = dict(zip(entry.param_names, vals))
        for _ in range(
            2
        ):  # a new value set runs the general ufunc once, then its own loop
            got = _call(f, kind, ins, kw)
            assert got.dtype == dt
            np.testing.assert_array_equal(
                _bits(got), _bits(want), err_msg=f"{entry.name} {kind} {vals}"
            )
        uf, inputs, _ = _cpu.select(entry, kind, dt, vals)
        if any(math.isnan(v) for v in vals):  # NaN parameters: always the general ufunc
            assert uf is general and inputs == vals
        else:
            assert inputs == () and uf.nin == general.nin - len(vals), (
                "not the specialized loop"
            )


def test_specialized_loops_for_other_input_kinds():
    """float16 (computed in float32), integers (float64), where=, out= and
    the threaded path all run the specialized loop like the general one."""
    e = CATALOG["elu"]
    general = {dt: _cpu.ufunc(e, "forward", dt) for dt in (np.float32, np.float64)}
    xh = np.linspace(-4, 4, 101).astype(np.float16)
    xi = np.arange(-50, 50)
    big = np.linspace(-10, 10, 1 << 18)
    for _ in range(2):
        np.testing.assert_array_equal(
            fastact.elu(xh, alpha=0.1),
            general[np.float32](xh, 0.1, dtype=np.float32).astype(np.float16),
        )
        np.testing.assert_array_equal(
            fastact.elu(xi, alpha=0.1), general[np.float64](xi, 0.1, dtype=np.float64)
        )
        out = np.full(xi.shape, 7.0)
        mask = xi % 2 == 0
        fastact.elu(xi, alpha=0.1, out=out, where=mask)
        np.testing.assert_array_equal(
            out, np.where(mask, general[np.float64](xi, 0.1, dtype=np.float64), 7.0)
        )
        old = fastact.get_num_threads()
        fastact.set_num_threads(2)
        try:
            np.testing.assert_array_equal(
                fastact.elu(big, alpha=0.1), general[np.float64](big, 0.1)
            )
        finally:
            fastact.set_num_threads(old)


def test_non_default_values_do_not_take_over_the_default_fast_path():
    x = np.linspace(-3, 3, 64)
    for _ in range(3):
        fastact.leaky_relu(x, negative_slope=0.2)
    fastact.leaky_relu(x, negative_slope=0.01)  # the defaults, spelled out
    np.testing.assert_array_equal(fastact.leaky_relu(x), np.where(x > 0, x, 0.01 * x))
    np.testing.assert_array_equal(
        fastact.leaky_relu(x, negative_slope=0.2), np.where(x > 0, x, 0.2 * x)
    )


def test_signed_zero_parameters_are_different_loops():
    x = np.array([-2.0, -1.0, 3.0])
    for _ in range(2):
        neg = fastact.leaky_relu(x, negative_slope=-0.0)
        pos = fastact.leaky_relu(x, negative_slope=0.0)
    assert not np.signbit(neg[:2]).any() and np.signbit(pos[:2]).all()
