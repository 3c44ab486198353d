"""In place (``out=`` an input) gives the bits of a separate ``out=``, and
operands that only partly overlap still see NumPy's semantics.

fastact.cpu.loopfix marks the unit-strided ufunc loop parallel so that
``f(x, out=x)`` vectorizes (LLVM's overlap check failed for identical
pointers and ran the scalar loop); the loop is taken only when each input is
the output itself or lies apart from it.
"""

import numpy as np
import pytest

import fastact
from fastact.catalog import ENTRIES
from fastact.cpu import threads


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _inputs(dtype, n=1000 + 7):  # a vector body and a remainder
    x = np.linspace(-7, 7, n).astype(dtype)
    x[::97] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e30, 3.0, -3.0, 1e30, 20.0][: x[::97].size]
    g = np.cos(np.arange(n)).astype(dtype)
    return x, g


def _value_sets(entry):
    return [{}] + ([{p.name: p.test_value for p in entry.params}] if entry.params else [])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_in_place_equals_a_separate_out(entry, dtype):
    f = fastact.ACTIVATIONS[entry.name]
    x, g = _inputs(dtype)
    for kw in _value_sets(entry):
        for _ in range(2):  # a value set's own loop is built on its second call
            want = f(x, **kw)
            a = x.copy()
            assert f(a, out=a, **kw) is a
            np.testing.assert_array_equal(_bits(a), _bits(want), err_msg=f"{entry.name} {kw} out=x")
            want = f.backward(g, x, **kw)
            for which in ("grad", "x"):
                gg, xx = g.copy(), x.copy()
                o = gg if which == "grad" else xx
                assert f.backward(gg, xx, out=o, **kw) is o
                np.testing.assert_array_equal(_bits(o), _bits(want), err_msg=f"{entry.name} {kw} out={which}")
            if hasattr(f, "backward_from_output"):
                y = f(x, **kw)
                want = f.backward_from_output(g, y, **kw)
                gg = g.copy()
                f.backward_from_output(gg, y, out=gg, **kw)
                np.testing.assert_array_equal(_bits(gg), _bits(want), err_msg=f"{entry.name} {kw} y out=grad")


