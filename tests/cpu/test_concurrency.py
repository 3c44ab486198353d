"""Concurrent callers: every public function called from 8 threads at once.

Each caller thread runs the whole scenario (forward, backward and
backward_from_output of every activation, softmax / log_softmax along several
axes, maxout, prelu with its weight gradient, swiglu, geglu), float32 and
float64 mixed in one run with a few float16 and integer inputs, below and
above the parallel thresholds, in its own order. Every result must be bitwise
the result of the same call run serially on one thread. A ``ChunkLog`` records
which OS threads ran the chunks of the large calls, so the tests also prove
that those calls were split and that pool workers, not only the callers, ran
them. The cold-cache case runs the scenario as the very first calls of a
fresh process with an empty ``NUMBA_CACHE_DIR``, so that its kernels compile
while eight threads race for them: by default the part of it that
``cold_kernels()`` picks (every public function, one kind and dtype each),
all of it with FASTACT_EXHAUSTIVE=1.

Each join has a timeout and the cold process a subprocess timeout, so a
deadlock fails the test instead of hanging the suite.
"""

import hashlib
import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fastact
from fastact.cpu import threads as _threads

CALLERS = 8
# threads per call in the concurrent runs: three uneven chunks per large
# call, the caller's and two for the pool that the eight callers share
THREADS = 3
JOIN_TIMEOUT_S = 300
COLD_TIMEOUT_S = 600
ROOT = Path(__file__).resolve().parents[2]

SMALL = 999  # below every threshold
LARGE = _threads.MIN_PARALLEL_ELEMENTS + 4321
LARGE_CHEAP = _threads.MIN_PARALLEL_ELEMENTS_CHEAP + 4321  # relu & co. and prelu split from here
REPEATS = 128
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-310, 40.0, -40.0, 1e5]


class _Arrays:
    """Read-only inputs of one scenario, made once per (size, dtype, slot)."""

    def __init__(self, seed):
        self._seed = seed
        self._made = {}

    def __call__(self, n, dtype, slot=0):
        key = (n, np.dtype(dtype), slot)
        if key not in self._made:
            rng = np.random.default_rng([self._seed, n, slot])
            if np.dtype(dtype).kind in "iu":
                a = rng.integers(-6, 7, n).astype(dtype)
            elif dtype == np.float16:  # no specials beyond float16's range (a cast would warn)
                a = (rng.standard_normal(n) * 4).astype(dtype)
                a[:3] = [np.nan, np.inf, -np.inf]
            else:
                a = rng.standard_normal(n) * 4
                a[: len(SPECIALS)] = SPECIALS
                a = a.astype(dtype)
            a.flags.writeable = False  # callers share inputs: no call may write them
            self._made[key] = a
        return self._made[key]


def _in_place(f, x):
    b = x.copy()
    f(b, out=b)
    return b


