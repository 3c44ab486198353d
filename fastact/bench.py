"""``python -m fastact bench``: throughput of every activation vs NumPy.

For each activation, direction (forward, backward) and dtype it reports the
median time, GB/s (bytes read + written), the fraction of a memory roofline
measured in the same run (``np.copyto`` for 1-in-1-out, ``np.add`` for
2-in-1-out) and the speed-up over the NumPy formula a user would write.
Compilation happens in a warm-up call before any timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

# The formulas a NumPy user would write (the baselines, not fastact's formulas).
_SQ2 = np.sqrt(2.0)


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _np_gelu(x):
    from scipy.special import erf  # what a NumPy user reaches for

    return x * 0.5 * (1 + erf(x / _SQ2))


NUMPY_FORWARD = {
    "identity": lambda x: x.copy(),
    "sigmoid": _np_sigmoid,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
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
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3))),
}


def _np_sigmoid_grad(g, x):
    s = _np_sigmoid(x)
    return g * s * (1 - s)


NUMPY_BACKWARD = {
    "identity": lambda g, x: g.copy(),
    "sigmoid": _np_sigmoid_grad,
    "tanh": lambda g, x: g * (1 - np.tanh(x) ** 2),
    "relu": lambda g, x: np.where(x > 0, g, 0),
    "leaky_relu": lambda g, x: np.where(x > 0, g, 0.01 * g),
    "elu": lambda g, x: np.where(x > 0, g, g * np.exp(x)),
    "softplus": lambda g, x: g * _np_sigmoid(x),
    "silu": lambda g, x: g * _np_sigmoid(x) * (1 + x * (1 - _np_sigmoid(x))),
    "softsign": lambda g, x: g / (1 + np.abs(x)) ** 2,
}


def _median_time(fn, repeat, min_time=0.05):
    fn()  # warm-up (compiles fastact kernels)
    times = []
    t_end = time.perf_counter() + min_time
    while len(times) < repeat or (time.perf_counter() < t_end and len(times) < 50 * repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _have_scipy():
    try:
        import scipy.special  # noqa: F401
    except ImportError:
        return False
    return True


def run(ops=None, dtypes=("float32", "float64"), size=1 << 22, repeat=5, progress=True):
    import fastact

    names = ops or list(fastact.ACTIVATIONS)
    unknown = [n for n in names if n not in fastact.ACTIVATIONS]
    if unknown:
        raise SystemExit(f"unknown activation(s): {', '.join(unknown)}")
    if not _have_scipy():
        NUMPY_FORWARD.pop("gelu", None)
    rng = np.random.default_rng(0)
    rows = []
    total = len(names) * len(dtypes) * 2
    done = 0
    for dt in dtypes:
        x = (rng.standard_normal(size) * 3).astype(dt)
        g = rng.standard_normal(size).astype(dt)
        out = np.empty_like(x)
        nbytes = x.itemsize * size
        copy_t = _median_time(lambda: np.copyto(out, x), repeat)
        add_t = _median_time(lambda: np.add(x, g, out=out), repeat)
        for name in names:
            f = fastact.ACTIVATIONS[name]
            for direction in ("forward", "backward"):
                if direction == "forward":
                    t = _median_time(lambda: f(x, out=out), repeat)
                    base = NUMPY_FORWARD.get(name)
                    base_t = _median_time(lambda: base(x), repeat) if base else None
                    moved, roof = 2 * nbytes, copy_t
                else:
                    t = _median_time(lambda: f.backward(g, x, out=out), repeat)
                    base = NUMPY_BACKWARD.get(name)
                    base_t = _median_time(lambda: base(g, x), repeat) if base else None
                    moved, roof = 3 * nbytes, add_t
                rows.append(
                    {
                        "op": name,
                        "direction": direction,
                        "dtype": dt,
                        "size": size,
                        "median_ms": t * 1e3,
                        "gb_per_s": moved / t / 1e9,
                        "roofline_fraction": roof / t,
                        "numpy_ms": None if base_t is None else base_t * 1e3,
                        "speedup_vs_numpy": None if base_t is None else base_t / t,
                    }
                )
                done += 1
                if progress:
                    bar = "#" * (30 * done // total)
                    print(f"\r[{bar:<30}] {done}/{total} {name} {direction} {dt}   ", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return rows


def format_table(rows):
    head = f"{'op':<12} {'dir':<8} {'dtype':<7} {'ms':>8} {'GB/s':>7} {'roof%':>6} {'numpy ms':>9} {'speedup':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        npms = "" if r["numpy_ms"] is None else f"{r['numpy_ms']:9.2f}"
        sp = "" if r["speedup_vs_numpy"] is None else f"{r['speedup_vs_numpy']:7.2f}x"
        lines.append(
            f"{r['op']:<12} {r['direction']:<8} {r['dtype']:<7} {r['median_ms']:8.2f} "
            f"{r['gb_per_s']:7.2f} {100 * r['roofline_fraction']:5.0f}% {npms:>9} {sp:>8}"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fastact bench", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=None, help="elements per array (default 2**22, --quick 2**16)")
    p.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    p.add_argument("--ops", default=None, help="comma-separated activation names (default: all)")
    p.add_argument("--repeat", type=int, default=5, help="timed repetitions (median is reported)")
    p.add_argument("--quick", action="store_true", help="small arrays, few repetitions")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    a = p.parse_args(argv)
    size = a.size or (1 << 16 if a.quick else 1 << 22)
    repeat = 2 if a.quick else a.repeat
    dtypes = ("float32", "float64") if a.dtype == "both" else (a.dtype,)
    ops = a.ops.split(",") if a.ops else None
    rows = run(ops, dtypes, size, repeat, progress=not a.json)
    if a.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"fastact bench: {size} elements, median of >= {repeat} runs; roof% = time of "
              "np.copyto (forward) / np.add (backward) on the same bytes divided by the op's time")
        print(format_table(rows))
    return 0
