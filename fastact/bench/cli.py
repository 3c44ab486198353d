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
import importlib
import importlib.metadata
import importlib.util
import json
import math
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROW_OPS = ("softmax", "log_softmax")
ROW_LEN = 1024  # the softmax family runs on (size // ROW_LEN, ROW_LEN), axis=-1
DEFAULT_SIZE = 1 << 24
QUICK_SIZE = 1 << 16
DEFAULT_REPEAT = 5
QUICK_REPEAT = 2
SLOW_CALL_S = 0.2  # calls slower than this are timed fewer times (at least 3)
PEERS = ("torch", "scipy")

# ------------------------------------------------------------------ NumPy baselines
# The formulas a NumPy user would write (the baselines, not fastact's formulas).
_SQ2 = math.sqrt(2.0)
_INV_SQ2PI = 1 / math.sqrt(2 * math.pi)
_GT_C = 0.7978845608028654  # sqrt(2 / pi)
_GT_A = 0.044715
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _np_gelu(x):
    from scipy.special import erf  # what a NumPy user reaches for

    return x * 0.5 * (1 + erf(x / _SQ2))


def _np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(_GT_C * (x + _GT_A * x**3)))


NUMPY_FORWARD = {
    "identity": lambda x: x.copy(),
    "sigmoid": _np_sigmoid,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(x)),
    "celu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "softplus": lambda x: np.logaddexp(x, 0),
    "log_sigmoid": lambda x: -np.logaddexp(-x, 0),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "hardtanh": lambda x: np.clip(x, -1, 1),
    "hardsigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
    "hardswish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "silu": lambda x: x * _np_sigmoid(x),
    "gelu": _np_gelu,
    "mish": lambda x: x * np.tanh(np.logaddexp(x, 0)),
    "gelu_tanh": _np_gelu_tanh,
}


def _np_sigmoid_grad(g, x):
    s = _np_sigmoid(x)
    return g * s * (1 - s)


def _np_mish_grad(g, x):
    sp = np.logaddexp(x, 0)
    t = np.tanh(sp)
    return g * (t + x * (1 - t * t) * _np_sigmoid(x))


def _np_gelu_grad(g, x):
    from scipy.special import erf

    return g * (0.5 * (1 + erf(x / _SQ2)) + x * _INV_SQ2PI * np.exp(-0.5 * x * x))


def _np_gelu_tanh_grad(g, x):
    t = np.tanh(_GT_C * (x + _GT_A * x**3))
    return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GT_C * (1 + 3 * _GT_A * x * x))


NUMPY_BACKWARD = {
    "identity": lambda g, x: g.copy(),
    "sigmoid": _np_sigmoid_grad,
    "tanh": lambda g, x: g * (1 - np.tanh(x) ** 2),
    "relu": lambda g, x: np.where(x > 0, g, 0),
    "relu6": lambda g, x: np.where((x > 0) & (x < 6), g, 0),
    "leaky_relu": lambda g, x: np.where(x > 0, g, 0.01 * g),
    "elu": lambda g, x: np.where(x > 0, g, g * np.exp(x)),
    "selu": lambda g, x: _SELU_SCALE * np.where(x > 0, g, _SELU_ALPHA * g * np.exp(x)),
    "celu": lambda g, x: np.where(x > 0, g, g * np.exp(x)),
    "softplus": lambda g, x: g * _np_sigmoid(x),
    "log_sigmoid": lambda g, x: g * _np_sigmoid(-x),
    "softsign": lambda g, x: g / (1 + np.abs(x)) ** 2,
    "hardtanh": lambda g, x: np.where((x > -1) & (x < 1), g, 0),
    "hardsigmoid": lambda g, x: np.where((x > -3) & (x < 3), g / 6, 0),
    "hardswish": lambda g, x: g * np.where(x <= -3, 0, np.where(x >= 3, 1, (2 * x + 3) / 6)),
    "silu": lambda g, x: g * _np_sigmoid(x) * (1 + x * (1 - _np_sigmoid(x))),
    "gelu": _np_gelu_grad,
    "mish": _np_mish_grad,
    "gelu_tanh": _np_gelu_tanh_grad,
}


def _np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_log_softmax(x):
    s = x - x.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


