"""The asv suite imports, validates and runs (quick, 1 op) in this environment.

This is CI's benchmark smoke check: a broken benchmark fails the test suite.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ASV = shutil.which("asv") or str(pathlib.Path(sys.executable).with_name("asv"))


@pytest.fixture(autouse=True, scope="module")
def _asv_installed():
    # asv is in the test extra: without it the install is broken, which must not pass as a skip
    assert os.path.exists(ASV), f"asv is not installed (pip install -e '.[test]'); looked for {ASV}"


def _asv(*args, env=None, home=None):
    full_env = dict(os.environ, **(env or {}))
    if home is not None:
        full_env["HOME"] = str(home)  # asv keeps its machine file in $HOME
    return subprocess.run([ASV, *args], cwd=ROOT, check=False, capture_output=True, text=True, env=full_env)


def test_asv_check():
    r = _asv("check", "--python=same")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No problems found" in r.stdout


def test_asv_quick_run_of_every_benchmark_class(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("asv run needs the git repository")
    r = _asv("machine", "--yes", "--machine", "fastact-ci", home=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    env = {"FASTACT_ASV_QUICK": "1", "FASTACT_ASV_OPS": "sigmoid"}
    r = _asv(
        "run", "--python=same", "--quick", "--dry-run", "--show-stderr", "--machine", "fastact-ci",
        env=env, home=tmp_path,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for name in ("Elementwise.time_op", "ElementwiseThroughput.track_gbps", "Rows.time_rows",
                 "RowsThroughput.track_roofline_percent", "Startup.timeraw_import_fastact",
                 "Startup.timeraw_first_call_cold_cache"):
        assert name in out, f"{name} did not run:\n{out[-3000:]}"
    assert " failed" not in out, out[-3000:]
