"""Scalar formulas of every activation: the only place a formula is written.

Each function takes and returns float64 (float32 kernels widen their input,
evaluate here and round once at the end, which keeps float32 within 1 ulp).
``<name>`` is the forward pass, ``<name>_grad`` the derivative with respect to
the input and ``<name>_grad_y`` the same derivative expressed through the
output ``y`` (for activations whose derivative is a function of ``y``).

Conventions that hold for every formula (tested from the catalog):

* NaN in gives NaN out, in the forward and in every derivative;
* +-inf give the mathematical limits, never ``inf*0`` NaNs;
* at kinks the derivative follows PyTorch (relu'(0) = 0, ...);
* comparisons are written so that NaN falls through to an arithmetic branch
  that propagates it;
* where a branch is long (an exp, a log1p), both sides are computed and one
  is selected, with a single return: a return per branch kept the ufunc loop
  scalar (LLVM does not speculate that much code), e.g. log_sigmoid 7.6 ->
  4.1 ns/element, gelu_tanh 21 -> 6 (float64, one Zen 4 thread, Dec 2026).

Why the less obvious lines are there is said next to them; the recurring tricks:

* ``exp`` is only ever called on a non-positive argument, so nothing overflows;
* ``p * exp(z)`` with a large ``|p|`` goes through ``mul_exp`` so that results
  near the subnormal range keep their accuracy;
* products of the input with an irrational constant that feed ``exp``/``erfc``
  carry their rounding error (``two_prod_err``) into a first-order correction,
  because ``exp(z)`` magnifies an absolute error in ``z`` by ``|z|`` ulps;
* derivatives that cross zero (silu, mish, gelu) switch to a polynomial in
  ``x - root`` near the root (tables in ``_rootpolys``, generated from the
  catalog's mpmath references by ``fastact/devtools/gen_rootpolys.py``).
"""

import math

from fastact.scalar.generated import rootpolys as RP
from fastact.scalar.eft import two_prod_err, two_sum_err
from fastact.scalar.registry import scalar
from fastact.scalar.mathlib import (
    exp,
    expm1,
    log1p,
    mul_erfc_dd,
    mul_exp,
    mul_exp_dd,
    tanh as _tanh,
)
from fastact.scalar.generated.rootpolys import ROOTS

SELU_SCALE = 1.0507009873554805  # 1.0507009873554804934193349852946
SELU_SCALE_ALPHA = 1.7580993408473768  # scale*alpha, rounded once from the exact constants
SELU_SCALE_ALPHA_LO = 1.41535193800845e-17  # its rounding error
INV_SQRT2_HI, INV_SQRT2_LO = 0.7071067811865476, -4.833646656726457e-17
INV_SQRT_2PI = 0.3989422804014327
TWO_OVER_SQRT_PI = 1.1283791670955126
# gelu-tanh: z = 2*sqrt(2/pi) * (x + 0.044715 x^3), both constants as double-doubles
GT_C2_HI, GT_C2_LO = 1.5957691216057308, -9.96930880911092e-17
GT_K_HI, GT_K_LO = 0.044715, 2.1960211427085595e-18

SILU_ROOT = ROOTS["silu"]
MISH_ROOT = ROOTS["mish"]
GELU_ROOT = ROOTS["gelu"]
GELU_TANH_ROOT = ROOTS["gelu_tanh"]


@scalar
def near_root(x, table):
    """True when ``x`` lies in the polynomial window of a derivative root."""
    return abs(x - table[0]) < table[2]


@scalar
def root_d(x, table):
    """d = x - root, one rounding: ``x - root_hi`` is exact inside the window
    (Sterbenz), so ``d * q(d)`` stays within a few ulps however close x is."""
    return (x - table[0]) - table[1]


# ------------------------------------------------------------------- sigmoid


@scalar
def sigmoid(x):
    # 1/(1+exp(-x)) is a chain of monotone roundings (so the result is monotone
    # in x) and exp(-x) <= e^700 cannot overflow; below -700 exp(x)/(1+exp(x))
    # keeps the subnormal results
    big = x >= -700.0
    e = exp(-x if big else x)
    return (1.0 if big else e) / (1.0 + e)


