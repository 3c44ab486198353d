"""Exhaustive float32 accuracy sweep: every float32 input, not a sample.

``python -m fastact.devtools.sweep32 [--step N] [--ops sigmoid,tanh]
[--kinds forward,backward,backward_y] [--start BITS] [--stop BITS] [--json]``

Why: the accuracy tests (:mod:`fastact.devtools.accuracy`) measure against
mpmath at a few thousand chosen points; a float32 kernel has only 2^32 inputs,
so all of them can be checked. The reference is fastact's own float64 kernel
of the same function on the same inputs widened to float64: those are within
a few float64 ulp of the truth, i.e. ~1e-8 float32 ulp, negligible here (the
mpmath tests keep the float64 kernels honest).

What: for each catalog activation (default parameters) and kind, the inputs
are the float32 bit patterns ``start, start + step, ...`` below ``stop``
(step 1: every float32, NaNs and infs included; the default 17 is ~250M
inputs), evaluated in chunks through the public functions:
``fastact.<name>(x)``, ``fastact.<name>.backward(1, x)`` and, where the entry
has ``grad_y``, ``fastact.<name>.backward_from_output(1, y)`` with y the
float32 forward output (the float64 reference gets the same y, widened; the
reported input is still x). The error in float32 ulps is
``|y32 - ref| / ulp32(ref)`` (:func:`ulp_errors`). Reported per (op, kind):
the max ulp, the input where it occurs (first in bit order), how many inputs
exceed the bound of :data:`fastact.devtools.accuracy.BOUNDS` (float32: 2 ulp
forward, 4 backward and backward_y) and how many were checked, as a table
or (``--json``) a JSON list, with the throughput; the exit status is 1 when
some input exceeds its bound or a kernel fails to run (reported, the sweep
goes on).

:func:`sweep` takes any two callables, so tests can feed it broken kernels.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass

import numba
import numpy as np

from fastact.devtools.accuracy import BOUNDS

N_PATTERNS = 1 << 32
CHUNK = 1 << 22  # inputs per chunk: ~100 MB of arrays in flight
F32_MAX = float(np.finfo(np.float32).max)
ULP_OF_MAX = 2.0**104  # ulp of float32 max, the spacing beyond it
ROUNDS_TO_INF = F32_MAX + 2.0**103  # max + half its ulp (a tie, to even): inf


@dataclass
class Result:
    max_ulp: float
    worst_x: float  # the float32 input of the max (NaN: see worst_bits)
    over_bound_count: int
    checked: int
    worst_bits: int = 0  # bit pattern of worst_x
    seconds: float = 0.0  # wall time of the whole sweep
    ulp_seconds: float = 0.0  # of which the error computation


@numba.njit(cache=True)
def _special_error(g, ref):
    """:func:`ulp_errors` where ref or got is NaN, inf or zero, or ref is beyond max."""
    if math.isnan(ref) or math.isnan(g):
        return 0.0 if math.isnan(ref) and math.isnan(g) else math.inf
    if math.isinf(ref) or ref == 0.0:
        return 0.0 if g == ref else math.inf
    if abs(ref) >= ROUNDS_TO_INF and math.isinf(g) and (g > 0) == (ref > 0):
        return 0.0
    return abs(g - ref) / ULP_OF_MAX


# 1 / ulp32 of the float32 binades [2^-126, 2^128) by float64 exponent field
# (E - 1023 = -126 ... 127); clamping E to them gives 2^-149 below, 2^104 above
E_LO, E_HI = 1023 - 126, 1023 + 127
INV_SPACING = np.ldexp(1.0, 23 - (np.arange(E_LO, E_HI + 1) - 1023))


@numba.njit(cache=True, inline="always")
def _ulp_error(got, ref, ref_bits):
    g = np.float64(got)
    e = min(max((ref_bits >> 52) & 0x7FF, E_LO), E_HI)
    err = abs(g - ref) * INV_SPACING[e - E_LO]
    if err < math.inf and ref != 0.0 and abs(ref) <= F32_MAX:
        return err
    return _special_error(g, ref)


@numba.njit(cache=True)
def ulp_errors(got, ref):
    """float32 ulps between ``got`` (float32) and the float64 ``ref``, elementwise.

    NaN must meet NaN, an infinite or zero ref must be met exactly (else the
    error is inf). The spacing is the float32 ulp at ref: 2^-149 below 2^-126,
    ulp(max) = 2^104 beyond float32 max, where a ref that rounds to inf is
    also met exactly by an inf of its sign (the correctly rounded result)."""
    out = np.empty(got.size)
    bits = ref.view(np.int64)
    for i in range(got.size):
        out[i] = _ulp_error(got[i], ref[i], bits[i])
    return out


@numba.njit(cache=True)
def _reduce(got, ref, bound):
    """(max error, its first index, count above bound) of one chunk."""
    worst, k, over = -1.0, 0, 0
    bits = ref.view(np.int64)
    for i in range(got.size):
        e = _ulp_error(got[i], ref[i], bits[i])
        if e > worst:
            worst, k = e, i
        if e > bound:
            over += 1
    return worst, k, over


def bit_grid(start, stop, step, chunk=CHUNK):
    """The sweep's inputs as float32 arrays of at most ``chunk`` elements."""
    if not (0 <= start < stop <= N_PATTERNS and step >= 1):
        raise ValueError(
            f"need 0 <= start < stop <= 2**32 and step >= 1, got {start} {stop} {step}"
        )
    span = chunk * step
    for b0 in range(start, stop, span):
        bits = np.arange(b0, min(b0 + span, stop), step, dtype=np.uint64)
        yield bits.astype(np.uint32).view(np.float32)


