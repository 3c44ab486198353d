"""Every CUDA kernel compiles to real PTX and ptxas assembles it, without spills.

Runs fastact/devtools/gen_gpu_doc.py (in a subprocess without the CUDA simulator) with
``--json`` and checks its results: every kernel of the CUDA modules compiled
and assembled for sm_80 and sm_90, 0 spill bytes, every catalog entry's
forward and backward kernels present in float16/float32/float64, FMA
contraction off in every kernel, the register counts within the measured
bounds, and docs/gpu.md up to date, made with the installed toolchain.

Needs numba-cuda and the pip ptxas (nvidia-cuda-nvcc), both in the test
extra, not a GPU. Without them the module is skipped locally; in CI
(``CI`` set) it fails instead, so that a broken install cannot pass silently.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "gpu.md"
from fastact.devtools import gen_gpu_doc as G  # imports nothing of numba.cuda

from fastact.catalog import ENTRIES  # noqa: E402

DTYPES = ("float16", "float32", "float64")
#: the budget is REGISTER_BUDGET (32, listed in docs/gpu.md when exceeded);
#: these are the measured maxima over all kernels (with the toolchain
#: docs/gpu.md names): a kernel growing past them fails. sm_80: softmax's warp
#: backward (80, was 72 before its rare rescaled sum for overflowing dot
#: products); sm_90: gelu's gated backward
REGISTER_LIMIT = {"sm_80": 80, "sm_90": 96}
REGENERATE = "env -u NUMBA_ENABLE_CUDASIM python -m fastact.devtools.gen_gpu_doc --write"


def _in_ci():
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing():
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda is not installed (pip install -e '.[test]')"
    if G.find_ptxas() is None:
        return "the pip ptxas is not installed (pip install 'nvidia-cuda-nvcc==13.5.*')"
    return None


def _require_toolchain():
    reason = _missing()
    if reason:
        if _in_ci():
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)


def _no_sim_env():
    return {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    _require_toolchain()
    out = tmp_path_factory.mktemp("ptx") / "ptx.json"
    r = subprocess.run([sys.executable, "-m", "fastact.devtools.gen_gpu_doc", "--json", str(out), "--quiet"],
                       env=_no_sim_env(),
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


def test_every_kernel_compiles_with_fma_contraction_off(result):
    """Every NVVM program of every kernel (both architectures) got ``-fma=0``
    and IR without fast-math flags or llvm.fmuladd: the error-free transforms
    need each product and sum rounded on its own."""
    contracting = {(k["name"], arch): a["contraction"] for k in result["kernels"] for arch, a in k["archs"].items()
                   if not G.contraction_off(a["contraction"])}
    assert not contracting, contracting
    assert result["summary"]["contracting"] == []
    assert len(result["kernels"]) > 200  # every kernel of the three modules, not a sample


def test_contraction_check_flags_a_contracting_kernel():
    """The check above on one small kernel ``o = x*y + z``: built as fastact
    builds its kernels it passes (and ptxas gets no fma); built by plain
    ``cuda.compile_ptx`` (NVVM's default, contraction on) or with fastmath it
    is flagged, and the PTX shows the fused multiply-add it lets NVVM make."""
    _require_toolchain()
    code = textwrap.dedent("""
        import json
        from fastact.devtools import gen_gpu_doc as G
        G._prepare()
        from numba import cuda
        from fastact.cuda import target

        def k(x, y, z, o):
            o[0] = x[0] * y[0] + z[0]

        sig = "void(float64[:], float64[:], float64[:], float64[:])"
        res = {}
        for label, compile_ptx, kw in [("fastact", target.compile_ptx, {}),
                                       ("default", cuda.compile_ptx, {"cc": (9, 0)}),
                                       ("fastmath", cuda.compile_ptx, {"cc": (9, 0), "fastmath": True})]:
            ptx, c = G.compile_recorded(compile_ptx, k, sig, **kw)
            res[label] = [G.contraction_off(c), "fma.rn" in ptx]
        print(json.dumps(res))
    """)
    r = subprocess.run([sys.executable, "-c", code], env=_no_sim_env(), capture_output=True, text=True,
                       timeout=300, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.splitlines()[-1])
    assert res == {"fastact": [True, False], "default": [False, True], "fastmath": [False, True]}


def test_contraction_check_reads_the_ir():
    """Fast-math flags and llvm.fmuladd in the IR handed to NVVM are flagged
    even with -fma=0 (``contract`` lets NVVM fuse regardless); names that
    merely contain the words are not."""
    clean = b'define void @"fastact_fast_contract"(double %a) {\n  %1 = fmul double %a, %a\n}\n'
    assert G.contraction_off(G.contraction([(["-opt=3", "-fma=0"], [clean])]))
    for ir, key in [(b"  %3 = fmul contract double %1, %2\n", "fast_math"),
                    (b"  %3 = call fast double @__nv_exp(double %1)\n", "fast_math"),
                    (b"  %3 = fadd nnan ninf double %1, %2\n", "fast_math"),
                    (b"  %3 = call double @llvm.fmuladd.f64(double %1, double %2, double %0)\n", "fmuladd")]:
        c = G.contraction([(["-fma=0"], [clean, ir])])
        assert c[key] and not G.contraction_off(c), ir
    assert not G.contraction_off(G.contraction([(["-opt=3"], [clean])]))  # NVVM's default: on
    assert not G.contraction_off(G.contraction([(["-fma=0"], [clean]), (["-fma=1"], [clean])]))
    assert not G.contraction_off(G.contraction([]))  # nothing recorded: the check saw no compilation


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


#: pyproject's test-extra distribution behind each version docs/gpu.md names
PINS = {"ptxas": "nvidia-cuda-nvcc", "nvvm": "nvidia-nvvm", "numba": "numba", "numba_cuda": "numba-cuda"}


def _documented_toolchain(result):
    """docs/gpu.md's register table and REGISTER_LIMIT hold for one toolchain
    (pinned in pyproject's test extra): another one fails, loudly, instead
    of leaving the register checks unchecked."""
    assert DOC.exists(), f"run: {REGENERATE}"
    doc = G.toolchain(DOC.read_text())
    here = result["meta"]["versions"]
    assert doc == here, (
        f"PTX toolchain drift: docs/gpu.md was made with {doc}, installed is {here}. Either install "
        "the pinned versions (pip install -e '.[test]', pyproject.toml's test extra), or move to the "
        f"installed toolchain: regenerate docs/gpu.md ({REGENERATE}), update REGISTER_LIMIT in "
        "tests/cuda/test_ptx.py to the new maxima, and the pins in pyproject.toml's test extra.")


def test_installed_toolchain_is_the_documented_one(result):
    _documented_toolchain(result)


def test_toolchain_drift_fails_loudly():
    doc = G.toolchain(DOC.read_text())
    assert doc is not None and set(doc) == set(PINS)
    here = dict(doc, nvvm="99.1.0")
    with pytest.raises(AssertionError) as e:
        _documented_toolchain({"meta": {"versions": here}})
    msg = str(e.value)
    assert str(doc) in msg and str(here) in msg and "gen_gpu_doc --write" in msg and "pinned" in msg


def test_pinned_toolchain_is_the_documented_one():
    """pyproject's test extra pins exactly the versions docs/gpu.md was made with."""
    import tomllib

    from packaging.requirements import Requirement

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    pins = {r.name: str(r.specifier) for r in map(Requirement, extra)}
    doc = G.toolchain(DOC.read_text())
    assert doc is not None, f"docs/gpu.md names no toolchain: {REGENERATE}"
    want = {PINS[k]: f"=={v}" for k, v in doc.items()}
    assert {d: pins.get(d) for d in want} == want, "pyproject.toml's test extra must pin docs/gpu.md's toolchain"


def test_docs_gpu_md_is_up_to_date(result):
    """docs/gpu.md lists every kernel and is exactly what
    ``python -m fastact.devtools.gen_gpu_doc --write`` writes now."""
    _documented_toolchain(result)
    text = DOC.read_text()
    doc_rows = G.parse_markdown(text)
    rows = [tuple(r) for r in G.table_rows(result)]
    fix = f"regenerate it: {REGENERATE}"
    assert sorted(r[0] for r in doc_rows) == sorted(r[0] for r in rows), f"kernel list differs: {fix}"
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
