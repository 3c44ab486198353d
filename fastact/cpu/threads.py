"""Parallelism by chunks over a shared thread pool.

Numba-built (g)ufunc loops release the GIL, so running chunks of an array in
plain Python threads scales across cores without Numba's threading layers
(OpenMP is 25-40x slower on 1-D loops here, workqueue aborts the process when
two threads call it at once, TBB needs its library on the loader path). Tasks
never submit tasks, so concurrent callers cannot deadlock the pool, and each
call only touches its own disjoint slices.

The thread count is ``set_num_threads(n)``, else ``FASTACT_NUM_THREADS``, else
the number of CPUs. A forked child forgets the parent's pool (whose threads
it does not have) and starts its own. Arrays below ``MIN_PARALLEL_ELEMENTS`` stay on the
calling thread (the pool hand-off costs tens of microseconds).
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# measured crossovers on the 2-vCPU VM (a hand-off to the pool costs ~80 us):
# kernels calling exp/erfc (~3-5 ns/element) gain from 2**16 elements on,
# memory-bound ones (relu: 0.2 ns/element) only from about 2**21
MIN_PARALLEL_ELEMENTS = 1 << 16
MIN_PARALLEL_ELEMENTS_CHEAP = 1 << 21

_pool = None
_pool_lock = threading.Lock()
_num_threads = None


def set_num_threads(n):
    """Use at most ``n`` threads per call (``None``: back to the default)."""
    global _num_threads
    if n is not None:
        n = int(n)
        if n < 1:
            raise ValueError(f"fastact.set_num_threads: n must be >= 1, got {n}")
    _num_threads = n


def get_num_threads():
    """The number of threads a large call uses."""
    if _num_threads is not None:
        return _num_threads
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


def _forget_pool_in_child():
    """A forked child has the parent's executor object but none of its
    threads: work submitted to it would wait forever (multiprocessing's fork
    workers, PyTorch's DataLoader workers). The child starts a pool of its
    own on its first large call. The lock may have been held by a parent
    thread at the fork, so the child gets a fresh one."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def for_chunks(fn, n_outer, n_elements):
    """Call ``fn(start, stop)`` over ``range(n_outer)``, in parallel if worth it."""
    t = min(get_num_threads(), n_outer)
    if t <= 1 or n_elements < MIN_PARALLEL_ELEMENTS:
        fn(0, n_outer)
        return
    bounds = [n_outer * i // t for i in range(t + 1)]
    pool = _get_pool(t)
    futures = [pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, t)]
    fn(bounds[0], bounds[1])  # the caller works too
    for f in futures:
        f.result()


def _same_view(a, b):
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
        and a.shape == b.shape
    )


def split_views(arrays, out):
    """Views of ``arrays`` and ``out`` that can be sliced together along axis 0,
    or None when the call must stay in one piece (broadcasting, partial overlap
    between out and an input, or a layout that does not flatten)."""
    shape = out.shape
    if any(a.shape != shape for a in arrays) or out.ndim == 0:
        return None
    for a in arrays:
        if a is not out and np.may_share_memory(a, out) and not _same_view(a, out):
            return None  # chunks of out could overwrite input another chunk reads
    if shape[0] >= 2 * get_num_threads() or out.ndim == 1:
        return arrays, out
    if all(a.flags.c_contiguous for a in arrays) and out.flags.c_contiguous:
        return [a.reshape(-1) for a in arrays], out.reshape(-1)
    return None