def sweep(f32_fn, f64_fn, step=17, start=0, stop=N_PATTERNS, chunk=CHUNK, bound=2.0):
    """Max float32-ulp error of ``f32_fn`` against ``f64_fn`` over the grid.

    ``f32_fn`` maps a float32 array to float32 results, ``f64_fn`` the same
    inputs widened to float64 to the float64 reference; both are called once
    per chunk. ``bound`` is the ulp count above which an input is counted."""
    t0 = time.perf_counter()
    t_ulp = 0.0
    res = Result(-1.0, math.nan, 0, 0)
    for x in bit_grid(start, stop, step, chunk):
        with np.errstate(all="ignore"):  # widening a signalling NaN sets "invalid"
            got = np.ascontiguousarray(f32_fn(x), dtype=np.float32)
            ref = np.ascontiguousarray(f64_fn(x.astype(np.float64)), dtype=np.float64)
        if got.shape != x.shape or ref.shape != x.shape:
            raise ValueError(
                f"sweep: results {got.shape} / {ref.shape} for inputs {x.shape}"
            )
        t1 = time.perf_counter()
        worst, k, over = _reduce(got, ref, float(bound))
        t_ulp += time.perf_counter() - t1
        if worst > res.max_ulp:
            res.max_ulp, res.worst_x = worst, float(x[k])
            res.worst_bits = int(x[k : k + 1].view(np.uint32)[0])
        res.over_bound_count += over
        res.checked += x.size
    res.seconds, res.ulp_seconds = time.perf_counter() - t0, t_ulp
    return res


# ------------------------------------------------------------ catalog kernels


def kernels(name, kind):
    """(f32_fn, f64_fn) of catalog entry ``name``'s ``kind`` through the public API."""
    import fastact

    fn = getattr(fastact, name)

    def ones(x):
        return np.ones(x.shape, dtype=x.dtype)

    if kind == "forward":
        return fn, fn
    if kind == "backward":

        def back(x):  # grad = 1: the derivative itself
            return fn.backward(ones(x), x)

        return back, back
    if kind != "backward_y":
        raise ValueError(f"unknown kind {kind!r}")

    def f32(x):
        y = fn(x)
        return fn.backward_from_output(ones(y), y)

    def f64(x):  # the same float32 y, widened
        y = fn(x.astype(np.float32)).astype(np.float64)
        return fn.backward_from_output(ones(y), y)

    return f32, f64


