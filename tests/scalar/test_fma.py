"""The fused multiply-add primitive and the product errors built on it.

Plain Python (the simulator's path) and compiled code (llvm.fma) must both
round a*b + c once; they are checked against mpmath and against each other.
The non-FMA path (Dekker products, a*b + c in ``muladd``) is compiled in a
subprocess for a CPU without FMA and checked the same way.
"""

import math
import os
import subprocess
import sys
from fractions import Fraction

import numba
import numpy as np
import pytest

from fastact.scalar.eft import two_prod_err, two_prod_err32
from fastact.scalar.fma import fma, has_fma
from fastact.scalar.registry import ensure_registered


def _ref(a, b, c, dtype):
    """a*b + c rounded once to ``dtype`` by mpmath (subnormals and overflow included)."""
    if not all(math.isfinite(float(v)) for v in (a, b, c)):
        return None
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    fi = np.finfo(dtype)
    if exact == 0:
        return None  # the sign of zero is tested separately
    mag = abs(exact)
    e = mag.numerator.bit_length() - mag.denominator.bit_length()
    e = e - 1 if Fraction(2) ** e > mag else e  # 2**e <= |exact| < 2**(e+1)
    e = max(e, int(np.log2(fi.tiny)))
    prec = fi.nmant + 1
    ulp = Fraction(2) ** (e - prec + 1)
    q = exact / ulp
    n = math.floor(q)
    rem = q - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n % 2):
        n += 1
    v = n * ulp
    return dtype(float(v)) if abs(v) <= Fraction(float(fi.max)) else dtype(math.copysign(math.inf, v))


def _triples(dtype, n, seed):
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    a = (rng.standard_normal(n) * np.exp2(rng.integers(-20, 20, n))).astype(dtype)
    b = (rng.standard_normal(n) * np.exp2(rng.integers(-20, 20, n))).astype(dtype)
    # c near -a*b makes the sum cancel, where a twice-rounded a*b + c is far off
    near = (-(a.astype(np.float64) * b) * (1 + rng.standard_normal(n) * 2.0 ** -(info.nmant - 2))).astype(dtype)
    c = np.where(rng.random(n) < 0.7, near, rng.standard_normal(n).astype(dtype))
    # subnormal and overflowing results
    a[:8] = info.tiny
    b[:8] = dtype(0.75)
    c[:8] = -dtype(info.tiny) * dtype(0.25)
    a[8:12] = info.max
    b[8:12] = dtype(2.0)
    c[8:12] = -info.max
    return a, b, c


_UF = {}


def _compiled(dtype):
    t = np.dtype(dtype).name
    if t not in _UF:
        ensure_registered()
        _UF[t] = numba.vectorize([f"{t}({t},{t},{t})"])(lambda a, b, c: fma(a, b, c))
    return _UF[t]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_and_compiled_fma_round_once(dtype):
    a, b, c = _triples(dtype, 3000, 1)
    plain = np.array([fma(dtype(x), dtype(y), dtype(z)) for x, y, z in zip(a, b, c)], dtype=dtype)
    with np.errstate(all="ignore"):
        compiled = _compiled(dtype)(a, b, c)
    checked = 0
    for x, y, z, p, k in zip(a, b, c, plain, compiled):
        want = _ref(x, y, z, dtype)
        if want is None:
            continue
        checked += 1
        assert p == want and k == want, (x, y, z, p, k, want)
    assert checked > 2900
    # a product rounded first would differ: the check above can tell
    with np.errstate(all="ignore"):
        twice = a * b + c
    assert (twice != compiled).sum() > 100


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_special_values_and_signed_zeros(dtype):
    d = dtype
    inf, nan = d(np.inf), d(np.nan)
    cases = [
        (inf, d(0.0), d(1.0)),
        (inf, d(1.0), -inf),
        (d(2.0), d(3.0), inf),
        (d(2.0), d(3.0), nan),
        (nan, d(1.0), d(1.0)),
        (d(-0.0), d(1.0), d(-0.0)),
        (d(0.0), d(-1.0), d(0.0)),
        (d(2.0), d(3.0), d(-6.0)),
        (d(-2.0), d(3.0), d(6.0)),
        (np.finfo(d).max, d(4.0), d(1.0)),
    ]
    a, b, c = (np.array(v, dtype=d) for v in zip(*cases))
    with np.errstate(all="ignore"):
        want = a.astype(np.float64) * b + c  # exact or the IEEE special value for these
        got = _compiled(d)(a, b, c)
        want = want.astype(d)
    plain = np.array([fma(*t) for t in cases], dtype=d)
    want[-1] = np.inf
    for w, g, p in zip(want, got, plain):
        assert (np.isnan(w) and np.isnan(g) and np.isnan(p)) or (
            w == g == p and np.signbit(w) == np.signbit(g) == np.signbit(p)
        ), (w, g, p)


