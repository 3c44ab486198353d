"""The bad-input matrix: one test per (public function, case), see _bad_input_cases.

The cells run in one worker subprocess, started once for the cells that
pytest selected, so that a crash of a compiled kernel (a segfault, an abort)
is the failure of the cell that was running, and of the cells after it, with
the signal named, instead of the end of the pytest process. Each test here
asserts its cell's recorded result.

Decisions the cells encode (details in _bad_input_cases):
- softmax rows: a row holding NaN or +inf, or only -inf, is NaN throughout
  (fastact's documented choice, the same as torch.softmax and
  scipy.special.softmax: exp(x - max) is exp(inf - inf) = NaN; the limit of
  softmax as one entry -> +inf is one-hot, but with two +inf entries there
  is none, and returning it would hide the bad input). -inf entries give 0
  (softmax) / -inf (log_softmax), the others are the softmax of the rest.
- the backward passes with inf / NaN in grad or y: the IEEE value of their
  documented formula (y * (grad - sum(grad * y)), grad - exp(y) * sum(grad),
  grad * f'(x), grad * f'(y)) evaluated exactly: a NaN only where the
  formula itself has inf - inf, 0 * inf or a NaN operand.
- f(+-inf): the catalog's limits; a zero limit has the sign the function
  takes near it (silu(-inf) = -0.0, as silu(-max) rounds to -0.0), and an
  exact zero (relu(-1), relu'(-1)) is +0.0, times grad by IEEE rules.
- extreme finite values (+-max): the exact result rounded once, +-inf on
  overflow, a signed zero on underflow; a subnormal true result may come
  out smaller (grad * f'(x) rounds f'(x) first), never larger or NaN.
"""

from __future__ import annotations

import collections
import os
import textwrap

import numpy as np
import pytest

import fastact
from fastact.catalog import CATALOG

from tests.functions import _bad_input_cases as B

# The kernels these cells find wrong (not fastact/functions: compiled
# formulas in fastact/scalar and fastact/cpu); strict, so a fix shows up.
KERNEL_BUGS = {
    "softsign.backward|extreme|extreme":
        "float64 softsign.backward(max, max/3) is 0: f'(x) = 9/max^2 underflows before the product, "
        "the exact result 5.0e-308 is a normal number",
}

CELL_IDS = list(B.cells())
CELLS_FILE = os.path.abspath(B.__file__)
TIMEOUT = 600  # a hung worker fails its cells instead of hanging the suite


def _param(cid):
    op, _, case = cid.split("|")
    marks = [pytest.mark.xfail(strict=True, reason=KERNEL_BUGS[cid])] if cid in KERNEL_BUGS else []
    return pytest.param(cid, id=f"{op}-{case}", marks=marks)


def _worker_env():
    # the worker imports the fastact that this process imported (a scratch
    # copy on PYTHONPATH included)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastact.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def matrix(request, tmp_path_factory):
    """{cell id: (status, message)} for the selected cells, from one worker."""
    wanted = [item.callspec.params["cid"] for item in request.session.items
              if item.originalname == "test_cell" and item.module is request.module]
    path = str(tmp_path_factory.mktemp("bad_input") / "results.jsonl")
    return B.run_worker(CELLS_FILE, wanted, path, TIMEOUT, env=_worker_env())


def test_every_public_function_has_cells():
    ops = {cid.split("|")[0] for cid in CELL_IDS}
    expected = set(fastact.FUNCTIONS) | {f"{n}.backward" for n in fastact.FUNCTIONS}
    expected |= {f"{n}.backward_from_output" for n, e in CATALOG.items() if e.grad_y is not None}
    assert ops == expected
    assert set(KERNEL_BUGS) <= set(CELL_IDS)
    # every op meets every case that applies to all ops
    per_case = collections.Counter(cid.split("|", 1)[1] for cid in CELL_IDS)
    for case in ("dtype|int64", "dtype|complex", "layout|0-d", "layout|big-endian", "special|nan",
                 "extreme|extreme"):
        assert per_case[case] == len(ops), case


@pytest.mark.parametrize("cid", [_param(c) for c in CELL_IDS])
def test_cell(cid, matrix):
    status, message = matrix[cid]
    assert status == "ok", f"{status}: {message}"


# ------------------------------------------------------ the worker machinery

DEMO_CELLS = textwrap.dedent("""
    import ctypes, os, signal, time

    def fail():
        assert 1 == 2, "a wrong value"

    def cells():
        return {
            "ok": lambda: None,
            "failing": fail,
            "raising": lambda: 1 / 0,
            "segfault": lambda: ctypes.string_at(0),
            "after-segfault": lambda: None,
            "hang": lambda: time.sleep(60),
            "abort": lambda: os.kill(os.getpid(), signal.SIGABRT),
        }
""")


