"""The float32 vectorizable math layer (vmath32): accuracy over millions of
float32 inputs, special values and thresholds, and vectorization of the
compiled loops (packed float32 arithmetic, no libm calls, nothing in float64).

Accuracy is measured against the float64 functions (NumPy, scipy.special),
which are within ~1e-15 relative of the exact values, i.e. exact to ~2**-26
float32 ulp: every 2039th float32 bit pattern, every binade boundary with its
neighbours, a dense sweep of [-20, 20] and every float32 in windows around the
range-reduction, branch, overflow and underflow points of each function. A few
hundred points per function are also checked against mpmath.
"""

import math
import re

import mpmath as mp
import numpy as np
import pytest
from scipy import special

from fastact.devtools.accuracy import ulp_error, ulps_f32
from fastact.scalar import vmath32
from tests.scalar._layer import assert_no_contraction, layer_ufunc, loop_code

NAMES = ("vexpf", "vexpm1f", "vlog1pf", "vtanhf", "verff", "verfcf")
# the bounds stated in the docstrings; the maxima measured over all float32
# inputs (0.59-0.82) are in vmath32's module docstring
BOUNDS = {name: 1.0 for name in NAMES}
REF64 = {
    "vexpf": np.exp,
    "vexpm1f": np.expm1,
    "vlog1pf": np.log1p,
    "vtanhf": np.tanh,
    "verff": special.erf,
    "verfcf": special.erfc,
}
REFMP = {
    "vexpf": mp.exp,
    "vexpm1f": mp.expm1,
    "vlog1pf": mp.log1p,
    "vtanhf": mp.tanh,
    "verff": mp.erf,
    "verfcf": mp.erfc,
}
# points where a function switches method, range reduction or result binade
LN2 = math.log(2)
BREAKS = {
    "vexpf": [88.72283, 88.0, 87.33654, -87.33654, -88.0, -103.27893, -103.97208, -104.5, -105.0,
              0.5 * LN2, 1.5 * LN2, -0.5 * LN2, -1.5 * LN2, 60.5 * LN2, -100.5 * LN2, 1e-3, -1e-3],
    "vexpm1f": [88.72283, -17.32868, -17.5, -16.9, 0.5 * LN2, -0.5 * LN2, 1.5 * LN2, -1.5 * LN2, 24.5 * LN2,
                25.5 * LN2, -24.5 * LN2, 126.5 * LN2, 127.5 * LN2, 2.0**-25, -(2.0**-25), 1e-3, -1e-3],
    "vlog1pf": [-1 + 2.0**-24, -1 + 2.0**-12, -0.5, math.sqrt(0.5) - 1, math.sqrt(2) - 1, 2.0**-8,
                -(2.0**-8), 2.0**-24, 1.0, 3.0, 1e30, 3.4e38],
    "vtanhf": [2.0**-12, 0.25 * LN2, 0.75 * LN2, 1.25 * LN2, 11.75 * LN2, 12.25 * LN2, 9.010913, 9.1, 0.55, 1.0],
    "verff": [0.5, 1.0, 2.0, 3.5, 3.9192059, 6.0, 10.5, 1.1754944e-38, 1e-3],
    "verfcf": [0.5, 1.0, 2.0, 3.5, 9.194, 10.054196, 10.5, -0.5, -1.0, -3.5, -3.9192059, 1e-3],
}


def ufunc(name):
    """A ufunc around ``vmath32.<name>`` (compiled once per test session)."""
    return layer_ufunc(getattr(vmath32, name), np.float32)


def _window(v, n):
    """Every float32 within n ulps of float32(v)."""
    b = int(np.array([v], dtype=np.float32).view(np.int32)[0])
    run = np.arange(b - n, b + n + 1, dtype=np.int64)
    return run[(run >= -(2**31)) & (run < 2**31)].astype(np.int32).view(np.float32)