@pytest.mark.parametrize("fn,dtype", [(two_prod_err, np.float64), (two_prod_err32, np.float32)])
def test_product_error_is_exact(fn, dtype):
    ensure_registered()
    t = np.dtype(dtype).name
    uf = numba.vectorize([f"{t}({t},{t})"])(lambda a, b: fn(a, b, a * b))
    rng = np.random.default_rng(3)
    a = (rng.standard_normal(2000) * 1e3).astype(dtype)
    b = (rng.standard_normal(2000) * 1e-3).astype(dtype)
    err = uf(a, b)
    for x, y, e in zip(a, b, err):
        p = dtype(x * y)
        assert Fraction(float(p)) + Fraction(float(e)) == Fraction(float(x)) * Fraction(float(y))
        assert fn(x, y, p) == e  # plain Python agrees


def test_this_host_compiles_the_fma_path():
    from llvmlite import binding as llvm

    if os.environ.get("FASTACT_FMA") is None:
        assert has_fma() == bool(llvm.get_host_cpu_features().get("fma", False))


_NO_FMA_SCRIPT = r"""
import re, numba, numpy as np
from fastact.scalar.fma import has_fma
from fastact.scalar.eft import two_prod_err32
from fastact.scalar.registry import ensure_registered
from tests.scalar.test_fma import _check_product_errors
assert not has_fma()
ensure_registered()
_check_product_errors()
k = numba.vectorize(["float32(float32,float32)"])(lambda a, b: two_prod_err32(a, b, a * b))
k(np.ones(4, np.float32), np.ones(4, np.float32))
asm = list(k._dispatcher.overloads.values())[0].library.get_asm_str()
assert not re.search(r"\bvfn?m(?:add|sub)", asm), "FMA instruction on the non-FMA path"
print("ok")
"""


def _check_product_errors():
    for fn, dtype in [(two_prod_err, np.float64), (two_prod_err32, np.float32)]:
        test_product_error_is_exact(fn, dtype)


def _no_fma_env(tmp_path):
    env = dict(os.environ)
    env.update(
        FASTACT_FMA="0",
        NUMBA_CPU_NAME="ivybridge",  # AVX, no FMA: code that relies on FMA would fail here
        NUMBA_CPU_FEATURES="",
        NUMBA_CACHE_DIR=str(tmp_path),
    )
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    return env


def test_non_fma_path_compiles_dekker_and_is_exact(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run(
        [sys.executable, "-c", _NO_FMA_SCRIPT], env=_no_fma_env(tmp_path), cwd=root, check=False,
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


_ACCURACY_SCRIPT = r"""
from fastact.devtools import accuracy as A, gen_accuracy, sweep32
from fastact.scalar.fma import has_fma
assert not has_fma()
names = {"sigmoid", "silu", "gelu", "tanh"}  # each math layer: exp pairs, erf, tanh, x*sigmoid
bad = 0
for e, which, kind, dtype in gen_accuracy.cases():
    if e.name not in names:
        continue
    if dtype == "float64":  # against mpmath, every 3rd point of the table's
        r = A.measure(e, kind, dtype, which, every=3)
        print(e.name, which, kind, dtype, f"{r.max_ulp:.2f}", len(r.failures))
        bad += len(r.failures) + (r.n < 1000)
    elif which == "default":  # ~1M float32 inputs against the float64 kernel measured above
        r = sweep32.run_case(e.name, kind, step=4099)
        print(e.name, kind, dtype, f"{r.max_ulp:.2f}", r.over_bound_count)
        bad += r.over_bound_count + (r.checked < 1000000)
print("ok" if bad == 0 else "FAILED")
"""


def test_non_fma_path_keeps_the_accuracy_contract(tmp_path):
    """Activations on each math layer (exp pairs, erf, tanh), compiled for a CPU without FMA keep the
    catalog's bounds: float64 against mpmath (a third of the table's points:
    the full table runs on the FMA path), float32 over ~1M inputs spread over
    every binade against the float64 kernel."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run(
        [sys.executable, "-c", _ACCURACY_SCRIPT], env=_no_fma_env(tmp_path), cwd=root,
        capture_output=True, text=True, timeout=1200, check=False,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-3000:] + r.stderr[-3000:]
