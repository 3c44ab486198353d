"""Parallelism by chunks over a shared thread pool.

Numba-built (g)ufunc loops release the GIL, so running chunks of an array in
plain Python threads scales across cores without Numba's threading layers
(OpenMP is slow on 1-D loops here, workqueue aborts on concurrent use).
Tasks never submit tasks, so concurrent callers cannot deadlock the pool.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

MIN_PARALLEL_ELEMENTS = 1 << 17  # below this one thread is faster (pool hand-off costs ~20 us)

_pool = None
_pool_lock = threading.Lock()


def num_threads():
    env = os.environ.get("FASTACT_NUM_THREADS")
    if env:
        return max(1, int(env))
    return os.cpu_count() or 1


def _get_pool(n):
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < n:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="fastact")
        return _pool


def for_chunks(fn, n_outer, n_elements):
    """Call ``fn(start, stop)`` over ``range(n_outer)``, in parallel if worth it."""
    t = min(num_threads(), n_outer)
    if t <= 1 or n_elements < MIN_PARALLEL_ELEMENTS:
        fn(0, n_outer)
        return
    bounds = [n_outer * i // t for i in range(t + 1)]
    pool = _get_pool(t)
    futures = [pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, t)]
    fn(bounds[0], bounds[1])  # the caller works too
    for f in futures:
        f.result()