def cases(ops=None, kinds=None):
    """(name, kind) of every catalog entry and its kinds, optionally filtered."""
    from fastact.catalog import ENTRIES
    from fastact.devtools.accuracy import kinds as entry_kinds

    names = {e.name for e in ENTRIES}
    for given, known in ((ops, names), (kinds, {"forward", "backward", "backward_y"})):
        unknown = set(given or ()) - known
        if unknown:
            raise SystemExit(
                f"sweep32: unknown {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
    return [
        (e.name, k)
        for e in ENTRIES
        if ops is None or e.name in ops
        for k in entry_kinds(e)
        if kinds is None or k in kinds
    ]


def run_case(name, kind, step=17, start=0, stop=N_PATTERNS, chunk=CHUNK):
    """:func:`sweep` of one catalog kernel against its catalog float32 bound."""
    f32, f64 = kernels(name, kind)
    with np.errstate(all="ignore"):  # compile (or load) both outside the timing
        f32(np.ones(1, np.float32))
        f64(np.ones(1))
    return sweep(f32, f64, step, start, stop, chunk, BOUNDS[(kind, "float32")])


# ------------------------------------------------------------------- the CLI


HEADER = f"{'op':<12} {'kind':<10} {'max ulp':>8}  {'at x':<24} {'bits':<10} {'over':>6} {'checked':>11} {'M/s':>6}"


def _row(name, kind, r):
    rate = r.checked / r.seconds / 1e6 if r.seconds else 0.0
    return (
        f"{name:<12} {kind:<10} {r.max_ulp:>8.3f}  {r.worst_x!r:<24} {r.worst_bits:#010x} "
        f"{r.over_bound_count:>6} {r.checked:>11} {rate:>6.1f}"
    )


_INT = functools.partial(int, base=0)  # decimal or 0x...
OPTIONS = [  # (flag, type, default, help)
    ("--step", int, 17, "bit-pattern stride (1: every float32)"),
    ("--ops", str, None, "comma-separated catalog names (default: all)"),
    ("--kinds", str, None, "comma-separated of forward,backward,backward_y"),
    ("--start", _INT, 0, "first bit pattern (0x... allowed)"),
    ("--stop", _INT, N_PATTERNS, "end bit pattern, exclusive"),
    ("--chunk", int, CHUNK, "inputs per chunk"),
]


def _args(argv):
    doc = __doc__.split("\n\n")[0]
    p = argparse.ArgumentParser(
        prog="python -m fastact.devtools.sweep32", description=doc
    )
    for flag, typ, default, text in OPTIONS:
        p.add_argument(flag, type=typ, default=default, help=text)
    p.add_argument(
        "--json", action="store_true", help="a JSON list instead of the table"
    )
    a = p.parse_args(argv)
    a.ops = a.ops.split(",") if a.ops else None
    a.kinds = a.kinds.split(",") if a.kinds else None
    return a


def main(argv=None):
    a = _args(argv)
    todo = cases(a.ops, a.kinds)
    rows, total, t0 = [], 0, time.perf_counter()
    if not a.json:
        print(
            f"step {a.step}, bits [{a.start:#x}, {a.stop:#x}), bound 2 ulp forward / 4 backward"
        )
        print(HEADER, flush=True)
    for name, kind in todo:
        rows.append({"op": name, "kind": kind, "bound": BOUNDS[(kind, "float32")]})
        try:
            r = run_case(name, kind, a.step, a.start, a.stop, a.chunk)
        except Exception as e:  # noqa: BLE001 - reported, the other kernels still run
            rows[-1]["error"] = f"{type(e).__name__}: {str(e)[:200]}"
            print(f"{name:<12} {kind:<10} failed: {rows[-1]['error']}", file=sys.stderr)
            continue
        total += r.checked
        rows[-1].update(asdict(r), worst_hex=f"{r.worst_bits:#010x}")
        if not a.json:
            print(_row(name, kind, r), flush=True)
    wall = time.perf_counter() - t0
    ulp_s = sum(r.get("ulp_seconds", 0.0) for r in rows)
    if a.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        print(
            f"{total} inputs in {wall:.1f} s: {total / wall / 1e6:.1f} M inputs/s "
            f"(error computation {ulp_s:.1f} s of it)"
        )
    return 1 if any(r.get("over_bound_count", 1) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