# row ops: forward f(x), backward f(grad, y) from the forward output y
NUMPY_ROW_FORWARD = {"softmax": _np_softmax, "log_softmax": _np_log_softmax}
NUMPY_ROW_BACKWARD = {
    "softmax": lambda g, y: y * (g - (g * y).sum(-1, keepdims=True)),
    "log_softmax": lambda g, y: g - np.exp(y) * g.sum(-1, keepdims=True),
}
_NUMPY_NEEDS_SCIPY = {"gelu"}  # baselines calling scipy.special.erf
_TORCH_GRAD_FROM_Y = {"sigmoid", "tanh"}  # torch kernels computing the gradient from the output

# ------------------------------------------------------------------ peers


def peer_available(name):
    """Whether the peer library ``name`` ("torch", "scipy") can be imported."""
    return importlib.util.find_spec(name) is not None


def _load_peers():
    mods = {}
    for name in PEERS:
        if peer_available(name):
            mods[name] = importlib.import_module(name)
            if name == "scipy":
                importlib.import_module("scipy.special")
    return mods


def torch_forward(torch, name):
    """``fn(x, out) -> tensor`` running PyTorch's forward of ``name``, or None."""
    aten, F = torch.ops.aten, torch.nn.functional
    table = {
        "sigmoid": lambda x, o: torch.sigmoid(x, out=o),
        "tanh": lambda x, o: torch.tanh(x, out=o),
        "relu": lambda x, o: aten.clamp_min.out(x, 0.0, out=o),  # aten.relu's kernel (relu.out copies)
        "relu6": lambda x, o: aten.hardtanh.out(x, 0.0, 6.0, out=o),  # what F.relu6 runs
        "leaky_relu": lambda x, o: aten.leaky_relu.out(x, 0.01, out=o),
        "elu": lambda x, o: aten.elu.out(x, 1.0, 1.0, 1.0, out=o),
        "selu": lambda x, o: aten.elu.out(x, _SELU_ALPHA, _SELU_SCALE, 1.0, out=o),  # = F.selu
        "celu": lambda x, o: aten.elu.out(x, 1.0, 1.0, 1.0, out=o),  # aten.celu's kernel (celu.out copies)
        "softplus": lambda x, o: aten.softplus.out(x, 1.0, 20.0, out=o),
        "log_sigmoid": lambda x, o: aten.log_sigmoid.out(x, out=o),
        "softsign": lambda x, o: F.softsign(x),  # composite, no out=
        "hardtanh": lambda x, o: aten.hardtanh.out(x, -1.0, 1.0, out=o),
        "hardsigmoid": lambda x, o: aten.hardsigmoid.out(x, out=o),
        "hardswish": lambda x, o: aten.hardswish.out(x, out=o),
        "silu": lambda x, o: aten.silu.out(x, out=o),
        "mish": lambda x, o: aten.mish.out(x, out=o),
        "gelu": lambda x, o: aten.gelu.out(x, approximate="none", out=o),
        "gelu_tanh": lambda x, o: aten.gelu.out(x, approximate="tanh", out=o),
        "softmax": lambda x, o: aten._softmax.out(x, -1, False, out=o),
        "log_softmax": lambda x, o: aten._log_softmax.out(x, -1, False, out=o),
    }
    return table.get(name)


def torch_backward(torch, name):
    """``fn(grad, x, y, out) -> tensor``: PyTorch's gradient of ``name`` (from
    the input x or the output y, as its kernel takes it), or None where there
    is no plain aten backward kernel (identity, log_sigmoid: needs the forward's
    buffer, softsign: composite)."""
    aten = torch.ops.aten
    table = {
        "sigmoid": lambda g, x, y, o: aten.sigmoid_backward.grad_input(g, y, grad_input=o),
        "tanh": lambda g, x, y, o: aten.tanh_backward.grad_input(g, y, grad_input=o),
        "relu": lambda g, x, y, o: aten.threshold_backward.grad_input(g, x, 0.0, grad_input=o),
        "relu6": lambda g, x, y, o: aten.hardtanh_backward.grad_input(g, x, 0.0, 6.0, grad_input=o),
        "leaky_relu": lambda g, x, y, o: aten.leaky_relu_backward.grad_input(g, x, 0.01, False, grad_input=o),
        "elu": lambda g, x, y, o: aten.elu_backward.grad_input(g, 1.0, 1.0, 1.0, False, x, grad_input=o),
        "selu": lambda g, x, y, o: aten.elu_backward.grad_input(
            g, _SELU_ALPHA, _SELU_SCALE, 1.0, False, x, grad_input=o
        ),
        "celu": lambda g, x, y, o: aten.elu_backward.grad_input(g, 1.0, 1.0, 1.0, False, x, grad_input=o),
        "softplus": lambda g, x, y, o: aten.softplus_backward.grad_input(g, x, 1.0, 20.0, grad_input=o),
        "hardtanh": lambda g, x, y, o: aten.hardtanh_backward.grad_input(g, x, -1.0, 1.0, grad_input=o),
        "hardsigmoid": lambda g, x, y, o: aten.hardsigmoid_backward.grad_input(g, x, grad_input=o),
        "hardswish": lambda g, x, y, o: aten.hardswish_backward(g, x),  # .out allocates and copies
        "silu": lambda g, x, y, o: aten.silu_backward.grad_input(g, x, grad_input=o),
        "mish": lambda g, x, y, o: aten.mish_backward(g, x),  # no out= variant
        "gelu": lambda g, x, y, o: aten.gelu_backward.grad_input(g, x, approximate="none", grad_input=o),
        "gelu_tanh": lambda g, x, y, o: aten.gelu_backward.grad_input(g, x, approximate="tanh", grad_input=o),
        "softmax": lambda g, x, y, o: aten._softmax_backward_data.out(g, y, -1, y.dtype, grad_input=o),
        "log_softmax": lambda g, x, y, o: aten._log_softmax_backward_data.out(g, y, -1, y.dtype, out=o),
    }
    return table.get(name)


