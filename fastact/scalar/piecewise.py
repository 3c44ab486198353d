"""Scalar formulas of the piecewise activations: identity, the relu family,
hardtanh, softsign, hardsigmoid and hardswish (no transcendental functions).

Like ``formulas``, the only place these formulas are written; derivatives at
kinks follow PyTorch (``relu'(0) = 0``, ``leaky_relu'(0) = negative_slope``).
"""

import math

import numpy as np

from fastact.scalar.fma import fma
from fastact.scalar.registry import scalar

ONE_SIXTH = 0.16666666666666666


# ------------------------------------------------------------------ identity


@scalar
def identity(x):
    return x


@scalar
def identity_grad(x):
    return 1.0 if x == x else x


@scalar
def identity_grad_y(y):
    return 1.0 if y == y else y


# ---------------------------------------------------------------- relu family


@scalar
def relu(x):
    if x > 0.0:
        return x
    if x <= 0.0:
        return 0.0
    return x


@scalar
def relu_grad(x):
    if x > 0.0:
        return 1.0
    if x <= 0.0:
        return 0.0
    return x


@scalar
def relu_grad_y(y):
    return relu_grad(y)


@scalar
def relu6(x):
    if x >= 6.0:
        return 6.0
    return relu(x)


@scalar
def relu6_grad(x):
    if x > 0.0 and x < 6.0:
        return 1.0
    return 0.0 if x == x else x


@scalar
def relu6_grad_y(y):
    return relu6_grad(y)


@scalar
def leaky_relu(x, negative_slope):
    if x > 0.0:
        return x
    # slope 0: x * 0 is a zero for every finite x, so its limit at x = -inf
    # too, where the IEEE product 0 * -inf would be NaN; -1 in place of
    # x < -1 keeps that zero's sign (-0.0 for a slope of +0.0). A select on
    # operands: the loop still vectorizes, at no measurable cost
    return (-1.0 if x < -1.0 and negative_slope == 0.0 else x) * negative_slope


_ONE32 = np.float32(1.0)
_ZERO32 = np.float32(0.0)


@scalar
def leaky_relu32(x, negative_slope):
    """leaky_relu in float32 (the float32 loops; the slope is a float32 value
    widened, so exact): bitwise the float64 definition rounded to float32,
    the product of two float32 being exact in float64. Written in float32 so
    that the select does not keep the product in float64 (LLVM narrows
    float32(float64(x) * float64(s)) to one float32 product, not with the
    select in between: 512-bit double code under FASTACT_VECTOR_WIDTH=256)."""
    s = np.float32(negative_slope)
    if x > _ZERO32:
        return x
    return (-_ONE32 if x < -_ONE32 and s == _ZERO32 else x) * s


@scalar
def leaky_relu_grad(x, negative_slope):
    if x > 0.0:
        return 1.0
    if x <= 0.0:
        return negative_slope
    return x


@scalar
def leaky_relu_grad_y(y, negative_slope):
    return leaky_relu_grad(y, negative_slope)


@scalar
def hardtanh(x, min_val, max_val):
    if x < min_val:
        return min_val
    if x > max_val:
        return max_val
    return x


@scalar
def hardtanh_grad(x, min_val, max_val):
    if x > min_val and x < max_val:
        return 1.0
    return 0.0 if x == x else x


@scalar
def hardtanh_grad_y(y, min_val, max_val):
    return hardtanh_grad(y, min_val, max_val)


# ------------------------------------------------------------------ softsign


@scalar
def softsign(x):
    ax = abs(x)
    # 1/(1 + 1/|x|): monotone roundings only (x/(1+|x|) wobbles by an ulp), and
    # +-inf -> +-1 without inf/inf. Vectorized code also evaluates this for the
    # lanes that return x below; "+ 1e-300" (a no-op for |x| >= 1e-17) keeps
    # 1/|x| finite there. A max() clamp would not: LLVM drops it, knowing
    # |x| >= 1e-17 on this path.
    r = 1.0 / (1.0 + 1.0 / (ax + 1e-300))
    if ax < 1e-17 or x != x:
        return x  # x/(1+|x|) rounds to x for |x| < 2**-54; NaN stays NaN
    return math.copysign(r, x)


@scalar
def softsign_grad(x):
    r = 1.0 / (1.0 + abs(x))  # (1+|x|)^2 would overflow where the result is normal
    return r * r


# -------------------------------------------------------------- hard sigmoid


@scalar
def _div6(t):
    """t / 6 by a product and one FMA correction, without a division.

    q = t * RN(1/6) is within 1 ulp of t/6; r = 6q - t is exact in one FMA,
    and q - r * RN(1/6) rounded once is the correctly rounded quotient
    (Markstein's theorem) wherever t/6 is normal; where it is subnormal
    (float64 t below 1.3e-307) the result is within 1 ulp. Zeros keep their
    sign: r is +0 for t = +-0 and q - (+0) keeps q's. On a GPU ``div.rn.f64``
    is a subroutine that took these kernels to 40 registers; on the CPU a
    vector division cost hardswish its memory-bound speed.
    """
    q = t * ONE_SIXTH
    return fma(-fma(q, 6.0, -t), ONE_SIXTH, q)


@scalar
def hardsigmoid(x):
    if x <= -3.0:
        return 0.0
    if x >= 3.0:
        return 1.0
    return _div6(x + 3.0)  # x/6 + 1/2 would cancel near x = -3


@scalar
def hardsigmoid_grad(x):
    if x > -3.0 and x < 3.0:
        return ONE_SIXTH
    return 0.0 if x == x else x


@scalar
def hardswish(x):
    if x <= -3.0:
        return 0.0
    if x >= 3.0:
        return x
    return _div6(x * (x + 3.0))


@scalar
def hardswish_grad(x):
    if x <= -3.0:
        return 0.0
    if x >= 3.0:
        return 1.0
    return _div6(2.0 * x + 3.0)  # exact numerator near the root x = -1.5