@scalar
def sigmoid_grad(x):
    # s*(1-s) = e/(1+e)^2 with e = exp(-|x|): no 1-s cancellation, 0 at +-inf
    e = exp(-abs(x))
    return e / ((1.0 + e) * (1.0 + e))


@scalar
def sigmoid_grad_y(y):
    return y * (1.0 - y)


# ---------------------------------------------------------------------- tanh


@scalar
def tanh(x):
    return _tanh(x)


@scalar
def tanh_grad(x):
    ax = abs(x)
    if ax < 0.55:
        t = _tanh(x)
        return 1.0 - t * t  # t*t <= 0.25: no cancellation
    # sech(x)^2 = (2h/(1+h^2))^2, h = exp(-|x|): 1-tanh^2 would cancel, and
    # cosh(x)^2 would overflow at |x| > 355 where the result is still normal
    h = exp(-ax)
    q = 2.0 * h / (1.0 + h * h)
    return q * q


@scalar
def tanh_grad_y(y):
    return (1.0 - y) * (1.0 + y)


# ----------------------------------------------------------------- elu family


@scalar
def elu(x, alpha):
    if x > 0.0:
        return x
    return alpha * expm1(x)


@scalar
def elu_grad(x, alpha):
    if x > 0.0:
        return 1.0
    return alpha * exp(x)


@scalar
def elu_grad_y(y, alpha):
    if y > 0.0:
        return 1.0
    return y + alpha  # alpha*exp(x) = y + alpha: one rounding for an exact y


@scalar
def selu(x):
    if x > 0.0:
        return SELU_SCALE * x
    return SELU_SCALE_ALPHA * expm1(x)


@scalar
def selu_grad(x):
    if x > 0.0:
        return SELU_SCALE
    return SELU_SCALE_ALPHA * exp(x)


@scalar
def selu_grad_y(y):
    if y > 0.0:
        return SELU_SCALE
    if y <= -SELU_SCALE_ALPHA:
        return 0.0 if y == y else y  # saturated: y no longer determines x
    # y + scale*alpha with the constant as a double-double: y + hi is exact
    # near saturation (Sterbenz) and lo then keeps the tiny gradient right
    return (y + SELU_SCALE_ALPHA) + SELU_SCALE_ALPHA_LO


@scalar
def celu(x, alpha):
    if x > 0.0:
        return x
    return alpha * expm1(x / alpha)


@scalar
def celu_grad(x, alpha):
    t = x / alpha
    # exp magnifies the rounding of x/alpha by |t|: add the exact remainder
    carry = (t < -1.0) & (t > -800.0) & (abs(alpha) < 1e290)
    r = (x - t * alpha - two_prod_err(t, alpha, t * alpha)) / alpha
    e = exp(t)
    y = e * (1.0 + r) if carry else e
    return 1.0 if x > 0.0 else y


@scalar
def celu_grad_y(y, alpha):
    if y > 0.0:
        return 1.0
    return (y + alpha) / alpha  # y + alpha is exact near y = -alpha (Sterbenz)


# ----------------------------------------------------------- softplus family


@scalar
def softplus(x, beta):
    z = beta * x
    if abs(z) < 800.0 and abs(x) < 1e290 and abs(beta) < 1e290:
        zl = two_prod_err(beta, x, z)  # exp(z) magnifies z's rounding by |z|
    else:
        zl = 0.0
    # log1p(exp(z)) is monotone and cannot overflow up to z = 36, where
    # x + log1p(exp(-z)) takes over (so the result never wobbles by an ulp);
    # one exp and one log1p serve both sides (selects, so the loop vectorizes)
    up = z > 36.0
    w = exp(-z if up else z) * (1.0 - zl if up else 1.0 + zl)
    lp = log1p(w) / beta
    return x + lp if up else lp


@scalar
def softplus_grad(x, beta):
    z = beta * x
    finite = abs(z) < 800.0 and abs(x) < 1e290 and abs(beta) < 1e290
    zl = two_prod_err(beta, x, z) if finite else 0.0
    pos = z > 0.0
    e = exp(-z if pos else z) * (1.0 - zl if pos else 1.0 + zl)
    return (1.0 if pos else e) / (1.0 + e)