def scipy_forward(scipy, name):
    """``fn(x, out)`` running SciPy's version of ``name``, or None."""
    sp = scipy.special
    table = {
        "sigmoid": lambda x, o: sp.expit(x, out=o),
        "log_sigmoid": lambda x, o: sp.log_expit(x, out=o),
        "softmax": lambda x, o: sp.softmax(x, axis=-1),
        "log_softmax": lambda x, o: sp.log_softmax(x, axis=-1),
    }
    return table.get(name)


# ------------------------------------------------------------------ timing


def _median_time(fn, repeat, min_time=0.02):
    """Median seconds of ``fn()`` after one untimed warm-up call (which compiles)."""
    t0 = time.perf_counter()
    fn()
    warm = time.perf_counter() - t0
    n = repeat if warm < SLOW_CALL_S else min(repeat, 3)
    times = []
    while len(times) < n or (sum(times) < min_time and len(times) < 20 * n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _chunk_slices(n, parts):
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(parts)]


def _chunked(pool, fn, arrays, threads):
    """A callable running ``fn(*chunk_arrays)`` over ``threads`` contiguous chunks
    (chunk 0 on the calling thread, the others in ``pool``)."""
    chunks = [[a[s] for a in arrays] for s in _chunk_slices(arrays[0].shape[0], threads)]

    def call():
        futures = [pool.submit(fn, *c) for c in chunks[1:]]
        fn(*chunks[0])
        for f in futures:
            f.result()

    return call


def _copy(src, dst):
    np.copyto(dst, src)


def _add(a, b, dst):
    np.add(a, b, out=dst)


def measure_rooflines(x, g, out, threads, repeat, pool=None, previous=None):
    """GB/s of np.copyto (1-in-1-out) and np.add (2-in-1-out) on ``x``, ``g``, ``out``,
    on one thread and chunked over ``threads``; the faster of the two is used.
    With ``previous`` (an earlier result on the same arrays), each figure is the
    better of the two measurements (the wall is what the machine can reach)."""
    nbytes = x.nbytes
    res = {}
    for kind, fn, arrays, moved in (
        ("copy", _copy, (x, out), 2 * nbytes),
        ("add", _add, (x, g, out), 3 * nbytes),
    ):
        one = moved / _median_time(lambda: fn(*arrays), repeat) / 1e9
        if threads > 1 and pool is not None:
            many = moved / _median_time(_chunked(pool, fn, arrays, threads), repeat) / 1e9
        else:
            many = one
        if previous is not None:
            one = max(one, previous[kind]["one_thread_gb_per_s"])
            many = max(many, previous[kind]["threaded_gb_per_s"])
        used = threads if many > one else 1
        res[kind] = {
            "one_thread_gb_per_s": one,
            "threaded_gb_per_s": many,
            "gb_per_s": max(one, many),
            "threads": used,
        }
    return res


# ------------------------------------------------------------------ the run


def _resolve_ops(ops):
    import fastact

    known = list(fastact.ACTIVATIONS) + list(ROW_OPS)
    if not ops:
        return known
    names, unknown = [], []
    for n in ops:
        n = n.strip()
        n = fastact.ALIASES.get(n, n)
        if n in known:
            if n not in names:
                names.append(n)
        else:
            unknown.append(n)
    if unknown:
        raise SystemExit(
            f"fastact bench: unknown op(s): {', '.join(repr(u) for u in unknown)}; "
            f"known: {', '.join(known)}"
        )
    return names


