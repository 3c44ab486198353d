"""The CUDA backend's elementwise kernels and the public API's GPU dispatch,
in Numba's CUDA simulator (tests/conftest.py turns it on).

Every catalog entry, forward and backward (and backward from the output),
float16/float32/float64: the GPU result against the CPU ufunc and, on a
sample of the accuracy points, against mpmath within the catalog's bounds.
The simulator runs the plain-Python formulas and primitives, so these tests
check the kernels' structure (indexing, strides, dtype conversions, the
formula each dtype runs); docs/gpu.md and tests/cuda/test_ptx.py cover what
compiles for real GPUs.
"""

import numpy as np
import pytest
from numba import cuda

import fastact
from fastact.catalog import ENTRIES
from fastact.cuda import elementwise as _elementwise
from fastact.cuda import interop as _gpu
from fastact.cuda import target as _cuda
from fastact.devtools import accuracy

#: FASTACT_TEST_REAL_GPU=1 (tests/conftest.py): these tests on a real device
REAL_GPU = not _cuda.simulated()
#: on a real GPU, float64 exp/expm1/log1p/tanh are libdevice's, not the CPU's
#: vector math: results may differ from the CPU's in the last bits (both are
#: held to the catalog's bounds against mpmath, in test_matches_cpu_and_mpmath)
CPU_ULPS = 16 if REAL_GPU else 0

pytestmark = [
    pytest.mark.skipif(REAL_GPU and not cuda.is_available(), reason="FASTACT_TEST_REAL_GPU set, no GPU"),
    # the simulator evaluates both sides of the formulas' selects in Python
    # (NumPy scalars, in its own threads): their FP flags become warnings
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0]
KINDS = [(e, k) for e in ENTRIES for k in accuracy.kinds(e)]


def _ids(v):
    e, k = v
    return f"{e.name}-{k}"


def _sample(entry, dtype, n=36):
    x = accuracy.points(entry, dtype)
    idx = np.linspace(0, len(x) - 1, n).astype(int)
    return np.concatenate([x[idx], np.array(SPECIALS, dtype=dtype)]).astype(dtype)


def _cpu(fn, kind, x, dtype):
    with np.errstate(all="ignore"):
        if kind == "forward":
            return fn(x)
        if kind == "backward":
            return fn.backward(np.ones_like(x), x)
        return fn.backward_from_output(np.ones_like(x), x)


def _gpu_call(fn, kind, x):
    xd = cuda.to_device(x)
    if kind == "forward":
        return fn(xd)
    g = cuda.to_device(np.ones_like(x))
    if kind == "backward":
        return fn.backward(g, xd)
    return fn.backward_from_output(g, xd)


def _same(got, want, dtype, ulps=0):
    ulps = max(ulps, CPU_ULPS)
    assert got.dtype == want.dtype
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    if ulps == 0:
        np.testing.assert_array_equal(got[ok], want[ok])
    else:
        fin = ok & np.isfinite(want)
        np.testing.assert_array_equal(got[ok & ~fin], want[ok & ~fin])
        with np.errstate(over="ignore"):
            tol = ulps * np.spacing(np.abs(want[fin]).astype(dtype))
        assert np.all(np.abs(got[fin].astype(np.float64) - want[fin]) <= tol)


@pytest.mark.parametrize("case", KINDS, ids=_ids)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_cpu_and_mpmath(case, dtype):
    import mpmath as mp

    entry, kind = case
    fn = fastact.ACTIVATIONS[entry.name]
    dtype = np.dtype(dtype)
    x = _sample(entry, dtype)
    if kind == "backward_y":  # a valid output of the forward
        x = fn(x)
    got = _gpu_call(fn, kind, x)
    assert type(got).__name__ in ("FakeCUDAArray", "DeviceNDArray")
    got = got.copy_to_host()
    want = _cpu(fn, kind, x, dtype)
    # the simulator runs the Python bodies of the primitives (fma included),
    # which may round differently from the compiled ones in rare cases
    _same(got, want, dtype, ulps=1)
    ref = {"forward": entry.ref, "backward": entry.ref_grad, "backward_y": entry.ref_grad_y}[kind]
    params = [mp.mpf(float(dtype.type(v))) for v in entry.defaults]
    bound = accuracy.BOUNDS[(kind, dtype.name)]
    with mp.workprec(accuracy.PREC_BITS):
        for a, c in zip(x.tolist(), got.tolist()):
            if not np.isfinite(a) or (kind == "backward" and entry.grad_root is not None
                                      and abs(a - entry.grad_root) <= accuracy.ROOT_ABS_WINDOW):
                continue
            err = accuracy.ulp_error(mp, dtype.type(c), ref(mp, mp.mpf(a), *params), dtype)
            assert err <= bound, (entry.name, kind, dtype.name, a, c, err)