def _inputs(name):
    fi = np.finfo(np.float32)
    exps = np.arange(-149, 128, dtype=np.float64)
    powers = np.ldexp(1.0, exps.astype(int)).astype(np.float32)
    parts = [
        np.arange(0, 2**32, 2039, dtype=np.uint64).astype(np.uint32).view(np.float32),
        np.linspace(-20, 20, 2_000_001, dtype=np.float32),
        np.array([fi.max, -fi.max, fi.tiny, -fi.tiny, fi.smallest_subnormal, -fi.smallest_subnormal, 0.0, -0.0],
                 dtype=np.float32),
    ]
    for p in powers:  # binade boundaries, both signs, 3 neighbours each side
        parts += [_window(p, 3), _window(-p, 3)]
    for b in BREAKS[name]:
        parts += [_window(b, 4000), _window(-b, 1000)]
    x = np.concatenate(parts)
    return x[np.isfinite(x)]


_ulps = ulps_f32


@pytest.mark.parametrize("name", NAMES)
def test_accuracy_dense_float32(name):
    x = _inputs(name)
    assert x.size > 2_000_000
    with np.errstate(all="ignore"):
        got = ufunc(name)(x)
        ref = REF64[name](x.astype(np.float64))
        err = _ulps(got, ref)
    i = int(np.argmax(err))
    assert err[i] <= BOUNDS[name], f"{name}: {err[i]} ulp at x={x[i]!r} (got {got[i]!r}, float64 {ref[i]!r})"
    assert f"<= {BOUNDS[name]:g} ulp" in getattr(vmath32, name).__doc__  # the docstring states the bound


@pytest.mark.parametrize("name", NAMES)
def test_accuracy_vs_mpmath(name):
    """A few hundred points against mpmath: the float64 references above and
    the function itself."""
    rng = np.random.default_rng(1)
    x = _inputs(name)
    pick = np.concatenate([rng.choice(x, 300, replace=False), np.array(BREAKS[name], dtype=np.float32)])
    with np.errstate(all="ignore"):
        got = ufunc(name)(pick)
        ref = REF64[name](pick.astype(np.float64))
    worst, wx = 0.0, None
    with mp.workprec(96):
        for a, c, r in zip(pick.tolist(), got.tolist(), ref.tolist()):
            exact = REFMP[name](mp.mpf(a))
            if isinstance(exact, mp.mpc):  # log1p below -1
                assert math.isnan(c), (name, a, c)
                continue
            e = ulp_error(mp, np.float32(c), exact, np.float32)
            if e > worst:
                worst, wx = e, a
            if exact != 0 and abs(exact) < 1e38:
                # the float64 reference is exact to ~2**-23 float32 ulp (64 float64 ulps)
                assert ulp_error(mp, np.float64(r), exact, np.float64) <= 64, (name, a)
    assert worst <= BOUNDS[name], f"{name}: {worst} ulp at x={wx!r}"


def _round_f32(e):
    """The float32 nearest to the mpf e (ties to even), subnormals included."""
    if e == 0:
        return np.float32(0.0)
    if abs(e) < mp.ldexp(1, -126):
        return np.float32(float(mp.ldexp(mp.nint(mp.ldexp(e, 149)), -149)))
    with mp.workprec(24):
        v = +e
    if abs(v) > float(np.finfo(np.float32).max):  # rounded to 2**128
        return np.float32(math.copysign(math.inf, v))
    return np.float32(float(v))


def _f32(v):
    return np.array(v, dtype=np.float32)


