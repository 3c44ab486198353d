"""Compile every fastact CUDA kernel to PTX and assemble it with ptxas (no GPU needed).

Run: python -m fastact.devtools.gen_gpu_doc [--write] [--json PATH] [--jobs N] [--ptxas PATH]

Every ``kernel_specs()`` of the CUDA kernel modules (``MODULES``:
``fastact.cuda.elementwise``, ``rows``, ``layers``) is compiled to PTX for
compute capability 8.0 and 9.0 exactly as fastact's launches compile it
(``fastact.cuda.target.compile_ptx``: FMA contraction off), then assembled by the
pip-installed ptxas (``nvidia-cuda-nvcc``; the system's CUDA may be too old
for numba-cuda's PTX) with ``-arch=sm_80|sm_90 -v``; registers, spill
stores/loads, stack frame and shared memory are parsed from its report.

FMA contraction is checked on every compilation, from what libnvvm itself
receives (``NvvmRecorder``, on numba-cuda's binding): each NVVM program of a
kernel must have ``-fma=0`` (NVVM's default is on) and IR without fast-math
flags or ``llvm.fmuladd``. The PTX alone cannot tell: explicit fused
multiply-adds (``fastact.scalar.fma.fma``, libdevice) put ``fma.rn`` in it.

``--write`` regenerates docs/gpu.md, ``--json PATH`` dumps the results
(tests/cuda/test_ptx.py runs this tool with it). Exit status 1 if any kernel
fails to compile or assemble, spills, or is compiled with FMA contraction.

Needs numba-cuda and nvidia-cuda-nvcc (the test extra), not a GPU: kernels
calling device functions ask the driver for the current device's compute
capability, so this process (only this one, never the package) answers
with a stand-in device. NUMBA_ENABLE_CUDASIM must be off: it is removed
from this process's environment before numba.cuda is imported.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import pathlib
import re
import sys
import tempfile
import time

from fastact.devtools.ptxas import assemble, find_ptxas, parse_ptxas, ptxas_version  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parents[2]

OUT = ROOT / "docs" / "gpu.md"
#: the modules whose ``kernel_specs()`` are checked (absent ones are skipped)
MODULES = ("fastact.cuda.elementwise", "fastact.cuda.rows", "fastact.cuda.layers")
#: the module of the elementwise kernels (held to the register budget)
ELEMENTWISE = "fastact.cuda.elementwise"
ARCHS = {"sm_80": (8, 0), "sm_90": (9, 0)}
#: elementwise kernels should stay within this (256 threads x 8 blocks per SM)
REGISTER_BUDGET = 32
DTYPES = ("float16", "float32", "float64")
_DTYPE_RE = re.compile(r"(?:^|_)(float16|float32|float64)(?:_|$)")


# ------------------------------------------------------------------ environment


class _Device:
    """Stand-in for the current device when compiling without a GPU."""

    compute_capability = (9, 0)
    name = "no device (PTX only)"


def _prepare():
    """Import numba.cuda for real compilation without a driver (this process only)."""
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
    if "numba.cuda" in sys.modules:
        from numba import config

        if getattr(config, "ENABLE_CUDASIM", 0):
            raise SystemExit("gen_gpu_doc: numba.cuda was imported with NUMBA_ENABLE_CUDASIM on")
    import numba.cuda.dispatcher as D

    D.get_current_device = lambda: _Device()
    nvvm_recorder()


def collect_specs():
    """[(module, name, pyfunc, signature)] of every present CUDA module."""
    specs, seen = [], {}
    for modname in MODULES:
        if importlib.util.find_spec(modname) is None:
            continue
        mod = importlib.import_module(modname)
        if not hasattr(mod, "kernel_specs"):
            continue
        for name, fn, sig in mod.kernel_specs():
            if name in seen:
                raise SystemExit(f"gen_gpu_doc: kernel {name!r} from {modname} and {seen[name]}")
            seen[name] = modname
            specs.append((modname, name, fn, sig))
    return specs


# ------------------------------------------------------------------ FMA contraction

#: an FP instruction with fast-math flags (``fast`` = all of them; ``contract``
#: alone lets NVVM fuse a multiply and an add whatever ``-fma`` says)
_FAST_MATH_RE = re.compile(rb"\b(?:fadd|fsub|fmul|fdiv|frem|fneg|fcmp|call|select|phi)"
                           rb"((?: (?:fast|reassoc|nnan|ninf|nsz|arcp|contract|afn))+) ")
_FLAG_WORDS = (b" fast ", b" reassoc ", b" nnan ", b" ninf ", b" nsz ", b" arcp ", b" contract ", b" afn ")


class NvvmRecorder:
    """numba-cuda's libnvvm binding (``numba.cuda.cudadrv.nvvm._nvvm``),
    recording per compiled program the options and IR modules libnvvm gets
    (libdevice, added lazily, is NVIDIA's and not recorded)."""

    def __init__(self, binding):
        self._binding = binding
        self._modules = {}  # program handle -> IR modules added so far
        self.log = []  # (options, IR modules) per compiled program, in order

    def __getattr__(self, name):
        return getattr(self._binding, name)

    def add_module_to_program(self, prog, buffer, size, name):
        self._modules.setdefault(prog, []).append(bytes(buffer[:size]))
        return self._binding.add_module_to_program(prog, buffer, size, name)

    def compile_program(self, prog, n, options):
        self.log.append(([o.decode() if isinstance(o, bytes) else str(o) for o in options[:n]],
                         self._modules.pop(prog, [])))
        return self._binding.compile_program(prog, n, options)

    def destroy_program(self, prog):
        self._modules.pop(prog, None)
        return self._binding.destroy_program(prog)


def nvvm_recorder():
    """The recorder on numba-cuda's libnvvm binding, installed on first use
    (this process only: a tool, never the package)."""
    from numba.cuda.cudadrv import nvvm

    if not isinstance(nvvm._nvvm, NvvmRecorder):
        nvvm._nvvm = NvvmRecorder(nvvm._nvvm)
    return nvvm._nvvm


def contraction(programs):
    """What the NVVM programs [(options, IR modules)] of one compilation
    allow: ``{"programs", "fma": [-fma value per program, None = absent:
    NVVM's default, on], "fast_math": [flagged instructions, a few],
    "fmuladd": modules calling llvm.fmuladd}``."""
    fma, flagged, fmuladd = [], [], 0
    for options, modules in programs:
        vals = [o.split("=", 1)[1] for o in options if o.startswith("-fma=")]
        fma.append(vals[-1] if vals else None)
        for m in modules:
            fmuladd += b"llvm.fmuladd" in m
            if any(w in m for w in _FLAG_WORDS):
                flagged += [x.group(0).decode().strip() for x in _FAST_MATH_RE.finditer(m)][:5 - len(flagged)]
    return {"programs": len(programs), "fma": fma, "fast_math": flagged, "fmuladd": fmuladd}


def contraction_off(c):
    """True when every NVVM program of a compilation had contraction off."""
    return c["programs"] > 0 and all(v == "0" for v in c["fma"]) and not c["fast_math"] and not c["fmuladd"]


def compile_recorded(compile_ptx, *args, **kwargs):
    """``(ptx, contraction)`` of ``compile_ptx(*args, **kwargs)`` (which returns ``(ptx, resty)``)."""
    rec = nvvm_recorder()
    start = len(rec.log)
    ptx, _ = compile_ptx(*args, **kwargs)
    return ptx, contraction(rec.log[start:])


# ------------------------------------------------------------------ work

_SPECS = None  # set in the parent before the pool forks
_PTXAS = None


def _check(index):
    modname, name, fn, sig = _SPECS[index]
    from fastact.cuda import target

    row = {"name": name, "module": modname, "dtype": kernel_dtype(name), "signature": sig,
           "ok": True, "error": None, "archs": {}}
    with tempfile.TemporaryDirectory(prefix="fastact-ptx-") as wd:
        for arch, cc in ARCHS.items():
            try:
                ptx, fp = compile_recorded(target.compile_ptx, fn, sig, cc=cc)
            except Exception as e:  # noqa: BLE001 - reported, the run continues
                row["ok"], row["error"] = False, f"compile {arch}: {type(e).__name__}: {e}"[:2000]
                break
            try:
                row["archs"][arch] = dict(assemble(_PTXAS, ptx, arch, wd), contraction=fp)
            except Exception as e:  # noqa: BLE001
                row["ok"], row["error"] = False, f"assemble {arch}: {e}"[:2000]
                break
        if row["ok"] and not _bounded(name) and _over_budget(row):
            row["probe"] = _probe(fn, sig, wd)
    return index, row


def _over_budget(row):
    return max(a["registers"] for a in row["archs"].values()) > REGISTER_BUDGET


def _probe(fn, sig, wd):
    """The kernel compiled with ``target.LAUNCH_BOUNDS`` (32 registers at
    most): {arch: ptxas report}, or None where it fails to build."""
    from fastact.cuda import target

    out = {}
    for arch, cc in ARCHS.items():
        try:
            ptx, _ = target.compile_ptx(fn, sig, cc=cc, bounds=target.LAUNCH_BOUNDS)
            out[arch] = assemble(_PTXAS, ptx, arch, wd)
        except Exception:  # noqa: BLE001 - a failed probe keeps the kernel unbounded
            return None
    return out


def _no_spill(archs):
    return archs is not None and all(a["spill_stores"] == a["spill_loads"] == 0 for a in archs.values())


def full_occupancy(rows):
    """The kernels to build with launch bounds: those built so now that
    still assemble without spills, and those whose probe did."""
    return sorted(r["name"] for r in rows if r["ok"] and (
        (_bounded(r["name"]) and _no_spill(r["archs"]))
        or _no_spill(r.get("probe"))))


def _group_key(name):
    """Kernels of one catalog entry share device functions: one worker compiles them."""
    m = re.match(r"(.*?)_(forward|backward|gated)", name)
    return m.group(1) if m else name


def kernel_dtype(name):
    m = _DTYPE_RE.search(name)
    return m.group(1) if m else None


def run(jobs=None, ptxas=None, progress=True):
    """Check every kernel; returns ``{"meta": ..., "kernels": [...], "summary": ...}``."""
    global _SPECS, _PTXAS
    t0 = time.perf_counter()
    _PTXAS = find_ptxas(ptxas)
    if _PTXAS is None:
        raise SystemExit("gen_gpu_doc: ptxas not found: pip install 'nvidia-cuda-nvcc==13.5.*' "
                         "(or set FASTACT_PTXAS / --ptxas)")
    _prepare()
    _SPECS = collect_specs()
    n = len(_SPECS)
    jobs = max(1, min(jobs or os.cpu_count() or 1, n or 1))
    # group by catalog entry, biggest groups first (load balance)
    groups = {}
    for i, s in enumerate(_SPECS):
        groups.setdefault(_group_key(s[1]), []).append(i)
    order = [i for g in sorted(groups.values(), key=len, reverse=True) for i in g]
    rows = [None] * n
    done = 0
    if jobs > 1:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(jobs) as pool:
            # chunks of one group keep an entry's device functions in one worker
            for i, row in pool.imap_unordered(_check, order, chunksize=3):
                rows[i] = row
                done += 1
                if progress:
                    print(f"\r{done}/{n} {row['name']:<50}", end="", file=sys.stderr, flush=True)
    else:
        for i in order:
            rows[i] = _check(i)[1]
            done += 1
            if progress:
                print(f"\r{done}/{n} {rows[i]['name']:<50}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    import numba

    meta = {
        "archs": list(ARCHS),
        "ptxas": _PTXAS,
        "versions": {
            "ptxas": ptxas_version(_PTXAS),
            "numba": numba.__version__,
            "numba_cuda": _dist_version("numba-cuda"),
            "nvvm": _dist_version("nvidia-nvvm"),
        },
        "modules": sorted({r["module"] for r in rows}),
        "jobs": jobs,
        "register_budget": REGISTER_BUDGET,
        "elapsed_s": time.perf_counter() - t0,
    }
    return {"meta": meta, "kernels": rows, "summary": summarize(rows)}


def _dist_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def summarize(rows):
    ok = [r for r in rows if r["ok"]]
    elem = [r for r in ok if r["module"] == ELEMENTWISE]
    max_regs = {}
    for arch in ARCHS:
        max_regs[arch] = {"all": max((r["archs"][arch]["registers"] for r in elem), default=None)}
        for dt in DTYPES:
            max_regs[arch][dt] = max((r["archs"][arch]["registers"] for r in elem if r["dtype"] == dt),
                                     default=None)
    over = sorted(r["name"] for r in elem if _over_budget(r))
    spilling = sorted(r["name"] for r in ok
                      if any(a["spill_stores"] or a["spill_loads"] for a in r["archs"].values()))
    return {
        "total": len(rows),
        "ok": len(ok),
        "failed": sorted(r["name"] for r in rows if not r["ok"]),
        "spilling": spilling,
        "elementwise": len(elem),
        "max_registers_elementwise": max_regs,
        "over_budget": over,
        "relocatable": sorted(r["name"] for r in ok if any(a["mode"] == "relocatable" for a in r["archs"].values())),
        "contracting": sorted(r["name"] for r in ok
                              if not all(contraction_off(a["contraction"]) for a in r["archs"].values())),
        "full_occupancy": full_occupancy(rows),
        "bounded": sorted(r["name"] for r in ok if _bounded(r["name"])),
    }


def _bounded(name):
    from fastact.cuda import target

    return target.launch_bounds(name) is not None


# ------------------------------------------------------------------ docs/gpu.md


def _regs(r, arch):
    return str(r["archs"][arch]["registers"]) if arch in r["archs"] else "-"


def _spills(r):
    if not r["ok"]:
        return "FAILED"
    st = sum(a["spill_stores"] for a in r["archs"].values())
    ld = sum(a["spill_loads"] for a in r["archs"].values())
    return "0" if st == ld == 0 else f"{st} st / {ld} ld"


def table_rows(result):
    """(kernel, dtype, regs sm_80, regs sm_90, spills) per kernel, as docs/gpu.md lists them."""
    return [(r["name"], r["dtype"] or "-", _regs(r, "sm_80"), _regs(r, "sm_90"), _spills(r))
            for r in result["kernels"]]


def markdown(result):
    """The text of docs/gpu.md: how the kernels are checked, the summary, the
    elementwise kernels over the register budget, every kernel's row."""
    lines = _intro(result) + _summary(result) + _over_budget_table(result)
    lines += [
        "",
        "## Kernels",
        "",
        "| kernel | dtype | regs sm_80 | regs sm_90 | spills |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| `{k}` | {dt} | {a} | {b} | {sp} |" for k, dt, a, b, sp in table_rows(result)]
    return "\n".join(lines) + "\n"


def _intro(result):
    meta, s = result["meta"], result["summary"]
    v = meta["versions"]
    return [
        "# CUDA kernels: PTX, registers and spills",
        "",
        "Generated by `python -m fastact.devtools.gen_gpu_doc --write` (needs the test extra: numba-cuda,",
        "nvidia-cuda-nvcc; no GPU). tests/cuda/test_ptx.py reruns the tool and checks this file.",
        "",
        "Every kernel fastact can launch (the `kernel_specs()` of "
        + ", ".join(f"`{m}`" for m in meta["modules"]) + ")",
        "is compiled to PTX for compute capability 8.0 and 9.0 as fastact's launches compile it",
        "(FMA contraction off), then assembled by the pip-installed ptxas with",
        "`ptxas -arch=sm_80 -v` and `-arch=sm_90 -v`, whose report gives the registers, spills,",
        "stack frame and shared memory below.",
        "",
        "What this verifies: every kernel compiles to PTX, ptxas assembles it for both",
        "architectures, and no kernel spills registers to local memory (0 spill stores/loads).",
        "A kernel whose PTX calls functions resolved only when the driver links it (float16",
        "arithmetic, with some toolchains) is assembled with `ptxas -c` and its counts are its",
        f"own: {len(s['relocatable'])} kernels here.",
        "",
        "What it cannot verify: runtime behaviour on a real GPU (results, launch configuration,",
        "occupancy, throughput). Results are checked in the CUDA simulator (tests/cuda/);",
        "throughput by `python -m fastact bench --device cuda` on a machine with a GPU.",
        "",
        f"Toolchain: ptxas {v['ptxas']}, nvvm {v['nvvm']}, numba {v['numba']}, numba-cuda {v['numba_cuda']}.",
    ]


_TOOLCHAIN_RE = re.compile(r"^Toolchain: ptxas (\S+), nvvm (\S+), numba (\S+), numba-cuda (\S+)\.$", re.MULTILINE)


def toolchain(text):
    """The toolchain versions a docs/gpu.md names (the keys of ``meta["versions"]``), or None."""
    m = _TOOLCHAIN_RE.search(text)
    return dict(zip(("ptxas", "nvvm", "numba", "numba_cuda"), m.groups())) if m else None


def _summary(result):
    s = result["summary"]
    mr = s["max_registers_elementwise"]
    archs = [a for r in result["kernels"] for a in r["archs"].values()]
    stack = max((a["stack_frame"] for a in archs), default=0)
    shared = max((a["shared"] for a in archs), default=0)

    def names(key):
        return f"{len(s[key])}" + (": " + ", ".join(f"`{n}`" for n in s[key]) if s[key] else "")

    return [
        "",
        "## Summary",
        "",
        f"- kernels: {s['total']}, {s['ok']} compiled and assembled for sm_80 and sm_90 "
        f"({s['elementwise']} elementwise, from `{ELEMENTWISE}`)",
        f"- failed: {names('failed')}",
        f"- kernels with spills: {names('spilling')}",
        "- FMA contraction off (each NVVM program `-fma=0`, its IR free of fast-math flags and",
        f"  `llvm.fmuladd`): {s['ok'] - len(s['contracting'])} of {s['ok']} kernels; contracting: {names('contracting')}",
        f"- largest stack frame: {stack} bytes; largest static shared memory: {shared} bytes",
        "- max registers of the elementwise kernels: "
        + "; ".join(f"{arch} {mr[arch]['all']} ("
                    + ", ".join(f"{dt} {mr[arch][dt]}" for dt in DTYPES) + ")" for arch in ARCHS),
        f"- elementwise kernels over the {REGISTER_BUDGET}-register budget on either architecture "
        f"(256 threads x 8 blocks per SM fill the register file at {REGISTER_BUDGET}): "
        f"{len(s['over_budget'])} of {s['elementwise']}",
        "- kernels built with launch bounds (`fastact.cuda.target.LAUNCH_BOUNDS`, 256 threads x 8",
        f"  blocks: ptxas keeps them in {REGISTER_BUDGET} registers; only those it fits without a",
        f"  spill, listed in `fastact/cuda/occupancy.py`): {len(s['bounded'])} of {s['total']}",
    ]


def _over_budget_table(result):
    over = [r for r in result["kernels"] if r["name"] in set(result["summary"]["over_budget"])]
    if not over:
        return []
    over.sort(key=lambda r: (-max(a["registers"] for a in r["archs"].values()), r["name"]))
    return [
        "",
        f"### Elementwise kernels over {REGISTER_BUDGET} registers",
        "",
        "| kernel | regs sm_80 | regs sm_90 |",
        "|---|---:|---:|",
    ] + [f"| {r['name']} | {_regs(r, 'sm_80')} | {_regs(r, 'sm_90')} |" for r in over]


_ROW_RE = re.compile(r"^\| `([^`]+)` \| (\S+) \| (\S+) \| (\S+) \| ([^|]+?) \|$")


def parse_markdown(text):
    """The kernel table of a docs/gpu.md: [(kernel, dtype, regs sm_80, regs sm_90, spills)]."""
    return [m.groups() for m in map(_ROW_RE.match, text.splitlines()) if m]


def failures(result):
    s = result["summary"]
    return s["failed"] + s["spilling"] + s["contracting"]


OCCUPANCY = ROOT / "fastact" / "cuda" / "occupancy.py"


def occupancy_source(names):
    """The text of fastact/cuda/occupancy.py listing ``names``."""
    head = OCCUPANCY.read_text().split("FULL_OCCUPANCY =")[0]
    body = "".join(f"    {n!r},\n" for n in sorted(names))
    return head + "FULL_OCCUPANCY = frozenset({\n" + body + "})\n" if names else head + "FULL_OCCUPANCY = frozenset()\n"


def write_occupancy(names):
    OCCUPANCY.write_text(occupancy_source(names))
    import fastact.cuda.occupancy as occ

    importlib.reload(occ)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fastact.devtools.gen_gpu_doc", description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(ROOT)}")
    p.add_argument("--json", metavar="PATH", help="dump the results as JSON")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    p.add_argument("--ptxas", default=None, help="the ptxas to use (default: nvidia-cuda-nvcc's)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    a = p.parse_args(argv)
    result = run(a.jobs, a.ptxas, progress=not a.quiet)
    if a.write and result["summary"]["full_occupancy"] != result["summary"]["bounded"]:
        # a new list of bounded kernels: write it, then measure what it builds
        write_occupancy(result["summary"]["full_occupancy"])
        result = run(a.jobs, a.ptxas, progress=not a.quiet)
    s = result["summary"]
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(result, indent=1))
    if a.write:
        OUT.write_text(markdown(result))
    mr = s["max_registers_elementwise"]
    print(f"{s['total']} kernels, {s['ok']} ok, {len(s['failed'])} failed, {len(s['spilling'])} spilling; "
          f"max registers (elementwise) "
          + ", ".join(f"{arch} {mr[arch]['all']}" for arch in ARCHS)
          + f"; {len(s['over_budget'])} over {REGISTER_BUDGET}; {result['meta']['elapsed_s']:.1f} s")
    for r in result["kernels"]:
        if not r["ok"]:
            print(f"FAILED {r['name']}: {r['error']}", file=sys.stderr)
    for n in s["spilling"]:
        print(f"SPILLS {n}", file=sys.stderr)
    for n in s["contracting"]:
        print(f"FMA CONTRACTION {n}", file=sys.stderr)
    return 1 if failures(result) else 0


if __name__ == "__main__":
    sys.exit(main())