@pytest.mark.parametrize("name", [e.name for e in ENTRIES])
def test_float16_storage(name):
    fn = fastact.ACTIVATIONS[name]
    x = np.linspace(-8, 8, 21).astype(np.float16)
    got = fn(cuda.to_device(x)).copy_to_host()
    assert got.dtype == np.float16
    _same(got, _cpu(fn, "forward", x, np.float16), np.float16)
    g = fn.backward(cuda.to_device(np.ones_like(x)), cuda.to_device(x)).copy_to_host()
    _same(g, _cpu(fn, "backward", x, np.float16), np.float16)


def test_parameters_and_choices():
    x = np.linspace(-4, 4, 33)
    xd = cuda.to_device(x)
    _same(fastact.elu(xd, alpha=0.5).copy_to_host(), fastact.elu(x, alpha=0.5), x.dtype)
    _same(fastact.gelu(xd, approximate="tanh").copy_to_host(), fastact.gelu_tanh(x), x.dtype)
    _same(fastact.leaky_relu.backward(xd, xd, negative_slope=0.3).copy_to_host(),
          fastact.leaky_relu.backward(x, x, negative_slope=0.3), x.dtype)
    with pytest.raises(ValueError, match="alpha"):
        fastact.celu(xd, alpha=0.0)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 33, 100])
def test_odd_sizes_cover_every_element(n):
    # more elements than simulated threads: the grid-stride loop
    x = np.linspace(-3, 3, n).astype(np.float32)
    got = fastact.silu(cuda.to_device(x)).copy_to_host()
    _same(got, fastact.silu(x), np.float32)


def test_zero_dim_and_empty_shapes():
    x = np.array(1.5)
    got = fastact.tanh(cuda.to_device(x)).copy_to_host()
    assert got.shape == () and got == fastact.tanh(x)
    e = fastact.tanh(cuda.to_device(np.empty((3, 0)))).copy_to_host()
    assert e.shape == (3, 0)


def test_strided_transposed_and_broadcast_inputs():
    base = np.linspace(-5, 5, 7 * 12).reshape(7, 12)
    d = cuda.to_device(base)
    for sl in (np.s_[::2, 1::3], np.s_[::-1, :], np.s_[:, ::-2]):
        got = fastact.softplus(d[sl]).copy_to_host()
        _same(got, fastact.softplus(base[sl]), base.dtype)
    _same(fastact.mish(d.T).copy_to_host(), fastact.mish(base.T), base.dtype)  # F order: flat kernel
    g = np.arange(12.0)
    got = fastact.sigmoid.backward(cuda.to_device(g), d).copy_to_host()
    _same(got, fastact.sigmoid.backward(g, base), base.dtype)


def test_out_argument_and_in_place():
    x = np.linspace(-3, 3, 40)
    xd = cuda.to_device(x)
    o = cuda.device_array(40)
    assert fastact.gelu(xd, out=o) is o
    _same(o.copy_to_host(), fastact.gelu(x), x.dtype)
    fastact.relu(xd, out=xd)  # in place
    _same(xd.copy_to_host(), fastact.relu(x), x.dtype)
    o32 = cuda.device_array(40, np.float32)  # float64 results into float32 out
    fastact.tanh(cuda.to_device(x), out=o32)
    _same(o32.copy_to_host(), fastact.tanh(x).astype(np.float32), np.float32)


