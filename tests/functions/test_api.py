"""The public API of fastact, generated from the catalog.

Every test that can iterates ``fastact.catalog.ENTRIES`` / ``fastact.ACTIVATIONS``
so that a new catalog entry is covered without editing this file.
"""

from __future__ import annotations

import doctest
import pickle
import warnings

import numpy as np
import pytest

import fastact

from fastact.catalog import CATALOG, ENTRIES

NAMES = [e.name for e in ENTRIES]
Y_NAMES = [e.name for e in ENTRIES if e.grad_y is not None]
PARAM_NAMES = [e.name for e in ENTRIES if e.params]
FLOATS = (np.float32, np.float64)

# finite sample inputs touching the branches of the formulas (kinks, the
# derivative roots, saturation); rounded to float32 so that they are the same
# values in float32 and in float64
XS = np.array(
    [-800.0, -100.0, -60.0, -30.0, -8.5, -3.0, -2.2, -1.5, -1.2785, -1.0, -0.75, -0.5,
     -1e-3, -1e-30, 0.0, 1e-30, 1e-3, 0.3, 0.5, 1.0, 2.5, 3.0, 5.0, 6.0, 7.5, 20.0,
     30.0, 45.0, 100.0, 800.0]
).astype(np.float32).astype(np.float64)


def fn(name):
    return fastact.ACTIVATIONS[name]


def param_sets(entry):
    """Default parameters, plus the catalog's non-default test values."""
    sets = [entry.defaults]
    if entry.params:
        sets.append(tuple(p.test_value for p in entry.params))
    return sets


def kwargs(entry, vals):
    return dict(zip(entry.param_names, vals))


def cases(names=NAMES):
    """(name, params-kwargs) pairs for pytest.mark.parametrize."""
    out = []
    for name in names:
        e = CATALOG[name]
        for i, vals in enumerate(param_sets(e)):
            out.append(pytest.param(name, kwargs(e, vals), id=f"{name}-{'default' if i == 0 else 'test'}"))
    return out


def y_ok(entry, vals):
    """backward_from_output exists and accepts these parameter values."""
    return entry.grad_y is not None and not (entry.check_y and entry.check_y(*vals))


def _ordered(a):
    it = {4: np.int32, 8: np.int64, 2: np.int16}[a.dtype.itemsize]
    i = a.view(it)
    mag = i & np.array(np.iinfo(it).max, dtype=it)
    return np.where(i < 0, -mag, mag)


def max_ulp_distance(a, b):
    """Largest distance in units in the last place (same dtype; +0 == -0)."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(np.broadcast_to(np.asarray(b, dtype=a.dtype), a.shape))
    assert np.array_equal(np.isnan(a), np.isnan(b)), (a, b)
    keep = ~np.isnan(a)
    ia = _ordered(a[keep]).tolist()
    ib = _ordered(b[keep]).tolist()
    return max((abs(int(u) - int(v)) for u, v in zip(ia, ib)), default=0)


def assert_same(got, expected):
    """Equal values (NaN == NaN, 0.0 == -0.0), same dtype and same shape."""
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_array_equal(got, expected)


def assert_signed_equal(got, expected, what=""):
    """Equal values and, for zeros, the same sign (``==`` has -0.0 == 0.0)."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype, (what, got.dtype, expected.dtype)
    np.testing.assert_array_equal(got, expected, err_msg=what)
    assert np.array_equal(np.signbit(got), np.signbit(expected)), (what, got, expected)


