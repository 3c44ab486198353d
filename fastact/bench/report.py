"""The human-readable reports of the CPU and the CUDA runs (``--json`` prints the result as is)."""

from __future__ import annotations

from fastact.bench.baselines import PEERS
from fastact.bench.timing import SLOW_CALL_S

_CPU_HEAD = (
    f"{'op':<12} {'dir':<8} {'ms':>8} {'GB/s':>6} {'roof%':>5} {'numpy ms':>9} {'xnp':>7} "
    f"{'torch ms':>9} {'xtorch':>7} {'scipy ms':>9} {'xscipy':>7}"
)
_CUDA_HEAD = f"{'op':<12} {'dir':<8} {'us':>9} {'GB/s':>7} {'roof%':>5} {'cupy us':>9} {'xcupy':>7}"


def _cell(v, fmt, width):
    return f"{'':>{width}}" if v is None else f"{v:{fmt}}".rjust(width)


def _x(v, width=7):
    return f"{'':>{width}}" if v is None else f"{v:.2f}x".rjust(width)


def _cpu_preamble(meta):
    v = meta["versions"]
    r0, r1 = meta["row_shape"]
    peers = ", ".join(
        f"{p} {v[p]}" + (f" ({meta['threads']} threads)" if p == "torch" else "")
        if v.get(p) else f"{p}: not installed"
        for p in PEERS
    )
    lines = [
        f"fastact bench: {meta['size']} elements (softmax family: {r0} x {r1}, axis=-1), "
        f"{meta['threads']} threads, median of {meta['repeat']} runs"
        + (f" ({min(meta['repeat'], 3)} for calls over {SLOW_CALL_S} s)" if meta["repeat"] > 3 else ""),
        f"numpy {v['numpy']}; peers: {peers}",
        (
            "GB/s = bytes read + written / time; roof% = GB/s / roofline GB/s (forward: np.copyto "
            "1-in-1-out, backward: np.add 2-in-1-out; the faster of 1 thread and chunked over threads)"
        ),
        "xnp, xtorch, xscipy = peer time / fastact time (> 1: fastact is faster)",
    ]
    co = meta.get("call_overhead")
    if co:
        calls = ", ".join(f"{k} {c['us']:.2f} us ({c['ratio_to_np_negative']:.1f}x)" for k, c in co["ops"].items())
        lines.append(f"call overhead at {co['size']} {co['dtype']} elements: np.negative "
                     f"{co['np_negative_us']:.2f} us; {calls}")
    return lines


def _roof_text(roof, kind, label, threads):
    r = roof[kind]
    return (f"{label} {r['gb_per_s']:.1f} GB/s (1 thread {r['one_thread_gb_per_s']:.1f}, "
            f"{threads} threads {r['threaded_gb_per_s']:.1f})")


def _cpu_row(r):
    return (
        f"{r['op']:<12} {r['direction']:<8} {r['median_ms']:8.2f} {r['gb_per_s']:6.1f} "
        f"{100 * r['roofline_fraction']:4.0f}% {_cell(r['numpy_ms'], '.2f', 9)} "
        f"{_x(r['speedup_vs_numpy'])} {_cell(r['torch_ms'], '.2f', 9)} "
        f"{_x(r['speedup_vs_torch'])} {_cell(r['scipy_ms'], '.2f', 9)} "
        f"{_x(r['speedup_vs_scipy'])}".rstrip()
    )


def format_table(result):
    """The human-readable report of ``run()``'s result."""
    meta, rows = result["meta"], result["rows"]
    lines = _cpu_preamble(meta)
    for dt in meta["dtypes"]:
        rf, threads = meta["rooflines"][dt], meta["threads"]
        lines += [
            "",
            f"{dt}: roofline {_roof_text(rf, 'copy', 'copy', threads)}; {_roof_text(rf, 'add', 'add', threads)}",
            _CPU_HEAD,
            "-" * len(_CPU_HEAD),
        ]
        lines += [_cpu_row(r) for r in rows if r["dtype"] == dt]
    return "\n".join(lines)


def no_gpu_line(result):
    """The one line printed by ``--device cuda`` when nothing could be measured."""
    return f"fastact bench: no CUDA GPU present ({result['meta']['reason']}); nothing measured"


def _cuda_row(r):
    if r["error"] is not None:
        return f"{r['op']:<12} {r['direction']:<8} error: {r['error']}"
    return (
        f"{r['op']:<12} {r['direction']:<8} {r['median_ms'] * 1e3:9.1f} {r['gb_per_s']:7.0f} "
        f"{100 * r['roofline_fraction']:4.0f}% "
        f"{_cell(None if r['cupy_ms'] is None else r['cupy_ms'] * 1e3, '.1f', 9)} "
        f"{_x(r['speedup_vs_cupy'])}".rstrip()
    )


def format_cuda_table(result):
    """The human-readable report of ``run_cuda()``'s result."""
    meta, rows = result["meta"], result["rows"]
    if meta["gpu"] is None:
        return no_gpu_line(result)
    gpu, v = meta["gpu"], meta["versions"]
    r0, r1 = meta["row_shape"]
    lines = [
        (
            f"fastact bench --device cuda: {gpu['name']} (cc {gpu['compute_capability']}, {gpu['sm_count']} SMs, "
            f"{gpu['memory_gib']:.0f} GiB); {meta['size']} elements (softmax family: {r0} x {r1}, axis=-1), "
            f"median of {meta['repeat']} CUDA-event samples"
        ),
        f"cupy {v['cupy']}, numba-cuda {v['numba_cuda']}",
        (
            "GB/s = bytes read + written / time; roof% = GB/s / device-to-device copy GB/s (cupy.copyto, "
            "the same arrays); xcupy = CuPy formula time / fastact time (> 1: fastact is faster)"
        ),
    ]
    for dt in meta["dtypes"]:
        lines += ["", f"{dt}: copy {meta['rooflines'][dt]['copy']['gb_per_s']:.0f} GB/s", _CUDA_HEAD,
                  "-" * len(_CUDA_HEAD)]
        lines += [_cuda_row(r) for r in rows if r["dtype"] == dt]
    return "\n".join(lines)