def test_integer_input_computes_in_float64():
    x = np.arange(-3, 4)
    got = fastact.sigmoid(cuda.to_device(x)).copy_to_host()
    assert got.dtype == np.float64
    _same(got, fastact.sigmoid(x), np.float64)


class Foreign:
    """A producer exposing only __cuda_array_interface__ (as CuPy does). In
    the simulator its data pointer is the host array's memory (so a write
    through it shows in the host array: zero copy); on a real GPU it holds a
    device copy. ``sl``: expose the view ``arr[sl]`` (strided)."""

    def __init__(self, arr, readonly=False, sl=None):
        if REAL_GPU:
            self._dev = cuda.to_device(np.ascontiguousarray(arr))
            view = self._dev if sl is None else self._dev[sl]
            cai = dict(view.__cuda_array_interface__)
            self._host = None
        else:
            self._host = arr if sl is None else arr[sl]
            view = self._host
            cai = {"shape": view.shape,
                   "strides": None if view.flags.c_contiguous else view.strides,
                   "typestr": view.dtype.str, "data": (view.ctypes.data, readonly), "version": 3}
        self._view = view
        cai["data"] = (cai["data"][0], readonly)
        cai["stream"] = None
        self.__cuda_array_interface__ = cai

    def host(self):
        """The values now in the exposed memory."""
        return self._host if self._host is not None else self._view.copy_to_host()


def test_foreign_interface_in_and_out():
    x = np.linspace(-6, 6, 30).astype(np.float32)
    got = fastact.sigmoid(Foreign(x))
    assert _gpu.is_gpu(got)
    _same(got.copy_to_host(), fastact.sigmoid(x), np.float32)
    fo = Foreign(np.zeros_like(x))
    assert fastact.sigmoid(Foreign(x), out=fo) is fo  # written in place (zero copy in the simulator)
    _same(fo.host(), fastact.sigmoid(x), np.float32)
    full = np.linspace(-6, 6, 60)
    got = fastact.elu(Foreign(full, sl=np.s_[::2])).copy_to_host()
    _same(got, fastact.elu(full[::2]), np.float64)


def test_errors():
    x = np.linspace(-1, 1, 8)
    xd = cuda.to_device(x)
    with pytest.raises(TypeError, match="host"):
        fastact.sigmoid.backward(x, xd)
    with pytest.raises(TypeError, match="host"):
        fastact.sigmoid(xd, out=np.empty(8))
    with pytest.raises(TypeError, match="host"):
        fastact.sigmoid(x, out=cuda.device_array(8))
    with pytest.raises(ValueError, match="shape"):
        fastact.sigmoid(xd, out=cuda.device_array(9))
    with pytest.raises(ValueError, match="read-only"):
        fastact.sigmoid(xd, out=Foreign(np.empty(8), readonly=True))
    with pytest.raises(TypeError, match="out of dtype"):
        fastact.sigmoid(xd, out=cuda.device_array(8, np.int32))
    with pytest.raises(TypeError, match="where"):
        fastact.sigmoid(xd, where=np.ones(8, bool))
    with pytest.raises(ValueError, match="broadcast"):
        fastact.tanh.backward(cuda.device_array(3), xd)
    with pytest.raises(TypeError, match="dtype"):
        fastact.tanh(Foreign(np.zeros(3, np.complex128)))


def test_kernel_source_is_grid_stride_with_the_catalog_formula():
    e = fastact.gelu.catalog_entry
    fn = _elementwise.pyfunc(e, "forward", np.float32, 0, 1)
    src = fn.__fastact_source__
    assert "cuda.grid(1)" in src and "i += step" in src
    assert fn.__globals__["f"] is e.forward32  # the float32 evaluation, not a copy
    assert _elementwise.pyfunc(e, "forward", np.float64, 0, 1).__globals__["f"] is e.forward
    assert _elementwise.pyfunc(fastact.relu.catalog_entry, "forward", np.float32, 0, 1).__globals__["f"] \
        is fastact.relu.catalog_entry.forward  # no float32 evaluation: widened to float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,approximate", [("swiglu", "none"), ("geglu", "none"), ("geglu", "tanh")])
