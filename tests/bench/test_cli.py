"""The benchmark CLI: rows, JSON shape, thread handling, peers (timings are not checked)."""

import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.special

import fastact
from fastact.bench import baselines, cli, common, cpu, cuda, report, timing
from fastact.cpu import threads as _threads

ROW_KEYS = {
    "op", "direction", "dtype", "size", "shape", "threads", "median_ms", "gb_per_s",
    "roofline", "roofline_gb_per_s", "roofline_threads", "roofline_fraction",
    "numpy_ms", "speedup_vs_numpy", "torch_ms", "speedup_vs_torch", "scipy_ms", "speedup_vs_scipy",
}
META_KEYS = {"size", "row_shape", "dtypes", "ops", "repeat", "threads", "rooflines", "versions", "elapsed_s", "call_overhead"}
PEER_KEYS = ("torch_ms", "speedup_vs_torch", "scipy_ms", "speedup_vs_scipy")
SIZE = 4096  # softmax family: 4 x 1024


def _pos(v):
    return isinstance(v, float) and math.isfinite(v) and v > 0


@pytest.fixture
def restore_threads():
    prev = _threads._num_threads
    yield
    fastact.set_num_threads(prev)


def _check_result(res, ops, dtypes, size=SIZE):
    meta, rows = res["meta"], res["rows"]
    assert set(meta) == META_KEYS
    assert meta["size"] == size and meta["dtypes"] == list(dtypes) and meta["ops"] == list(ops)
    assert [(r["dtype"], r["op"], r["direction"]) for r in rows] == [
        (dt, op, d) for dt in dtypes for op in ops for d in ("forward", "backward")
    ]
    for dt in dtypes:
        for kind in ("copy", "add"):
            roof = meta["rooflines"][dt][kind]
            assert all(_pos(roof[k]) for k in ("one_thread_gb_per_s", "threaded_gb_per_s", "gb_per_s"))
            assert roof["gb_per_s"] == max(roof["one_thread_gb_per_s"], roof["threaded_gb_per_s"])
            assert roof["threads"] in (1, meta["threads"])
    for r in rows:
        assert set(r) == ROW_KEYS
        assert all(_pos(r[k]) for k in ("median_ms", "gb_per_s", "roofline_gb_per_s", "roofline_fraction"))
        assert r["roofline"] == ("copy" if r["direction"] == "forward" else "add")
        wall = meta["rooflines"][r["dtype"]][r["roofline"]]
        assert r["roofline_gb_per_s"] == wall["gb_per_s"] and r["roofline_threads"] == wall["threads"]
        assert r["roofline_fraction"] == pytest.approx(r["gb_per_s"] / r["roofline_gb_per_s"])
        itemsize = np.dtype(r["dtype"]).itemsize
        moved = (2 if r["direction"] == "forward" else 3) * r["size"] * itemsize
        assert r["gb_per_s"] == pytest.approx(moved / (r["median_ms"] * 1e-3) / 1e9)
        assert r["threads"] == meta["threads"]
        if r["op"] in common.ROW_OPS:
            assert r["shape"] == meta["row_shape"] == [size // 1024, 1024]
        else:
            assert r["shape"] == [size] and r["size"] == size
        for ms, sp in (("numpy_ms", "speedup_vs_numpy"), ("torch_ms", "speedup_vs_torch"),
                       ("scipy_ms", "speedup_vs_scipy")):
            assert (r[ms] is None) == (r[sp] is None)
            if r[ms] is not None:
                assert _pos(r[ms]) and r[sp] == pytest.approx(r[ms] / r["median_ms"])
    json.dumps(res, allow_nan=False)  # plain JSON: no NaN/inf, no NumPy scalars


def test_run_rows_meta_and_table(restore_threads):
    ops = ["sigmoid", "relu", "softmax"]
    res = cpu.run(ops, ("float32", "float64"), size=SIZE, repeat=1, threads=1, progress=False)
    _check_result(res, ops, ("float32", "float64"))
    assert all(r["numpy_ms"] is not None for r in res["rows"])
    table = report.format_table(res)
    for word in ("sigmoid", "softmax", "GB/s", "roof%", "float32", "float64", "torch ms", "scipy ms", "4 x 1024"):
        assert word in table
    # the header names the roofline each dtype used
    for dt in ("float32", "float64"):
        copy = res["meta"]["rooflines"][dt]["copy"]["gb_per_s"]
        assert f"{dt}: roofline copy {copy:.1f} GB/s" in table


def test_main_json_quick_with_backward_and_log_softmax(capsys, restore_threads):
    assert cli.main(["--quick", "--json", "--ops", "tanh,log_softmax", "--dtype", "float64",
                     "--size", "2048", "--threads", "1"]) == 0
    out = capsys.readouterr()
    res = json.loads(out.out)
    _check_result(res, ["tanh", "log_softmax"], ("float64",), size=2048)
    assert res["meta"]["repeat"] == common.QUICK_REPEAT and res["meta"]["threads"] == 1
    assert out.err == ""  # no progress bar with --json


def test_main_table_and_progress_on_stderr(capsys, restore_threads):
    assert cli.main(["--quick", "--ops", "swish", "--dtype", "float32", "--size", "1024", "--threads", "1"]) == 0
    out = capsys.readouterr()
    assert "silu" in out.out and "roofline copy" in out.out  # alias resolved
    assert "2/2" in out.err and "#" in out.err


def test_quick_defaults(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "run", lambda *a, **k: seen.update(args=a, kw=k) or {"meta": {}, "rows": []})
    monkeypatch.setattr(cli, "format_table", lambda res: "")
    cli.main(["--quick"])
    assert seen["args"][2:] == (common.QUICK_SIZE, common.QUICK_REPEAT)
    cli.main([])
    assert seen["args"][2:] == (1 << 24, common.DEFAULT_REPEAT) and seen["kw"]["threads"] is None
    cli.main(["--quick", "--size", "100", "--repeat", "7", "--threads", "3", "--dtype", "float64"])
    assert seen["args"][1:] == (("float64",), 100, 7) and seen["kw"]["threads"] == 3


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("before", [None, 3])
def test_threads_set_for_the_run_and_restored(n, before, monkeypatch, restore_threads):
    fastact.set_num_threads(before)
    default = fastact.get_num_threads()
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    during = []
    real = timing.measure_rooflines

    def spy(x, g, out, threads, repeat, pool=None, previous=None):
        during.append((fastact.get_num_threads(), threads, pool is not None,
                       torch.get_num_threads() if torch is not None else None))
        return real(x, g, out, threads, repeat, pool, previous)

    monkeypatch.setattr(cpu, "measure_rooflines", spy)
    res = cpu.run(["relu"], ("float32",), size=SIZE, repeat=1, threads=n, progress=False)
    assert during and all(d[:3] == (n, n, n > 1) for d in during)
    if torch is not None:
        assert all(d[3] == n for d in during)
        assert torch.get_num_threads() == torch_before
    assert res["meta"]["threads"] == n and all(r["threads"] == n for r in res["rows"])
    assert _threads._num_threads == before and fastact.get_num_threads() == default


def test_default_threads_is_fastacts(restore_threads):
    fastact.set_num_threads(1)
    res = cpu.run(["identity"], ("float64",), size=1024, repeat=1, progress=False)
    assert res["meta"]["threads"] == 1 and _threads._num_threads == 1


def test_threads_restored_when_the_run_fails(monkeypatch, restore_threads):
    fastact.set_num_threads(None)

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(cpu, "_cases", boom)
    with pytest.raises(RuntimeError):
        cpu.run(["relu"], ("float32",), size=SIZE, repeat=1, threads=1, progress=False)
    assert _threads._num_threads is None


def test_unknown_op_and_bad_arguments():
    with pytest.raises(SystemExit, match=r"unknown op\(s\): 'nope'.*known: .*softmax") as e:
        cpu.run(["relu", "nope"], progress=False)
    assert "log_softmax" in str(e.value)
    with pytest.raises(SystemExit, match="dtype"):
        cpu.run(["relu"], ("float16",), progress=False)
    with pytest.raises(SystemExit, match="threads"):
        cpu.run(["relu"], threads=0, progress=False)
    for argv in (["--threads", "0"], ["--size", "-5"], ["--repeat", "x"], ["--dtype", "int8"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2  # argparse usage error


def test_cli_rejects_unknown_op():
    r = subprocess.run([sys.executable, "-m", "fastact", "bench", "--ops", "relu,nope"],
                       check=False, capture_output=True, text=True)
    assert r.returncode != 0 and "unknown op(s): 'nope'" in r.stderr and "known:" in r.stderr


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for word in ("--size", "--dtype", "--ops", "--repeat", "--threads", "--quick", "--json",
                 "log_softmax", "roofline", "np.copyto", "np.add", "torch", "scipy", "meta", "rows",
                 "--device", "cuda", "cupy.copyto", "CUDA events", "Without a GPU"):
        assert word in text, word


def test_median_time_excludes_the_warmup_call(monkeypatch):
    clock = [0.0]
    calls = []

    def fn():  # the first call is slow (a compile), the others take 1 s each
        clock[0] += 100.0 if not calls else 1.0
        calls.append(1)

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    assert timing.median_time(fn, 5) == 1.0
    assert len(calls) == 1 + 3  # warm-up over SLOW_CALL_S: 3 timed runs

    calls.clear()
    clock[0] = 0.0

    def fast():
        clock[0] += 1e-3 if calls else 0.5e-3
        calls.append(1)

    assert timing.median_time(fast, 5, min_time=0.02) == pytest.approx(1e-3)
    assert len(calls) == 1 + 20  # extended to min_time


def test_chunked_roofline_covers_the_whole_array():
    x = np.arange(1001, dtype=np.float64)
    g = np.ones_like(x)
    out = np.zeros_like(x)
    with ThreadPoolExecutor(2) as pool:
        timing.chunked(pool, timing._copy, (x, out), 3)()
        np.testing.assert_array_equal(out, x)
        timing.chunked(pool, timing._add, (x, g, out), 3)()
        np.testing.assert_array_equal(out, x + 1)
        roof = timing.measure_rooflines(x, g, out, 2, 1, pool)
        prev = {k: dict(v, one_thread_gb_per_s=1e6, threaded_gb_per_s=1e-6) for k, v in roof.items()}
        merged = timing.measure_rooflines(x, g, out, 2, 1, pool, previous=prev)
    for kind in ("copy", "add"):
        assert merged[kind]["one_thread_gb_per_s"] == 1e6 == merged[kind]["gb_per_s"]
        assert merged[kind]["threads"] == 1 and _pos(merged[kind]["threaded_gb_per_s"])


def test_peer_columns_filled_when_installed(restore_threads):
    pytest.importorskip("torch")
    ops = ["sigmoid", "softsign", "log_softmax"]
    res = cpu.run(ops, ("float32",), size=SIZE, repeat=1, threads=1, progress=False)
    _check_result(res, ops, ("float32",))
    got = {(r["op"], r["direction"]): r for r in res["rows"]}
    for key in [("sigmoid", "forward"), ("sigmoid", "backward"), ("softsign", "forward"),
                ("log_softmax", "forward"), ("log_softmax", "backward")]:
        assert _pos(got[key]["torch_ms"]) and _pos(got[key]["speedup_vs_torch"]), key
    assert got[("softsign", "backward")]["torch_ms"] is None  # no aten kernel: left empty
    for key in [("sigmoid", "forward"), ("log_softmax", "forward")]:
        assert _pos(got[key]["scipy_ms"]) and _pos(got[key]["speedup_vs_scipy"]), key
    for key in [("sigmoid", "backward"), ("softsign", "forward"), ("log_softmax", "backward")]:
        assert got[key]["scipy_ms"] is None, key
    v = res["meta"]["versions"]
    assert v["torch"] and v["scipy"]


def test_peer_columns_empty_when_peers_are_absent(monkeypatch, restore_threads):
    monkeypatch.setattr(baselines, "peer_available", lambda name: False)
    ops = ["sigmoid", "gelu", "softmax"]
    res = cpu.run(ops, ("float64",), size=SIZE, repeat=1, threads=1, progress=False)
    _check_result(res, ops, ("float64",))
    for r in res["rows"]:
        assert all(r[k] is None for k in PEER_KEYS), r
        # the NumPy gelu baseline needs scipy.special.erf: empty without scipy
        assert (r["numpy_ms"] is None) == (r["op"] == "gelu")
    assert res["meta"]["versions"]["torch"] is None and res["meta"]["versions"]["scipy"] is None
    table = report.format_table(res)
    assert "torch: not installed" in table and "scipy: not installed" in table


def _inputs(dtype=np.float64):
    x = np.linspace(-8, 8, 1001).astype(dtype)
    g = np.linspace(-1, 1, 1001).astype(dtype)
    return x, g


def test_numpy_baselines_agree_with_fastact():
    x, g = _inputs()
    table = baselines.COMPARISONS
    for name, f in fastact.ACTIVATIONS.items():
        np.testing.assert_allclose(table[name].numpy(x), f(x), rtol=1e-12, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(table[name].numpy_grad(g, x), f.backward(g, x), rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    x2, g2 = x[:1000].reshape(4, 250), g[:1000].reshape(4, 250)
    for name in common.ROW_OPS:
        f = fastact.ROW_FUNCTIONS[name]
        y2 = f(x2)
        np.testing.assert_allclose(table[name].numpy(x2), y2, rtol=1e-12, atol=1e-300, err_msg=name)
        np.testing.assert_allclose(table[name].numpy_grad(g2, y2), f.backward(g2, y2),
                                   rtol=1e-9, atol=1e-12, err_msg=name)


def test_torch_peers_compute_the_same_function():
    torch = pytest.importorskip("torch")
    x, g = _inputs()
    tx, tg, to = torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(np.empty_like(x))
    names = list(fastact.ACTIVATIONS) + list(common.ROW_OPS)
    covered = set()
    for name in names:
        f = fastact.FUNCTIONS[name]
        xx, gg, oo = (tx, tg, to) if name not in common.ROW_OPS else (
            tx[:1000].reshape(4, 250), tg[:1000].reshape(4, 250), to[:1000].reshape(4, 250))
        y = f(xx.numpy())
        fwd, bwd = baselines.torch_forward(torch, name), baselines.torch_backward(torch, name)
        if fwd is not None:
            covered.add((name, "forward"))
            np.testing.assert_allclose(fwd(xx, oo).numpy(), y, rtol=1e-7, atol=1e-14, err_msg=name)
        if bwd is not None:
            covered.add((name, "backward"))
            if name in common.ROW_OPS:
                want = f.backward(gg.numpy(), y)
            else:
                want = f.backward(gg.numpy(), xx.numpy())
            got = bwd(gg, xx, torch.from_numpy(y), oo).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-14, err_msg=name)
    # everything but the awkward ones has a torch column
    missing = {(n, d) for n in names for d in ("forward", "backward")} - covered
    assert missing == {("identity", "forward"), ("identity", "backward"),
                       ("log_sigmoid", "backward"), ("softsign", "backward")}


def test_scipy_peers_compute_the_same_function():
    x, _ = _inputs()
    for name in ("sigmoid", "log_sigmoid"):
        out = np.empty_like(x)
        baselines.scipy_forward(scipy, name)(x, out)
        np.testing.assert_allclose(out, fastact.ACTIVATIONS[name](x), rtol=1e-12, err_msg=name)
    x2 = x[:1000].reshape(4, 250)
    for name in common.ROW_OPS:
        got = baselines.scipy_forward(scipy, name)(x2, np.empty_like(x2))
        np.testing.assert_allclose(got, fastact.ROW_FUNCTIONS[name](x2), rtol=1e-12, atol=1e-300, err_msg=name)
    assert baselines.scipy_forward(scipy, "relu") is None


def test_call_overhead_report():
    co = cpu.call_overhead("float32", n=256, number=20, repeat=2)
    assert co["size"] == 256 and co["dtype"] == "float32"
    assert set(co["ops"]) == set(cpu.OVERHEAD_OPS)
    assert co["np_negative_us"] > 0
    for v in co["ops"].values():
        assert v["us"] > 0 and np.isfinite(v["us"])
        assert v["ratio_to_np_negative"] == pytest.approx(v["us"] / co["np_negative_us"])
    result = cpu.run(["relu"], ("float32",), size=1 << 10, repeat=1, progress=False)
    assert set(result["meta"]["call_overhead"]["ops"]) == set(cpu.OVERHEAD_OPS)
    assert "call overhead at 4096 float32 elements" in report.format_table(result)


# ------------------------------------------------------------------ --device cuda

CUDA_META_KEYS = {"device", "gpu", "reason", "size", "row_shape", "dtypes", "ops", "repeat", "rooflines",
                  "versions", "elapsed_s"}


def _env_without_simulator():
    import os

    return {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}


def test_bench_module_imports_no_gpu_library():
    code = ("import sys, fastact, fastact.bench.cli, fastact.bench.baselines; "
            "bad = [m for m in ('cupy', 'numba.cuda') if m in sys.modules]; "
            "assert not bad, bad; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=_env_without_simulator())
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_cli_cuda_without_a_gpu_measures_nothing():
    """The real check, in a process without the simulator: one line, exit 0."""
    cmd = [sys.executable, "-m", "fastact", "bench", "--device", "cuda", "--quick", "--ops", "relu"]
    env = _env_without_simulator()
    r = subprocess.run(cmd + ["--json"], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert set(res["meta"]) == CUDA_META_KEYS and res["meta"]["device"] == "cuda"
    if res["meta"]["gpu"] is not None:  # a machine with a GPU: the real run
        assert res["meta"]["reason"] is None and len(res["rows"]) == 4
        assert all(r_["error"] is None and _pos(r_["gb_per_s"]) for r_ in res["rows"]), res["rows"]
        return
    assert res["rows"] == [] and res["meta"]["reason"]
    assert "no CUDA GPU present" in r.stderr and "nothing measured" in r.stderr
    t = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert t.returncode == 0
    lines = t.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastact bench: no CUDA GPU present (")
    assert lines[0].endswith("); nothing measured") and res["meta"]["reason"] in lines[0]


def test_cuda_unavailable_reasons(monkeypatch):
    from fastact.cuda import target as _cuda

    real = cuda.importlib.util.find_spec
    if _cuda.simulated() and real("cupy") and real("numba_cuda"):
        # tests/conftest.py: the simulator is no GPU (checked after the imports)
        assert "NUMBA_ENABLE_CUDASIM" in cuda.cuda_unavailable()
    for missing, word in (("cupy", "CuPy"), ("numba_cuda", "numba-cuda")):
        monkeypatch.setattr(cuda.importlib.util, "find_spec",
                            lambda name, *a, _m=missing: None if name == _m else object())
        assert word in cuda.cuda_unavailable() and "fastact[cuda]" in cuda.cuda_unavailable()


def test_main_cuda_reports_the_reason(capsys, monkeypatch):
    monkeypatch.setattr(cuda, "cuda_unavailable", lambda: "test: no driver")
    assert cli.main(["--device", "cuda"]) == 0
    assert capsys.readouterr().out == "fastact bench: no CUDA GPU present (test: no driver); nothing measured\n"
    assert cli.main(["--device", "cuda", "--json", "--ops", "gelu,softmax", "--dtype", "float64"]) == 0
    out = capsys.readouterr()
    res = json.loads(out.out)
    assert res["rows"] == [] and res["meta"]["gpu"] is None and res["meta"]["reason"] == "test: no driver"
    assert res["meta"]["ops"] == ["gelu", "softmax"] and res["meta"]["dtypes"] == ["float64"]
    assert res["meta"]["size"] == 1 << 24 and res["meta"]["device"] == "cuda"
    assert "no CUDA GPU present" in out.err
    with pytest.raises(SystemExit, match="threads"):
        cli.main(["--device", "cuda", "--threads", "2"])
    with pytest.raises(SystemExit, match="unknown op"):
        cuda.run_cuda(["nope"], progress=False)


class _FakeEvent:
    def record(self, stream=None):
        import time

        self.t = time.perf_counter()

    def synchronize(self):
        pass


def _fake_cupy():
    """A CuPy stand-in on NumPy arrays (fastact's CPU path), for run_cuda's bookkeeping."""
    import types

    cuda = types.SimpleNamespace(
        Event=_FakeEvent,
        get_elapsed_time=lambda a, b: max(b.t - a.t, 1e-9) * 1e3,
        get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: None),
        Device=lambda: types.SimpleNamespace(id=0, compute_capability="90"),
        runtime=types.SimpleNamespace(getDeviceProperties=lambda i: {
            "name": b"Fake GPU", "multiProcessorCount": 132, "totalGlobalMem": 80 * 2**30}),
    )
    return types.SimpleNamespace(
        __version__="0.fake", cuda=cuda, asarray=np.asarray, empty_like=np.empty_like, copyto=np.copyto,
        exp=np.exp, tanh=np.tanh, maximum=np.maximum, where=np.where,
        get_default_memory_pool=lambda: types.SimpleNamespace(free_all_blocks=lambda: None),
    )


def test_run_cuda_rows_with_a_fake_device(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    monkeypatch.setattr(cuda, "cuda_unavailable", lambda: None)
    monkeypatch.setattr(baselines, "_cupy_erf", lambda: scipy.special.erf)
    monkeypatch.setattr(cuda, "CUDA_MAX_CALLS", 2)
    ops = ["sigmoid", "softsign", "gelu", "softmax"]
    res = cuda.run_cuda(ops, ("float32", "float64"), size=SIZE, repeat=1, progress=False)
    meta, rows = res["meta"], res["rows"]
    assert set(meta) == CUDA_META_KEYS and meta["reason"] is None
    assert meta["gpu"] == {"name": "Fake GPU", "compute_capability": "9.0", "sm_count": 132, "memory_gib": 80.0}
    assert [(r["dtype"], r["op"], r["direction"]) for r in rows] == [
        (dt, op, d) for dt in ("float32", "float64") for op in ops for d in ("forward", "backward")]
    for r in rows:
        assert set(r) == set(cuda.CUDA_ROW_KEYS) and r["error"] is None, r
        assert _pos(r["median_ms"]) and 1 <= r["calls_per_sample"] <= 2
        moved = (2 if r["direction"] == "forward" else 3) * r["size"] * np.dtype(r["dtype"]).itemsize
        assert r["gb_per_s"] == pytest.approx(moved / (r["median_ms"] * 1e-3) / 1e9)
        assert r["roofline_gb_per_s"] == meta["rooflines"][r["dtype"]]["copy"]["gb_per_s"]
        assert r["roofline_fraction"] == pytest.approx(r["gb_per_s"] / r["roofline_gb_per_s"])
        has_peer = r["op"] in ("sigmoid", "gelu")
        assert (r["cupy_ms"] is not None) == has_peer == (r["speedup_vs_cupy"] is not None), r
        assert r["shape"] == ([SIZE // 1024, 1024] if r["op"] == "softmax" else [SIZE])
    json.dumps(res, allow_nan=False)
    table = report.format_cuda_table(res)
    for word in ("Fake GPU", "cc 9.0", "sigmoid", "softmax", "xcupy", "float64: copy"):
        assert word in table


def test_run_cuda_reports_an_op_that_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    monkeypatch.setattr(cuda, "cuda_unavailable", lambda: None)
    monkeypatch.setattr(cuda, "CUDA_MAX_CALLS", 1)
    monkeypatch.setattr(cuda, "_with_out", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no GPU path")))
    res = cuda.run_cuda(["relu"], ("float32",), size=256, repeat=1, progress=False)
    assert [r["error"] for r in res["rows"]] == ["RuntimeError: no GPU path"] * 2
    assert all(r["gb_per_s"] is None and r["roofline_fraction"] is None for r in res["rows"])
    assert "error: RuntimeError: no GPU path" in report.format_cuda_table(res)


def test_cupy_formulas_compute_the_same_function(monkeypatch):
    """The CuPy peers' formulas, evaluated with NumPy standing in for CuPy."""
    monkeypatch.setattr(baselines, "_cupy_erf", lambda: scipy.special.erf)
    x, g = _inputs()
    names = [n for n in fastact.ACTIVATIONS if baselines.cupy_forward(np, n) is not None]
    assert names == ["sigmoid", "tanh", "relu", "silu", "gelu"]
    for name in names:
        f = fastact.ACTIVATIONS[name]
        np.testing.assert_allclose(baselines.cupy_forward(np, name)(x), f(x), rtol=1e-12, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(baselines.cupy_backward(np, name)(g, x), f.backward(g, x), rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    monkeypatch.setattr(baselines, "_cupy_erf", lambda: None)
    assert baselines.cupy_forward(np, "gelu") is None and baselines.cupy_backward(np, "gelu") is None
