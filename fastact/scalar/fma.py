"""Fused multiply-add: ``fma(a, b, c) = a*b + c`` rounded once, on every target.

- Compiled code (CPU and CUDA): LLVM's ``llvm.fma`` intrinsic, float32 or
  float64 by the arguments' type. On the CPU it is one ``vfmadd`` and
  vectorizes; on a GPU it is ``fma.rn``. No fast-math flag is involved, so
  nothing else is contracted: fusion happens only where a formula writes it.
- Plain Python (the CUDA simulator, debugging): correctly rounded in exact
  arithmetic, so simulated kernels round exactly as compiled ones. float32
  when all three arguments are ``np.float32``, else float64.

``muladd(a, b, c)`` is for the places where fusion is only a speed-up (a
polynomial step whose accuracy holds either way): ``fma`` where the target
has it, ``a*b + c`` where it would be a slow library call.

Whether the CPU target has FMA is decided once, at the first compilation
(``has_fma``), from the CPU features Numba compiles for. A process can force
either path with ``FASTACT_FMA=1`` / ``0`` (the tests compile the non-FMA
path on this machine that way); the choice is part of every CPU kernel's
cache stamp.
"""

import math
import os
from fractions import Fraction

import numpy as np

from fastact.scalar.registry import on_register, scalar

_F32 = np.float32
_OVF32 = 2.0**128 - 2.0**103  # the midpoint above float32's largest value: rounds to inf


def _is32(*args):
    return all(isinstance(v, np.float32) for v in args)


def fma(a, b, c):
    """``a*b + c`` rounded once (IEEE fusedMultiplyAdd, round to nearest)."""
    if _is32(a, b, c):
        return _fma32(float(a), float(b), float(c))
    return _fma64(float(a), float(b), float(c))


def _fma64(a, b, c):
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        if math.isfinite(a) and math.isfinite(b):
            return c  # a*b is finite, c is +-inf or NaN
        return a * b + c  # the IEEE result: an inf or NaN product decides
    p = a * b
    if 2.0**-900 < abs(p) < 2.0**900 and abs(a) < 2.0**500 and abs(b) < 2.0**500:
        # the common case without fractions: a*b + c = s + se + pe exactly
        # (Dekker's product error, Knuth's two-sum); where se + pe is itself
        # exact, one rounding of s + (se + pe) is the fused result
        pe = _dekker_err(a, b, p)
        s = p + c
        if math.isfinite(s):
            bb = s - p
            se = (p - (s - bb)) + (c - bb)
            t = se + pe
            bt = t - se
            if (se - (t - bt)) + (pe - bt) == 0.0 and s + t != 0.0:
                return s + t
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if exact == 0:
        # the sign of an exact zero: -0 only for (-0) + (-0)
        prod_neg = (math.copysign(1.0, a) * math.copysign(1.0, b)) < 0
        if a * b == 0 and c == 0 and prod_neg and math.copysign(1.0, c) < 0:
            return -0.0
        return 0.0
    try:
        return exact.numerator / exact.denominator  # correctly rounded by CPython
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


def _dekker_err(a, b, p):
    def split(v):
        t = 134217729.0 * v
        hi = t - (t - v)
        return hi, v - hi

    ah, al = split(a)
    bh, bl = split(b)
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _fma32(a, b, c):
    # a*b of two float32 is exact in float64 and a + b below is off by one
    # rounding; rounding that sum to odd (inexact -> the odd neighbour) keeps
    # enough information for the float32 rounding to be correct (53 >= 24 + 2)
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return _F32(a * b + c)
    p = a * b
    s = p + c
    err = (p - (s - (s - p))) + (c - (s - p))  # two-sum: exact a*b + c - s
    if err != 0.0:
        bits = np.float64(s).view(np.int64)
        if not bits & 1:
            s = math.nextafter(s, math.inf if err > 0 else -math.inf)
    if abs(s) >= _OVF32:
        return _F32(math.copysign(math.inf, s))  # without NumPy's overflow warning
    return _F32(s)


def has_fma():
    """Whether CPU kernels use the FMA instruction (see the module docstring)."""
    forced = os.environ.get("FASTACT_FMA", "")
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ValueError(f"FASTACT_FMA must be 0 or 1, got {forced!r}")
    from numba.core import config

    if config.CPU_FEATURES:
        feats = config.CPU_FEATURES.split(",")
        return "+fma" in feats or "+avx512f" in feats
    if config.CPU_NAME and config.CPU_NAME != "host":
        return False  # a named CPU without features: assume the oldest
    from llvmlite import binding as llvm

    return bool(llvm.get_host_cpu_features().get("fma", False))


def _mul_add(a, b, c):
    return a * b + c


def _fused(a, b, c):
    return fma(a, b, c)


def _choose_muladd():
    return _fused if has_fma() else _mul_add


@scalar(cpu=_choose_muladd)
def muladd(a, b, c):
    """``a*b + c``, fused where the target has FMA (rounded once or twice)."""
    return fma(a, b, c)


def _register():
    from numba.core import types
    from numba.extending import intrinsic, overload

    @intrinsic
    def _llvm_fma(typingctx, a, b, c):
        def codegen(context, builder, sig, args):
            return builder.fma(*args)

        return a(a, a, a), codegen

    @overload(fma, inline="always")
    def _ov_fma(a, b, c):
        if a == b == c == types.float32:
            return lambda a, b, c: _llvm_fma(a, b, c)
        return lambda a, b, c: _llvm_fma(np.float64(a), np.float64(b), np.float64(c))


on_register(_register)
