"""The probes' own math: exp cores fitted at import, and the sigmoid parts
built on them. Only ``fma`` and the bit casts come from ``fastact.scalar``.

``build()`` registers the cores (Numba is imported then, not at import) and
returns them with their constants in one namespace for the probe modules.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

F32, F64 = np.float32, np.float64


def _fit_expm1(deg, dtype):
    """Coefficients c2..c_deg of expm1(r) ~ r + r^2 (c2 + c3 r + ...) on
    |r| <= ln2/2, by least squares on Chebyshev nodes in float64 (longdouble
    where it has more bits): good to well under 1 ulp of the target dtype."""
    h = math.log(2.0) / 2
    n = 400
    r = np.cos(np.pi * (np.arange(n) + 0.5) / n).astype(np.longdouble) * h
    target = (np.expm1(r) - r) / (r * r)  # smooth: c2 + c3 r + ...
    a = np.vander(r.astype(np.float64), deg - 1, increasing=True)
    c, *_ = np.linalg.lstsq(a, target.astype(np.float64), rcond=None)
    return tuple(dtype(v) for v in c)


_C32 = _fit_expm1(7, F32)
_C64 = _fit_expm1(12, F64)

_BUILT = None


def build():
    """The cores as compiled-callable scalar functions, once per process."""
    global _BUILT
    if _BUILT is None:
        _BUILT = _build()
    return _BUILT


def _build():
    from fastact.scalar.fma import fma
    from fastact.scalar.registry import bitcasts, ensure_registered, scalar

    ensure_registered()  # from here on, scalar() registers at once
    b2f32, _ = bitcasts(32)
    b2f64, _ = bitcasts(64)

    c2, c3, c4, c5, c6, c7 = _C32
    inv_ln2, shift = F32(1.4426950408889634), F32(12582912.0)
    ln2_hi = F32(0.693145751953125)
    ln2_lo = F32(math.log(2.0) - 0.693145751953125)
    one, zero = F32(1), F32(0)
    lo32, twom64 = F32(-120.0), F32(2.0**-64)  # exp(-120) 2**64 is normal; x e(x) underflows below -110

    @scalar
    def exp64x_32(a):
        """(u, s): exp(a) * 2**64 = (1 + u) s, s a power of two, for a in
        [-120, 0] (the product normal); 1 + u to ~0.1 ulp before its own
        rounding (the rounding of the reduced argument r is carried: without
        it, sigmoid's 2 ulp bound fails). (1 + u) s is left unrounded so that
        a product with it rounds once: fma(u, v s, v s)."""
        k = fma(a, inv_ln2, shift) - shift
        t = fma(-k, ln2_hi, a)  # exact: k * ln2_hi has 8 + 16 bits
        r = fma(-k, ln2_lo, t)
        rl = fma(-k, ln2_lo, t - r)  # r's rounding error (t - r is exact)
        p = fma(fma(fma(fma(fma(c7, r, c6), r, c5), r, c4), r, c3), r, c2)
        u = fma(r * r, p, r)
        u = u + fma(rl, u, rl)  # exp(r + rl) = (1 + u)(1 + rl)
        return u, b2f32(np.int32((np.int32(k) + np.int32(127 + 64)) << np.int32(23)))

    d2, d3, d4, d5, d6, d7, d8, d9, d10, d11, d12 = _C64
    inv_ln2_d, shift_d = 1.4426950408889634, 6755399441055744.0
    ln2_hi_d = 0.6931471803691238  # 28 bits: k * ln2_hi_d is exact
    ln2_lo_d = float(np.log(np.longdouble(2)) - np.longdouble(ln2_hi_d))  # ln2 - hi to 53 bits
    lo64, twom64_d = -745.5, 2.0**-64

    @scalar
    def exp64x_64(a):
        """exp(a) * 2**64 for a in [-745.5, 0], within ~1 ulp (float64)."""
        k = fma(a, inv_ln2_d, shift_d) - shift_d
        r = fma(-k, ln2_lo_d, fma(-k, ln2_hi_d, a))
        p = fma(fma(fma(fma(fma(d12, r, d11), r, d10), r, d9), r, d8), r, d7)
        p = fma(fma(fma(fma(fma(p, r, d6), r, d5), r, d4), r, d3), r, d2)
        u = fma(r * r, p, r)
        kk = np.int64(k) + np.int64(64)
        k1 = kk >> np.int64(1)  # two factors: 2**kk alone may be below the normal range
        s1 = b2f64((k1 + np.int64(1023)) << np.int64(52))
        s2 = b2f64((kk - k1 + np.int64(1023)) << np.int64(52))
        return fma(u, s1, s1) * s2

    @scalar
    def sig_parts32(x):
        """(u, s, r): exp(-|x|) 2**64 = (1 + u) s unrounded, r = 1 / (1 +
        exp(-|x|)) with the rounding of 1 + e carried (without: 2.7 ulp)."""
        a = -abs(x)
        u, s = exp64x_32(a if a > lo32 else lo32)
        s = s if a > lo32 else zero  # below every float32 result
        e = fma(u, s, s) * twom64
        d = one + e
        dl = (one - d) + e  # exact: 1 >= e
        r = one / d
        return u, s, fma(-dl, r * r, r)

    @scalar
    def sigmoid32(x):
        u, s, r = sig_parts32(x)
        y = r if x >= zero else (fma(u, r, r) * s) * twom64  # e r rounded once
        return y if x == x else x

    @scalar
    def expm1_32(x):
        """expm1(x) for x <= 0: u for |x| < ln2/2 (k = 0), else 2^k u + (2^k - 1)
        in one fma (2^k - 1 is exact); -1 below -88."""
        a = x if x > F32(-88.0) else F32(-88.0)
        u, s = exp64x_32(a)  # s = 2^(k + 64)
        s = s * twom64
        y = fma(s, u, s - one)
        return y if x > F32(-88.0) else -one

    @scalar
    def sig_parts64(x):
        """(es, r): exp(-|x|) 2**64 and 1 / (1 + exp(-|x|)), 1 + e's rounding carried."""
        a = -abs(x)
        es = exp64x_64(a if a > lo64 else lo64)
        es = es if a > lo64 else 0.0
        e = es * twom64_d
        d = 1.0 + e
        r = 1.0 / d
        return es, fma(-((1.0 - d) + e), r * r, r)

    @scalar
    def sigmoid64(x):
        es, r = sig_parts64(x)
        y = r if x >= 0.0 else (es * r) * twom64_d
        return y if x == x else x

    return SimpleNamespace(
        fma=fma, scalar=scalar, b2f32=b2f32, b2f64=b2f64,
        exp64x_32=exp64x_32, exp64x_64=exp64x_64, expm1_32=expm1_32,
        sig_parts32=sig_parts32, sigmoid32=sigmoid32, sig_parts64=sig_parts64, sigmoid64=sigmoid64,
        lo32=lo32, twom64=twom64, lo64=lo64, twom64_d=twom64_d)
