"""Property-based tests (hypothesis) of every catalog entry.

* the gradient agrees with a high-precision finite difference of the catalog's
  mpmath forward reference (so ``grad``/``ref_grad`` are consistent with ``ref``);
* ``backward_from_output(g, f(x)) == backward(g, x)`` where y determines x;
* the float32 kernels are within 1 ulp of the float64 kernels rounded to float32;
* the monotone activations are monotone in floating point.
"""

from __future__ import annotations


import mpmath as mp
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import fastact
from fastact.devtools.accuracy import BOUNDS, ROOT_ABS_FACTOR, ROOT_ABS_WINDOW, ulp_error

from fastact.catalog import CATALOG, ENTRIES

NAMES = [e.name for e in ENTRIES]
Y_NAMES = [e.name for e in ENTRIES if e.grad_y is not None]


def param_cases(names=NAMES):
    """(name, parameter values) for the defaults and the catalog's test values."""
    out = []
    for name in names:
        e = CATALOG[name]
        out.append(pytest.param(name, e.defaults, id=f"{name}-default"))
        if e.params:
            out.append(pytest.param(name, tuple(p.test_value for p in e.params), id=f"{name}-test"))
    return out


def kwargs(name, vals):
    return dict(zip(CATALOG[name].param_names, vals))


# -------------------------------------------------- gradient vs finite difference

KINK_POINTS = (0.0, -3.0, 3.0, 6.0)  # relu family, hard sigmoid/swish, relu6
KINK_SKIP = 1e-6


def near_kink(entry, x, vals):
    if not entry.kinks:
        return False
    # parameter values are kinks too (hardtanh's min_val / max_val)
    return any(abs(x - k) < KINK_SKIP for k in KINK_POINTS + tuple(vals))


# The kernel's float64 contract, in ulps of the exact derivative: relative down
# to the smallest normal, then in subnormal ulps, so a derivative of 1e-304
# (sigmoid' at -700) is held as tightly as one of 0.25; a 0 where the exact
# value is representable is off by ~2**52 ulps. Next to a derivative's zero the
# catalog's absolute bound applies (relative accuracy is not defined there).
FD_BOUND = BOUNDS[("backward", "float64")]
# mp.diff at 60 digits is exact to far below a float64 ulp, given the extra bits
# below: f(x + h) - f(x - h) cancels log2|f / f'| bits where f saturates to a
# constant, up to 2.9 |x| (tanh: 1 - tanh(x) ~ 2 exp(-2|x|); celu at alpha =
# 0.7: 2.1 |x|)
FD_DPS = 60


def _fd_addprec(x):
    return 10 + 3 * int(abs(x))


def assert_matches_finite_difference(entry, vals, x, got):
    """``got`` (a float64 f'(x)) within the catalog's bound of the numerical
    derivative of the mpmath forward reference at ``x``."""
    with mp.workdps(FD_DPS):
        exact = mp.diff(lambda t: entry.ref(mp, t, *[mp.mpf(v) for v in vals]), mp.mpf(x),
                        addprec=_fd_addprec(x))
        if entry.grad_root is not None and abs(x - entry.grad_root) <= ROOT_ABS_WINDOW:
            tol = ROOT_ABS_FACTOR * float(np.finfo(np.float64).eps) * max(1.0, abs(x))
            assert abs(mp.mpf(float(got)) - exact) <= tol, (x, got, float(exact))
        else:
            err = ulp_error(mp, np.float64(got), exact, np.float64)
            assert err <= FD_BOUND, (x, got, float(exact), f"{err:.3g} ulp")


# beyond +-50 the derivatives of the smooth entries are tiny but representable
# down to about -745 (sigmoid' at -700 is 1e-304), and tanh' to |x| = 372
FD_X = st.one_of(st.floats(-50.0, 50.0, allow_nan=False), st.floats(-800.0, 800.0, allow_nan=False))


@pytest.mark.parametrize("name, vals", param_cases())
@settings(max_examples=40, deadline=None)
@given(x=FD_X)
@example(x=-1.2785)
@example(x=0.5)
@example(x=-37.5)
@example(x=-700.0)  # sigmoid', softplus' ~ 1e-304
@example(x=-740.0)  # subnormal derivatives
@example(x=354.0)  # tanh' ~ 1e-307
def test_backward_matches_finite_difference_of_reference(name, vals, x):
    e = CATALOG[name]
    if near_kink(e, x, vals):
        return
    got = fastact.ACTIVATIONS[name].backward(1.0, x, **kwargs(name, vals))
    assert_matches_finite_difference(e, vals, x, got)


