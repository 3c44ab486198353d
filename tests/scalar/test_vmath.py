"""The vectorizable math layer: accuracy vs mpmath over the whole float64 range,
special values, and vectorization of the compiled loops (no libm calls)."""

import math
import re

import mpmath as mp
import numba
import numpy as np
import pytest

from fastact.devtools.accuracy import ulp_error
from fastact.scalar import vmath
from tests.scalar._layer import assert_no_contraction, layer_ufunc, loop_asm, loop_code


def _erf_ref(x):
    # mpmath's erf/erfc overflow inside for huge arguments; there they are
    # +-1, 0 and 2 far beyond float64's resolution
    return mp.erf(x) if abs(x) < 1e6 else mp.mpf(mp.sign(x))


def _erfc_ref(x):
    if abs(x) < 1e6:
        return mp.erfc(x)
    return mp.mpf(0) if x > 0 else mp.mpf(2)


BOUNDS = {"vexp": 1.0, "vexpm1": 1.0, "vlog1p": 1.0, "vtanh": 2.0, "verf": 1.0, "verfc": 1.0}
REFS = {"vexp": mp.exp, "vexpm1": mp.expm1, "vlog1p": mp.log1p, "vtanh": mp.tanh, "verf": _erf_ref, "verfc": _erfc_ref}
# fdlibm's interval boundaries, the erfc underflow (subnormal from 26.543,
# below half the least subnormal from 27.226) and erf's switch to +-1 at 6
ERF_EDGES = [0.84375, 1.25, 1 / 0.35, 6.0, 26.543258454250981, 27.226017111108364, 28.0, 0.25]


def ufunc(name):
    """A ufunc around ``vmath.<name>`` (compiled once per test session)."""
    return layer_ufunc(getattr(vmath, name), np.float64)


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
    if name in ("verf", "verfc"):
        pts += [rng.uniform(-6, 28, 12000), rng.uniform(-1.3, 1.3, 4000), rng.uniform(26.4, 27.3, 2000)]
        for e in ERF_EDGES:
            v = np.float64(e)
            pts.append(v + np.linspace(-1e-3, 1e-3, 41))
            for _ in range(4):  # the values on both sides of each boundary
                pts.append(np.array([v, -v, np.nextafter(v, 0), -np.nextafter(v, 0)]))
                v = np.nextafter(v, np.inf)
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
        assert ufunc("verf")(np.array([inf, -inf, 0.0, 6.0, -30.0, 1e300])).tolist() == [1.0, -1.0, 0.0, 1.0, -1.0, 1.0]
        assert math.copysign(1, ufunc("verf")(np.array([-0.0]))[0]) == -1
        assert ufunc("verf")(np.array([5e-324, -5e-324])).tolist() == [5e-324, -5e-324]
        assert ufunc("verfc")(np.array([inf, -inf, 0.0, -0.0, 27.3, -7.0, 1e300])).tolist() == [0.0, 2.0, 1.0, 1.0, 0.0, 2.0, 0.0]
        sub = ufunc("verfc")(np.array([26.6, 27.2]))
        assert (0 < sub).all() and (sub < np.finfo(np.float64).smallest_normal).all()
        for n in BOUNDS:
            assert np.isnan(ufunc(n)(np.array([nan] * 17))).all(), n


def _worst(got, exact_fn, *args):
    worst, where = 0.0, None
    with mp.workprec(200):
        for i, c in enumerate(got.tolist()):
            e = ulp_error(mp, np.float64(c), exact_fn(*(mp.mpf(float(a[i])) for a in args)), np.float64)
            if e > worst:
                worst, where = e, tuple(float(a[i]) for a in args)
    return worst, where


