"""Multithreaded calls: same results as one thread, safe under concurrent callers."""

import threading

import numpy as np
import pytest

import fastact
from fastact.cpu import threads as _threads

BIG = max(_threads.MIN_PARALLEL_ELEMENTS, _threads.MIN_PARALLEL_ELEMENTS_CHEAP) + 12345


@pytest.fixture
def two_threads():
    fastact.set_num_threads(2)
    yield
    fastact.set_num_threads(None)


@pytest.mark.parametrize("name", sorted(fastact.ACTIVATIONS))
def test_parallel_equals_single_thread(name, two_threads):
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


def test_partial_overlap_is_not_chunked(two_threads):
    x = np.random.default_rng(1).standard_normal(BIG + 1)
    ref = fastact.sigmoid(x[1:])
    y = x.copy()
    fastact.sigmoid(y[1:], out=y[:-1])  # out overlaps the input shifted by one
    np.testing.assert_array_equal(y[:-1], ref)


def test_layouts_in_parallel(two_threads):
    x = np.random.default_rng(2).standard_normal((BIG // 64 + 8, 64))
    for v in (x.T, x[:, ::2], np.asfortranarray(x), x[::-1]):
        np.testing.assert_array_equal(fastact.silu(v), fastact.silu(np.ascontiguousarray(v)))


def test_eight_threads_many_concurrent_calls(two_threads):
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal(_threads.MIN_PARALLEL_ELEMENTS * 2) * (i + 1) for i in range(8)]
    fastact.set_num_threads(1)
    refs = [(fastact.gelu(x), fastact.softmax(x.reshape(-1, 256)), fastact.mish.backward(x, x)) for x in xs]
    fastact.set_num_threads(2)
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

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_set_num_threads_validation():
    with pytest.raises(ValueError):
        fastact.set_num_threads(0)
    fastact.set_num_threads(3)
    assert fastact.get_num_threads() == 3
    fastact.set_num_threads(None)
    assert fastact.get_num_threads() >= 1


def test_env_variable(monkeypatch):
    monkeypatch.setenv("FASTACT_NUM_THREADS", "1")
    assert fastact.get_num_threads() == 1