def test_special_values():
    nan, inf = np.nan, np.inf
    u = ufunc
    with np.errstate(all="ignore"):
        assert u("vexpf")(_f32([inf, -inf, 0.0, -0.0, 89.0, -105.0, -200.0])).tolist() == [
            inf, 0.0, 1.0, 1.0, inf, 0.0, 0.0]
        assert u("vexpm1f")(_f32([inf, -inf, 0.0, 1000.0, -30.0, 1e-30, 1e-40])).tolist() == [
            inf, -1.0, 0.0, inf, -1.0, float(np.float32(1e-30)), float(np.float32(1e-40))]
        assert math.copysign(1, u("vexpm1f")(_f32([-0.0]))[0]) == -1
        assert u("vlog1pf")(_f32([inf, -1.0, 0.0, 1e-30, 1e-40])).tolist() == [
            inf, -inf, 0.0, float(np.float32(1e-30)), float(np.float32(1e-40))]
        assert math.copysign(1, u("vlog1pf")(_f32([-0.0]))[0]) == -1
        assert np.isnan(u("vlog1pf")(_f32([-1.5, -inf, -3e38]))).all()
        assert u("vtanhf")(_f32([inf, -inf, 0.0, 20.0, -20.0, 1e-30, -1e-40])).tolist() == [
            1.0, -1.0, 0.0, 1.0, -1.0, float(np.float32(1e-30)), float(np.float32(-1e-40))]
        assert math.copysign(1, u("vtanhf")(_f32([-0.0]))[0]) == -1
        assert u("verff")(_f32([inf, -inf, 0.0, 5.0, -5.0, 3e38])).tolist() == [1.0, -1.0, 0.0, 1.0, -1.0, 1.0]
        assert math.copysign(1, u("verff")(_f32([-0.0]))[0]) == -1
        assert u("verfcf")(_f32([inf, -inf, 0.0, -0.0, 11.0, -11.0, 3e38, -3e38])).tolist() == [
            0.0, 2.0, 1.0, 1.0, 0.0, 2.0, 0.0, 2.0]
        for n in NAMES:
            assert np.isnan(u(n)(_f32([nan] * 37))).all(), n
            assert np.isnan(u(n)(_f32([nan]))).all(), n  # the scalar tail of the loop too


# (function, centre): around each, every float32 result equals the correctly
# rounded one (overflow to inf, underflow to 0, rounding to +-1 or -1)
THRESHOLDS = [
    ("vexpf", 88.72283),  # last finite / first inf
    ("vexpf", -103.97208),  # last 2**-149 / first 0
    ("vexpf", -87.33654),  # FLT_MIN
    ("vexpm1f", 88.72283),
    ("vexpm1f", -17.32868),  # expm1 rounds to -1 below
    ("vexpm1f", 2.0**-25),  # x itself below
    ("vtanhf", 9.010913),  # tanh rounds to 1 above
    ("verff", 3.9192059),  # erf rounds to 1 above
    ("verfcf", 10.054196),  # erfc rounds to 0 above
    ("vlog1pf", -1 + 2.0**-24),  # the smallest 1 + x
]


@pytest.mark.parametrize("name,centre", THRESHOLDS)
def test_thresholds_exact(name, centre):
    x = _window(centre, 6)
    x = x[x > -1] if name == "vlog1pf" else x
    with np.errstate(all="ignore"):
        got = ufunc(name)(x)
    with mp.workprec(96):
        want = np.array([_round_f32(REFMP[name](mp.mpf(float(a)))) for a in x], dtype=np.float32)
    assert got.view(np.int32).tolist() == want.view(np.int32).tolist(), list(
        zip(x.tolist(), got.tolist(), want.tolist()))


def _check_float32_vector_loop(fn, name, at_least=8):
    asm, llvm_ir = loop_code(fn, np.float32)
    assert not re.search(r"call\w*\s+\S*(exp|log|tanh|erf)", asm), f"{name}: calls libm"
    # packed single-precision arithmetic on 256/512-bit registers (AVX2 / AVX-512)
    packed = re.findall(r"\bv(?:mul|add|sub|div|fmadd\w*)ps\s+[^\n]*%[yz]mm", asm)
    assert len(packed) >= at_least, f"{name}: the loop is not vectorized in float32"
    # nothing silently in float64 (a Python float constant promotes the arithmetic)
    assert not re.search(r"\bv?(?:mul|add|sub|div|fmadd\w*|min|max)[ps]d\b", asm), f"{name}: float64 arithmetic"
    assert not re.search(r"\bv?cvt(?:ps2pd|ss2sd|pd2ps|sd2ss)\b", asm), f"{name}: float32 <-> float64 conversions"
    # the error-free transforms need every product rounded on its own: fused
    # multiply-adds only where written
    assert_no_contraction(llvm_ir, name)


