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


# Caller error states the checks run under: every category raising, and a mix
# of all five actions.
CALLER_STATES = [dict(all="raise"), dict(divide="ignore", over="warn", under="raise", invalid="print")]
# hardswish's vectorized select also evaluates x * (x + 3) at 1e308 (overflow)
# and compares NaN (invalid) in lanes whose result is exact
FLAGGING_X = np.array([1e308, -1e308, np.nan, 3.0] * 4)


def _assert_quiet_and_state_kept(call):
    """``call()`` raises no FloatingPointError / RuntimeWarning under each caller
    state and leaves that state (np.geterr()) exactly as it was."""
    for state in CALLER_STATES:
        with np.errstate(**state):
            before = np.geterr()
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                try:
                    call()
                except (FloatingPointError, RuntimeWarning) as err:
                    raise AssertionError(f"under {state}: {err!r}") from err
            assert np.geterr() == before, (state, np.geterr())


def _fast_call():
    f = fastact.hardswish
    f(FLAGGING_X)  # the general path sets the fast path up
    assert np.dtype(np.float64) in f._fast
    return lambda: f(FLAGGING_X)


def test_fast_path_keeps_flags_quiet_and_callers_error_state():
    f = fastact.hardswish
    _assert_quiet_and_state_kept(_fast_call())
    y = f(FLAGGING_X)
    np.testing.assert_array_equal(y[:4], [1e308, 0.0, np.nan, 3.0])
    # the general path, the gradient and a gated unit too
    _assert_quiet_and_state_kept(lambda: f(FLAGGING_X, out=np.empty_like(FLAGGING_X)))
    _assert_quiet_and_state_kept(lambda: f.backward(np.ones_like(FLAGGING_X), FLAGGING_X))
    _assert_quiet_and_state_kept(lambda: fastact.swiglu(FLAGGING_X, np.ones_like(FLAGGING_X)))


def test_callers_error_state_restored_when_the_call_raises():
    from fastact.functions.args import quiet_call

    def raises(*args, **kwargs):
        raise ValueError("from inside the quiet error state")

    for state in CALLER_STATES:
        with np.errstate(**state):
            before = np.geterr()
            with pytest.raises(ValueError):  # a wrong out= shape
                fastact.hardswish(FLAGGING_X, out=np.empty(3))
            assert np.geterr() == before, state
            with pytest.raises(ValueError, match="quiet"):  # what the public calls wrap
                quiet_call(raises, FLAGGING_X)
            assert np.geterr() == before, state


def test_error_state_check_flags_a_broken_fast_path(monkeypatch):
    """The check above fails for a fast path that changes the caller's error
    state or lets a discarded lane's flag through."""
    _fast_call()
    fast = fastact.hardswish._fast

    def leaks_state(x):
        np.seterr(all="ignore")
        return x

    def flags(x):
        return x * 1e308  # overflows in the 1e308 lanes

    for broken in (leaks_state, flags):
        monkeypatch.setitem(fast, np.dtype(np.float64), broken)
        with np.errstate():  # leaks_state's seterr ends with this block
            with pytest.raises(AssertionError):
                _assert_quiet_and_state_kept(lambda: fastact.hardswish(FLAGGING_X))


def test_fast_path_not_used_for_other_calls():
    x = np.linspace(-3, 3, 11)
    fastact.elu(x)
    np.testing.assert_array_equal(fastact.elu(x, alpha=0.5), np.where(x > 0, x, 0.5 * np.expm1(x)))
    assert isinstance(fastact.sigmoid(np.float64(0.5)), np.float64)  # 0-d -> scalar
    assert fastact.sigmoid(np.array(0.5)).shape == ()
    h = fastact.sigmoid(np.ones(5, np.float16))
    assert h.dtype == np.float16