def test_gated_units(name, approximate, dtype):
    _check_gated(name, approximate, dtype)


def test_gated_check_fails_when_the_gpu_ignores_approximate(monkeypatch):
    from fastact.catalog import CATALOG

    run = _elementwise.elementwise

    def erf_form_only(where, entry, *args, **kw):
        return run(where, CATALOG["gelu"] if entry is CATALOG["gelu_tanh"] else entry, *args, **kw)

    monkeypatch.setattr(_elementwise, "elementwise", erf_form_only)
    with pytest.raises(AssertionError):
        _check_gated("geglu", "tanh", np.float32)


def _check_gated(name, approximate, dtype):
    fn = fastact.FUNCTIONS[name]
    kw = {"approximate": approximate}
    a = np.linspace(-4, 4, 12).reshape(3, 4).astype(dtype)
    b = np.linspace(2, -1, 12).reshape(3, 4).astype(dtype)
    ad, bd = cuda.to_device(a), cuda.to_device(b)
    y = fn(ad, bd, **kw).copy_to_host()
    _same(y, fn(a, b, **kw), a.dtype)
    x = np.concatenate([a, b], axis=-1)
    _same(fn(cuda.to_device(x), **kw).copy_to_host(), fn(x, **kw), a.dtype)  # split halves
    g = np.linspace(1, 2, 12).reshape(3, 4).astype(dtype)
    da, db = fn.backward(cuda.to_device(g), ad, bd, **kw)
    wa, wb = fn.backward(g, a, b, **kw)
    _same(da.copy_to_host(), wa, a.dtype)
    _same(db.copy_to_host(), wb, a.dtype)
    dx = fn.backward(cuda.to_device(g), cuda.to_device(x), **kw)
    _same(dx.copy_to_host(), fn.backward(g, x, **kw), a.dtype)
    if approximate != "none":  # the GPU honours the choice: not the exact form's values
        exact = [fn(a, b), *fn.backward(g, a, b)]
        for got, other in zip([y, da.copy_to_host(), db.copy_to_host()], exact):
            assert np.count_nonzero(got != other) >= got.size // 2


@pytest.mark.parametrize("name", ["swiglu", "geglu"])
def test_gated_backward_overflowing_grad_times_b(name):
    """grad * b overflows (float64): da is the CPU's, bitwise (prod3 on both):
    a signed zero where f'(a) is 0 (not inf * 0 = NaN), the finite exact
    product where f'(a) is small, +-inf where it overflows; NaN only for
    inf * 0 or a NaN operand."""
    fn = fastact.FUNCTIONS[name]
    M = float(np.finfo(np.float64).max)
    g = np.array([M, M, -M, M, M, -M, np.inf, M, 0.0])
    a = np.array([-M, -M, -M, -0.75, 0.5, -700.0, -np.inf, np.nan, 1.0])
    b = np.array([M, -M, M, 1.5, 2.0, 4.0, 1.0, 1.0, M])
    with np.errstate(over="ignore"):
        da, db = fn.backward(cuda.to_device(g), cuda.to_device(a), cuda.to_device(b))
        wa, wb = fn.backward(g, a, b)
    _same(da.copy_to_host(), wa, a.dtype)
    _same(db.copy_to_host(), wb, a.dtype)
    da = da.copy_to_host()
    ok = ~np.isnan(wa)
    np.testing.assert_array_equal(np.signbit(da[ok]), np.signbit(wa[ok]))  # zero signs too
    assert not np.isnan(da[:6]).any() and np.isnan(da[6:8]).all() and da[8] == 0.0
    assert da[0] == 0.0 and da[3] != 0 and np.isfinite(da[3]) and da[4] == np.inf


