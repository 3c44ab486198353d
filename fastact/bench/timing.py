"""CPU timing: the median of repeated calls, calls chunked over threads, and the memory roofline.

Roofline: forward ops read one array and write one, so they are compared with
``np.copyto`` (1-in-1-out); backward ops read two, so with ``np.add(x, g,
out=out)`` (2-in-1-out). Each is measured on one thread and chunked over the
bench's threads (NumPy releases the GIL); the faster of the two is the wall.
"""

from __future__ import annotations

import time

import numpy as np

SLOW_CALL_S = 0.2  # calls slower than this are timed fewer times (at least 3)


def median_time(fn, repeat, min_time=0.02):
    """Median seconds of ``fn()`` after one untimed warm-up call (which compiles)."""
    t0 = time.perf_counter()
    fn()
    warm = time.perf_counter() - t0
    n = repeat if warm < SLOW_CALL_S else min(repeat, 3)
    times = []
    # short calls are repeated up to min_time: a median of a few microsecond
    # samples would mostly measure the clock
    while len(times) < n or (sum(times) < min_time and len(times) < 20 * n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def chunk_slices(n, parts):
    """``parts`` contiguous slices covering range(n)."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(parts)]


def chunked(pool, fn, arrays, threads):
    """A callable running ``fn(*chunk_arrays)`` over ``threads`` contiguous chunks
    (chunk 0 on the calling thread, the others in ``pool``)."""
    chunks = [[a[s] for a in arrays] for s in chunk_slices(arrays[0].shape[0], threads)]

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


def _wall(fn, arrays, moved, threads, repeat, pool):
    """(one-thread GB/s, chunked GB/s) of ``fn(*arrays)`` moving ``moved`` bytes."""
    one = moved / median_time(lambda: fn(*arrays), repeat) / 1e9
    if threads > 1 and pool is not None:
        return one, moved / median_time(chunked(pool, fn, arrays, threads), repeat) / 1e9
    return one, one


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
        one, many = _wall(fn, arrays, moved, threads, repeat, pool)
        if previous is not None:
            one = max(one, previous[kind]["one_thread_gb_per_s"])
            many = max(many, previous[kind]["threaded_gb_per_s"])
        res[kind] = {
            "one_thread_gb_per_s": one,
            "threaded_gb_per_s": many,
            "gb_per_s": max(one, many),
            "threads": threads if many > one else 1,
        }
    return res
