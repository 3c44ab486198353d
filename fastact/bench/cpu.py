"""The CPU run: every (op, direction, dtype) timed next to its baselines, and the call overhead.

fastact and PyTorch write into preallocated outputs where they can; the NumPy
formulas allocate, as a user's code would. The baselines come from
:mod:`fastact.bench.baselines`.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

import fastact
from fastact.bench.baselines import (
    load_peers,
    numpy_baselines,
    scipy_forward,
    torch_backward,
    torch_forward,
    torch_grad_from_y,
)
from fastact.bench.common import (
    DEFAULT_REPEAT,
    DEFAULT_SIZE,
    ROW_OPS,
    Progress,
    check_args,
    moved_bytes,
    row_shape,
)
from fastact.bench.timing import measure_rooflines, median_time
from fastact.cpu import threads as _threads

OVERHEAD_SIZE = 1 << 12
OVERHEAD_OPS = ("identity", "relu", "sigmoid")


class Case(NamedTuple):
    """One timed row: fastact's call and its baselines' (None: no such baseline)."""

    direction: str
    fastact: Callable
    numpy: Callable | None
    torch: Callable | None
    scipy: Callable | None
    size: int
    shape: list


class Arrays(NamedTuple):
    """One dtype's inputs and output; x2, g2, out2 are their softmax-family 2-D views."""

    x: np.ndarray
    g: np.ndarray
    out: np.ndarray
    x2: np.ndarray
    g2: np.ndarray
    out2: np.ndarray


def run(ops=None, dtypes=("float32", "float64"), size=DEFAULT_SIZE, repeat=DEFAULT_REPEAT,
        threads=None, progress=True):
    """Time every (op, direction, dtype); returns ``{"meta": {...}, "rows": [...]}``.

    ``threads``: fastact's thread count for the run (restored afterwards), also
    used for the chunked roofline and for PyTorch; None: ``fastact.get_num_threads()``.
    """
    names, dtypes = check_args(ops, dtypes, size, repeat)
    if threads is not None and threads < 1:
        raise SystemExit(f"fastact bench: threads must be >= 1, got {threads}")

    peers = load_peers()
    torch, scipy = peers.get("torch"), peers.get("scipy")
    prev_fastact = _threads._num_threads  # None (the default) or an explicit setting
    prev_torch = torch.get_num_threads() if torch is not None else None
    nthreads = fastact.get_num_threads() if threads is None else int(threads)
    pool = ThreadPoolExecutor(max_workers=nthreads, thread_name_prefix="fastact-bench") if nthreads > 1 else None
    try:
        fastact.set_num_threads(nthreads)
        if torch is not None:
            torch.set_num_threads(nthreads)
        return _run(names, dtypes, size, repeat, nthreads, pool, torch, scipy, progress)
    finally:
        fastact.set_num_threads(prev_fastact)
        if torch is not None:
            torch.set_num_threads(prev_torch)
        if pool is not None:
            pool.shutdown()


def _run(names, dtypes, size, repeat, threads, pool, torch, scipy, progress):
    rng = np.random.default_rng(0)
    bar = Progress(len(names) * len(dtypes) * 2, progress)
    rows, rooflines = [], {}
    for dt in dtypes:
        arrays = _arrays(rng, dt, size)
        dt_rows, rooflines[dt] = _dtype_rows(names, arrays, dt, repeat, threads, pool, torch, scipy, bar)
        rows += dt_rows
        del arrays  # before the next dtype's are allocated
    elapsed = bar.finish()
    meta = {
        "call_overhead": call_overhead(dtypes[0]),
        "size": size,
        "row_shape": list(row_shape(size)),
        "dtypes": list(dtypes),
        "ops": list(names),
        "repeat": repeat,
        "threads": threads,
        "rooflines": rooflines,
        "versions": {
            "fastact": fastact.__version__,
            "numpy": np.__version__,
            "torch": None if torch is None else torch.__version__,
            "scipy": None if scipy is None else scipy.__version__,
        },
        "elapsed_s": elapsed,
    }
    return {"meta": meta, "rows": rows}


def _arrays(rng, dtype, size):
    x = (rng.standard_normal(size) * 3).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    out = np.empty_like(x)
    shape2 = row_shape(size)
    n2 = shape2[0] * shape2[1]
    return Arrays(x, g, out, *(a[:n2].reshape(shape2) for a in (x, g, out)))


