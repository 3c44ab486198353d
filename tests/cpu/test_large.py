"""Arrays of more than 2**31 elements on the CPU (issue 14, item 5): opt-in,
about 8 GiB each and a minute or more in all.

    FASTACT_LARGE=1 pytest -m large tests/cpu/test_large.py

One thread, so that each kernel call covers every element (the pool's
chunks would each see half, under 2**31): this is where an int32 element
index or offset would overflow. Results are checked at the start, in the
middle, across element 2**31 and at the end against the same function on a
small array, whose inputs are the same values: element i of ``_data`` is
``PATTERN[i % P]``.
"""

import os

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import fastact
from tests.cpu.test_memory import _data

pytestmark = [
    pytest.mark.large,
    pytest.mark.skipif(os.environ.get("FASTACT_LARGE", "0") != "1",
                       reason="arrays of more than 2**31 elements: set FASTACT_LARGE=1"),
]

F32 = np.dtype(np.float32)
N = 2**31 + 2**20 + 7
PATTERN = _data((4099,), F32)
P = PATTERN.size


def values(start, stop):
    """Elements start:stop of ``_data`` of any size."""
    return PATTERN[np.arange(start, stop) % P]


def windows(n, width=4096):
    """Index ranges at the start, the middle, across 2**31 and at the end of n elements."""
    return [(0, width), (n // 2 - width // 2, n // 2 + width // 2),
            (2**31 - width // 2, 2**31 + width // 2), (n - width, n)]


@pytest.fixture(autouse=True)
def one_thread():
    fastact.set_num_threads(1)
    yield
    fastact.set_num_threads(None)


def test_elementwise_forward_and_backward_in_place():
    x = _data((N,), F32)
    fastact.sigmoid(x, out=x)
    for a, b in windows(N):
        np.testing.assert_array_equal(x[a:b], fastact.sigmoid(values(a, b)), err_msg=f"[{a}:{b}]")
    fastact.sigmoid.backward(x, x, out=x)  # grad = y: any values do
    for a, b in windows(N):
        y = fastact.sigmoid(values(a, b))
        np.testing.assert_array_equal(x[a:b], fastact.sigmoid.backward(y, y), err_msg=f"[{a}:{b}]")


def test_softmax_rows():
    n = 1000  # not a power of two: rows straddle 2**31
    rows = -(-N // n)
    # row r is buf[r : r + n] (overlapping rows, 8 MiB for 8 GiB of them): only
    # the output takes the memory; every row differs from its neighbours
    buf = _data((rows + n,), F32)
    x = as_strided(buf, (rows, n), (F32.itemsize, F32.itemsize), writeable=False)
    out = np.full((rows, n), np.nan, F32)
    fastact.softmax(x, axis=-1, out=out)
    edge = 2**31 // n  # the row holding element 2**31
    for r in (0, 1, rows // 2, edge - 1, edge, edge + 1, rows - 1):
        np.testing.assert_array_equal(out[r], fastact.softmax(buf[r : r + n].copy()), err_msg=f"row {r}")


def test_prelu_per_channel_in_place():
    c, inner = 64, 4096
    outer = -(-N // (c * inner))
    x = _data((outer, c, inner), F32)
    w = np.linspace(0.01, 0.5, c, dtype=F32)
    fastact.prelu(x, w, axis=1, out=x)
    edge = 2**31 // (c * inner)  # the first row past 2**31 elements
    for o in (0, outer // 2, edge - 1, edge, outer - 1):
        orig = values(o * c * inner, (o + 1) * c * inner).reshape(1, c, inner)
        np.testing.assert_array_equal(x[o : o + 1], fastact.prelu(orig, w, axis=1), err_msg=f"row {o}")