def scenario(seed, keep=None):
    """``[(name, kind, label, thunk, size)]``: the calls each caller thread runs
    (labels unique; size: the largest input's), those for which
    ``keep(name, kind, what)`` holds if given."""
    arr = _Arrays(seed)
    weights = np.random.default_rng(seed).uniform(0, 0.5, 8)
    calls = []

    def add(name, kind, what, fn, *args, **kw):
        if keep is not None and not keep(name, kind, what):
            return
        size = max(np.size(a) for a in args if isinstance(a, np.ndarray))
        calls.append((name, kind, f"{name}.{kind}[{what}]", lambda: fn(*args, **kw), size))

    dtypes = (np.float32, np.float64)
    for name, f in sorted(fastact.ACTIVATIONS.items()):
        big = LARGE_CHEAP if f.catalog_entry.cheap else LARGE
        for n in (SMALL, big):
            for dt in dtypes:
                x, g, y = arr(n, dt, 0), arr(n, dt, 1), arr(n, dt, 2)
                what = f"{np.dtype(dt)} n={n}"
                add(name, "forward", what, f, x)
                add(name, "backward", what, f.backward, g, x)
                if hasattr(f, "backward_from_output"):
                    add(name, "backward_from_output", what, f.backward_from_output, g, y)
    A = fastact.ACTIVATIONS
    add("sigmoid", "forward", "float16", A["sigmoid"], arr(SMALL, np.float16))
    add("relu", "forward", "int64 large", A["relu"], arr(LARGE_CHEAP, np.int64))
    add("gelu", "backward", "float16", A["gelu"].backward, arr(SMALL, np.float16, 1), arr(SMALL, np.float16))
    add("tanh", "backward", "float32 grad, float64 x", A["tanh"].backward,
        arr(LARGE, np.float32, 1), arr(LARGE, np.float64))
    add("leaky_relu", "forward", "float32 slope 0.3", A["leaky_relu"], arr(LARGE_CHEAP, np.float32), negative_slope=0.3)
    add("elu", "forward", "float64 alpha 0.5", A["elu"], arr(LARGE, np.float64), alpha=0.5)
    add("hardtanh", "forward", "float32 -2..3", A["hardtanh"], arr(SMALL, np.float32), min_val=-2.0, max_val=3.0)
    add("softplus", "backward", "float64 beta 2", A["softplus"].backward,
        arr(LARGE, np.float64, 1), arr(LARGE, np.float64), beta=2.0)
    add("silu", "forward", "float64 transposed", A["silu"], arr(LARGE - LARGE % 7, np.float64).reshape(-1, 7).T)
    add("gelu", "forward", "float32 in place", _in_place, A["gelu"], arr(LARGE, np.float32))
    add("relu6", "forward", "float64 in place", _in_place, A["relu6"], arr(LARGE_CHEAP, np.float64))

    for name, f in sorted(fastact.ROW_FUNCTIONS.items()):
        for shape in ((6, 10, 16), (24, 40, 72)):  # the second above MIN_PARALLEL_ELEMENTS
            n = int(np.prod(shape))
            for dt in dtypes:
                x, g, y = (arr(n, dt, k).reshape(shape) for k in range(3))
                for axis in (-1, 0, 1):
                    what = f"{np.dtype(dt)} {shape} axis={axis}"
                    add(name, "forward", what, f, x, axis=axis)
                    add(name, "backward", what, f.backward, g, y, axis=axis)
    # rows long enough for calls on other threads to overlap each row's passes,
    # float32 softmax keeping state in scratch rows between them; repeated, as
    # a race on a buffer shared between calls spoils few of them (scratch rows
    # shared by every call, a deliberate breakage: 0.6 % of such calls)
    for i in range(REPEATS):
        add("softmax", "forward", f"float32 long rows #{i}", fastact.softmax,
            arr(1 << 17, np.float32).reshape(16, -1))
    add("softmax", "forward", "float16", fastact.softmax, arr(960, np.float16).reshape(60, 16))
    add("log_softmax", "forward", "int32", fastact.log_softmax, arr(960, np.int32).reshape(16, 60), axis=0)

    for rows in (80, 6000):
        for dt in dtypes:
            x = arr(rows * 12, dt).reshape(rows, 12)
            for k, axis in ((3, -1), (2, 0)):
                shape = (rows, 12 // k) if axis == -1 else (rows // k, 12)
                what = f"{np.dtype(dt)} {x.shape} k={k} axis={axis}"
                add("maxout", "forward", what, fastact.maxout, x, k, axis=axis)
                add("maxout", "backward", what, fastact.maxout.backward,
                    arr(int(np.prod(shape)), dt, 1).reshape(shape), x, k, axis=axis)
    add("maxout", "forward", "int16", fastact.maxout, arr(960, np.int16).reshape(80, 12), 4)

    for n in (SMALL, LARGE_CHEAP):
        for dt in dtypes:
            per_channel = (-1, 8, 5) if n == SMALL else (4, 8, -1)
            forms = (  # (shape, weight, axis): channels in the middle, last, one weight
                (per_channel, weights.astype(dt), 1),
                ((-1, 5), weights[:5].astype(dt), -1),
                ((-1,), 0.25, 1),
            )
            for shape, w, axis in forms:
                x, g = (arr(n - n % 40, dt, k).reshape(shape) for k in range(2))
                what = f"{np.dtype(dt)} {x.shape} axis={axis}"
                add("prelu", "forward", what, fastact.prelu, x, w, axis=axis)
                add("prelu", "backward", what, fastact.prelu.backward, g, x, w, axis=axis)
    add("prelu", "forward", "int64", fastact.prelu, arr(960, np.int64).reshape(40, 24), weights[:1])

    for name, f in sorted(fastact.GATED_FUNCTIONS.items()):
        for approximate in ("none", "tanh") if name == "geglu" else ("none",):
            kw = {} if approximate == "none" else {"approximate": "tanh"}
            for n in (SMALL + 1, LARGE + 1):
                for dt in dtypes:
                    a, b, g = (arr(n, dt, k) for k in range(3))
                    x = arr(2 * n, dt, 3).reshape(2, n)  # split along axis 0 into a and b
                    what = f"{np.dtype(dt)} n={n} approximate={approximate}"
                    add(name, "forward", what, f, a, b, **kw)
                    add(name, "backward", what, f.backward, g, a, b, **kw)
                    add(name, "forward", what + " split", f, x, axis=0, **kw)
                    add(name, "backward", what + " split", f.backward, g.reshape(1, n), x, axis=0, **kw)
    add("swiglu", "forward", "float16", fastact.swiglu, arr(SMALL, np.float16), arr(SMALL, np.float16, 1))
    return calls


def digest(result):
    """sha256 of the result's types, dtypes, shapes and bytes: equal means bitwise equal."""
    h = hashlib.sha256()
    for r in result if isinstance(result, tuple) else (result,):
        a = np.asarray(r)
        h.update(f"{type(r).__name__} {a.dtype.str} {a.shape};".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def kinds_of(f):
    return ["forward", "backward"] + (["backward_from_output"] if hasattr(f, "backward_from_output") else [])


def cold_kernels():
    """``{name: (kind, dtype)}``: one kind in one dtype of every public
    function, rotating over the kinds and float32 / float64. The cold run of
    the whole scenario costs ~80 s CPU on the 2-CPU VM, nearly all of it
    compiling (one compile at a time: COMPILE_LOCK); this part ~27 s."""
    picks = {}
    for i, (name, f) in enumerate(sorted(fastact.FUNCTIONS.items())):
        kinds = kinds_of(f)
        picks[name] = (kinds[i % len(kinds)], ("float32", "float64")[i // 2 % 2])
    return picks


def cold_call(name, kind, what):
    return cold_kernels()[name] == (kind, what.split()[0])


def serial_digests(calls):
    """``{label: digest}`` of ``calls`` run on the calling thread, one thread per call."""
    saved = _threads._num_threads
    fastact.set_num_threads(1)
    try:
        return {label: digest(fn()) for _, _, label, fn, _ in calls}
    finally:
        fastact.set_num_threads(saved)


def seed_of(caller):
    return caller % 2  # two input sets: concurrent calls of one function on different data


def run_concurrently(keep=None):
    """Every caller thread's ``{label: digest}`` (an exception's repr in place
    of a digest), ``scenario(seed_of(caller), keep)`` started by ``CALLERS``
    threads at once, each in its own order. Raises AssertionError if a thread
    is still running after ``JOIN_TIMEOUT_S`` (a deadlock)."""
    scenarios = {s: scenario(s, keep) for s in (0, 1)}
    results = [{} for _ in range(CALLERS)]
    barrier = threading.Barrier(CALLERS, timeout=JOIN_TIMEOUT_S)

    def caller(i):
        calls = scenarios[seed_of(i)]
        start = i * len(calls) // CALLERS
        try:
            barrier.wait()
        except threading.BrokenBarrierError as e:
            results[i]["barrier"] = repr(e)
            return
        for _, _, label, fn, _ in calls[start:] + calls[:start]:
            try:
                results[i][label] = digest(fn())
            except Exception as e:  # noqa: BLE001 - reported per call by assert_same
                results[i][label] = f"raised {e!r}"

    saved = _threads._num_threads
    fastact.set_num_threads(THREADS)
    try:
        workers = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(CALLERS)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
        hung = [w.name for w in workers if w.is_alive()]
        assert not hung, f"deadlock: {hung} still running after {JOIN_TIMEOUT_S} s"
    finally:
        fastact.set_num_threads(saved)
    return results


def assert_same(results, references):
    """Each caller ran every call of its input set's ``{label: digest}`` and
    got the same digests."""
    bad = []
    for i, got in enumerate(results):
        want = references[seed_of(i)]
        if got.keys() != want.keys():
            missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
            bad.append(("missing", f"caller {i}: missing {missing[:5]}, extra {extra[:5]}"))
        bad += [(label, f"caller {i}: {label}: {got[label]}") for label in want
                if label in got and got[label] != want[label]]
    labels = sorted({label for label, _ in bad})
    assert not bad, (f"{len(bad)} results differ from the serial run, in {len(labels)} calls: "
                     f"{labels}\n" + "\n".join(line for _, line in bad[:20]))


class ChunkLog:
    """Wraps ``fastact.cpu.threads.for_chunks`` (which every chunked call goes
    through) and records, per call, the caller's thread and each chunk's
    ``(thread ident, thread name, start, stop)``. The production code is not
    touched: the wrapper only exists while a test installs it."""

    def __init__(self, for_chunks):
        self._for_chunks = for_chunks
        self.calls = []  # (caller ident, n_outer, n_elements, chunks); list.append is atomic

    @classmethod
    def install(cls, monkeypatch):
        log = cls(_threads.for_chunks)
        monkeypatch.setattr(_threads, "for_chunks", log)
        return log

    def __call__(self, fn, n_outer, n_elements):
        chunks = []
        self.calls.append((threading.get_ident(), n_outer, n_elements, chunks))

        def recorded(i0, i1):
            t = threading.current_thread()
            chunks.append((t.ident, t.name, i0, i1))
            return fn(i0, i1)

        self._for_chunks(recorded, n_outer, n_elements)

    def large_calls(self):
        return [c for c in self.calls if c[2] >= _threads.MIN_PARALLEL_ELEMENTS and c[1] > 1]

    def assert_split(self):
        """Every call large enough to run in parallel ran in >= 2 chunks that
        tile its range exactly once, on >= 2 OS threads of which one is a
        pool worker; returns (distinct threads, distinct pool workers) over
        all calls."""
        large = self.large_calls()
        assert large, "no call went through for_chunks with enough elements to split"
        for _, n_outer, n_elements, chunks in large:
            spans = sorted((i0, i1) for _, _, i0, i1 in chunks)
            assert spans[0][0] == 0 and spans[-1][1] == n_outer and all(
                a[1] == b[0] for a, b in itertools.pairwise(spans)
            ), f"chunks {spans} do not tile range({n_outer})"
            ran_on = {ident for ident, _, _, _ in chunks}
            assert len(spans) >= 2 and len(ran_on) >= 2, (
                f"a call of {n_elements} elements was not split: {len(spans)} chunk(s) "
                f"on {len(ran_on)} thread(s)"
            )
            assert any(name.startswith("fastact") for _, name, _, _ in chunks), "no pool worker ran a chunk"
        idents = {c[0] for call in large for c in call[3]}
        workers = {c[0] for call in large for c in call[3] if c[1].startswith("fastact")}
        return len(idents), len(workers)


@pytest.fixture
def chunk_log(monkeypatch):
    return ChunkLog.install(monkeypatch)


@pytest.fixture(scope="module")
def references():
    return {s: serial_digests(scenario(s)) for s in (0, 1)}


def test_scenario_covers_every_public_function():
    calls = scenario(0)
    for name, f in fastact.FUNCTIONS.items():
        for kind in kinds_of(f):  # each below and above the thresholds
            sizes = [size for n, k, _, _, size in calls if (n, k) == (name, kind)]
            assert min(sizes) < _threads.MIN_PARALLEL_ELEMENTS, (name, kind)
            cheap = name == "prelu" or getattr(f, "catalog_entry", None) and f.catalog_entry.cheap
            big = _threads.MIN_PARALLEL_ELEMENTS_CHEAP if cheap else _threads.MIN_PARALLEL_ELEMENTS
            assert max(sizes) >= big, (name, kind)
    labels = [label for _, _, label, _, _ in calls]
    assert len(set(labels)) == len(labels)


def test_eight_callers_every_function_bitwise_serial(references, chunk_log):
    results = run_concurrently()
    assert_same(results, references)
    callers = {c[0] for c in chunk_log.large_calls()}
    assert len(callers) == CALLERS  # every caller's large calls were recorded
    threads, workers = chunk_log.assert_split()
    assert threads > CALLERS and workers >= 1  # the callers and pool workers ran chunks


def test_chunk_log_flags_a_call_that_was_not_split(chunk_log):
    saved = _threads._num_threads
    fastact.set_num_threads(1)
    try:
        fastact.softmax(np.ones((512, 256)))  # chunked code path, one thread: one chunk
    finally:
        fastact.set_num_threads(saved)
    with pytest.raises(AssertionError, match="not split"):
        chunk_log.assert_split()


def test_comparison_catches_a_skipped_chunk(monkeypatch):
    """The breakage: the last chunk of every split call is dropped, as a lost
    pool task would be. In-place calls keep their inputs there, prelu loses
    that chunk's share of dweight, so the comparison must flag both."""
    def keep(name, kind, what):
        return "in place" in what or (name, kind) == ("prelu", "backward")

    references = {s: serial_digests(scenario(s, keep)) for s in (0, 1)}
    real = _threads.for_chunks

    def lossy(fn, n_outer, n_elements):
        real(lambda i0, i1: None if i1 == n_outer and i0 > 0 else fn(i0, i1), n_outer, n_elements)

    monkeypatch.setattr(_threads, "for_chunks", lossy)
    with pytest.raises(AssertionError, match="differ from the serial run") as e:
        assert_same(run_concurrently(keep), references)
    summary = str(e.value).splitlines()[0]
    assert "gelu.forward[float32 in place]" in summary and "prelu.backward[float64 (420288, 5)" in summary


COLD_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import fastact
    from fastact.cpu import threads
    from tests.cpu import test_concurrency as T

    log = T.ChunkLog(threads.for_chunks)
    threads.for_chunks = log
    results = T.run_concurrently(None if sys.argv[1] == "all" else T.cold_call)
    print(json.dumps({"results": results, "split": log.assert_split()}))
    """
)


@pytest.mark.parametrize("kernels", [
    "cold_kernels",
    pytest.param("all", marks=[pytest.mark.exhaustive, pytest.mark.skipif(
        os.environ.get("FASTACT_EXHAUSTIVE", "0") != "1",
        reason="every kernel compiled cold (minutes): set FASTACT_EXHAUSTIVE=1")]),
])
def test_cold_cache_first_calls_concurrent(tmp_path, kernels):
    """The scenario (``cold_kernels()``'s part of it, or all of it) as the
    first calls of a process with an empty Numba cache: the eight callers
    compile its kernels concurrently (COMPILE_LOCK, the disk cache, prelu's
    kernels compiling in pool workers)."""
    keep = None if kernels == "all" else cold_call
    references = {s: serial_digests(scenario(s, keep)) for s in (0, 1)}
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    env.pop("FASTACT_NUM_THREADS", None)
    try:
        r = subprocess.run([sys.executable, "-c", COLD_SCRIPT, kernels], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=COLD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"deadlock: the cold-cache process ran past {COLD_TIMEOUT_S} s\n{e.stderr}")
    assert r.returncode == 0, r.stderr[-5000:]
    assert any(tmp_path.joinpath("cache").rglob("*.nbi")), "nothing was compiled into the fresh cache"
    out = json.loads(r.stdout.splitlines()[-1])
    assert_same(out["results"], references)
    threads, workers = out["split"]
    assert threads > CALLERS and workers >= 1