@scalar
def softplus_grad_y(y, beta):
    # exp(beta*y) = 1 + exp(beta*x)  =>  sigmoid(beta*x) = 1 - exp(-beta*y)
    return -expm1(-beta * y)


@scalar
def log_sigmoid(x):
    # -log1p(exp(-x)) above -36 (a monotone chain; exp(-x) <= e^36)
    up = x > -36.0
    lp = log1p(exp(-x if up else x))
    return -lp if up else x - lp


@scalar
def log_sigmoid_grad(x):
    pos = x >= 0.0
    e = exp(-x if pos else x)
    return (e if pos else 1.0) / (1.0 + e)


# ---------------------------------------------------------------------- silu


@scalar
def silu(x):
    pos = x >= 0.0
    e = exp(-x if pos else x)
    y = (x if pos else x * e) / (1.0 + e)
    # below -700, 1+e == 1; also -inf -> -0 and NaN -> NaN
    return y if x >= -700.0 else mul_exp(x, x)


@scalar
def silu_grad(x):
    # s * (1 + x*(1-s))
    pos = x >= 0.0
    e = exp(-x if pos else x)
    a = (1.0 + x * e / (1.0 + e)) / (1.0 + e)
    a = 1.0 if e == 0.0 else a  # x*e would be inf*0 at +inf
    b = e * ((1.0 + x) + e) / ((1.0 + e) * (1.0 + e))
    y = a if pos else (b if x >= -700.0 else mul_exp(1.0 + x, x))
    d = root_d(x, SILU_ROOT)
    return d * RP.silu_q(d) if near_root(x, SILU_ROOT) else y


# ---------------------------------------------------------------------- mish


@scalar
def mish(x):
    # tanh(softplus(x)) = n/(n+2), n = e*(e+2), e = exp(x); with e = exp(-x)
    # for x >= 0 it is (1+2e)/(1+2e+2e^2): no overflow, no log/tanh calls
    pos = x >= 0.0
    e = exp(-x if pos else x)
    a = x * (1.0 + 2.0 * e) / (1.0 + 2.0 * e * (1.0 + e))
    n = e * (e + 2.0)
    b = x * n / (n + 2.0)
    return a if pos else (b if x >= -700.0 else mul_exp(x, x))


@scalar
def mish_grad(x):
    # tanh(sp) + x * sech(sp)^2 * sigmoid(x), sp = softplus(x)
    pos = x >= 0.0
    e = exp(-x if pos else x)
    q = 1.0 + 2.0 * e * (1.0 + e)
    a = (1.0 + 2.0 * e) / q + 4.0 * ((x * e) * e) * (1.0 + e) / (q * q)
    a = 1.0 if e == 0.0 else a
    d = e * (e + 2.0) + 2.0
    # e*((e+2)d + 4x(1+e)) / d^2, the bracket expanded in powers of e so the
    # exact 4(1+x) carries the cancellation instead of two rounded products
    b = 4.0 * (1.0 + x) + e * ((6.0 + 4.0 * x) + e * (4.0 + e))
    b = e * b / (d * d)
    y = a if pos else (b if x >= -700.0 else mul_exp(1.0 + x, x))
    r = root_d(x, MISH_ROOT)
    return r * RP.mish_q(r) if near_root(x, MISH_ROOT) else y


# ---------------------------------------------------------------------- gelu
# Both passes go through erfc of t = -x/sqrt(2) kept as a double-double
# (vmath's erfc takes the low part into its exponent, where the rounding of
# x/sqrt2 would be magnified by ~2 t^2 ulps): one vectorized erfc per
# element, no series for the far tail. mul_erfc_dd multiplies before its one
# rounding, so (x/2) erfc(t) stays accurate down to gelu's own subnormal
# range although erfc(t) alone is subnormal from x = -37.5 on.

INV_SQRT_2PI_LO = -2.49232720227773e-17  # 1/sqrt(2 pi) - INV_SQRT_2PI


@scalar
def _x_over_sqrt2(x):
    """(t, t_lo): x/sqrt(2) as a double-double."""
    t = x * INV_SQRT2_HI
    tl = two_prod_err(x, INV_SQRT2_HI, t) + x * INV_SQRT2_LO
    return t, tl