def test_finite_difference_check_flags_a_vanishing_tail():
    """A sigmoid' that returns 0 beyond |x| = 20, the tail the former absolute
    tolerance (1e-12) let through, or that is 1% off there, fails."""
    e = CATALOG["sigmoid"]
    for x in (-30.0, 27.6, -700.0):
        good = fastact.sigmoid.backward(1.0, x)
        assert_matches_finite_difference(e, (), x, good)
        for broken in (0.0, good * 1.01):
            with pytest.raises(AssertionError):
                assert_matches_finite_difference(e, (), x, broken)


# ------------------------------------------------- backward_from_output vs backward

# Where y = f(x) saturates, its rounding decides the gradient from y (the catalog's
# grad_y_note): the relative error of backward_from_output grows like eps / f'(x).
# These ranges keep that error below 1e-12 (float64, default parameters); None is
# "unbounded" (y determines x exactly: piecewise-linear entries, or y = x for x > 0).
BFO_RANGES = {
    "identity": (None, None),
    "relu": (None, None),
    "relu6": (None, None),
    "leaky_relu": (None, None),
    "hardtanh": (None, None),
    "sigmoid": (-700.0, 7.0),  # 1 - y = exp(-x) loses digits for x > 7
    "tanh": (-4.0, 4.0),  # 1 - |y| = 2 exp(-2|x|)
    "elu": (-7.5, None),  # y + alpha = alpha exp(x)
    "celu": (-7.5, None),
    "selu": (-7.0, None),
    "softplus": (-700.0, None),  # below, y (~ exp(x)) approaches the subnormals
}
DEFAULT_BFO_RANGE = (-3.0, 3.0)  # a new entry that is not listed above


def test_bfo_ranges_cover_catalog():
    assert set(BFO_RANGES) <= set(Y_NAMES)


@pytest.mark.parametrize("name", Y_NAMES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_backward_from_output_matches_backward(name, data):
    f = fastact.ACTIVATIONS[name]
    lo, hi = BFO_RANGES.get(name, DEFAULT_BFO_RANGE)
    xs = data.draw(st.lists(st.floats(lo, hi, allow_nan=False, allow_infinity=False),
                            min_size=1, max_size=20), label="x")
    gs = data.draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=len(xs),
                            max_size=len(xs)), label="grad")
    x, g = np.array(xs), np.array(gs)
    # over="ignore": selu(x) genuinely overflows for x > 1.71e308; the spurious
    # overflow flags of some vectorized kernels have their own test in test_api.py
    with np.errstate(over="ignore"):
        y = f(x)
        got = f.backward_from_output(g, y)
        expected = f.backward(g, x)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


# ------------------------------------------------------------ float32 vs float64

F32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
F32_EXTREMES = [0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, -1.1754942e-38, 1e-40, -3e-39,
                3.4028235e38, -3.4028235e38, 88.72284, -87.33654, 103.97208, -103.27893,
                16.6, -17.3, 6.0, -3.0, 3.0, 0.55, -1.2784645, -0.75179154]


def _ordered(a):
    it = np.int32 if a.dtype == np.float32 else np.int64
    i = a.view(it)
    mag = i & np.array(np.iinfo(it).max, dtype=it)
    return np.where(i < 0, -mag, mag)


def _check_within(got32, ref64, bound, x, *inputs, root=None):
    """float32 results within ``bound`` float32 ulps of the float64 kernel's
    (the catalog's float32 contract; the float64 kernel stands in for the
    exact value), or within the absolute bound next to a derivative's zero."""
    from fastact.devtools.accuracy import ROOT_ABS_FACTOR, ROOT_ABS_WINDOW, ulps_f32

    assert got32.dtype == np.float32
    err = ulps_f32(got32, ref64)
    if root is not None:
        near = np.abs(x.astype(np.float64) - root) <= ROOT_ABS_WINDOW
        tol = ROOT_ABS_FACTOR * float(np.finfo(np.float32).eps) * np.maximum(1.0, np.abs(x.astype(np.float64)))
        err = np.where(near & (np.abs(got32 - ref64) <= tol), 0.0, err)
    bad = np.nonzero(err > bound)[0]
    assert not len(bad), [(tuple(a[i] for a in (x, *inputs)), got32[i], ref64[i], err[i]) for i in bad[:5]]


