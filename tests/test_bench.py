"""The benchmark CLI runs and reports every requested row (timings are not checked)."""

import json
import subprocess
import sys

from fastact import bench


def test_run_rows_and_table():
    rows = bench.run(["sigmoid", "relu"], ("float32",), size=4096, repeat=1, progress=False)
    assert [(r["op"], r["direction"]) for r in rows] == [
        ("sigmoid", "forward"), ("sigmoid", "backward"), ("relu", "forward"), ("relu", "backward"),
    ]
    for r in rows:
        assert r["median_ms"] > 0 and r["gb_per_s"] > 0 and r["roofline_fraction"] > 0
        assert r["speedup_vs_numpy"] is not None
    table = bench.format_table(rows)
    assert "sigmoid" in table and "GB/s" in table


def test_cli_json():
    r = subprocess.run(
        [sys.executable, "-m", "fastact", "bench", "--quick", "--json", "--ops", "tanh", "--dtype", "float64", "--size", "1000"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {(x["op"], x["direction"], x["dtype"]) for x in rows} == {
        ("tanh", "forward", "float64"), ("tanh", "backward", "float64")
    }


def test_cli_rejects_unknown_op():
    r = subprocess.run([sys.executable, "-m", "fastact", "bench", "--ops", "nope"], capture_output=True, text=True)
    assert r.returncode != 0 and "nope" in r.stderr


def test_numpy_baselines_agree_with_fastact():
    import numpy as np

    import fastact

    x = np.linspace(-8, 8, 1001)
    for name, f in bench.NUMPY_FORWARD.items():
        np.testing.assert_allclose(f(x), fastact.ACTIVATIONS[name](x), rtol=1e-12, atol=1e-15, err_msg=name)
    g = np.linspace(-1, 1, 1001)
    for name, f in bench.NUMPY_BACKWARD.items():
        np.testing.assert_allclose(f(g, x), fastact.ACTIVATIONS[name].backward(g, x), rtol=1e-9, atol=1e-12, err_msg=name)
