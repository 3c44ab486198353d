"""asv benchmarks, generated from fastact's catalog.

Every elementwise activation is benchmarked forward and backward, float32 and
float64, at 2^12, 2^20 and 2^24 elements (2^24 is skipped when the environment
variable FASTACT_ASV_QUICK is set, as the CI smoke run does), plus the softmax
family on (rows, 1024). ``time_*`` report seconds; ``track_*`` report GB/s and
the percentage of the copy roofline measured in the same setup (np.copyto for
1-in-1-out, np.add for 2-in-1-out). Kernels compile in ``setup`` so compile
time never pollutes a timing; import time and the first call with a warm disk
cache have their own ``timeraw_*`` benchmarks.

FASTACT_ASV_OPS=a,b restricts the elementwise ops (a quick smoke run).

Written to run against every commit of the repository: a function that a
commit does not have is skipped (NotImplementedError), not failed.
"""

import os
import time
from typing import ClassVar

import numpy as np

import fastact

QUICK = bool(os.environ.get("FASTACT_ASV_QUICK"))
# FASTACT_ASV_OPS=sigmoid,gelu restricts the elementwise ops (the CI smoke run)
_ONLY = [o for o in os.environ.get("FASTACT_ASV_OPS", "").split(",") if o]
OPS = [o for o in sorted(fastact.ACTIVATIONS) if not _ONLY or o in _ONLY]
# the public registries name the ops, so a new function is benchmarked without an edit here;
# a commit before the softmax family has no ROW_FUNCTIONS (and no Rows benchmarks)
ROW_OPS = list(getattr(fastact, "ROW_FUNCTIONS", {}))
DIRECTIONS = ["forward", "backward"]
DTYPES = ["float32", "float64"]
SIZES = [1 << 12, 1 << 20, 1 << 24]
ROWS = [4, 1024, 16384]
TRACK_SIZE = 1 << 20


def _elementwise_call(op, direction, dtype, size):
    if size > (1 << 20) and QUICK:
        raise NotImplementedError("2^24 elements only outside quick mode")
    f = fastact.ACTIVATIONS[op]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(size) * 3).astype(dtype)
    out = np.empty_like(x)
    if direction == "forward":
        call, nbytes, ins = (lambda: f(x, out=out)), 2 * x.nbytes, 1
    else:
        g = rng.standard_normal(size).astype(dtype)
        call, nbytes, ins = (lambda: f.backward(g, x, out=out)), 3 * x.nbytes, 2
    call()  # compile (or load from the disk cache) before any timing
    return call, nbytes, ins, x, out


def _row_call(op, direction, dtype, rows):
    if rows > 1024 and QUICK:
        raise NotImplementedError("large row counts only outside quick mode")
    f = getattr(fastact, op, None)
    if f is None:
        raise NotImplementedError(f"this commit has no fastact.{op}")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((rows, 1024)) * 3).astype(dtype)
    out = np.empty_like(x)
    if direction == "forward":
        call, nbytes, ins = (lambda: f(x, out=out)), 2 * x.nbytes, 1
    else:
        y = f(x)
        g = rng.standard_normal(x.shape).astype(dtype)
        call, nbytes, ins = (lambda: f.backward(g, y, out=out)), 3 * x.nbytes, 2
    call()
    return call, nbytes, ins, x, out


def _best_time(call, min_time=0.05, max_runs=50):
    best = float("inf")
    end = time.perf_counter() + min_time
    runs = 0
    while runs < 3 or (time.perf_counter() < end and runs < max_runs):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def _roofline(ins, x, out):
    """Best time to move the same bytes: a copy (1 in) or an add (2 in)."""
    if ins == 1:
        return _best_time(lambda: np.copyto(out, x))
    y = x.copy()
    return _best_time(lambda: np.add(x, y, out=out))


class Elementwise:
    """Time of every catalog activation, forward and backward."""

    params: ClassVar[list] = [OPS, DIRECTIONS, DTYPES, SIZES]
    param_names: ClassVar[list] = ["op", "direction", "dtype", "size"]
    timeout = 300

    def setup(self, op, direction, dtype, size):
        self.call = _elementwise_call(op, direction, dtype, size)[0]

    def time_op(self, op, direction, dtype, size):
        self.call()


class _Throughput:
    """GB/s and percent of the roofline of ``self.call`` moving ``self.nbytes``."""

    timeout = 300

    def track_gbps(self, *params):
        return self.nbytes / _best_time(self.call) / 1e9

    track_gbps.unit = "GB/s"

    def track_roofline_percent(self, *params):
        return 100.0 * self.roof / _best_time(self.call)

    track_roofline_percent.unit = "%"


class ElementwiseThroughput(_Throughput):
    """GB/s and percent of the copy roofline at 2^20 elements."""

    params: ClassVar[list] = [OPS, DIRECTIONS, DTYPES]
    param_names: ClassVar[list] = ["op", "direction", "dtype"]

    def setup(self, op, direction, dtype):
        self.call, self.nbytes, ins, x, out = _elementwise_call(op, direction, dtype, TRACK_SIZE)
        self.roof = _roofline(ins, x, out)


class Rows:
    """softmax / log_softmax on (rows, 1024), forward and backward (from y)."""

    params: ClassVar[list] = [ROW_OPS, DIRECTIONS, DTYPES, ROWS]
    param_names: ClassVar[list] = ["op", "direction", "dtype", "rows"]
    timeout = 300

    def setup(self, op, direction, dtype, rows):
        self.call = _row_call(op, direction, dtype, rows)[0]

    def time_rows(self, op, direction, dtype, rows):
        self.call()


class RowsThroughput(_Throughput):
    params: ClassVar[list] = [ROW_OPS, DIRECTIONS, DTYPES]
    param_names: ClassVar[list] = ["op", "direction", "dtype"]

    def setup(self, op, direction, dtype):
        self.call, self.nbytes, ins, x, out = _row_call(op, direction, dtype, 1024)
        self.roof = _roofline(ins, x.ravel(), out.ravel())


class Startup:
    """Import time, and the first call in a fresh process with a warm or a cold
    disk cache (cold: compiling float32 gelu and sigmoid forward; Numba's
    IR-level inlining once made that ~80 s of CPU, now ~1-2 s)."""

    timeout = 300

    def setup(self):
        fastact.gelu(np.ones(16, np.float32))  # writes the disk cache the timed process reads

    def timeraw_import_fastact(self):
        return "import fastact"

    def timeraw_first_call_warm_cache(self):
        # numba is imported in the untimed setup: this is the cache load + first call
        return (
            "fastact.gelu(x)",
            "import numpy as np, numba, fastact; x = np.ones(16, np.float32)",
        )

    def timeraw_first_call_cold_cache(self):
        # an empty cache directory per process: the timed call compiles
        return (
            "fastact.gelu(x); fastact.sigmoid(x)",
            "import os, tempfile; os.environ['NUMBA_CACHE_DIR'] = tempfile.mkdtemp(); "
            "import numpy as np, numba, fastact; x = np.ones(16, np.float32)",
        )

    timeraw_first_call_cold_cache.repeat = 3
