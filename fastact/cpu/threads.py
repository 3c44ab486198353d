"""Parallelism by chunks over a shared thread pool.

Numba-built (g)ufunc loops release the GIL, so running chunks of an array in
plain Python threads scales across cores without Numba's threading layers
(OpenMP is 25-40x slower on 1-D loops here, workqueue aborts the process when
two threads call it at once, TBB needs its library on the loader path). Tasks
never submit tasks, so concurrent callers cannot deadlock the pool, and each
call only touches its own disjoint slices. A forked child forgets the
parent's pool (whose threads it does not have) and starts its own.

The thread count is ``set_num_threads(n)``, else the environment variable
``FASTACT_NUM_THREADS``, else ``os.cpu_count()``:

- ``FASTACT_NUM_THREADS`` is read at each call that needs it
  (``get_num_threads()``, a call large enough to run in parallel), never at
  ``import fastact``. Unset, empty or blank means the default; surrounding
  blanks are ignored (``" 2 "`` is 2). Any other value that is not an
  integer >= 1 in ASCII digits (``"0"``, ``"-1"``, ``"abc"``, ``"1.5"``)
  raises ValueError naming the variable and the value, at every such call,
  until it is fixed.
- ``set_num_threads(n)`` takes an integer >= 1 (TypeError for other types,
  ValueError below 1); ``None`` goes back to the environment / default.
- Either count is clamped to ``max_threads()`` = 4 x ``os.cpu_count()``:
  the chunks are CPU-bound, so threads beyond the cores add hand-offs and
  pool threads (a stack each), not speed; the factor 4 still lets a one- or
  two-CPU machine run (and test) the multi-threaded paths.
  ``get_num_threads()`` returns the clamped count.

A call uses at most that many threads, and at most one per
``MIN_CHUNK_ELEMENTS`` elements, so that no chunk costs less than the
hand-off to the pool (``FASTACT_NUM_THREADS=1000000`` on a 2**20-element
array gives 8 chunks on a 2-CPU machine, never a million). Arrays below
``MIN_PARALLEL_ELEMENTS`` stay on the calling thread (the pool hand-off costs
tens of microseconds).
"""

import operator
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# measured crossovers on the 2-vCPU VM (a hand-off to the pool costs ~80 us):
# kernels calling exp/erfc (~3-5 ns/element) gain from 2**16 elements on,
# memory-bound ones (relu: 0.2 ns/element) only from about 2**21
MIN_PARALLEL_ELEMENTS = 1 << 16
MIN_PARALLEL_ELEMENTS_CHEAP = 1 << 21
# the two halves of a MIN_PARALLEL_ELEMENTS call: a chunk never gets fewer
MIN_CHUNK_ELEMENTS = MIN_PARALLEL_ELEMENTS // 2
# thread counts above max_threads() are clamped to it (see the module docstring)
THREADS_PER_CPU = 4

_pool = None
_pool_lock = threading.Lock()
_num_threads = None


def max_threads():
    """The largest thread count a call uses: ``THREADS_PER_CPU`` x ``os.cpu_count()``."""
    return THREADS_PER_CPU * (os.cpu_count() or 1)


def set_num_threads(n):
    """Use at most ``n`` threads per call (``None``: back to the default).

    ``n`` is an integer >= 1; values above ``max_threads()`` are clamped to it.
    """
    global _num_threads
    if n is not None:
        try:
            n = operator.index(n)
        except TypeError:
            raise TypeError(f"fastact.set_num_threads: n must be an integer or None, got {n!r}") from None
        if n < 1:
            raise ValueError(f"fastact.set_num_threads: n must be >= 1, got {n}")
    _num_threads = n


def _env_threads():
    """FASTACT_NUM_THREADS as an int >= 1, or None where unset or blank."""
    env = os.environ.get("FASTACT_NUM_THREADS")
    if env is None or not env.strip():
        return None
    value = env.strip()
    try:  # ASCII digits only: int() would also take "+3", "1_000" and other scripts' digits
        n = int(value) if value.isascii() and value.isdigit() else 0
    except ValueError:  # more digits than int() parses: far above the clamp
        n = max_threads()
    if n < 1:
        raise ValueError(f"FASTACT_NUM_THREADS must be an integer >= 1 (or unset), got {env!r}")
    return n


def get_num_threads():
    """The number of threads a large call uses (see the module docstring)."""
    n = _num_threads
    if n is None:
        n = _env_threads()
    if n is None:
        n = os.cpu_count() or 1
    return min(n, max_threads())


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
    if n_elements < MIN_PARALLEL_ELEMENTS or n_outer <= 1:
        fn(0, n_outer)
        return
    t = min(get_num_threads(), n_outer, n_elements // MIN_CHUNK_ELEMENTS)
    if t <= 1:
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