@pytest.mark.parametrize("name", NAMES)
def test_layer_vectorizes_in_float32_without_libm_calls(name):
    """A refactor that makes a loop go scalar (a call, an unvectorizable branch,
    a scalar .view()) or silently float64 (a Python float constant) fails here."""
    _check_float32_vector_loop(getattr(vmath32, name), name)


def test_two_calls_in_one_kernel_still_vectorize():
    """Called from another compiled function (as float32 kernels do), the layer
    is inlined and the loop stays vectorized."""
    from fastact.scalar.registry import scalar

    @scalar
    def gelu_like(x):
        return x * vmath32.verfcf(-x) + vmath32.vtanhf(x) * vmath32.vexpf(-x)

    _check_float32_vector_loop(gelu_like, "gelu_like", at_least=32)


def test_plain_python_matches_compiled():
    """The functions also run as plain Python on float32 scalars (the CUDA
    simulator calls them so): bit-identical to the compiled loop."""
    x = _f32([0.0, -0.0, 1e-40, -3e-39, 1e-8, 0.3, -0.7, 1.5, -2.5, 5.0, 9.5, -12.0, 30.0, 88.0, -90.0,
              -110.0, 200.0, np.inf, -np.inf, -1.0, -1.5])
    for name in NAMES:
        fn = getattr(vmath32, name)
        with np.errstate(all="ignore"):
            py = np.array([fn(v) for v in x], dtype=np.float32)
            jit = ufunc(name)(x)
        same = (py.view(np.int32) == jit.view(np.int32)) | (np.isnan(py) & np.isnan(jit))
        assert same.all(), (name, x[~same], py[~same], jit[~same])


def _log1p_finite_inputs():
    x = _inputs("vlog1pf")
    return x[(x > -1) & (x != 0)]  # finite (_inputs), the domain of vlog1pf_finite


def test_log1pf_finite_is_vlog1pf_without_special_values():
    """vlog1pf_finite (for arguments known finite and > -1) returns
    vlog1pf's results bit for bit there, so its accuracy is vlog1pf's; its
    own special values: +-0 -> +0, NaN -> NaN."""
    x = _log1p_finite_inputs()
    with np.errstate(all="ignore"):
        got = ufunc("vlog1pf_finite")(x)
        same = ufunc("vlog1pf")(x)
        err = _ulps(got, np.log1p(x.astype(np.float64)))
    diff = got.view(np.int32) != same.view(np.int32)
    assert not diff.any(), list(zip(x[diff][:5].tolist(), got[diff][:5].tolist(), same[diff][:5].tolist()))
    i = int(np.argmax(err))
    assert err[i] <= 1.0, f"vlog1pf_finite: {err[i]} ulp at x={x[i]!r}"
    assert "<= 1 ulp" in vmath32.vlog1pf_finite.__doc__
    sv = ufunc("vlog1pf_finite")(_f32([0.0, -0.0, np.nan, 3e38, 1e-40]))
    assert sv[:2].view(np.int32).tolist() == [0, 0] and np.isnan(sv[2])
    assert sv[3] == np.float32(np.log1p(3e38)) and sv[4] == np.float32(1e-40)
    _check_float32_vector_loop(vmath32.vlog1pf_finite, "vlog1pf_finite")
    pick = x[:: max(1, x.size // 200)]
    py = np.array([vmath32.vlog1pf_finite(v) for v in pick], dtype=np.float32)
    assert (py.view(np.int32) == ufunc("vlog1pf_finite")(pick).view(np.int32)).all()


def test_coefficients_are_current():
    """fastact/scalar/generated/vmath32_coeffs.py is what fastact/devtools/gen_vmath32.py generates."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "fastact.devtools.gen_vmath32", "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
