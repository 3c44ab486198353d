"""What the CPU and the CUDA runs share: defaults, op names, argument checks, the progress bar."""

from __future__ import annotations

import sys
import time

import numpy as np

import fastact

ROW_OPS = tuple(fastact.ROW_FUNCTIONS)  # softmax, log_softmax: timed on 2-D rows
ROW_LEN = 1024  # the softmax family runs on (size // ROW_LEN, ROW_LEN), axis=-1
DEFAULT_SIZE = 1 << 24
QUICK_SIZE = 1 << 16
DEFAULT_REPEAT = 5
QUICK_REPEAT = 2
DIRECTIONS = ("forward", "backward")
BAR_WIDTH = 30


def resolve_ops(ops):
    """The op names to time (aliases resolved, duplicates dropped); every op when ``ops`` is empty."""
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


def check_args(ops, dtypes, size, repeat):
    """(op names, dtypes) after checking the common arguments."""
    names = resolve_ops(ops)
    dtypes = tuple(dtypes)
    for dt in dtypes:
        if dt not in ("float32", "float64"):
            raise SystemExit(f"fastact bench: unsupported dtype {dt!r} (float32, float64)")
    if size < 1 or repeat < 1:
        raise SystemExit("fastact bench: size and repeat must be >= 1")
    return names, dtypes


def row_shape(size):
    """The softmax family's 2-D shape for ``size`` elements (one short row below ROW_LEN)."""
    if size >= ROW_LEN:
        return (size // ROW_LEN, ROW_LEN)
    return (1, size)


def moved_bytes(direction, n, dtype):
    """Bytes read + written: forward reads x, backward reads grad and x (or y)."""
    return (2 if direction == "forward" else 3) * n * np.dtype(dtype).itemsize


class Progress:
    """The one-line progress bar on stderr, redrawn per (op, direction, dtype); silent when off."""

    def __init__(self, total, on=True):
        self.total, self.on, self.done = total, on, 0
        self.t_start = time.perf_counter()

    def elapsed(self):
        return time.perf_counter() - self.t_start

    def show(self, name, direction, dtype):
        if self.on:
            bar = "#" * (BAR_WIDTH * self.done // self.total)
            print(f"\r[{bar:<{BAR_WIDTH}}] {self.done}/{self.total} {self.elapsed():5.0f}s "
                  f"{name} {direction} {dtype}        ", end="", file=sys.stderr, flush=True)

    def step(self):
        self.done += 1

    def finish(self):
        """Draws the full bar; returns the seconds since the start."""
        elapsed = self.elapsed()
        if self.on:
            print(f"\r[{'#' * BAR_WIDTH}] {self.done}/{self.total} {elapsed:5.0f}s done" + " " * 40,
                  file=sys.stderr, flush=True)
        return elapsed