def test_double_double_products():
    """gelu's primitives: (ph + pl) exp(zh + zl) and sc erfc(x + xl), rounded
    about once, also where exp / erfc alone would be subnormal."""
    from fastact.scalar.registry import ensure_registered

    ensure_registered()
    rng = np.random.default_rng(1)
    n = 3000
    mexp = numba.vectorize(["float64(float64, float64, float64, float64)"])(
        lambda ph, pl, zh, zl: vmath.vmul_exp_dd(ph, pl, zh, zl)
    )
    ph = rng.choice([-1.0, 1.0], n) * np.exp(rng.uniform(-7, 7, n))
    pl = ph * rng.uniform(-1, 1, n) * 2.0**-53
    zh = np.concatenate([rng.uniform(-800, 709, n - 1000), rng.uniform(-750, -700, 1000)])
    zl = rng.uniform(-1, 1, n) * 2.0**-40
    with np.errstate(all="ignore"):
        worst, where = _worst(mexp(ph, pl, zh, zl), lambda a, b, c, d: (a + b) * mp.exp(c + d), ph, pl, zh, zl)
    assert worst <= 1.0, (worst, where)
    merfc = numba.vectorize(["float64(float64, float64, float64)"])(lambda sc, x, xl: vmath.vmul_erfc_dd(sc, x, xl))
    # as gelu calls it: (x/2) erfc(t + tl), t + tl = -x/sqrt(2)
    x = np.concatenate([rng.uniform(-40, 8, n), rng.uniform(-2, 2, 1000)])
    with mp.workprec(200):
        tt = [-mp.mpf(v) / mp.sqrt(2) for v in x.tolist()]
    t = np.array([float(v) for v in tt])
    tl = np.array([float(a - float(a)) for a in tt])
    with np.errstate(all="ignore"):
        worst, where = _worst(merfc(0.5 * x, t, tl), lambda sc, a, b: sc * _erfc_ref(a + b), 0.5 * x, t, tl)
    assert worst <= 1.0, (worst, where)
    with np.errstate(all="ignore"):
        assert np.isnan(merfc(np.array([2.0]), np.array([np.nan]), np.array([0.0]))).all()
        assert np.isnan(mexp(np.array([2.0]), np.array([0.0]), np.array([np.nan]), np.array([0.0]))).all()


def _loop_asm(fn):
    return loop_asm(fn, np.float64)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_layer_vectorizes_without_libm_calls(name):
    """A refactor that makes a loop go scalar (a call, an unvectorizable branch) fails here."""
    asm, llvm_ir = loop_code(getattr(vmath, name), np.float64)
    assert_no_contraction(llvm_ir, name)
    assert not re.search(r"call\w*\s+\S*(exp|log|tanh|erf)", asm), "calls libm"
    # a libm function can also be called through a register (movabsq $erfc, %rax)
    assert not re.search(r"\bcall\w*\s+\*", asm), "indirect call"
    # packed double-precision arithmetic on 256/512-bit registers (AVX2 / AVX-512)
    packed = re.findall(r"\bv(?:mul|add|sub|fmadd\w*)pd\s+[^\n]*%[yz]mm", asm)
    assert len(packed) >= 8, f"{name}: the loop is not vectorized"


def test_two_calls_in_one_kernel_still_vectorize():
    """The raised LLVM inline threshold keeps a kernel with several exps vectorized."""
    from fastact.scalar.registry import scalar

    @scalar
    def two_exps(x):
        return vmath.vexp(x) + vmath.vexp(-x)

    asm = _loop_asm(two_exps)
    assert len(re.findall(r"\bv(?:mul|add)pd\s+[^\n]*%[yz]mm", asm)) >= 16


@pytest.mark.parametrize("name", ["gelu", "gelu_grad"])
def test_gelu_loops_vectorize_without_libm_calls(name):
    """gelu runs on verfc / vmul_exp_dd: its float64 loops have no calls left."""
    from fastact.scalar import formulas

    asm, llvm_ir = loop_code(getattr(formulas, name), np.float64)
    assert_no_contraction(llvm_ir, name)
    assert not re.search(r"call\w*\s+\S*(exp|log|tanh|erf)", asm), "calls libm"
    # a libm function can also be called through a register (movabsq $erfc, %rax)
    assert not re.search(r"\bcall\w*\s+\*", asm), "indirect call"
    packed = re.findall(r"\bv(?:mul|add|sub|fmadd\w*)pd\s+[^\n]*%[yz]mm", asm)
    assert len(packed) >= 8, f"{name}: the loop is not vectorized"
