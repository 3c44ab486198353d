"""Strided and differently ordered ``out=`` arrays get every value in place
(fastact.cpu.loopfix: Numba's ufunc fast path ignores the output's stride)."""

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

    from fastact.cpu.loopfix import built_with_strided_out

    before = wrappers.UArrayArg
    with built_with_strided_out():
        assert wrappers.UArrayArg is not before
    assert wrappers.UArrayArg is before