def _dtype_rows(names, arrays, dtype, repeat, threads, pool, torch, scipy, bar):
    """(rows, roofline) of one dtype, the roofline measured before and after the rows."""
    x, g, out = arrays.x, arrays.g, arrays.out
    roof = measure_rooflines(x, g, out, threads, repeat, pool)
    rows = []
    for name in names:
        for case in _cases(name, arrays, torch, scipy):
            bar.show(name, case.direction, dtype)
            rows.append(_time_case(name, case, dtype, threads, repeat))
            bar.step()
    # again after the rows (a busy machine at the start would understate it)
    roof = measure_rooflines(x, g, out, threads, repeat, pool, previous=roof)
    for r in rows:
        wall = roof[r["roofline"]]
        r["roofline_gb_per_s"] = wall["gb_per_s"]
        r["roofline_threads"] = wall["threads"]
        r["roofline_fraction"] = r["gb_per_s"] / wall["gb_per_s"]
    return rows, roof


def _cases(name, arrays, torch, scipy):
    """The forward and the backward Case of one op, all on the same arrays."""
    if name in ROW_OPS:
        f = fastact.ROW_FUNCTIONS[name]
        x, g, out = arrays.x2, arrays.g2, arrays.out2
        y = f(x)
        v = y  # the row gradients take the forward output
    else:
        f = fastact.ACTIVATIONS[name]
        x, g, out = arrays.x, arrays.g, arrays.out
        y, v = None, x
    npf, npb = numpy_baselines(name, have_scipy=scipy is not None)
    tf, tb = _torch_calls(torch, name, f, x, g, out, y)
    sf = scipy_forward(scipy, name) if scipy is not None else None
    return [
        Case("forward", lambda: f(x, out=out), npf and (lambda: npf(x)), tf,
             sf and (lambda: sf(x, out)), x.size, list(x.shape)),
        Case("backward", lambda: f.backward(g, v, out=out), npb and (lambda: npb(g, v)), tb,
             None, x.size, list(x.shape)),
    ]


def _torch_calls(torch, name, f, x, g, out, y):
    """(forward, backward) PyTorch calls on tensors sharing the arrays' memory; None where absent."""
    if torch is None:
        return None, None
    tf, tb = torch_forward(torch, name), torch_backward(torch, name)
    tt = torch.from_numpy
    tx, tg, to = tt(x), tt(g), tt(out)
    if y is None and tb is not None and torch_grad_from_y(name):
        y = f(x)
    ty = None if y is None else tt(y)
    return (tf and (lambda: tf(tx, to))), (tb and (lambda: tb(tg, tx, ty, to)))


def _time_case(name, case, dtype, threads, repeat):
    """The row of one Case: fastact's median time, GB/s and each baseline's time and speed-up."""
    t = median_time(case.fastact, repeat)
    row = {
        "op": name,
        "direction": case.direction,
        "dtype": dtype,
        "size": case.size,
        "shape": case.shape,
        "threads": threads,
        "median_ms": t * 1e3,
        "gb_per_s": moved_bytes(case.direction, case.size, dtype) / t / 1e9,
        "roofline": "copy" if case.direction == "forward" else "add",
        "roofline_gb_per_s": None,  # filled in after the dtype's rows
        "roofline_threads": None,
        "roofline_fraction": None,
    }
    for peer, fn in (("numpy", case.numpy), ("torch", case.torch), ("scipy", case.scipy)):
        peer_t = median_time(fn, repeat) if fn else None
        row[f"{peer}_ms"] = None if peer_t is None else peer_t * 1e3
        row[f"speedup_vs_{peer}"] = None if peer_t is None else peer_t / t
    return row


def call_overhead(dtype="float32", n=OVERHEAD_SIZE, number=2000, repeat=5):
    """Per-call time of small public calls vs ``np.negative`` on the same array.

    The best of ``repeat`` batches of ``number`` calls (the minimum: call
    overhead is a floor, noise only adds to it), in microseconds, and the
    ratio to ``np.negative``. ``identity`` and ``relu`` are nearly all
    overhead at 2**12 elements; ``sigmoid`` shows overhead plus compute.
    """
    x = np.linspace(-3, 3, n, dtype=dtype)

    def best(fn):
        fn()  # compiles / sets the fast path up
        return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6

    ref = best(lambda: np.negative(x))
    res = {"size": n, "dtype": str(np.dtype(dtype)), "np_negative_us": ref, "ops": {}}
    for name in OVERHEAD_OPS:
        f = fastact.ACTIVATIONS[name]
        t = best(lambda f=f: f(x))
        res["ops"][name] = {"us": t, "ratio_to_np_negative": t / ref}
    return res
