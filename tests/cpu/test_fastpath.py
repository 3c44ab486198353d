"""The small-call fast path of the public functions (an array, default
parameters: straight to the compiled loop) behaves exactly like the general path."""

import warnings

import numpy as np
import pytest

import fastact
from fastact.catalog import ENTRIES


@pytest.mark.parametrize("name", [e.name for e in ENTRIES])
def test_fast_path_matches_general_path(name):
    f = fastact.ACTIVATIONS[name]
    rng = np.random.default_rng(3)
    for dt in (np.float32, np.float64):
        x = (rng.standard_normal(257) * 20).astype(dt)
        x[:4] = [np.nan, np.inf, -np.inf, -0.0]
        first = f(x)  # general path (sets the fast path up)
        assert np.dtype(dt) in f._fast
        second = f(x)  # fast path
        via_out = f(x, out=np.empty_like(x))  # general path again
        assert second.dtype == dt
        np.testing.assert_array_equal(first, second)
        np.testing.assert_array_equal(second, via_out)
        # strided and 2-D views take the fast path too
        np.testing.assert_array_equal(f(x[::-2]), via_out[::-2])
        np.testing.assert_array_equal(f(x[:256].reshape(16, 16).T), via_out[:256].reshape(16, 16).T)


def test_fast_path_keeps_flags_quiet_and_callers_error_state():
    x = np.array([1e308, -1e308, np.nan, 3.0])
    fastact.hardswish(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            y = fastact.hardswish(x)  # discarded-lane flags are not errors
    assert y[0] == 1e308 and y[1] == 0 and np.isnan(y[2]) and y[3] == 3.0
    # outside, the caller's error state is untouched
    with np.errstate(invalid="raise"):
        with pytest.raises(FloatingPointError):
            np.sqrt(np.array([-1.0]))


def test_fast_path_not_used_for_other_calls():
    x = np.linspace(-3, 3, 11)
    fastact.elu(x)
    np.testing.assert_array_equal(fastact.elu(x, alpha=0.5), np.where(x > 0, x, 0.5 * np.expm1(x)))
    assert isinstance(fastact.sigmoid(np.float64(0.5)), np.float64)  # 0-d -> scalar
    assert fastact.sigmoid(np.array(0.5)).shape == ()
    h = fastact.sigmoid(np.ones(5, np.float16))
    assert h.dtype == np.float16
