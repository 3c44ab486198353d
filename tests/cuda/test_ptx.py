"""Every CUDA kernel compiles to real PTX and ptxas assembles it, without spills.

Runs fastact/devtools/gen_gpu_doc.py (in a subprocess without the CUDA simulator) with
``--json`` and checks its results: every kernel of the CUDA modules compiled
and assembled for sm_80 and sm_90, 0 spill bytes, every catalog entry's
forward and backward kernels present in float16/float32/float64, the register
counts within the measured bounds, and docs/gpu.md up to date.

Needs numba-cuda and the pip ptxas (nvidia-cuda-nvcc), both in the test
extra, not a GPU. Without them the module is skipped locally; in CI
(``CI`` set) it fails instead, so that a broken install cannot pass silently.
"""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "gpu.md"
from fastact.devtools import gen_gpu_doc as G  # imports nothing of numba.cuda

from fastact.catalog import ENTRIES  # noqa: E402

DTYPES = ("float16", "float32", "float64")
#: the budget is REGISTER_BUDGET (32, listed in docs/gpu.md when exceeded);
#: these are the measured maxima over all kernels (gelu's gated backward,
#: ptxas 13.5): a kernel growing past them fails
REGISTER_LIMIT = {"sm_80": 72, "sm_90": 96}


def _in_ci():
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing():
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda is not installed (pip install -e '.[test]')"
    if G.find_ptxas() is None:
        return "the pip ptxas is not installed (pip install 'nvidia-cuda-nvcc==13.5.*')"
    return None


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    reason = _missing()
    if reason:
        if _in_ci():
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("ptx") / "ptx.json"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, "-m", "fastact.devtools.gen_gpu_doc", "--json", str(out), "--quiet"], env=env,
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.exists(), f"rc {r.returncode}\n{r.stdout}\n{r.stderr[-5000:]}"
    res = json.loads(out.read_text())
    res["_run"] = {"returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr}
    return res


def test_every_kernel_compiles_and_assembles(result):
    failed = {k["name"]: k["error"] for k in result["kernels"] if not k["ok"]}
    assert not failed, failed
    assert result["kernels"], "no kernel specs found"
    for k in result["kernels"]:
        assert set(k["archs"]) == {"sm_80", "sm_90"}, k["name"]
        for arch, a in k["archs"].items():
            assert isinstance(a["registers"], int) and a["registers"] > 0, (k["name"], arch)
    assert result["_run"]["returncode"] == 0, result["_run"]["stderr"][-3000:]
    assert result["summary"]["total"] == result["summary"]["ok"] == len(result["kernels"])


def test_no_spills(result):
    spills = {(k["name"], arch): (a["spill_stores"], a["spill_loads"])
              for k in result["kernels"] for arch, a in k["archs"].items()
              if a["spill_stores"] or a["spill_loads"]}
    assert not spills, spills
    assert result["summary"]["spilling"] == []


def test_every_catalog_entry_has_its_kernels(result):
    names = {k["name"] for k in result["kernels"]}
    expected = set()
    for e in ENTRIES:
        kinds = ["forward", "backward"] + (["backward_y"] if e.grad_y is not None else [])
        for dt in DTYPES:
            expected |= {f"{e.name}_{kind}_{dt}_1d" for kind in kinds}
            expected.add(f"{e.name}_forward_{dt}_2d")  # strided inputs
    assert not expected - names, sorted(expected - names)
    for k in result["kernels"]:
        assert k["dtype"] in DTYPES, k["name"]
        assert k["dtype"] in k["signature"], k  # the arrays are of the kernel's dtype


def test_register_counts_within_the_measured_bounds(result):
    over = {(k["name"], arch): a["registers"] for k in result["kernels"] for arch, a in k["archs"].items()
            if a["registers"] > REGISTER_LIMIT[arch]}
    assert not over, f"register regression (limits {REGISTER_LIMIT}): {over}"
    # the summary's budget list is exactly the elementwise kernels above 32
    s = result["summary"]
    want = sorted(k["name"] for k in result["kernels"] if k["module"] == G.ELEMENTWISE
                  and max(a["registers"] for a in k["archs"].values()) > G.REGISTER_BUDGET)
    assert s["over_budget"] == want
    for arch in G.ARCHS:
        assert s["max_registers_elementwise"][arch]["all"] == max(
            k["archs"][arch]["registers"] for k in result["kernels"] if k["module"] == G.ELEMENTWISE)


def test_launch_bounds_list_is_current(result):
    """fastact/cuda/occupancy.py lists exactly the kernels ptxas keeps in 32
    registers without spilling under the launch bounds (those built with the
    bounds still fit; no unbounded kernel over 32 registers would)."""
    from fastact.cuda.occupancy import FULL_OCCUPANCY

    s = result["summary"]
    names = {k["name"] for k in result["kernels"]}
    assert FULL_OCCUPANCY <= names, f"stale names: {sorted(FULL_OCCUPANCY - names)}"
    assert s["bounded"] == sorted(FULL_OCCUPANCY)
    fix = "regenerate: python -m fastact.devtools.gen_gpu_doc --write"
    assert s["full_occupancy"] == s["bounded"], f"{fix} (now {s['full_occupancy']})"
    for k in result["kernels"]:
        if k["name"] in FULL_OCCUPANCY:
            assert all(a["registers"] <= G.REGISTER_BUDGET for a in k["archs"].values()), k
        elif max(a["registers"] for a in k["archs"].values()) > G.REGISTER_BUDGET:
            assert "probe" in k, k["name"]  # tried under the bounds: it spills there
    assert G.occupancy_source(sorted(FULL_OCCUPANCY)) == G.OCCUPANCY.read_text(), fix


def test_docs_gpu_md_is_up_to_date(result):
    """docs/gpu.md lists every kernel; with the same toolchain it is exactly what
    ``python -m fastact.devtools.gen_gpu_doc --write`` writes now."""
    assert DOC.exists(), "run: python -m fastact.devtools.gen_gpu_doc --write"
    text = DOC.read_text()
    doc_rows = G.parse_markdown(text)
    rows = [tuple(r) for r in G.table_rows(result)]
    fix = "regenerate it: python -m fastact.devtools.gen_gpu_doc --write"
    assert sorted(r[0] for r in doc_rows) == sorted(r[0] for r in rows), f"kernel list differs: {fix}"
    v = result["meta"]["versions"]
    m = re.search(r"Toolchain: ptxas (\S+), numba (\S+), numba-cuda (\S+)\.", text)
    same = m is not None and m.groups() == (v["ptxas"], v["numba"], v["numba_cuda"])
    if not same:
        pytest.skip(f"docs/gpu.md was made with another toolchain ({m and m.groups()}, here {v}): "
                    "kernel names checked, not register counts")
    changed = [(d, r) for d, r in zip(doc_rows, rows) if d != r]
    assert not changed, f"register table differs (doc, now): {changed[:10]}; {fix}"
    assert text == G.markdown(result), f"summary differs: {fix}"


def test_ptxas_report_parsing():
    report = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Zk' for 'sm_90'
ptxas info    : Function properties for _Zk
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 4096 bytes smem, 400 bytes cmem[0]
ptxas info    : Function properties for _Zcallee
    8 bytes stack frame, 2 bytes spill stores, 2 bytes spill loads
"""
    assert G.parse_ptxas(report) == {"registers": 40, "stack_frame": 16, "spill_stores": 10,
                                     "spill_loads": 6, "shared": 4096}
    rows = [("a_forward_float32_1d", "float32", "20", "24", "0"), ("b", "-", "-", "-", "FAILED")]
    table = "\n".join(f"| `{k}` | {d} | {x} | {y} | {s} |" for k, d, x, y, s in rows)
    assert G.parse_markdown(table) == rows
