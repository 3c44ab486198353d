"""Multithreaded calls: same results as one thread, safe under concurrent
callers; each "parallel" call is shown to have run in chunks on more than one
thread (``ChunkLog``). The thread-count rule of FASTACT_NUM_THREADS and
set_num_threads (fastact/cpu/threads.py's docstring)."""

import os
import re
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastact
from fastact.cpu import threads as _threads
from tests.cpu.test_concurrency import JOIN_TIMEOUT_S, ChunkLog

BIG = max(_threads.MIN_PARALLEL_ELEMENTS, _threads.MIN_PARALLEL_ELEMENTS_CHEAP) + 12345


@pytest.fixture
def chunk_log(monkeypatch):
    return ChunkLog.install(monkeypatch)


@pytest.fixture
def two_threads():
    fastact.set_num_threads(2)
    yield
    fastact.set_num_threads(None)


@pytest.mark.parametrize("name", sorted(fastact.ACTIVATIONS))
def test_parallel_equals_single_thread(name, two_threads, chunk_log):
    f = fastact.ACTIVATIONS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(BIG) * 5
    g = rng.standard_normal(BIG)
    fastact.set_num_threads(1)
    y1, d1 = f(x), f.backward(g, x)
    fastact.set_num_threads(2)
    np.testing.assert_array_equal(f(x), y1)
    np.testing.assert_array_equal(f.backward(g, x), d1)
    x2 = x.reshape(-1, 3) if BIG % 3 == 0 else x[: BIG - BIG % 3].reshape(-1, 3)
    np.testing.assert_array_equal(f(x2), y1[: x2.size].reshape(x2.shape))
    xi = x.copy()
    f(xi, out=xi)  # in place, chunked
    np.testing.assert_array_equal(xi, y1)
    assert len(chunk_log.large_calls()) == 4  # every call above ran split
    chunk_log.assert_split()


def test_partial_overlap_is_not_chunked(two_threads, chunk_log):
    x = np.random.default_rng(1).standard_normal(BIG + 1)
    ref = fastact.sigmoid(x[1:])
    assert len(chunk_log.large_calls()) == 1
    y = x.copy()
    fastact.sigmoid(y[1:], out=y[:-1])  # out overlaps the input shifted by one
    np.testing.assert_array_equal(y[:-1], ref)
    assert len(chunk_log.large_calls()) == 1  # the overlapping call stayed in one piece


def test_layouts_in_parallel(two_threads, chunk_log):
    x = np.random.default_rng(2).standard_normal((BIG // 64 + 8, 64))
    for v in (x.T, x[:, ::2], np.asfortranarray(x), x[::-1]):
        np.testing.assert_array_equal(fastact.silu(v), fastact.silu(np.ascontiguousarray(v)))
    assert len(chunk_log.large_calls()) == 8
    chunk_log.assert_split()


def test_eight_threads_many_concurrent_calls(two_threads, chunk_log):
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal(_threads.MIN_PARALLEL_ELEMENTS * 2) * (i + 1) for i in range(8)]
    fastact.set_num_threads(1)
    refs = [(fastact.gelu(x), fastact.softmax(x.reshape(-1, 256)), fastact.mish.backward(x, x)) for x in xs]
    fastact.set_num_threads(2)
    chunk_log.calls.clear()  # the one-thread softmax calls above: one chunk each
    errors = []

    def worker(i):
        try:
            for _ in range(6):
                r = (fastact.gelu(xs[i]), fastact.softmax(xs[i].reshape(-1, 256)), fastact.mish.backward(xs[i], xs[i]))
                for a, b in zip(r, refs[i]):
                    if not np.array_equal(a, b):
                        errors.append(i)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert not errors
    assert len(chunk_log.large_calls()) == 8 * 6 * 3
    chunk_log.assert_split()


def test_set_num_threads_validation(monkeypatch):
    monkeypatch.setattr(_threads, "_num_threads", None)  # restored afterwards
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"n must be >= 1, got {bad}"):
            fastact.set_num_threads(bad)
    for bad in (1.5, "2"):
        with pytest.raises(TypeError, match="n must be an integer"):
            fastact.set_num_threads(bad)
    fastact.set_num_threads(3)
    assert fastact.get_num_threads() == 3
    fastact.set_num_threads(np.int64(2))
    assert fastact.get_num_threads() == 2
    fastact.set_num_threads(10**6)  # clamped, as the environment variable
    assert fastact.get_num_threads() == _threads.max_threads() == 4 * os.cpu_count()
    fastact.set_num_threads(None)
    assert _threads._num_threads is None and fastact.get_num_threads() >= 1


@pytest.mark.parametrize("value, expected", [
    ("1", 1), (" 2 ", 2), ("3\n", 3), ("", None), ("   ", None), (str(10**6), "max"), ("9" * 5000, "max"),
])
def test_env_variable(monkeypatch, value, expected):
    monkeypatch.setattr(_threads, "_num_threads", None)
    monkeypatch.setenv("FASTACT_NUM_THREADS", value)
    want = {None: os.cpu_count(), "max": _threads.max_threads()}.get(expected, expected)
    assert fastact.get_num_threads() == want


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "+2", "1e3", "0x10", "２"])
def test_env_variable_invalid(monkeypatch, value):
    monkeypatch.setattr(_threads, "_num_threads", None)
    monkeypatch.setenv("FASTACT_NUM_THREADS", value)
    msg = re.escape(f"FASTACT_NUM_THREADS must be an integer >= 1 (or unset), got {value!r}")
    with pytest.raises(ValueError, match=msg):
        fastact.get_num_threads()
    with pytest.raises(ValueError, match=msg):  # a call large enough to run in parallel
        fastact.gelu(np.zeros(_threads.MIN_PARALLEL_ELEMENTS))
    fastact.set_num_threads(2)  # an explicit count wins over the environment
    assert fastact.get_num_threads() == 2


def test_env_variable_invalid_in_a_fresh_process():
    """``import fastact`` and small calls work; the first large call says what is wrong."""
    code = textwrap.dedent(
        """
        import numpy as np
        import fastact
        print(fastact.gelu(np.zeros(3)), fastact.softmax(np.zeros((4, 4)))[0, 0])
        fastact.gelu(np.zeros(1 << 20))
        """
    )
    env = dict(os.environ, FASTACT_NUM_THREADS="abc")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                       check=False)
    assert r.returncode == 1 and r.stdout.split() == ["[0.", "0.", "0.]", "0.25"]
    assert r.stderr.strip().splitlines()[-1] == (
        "ValueError: FASTACT_NUM_THREADS must be an integer >= 1 (or unset), got 'abc'"
    )


def test_a_huge_thread_count_is_capped_by_chunk_size(monkeypatch, chunk_log):
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 64)  # a large machine
    monkeypatch.setattr(_threads, "_num_threads", None)
    monkeypatch.setenv("FASTACT_NUM_THREADS", str(10**6))
    assert fastact.get_num_threads() == 256
    x = np.linspace(-5, 5, 1 << 18)
    y = fastact.gelu(x)
    monkeypatch.setenv("FASTACT_NUM_THREADS", "1")
    np.testing.assert_array_equal(y, fastact.gelu(x))
    (call,) = chunk_log.large_calls()
    chunks = call[3]
    assert len(chunks) == (1 << 18) // _threads.MIN_CHUNK_ELEMENTS == 8
    assert min(i1 - i0 for _, _, i0, i1 in chunks) >= _threads.MIN_CHUNK_ELEMENTS
    chunk_log.assert_split()