def test_in_place_in_chunks_on_threads():
    # the chunked path splits x and out=x into the same views
    x = np.linspace(-9, 9, 3 * threads.MIN_PARALLEL_ELEMENTS + 5, dtype=np.float32)
    g = np.sin(x)
    old = threads._num_threads  # None (the default) stays None
    threads.set_num_threads(2)
    try:
        want, want_b = fastact.gelu(x), fastact.gelu.backward(g, x)
        a = x.copy()
        fastact.gelu(a, out=a)
        gg = g.copy()
        fastact.gelu.backward(gg, x, out=gg)
    finally:
        threads.set_num_threads(old)
    np.testing.assert_array_equal(_bits(a), _bits(want))
    np.testing.assert_array_equal(_bits(gg), _bits(want_b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sigmoid", "gelu", "relu", "tanh"])
def test_accumulate_reads_each_result_it_wrote(name, dtype):
    # ufunc.accumulate calls the loop with an input that is the output shifted
    # by one element: a dependence from each element to the next, which the
    # parallel loop must not take
    uf = fastact.ACTIVATIONS[name].backward_ufunc
    x = np.linspace(-0.9, 1.1, 301).astype(dtype)
    with np.errstate(all="ignore"):
        got = uf.accumulate(x)
        want = np.empty_like(x)
        want[0] = x[0]
        for i in range(1, x.size):
            want[i] = uf(want[i - 1 : i], x[i : i + 1])[0]
    np.testing.assert_array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("shift", [1, 3, 17, -1, -16])
def test_partly_overlapping_out_sees_the_inputs_before_the_call(shift):
    for f in (fastact.sigmoid, fastact.silu):
        a = np.linspace(-5, 5, 1003)
        src = a[:-shift] if shift > 0 else a[-shift:]
        dst = a[shift:] if shift > 0 else a[:shift]
        want = f(src.copy())
        f.ufunc(src, out=dst)
        np.testing.assert_array_equal(dst, want)
        b = np.linspace(-5, 5, 1003)
        gsrc = b[:-shift] if shift > 0 else b[-shift:]
        gdst = b[shift:] if shift > 0 else b[:shift]
        want = f.backward(gsrc.copy(), gsrc.copy())
        f.backward(gsrc, gsrc, out=gdst)
        np.testing.assert_array_equal(gdst, want)


# ------------------------------------------------------------ row functions
# (fastact.functions.rowwise: out= an input and float16 operands run in
# blocks of rows; small blocks here, so that every call spans many)


@pytest.fixture(params=[64, 1 << 14], ids=["small-blocks", "default-blocks"])
def row_blocks(request, monkeypatch):
    from fastact.functions import rowwise

    monkeypatch.setattr(rowwise, "BLOCK_ELEMENTS", request.param)


def _rows_data(dtype):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((5, 6, 40)) * 4).astype(dtype)
    x[1, 2, 3], x[2, 0, :] = -np.inf, -np.inf  # a row of only -inf: NaN throughout
    g = rng.standard_normal(x.shape).astype(dtype)
    return x, g


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("f", [fastact.softmax, fastact.log_softmax], ids=["softmax", "log_softmax"])
def test_row_functions_in_place_equal_a_separate_out(row_blocks, f, dtype, axis):
    x, g = _rows_data(dtype)
    want = f(x, axis=axis)
    a = x.copy()
    assert f(a, axis=axis, out=a) is a
    np.testing.assert_array_equal(_bits(a), _bits(want))
    want_b = f.backward(g, want, axis=axis)
    for which in ("grad", "y"):
        gg, yy = g.copy(), want.copy()
        o = gg if which == "grad" else yy
        assert f.backward(gg, yy, axis=axis, out=o) is o
        np.testing.assert_array_equal(_bits(o), _bits(want_b), err_msg=which)


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("f", [fastact.softmax, fastact.log_softmax], ids=["softmax", "log_softmax"])
def test_row_functions_float16_blocks_equal_casting_the_float32_result(row_blocks, f, axis):
    x, g = _rows_data(np.float16)
    x32, g32 = x.astype(np.float32), g.astype(np.float32)
    def h(a):
        return a.view(np.uint16)

    want = f(x32, axis=axis).astype(np.float16)
    np.testing.assert_array_equal(h(f(x, axis=axis)), h(want))
    o = np.empty_like(x)
    f(x, axis=axis, out=o)
    np.testing.assert_array_equal(h(o), h(want))
    y = f(x, axis=axis)
    want_b = f.backward(g32, y.astype(np.float32), axis=axis).astype(np.float16)
    np.testing.assert_array_equal(h(f.backward(g, y, axis=axis)), h(want_b))
    # float16 in place: converted in blocks, written back
    a = x.copy()
    f(a, axis=axis, out=a)
    np.testing.assert_array_equal(h(a), h(want))
    # float64 results into a float32 out (a cast out, no float64 temporary)
    x64 = x32.astype(np.float64)
    o32 = np.empty(x.shape, np.float32)
    f(x64, axis=axis, out=o32)
    np.testing.assert_array_equal(_bits(o32), _bits(f(x64, axis=axis).astype(np.float32)))


def test_row_functions_in_place_on_threads():
    x = np.random.default_rng(2).standard_normal((300, 1000)).astype(np.float32)
    old = threads._num_threads
    threads.set_num_threads(2)
    try:
        want = fastact.log_softmax(x, axis=0)
        a = x.copy()
        fastact.log_softmax(a, axis=0, out=a)
        h = fastact.softmax(x.astype(np.float16))
    finally:
        threads.set_num_threads(old)
    np.testing.assert_array_equal(_bits(a), _bits(want))
    np.testing.assert_array_equal(h.view(np.uint16), fastact.softmax(x.astype(np.float16).astype(np.float32)).astype(np.float16).view(np.uint16))
