"""Loops with the parameter values built in (fastact.cpu.ufuncs.fixed_dufunc):
vectorized machine code, the bounded table and its admission rule, one
loop per value set across threads. Bitwise agreement with the general ufunc
through the public functions: tests/functions/test_parametric.py."""

import re
import threading
import time

import numpy as np
import pytest

import fastact
from fastact.catalog import CATALOG, ENTRIES
from fastact.cpu import ufuncs as _cpu

PARAM_ENTRIES = [e for e in ENTRIES if e.params]
KINDS = ("forward", "backward", "backward_y")
#: (entry, kind) with a formula for the kind (backward_y: entries with backward_from_output)
ENTRY_KINDS = [(e, k) for e in PARAM_ENTRIES for k in KINDS if k != "backward_y" or e.grad_y is not None]
F64 = np.dtype(np.float64)


@pytest.fixture
def fresh(monkeypatch):
    """Empty loop tables for the test (the session's stay as they were)."""
    monkeypatch.setattr(_cpu, "LOOPS", {})
    return monkeypatch


def _loop_asm(d):
    """Machine code of the ufunc loop (the element function inlined) of the
    DUFunc ``d``'s one compiled signature, as fastact builds it
    (``cpu.loopfix``: the output's stride honoured)."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.np.ufunc.wrappers import build_ufunc_wrapper

    from fastact.cpu.loopfix import fastact_loops

    (cres,) = d._dispatcher.overloads.values()
    with fastact_loops():
        info = build_ufunc_wrapper(
            cres.library,
            cres.target_context,
            cres.fndesc.llvm_func_name,
            cres.signature,
            cres.objectmode,
            cres,
        )
    with global_compiler_lock:
        info.library.get_pointer_to_function(info.name)
    return info.library.get_asm_str()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("entry,kind", ENTRY_KINDS, ids=[f"{e.name}-{k}" for e, k in ENTRY_KINDS])
def test_specialized_loop_is_vectorized(entry, kind, dtype, fresh):
    """Packed arithmetic on 256/512-bit registers (AVX2 / AVX-512), no calls."""
    fresh.setattr(_cpu, "ADMIT", 1)
    d = _cpu.fixed_dufunc(entry, kind, dtype, tuple(p.test_value for p in entry.params))
    asm = _loop_asm(d)
    ops = r"v(?:mul|add|sub|div|fn?m(?:add|sub)\w*|min|max|cmp\w*|blendm)p[sd]"
    packed = re.findall(rf"\b{ops}\s+[^\n]*%[yz]mm", asm)
    assert len(packed) >= 4, f"{entry.name} {kind} {dtype}: the loop is not vectorized"
    assert not re.search(r"\bcall", asm), (
        f"{entry.name} {kind} {dtype}: the loop calls a function"
    )


def test_public_calls_run_the_specialized_loop():
    """From the second call with a value set on, no parameter inputs: the
    1-input (forward) / 2-input (backward) loop runs."""
    for e in PARAM_ENTRIES:
        f = fastact.ACTIVATIONS[e.name]
        vals = tuple(p.test_value for p in e.params)
        kw = dict(zip(e.param_names, vals))
        x = np.linspace(-3, 3, 16, dtype=np.float32)
        f(x)
        for _ in range(2):
            f(x, **kw)
            f.backward(x, x, **kw)
        for kind, nin in (("forward", 1), ("backward", 2)):
            uf, inputs, defaults = _cpu.select(e, kind, np.float32, vals)
            assert uf.nin == nin and inputs == () and not defaults
        uf, inputs, defaults = _cpu.select(e, "forward", np.float32, e.defaults)
        assert uf.nin == 1 and defaults and f._fast[np.dtype(np.float32)] is uf


def test_constants_round_as_the_general_ufunc_receives_them():
    f32 = np.dtype(np.float32)
    big = float(np.finfo(np.float32).max)
    got = _cpu.constants(
        f32, (0.1, 3.4028235677973362e38, 3.4028235677973366e38, -1e39, 1e-46, -0.0)
    )
    assert got == (float(np.float32(0.1)), big, np.inf, -np.inf, 0.0, -0.0)
    assert np.signbit(got[-1])
    assert _cpu.constants(F64, (0.1,)) == (0.1,)
    uf = _cpu.ufunc(CATALOG["leaky_relu"], "forward", f32)
    x = -np.ones(1, f32)
    with np.errstate(all="ignore"):  # the general ufunc's own rounding of each value
        for v in (0.1, 3.4028235677973362e38, 3.4028235677973366e38, -1e39):
            assert -uf(x, v, dtype=f32)[0] == np.float32(_cpu.constants(f32, (v,))[0])


def test_bounded_table_drops_the_least_recently_used(fresh):
    e = CATALOG["leaky_relu"]
    general = _cpu.ufunc(e, "forward", F64)
    x = np.linspace(-2, 2, 33)
    values = [0.05 * (k + 1) for k in range(_cpu.RECENT + 3)]
    for v in values:
        assert (
            _cpu.fixed_ufunc(e, "forward", F64, (v,)) is None
        )  # first request: general ufunc
        for _ in range(2):
            np.testing.assert_array_equal(
                fastact.leaky_relu(x, negative_slope=v), general(x, v)
            )
        table = _cpu.LOOPS[(e.name, "forward", F64)]
        assert len(table.recent) <= _cpu.RECENT
    assert list(table.recent) == [_cpu._key(F64, (v,)) for v in values[-_cpu.RECENT :]]
    # a dropped value set is a new one again: the general ufunc once, then a loop
    assert _cpu.fixed_ufunc(e, "forward", F64, (values[0],)) is None
    uf = _cpu.fixed_ufunc(e, "forward", F64, (values[0],))
    assert uf.nin == 1 and _cpu._key(F64, (values[1],)) not in table.recent
    np.testing.assert_array_equal(uf(x), general(x, values[0]))
    # using a loop makes it the most recent
    _cpu.fixed_ufunc(e, "forward", F64, (values[-3],))
    assert next(reversed(table.recent)) == _cpu._key(F64, (values[-3],))
    # the defaults' loop is kept besides them
    d = _cpu.fixed_dufunc(e, "forward", F64)
    assert (
        len(table.recent) == _cpu.RECENT and _cpu.fixed_dufunc(e, "forward", F64) is d
    )


def test_a_value_changing_on_every_call_never_compiles(fresh):
    """A learned or annealed parameter (a new value each call) runs the
    general ufunc: no compile, no cache file, bounded bookkeeping."""

    def refuse(*a):
        raise AssertionError("compiled a loop for a value seen once")

    fresh.setattr(_cpu, "_build_fixed", refuse)
    fresh.setattr(_cpu, "SEEN", 16)
    e = CATALOG["elu"]
    general = _cpu.ufunc(e, "forward", F64)
    x = np.linspace(-3, 3, 25)
    for k in range(40):
        a = 0.3 + k / 128  # never the default 1.0
        np.testing.assert_array_equal(fastact.elu(x, alpha=a), general(x, a))
    table = _cpu.LOOPS[(e.name, "forward", F64)]
    assert not table.recent and len(table.seen) == 16


def test_threads_asking_for_one_new_value_get_one_loop(fresh):
    fresh.setattr(_cpu, "ADMIT", 1)
    builds = []
    build = _cpu._build_fixed

    def counted(*a):
        builds.append(a)
        time.sleep(0.05)  # widen the window
        return build(*a)

    fresh.setattr(_cpu, "_build_fixed", counted)
    e = CATALOG["hardtanh"]
    n = 4
    barrier = threading.Barrier(n)
    got = [None] * n

    def ask(i):
        barrier.wait()
        got[i] = _cpu.fixed_dufunc(e, "backward", F64, (-1.25, 0.75))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and all(g is got[0] for g in got)
    g = np.ones(5)
    x = np.array([-2.0, -1.25, 0.0, 0.75, 1.0])
    np.testing.assert_array_equal(got[0].ufunc(g, x), [0.0, 0.0, 1.0, 0.0, 0.0])


def test_each_value_set_has_its_own_cache_name_and_closure(fresh):
    fresh.setattr(_cpu, "ADMIT", 1)
    e = CATALOG["elu"]
    a = _cpu.fixed_dufunc(e, "forward", F64, (0.5,))._dispatcher.py_func
    b = _cpu.fixed_dufunc(e, "forward", F64, (-0.0,))._dispatcher.py_func
    c = _cpu.fixed_dufunc(e, "forward", F64, (0.0,))._dispatcher.py_func
    assert len({a.__name__, b.__name__, c.__name__}) == 3
    assert a.__name__ == "elu_forward_float64_3fe0000000000000"
    cells = [cell.cell_contents for cell in a.__closure__]
    assert 0.5 in cells and any(isinstance(s, str) and _cpu.stamp() in s for s in cells)
