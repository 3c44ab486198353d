"""The CUDA run (``--device cuda``): fastact's GPU kernels on CuPy arrays, timed with CUDA events.

Each row is compared with a device-to-device copy of the same arrays (the
roofline) and, where :mod:`fastact.bench.baselines` has one, with the CuPy
formula a user would write. Nothing here imports numba.cuda or CuPy until a
run asks for them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math

import numpy as np

import fastact
from fastact.bench.baselines import cupy_backward, cupy_forward
from fastact.bench.common import (
    DEFAULT_REPEAT,
    DEFAULT_SIZE,
    DIRECTIONS,
    ROW_OPS,
    Progress,
    check_args,
    moved_bytes,
    row_shape,
)

#: calls per timed sample on the GPU: enough for about this many seconds
CUDA_SAMPLE_S = 2e-3
CUDA_MAX_CALLS = 100
CUDA_ROW_KEYS = ("op", "direction", "dtype", "size", "shape", "median_ms", "calls_per_sample", "gb_per_s",
                 "roofline_gb_per_s", "roofline_fraction", "cupy_ms", "speedup_vs_cupy", "error")


def cuda_unavailable():
    """Why nothing can be measured on a GPU (a string), or None when a CUDA GPU,
    CuPy and numba-cuda are all there. Imports them (only when asked)."""
    if importlib.util.find_spec("cupy") is None:
        return "CuPy is not installed: pip install 'fastact[cuda]'"
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda is not installed: pip install 'fastact[cuda]'"
    from fastact.cuda import target as _cuda

    if _cuda.simulated():
        return "NUMBA_ENABLE_CUDASIM is set: the CUDA simulator measures no GPU"
    try:
        from numba import cuda

        if not cuda.is_available():
            return "numba.cuda.is_available() is False (no CUDA driver or device)"
        import cupy

        if not cupy.cuda.is_available():
            return "cupy.cuda.is_available() is False"
    except Exception as e:  # noqa: BLE001 - a broken install is reported, not raised
        return f"{type(e).__name__}: {e}"
    return None


def _gpu_time(cp, fn, repeat):
    """(median seconds per call, calls per sample) of ``fn()`` on the current
    stream, timed with CUDA events after one untimed warm-up call (which
    compiles). Each sample times back-to-back calls, enough for about
    CUDA_SAMPLE_S, so that short kernels are not measured as launch gaps."""
    stream = cp.cuda.get_current_stream()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    fn()
    stream.synchronize()
    start.record(stream)
    fn()
    end.record(stream)
    end.synchronize()
    one = cp.cuda.get_elapsed_time(start, end) * 1e-3
    number = max(1, min(CUDA_MAX_CALLS, math.ceil(CUDA_SAMPLE_S / max(one, 1e-7))))
    times = []
    for _ in range(repeat):
        start.record(stream)
        for _ in range(number):
            fn()
        end.record(stream)
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) * 1e-3 / number)
    return float(np.median(times)), number


def _with_out(f, *args, out):
    """``f(*args, out=out)`` where the GPU dispatch takes ``out=``, else ``f(*args)``."""
    try:
        f(*args, out=out)
    except TypeError:
        return lambda: f(*args)
    return lambda: f(*args, out=out)


def _gpu_info(cp):
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name = props.get("name", b"")
    return {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "compute_capability": f"{dev.compute_capability[:-1]}.{dev.compute_capability[-1]}",  # "90" -> "9.0"
        "sm_count": props.get("multiProcessorCount"),
        "memory_gib": props.get("totalGlobalMem", 0) / 2**30,
    }


def _cuda_versions(cp=None):
    def dist(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"fastact": fastact.__version__, "numpy": np.__version__,
            "cupy": cp.__version__ if cp is not None else dist("cupy-cuda13x"),
            "numba_cuda": dist("numba-cuda")}


def run_cuda(ops=None, dtypes=("float32", "float64"), size=DEFAULT_SIZE, repeat=DEFAULT_REPEAT, progress=True):
    """Time every (op, direction, dtype) on the current CUDA device; returns
    ``{"meta": {...}, "rows": [...]}``. Without a usable GPU (or CuPy, or
    numba-cuda) ``meta["gpu"]`` is None, ``meta["reason"]`` says why, and
    ``rows`` is empty."""
    names, dtypes = check_args(ops, dtypes, size, repeat)
    meta = {"device": "cuda", "gpu": None, "reason": None, "size": size, "row_shape": list(row_shape(size)),
            "dtypes": list(dtypes), "ops": list(names), "repeat": repeat, "rooflines": {},
            "versions": None, "elapsed_s": 0.0}
    reason = cuda_unavailable()
    if reason is not None:
        meta["reason"] = reason
        meta["versions"] = _cuda_versions()
        return {"meta": meta, "rows": []}
    import cupy as cp

    bar = Progress(len(names) * len(dtypes) * 2, progress)
    meta["gpu"] = _gpu_info(cp)
    meta["versions"] = _cuda_versions(cp)
    rows = []
    rng = np.random.default_rng(0)
    for dt in dtypes:
        dt_rows, roof = _dtype_rows(cp, names, dt, size, repeat, rng, bar)
        rows += dt_rows
        meta["rooflines"][dt] = {"copy": {"gb_per_s": roof}}
        cp.get_default_memory_pool().free_all_blocks()  # the dtype's arrays are gone with _dtype_rows
    meta["elapsed_s"] = bar.finish()
    return {"meta": meta, "rows": rows}


def _copy_gbs(cp, x, out, repeat):
    """GB/s of a device-to-device copy of ``x`` into ``out``."""
    t, _ = _gpu_time(cp, lambda: cp.copyto(out, x), repeat)
    return 2 * x.nbytes / t / 1e9


def _dtype_rows(cp, names, dtype, size, repeat, rng, bar):
    """(rows, copy GB/s) of one dtype, the copy measured before and after the rows."""
    x = cp.asarray((rng.standard_normal(size) * 3).astype(dtype))
    g = cp.asarray(rng.standard_normal(size).astype(dtype))
    out = cp.empty_like(x)
    shape2 = row_shape(size)
    n2 = shape2[0] * shape2[1]
    flat, rows2 = (x, g, out), tuple(a[:n2].reshape(shape2) for a in (x, g, out))
    roof = _copy_gbs(cp, x, out, repeat)
    rows = []
    for name in names:
        for direction in DIRECTIONS:
            bar.show(name, direction, dtype)
            rows.append(_row(cp, name, direction, dtype, rows2 if name in ROW_OPS else flat, repeat))
            bar.step()
    roof = max(roof, _copy_gbs(cp, x, out, repeat))  # again after the rows (the better of the two)
    for r in rows:
        r["roofline_gb_per_s"] = roof
        if r["gb_per_s"] is not None:
            r["roofline_fraction"] = r["gb_per_s"] / roof
    return rows, roof


def _row(cp, name, direction, dtype, arrays, repeat):
    """One (op, direction) row; an op that fails on the GPU is reported in ``error``, the run goes on."""
    row = dict.fromkeys(CUDA_ROW_KEYS)
    row.update(op=name, direction=direction, dtype=dtype)
    try:
        call, peer, inputs = _calls(cp, name, direction, arrays)
        n = inputs[0].size
        t, number = _gpu_time(cp, call, repeat)
        row.update(size=n, shape=list(inputs[0].shape), median_ms=t * 1e3, calls_per_sample=number,
                   gb_per_s=moved_bytes(direction, n, dtype) / t / 1e9)
        if peer is not None:
            pt, _ = _gpu_time(cp, lambda: peer(*inputs), repeat)
            row.update(cupy_ms=pt * 1e3, speedup_vs_cupy=pt / t)
    except Exception as e:  # noqa: BLE001 - an op without a GPU path is reported, the run goes on
        row["error"] = f"{type(e).__name__}: {e}"[:300]
    return row


def _calls(cp, name, direction, arrays):
    """(fastact call, CuPy formula or None, the inputs both take) of one (op, direction)."""
    x, g, out = arrays
    forward = direction == "forward"
    if name in ROW_OPS:
        f = fastact.ROW_FUNCTIONS[name]
        inputs = (x,) if forward else (g, f(x))
        peer = None
    else:
        f = fastact.ACTIVATIONS[name]
        inputs = (x,) if forward else (g, x)
        peer = cupy_forward(cp, name) if forward else cupy_backward(cp, name)
    return _with_out(f if forward else f.backward, *inputs, out=out), peer, inputs
