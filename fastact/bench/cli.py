"""``python -m fastact bench``: throughput of every activation vs NumPy, PyTorch and SciPy.

For each activation (elementwise, and softmax / log_softmax on a 2-D array of
shape (size // 1024, 1024) along axis -1), direction (forward; backward:
``f.backward(grad, x)``, ``softmax.backward(grad, y)``) and dtype it reports the
median time, GB/s (bytes read + written), the percentage of the memory
roofline reached and the speed-up over the NumPy formula a user would write
and, when installed, over PyTorch (CPU) and SciPy.

Roofline: forward ops read one array and write one, so they are compared with
``np.copyto`` (1-in-1-out); backward ops read two, so with ``np.add(x, g,
out=out)`` (2-in-1-out). Each is measured on one thread and chunked over the
bench's threads (NumPy releases the GIL), before and after each dtype's rows;
the fastest of these is the roofline.

Timing: every callable is called once untimed (this compiles fastact's
kernels and warms peers up), then the median of ``--repeat`` runs is taken
(fewer, at least 3, for calls slower than 0.2 s). fastact and PyTorch write
into preallocated outputs where they can; the NumPy formulas allocate, as a
user's code would.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

import fastact
from fastact.bench.common import (
    DEFAULT_REPEAT,
    DEFAULT_SIZE,
    QUICK_REPEAT,
    QUICK_SIZE,
    ROW_LEN,
    ROW_OPS,
)
from fastact.bench.cpu import run
from fastact.bench.cuda import CUDA_ROW_KEYS, run_cuda
from fastact.bench.report import format_cuda_table, format_table, no_gpu_line

_EPILOG = "\n\n".join(
    textwrap.fill(par, 79)
    for par in (
        (
            "Peers: PyTorch CPU (torch.ops.aten kernels on torch.from_numpy tensors, out= where "
            "supported, the same thread count; ops without a plain aten kernel are left empty) "
            "and SciPy (expit, log_expit, softmax, log_softmax) are used when importable; a "
            "missing peer leaves its columns empty."
        ),
        (
            "Table columns: ms (fastact's median), GB/s, roof% (of the dtype's roofline, printed "
            "above its table), numpy ms and xnp (NumPy time / fastact time, > 1: fastact is "
            "faster), torch ms and xtorch, scipy ms and xscipy."
        ),
        (
            "JSON (--json): {\"meta\": {size, row_shape, dtypes, ops, repeat, threads, rooflines: "
            "{dtype: {copy|add: {one_thread_gb_per_s, threaded_gb_per_s, gb_per_s, threads}}}, "
            "versions, elapsed_s}, \"rows\": [{op, direction, dtype, size, shape, threads, "
            "median_ms, gb_per_s, roofline (copy|add), roofline_gb_per_s, roofline_threads, "
            "roofline_fraction, numpy_ms, speedup_vs_numpy, torch_ms, speedup_vs_torch, "
            "scipy_ms, speedup_vs_scipy}]}; null where a peer lacks the op or is not installed."
        ),
        (
            "--device cuda: the same ops on CuPy arrays on the current GPU (needs CuPy and "
            "numba-cuda: pip install 'fastact[cuda]'), timed with CUDA events (median of --repeat "
            "samples, each of back-to-back calls filling about 2 ms, after one warm-up call); "
            "roof% is of a device-to-device copy (cupy.copyto) of the same arrays, and xcupy "
            "compares with the CuPy formula a user would write (sigmoid, tanh, relu, silu, gelu "
            "with cupyx.scipy.special.erf). Without a GPU it prints one line saying why and "
            "measures nothing (exit status 0). JSON: {\"meta\": {device: \"cuda\", gpu: {name, "
            "compute_capability, sm_count, memory_gib} or null, reason, size, row_shape, dtypes, "
            "ops, repeat, rooflines: {dtype: {copy: {gb_per_s}}}, versions, elapsed_s}, \"rows\": "
            "[{" + ", ".join(CUDA_ROW_KEYS) + "}]}."
        ),
    )
)


def _positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _description():
    first, *rest = __doc__.split("\n\n")
    return first.replace("``", "") + "\n\n" + "\n\n".join(rest).replace("``", "")


def _parser():
    ops_help = ", ".join(list(fastact.ACTIVATIONS) + list(ROW_OPS))
    p = argparse.ArgumentParser(prog="python -m fastact bench", description=_description(),
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG)
    p.add_argument("--size", type=_positive_int, default=None,
                   help=f"elements per array (default 2**24 = {DEFAULT_SIZE}, with --quick 2**16); "
                        f"the softmax family uses shape (size // {ROW_LEN}, {ROW_LEN})")
    p.add_argument("--dtype", choices=["float32", "float64", "both"], default="both",
                   help="dtype(s) to time (default: both)")
    p.add_argument("--ops", default=None,
                   help=f"comma-separated op names or aliases (default: all): {ops_help}")
    p.add_argument("--repeat", type=_positive_int, default=None,
                   help=f"timed runs per call after one untimed warm-up; the median is reported "
                        f"(default {DEFAULT_REPEAT}, with --quick {QUICK_REPEAT})")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for fastact (set_num_threads, restored afterwards), the chunked "
                        "roofline and PyTorch (default: fastact.get_num_threads(), now "
                        f"{fastact.get_num_threads()})")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where to run: cpu (default) or cuda (CuPy arrays on the current GPU; "
                        "without one, says why and measures nothing)")
    p.add_argument("--quick", action="store_true",
                   help=f"small arrays (2**16) and {QUICK_REPEAT} runs: a smoke test, not a measurement")
    p.add_argument("--json", action="store_true",
                   help="print {\"meta\": ..., \"rows\": [...]} as JSON instead of the table "
                        "(no progress bar)")
    return p


def main(argv=None):
    a = _parser().parse_args(argv)
    size = a.size or (QUICK_SIZE if a.quick else DEFAULT_SIZE)
    repeat = a.repeat or (QUICK_REPEAT if a.quick else DEFAULT_REPEAT)
    dtypes = ("float32", "float64") if a.dtype == "both" else (a.dtype,)
    ops = [o for o in a.ops.split(",") if o.strip()] if a.ops else None
    if a.device == "cuda":
        if a.threads is not None:
            raise SystemExit("fastact bench: --threads is for --device cpu")
        result = run_cuda(ops, dtypes, size, repeat, progress=not a.json)
        if a.json:
            print(json.dumps(result, indent=1))
            if result["meta"]["gpu"] is None:
                print(no_gpu_line(result), file=sys.stderr)
        else:
            print(format_cuda_table(result))
        return 0
    result = run(ops, dtypes, size, repeat, threads=a.threads, progress=not a.json)
    if a.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_table(result))
    return 0