def test_prelu_slope_zero_at_minus_inf():
    """A weight of 0 at x = -inf: the signed zero of slope * x for finite x,
    not 0 * -inf = NaN (the catalog's leaky_relu, as the CPU)."""
    x = np.array([[-np.inf, -np.inf, -np.inf], [-2.0, 3.0, -0.0]])
    w = np.array([0.0, -0.0, 0.5])
    got = fastact.prelu(cuda.to_device(x), cuda.to_device(w)).copy_to_host()
    want = np.array([[-0.0, 0.0, -np.inf], [-0.0, 3.0, -0.0]])
    _same(got, want, x.dtype)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))  # _same ignores zero signs
    _same(got, fastact.prelu(x, w), x.dtype)
    _same(fastact.prelu(cuda.to_device(x), 0.0).copy_to_host(), fastact.prelu(x, 0.0), x.dtype)
    y = fastact.leaky_relu(cuda.to_device(x[0]), negative_slope=0.0).copy_to_host()
    assert np.all(y == 0) and np.signbit(y).all()


def test_prelu_forward_and_dx():
    x = np.linspace(-3, 3, 24).reshape(2, 3, 4)
    w = np.array([0.1, 0.5, 2.0])
    got = fastact.prelu(cuda.to_device(x), cuda.to_device(w)).copy_to_host()
    _same(got, fastact.prelu(x, w), x.dtype)
    _same(fastact.prelu(cuda.to_device(x), 0.25).copy_to_host(), fastact.prelu(x, 0.25), x.dtype)
    with pytest.raises(TypeError, match="host"):
        fastact.prelu(cuda.to_device(x), w)


def test_import_and_cpu_calls_do_not_import_numba_cuda():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, fastact\n"
        "fastact.gelu(np.ones(10)); fastact.softmax(np.ones((2, 3)))\n"
        "fastact.sigmoid.backward(np.ones(3), np.ones(3))\n"
        "assert 'numba.cuda' not in sys.modules, 'numba.cuda imported'\n"
        "assert 'cupy' not in sys.modules and 'torch' not in sys.modules\n"
        # numba-cuda absent: a meta-path block, then the same CPU calls
        "import importlib.abc\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    blocked = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith(('numba.cuda', 'numba_cuda', 'cupy')):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np, fastact\n"
        "assert abs(float(fastact.tanh(np.float32(0.5))) - 0.46211715726) < 1e-6\n"
        "fastact.softmax(np.ones((2, 3)))\n"
    )
    subprocess.run([sys.executable, "-c", blocked], check=True)


def test_maxout_dispatch():
    x = np.array([[1.0, 5.0, -2.0, -3.0, np.nan, 4.0], [0.0, 0.0, 7.0, 1.0, -np.inf, 2.0]])
    for ax, k in ((-1, 2), (0, 2), (-1, 3)):
        got = fastact.maxout(cuda.to_device(x), k, axis=ax).copy_to_host()
        _same(got, fastact.maxout(x, k, axis=ax), x.dtype)
        g = np.arange(1.0, 1.0 + got.size).reshape(got.shape)
        dx = fastact.maxout.backward(cuda.to_device(g), cuda.to_device(x), k, axis=ax).copy_to_host()
        _same(dx, fastact.maxout.backward(g, x, k, axis=ax), x.dtype)
    x3 = np.linspace(-2, 2, 2 * 6 * 3).reshape(2, 6, 3)  # middle axis: no (rows, n) view
    got = fastact.maxout(cuda.to_device(x3), 3, axis=1).copy_to_host()
    _same(got, fastact.maxout(x3, 3, axis=1), x3.dtype)
    g = np.ones(got.shape)
    dx = fastact.maxout.backward(cuda.to_device(g), cuda.to_device(x3), 3, axis=1).copy_to_host()
    _same(dx, fastact.maxout.backward(g, x3, 3, axis=1), x3.dtype)
    with pytest.raises(ValueError, match="divisible"):
        fastact.maxout(cuda.to_device(x), 4)


def test_prelu_backward_dweight_on_gpu():
    x = np.linspace(-3, 3, 2 * 3 * 4).reshape(2, 3, 4)
    g = np.linspace(0.5, 2.0, 24).reshape(2, 3, 4)
    w = np.array([0.1, 0.5, 2.0])
    dx, dw = fastact.prelu.backward(cuda.to_device(g), cuda.to_device(x), cuda.to_device(w))
    wdx, wdw = fastact.prelu.backward(g, x, w)
    _same(dx.copy_to_host(), wdx, x.dtype)
    assert _gpu.is_gpu(dw)
    np.testing.assert_allclose(dw.copy_to_host(), wdw, rtol=1e-15)
    dx, dw = fastact.prelu.backward(cuda.to_device(g), cuda.to_device(x), 0.25)
    wdx, wdw = fastact.prelu.backward(g, x, 0.25)
    _same(dx.copy_to_host(), wdx, x.dtype)
    np.testing.assert_allclose(dw.copy_to_host(), wdw, rtol=1e-15)