def assert_signed_close(got, expected, what=""):
    """Within a few ulps (the float32 kernels see float32 parameters, the
    reference the float64 ones), zeros exactly and with the same sign."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype, (what, got.dtype, expected.dtype)
    np.testing.assert_allclose(got, expected, rtol=4 * np.finfo(got.dtype).eps, atol=0, err_msg=what)
    assert np.array_equal(np.signbit(got), np.signbit(expected)), (what, got, expected)


# Signed zeros (docs/guarantees.md): a zero result has the sign of the exact
# value next to it. f(x) ~ c x at 0 gives f(-0) = -0 (tanh, silu, elu, ...);
# an exact-zero branch (relu and relu6 for x <= 0, hardswish for x <= -3, a
# derivative that is 0 there) gives +0; a limit has the sign f has before it
# (silu(-inf) = -0, softplus(-inf) = +0, log_sigmoid(+inf) = -0). The expected
# zeros come from the catalog's mpmath references at +-TINY, where mpmath does
# not underflow: float() of a tiny mpf keeps its sign, and an exact mpf(0) is +0.
TINY = "1e-400"
# derivatives defined by convention at x = 0 (PyTorch's: the left derivative)
KINK_AT_ZERO = {"relu", "relu6", "leaky_relu", "elu", "celu", "selu"}


def ref_at(fn, x, vals, dt):
    """``fn(mp, x, *vals)`` rounded to ``dt``; ``x`` is a float or "+-" TINY."""
    import mpmath as mp

    with mp.workdps(30):
        return dt(float(fn(mp, mp.mpf(x), *[mp.mpf(v) for v in vals])))


# ----------------------------------------------------------------- namespace


def test_activations_match_catalog():
    assert list(fastact.ACTIVATIONS) == NAMES
    for name, f in fastact.ACTIVATIONS.items():
        assert isinstance(f, fastact.ActivationFunction)
        assert getattr(fastact, name) is f
        assert f.__name__ == name
        assert name in fastact.__all__
        assert f.catalog_entry is CATALOG[name]
        assert f.params == {p.name: p.default for p in CATALOG[name].params}
        assert name in repr(f)


def test_aliases():
    assert fastact.ALIASES == {"swish": "silu"}
    assert fastact.swish is fastact.silu
    for alias, target in fastact.ALIASES.items():
        assert getattr(fastact, alias) is fastact.ACTIVATIONS[target]
        assert alias in fastact.__all__
        assert alias in CATALOG[target].aliases


def test_backward_from_output_entries():
    expected = {"sigmoid", "tanh", "relu", "relu6", "leaky_relu", "elu", "celu", "selu",
                "softplus", "hardtanh", "identity"}
    assert set(Y_NAMES) == expected


@pytest.mark.parametrize("name", NAMES)
def test_backward_from_output_exists_iff_grad_y(name):
    f = fn(name)
    has = CATALOG[name].grad_y is not None
    assert hasattr(f, "backward_from_output") is has
    assert callable(f.backward)
    if has:
        assert callable(f.backward_from_output)
    else:
        with pytest.raises(AttributeError):
            f.backward_from_output  # noqa: B018


@pytest.mark.parametrize("name", NAMES)
def test_pickle_roundtrip_is_identity(name):
    f = fn(name)
    assert pickle.loads(pickle.dumps(f)) is f
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(f, protocol=proto)) is f


def test_pickle_sigmoid_and_alias():
    assert pickle.loads(pickle.dumps(fastact.sigmoid)) is fastact.sigmoid
    assert pickle.loads(pickle.dumps(fastact.swish)) is fastact.silu


# -------------------------------------------------------------------- ufuncs


@pytest.mark.parametrize("name", NAMES)
def test_ufunc_objects(name):
    f, e = fn(name), CATALOG[name]
    n = len(e.params)
    x = XS
    g = np.linspace(-2.0, 2.0, len(x))
    kinds = [("ufunc", 1, lambda *a, **k: f(*a, **k)), ("backward_ufunc", 2, f.backward)]
    if e.grad_y is not None:
        kinds.append(("backward_from_output_ufunc", 2, f.backward_from_output))
    for attr, nin, public in kinds:
        uf = getattr(f, attr)
        assert isinstance(uf, np.ufunc), attr
        assert uf.nin == nin + n, attr
        assert uf.nout == 1
        for vals in param_sets(e):
            for dt in FLOATS:
                kw = kwargs(e, vals)
                if nin == 1:
                    args = (x.astype(dt),)
                elif attr == "backward_ufunc":
                    args = (g.astype(dt), x.astype(dt))
                else:  # from the output: y = f(x)
                    args = (g.astype(dt), f(x.astype(dt), **kw))
                # raw ufuncs may raise FP flags from lanes a vectorized select
                # discards (documented); the public call silences them
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    raw = uf(*args, *vals)
                assert_same(raw, public(*args, **kw))


def test_elu_ufunc_param_broadcasts():
    x = np.linspace(-3.0, 2.0, 11)
    r = fastact.elu.ufunc(x, np.array([[0.5], [2.0]]))
    assert r.shape == (2, 11)
    assert_same(r[0], fastact.elu(x, alpha=0.5))
    assert_same(r[1], fastact.elu(x, alpha=2.0))


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_ufunc_params_broadcast(name):
    """Each parameter is a ufunc input: a column of values gives one row per value."""
    f, e = fn(name), CATALOG[name]
    x = XS
    g = np.linspace(-2.0, 2.0, len(x))
    for i, p in enumerate(e.params):
        column = np.array([[p.default], [p.test_value]])
        for dt in FLOATS:
            pvals = [column.astype(dt) if j == i else q.default for j, q in enumerate(e.params)]
            with np.errstate(over="ignore", invalid="ignore"):  # raw ufuncs: see above
                fwd = f.ufunc(x.astype(dt), *pvals)
                bwd = f.backward_ufunc(g.astype(dt), x.astype(dt), *pvals)
            assert fwd.shape == bwd.shape == (2, len(x))
            for row, v in enumerate((p.default, p.test_value)):
                kw = {p.name: v}
                assert_same(fwd[row], f(x.astype(dt), **kw))
                assert_same(bwd[row], f.backward(g.astype(dt), x.astype(dt), **kw))
                vals = [v if j == i else q.default for j, q in enumerate(e.params)]
                if y_ok(e, vals):
                    y = f(x.astype(dt), **kw)
                    with np.errstate(over="ignore", invalid="ignore"):
                        by = f.backward_from_output_ufunc(g.astype(dt), y, *pvals)[row]
                    assert_same(by, f.backward_from_output(g.astype(dt), y, **kw))


# ---------------------------------------------------------------------- gelu


def test_gelu_approximate():
    x = XS
    g = np.linspace(-2.0, 2.0, len(x))
    for dt in FLOATS:
        xd, gd = x.astype(dt), g.astype(dt)
        assert_same(fastact.gelu(xd, approximate="tanh"), fastact.gelu_tanh(xd))
        assert_same(fastact.gelu.backward(gd, xd, approximate="tanh"), fastact.gelu_tanh.backward(gd, xd))
        assert_same(fastact.gelu(xd, approximate="none"), fastact.gelu(xd))
        assert_same(fastact.gelu.backward(gd, xd, approximate="none"), fastact.gelu.backward(gd, xd))
    # the two formulas differ (otherwise the checks above prove nothing)
    assert not np.array_equal(fastact.gelu(x), fastact.gelu_tanh(x))
    out = np.zeros_like(x)
    r = fastact.gelu(x, approximate="tanh", out=out)
    assert r is out
    assert_same(out, fastact.gelu_tanh(x))


@pytest.mark.parametrize("bad", ["sigmoid", "Tanh", "", "erf", "exact", None, 1])
def test_gelu_approximate_invalid(bad):
    x = np.array([0.5, -1.0])
    with pytest.raises(ValueError, match="approximate"):
        fastact.gelu(x, approximate=bad)
    with pytest.raises(ValueError, match="approximate"):
        fastact.gelu.backward(np.ones(2), x, approximate=bad)


# -------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dt", FLOATS, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_float_dtypes_preserved(name, dt):
    f, e = fn(name), CATALOG[name]
    x = XS.astype(dt)
    g = np.linspace(-2.0, 2.0, len(x)).astype(dt)
    y = f(x)
    assert y.dtype == dt and y.shape == x.shape
    assert f.backward(g, x).dtype == dt
    if e.grad_y is not None:
        assert f.backward_from_output(g, y).dtype == dt


@pytest.mark.parametrize("name", NAMES)
def test_float16_computed_in_float32(name):
    f, e = fn(name), CATALOG[name]
    x = np.array([-60.0, -8.0, -3.0, -1.5, -1.0, -0.25, 0.0, 0.1, 1.0, 2.0, 3.0, 6.0, 11.0, 100.0],
                 dtype=np.float16)
    g = np.linspace(-3.0, 3.0, len(x)).astype(np.float16)
    x32, g32 = x.astype(np.float32), g.astype(np.float32)
    with np.errstate(over="ignore"):
        y = f(x)
        assert_same(y, f(x32).astype(np.float16))
        assert_same(f.backward(g, x), f.backward(g32, x32).astype(np.float16))
        # float16 grad with a float32 x is a float32 computation
        assert_same(f.backward(g, x32), f.backward(g32, x32))
        if e.grad_y is not None:
            assert_same(f.backward_from_output(g, y),
                        f.backward_from_output(g32, y.astype(np.float32)).astype(np.float16))


INT_DTYPES = [np.int8, np.int32, np.int64, np.uint8, np.bool_]


@pytest.mark.parametrize("idt", INT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_integer_and_bool_inputs_compute_in_float64(idt):
    if idt is np.bool_:
        x = np.array([False, True, True, False])
        g = np.array([True, True, False, True])
    elif idt is np.uint8:
        x = np.array([0, 1, 2, 3, 6, 7, 255], dtype=idt)
        g = np.array([1, 2, 3, 0, 1, 5, 1], dtype=idt)
    else:
        x = np.array([-100, -3, -1, 0, 1, 3, 6, 7, 100], dtype=idt)
        g = np.array([1, -2, 3, 0, 1, 5, 1, 2, -1], dtype=idt)
    bad = []
    for name in NAMES:
        f, e = fn(name), CATALOG[name]
        y = f(x)
        got = [("forward", y, f(x.astype(np.float64))),
               ("backward", f.backward(g, x), f.backward(g.astype(np.float64), x.astype(np.float64)))]
        if e.grad_y is not None:
            got.append(("backward_from_output", f.backward_from_output(g, x),
                        f.backward_from_output(g.astype(np.float64), x.astype(np.float64))))
        for kind, r, expected in got:
            if r.dtype != np.float64:
                bad.append(f"{name}.{kind}: dtype {r.dtype}")
            elif not np.array_equal(r, expected):
                bad.append(f"{name}.{kind}: values differ from the float64 computation")
    assert not bad, f"{np.dtype(idt).name} input: " + "; ".join(bad)


@pytest.mark.parametrize("name", NAMES)
def test_mixed_float32_grad_float64_x(name):
    f, e = fn(name), CATALOG[name]
    x = XS
    g32 = np.linspace(-2.0, 2.0, len(x)).astype(np.float32)
    r = f.backward(g32, x)
    assert r.dtype == np.float64
    assert_same(r, f.backward(g32.astype(np.float64), x))
    r = f.backward(g32.astype(np.float64), x.astype(np.float32))
    assert_same(r, f.backward(g32.astype(np.float64), x))
    if e.grad_y is not None:
        y = f(x)
        assert_same(f.backward_from_output(g32, y), f.backward_from_output(g32.astype(np.float64), y))


@pytest.mark.parametrize("name", NAMES)
def test_python_scalars_and_lists(name):
    f = fn(name)
    ref = f(np.array([-2.0, 0.5, 3.0]))
    # lists and nested lists: np.asarray semantics
    assert_same(f([-2.0, 0.5, 3.0]), ref)
    assert_same(f([[-2.0, 0.5, 3.0]]), ref[None])
    assert_same(f([-2, 0, 3]), f(np.array([-2.0, 0.0, 3.0])))
    assert_same(f.backward([1.0, 2.0, -1.0], [-2.0, 0.5, 3.0]),
                f.backward(np.array([1.0, 2.0, -1.0]), np.array([-2.0, 0.5, 3.0])))
    # scalars in, NumPy scalars out (like np.exp)
    for v, dt in [(0.5, np.float64), (np.float64(0.5), np.float64), (np.array(0.5), np.float64),
                  (np.float32(0.5), np.float32), (np.array(0.5, dtype=np.float32), np.float32),
                  (3, np.float64)]:
        r = f(v)
        assert type(r) is dt, (v, type(r))
        assert r == f(np.array([v], dtype=dt))[0]
        b = f.backward(1.0 if dt is np.float64 else np.float32(1.0), v)
        assert type(b) is dt, (v, type(b))
        assert b == f.backward(np.ones(1, dtype=dt), np.array([v], dtype=dt))[0]


@pytest.mark.parametrize("name", ["sigmoid", "relu", "elu"])
def test_float16_scalar_returns_numpy_scalar(name):
    f = fn(name)
    for v in (np.float16(0.5), np.array(0.5, dtype=np.float16)):
        r = f(v)
        assert type(r) is np.float16, type(r)
        assert r == f(np.array([0.5], dtype=np.float16))[0]
        b = f.backward(np.float16(1.0), v)
        assert type(b) is np.float16, type(b)


@pytest.mark.parametrize("name", ["sigmoid", "leaky_relu"])
def test_scalar_with_where_returns_numpy_scalar(name):
    """np.sin(np.array(0.5), where=np.array(True)) is a NumPy scalar: so is this."""
    f = fn(name)
    for v in (0.5, np.array(0.5), np.float32(0.5)):
        r = f(v, where=np.array(True))
        assert np.ndim(r) == 0
        assert type(r) is type(f(v)), type(r)
        assert r == f(v)
        b = f.backward(1.0, v, where=True)
        assert type(b) is type(f.backward(1.0, v)), type(b)


# ---------------------------------------------------------------- bad input

BAD_INPUTS = [
    pytest.param(np.array([1.0 + 2.0j, 0.5]), id="complex-array"),
    pytest.param([1.0 + 2.0j], id="complex-list"),
    pytest.param(1j, id="complex-scalar"),
    pytest.param(np.array([1.0, "a"], dtype=object), id="object-array"),
    pytest.param(np.array([1.0, 2.0], dtype=object), id="object-floats"),
    pytest.param(np.array(["1.0", "2.0"]), id="str-array"),
    pytest.param("1.0", id="str"),
    pytest.param(b"1.0", id="bytes"),
    pytest.param(None, id="None"),
    pytest.param(np.array(["2020-01-01"], dtype="datetime64[D]"), id="datetime"),
]
if np.dtype(np.longdouble) != np.dtype(np.float64):
    BAD_INPUTS.append(pytest.param(np.array([0.5, 1.0], dtype=np.longdouble), id="longdouble"))
    BAD_INPUTS.append(pytest.param(np.longdouble(0.5), id="longdouble-scalar"))


@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_bad_input_type_error(bad):
    ok = np.array([0.5, 1.0])
    for name in NAMES:
        f = fn(name)
        calls = [lambda: f(bad), lambda: f.backward(bad, ok), lambda: f.backward(ok, bad)]
        if CATALOG[name].grad_y is not None:
            calls += [lambda: f.backward_from_output(bad, ok), lambda: f.backward_from_output(ok, bad)]
        for call in calls:
            with pytest.raises(TypeError) as info:
                call()
            msg = str(info.value)
            assert name in msg and "float32" in msg, msg


def test_longdouble_rejected_if_distinct():
    if np.dtype(np.longdouble) == np.dtype(np.float64):
        pytest.skip("np.longdouble is float64 on this platform")
    with pytest.raises(TypeError, match="sigmoid.*float32"):
        fastact.sigmoid(np.ones(3, dtype=np.longdouble))


@pytest.mark.parametrize("name", NAMES)
def test_backward_shapes_must_broadcast(name):
    f = fn(name)
    with pytest.raises(ValueError, match="broadcast"):
        f.backward(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="broadcast"):
        f.backward(np.ones((2, 3)), np.ones((3, 2)))
    if CATALOG[name].grad_y is not None:
        with pytest.raises(ValueError, match="broadcast"):
            f.backward_from_output(np.ones(3), np.ones(4))


@pytest.mark.parametrize("name", NAMES)
def test_read_only_out(name):
    f = fn(name)
    x = np.linspace(-2.0, 2.0, 5)
    out = np.zeros(5)
    out.flags.writeable = False
    with pytest.raises(ValueError):
        f(x, out=out)
    with pytest.raises(ValueError):
        f.backward(np.ones(5), x, out=out)
    with pytest.raises(ValueError):
        f(x, out=out, where=x > 0)
    assert not out.any()


@pytest.mark.parametrize("name", NAMES)
def test_unknown_keyword(name):
    f = fn(name)
    x = np.array([0.5, -1.0])
    for call in (lambda **k: f(x, **k), lambda **k: f.backward(np.ones(2), x, **k)):
        with pytest.raises(TypeError):
            call(not_a_parameter=1.0)
        with pytest.raises(TypeError):
            call(axis=0)
    if CATALOG[name].grad_y is not None:
        with pytest.raises(TypeError):
            f.backward_from_output(np.ones(2), x, not_a_parameter=1.0)
    with pytest.raises(TypeError):  # parameters are keyword-only
        f(x, *(CATALOG[name].defaults or (1.0,)))


@pytest.mark.parametrize("name", PARAM_NAMES)
@pytest.mark.parametrize("bad", ["1.0", b"1", None, [1.0, 2.0], np.array([1.0, 2.0])],
                         ids=["str", "bytes", "None", "list", "array"])
def test_non_numeric_param(name, bad):
    f, e = fn(name), CATALOG[name]
    x = np.array([0.5, -1.0])
    for p in e.params:
        with pytest.raises(TypeError, match=p.name):
            f(x, **{p.name: bad})
        with pytest.raises(TypeError, match=p.name):
            f.backward(np.ones(2), x, **{p.name: bad})


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_numeric_param_types_accepted(name):
    f, e = fn(name), CATALOG[name]
    x = XS
    for p in e.params:
        ref = f(x, **{p.name: p.test_value})
        assert_same(f(x, **{p.name: np.float64(p.test_value)}), ref)
        assert_same(f(x, **{p.name: np.array(p.test_value)}), ref)


def test_invalid_param_values():
    x = np.array([-1.0, 0.5])
    g = np.ones(2)
    for call in (lambda **k: fastact.celu(x, **k), lambda **k: fastact.celu.backward(g, x, **k),
                 lambda **k: fastact.celu.backward_from_output(g, x, **k)):
        with pytest.raises(ValueError, match="alpha"):
            call(alpha=0.0)
    for beta in (0.0, -1.0, -0.0):
        with pytest.raises(ValueError, match="beta"):
            fastact.softplus(x, beta=beta)
        with pytest.raises(ValueError, match="beta"):
            fastact.softplus.backward(g, x, beta=beta)
        with pytest.raises(ValueError, match="beta"):
            fastact.softplus.backward_from_output(g, x, beta=beta)
    with pytest.raises(ValueError, match="min_val"):
        fastact.hardtanh(x, min_val=1.0, max_val=-1.0)
    with pytest.raises(ValueError, match="min_val"):
        fastact.hardtanh.backward(g, x, min_val=0.5, max_val=0.25)
    with pytest.raises(ValueError, match="min_val"):
        fastact.hardtanh.backward_from_output(g, x, min_val=0.5, max_val=0.25)
    with pytest.raises(ValueError, match="negative_slope"):
        fastact.leaky_relu.backward_from_output(g, x, negative_slope=-0.1)
    with pytest.raises(ValueError, match="alpha"):
        fastact.elu.backward_from_output(g, x, alpha=-0.5)
    with pytest.raises(ValueError, match="alpha"):
        fastact.celu.backward_from_output(g, x, alpha=-0.5)
    # the same values are fine where they are well defined
    np.testing.assert_array_equal(fastact.hardtanh(x, min_val=0.25, max_val=0.25), [0.25, 0.25])
    np.testing.assert_array_equal(fastact.leaky_relu(x, negative_slope=-0.1), [0.1, 0.5])
    np.testing.assert_array_equal(fastact.leaky_relu.backward(g, x, negative_slope=-0.1), [-0.1, 1.0])
    assert np.all(np.isfinite(fastact.elu.backward(g, x, alpha=-0.5)))
    assert np.all(np.isfinite(fastact.celu(x, alpha=-0.5)))


# ----------------------------------------------------------------- out/where


def _calls(name, dt=np.float64):
    """(label, args, public method) for every kind of ``name``."""
    f, e = fn(name), CATALOG[name]
    x = XS.astype(dt)
    g = np.linspace(-2.0, 2.0, len(x)).astype(dt)
    out = [("forward", (x,), f), ("backward", (g, x), f.backward)]
    if e.grad_y is not None:
        out.append(("backward_from_output", (g, f(x)), f.backward_from_output))
    return out


@pytest.mark.parametrize("dt", [np.float16, np.float32, np.float64], ids=["f16", "f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_out_argument(name, dt):
    for label, args, call in _calls(name, dt):
        with np.errstate(over="ignore"):
            ref = call(*args)
            out = np.full_like(ref, 7.0)
            r = call(*args, out=out)
        assert r is out, label
        assert_same(out, ref)


@pytest.mark.parametrize("name", NAMES)
def test_out_aliases_input(name):
    for label, args, call in _calls(name):
        ref = call(*args)
        for i in range(len(args)):  # out is x, or out is grad
            a = [np.array(v, copy=True) for v in args]
            r = call(*a, out=a[i])
            assert r is a[i], label
            assert_same(a[i], ref)


@pytest.mark.parametrize("name", NAMES)
def test_out_float32_from_float64(name):
    for label, args, call in _calls(name):
        ref = call(*args)
        out = np.zeros(ref.shape, dtype=np.float32)
        with np.errstate(over="ignore"):
            r = call(*args, out=out)
            expected = ref.astype(np.float32)
        assert r is out, label
        assert_same(out, expected)


@pytest.mark.parametrize("name", NAMES)
def test_where_keeps_out(name):
    for label, args, call in _calls(name):
        ref = call(*args)
        mask = np.arange(len(ref)) % 3 != 1
        out = np.full_like(ref, -123.25)
        r = call(*args, out=out, where=mask)
        assert r is out, label
        assert_same(out[mask], ref[mask])
        assert np.all(out[~mask] == -123.25), label
        # a where that broadcasts against 2-D inputs
        args2 = tuple(np.stack([a, a[::-1]]) for a in args)
        ref2 = call(*args2)
        out2 = np.full_like(ref2, 5.5)
        r2 = call(*args2, out=out2, where=mask)
        assert r2 is out2
        assert_same(out2[:, mask], ref2[:, mask])
        assert np.all(out2[:, ~mask] == 5.5)
        # where without out: the selected positions are computed
        r3 = call(*args, where=mask)
        assert r3.shape == ref.shape and r3.dtype == ref.dtype
        assert_same(r3[mask], ref[mask])
        # where=True/all-True is the plain call
        assert_same(call(*args, where=np.ones(len(ref), bool)), ref)


def test_where_float16_out():
    x = np.linspace(-4, 4, 9).astype(np.float16)
    out = np.full_like(x, 9.0)
    mask = x > 0
    r = fastact.sigmoid(x, out=out, where=mask)
    assert r is out
    assert_same(out[mask], fastact.sigmoid(x)[mask])
    assert np.all(out[~mask] == 9.0)


# -------------------------------------------------------------------- layouts


def _layouts(base2d):
    """(label, array) views of ``base2d`` (shape (6, 9)) in awkward memory layouts."""
    flat = base2d.ravel()
    return [
        ("strided", flat[::3]),
        ("negative", flat[::-1]),
        ("negative-strided", flat[-2::-4]),
        ("fortran", np.asfortranarray(base2d)),
        ("transpose", base2d.T),
        ("column-slice", base2d[:, ::2]),
        ("row-slice-T", base2d[1::2].T),
        ("3d-swapped", base2d.reshape(3, 2, 9).swapaxes(0, 2)),
        ("empty", flat[:0]),
        ("empty-2d", np.empty((3, 0), dtype=base2d.dtype)),
        ("empty-2d-T", np.empty((0, 4), dtype=base2d.dtype).T),
        ("0-d", np.array(base2d[1, 2])),
        ("broadcast", np.broadcast_to(flat[:9], (4, 9))),
    ]


@pytest.mark.parametrize("dt", FLOATS, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_layouts(name, dt):
    f, e = fn(name), CATALOG[name]
    base = np.linspace(-7.0, 7.0, 54).reshape(6, 9).astype(dt)
    gbase = np.cos(np.arange(54.0)).reshape(6, 9).astype(dt)
    for (label, x), (_, g) in zip(_layouts(base), _layouts(gbase)):
        xc, gc = np.array(x, order="C"), np.array(g, order="C")
        y = f(x)
        assert_same(y, f(xc))
        assert np.shape(y) == x.shape, label
        assert_same(f.backward(g, x), f.backward(gc, xc))
        assert_same(f.backward(gc, x), f.backward(gc, xc))
        assert_same(f.backward(g, xc), f.backward(gc, xc))
        if e.grad_y is not None:
            assert_same(f.backward_from_output(g, x), f.backward_from_output(gc, xc))
        # out in a non-contiguous layout too
        if x.ndim:
            out = np.zeros(x.shape[::-1], dtype=dt).T
            r = f(x, out=out)
            assert r is out
            assert_same(out, f(xc))


# ------------------------------------------------------------- backward rules


@pytest.mark.parametrize("dt", FLOATS, ids=["float32", "float64"])
@pytest.mark.parametrize("name, kw", cases())
def test_backward_is_grad_times_derivative(name, kw, dt):
    f, e = fn(name), CATALOG[name]
    x = XS.astype(dt)
    rng = np.random.default_rng(0)
    g = (rng.standard_normal(len(x)) * 10.0 ** rng.integers(-3, 4, len(x))).astype(dt)
    d = f.backward(np.ones_like(x), x, **kw)
    # where f'(x) itself is subnormal it has lost relative precision, and
    # g * f' rounded twice can be far from g * f' rounded once
    keep = (np.abs(d) >= np.finfo(dt).tiny) | (d == 0)
    assert keep.sum() > len(x) // 2
    x, g, d = x[keep], g[keep], d[keep]
    assert max_ulp_distance(f.backward(g, x, **kw), g * d) <= 1
    if y_ok(e, list(kw.values())):
        y = f(x, **kw)
        dy = f.backward_from_output(np.ones_like(y), y, **kw)
        keep = (np.abs(dy) >= np.finfo(dt).tiny) | (dy == 0)
        assert max_ulp_distance(f.backward_from_output(g[keep], y[keep], **kw), g[keep] * dy[keep]) <= 1


@pytest.mark.parametrize("name", NAMES)
def test_backward_broadcasts_grad(name):
    f, e = fn(name), CATALOG[name]
    x = np.linspace(-5.0, 5.0, 24).reshape(4, 6)
    g = np.array([1.0, -2.0, 0.5, 3.0, 0.0, -1.0])
    r = f.backward(g, x)
    assert r.shape == (4, 6)
    assert_same(r, f.backward(np.broadcast_to(g, x.shape).copy(), x))
    # and the other way round: one x row against many grads
    r = f.backward(x, g)
    assert_same(r, f.backward(x, np.broadcast_to(g, x.shape).copy()))
    # scalar grad
    assert_same(f.backward(2.0, x), f.backward(np.full(x.shape, 2.0), x))
    if e.grad_y is not None:
        y = f(x)
        assert_same(f.backward_from_output(g, y), f.backward_from_output(np.broadcast_to(g, x.shape).copy(), y))


# ------------------------------------------------------------- special values


@pytest.mark.parametrize("dt", FLOATS, ids=["float32", "float64"])
@pytest.mark.parametrize("name, kw", cases())
def test_nan_propagates_without_warnings(name, kw, dt):
    f, e = fn(name), CATALOG[name]
    nan = np.array([np.nan, -np.nan, np.nan], dtype=dt)
    x = np.array([np.nan, 1.0, -1.0], dtype=dt)
    g = np.array([1.0, np.nan, np.nan], dtype=dt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.all(np.isnan(f(nan, **kw)))
        assert np.isnan(f(dt(np.nan), **kw))
        assert np.all(np.isnan(f.backward(np.ones_like(nan), nan, **kw)))
        assert np.all(np.isnan(f.backward(g, x, **kw)))
        # NaN grad where the derivative is 0 (saturated) is still NaN
        far = np.array([-1e4, 1e4, 0.0], dtype=dt)
        assert np.all(np.isnan(f.backward(np.full(3, np.nan, dtype=dt), far, **kw)))
        assert np.all(np.isnan(f(nan, out=np.zeros_like(nan), where=np.ones(3, bool), **kw)))
        if y_ok(e, list(kw.values())):
            assert np.all(np.isnan(f.backward_from_output(np.ones_like(nan), nan, **kw)))
            assert np.all(np.isnan(f.backward_from_output(g, x, **kw)))


@pytest.mark.parametrize("name", NAMES)
def test_no_spurious_overflow_warnings(name):
    """Huge finite inputs whose results are finite must not warn (NumPy reports the
    floating-point flags a kernel leaves behind, also those of discarded branches)."""
    f, e = fn(name), CATALOG[name]
    calls = []
    for dt, big in ((np.float64, [1e308, -1e308, 1e300, -1e300]),
                    (np.float32, [3e38, -3e38, 1e38, -1e38])):
        x = np.array(big * 4, dtype=dt)  # long enough for the vectorized loop
        g = np.array([2.0, -3.0, 0.5, 1.0] * 4, dtype=dt)
        calls += [(f"{dt.__name__} forward", lambda x=x: f(x)),
                  (f"{dt.__name__} backward", lambda g=g, x=x: f.backward(g, x))]
        if e.grad_y is not None:
            with np.errstate(all="ignore"):
                y = f(x)
            y = np.where(np.isfinite(y), y, 0).astype(dt)
            calls.append((f"{dt.__name__} backward_from_output",
                          lambda g=g, y=y: f.backward_from_output(g, y)))
    bad = []
    for label, call in calls:
        with np.errstate(all="ignore"):
            r = call()
        if not np.all(np.isfinite(r)):
            continue  # a genuine overflow may warn, like NumPy's own ufuncs
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                call()
            except (RuntimeWarning, FloatingPointError) as w:
                bad.append(f"{label}: {w}")
    assert not bad, bad


@pytest.mark.parametrize("dt", FLOATS, ids=["float32", "float64"])
@pytest.mark.parametrize("name, kw", cases())
def test_infinity_limits(name, kw, dt):
    f, e = fn(name), CATALOG[name]
    lo, hi, dlo, dhi = (dt(v) for v in e.limits(*kw.values()))
    x = np.array([-np.inf, np.inf], dtype=dt)
    y = f(x, **kw)
    d = f.backward(np.ones_like(x), x, **kw)
    assert_signed_equal(y, np.array([lo, hi]), "f(-+inf)")
    assert_signed_equal(d, np.array([dlo, dhi]), "f'(-+inf)")
    # the scalar path agrees
    assert_signed_equal(f(dt(-np.inf), **kw), lo, "scalar f(-inf)")
    assert_signed_equal(f(dt(np.inf), **kw), hi, "scalar f(+inf)")
    assert_signed_equal(f.backward(dt(1), dt(-np.inf), **kw), dlo, "scalar f'(-inf)")
    assert_signed_equal(f.backward(dt(1), dt(np.inf), **kw), dhi, "scalar f'(+inf)")


@pytest.mark.parametrize("name, kw", cases())
def test_zero_limits_have_the_sign_of_the_reference(name, kw):
    """The catalog's zero limits carry the sign of f (f') far out, by mpmath."""
    e = CATALOG[name]
    vals = list(kw.values())
    lims = e.limits(*vals)
    for lim, fn_, x in ((lims[0], e.ref, -1e4), (lims[1], e.ref, 1e4),
                        (lims[2], e.ref_grad, -1e4), (lims[3], e.ref_grad, 1e4)):
        if lim == 0:
            assert_signed_equal(np.float64(lim), ref_at(fn_, x, vals, np.float64) * 0.0, f"limit at {x}")


def _zero_ref(e, fn_, sign, vals, dt, kink_at_zero):
    """The reference at x = sign*0: at +-TINY, or at -TINY for a derivative
    whose value at 0 is the left one by convention."""
    return ref_at(fn_, "-" + TINY if kink_at_zero or sign < 0 else TINY, vals, dt)


@pytest.mark.parametrize("dt", FLOATS, ids=["float32", "float64"])
@pytest.mark.parametrize("name, kw", cases())
def test_signed_zeros(name, kw, dt):
    f, e = fn(name), CATALOG[name]
    vals = list(kw.values())
    kink = name in KINK_AT_ZERO
    z = np.array([0.0, -0.0], dtype=dt)
    ys = [_zero_ref(e, e.ref, s, vals, dt, False) for s in (1, -1)]
    ds = [_zero_ref(e, e.ref_grad, s, vals, dt, kink) for s in (1, -1)]
    assert_signed_close(f(z, **kw), np.array(ys), "f(+0), f(-0)")
    assert_signed_close(f.backward(np.ones_like(z), z, **kw), np.array(ds), "f'(+0), f'(-0)")
    for i, v in enumerate(z):  # the scalar path agrees
        assert_signed_close(f(v, **kw), ys[i], f"scalar f({v})")
    # a zero grad: the IEEE product g * f'(x), whose sign is sign(g) * sign(f'(x))
    # (f' < 0 at x = -2 for silu, mish, gelu; an exact 0 for relu)
    x = np.array([1.0, -2.0, -np.inf, np.inf], dtype=dt)
    lims = e.limits(*vals)
    dref = np.array([ref_at(e.ref_grad, 1.0, vals, dt), ref_at(e.ref_grad, -2.0, vals, dt),
                     dt(lims[2]), dt(lims[3])])
    for g0 in (0.0, -0.0):
        g = np.full(len(x), g0, dtype=dt)
        assert_signed_close(f.backward(g, x, **kw), g * dref, f"backward(g={g0})")
    if y_ok(e, vals):
        dys = [_zero_ref(e, e.ref_grad_y, s, vals, dt, kink) for s in (1, -1)]
        assert_signed_close(f.backward_from_output(np.ones_like(z), z, **kw), np.array(dys),
                            "backward_from_output at y = +0, -0")


def test_signed_zero_check_flags_a_broken_kernel(monkeypatch):
    """A tanh whose -0 comes back as +0 (what a sum of -0 and +0 gives) fails."""
    f = fastact.tanh
    x = np.array([0.0, -0.0])
    expected = np.array([ref_at(CATALOG["tanh"].ref, s + TINY, [], np.float64) for s in ("", "-")])
    assert_signed_equal(f(x), expected)
    with pytest.raises(AssertionError):
        assert_signed_equal(np.abs(f(x)), expected)


# ---------------------------------------------------------------------- kinks


SELU_SCALE_ALPHA = 1.0507009873554805 * 1.6732632423543772

KINKS = [
    ("relu", {}, 0.0, 0.0),
    ("leaky_relu", {}, 0.0, 0.01),
    ("leaky_relu", {"negative_slope": 0.2}, 0.0, 0.2),
    ("elu", {}, 0.0, 1.0),
    ("elu", {"alpha": 0.7}, 0.0, 0.7),
    ("elu", {"alpha": 2.5}, 0.0, 2.5),
    ("celu", {}, 0.0, 1.0),
    ("celu", {"alpha": 0.7}, 0.0, 1.0),
    ("celu", {"alpha": 2.5}, 0.0, 1.0),
    ("hardswish", {}, -3.0, 0.0),
    ("hardswish", {}, 3.0, 1.0),
    ("hardsigmoid", {}, -3.0, 0.0),
    ("hardsigmoid", {}, 3.0, 0.0),
    ("relu6", {}, 0.0, 0.0),
    ("relu6", {}, 6.0, 0.0),
    ("hardtanh", {}, -1.0, 0.0),
    ("hardtanh", {}, 1.0, 0.0),
    ("hardtanh", {"min_val": -2.0, "max_val": 0.5}, -2.0, 0.0),
    ("hardtanh", {"min_val": -2.0, "max_val": 0.5}, 0.5, 0.0),
]


@pytest.mark.parametrize("dt", FLOATS, ids=["float32", "float64"])
@pytest.mark.parametrize("name, kw, x0, expected", KINKS,
                         ids=[f"{n}-{x0}-{kw}" for n, kw, x0, _ in KINKS])
def test_kink_conventions(name, kw, x0, expected, dt):
    f, e = fn(name), CATALOG[name]
    x = np.array([x0], dtype=dt)
    assert_signed_equal(f.backward(np.ones_like(x), x, **kw)[0], dt(expected))
    if e.grad_y is not None:
        # the gradient from the output agrees with the gradient from the input at the kink
        y = f(x, **kw)
        assert_signed_equal(f.backward_from_output(np.ones_like(y), y, **kw)[0], dt(expected))


def test_selu_kink():
    assert fastact.selu.backward(1.0, 0.0) == pytest.approx(SELU_SCALE_ALPHA, rel=1e-15)
    assert fastact.selu.backward(1.0, -0.0) == pytest.approx(SELU_SCALE_ALPHA, rel=1e-15)
    assert fastact.selu.backward_from_output(1.0, 0.0) == pytest.approx(SELU_SCALE_ALPHA, rel=1e-15)
    assert fastact.selu.backward(np.float32(1), np.float32(0)) == np.float32(SELU_SCALE_ALPHA)


# ------------------------------------------------------------------ stability


def test_stability_facts():
    s = fastact.sigmoid(np.array([-100.0], dtype=np.float32))[0]
    assert s.dtype == np.float32
    assert 0 < s < np.finfo(np.float32).tiny  # a nonzero subnormal
    assert s == np.float32(3.7835e-44)
    assert fastact.sigmoid(np.float32(-100.0)) == s
    assert fastact.softplus(1000.0) == 1000.0
    assert fastact.softplus(np.float32(1000.0)) == np.float32(1000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # negative functions for x < 0: their zero at -inf is -0
        for f in (fastact.silu, fastact.mish, fastact.gelu, fastact.gelu_tanh):
            assert_signed_equal(f(-np.inf), np.float64(-0.0), f.__name__)
        assert fastact.softsign(np.inf) == 1
        assert fastact.softsign(-np.inf) == -1
    d = fastact.sigmoid.backward(1, 30.0)
    assert d > 0
    assert d == pytest.approx(np.exp(-30.0), rel=1e-14)
    assert fastact.sigmoid.backward(1.0, -30.0) == d
    g = fastact.gelu(-10.0)
    assert g != 0
    assert g == pytest.approx(-7.6198530241605e-23, rel=1e-13)


# ---------------------------------------------------------------- docstrings


@pytest.mark.parametrize("name", NAMES)
def test_docstring(name):
    f, e = fn(name), CATALOG[name]
    doc = f.__doc__
    assert e.formula in doc
    for word in ("Gradient", "Limits", "Stability", "Examples"):
        assert word in doc, word
    for p in e.params:
        assert p.name in doc
    parser = doctest.DocTestParser()
    test = parser.get_doctest(doc, {}, f"fastact.{name}", None, 0)
    assert test.examples, "no examples"
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)
    assert result.attempted >= 3


# ------------------------------------------------- outputs of another dtype
# (fastact.functions.elementwise._cast_blocks: results computed in blocks of
# the compute dtype and cast into out block by block)


def _cast_bits(a):
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize])


@pytest.mark.parametrize("n", [1, 5, (1 << 14) - 1, (1 << 14) + 1, 3 * (1 << 14) + 7])
@pytest.mark.parametrize("name", ["sigmoid", "gelu", "elu", "relu"])
def test_cast_output_blocks_equal_casting_the_whole_result(name, n):
    f = fn(name)
    x = np.linspace(-12, 12, n)
    x[::7] = np.nan
    x16, x32 = x.astype(np.float16), x.astype(np.float16).astype(np.float32)
    g16 = np.cos(np.arange(n) * 0.3).astype(np.float16)
    g32 = g16.astype(np.float32)
    # float16 in: float16 results of the float32 loop
    np.testing.assert_array_equal(_cast_bits(f(x16)), _cast_bits(f(x32).astype(np.float16)))
    o = np.full(n, 7, np.float16)
    assert f(x16, out=o) is o
    np.testing.assert_array_equal(_cast_bits(o), _cast_bits(f(x32).astype(np.float16)))
    np.testing.assert_array_equal(
        _cast_bits(f.backward(g16, x16)), _cast_bits(f.backward(g32, x32).astype(np.float16))
    )
    # float32 in, float64 out; float64 in, float32 out (overflow to inf is the result)
    o64 = np.empty(n)
    f(x32, out=o64)
    np.testing.assert_array_equal(_cast_bits(o64), _cast_bits(f(x32).astype(np.float64)))
    xl = x * 1e38
    o32 = np.empty(n, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f(xl, out=o32)
        with np.errstate(over="ignore", invalid="ignore"):
            want = f(xl).astype(np.float32)
    np.testing.assert_array_equal(_cast_bits(o32), _cast_bits(want))


def test_cast_output_strided_broadcast_and_in_chunks():
    from fastact.cpu import threads

    x = np.linspace(-6, 6, 3 * threads.MIN_PARALLEL_ELEMENTS + 3).astype(np.float16)
    want = fastact.sigmoid(x.astype(np.float32)).astype(np.float16)
    old = threads._num_threads
    threads.set_num_threads(2)
    try:  # chunks on threads, each in blocks
        got = fastact.sigmoid(x)
        base = np.zeros(2 * x.size, np.float16)
        fastact.sigmoid(x, out=base[::2])  # a strided out
    finally:
        threads.set_num_threads(old)
    np.testing.assert_array_equal(_cast_bits(got), _cast_bits(want))
    np.testing.assert_array_equal(_cast_bits(base[::2]), _cast_bits(want))
    assert not base[1::2].any()
    # broadcast operands into a float16 out
    g = np.linspace(-1, 1, 40, dtype=np.float32).reshape(40, 1)
    xb = np.linspace(-3, 3, 700, dtype=np.float32)
    o = np.empty((40, 700), np.float16)
    fastact.gelu.backward(g, xb, out=o)
    np.testing.assert_array_equal(_cast_bits(o), _cast_bits(fastact.gelu.backward(g, xb).astype(np.float16)))


# ----------------------------------------------------------- maxout blocks


def _maxout_backward_reference(grad, x, k, axis):
    xm = np.moveaxis(x, axis, -1)
    gm = np.moveaxis(grad, axis, -1)
    dx = np.zeros(xm.shape, np.result_type(grad, x))
    for pos in np.ndindex(gm.shape):
        group = xm[pos[:-1]][pos[-1] * k : (pos[-1] + 1) * k]
        nan = np.flatnonzero(np.isnan(group))
        j = nan[0] if nan.size else int(np.flatnonzero(group == group.max())[0])
        dx[pos[:-1] + (pos[-1] * k + j,)] = gm[pos]
    return np.moveaxis(dx, -1, axis)


@pytest.mark.parametrize("groups", [3, 1 << 12])
@pytest.mark.parametrize("axis,k", [(-1, 2), (-1, 3), (0, 2), (1, 4)])
def test_maxout_in_blocks(monkeypatch, groups, axis, k):
    from fastact.functions import maxout as mod

    monkeypatch.setattr(mod, "BACKWARD_GROUPS", groups)
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, (4, 12, 12)).astype(np.float32)  # ties
    x[0, 0, :5] = np.nan
    y = fastact.maxout(x, k, axis=axis)
    o = np.full(y.shape, 7.0, np.float32)
    assert fastact.maxout(x, k, axis=axis, out=o) is o
    np.testing.assert_array_equal(o, y)
    g = rng.standard_normal(y.shape)
    for xx in (x, x[:, ::-1, :]):
        np.testing.assert_array_equal(
            fastact.maxout.backward(g, xx, k, axis=axis), _maxout_backward_reference(g, xx, k, axis)
        )
