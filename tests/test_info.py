"""``python -m fastact info``: every field is what the installation says
(checked against the packages themselves, in a subprocess with its own
environment), and bad arguments are an error."""

import importlib.util
import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest


def _info(env_extra, *args):
    env = {**os.environ, **env_extra}
    r = subprocess.run([sys.executable, "-m", "fastact", "info", *args], capture_output=True, text=True,
                       env=env, timeout=300)
    return r


def _json(env_extra):
    r = _info(env_extra, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_fields_match_the_installation(tmp_path):
    cache = tmp_path / "cache"
    env = {"NUMBA_CACHE_DIR": str(cache), "FASTACT_NUM_THREADS": "3", "NUMBA_ENABLE_CUDASIM": "1"}
    before = _json(env)
    assert before["versions"]["numpy"] == np.__version__ and before["versions"]["numba"] == numba.__version__
    assert before["threads"] == {"threads": 3, "from": "FASTACT_NUM_THREADS", "cpus": os.cpu_count()}
    assert before["cache"]["dir"] == str(cache) and before["cache"]["files"] == 0
    assert before["gpu"]["backend"].startswith("CUDA simulator")
    for name, e in before["extras"].items():  # a version exactly where the package is there
        assert (e["version"] is None) == (importlib.util.find_spec(name) is None), (name, e)
    # one kernel compiled into that cache shows up, with its size
    code = "import numpy as np, fastact; fastact.sigmoid(np.zeros(4, np.float32))"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, timeout=300)
    after = _json(env)
    files = [p for p in cache.rglob("*.nb[ic]")]
    assert after["cache"]["files"] == len(files) > 0
    assert after["cache"]["bytes"] == sum(p.stat().st_size for p in files)


def test_cpu_features_are_the_compile_decisions():
    from fastact.cpu import width
    from fastact.scalar.fma import has_fma

    info = _json({})
    assert info["cpu"]["fma"] == has_fma()
    assert info["cpu"]["vector_bits"] == width.describe()["bits"]
    assert _json({"FASTACT_FMA": "0"})["cpu"]["fma"] is False


def test_a_bad_thread_setting_is_reported_not_raised():
    r = _info({"FASTACT_NUM_THREADS": "abc"})
    assert r.returncode == 0, r.stderr
    assert "FASTACT_NUM_THREADS" in r.stdout and "'abc'" in r.stdout


@pytest.mark.parametrize("args", [["--bad"], ["--json", "x"]])
def test_bad_arguments(args):
    r = _info({}, *args)
    assert r.returncode == 2 and "usage: python -m fastact info" in r.stderr
