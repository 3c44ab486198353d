"""What only a real GPU can show: CuPy / PyTorch round trips on their current
streams, values of the compiled kernels (libdevice) against the CPU and
mpmath, 64-bit indexing past 2**31 elements, arrays on a second device, and
``python -m fastact bench --device cuda``.

Run with ``FASTACT_TEST_REAL_GPU=1 pytest tests/cuda/`` on a machine
with an NVIDIA GPU (the simulator tests of test_elementwise.py, test_rows.py
and test_layers.py then run on the device too). Skipped everywhere else: CI
has no GPU.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastact
from fastact.cuda import target as _cuda
from fastact.devtools import accuracy
from fastact.catalog import ENTRIES

REAL = os.environ.get("FASTACT_TEST_REAL_GPU", "0") not in ("", "0") and not _cuda.simulated()


def _has_gpu():
    if not REAL:
        return False
    try:
        return _cuda.cuda().is_available()
    except ImportError:
        return False


pytestmark = pytest.mark.skipif(not _has_gpu(), reason="needs FASTACT_TEST_REAL_GPU=1 and a GPU")

#: compiled GPU kernels vs the CPU ufuncs (libdevice vs the CPU's vector math;
#: each is held to the catalog's bounds against mpmath)
ULPS = 16


def _ulps(got, want):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    assert np.array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    sp = np.spacing(np.abs(want[fin])).astype(np.float64)
    return float(np.max(np.abs(got[fin].astype(np.float64) - want[fin]) / sp, initial=0.0))


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.mark.parametrize("name", sorted(fastact.ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_in_cupy_out_every_activation(cp, name, dtype):
    f = fastact.ACTIVATIONS[name]
    e = f.catalog_entry
    x = accuracy.points(e, dtype)
    if e.grad_root is not None:  # f' = 0 there: relative accuracy is not defined
        x = x[np.abs(x - e.grad_root) > accuracy.ROOT_ABS_WINDOW]
    g = np.cos(np.arange(x.size)).astype(dtype)
    xd, gd = cp.asarray(x), cp.asarray(g)
    with np.errstate(all="ignore"):
        y = f(xd)
        dx = f.backward(gd, xd)
        assert isinstance(y, cp.ndarray) and isinstance(dx, cp.ndarray)
        assert y.dtype == x.dtype and dx.dtype == x.dtype
        assert _ulps(y.get(), f(x)) <= ULPS, name
        assert _ulps(dx.get(), f.backward(g, x)) <= ULPS, name


def test_kernels_within_the_catalog_bounds_vs_mpmath(cp):
    import mpmath as mp
    for e in ENTRIES:
        f = fastact.ACTIVATIONS[e.name]
        for dt in (np.float32, np.float64):
            dt = np.dtype(dt)
            x = accuracy.points(e, dt)
            x = x[np.linspace(0, x.size - 1, 400).astype(int)]
            with np.errstate(all="ignore"):
                y = f(cp.asarray(x)).get()
            bound = accuracy.BOUNDS[("forward", dt.name)]
            params = [mp.mpf(float(dt.type(v))) for v in e.defaults]
            with mp.workprec(accuracy.PREC_BITS):
                for a, c in zip(x.tolist(), y.tolist()):
                    if np.isfinite(a):
                        err = accuracy.ulp_error(mp, dt.type(c), e.ref(mp, mp.mpf(a), *params), dt)
                        assert err <= bound, (e.name, dt.name, a, c, err)


def test_runs_on_cupys_current_stream(cp):
    # a non-blocking stream does not wait for the legacy default stream: a
    # kernel launched anywhere but on it would read x before the += lands
    n = 1 << 24
    s = cp.cuda.Stream(non_blocking=True)
    for _ in range(5):
        with s:
            x = cp.zeros(n, dtype=cp.float32)
            for _ in range(20):
                x += 1.0
            y = fastact.relu(x)
            sm = fastact.softmax(x.reshape(-1, 1024))
        s.synchronize()
        assert float(y.min()) == 20.0
        assert abs(float(sm[0, 0]) - 1 / 1024) < 1e-9


def test_out_strided_and_softmax_on_cupy(cp):
    x = cp.asarray(np.random.default_rng(0).standard_normal((512, 300)).astype(np.float32))
    o = cp.empty_like(x)
    assert fastact.gelu(x, out=o) is o
    assert _ulps(o.get(), fastact.gelu(x.get())) <= ULPS
    t = x.T[::2]  # strided
    assert _ulps(fastact.silu(t).get(), fastact.silu(t.get())) <= ULPS
    for ax in (-1, 0):
        for f in (fastact.softmax, fastact.log_softmax):
            y = f(x, axis=ax)
            assert isinstance(y, cp.ndarray)
            assert _ulps(y.get(), f(x.get(), axis=ax)) <= ULPS
            g = cp.cos(x)
            d = f.backward(g, y, axis=ax).get()
            want = f.backward(g.get(), y.get(), axis=ax)
            scale = np.max(np.abs(want), axis=ax, keepdims=True)
            assert np.all(np.abs(d - want) <= 8 * np.finfo(np.float32).eps * scale)
    long_rows = cp.asarray(np.random.default_rng(1).standard_normal((3, 5000)))  # block per row
    assert _ulps(fastact.softmax(long_rows).get(), fastact.softmax(long_rows.get())) <= 4


def test_float16_storage_on_cupy(cp):
    x = cp.linspace(-8, 8, 1001, dtype=cp.float16)
    y = fastact.tanh(x)
    assert y.dtype == cp.float16
    np.testing.assert_allclose(y.get().astype(np.float64), fastact.tanh(x.get()).astype(np.float64),
                               rtol=2**-10, atol=2**-24)


def test_past_2_31_elements(cp):
    n = 2**31 + 17
    free, _ = cp.cuda.Device().mem_info
    if free < 3 * 2 * n:
        pytest.skip(f"needs {3 * 2 * n / 2**30:.1f} GiB of free GPU memory")
    x = cp.full(n, -1.0, dtype=cp.float16)
    x[-5:] = 3.0
    y = fastact.relu(x)
    assert int(cp.count_nonzero(y)) == 5
    assert float(y[-1]) == 3.0 and float(y[2**31 - 1]) == 0.0
    del x, y
    cp.get_default_memory_pool().free_all_blocks()


def test_arrays_on_another_device(cp):
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("one GPU")
    with cp.cuda.Device(1):
        x = cp.linspace(-4, 4, 100001, dtype=cp.float32)
        g = cp.ones_like(x)
    assert cp.cuda.Device().id == 0
    y = fastact.sigmoid(x)
    d = fastact.sigmoid.backward(g, x)
    s = fastact.softmax(x.reshape(1, -1))
    for r in (y, d, s):
        assert r.device.id == 1
    assert _ulps(y.get(), fastact.sigmoid(x.get())) <= ULPS
    assert cp.cuda.Device().id == 0  # restored


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    x = torch.linspace(-6, 6, 100003, device="cuda", dtype=torch.float32)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        y = fastact.silu(x)
        o = torch.empty_like(x)
        fastact.gelu(x, out=o)
        sm = fastact.softmax(x.reshape(-1, 103))
    s.synchronize()
    assert isinstance(y, torch.Tensor) and y.device == x.device and y.dtype == torch.float32
    xh = x.cpu().numpy()
    assert _ulps(y.cpu().numpy(), fastact.silu(xh)) <= ULPS
    assert _ulps(o.cpu().numpy(), fastact.gelu(xh)) <= ULPS
    assert _ulps(sm.cpu().numpy(), fastact.softmax(xh.reshape(-1, 103))) <= ULPS


def test_bench_device_cuda():
    r = subprocess.run([sys.executable, "-m", "fastact", "bench", "--device", "cuda", "--quick", "--json",
                        "--ops", "gelu,softmax", "--dtype", "float32"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["meta"]["gpu"] is not None, res["meta"]["reason"]
    assert res["rows"] and all(row["error"] is None for row in res["rows"]), res["rows"]
    assert all(row["gb_per_s"] > 0 and row["roofline_gb_per_s"] > 0 for row in res["rows"])