@scalar
def gelu(x):
    # x * Phi(x) = (x/2) erfc(-x/sqrt2)
    t, tl = _x_over_sqrt2(-x)
    y = mul_erfc_dd(0.5 * x, t, tl)  # 2 * (x/2) = x for x > 8.5
    y = -0.0 if x < -40.0 else y  # |x Phi(x)| < 2**-1075
    # x Phi(x) has the sign of x, also where it underflows (and at x = -0)
    return math.copysign(y, x) if x == x else x


@scalar
def gelu_grad(x):
    # Phi(x) + x * phi(x)
    t, tl = _x_over_sqrt2(-x)
    # x phi(x) = x/sqrt(2 pi) * exp(-x^2/2), x^2 and 1/sqrt(2 pi) as double-doubles
    x2 = x * x
    x2l = two_prod_err(x, x, x2)
    p = x * INV_SQRT_2PI
    pl = two_prod_err(x, INV_SQRT_2PI, p) + x * INV_SQRT_2PI_LO
    g = mul_erfc_dd(0.5, t, tl) + mul_exp_dd(p, pl, -0.5 * x2, -0.5 * x2l)
    # |Phi(x) + x phi(x)| < 2**-1075 below -38.6748: a negative zero
    g = 1.0 if x > 40.0 else (-0.0 if x < -38.7 else g)
    d = root_d(x, GELU_ROOT)
    g = d * RP.gelu_q(d) if near_root(x, GELU_ROOT) else g
    return g if x == x else x


# ----------------------------------------------------------------- gelu tanh


@scalar
def _gelu_tanh_z(x):
    """(z, z_lo): z = 2*sqrt(2/pi)*x*(1 + 0.044715 x^2) as a double-double.

    Needed because sigmoid(z) magnifies an absolute error in z by |z|.
    Valid for |x| <= 30 (the callers' range).
    """
    x2 = x * x
    x2l = two_prod_err(x, x, x2)
    a = GT_K_HI * x2
    al = two_prod_err(GT_K_HI, x2, a) + GT_K_HI * x2l + GT_K_LO * x2
    b = 1.0 + a
    bl = two_sum_err(1.0, a, b) + al
    m = x * b
    ml = two_prod_err(x, b, m) + x * bl
    z = GT_C2_HI * m
    zl = two_prod_err(GT_C2_HI, m, z) + GT_C2_HI * ml + GT_C2_LO * m
    return z, zl


@scalar
def gelu_tanh(x):
    # 0.5*x*(1+tanh(u)) = x*sigmoid(2u), 2u = z; each side computed on x
    # clamped to [-30, 30], one selected (see the module docstring)
    xc = min(max(x, -30.0), 30.0) if x == x else 0.0
    z, zl = _gelu_tanh_z(xc)
    zn = min(z, 0.0)  # each side's exp sees a non-positive argument
    pos = xc / (1.0 + exp(-max(z, 0.0)) * (1.0 - zl))
    neg = mul_exp(xc * (1.0 + zl), zn) / (1.0 + exp(zn))
    y = pos if xc >= 0.0 else neg
    y = x if x > 30.0 else (-0.0 if x < -30.0 else y)
    return y if x == x else x


@scalar
def gelu_tanh_grad(x):
    # sigmoid(z) + x z' sigmoid(z) (1 - sigmoid(z)), z' = 2c(1 + 3k x^2);
    # selects, as gelu_tanh
    xc = min(max(x, -30.0), 30.0) if x == x else 0.0
    z, zl = _gelu_tanh_z(xc)
    dz = GT_C2_HI * (1.0 + 3.0 * GT_K_HI * xc * xc)
    zn = min(z, 0.0)
    ep = exp(-max(z, 0.0)) * (1.0 - zl)
    pos = (1.0 + xc * dz * ep / (1.0 + ep)) / (1.0 + ep)
    ope = 1.0 + exp(zn)
    neg = mul_exp((1.0 + zl) * (1.0 + xc * dz / ope) / ope, zn)
    y = pos if xc >= 0.0 else neg
    d = root_d(xc, GELU_TANH_ROOT)
    y = d * RP.gelu_tanh_q(d) if near_root(xc, GELU_TANH_ROOT) else y
    y = 1.0 if x > 30.0 else (-0.0 if x < -30.0 else y)
    return y if x == x else x