def _row_shape(size):
    if size >= ROW_LEN:
        return (size // ROW_LEN, ROW_LEN)
    return (1, size)


def _speedup(peer_t, t):
    return None if peer_t is None else peer_t / t


def run(ops=None, dtypes=("float32", "float64"), size=DEFAULT_SIZE, repeat=DEFAULT_REPEAT,
        threads=None, progress=True):
    """Time every (op, direction, dtype); returns ``{"meta": {...}, "rows": [...]}``.

    ``threads``: fastact's thread count for the run (restored afterwards), also
    used for the chunked roofline and for PyTorch; None: ``fastact.get_num_threads()``.
    """
    import fastact
    from fastact.cpu import threads as _threads

    names, dtypes = _check_args(ops, dtypes, size, repeat)
    if threads is not None and threads < 1:
        raise SystemExit(f"fastact bench: threads must be >= 1, got {threads}")

    peers = _load_peers()
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


def _cases(name, x, g, out, x2, g2, out2, torch, scipy):
    """(direction, fastact fn, numpy fn, torch fn, scipy fn, elements, shape) for one op."""
    import fastact

    tt = torch.from_numpy if torch is not None else None
    have_scipy = scipy is not None
    if name in ROW_OPS:
        f = fastact.ROW_FUNCTIONS[name]
        y2 = f(x2)  # the forward output the backward takes
        tf, tb = (torch_forward(torch, name), torch_backward(torch, name)) if torch else (None, None)
        sf = scipy_forward(scipy, name) if scipy else None
        npf, npb = NUMPY_ROW_FORWARD[name], NUMPY_ROW_BACKWARD[name]
        tx, tg, ty, to = (tt(x2), tt(g2), tt(y2), tt(out2)) if torch else (None,) * 4
        fwd = (
            "forward",
            lambda: f(x2, out=out2),
            lambda: npf(x2),
            tf and (lambda: tf(tx, to)),
            sf and (lambda: sf(x2, out2)),
        )
        bwd = (
            "backward",
            lambda: f.backward(g2, y2, out=out2),
            lambda: npb(g2, y2),
            tb and (lambda: tb(tg, None, ty, to)),
            None,
        )
        return [c + (x2.size, list(x2.shape)) for c in (fwd, bwd)]

    f = fastact.ACTIVATIONS[name]
    npf = NUMPY_FORWARD.get(name)
    npb = NUMPY_BACKWARD.get(name)
    if name in _NUMPY_NEEDS_SCIPY and not have_scipy:
        npf = npb = None
    tf, tb = (torch_forward(torch, name), torch_backward(torch, name)) if torch else (None, None)
    sf = scipy_forward(scipy, name) if scipy else None
    if torch is not None:
        tx, tg, to = tt(x), tt(g), tt(out)
        ty = tt(f(x)) if name in _TORCH_GRAD_FROM_Y else None  # kernels taking the output
    fwd = (
        "forward",
        lambda: f(x, out=out),
        npf and (lambda: npf(x)),
        tf and (lambda: tf(tx, to)),
        sf and (lambda: sf(x, out)),
    )
    bwd = (
        "backward",
        lambda: f.backward(g, x, out=out),
        npb and (lambda: npb(g, x)),
        tb and (lambda: tb(tg, tx, ty, to)),
        None,
    )
    return [c + (x.size, list(x.shape)) for c in (fwd, bwd)]


def _run(names, dtypes, size, repeat, threads, pool, torch, scipy, progress):
    rng = np.random.default_rng(0)
    rows = []
    rooflines = {}
    total = len(names) * len(dtypes) * 2
    done = 0
    t_start = time.perf_counter()
    shape2 = _row_shape(size)
    n2 = shape2[0] * shape2[1]
    for dt in dtypes:
        x = (rng.standard_normal(size) * 3).astype(dt)
        g = rng.standard_normal(size).astype(dt)
        out = np.empty_like(x)
        x2, g2, out2 = (a[:n2].reshape(shape2) for a in (x, g, out))
        roof = measure_rooflines(x, g, out, threads, repeat, pool)
        first = len(rows)
        for name in names:
            for direction, ffn, nfn, tfn, sfn, n, shape in _cases(name, x, g, out, x2, g2, out2, torch, scipy):
                if progress:
                    bar = "#" * (30 * done // total)
                    print(f"\r[{bar:<30}] {done}/{total} {time.perf_counter() - t_start:5.0f}s "
                          f"{name} {direction} {dt}        ", end="", file=sys.stderr, flush=True)
                t = _median_time(ffn, repeat)
                np_t = _median_time(nfn, repeat) if nfn else None
                torch_t = _median_time(tfn, repeat) if tfn else None
                scipy_t = _median_time(sfn, repeat) if sfn else None
                moved = (2 if direction == "forward" else 3) * n * np.dtype(dt).itemsize
                gbs = moved / t / 1e9
                rows.append(
                    {
                        "op": name,
                        "direction": direction,
                        "dtype": dt,
                        "size": n,
                        "shape": shape,
                        "threads": threads,
                        "median_ms": t * 1e3,
                        "gb_per_s": gbs,
                        "roofline": "copy" if direction == "forward" else "add",
                        "roofline_gb_per_s": None,  # filled in below
                        "roofline_threads": None,
                        "roofline_fraction": None,
                        "numpy_ms": None if np_t is None else np_t * 1e3,
                        "speedup_vs_numpy": _speedup(np_t, t),
                        "torch_ms": None if torch_t is None else torch_t * 1e3,
                        "speedup_vs_torch": _speedup(torch_t, t),
                        "scipy_ms": None if scipy_t is None else scipy_t * 1e3,
                        "speedup_vs_scipy": _speedup(scipy_t, t),
                    }
                )
                done += 1
        # again after the rows (a busy machine at the start would understate it)
        roof = rooflines[dt] = measure_rooflines(x, g, out, threads, repeat, pool, previous=roof)
        for r in rows[first:]:
            wall = roof[r["roofline"]]
            r["roofline_gb_per_s"] = wall["gb_per_s"]
            r["roofline_threads"] = wall["threads"]
            r["roofline_fraction"] = r["gb_per_s"] / wall["gb_per_s"]
        del x, g, out, x2, g2, out2
    elapsed = time.perf_counter() - t_start
    if progress:
        print(f"\r[{'#' * 30}] {done}/{total} {elapsed:5.0f}s done" + " " * 40, file=sys.stderr, flush=True)
    import fastact

    meta = {
        "call_overhead": call_overhead(dtypes[0]),
        "size": size,
        "row_shape": list(shape2),
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


OVERHEAD_SIZE = 1 << 12
OVERHEAD_OPS = ("identity", "relu", "sigmoid")


def call_overhead(dtype="float32", n=OVERHEAD_SIZE, number=2000, repeat=5):
    """Per-call time of small public calls vs ``np.negative`` on the same array.

    The best of ``repeat`` batches of ``number`` calls (the minimum: call
    overhead is a floor, noise only adds to it), in microseconds, and the
    ratio to ``np.negative``. ``identity`` and ``relu`` are nearly all
    overhead at 2**12 elements; ``sigmoid`` shows overhead plus compute.
    """
    import timeit

    import fastact

    x = np.linspace(-3, 3, n, dtype=dtype)

    def best(fn):
        fn()  # compiles / sets the fast path up
        return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6

    ref = best(lambda: np.negative(x))
    res = {"size": n, "dtype": str(np.dtype(dtype)), "np_negative_us": ref, "ops": {}}
    for name in OVERHEAD_OPS:
        f = fastact.ACTIVATIONS[name]
        t = best(lambda: f(x))
        res["ops"][name] = {"us": t, "ratio_to_np_negative": t / ref}
    return res


# ------------------------------------------------------------------ CUDA (--device cuda)
# Nothing here imports numba.cuda or CuPy until --device cuda asks for them.

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


def _cupy_sigmoid(cp, x):
    return 1 / (1 + cp.exp(-x))


def cupy_forward(cp, name):
    """``fn(x)``: the CuPy formula a CuPy user would write for ``name``, or None."""
    table = {
        "sigmoid": lambda x: _cupy_sigmoid(cp, x),
        "tanh": cp.tanh,
        "relu": lambda x: cp.maximum(x, 0),
        "silu": lambda x: x / (1 + cp.exp(-x)),
    }
    erf = _cupy_erf()
    if erf is not None:
        table["gelu"] = lambda x: x * 0.5 * (1 + erf(x / _SQ2))
    return table.get(name)


def cupy_backward(cp, name):
    """``fn(g, x)``: the CuPy formula of ``name``'s gradient, or None."""
    def sig_grad(g, x):
        s = _cupy_sigmoid(cp, x)
        return g * s * (1 - s)

    def silu_grad(g, x):
        s = _cupy_sigmoid(cp, x)
        return g * s * (1 + x * (1 - s))

    table = {
        "sigmoid": sig_grad,
        "tanh": lambda g, x: g * (1 - cp.tanh(x) ** 2),
        "relu": lambda g, x: cp.where(x > 0, g, 0),
        "silu": silu_grad,
    }
    erf = _cupy_erf()
    if erf is not None:
        table["gelu"] = lambda g, x: g * (0.5 * (1 + erf(x / _SQ2)) + x * _INV_SQ2PI * cp.exp(-0.5 * x * x))
    return table.get(name)


def _cupy_erf():
    try:
        from cupyx.scipy.special import erf
    except ImportError:
        return None
    return erf


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
    import fastact

    def dist(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"fastact": fastact.__version__, "numpy": np.__version__,
            "cupy": cp.__version__ if cp is not None else dist("cupy-cuda13x"),
            "numba_cuda": dist("numba-cuda")}


def _check_args(ops, dtypes, size, repeat):
    """(op names, dtypes) after checking the common arguments."""
    names = _resolve_ops(ops)
    dtypes = tuple(dtypes)
    for dt in dtypes:
        if dt not in ("float32", "float64"):
            raise SystemExit(f"fastact bench: unsupported dtype {dt!r} (float32, float64)")
    if size < 1 or repeat < 1:
        raise SystemExit("fastact bench: size and repeat must be >= 1")
    return names, dtypes


def run_cuda(ops=None, dtypes=("float32", "float64"), size=DEFAULT_SIZE, repeat=DEFAULT_REPEAT, progress=True):
    """Time every (op, direction, dtype) on the current CUDA device; returns
    ``{"meta": {...}, "rows": [...]}``. Without a usable GPU (or CuPy, or
    numba-cuda) ``meta["gpu"]`` is None, ``meta["reason"]`` says why, and
    ``rows`` is empty."""
    names, dtypes = _check_args(ops, dtypes, size, repeat)
    meta = {"device": "cuda", "gpu": None, "reason": None, "size": size, "row_shape": list(_row_shape(size)),
            "dtypes": list(dtypes), "ops": list(names), "repeat": repeat, "rooflines": {},
            "versions": None, "elapsed_s": 0.0}
    reason = cuda_unavailable()
    if reason is not None:
        meta["reason"] = reason
        meta["versions"] = _cuda_versions()
        return {"meta": meta, "rows": []}
    import cupy as cp

    import fastact

    t_start = time.perf_counter()
    meta["gpu"] = _gpu_info(cp)
    meta["versions"] = _cuda_versions(cp)
    rows = []
    total, done = len(names) * len(dtypes) * 2, 0
    shape2 = _row_shape(size)
    n2 = shape2[0] * shape2[1]
    rng = np.random.default_rng(0)
    for dt in dtypes:
        x = cp.asarray((rng.standard_normal(size) * 3).astype(dt))
        g = cp.asarray(rng.standard_normal(size).astype(dt))
        out = cp.empty_like(x)
        x2, g2, out2 = (a[:n2].reshape(shape2) for a in (x, g, out))
        itemsize = np.dtype(dt).itemsize

        def copy_gbs():
            t, _ = _gpu_time(cp, lambda: cp.copyto(out, x), repeat)
            return 2 * x.nbytes / t / 1e9

        roof = copy_gbs()
        first = len(rows)
        for name in names:
            for direction in ("forward", "backward"):
                if progress:
                    print(f"\r[{'#' * (30 * done // total):<30}] {done}/{total} "
                          f"{time.perf_counter() - t_start:5.0f}s {name} {direction} {dt}        ",
                          end="", file=sys.stderr, flush=True)
                row = {k: None for k in CUDA_ROW_KEYS}
                row.update(op=name, direction=direction, dtype=dt)
                try:
                    if name in ROW_OPS:
                        f = fastact.ROW_FUNCTIONS[name]
                        arrs = (x2,) if direction == "forward" else (g2, f(x2))
                        o, peer = out2, None
                    else:
                        f = fastact.ACTIVATIONS[name]
                        arrs = (x,) if direction == "forward" else (g, x)
                        o = out
                        peer = (cupy_forward(cp, name) if direction == "forward" else cupy_backward(cp, name))
                    call = _with_out(f if direction == "forward" else f.backward, *arrs, out=o)
                    n = arrs[0].size
                    t, number = _gpu_time(cp, call, repeat)
                    moved = (2 if direction == "forward" else 3) * n * itemsize
                    row.update(size=n, shape=list(arrs[0].shape), median_ms=t * 1e3, calls_per_sample=number,
                               gb_per_s=moved / t / 1e9)
                    if peer is not None:
                        pt, _ = _gpu_time(cp, lambda: peer(*arrs), repeat)
                        row.update(cupy_ms=pt * 1e3, speedup_vs_cupy=pt / t)
                except Exception as e:  # noqa: BLE001 - an op without a GPU path is reported, the run goes on
                    row["error"] = f"{type(e).__name__}: {e}"[:300]
                rows.append(row)
                done += 1
        roof = max(roof, copy_gbs())  # again after the rows (the better of the two)
        meta["rooflines"][dt] = {"copy": {"gb_per_s": roof}}
        for r in rows[first:]:
            r["roofline_gb_per_s"] = roof
            if r["gb_per_s"] is not None:
                r["roofline_fraction"] = r["gb_per_s"] / roof
        del x, g, out, x2, g2, out2
        cp.get_default_memory_pool().free_all_blocks()
    meta["elapsed_s"] = time.perf_counter() - t_start
    if progress:
        print(f"\r[{'#' * 30}] {done}/{total} {meta['elapsed_s']:5.0f}s done" + " " * 40,
              file=sys.stderr, flush=True)
    return {"meta": meta, "rows": rows}


def no_gpu_line(result):
    return f"fastact bench: no CUDA GPU present ({result['meta']['reason']}); nothing measured"


def format_cuda_table(result):
    """The human-readable report of ``run_cuda()``'s result."""
    meta, rows = result["meta"], result["rows"]
    if meta["gpu"] is None:
        return no_gpu_line(result)
    gpu, v = meta["gpu"], meta["versions"]
    r0, r1 = meta["row_shape"]
    lines = [
        f"fastact bench --device cuda: {gpu['name']} (cc {gpu['compute_capability']}, {gpu['sm_count']} SMs, "
        f"{gpu['memory_gib']:.0f} GiB); {meta['size']} elements (softmax family: {r0} x {r1}, axis=-1), "
        f"median of {meta['repeat']} CUDA-event samples",
        f"cupy {v['cupy']}, numba-cuda {v['numba_cuda']}",
        "GB/s = bytes read + written / time; roof% = GB/s / device-to-device copy GB/s (cupy.copyto, "
        "the same arrays); xcupy = CuPy formula time / fastact time (> 1: fastact is faster)",
    ]
    head = f"{'op':<12} {'dir':<8} {'us':>9} {'GB/s':>7} {'roof%':>5} {'cupy us':>9} {'xcupy':>7}"
    for dt in meta["dtypes"]:
        lines += ["", f"{dt}: copy {meta['rooflines'][dt]['copy']['gb_per_s']:.0f} GB/s", head, "-" * len(head)]
        for r in rows:
            if r["dtype"] != dt:
                continue
            if r["error"] is not None:
                lines.append(f"{r['op']:<12} {r['direction']:<8} error: {r['error']}")
                continue
            lines.append(
                f"{r['op']:<12} {r['direction']:<8} {r['median_ms'] * 1e3:9.1f} {r['gb_per_s']:7.0f} "
                f"{100 * r['roofline_fraction']:4.0f}% "
                f"{_cell(None if r['cupy_ms'] is None else r['cupy_ms'] * 1e3, '.1f', 9)} "
                f"{_x(r['speedup_vs_cupy'])}".rstrip()
            )
    return "\n".join(lines)


# ------------------------------------------------------------------ output


def _cell(v, fmt, width):
    return f"{'':>{width}}" if v is None else f"{v:{fmt}}".rjust(width)


def _x(v, width=7):
    return f"{'':>{width}}" if v is None else f"{v:.2f}x".rjust(width)


def format_table(result):
    """The human-readable report of ``run()``'s result."""
    meta, rows = result["meta"], result["rows"]
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
        "GB/s = bytes read + written / time; roof% = GB/s / roofline GB/s (forward: np.copyto "
        "1-in-1-out, backward: np.add 2-in-1-out; the faster of 1 thread and chunked over threads)",
        "xnp, xtorch, xscipy = peer time / fastact time (> 1: fastact is faster)",
    ]
    head = (
        f"{'op':<12} {'dir':<8} {'ms':>8} {'GB/s':>6} {'roof%':>5} {'numpy ms':>9} {'xnp':>7} "
        f"{'torch ms':>9} {'xtorch':>7} {'scipy ms':>9} {'xscipy':>7}"
    )
    co = meta.get("call_overhead")
    if co:
        calls = ", ".join(f"{k} {v['us']:.2f} us ({v['ratio_to_np_negative']:.1f}x)" for k, v in co["ops"].items())
        lines.append(f"call overhead at {co['size']} {co['dtype']} elements: np.negative "
                     f"{co['np_negative_us']:.2f} us; {calls}")
    for dt in meta["dtypes"]:
        rf = meta["rooflines"][dt]

        def roof_txt(kind, label):
            r = rf[kind]
            return (f"{label} {r['gb_per_s']:.1f} GB/s (1 thread {r['one_thread_gb_per_s']:.1f}, "
                    f"{meta['threads']} threads {r['threaded_gb_per_s']:.1f})")

        lines += [
            "",
            f"{dt}: roofline {roof_txt('copy', 'copy')}; {roof_txt('add', 'add')}",
            head,
            "-" * len(head),
        ]
        for r in rows:
            if r["dtype"] != dt:
                continue
            lines.append(
                f"{r['op']:<12} {r['direction']:<8} {r['median_ms']:8.2f} {r['gb_per_s']:6.1f} "
                f"{100 * r['roofline_fraction']:4.0f}% {_cell(r['numpy_ms'], '.2f', 9)} "
                f"{_x(r['speedup_vs_numpy'])} {_cell(r['torch_ms'], '.2f', 9)} "
                f"{_x(r['speedup_vs_torch'])} {_cell(r['scipy_ms'], '.2f', 9)} "
                f"{_x(r['speedup_vs_scipy'])}".rstrip()
            )
    return "\n".join(lines)


_EPILOG = "\n\n".join(
    textwrap.fill(par, 79)
    for par in (
        "Peers: PyTorch CPU (torch.ops.aten kernels on torch.from_numpy tensors, out= where "
        "supported, the same thread count; ops without a plain aten kernel are left empty) "
        "and SciPy (expit, log_expit, softmax, log_softmax) are used when importable; a "
        "missing peer leaves its columns empty.",
        "Table columns: ms (fastact's median), GB/s, roof% (of the dtype's roofline, printed "
        "above its table), numpy ms and xnp (NumPy time / fastact time, > 1: fastact is "
        "faster), torch ms and xtorch, scipy ms and xscipy.",
        "JSON (--json): {\"meta\": {size, row_shape, dtypes, ops, repeat, threads, rooflines: "
        "{dtype: {copy|add: {one_thread_gb_per_s, threaded_gb_per_s, gb_per_s, threads}}}, "
        "versions, elapsed_s}, \"rows\": [{op, direction, dtype, size, shape, threads, "
        "median_ms, gb_per_s, roofline (copy|add), roofline_gb_per_s, roofline_threads, "
        "roofline_fraction, numpy_ms, speedup_vs_numpy, torch_ms, speedup_vs_torch, "
        "scipy_ms, speedup_vs_scipy}]}; null where a peer lacks the op or is not installed.",
        "--device cuda: the same ops on CuPy arrays on the current GPU (needs CuPy and "
        "numba-cuda: pip install 'fastact[cuda]'), timed with CUDA events (median of --repeat "
        "samples, each of back-to-back calls filling about 2 ms, after one warm-up call); "
        "roof% is of a device-to-device copy (cupy.copyto) of the same arrays, and xcupy "
        "compares with the CuPy formula a user would write (sigmoid, tanh, relu, silu, gelu "
        "with cupyx.scipy.special.erf). Without a GPU it prints one line saying why and "
        "measures nothing (exit status 0). JSON: {\"meta\": {device: \"cuda\", gpu: {name, "
        "compute_capability, sm_count, memory_gib} or null, reason, size, row_shape, dtypes, "
        "ops, repeat, rooflines: {dtype: {copy: {gb_per_s}}}, versions, elapsed_s}, \"rows\": "
        "[{" + ", ".join(CUDA_ROW_KEYS) + "}]}.",
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


def main(argv=None):
    import fastact

    ops_help = ", ".join(list(fastact.ACTIVATIONS) + list(ROW_OPS))
    p = argparse.ArgumentParser(
        prog="python -m fastact bench",
        description=__doc__.split("\n\n")[0].replace("``", "") + "\n\n" + "\n\n".join(__doc__.split("\n\n")[1:]).replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
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
    a = p.parse_args(argv)
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
