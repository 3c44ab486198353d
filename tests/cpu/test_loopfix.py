"""Strided and differently ordered ``out=`` arrays get every value in place
(fastact.cpu.loopfix: Numba's ufunc fast path ignores the output's stride), and
fastact's loops return with the FP exception flags cleared (x86-64)."""

import warnings

import numpy as np
import pytest

import fastact
from fastact.catalog import ENTRIES

KINDS = ("forward", "backward")


def _call(f, kind, x, kw, out):
    if kind == "forward":
        return f(x, out=out, **kw)
    return f.backward(np.cos(x).astype(x.dtype), x, out=out, **kw)


def _outs(shape, dtype):
    """(name, out view, its base) for outputs whose inner stride is not the
    inputs' when the inputs are C-contiguous."""
    n, m = shape
    b1 = np.full((n, 2 * m), 7.0, dtype)
    b2 = np.full((n, m), 7.0, dtype, order="F")
    b3 = np.full((n, m), 7.0, dtype)
    return [("every other column", b1[:, ::2], b1), ("Fortran order", b2, b2), ("reversed", b3[:, ::-1], b3)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_strided_out_gets_every_value(entry, kind, dtype):
    f = fastact.ACTIVATIONS[entry.name]
    x = np.linspace(-4, 4, 6 * 40, dtype=dtype).reshape(6, 40)
    # the defaults' loop, and a value set's own loop (built on its second call)
    value_sets = [{}] + ([{p.name: p.test_value for p in entry.params}] if entry.params else [])
    for kw in value_sets:
        with np.errstate(all="ignore"):
            want = _call(f, kind, x, kw, None)
            for _ in range(2):
                for name, out, base in _outs(x.shape, np.dtype(dtype)):
                    got = _call(f, kind, x, kw, out)
                    assert got is out
                    np.testing.assert_array_equal(out, want, err_msg=f"{entry.name} {kind} {kw} out: {name}")
                    if name == "every other column":  # nothing written between the columns
                        assert (base[:, 1::2] == 7.0).all(), f"{entry.name} {kind}: wrote outside out"


def test_fortran_inputs_into_c_out():
    x = np.asfortranarray(np.linspace(-3, 3, 48).reshape(6, 8))
    out = np.zeros((6, 8))
    fastact.sigmoid(x, out=out)
    np.testing.assert_array_equal(out, fastact.sigmoid(np.ascontiguousarray(x)))
    out = np.zeros((6, 8))
    fastact.sigmoid.backward(x, x, out=out)
    np.testing.assert_array_equal(out, fastact.sigmoid.backward(np.ascontiguousarray(x), np.ascontiguousarray(x)))


def test_the_raw_ufunc_honours_a_strided_out():
    uf = fastact.relu.ufunc
    x = np.arange(-3.0, 5.0)
    o = np.zeros(16)
    uf(x, out=o[::2])
    np.testing.assert_array_equal(o[::2], np.maximum(x, 0))
    assert not o[1::2].any()


def test_the_patch_is_scoped_to_fastact_builds():
    from numba.np.ufunc import wrappers

    from fastact.cpu.loopfix import fastact_loops

    before = wrappers.UArrayArg
    with fastact_loops():
        assert wrappers.UArrayArg is not before
    assert wrappers.UArrayArg is before


needs_clear = pytest.mark.skipif(
    not __import__("fastact.cpu.loopfix", fromlist=["x"]).CLEARS_FP_STATUS,
    reason="the loops clear the FP status on x86-64 only",
)


@needs_clear
def test_raw_ufuncs_leave_no_fp_flags():
    # each raises a flag in a lane it discards: hardswish's x*(x+3) overflows at
    # 1e308, NaN reaches ordered comparisons, sigmoid's exp(-x) overflows at -1000
    x = np.array([1e308, -1e308, np.nan, -1000.0, 3.0])
    x32 = np.array([3e38, -3e38, np.nan, -1000.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            for f in (fastact.hardswish, fastact.sigmoid, fastact.elu, fastact.relu):
                ps = [p.default for p in f._entry.params]
                f.ufunc(x, *ps)
                f.backward_ufunc(np.ones_like(x), x, *ps)
                f(x32)
                f(x32)  # the small-call fast path: no error state set


@needs_clear
def test_flags_a_loop_really_raises_are_what_is_cleared():
    # the same formula in a plain Numba ufunc (no loopfix) does raise: the
    # test above is not vacuous, and the patch does not leak to other builds
    import numba

    @numba.vectorize(["float64(float64)"])
    def hardswish_plain(x):
        return x * min(max(x + 3.0, 0.0), 6.0) / 6.0

    with np.errstate(over="raise"):
        with pytest.raises(FloatingPointError):
            hardswish_plain(np.array([1e308]))
        fastact.hardswish.ufunc(np.array([1e308]))


@needs_clear
def test_a_callers_own_flags_before_the_call_still_count():
    # NumPy clears the status before a ufunc's loop and reads it after: only
    # fastact's own loop's flags are cleared, np.sqrt(-1) in the same
    # errstate still raises
    with np.errstate(invalid="raise"):
        fastact.relu(np.array([np.nan, 1.0]))
        with pytest.raises(FloatingPointError):
            np.sqrt(np.array([-1.0]))