# ----------------------------------------------------- softmax family dispatch
ROWWISE = [fastact.softmax, fastact.log_softmax]


def _ulps_close(got, want, ulps):
    ulps = max(ulps, 4 * CPU_ULPS)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    tol = ulps * np.spacing(np.abs(want[fin]).astype(want.dtype))
    assert np.all(np.abs(got[fin].astype(np.float64) - want[fin]) <= tol)


@pytest.mark.parametrize("fn", ROWWISE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rowwise_dispatch_axes_and_layouts(fn, dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 5, 7)) * 4).astype(dtype)
    xd = cuda.to_device(x)
    for ax in (-1, 0, 1):  # last axis: a view; axis 0: a strided view; axis 1: a GPU copy
        got = fn(xd, axis=ax)
        assert _gpu.is_gpu(got) and got.shape == x.shape
        _ulps_close(got.copy_to_host(), fn(x, axis=ax), 2)
        y = fn(x, axis=ax)
        g = rng.standard_normal(x.shape).astype(dtype)
        dx = fn.backward(cuda.to_device(g), cuda.to_device(y), axis=ax).copy_to_host()
        want = fn.backward(g, y, axis=ax)
        # backward results are differences: compare against the row's scale
        scale = np.max(np.abs(want), axis=ax, keepdims=True) + np.finfo(dtype).tiny
        assert np.all(np.abs(dx - want) <= 4 * np.finfo(dtype).eps * scale)
    t = x[:, ::2, ::-1]  # negative and step-2 strides
    _ulps_close(fn(cuda.to_device(x)[:, ::2, ::-1]).copy_to_host(), fn(t), 2)


@pytest.mark.parametrize("fn", ROWWISE, ids=lambda f: f.__name__)
def test_rowwise_out_in_place_and_foreign(fn):
    x = np.linspace(-8, 8, 4 * 9).reshape(4, 9)
    want = fn(x)
    o = cuda.device_array((4, 9))
    assert fn(cuda.to_device(x), out=o) is o
    _ulps_close(o.copy_to_host(), want, 2)
    of = cuda.device_array((9, 4)).T  # F-ordered out, axis -1 strided
    fn(cuda.to_device(x), out=of)
    _ulps_close(of.copy_to_host(), want, 2)
    ob = cuda.device_array((4, 3, 9))[:, 1, :]  # out needing the GPU write-back copy
    fn(cuda.to_device(x), out=ob)
    _ulps_close(ob.copy_to_host(), want, 2)
    xd = cuda.to_device(x)
    fn(xd, out=xd)  # in place
    _ulps_close(xd.copy_to_host(), want, 2)
    fo = Foreign(np.zeros_like(x))
    assert fn(Foreign(x), out=fo) is fo
    _ulps_close(fo.host(), want, 2)
    r = fn(Foreign(x.astype(np.float16)))
    assert _gpu.is_gpu(r) and r.dtype == np.float16
    ref = fn(x.astype(np.float16))
    assert ref.dtype == np.float16
    np.testing.assert_allclose(r.copy_to_host().astype(np.float64), ref.astype(np.float64),
                               rtol=2**-10, atol=2**-24)