def _demo(tmp_path, ids, timeout=60):
    cells = tmp_path / "demo_cells.py"
    cells.write_text(DEMO_CELLS)
    return B.run_worker(str(cells), ids, str(tmp_path / "results.jsonl"), timeout, env=_worker_env())


def test_worker_reports_a_segfault_as_the_running_cells_failure(tmp_path):
    r = _demo(tmp_path, ["ok", "failing", "raising", "segfault", "after-segfault"])
    assert r["ok"] == ("ok", "")
    assert r["failing"][0] == "failed" and "a wrong value" in r["failing"][1]
    assert r["raising"][0] == "error" and "ZeroDivisionError" in r["raising"][1]
    assert r["segfault"][0] == "crashed"
    assert "killed by SIGSEGV while running this cell" in r["segfault"][1]
    assert r["after-segfault"][0] == "crashed"
    assert "not run" in r["after-segfault"][1] and "SIGSEGV at cell segfault" in r["after-segfault"][1]


def test_worker_reports_an_abort_and_a_hang(tmp_path):
    r = _demo(tmp_path, ["abort"])
    assert r["abort"][0] == "crashed" and "SIGABRT" in r["abort"][1]
    r = _demo(tmp_path, ["ok", "hang", "after-segfault"], timeout=5)
    assert r["ok"][0] == "ok"
    assert r["hang"][0] == "crashed" and "timed out after 5 s while running this cell" in r["hang"][1]
    assert r["after-segfault"][0] == "crashed" and "not run" in r["after-segfault"][1]


# ------------------------------------------ the checks flag broken functions
# Each builds a deliberately broken stand-in for a public function and shows
# that the matrix's check for one case fails on it (the real function passes
# that check in test_cell).


def _op(name, call, family="elementwise", roles=("x",), kind="forward", **kw):
    return B.Op(name, family, roles, call, True, CATALOG.get(name.split(".")[0]), kind, **kw)


def _case(group, name):
    return next(c for c in B.CASES if (c.group, c.name) == (group, name))


def _fails(case, op, *words):
    with pytest.raises(AssertionError) as info:
        _case(*case).build(op)()
    for w in words:
        assert w in str(info.value), str(info.value)


def test_checks_flag_broken_functions():
    # forgets the byte order: reads big-endian data as native
    swapped = _op("sigmoid", lambda x, **kw: fastact.sigmoid(x.view(x.dtype.newbyteorder("=")), **kw))
    _fails(("layout", "big-endian"), swapped)
    # computes integers in float32
    f32 = _op("sigmoid", lambda x, **kw: fastact.sigmoid(x.astype(np.float32) if x.dtype.kind in "biu" else x))
    _fails(("dtype", "int64"), f32, "dtype float32, expected float64")
    # NumPy's error, without the function's name
    numpy_out = _op("sigmoid", lambda x, out=None: np.negative(x, out=out))
    _fails(("out", "out-shape"), numpy_out, "lacks ['fastact.sigmoid:']")
    # writes out element by element, reading input it already overwrote
    def naive(x, out=None):
        out = np.empty_like(x) if out is None else out
        for i in np.ndindex(x.shape):
            out[i] = 2 * x[i]
        return out
    _fails(("out", "out-overlap"), _op("identity", naive))
    # relu'(nan) = 0 (a NaN dropped by a comparison)
    relu_b = _op("relu.backward", lambda g, x, **kw: np.where(x > 0, g, 0.0).astype(x.dtype),
                 roles=("grad", "x"), kind="backward")
    _fails(("special", "nan"), relu_b, "expected np.float32(nan)")
    # identity' computed as (2 * grad) / 2: the product overflows to inf at grad = max
    ident_b = _op("identity.backward", lambda g, x, **kw: (2 * g) / 2 * np.ones_like(x),
                  roles=("grad", "x"), kind="backward")
    with np.errstate(over="ignore"):
        _fails(("extreme", "extreme"), ident_b, "got np.float32(inf), expected np.float32(3.4028235e+38)")


def test_comparisons_tell_zero_signs_and_nan():
    B.assert_identical(np.array([np.nan, -0.0]), np.array([np.nan, -0.0]))
    with pytest.raises(AssertionError):
        B.assert_identical(np.array([0.0]), np.array([-0.0]))
    with pytest.raises(AssertionError):
        B.assert_identical(np.array([1.0], np.float32), np.array([1.0]))
    B.assert_ieee(np.array([-0.0, np.inf, 1.0 + 2e-16]), [-1e-320, 1e309, 1.0], np.float64)
    with pytest.raises(AssertionError):
        B.assert_ieee(np.array([np.nan]), [np.inf], np.float64)
    with pytest.raises(AssertionError):
        B.assert_ieee(np.array([0.0]), [-1e-320], np.float64)
    with pytest.raises(AssertionError):
        B.assert_ieee(np.array([1.0 + 1e-14]), [1.0], np.float64)
