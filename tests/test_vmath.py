"""The vectorizable math layer: accuracy vs mpmath over the whole float64 range,
special values, and vectorization of the compiled loops (no libm calls)."""

import math
import re

import numpy as np
import pytest

from fastact import vmath

mp = pytest.importorskip("mpmath")
from fastact.accuracy import ulp_error  # noqa: E402

numba = pytest.importorskip("numba")

BOUNDS = {"vexp": 1.0, "vexpm1": 1.0, "vlog1p": 1.0, "vtanh": 2.0}
REFS = {"vexp": mp.exp, "vexpm1": mp.expm1, "vlog1p": mp.log1p, "vtanh": mp.tanh}
_UF = {}


def ufunc(name):
    if name not in _UF:
        from fastact._jit import ensure_registered

        ensure_registered()
        fn = getattr(vmath, name)
        _UF[name] = numba.vectorize(["float64(float64)"])(lambda x: fn(x))
    return _UF[name]


def _points(name):
    rng = np.random.default_rng(0)
    fi = np.finfo(np.float64)
    exps = np.arange(-1074, 1024)
    mags = np.concatenate([np.ldexp(1.0, exps), np.ldexp(rng.uniform(1, 2, exps.size), exps)])
    mags = mags[np.isfinite(mags)]
    pts = [mags, -mags, rng.uniform(-40, 40, 4000), rng.uniform(-1, 1, 2000), rng.uniform(-0.36, 0.36, 2000)]
    edges = [709.782712893384, -708.3964185322641, -745.1332191019411, 0.34657359, 40.0, -60.0, 1.0, 0.5, 2.0]
    for e in edges:
        v = np.float64(e)
        for _ in range(4):
            pts.append(np.array([v, -v]))
            v = np.nextafter(v, np.inf)
    if name == "vlog1p":
        pts.append(-1 + np.ldexp(1.0, -np.arange(1, 53)))
        pts.append(np.sqrt(2) - 1 + np.linspace(-1e-6, 1e-6, 101))
    x = np.unique(np.concatenate(pts))
    if name == "vlog1p":
        x = x[x > -1]
    return x[np.abs(x) <= fi.max]


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_accuracy_full_range(name):
    x = _points(name)
    with np.errstate(all="ignore"):
        got = ufunc(name)(x)
    worst, wx = 0.0, None
    with mp.workprec(200):
        for a, c in zip(x.tolist(), got.tolist()):
            e = ulp_error(mp, np.float64(c), REFS[name](mp.mpf(a)), np.float64)
            if e > worst:
                worst, wx = e, a
    assert worst <= BOUNDS[name], f"{name}: {worst} ulp at x={wx!r}"
    doc = getattr(vmath, name).__doc__
    assert f"<= {BOUNDS[name]:g} ulp" in doc  # the docstring states the tested bound


def test_special_values():
    nan, inf = np.nan, np.inf
    with np.errstate(all="ignore"):
        assert ufunc("vexp")(np.array([inf, -inf, 0.0, -0.0, 710.0, -746.0])).tolist() == [inf, 0.0, 1.0, 1.0, inf, 0.0]
        assert ufunc("vexp")(np.array([-745.0]))[0] == 5e-324
        assert ufunc("vexpm1")(np.array([inf, -inf, 0.0, 1000.0])).tolist() == [inf, -1.0, 0.0, inf]
        assert math.copysign(1, ufunc("vexpm1")(np.array([-0.0]))[0]) == -1
        assert ufunc("vlog1p")(np.array([inf, -1.0, 0.0, 1e-300])).tolist() == [inf, -inf, 0.0, 1e-300]
        assert np.isnan(ufunc("vlog1p")(np.array([-2.0, -inf]))).all()
        assert ufunc("vtanh")(np.array([inf, -inf, 0.0, 1e-300])).tolist() == [1.0, -1.0, 0.0, 1e-300]
        for n in BOUNDS:
            assert np.isnan(ufunc(n)(np.array([nan] * 17))).all(), n


def _loop_asm(fn):
    """Machine code of a ufunc loop around ``fn`` (the element function inlined)."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.np.ufunc.wrappers import build_ufunc_wrapper

    from fastact._jit import ensure_registered

    ensure_registered()
    k = numba.vectorize(["float64(float64)"])(lambda x: fn(x))
    k(np.ones(64))
    cres = list(k._dispatcher.overloads.values())[0]
    info = build_ufunc_wrapper(
        cres.library, cres.target_context, cres.fndesc.llvm_func_name, cres.signature, cres.objectmode, cres
    )
    with global_compiler_lock:
        info.library.get_pointer_to_function(info.name)
    return info.library.get_asm_str()


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_layer_vectorizes_without_libm_calls(name):
    """A refactor that makes a loop go scalar (a call, an unvectorizable branch) fails here."""
    asm = _loop_asm(getattr(vmath, name))
    assert not re.search(r"call\w*\s+\S*(exp|log|tanh)", asm), "calls libm"
    # packed double-precision arithmetic on 256/512-bit registers (AVX2 / AVX-512)
    packed = re.findall(r"\bv(?:mul|add|sub|fmadd\w*)pd\s+[^\n]*%[yz]mm", asm)
    assert len(packed) >= 8, f"{name}: the loop is not vectorized"


def test_two_calls_in_one_kernel_still_vectorize():
    """The raised LLVM inline threshold keeps a kernel with several exps vectorized."""
    from fastact._jit import scalar

    @scalar
    def two_exps(x):
        return vmath.vexp(x) + vmath.vexp(-x)

    asm = _loop_asm(two_exps)
    assert len(re.findall(r"\bv(?:mul|add)pd\s+[^\n]*%[yz]mm", asm)) >= 16