def test_rowwise_errors_and_empty():
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    xd = cuda.to_device(x)
    with pytest.raises(TypeError, match="host"):
        fastact.softmax(xd, out=np.empty((2, 3)))
    with pytest.raises(TypeError, match="host"):
        fastact.softmax.backward(x, xd)
    with pytest.raises(ValueError, match="shape"):
        fastact.softmax(xd, out=cuda.device_array((3, 2)))
    with pytest.raises(ValueError, match="differ"):
        fastact.log_softmax.backward(cuda.device_array((2, 2)), xd)
    with pytest.raises(ValueError, match="0-d"):
        fastact.softmax(cuda.to_device(np.float64(1.0).reshape(())))
    with pytest.raises(ValueError):
        fastact.softmax(xd, axis=2)
    with pytest.raises(TypeError, match="dtype"):
        fastact.softmax(Foreign(np.zeros((2, 3), np.complex128)))
    with pytest.raises(ValueError, match="read-only"):
        fastact.softmax(xd, out=Foreign(np.empty((2, 3)), readonly=True))
    e = fastact.softmax(cuda.device_array((0, 5)))
    assert _gpu.is_gpu(e) and e.shape == (0, 5)
    e = fastact.log_softmax(cuda.device_array((4, 0)), axis=0)
    assert _gpu.is_gpu(e) and e.shape == (4, 0)
    got = fastact.softmax(cuda.to_device(np.arange(-3, 3).reshape(2, 3)))  # int64 -> float64
    assert got.dtype == np.float64
    _ulps_close(got.copy_to_host(), fastact.softmax(np.arange(-3, 3).reshape(2, 3)), 2)


def test_jit_builds_listed_kernels_with_launch_bounds(monkeypatch):
    from fastact.cuda.occupancy import FULL_OCCUPANCY

    calls = []

    class FakeCuda:
        def jit(self, fn, **kw):
            calls.append((fn.__name__, kw))
            return fn

    monkeypatch.setattr(_cuda, "cuda", lambda: FakeCuda())
    monkeypatch.setattr(_cuda, "simulated", lambda: False)

    def k():
        pass

    k.__name__ = sorted(FULL_OCCUPANCY)[0]
    _cuda.jit(k)
    k.__name__ = "not_a_listed_kernel"
    _cuda.jit(k)
    assert calls == [(sorted(FULL_OCCUPANCY)[0], {"launch_bounds": _cuda.LAUNCH_BOUNDS}),
                     ("not_a_listed_kernel", {})]
    from fastact.cuda import layers as _cuda_misc
    from fastact.cuda import rows as _cuda_rows

    # no launch exceeds the bound's threads per block
    assert _cuda.LAUNCH_BOUNDS[0] >= max(_cuda.THREADS, _cuda_rows.THREADS, _cuda_misc.RED_THREADS)


# ------------------------------------------------------------ device choice
class _FakeDevice:
    def __init__(self, i):
        self.id = i


def _fake_cupy_array(x, dev):
    """An object that _gpu takes for a CuPy array on device ``dev``."""
    cls = type("ndarray", (Foreign,), {"__module__": "cupy._core.core"})
    a = cls(x)
    a.device = _FakeDevice(dev)
    return a


def test_arrays_on_two_devices_raise():
    x = np.linspace(-1, 1, 8)
    a, b = _fake_cupy_array(x, 0), _fake_cupy_array(x, 1)
    assert _gpu.device_id(a) == 0 and _gpu.device_id(b) == 1
    assert _gpu.device_id(cuda.to_device(x)) is None  # Numba arrays: the current device
    for call in (lambda: fastact.sigmoid.backward(a, b), lambda: fastact.gelu(a, out=b),
                 lambda: fastact.softmax.backward(a, b), lambda: fastact.swiglu(a, b),
                 lambda: fastact.prelu(a, b)):
        with pytest.raises(ValueError, match=r"different devices \[0, 1\]"):
            call()


def test_the_arrays_device_is_made_current(monkeypatch):
    import sys
    import types

    entered = []

    class Device:
        def __init__(self, i):
            self.i = i

        def __enter__(self):
            entered.append(self.i)

        def __exit__(self, *exc):
            entered.append(-1)

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(Device=Device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    x = np.linspace(-1, 1, 8)
    with _gpu.on_device("t", _fake_cupy_array(x, 3), None, np.float64(1.0)):
        assert entered == [3]
    assert entered == [3, -1]
    entered.clear()
    with _gpu.on_device("t", cuda.to_device(x)):  # no device named: nothing changes
        pass
    assert entered == []