@pytest.mark.parametrize("name, vals", param_cases())
@settings(max_examples=30, deadline=None)
@given(xs=st.lists(F32, min_size=1, max_size=64))
@example(xs=F32_EXTREMES)
# found by hypothesis: float32 softplus at beta=0.7 was 2 ulp off here
@example(xs=[0.00833332, -3.5078986, 1.0179472, -4.868439, -1.4150999])
def test_float32_within_its_bounds_of_float64(name, vals, xs):
    f, e = fastact.ACTIVATIONS[name], CATALOG[name]
    kw = kwargs(name, vals)
    x32 = np.array(xs, dtype=np.float32)
    x64 = x32.astype(np.float64)
    # the float32 kernels see float32 parameters
    kw64 = {k: float(np.float32(v)) for k, v in kw.items()}
    g32 = np.cos(np.arange(len(xs)) * 1.7).astype(np.float32) * np.float32(3.0)
    g64 = g32.astype(np.float64)
    with np.errstate(over="ignore"):  # a float32 result overflowing to inf, like NumPy
        y32 = f(x32, **kw)
        d32 = f.backward(np.ones_like(x32), x32, **kw)
        b32 = f.backward(g32, x32, **kw)
    fwd, bwd = BOUNDS[("forward", "float32")], BOUNDS[("backward", "float32")]
    _check_within(y32, f(x64, **kw64), fwd, x32)
    _check_within(d32, f.backward(np.ones_like(x64), x64, **kw64), bwd, x32, root=e.grad_root)
    # grad * f'(x): one more rounding
    _check_within(b32, f.backward(g64, x64, **kw64), bwd + 1.0, x32, g32, root=e.grad_root)
    if e.grad_y is not None and not (e.check_y and e.check_y(*vals)):
        y = y32[np.isfinite(y32)]
        with np.errstate(over="ignore"):
            by32 = f.backward_from_output(np.ones_like(y), y, **kw)
        ref_y = f.backward_from_output(np.ones(len(y)), y.astype(np.float64), **kw64)
        _check_within(by32, ref_y, BOUNDS[("backward_y", "float32")], y)


# -------------------------------------------------------------------- monotone

MONOTONE = ["identity", "sigmoid", "tanh", "relu", "relu6", "leaky_relu", "elu", "selu", "celu",
            "softplus", "log_sigmoid", "softsign", "hardtanh", "hardsigmoid"]


def test_monotone_names_exist():
    assert set(MONOTONE) <= set(NAMES)


def _assert_non_decreasing(x, y):
    bad = np.nonzero(~(y[1:] >= y[:-1]))[0]
    assert not len(bad), [(x[i], x[i + 1], y[i], y[i + 1]) for i in bad[:5]]


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", MONOTONE)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_monotone_random(name, dt, data):
    width = 32 if dt is np.float32 else 64
    elems = st.one_of(st.floats(width=width, allow_nan=False),
                      st.floats(-40.0, 40.0, width=width))
    xs = data.draw(st.lists(elems, min_size=2, max_size=100))
    x = np.sort(np.array(xs, dtype=dt))
    with np.errstate(over="ignore"):
        y = fastact.ACTIVATIONS[name](x)
    _assert_non_decreasing(x, y)


def _consecutive(dt, centre, n):
    """2n + 1 consecutive floats of dtype ``dt`` around ``centre``."""
    c = dt(centre)
    up, dn = [c], [c]
    for _ in range(n):
        up.append(np.nextafter(up[-1], dt(np.inf)))
        dn.append(np.nextafter(dn[-1], dt(-np.inf)))
    return np.array(dn[::-1] + up[1:], dtype=dt)


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", MONOTONE)
def test_monotone_dense(name, dt):
    """A dense sweep plus runs of consecutive floats around every branch point."""
    parts = [np.linspace(-60.0, 60.0, 120001, dtype=dt)]
    centres = [0.0, 0.55, -0.55, 1.0, -1.0, 3.0, -3.0, 6.0, 16.6, -17.3, 20.0, -20.0,
               36.7, -37.4, 40.0, 87.33654, -87.33654, 88.72284, -103.97208, 700.0, -700.0,
               708.39642, -745.13321, 800.0, -800.0]
    centres += [s * v for v in (0.01, 0.05, 0.1, 0.2, 0.3, 0.45, 1.5, 2.5, 5.0, 10.0, 25.0)
                for s in (1.0, -1.0)]
    for c in centres:
        parts.append(_consecutive(dt, c, 300))
    parts.append(np.array([-np.inf, np.inf, np.finfo(dt).max, -np.finfo(dt).max], dtype=dt))
    x = np.unique(np.concatenate(parts))
    with np.errstate(over="ignore"):
        y = fastact.ACTIVATIONS[name](x)
    _assert_non_decreasing(x, y)
