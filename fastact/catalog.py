"""The catalog: every elementwise activation declared once.

An entry names the activation, its parameters (PyTorch names and defaults),
its scalar formulas (in :mod:`fastact.scalar.formulas`), the text of its formula and
gradient for documentation, its limits at +-inf, and an mpmath reference for
the forward pass, the derivative and (where it exists) the derivative written
through the output. Everything else is generated from this table: the CPU
ufuncs (:mod:`fastact.cpu.ufuncs`), the public functions and their docstrings
(:mod:`fastact.functions.elementwise`), the accuracy tests, ``docs/accuracy.md`` and the
README's table.

Adding an activation = writing its formulas in ``formulas.py`` and one
``Activation(...)`` here. If its derivative crosses zero, give ``grad_root``
and run ``python -m fastact.devtools.gen_rootpolys``.

References receive the mpmath module as ``mp`` (mpmath is a test-time
dependency, never imported by the package) and exact ``mpf`` arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

from fastact.scalar import formulas as F
from fastact.scalar import formulas32 as F32
from fastact.scalar import gelu32 as G32
from fastact.scalar import piecewise as P

INF = math.inf

SELU_SCALE_TEXT = "1.0507009873554804934193349852946"
SELU_ALPHA_TEXT = "1.6732632423543772848170429916717"


@dataclass(frozen=True)
class Param:
    name: str
    default: float
    doc: str
    test_value: float  # a non-default value the tests also run


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable
    grad: Callable
    grad_y: Optional[Callable]
    formula: str
    grad_formula: str
    stability: str
    # (*params) -> (f(-inf), f(+inf), f'(-inf), f'(+inf)); a zero limit has the
    # sign that f (f') has next to it: silu(-inf) = -0.0, sigmoid(-inf) = +0.0
    limits: Callable
    ref: Callable  # (mp, x, *params) -> f(x)
    ref_grad: Callable  # (mp, x, *params) -> f'(x)
    ref_grad_y: Optional[Callable] = None  # (mp, y, *params) -> f'(f^-1(y))
    params: tuple = ()
    grad_y_formula: str = ""
    grad_y_note: str = ""  # what happens where y no longer determines x
    kinks: str = ""  # derivative convention at non-differentiable points
    grad_root: Optional[float] = None  # the derivative's zero, if it crosses one
    check: Optional[Callable] = None  # (*params) -> error message or None
    check_y: Optional[Callable] = None  # extra conditions for backward_from_output
    choices: dict = field(default_factory=dict)  # str param -> {value: entry name or None}
    cheap: bool = False  # no transcendental calls: memory-bound, threads pay off only when huge
    aliases: tuple = ()
    # float32 evaluations (formulas32) used by the float32 CPU kernels in
    # place of the float64 definition; None: float32 kernels widen and run it
    forward32: Optional[Callable] = None
    grad32: Optional[Callable] = None

    @property
    def param_names(self):
        return tuple(p.name for p in self.params)

    @property
    def defaults(self):
        return tuple(p.default for p in self.params)


def _sig(mp, x):
    return 1 / (1 + mp.exp(-x))


def _pos(msg, v):
    return None if v > 0 else msg


ENTRIES = [
    Activation(
        name="identity",
        cheap=True,
        forward=P.identity,
        grad=P.identity_grad,
        grad_y=P.identity_grad_y,
        formula="x",
        grad_formula="1",
        grad_y_formula="1",
        stability="exact.",
        limits=lambda: (-INF, INF, 1.0, 1.0),
        ref=lambda mp, x: x,
        ref_grad=lambda mp, x: mp.mpf(1),
        ref_grad_y=lambda mp, y: mp.mpf(1),
    ),
    Activation(
        name="sigmoid",
        forward32=F32.sigmoid,
        grad32=F32.sigmoid_grad,
        forward=F.sigmoid,
        grad=F.sigmoid_grad,
        grad_y=F.sigmoid_grad_y,
        formula="1 / (1 + exp(-x))",
        grad_formula="s * (1 - s), s = sigmoid(x)",
        grad_y_formula="y * (1 - y)",
        grad_y_note="for x > 36.7 (float64) / 16.6 (float32) y rounds to 1 and the "
        "gradient from y is 0, while backward(x) still returns exp(-x).",
        stability="1 / (1 + exp(-x)) down to x = -700 (exp(-x) <= e^700 cannot overflow, and "
        "a chain of monotone roundings keeps the result monotone), exp(x) / (1 + exp(x)) "
        "below so results down to the smallest subnormal survive; the gradient is "
        "e / (1 + e)^2 with e = exp(-|x|), which has no 1 - s cancellation.",
        limits=lambda: (0.0, 1.0, 0.0, 0.0),
        ref=lambda mp, x: _sig(mp, x),
        ref_grad=lambda mp, x: mp.exp(-abs(x)) / (1 + mp.exp(-abs(x))) ** 2,
        ref_grad_y=lambda mp, y: y * (1 - y),
    ),
    Activation(
        name="tanh",
        forward32=F32.tanh,
        grad32=F32.tanh_grad,
        forward=F.tanh,
        grad=F.tanh_grad,
        grad_y=F.tanh_grad_y,
        formula="tanh(x)",
        grad_formula="1 - tanh(x)^2 = sech(x)^2",
        grad_y_formula="(1 - y) * (1 + y)",
        grad_y_note="for |x| > 19.1 (float64) / 9.0 (float32) |y| rounds to 1 and the "
        "gradient from y is 0, while backward(x) still returns 4 exp(-2|x|).",
        stability="the gradient is (2h / (1 + h^2))^2 with h = exp(-|x|) for |x| >= 0.55: "
        "no 1 - tanh^2 cancellation and no cosh^2 overflow (it stays normal up to |x| = 354).",
        limits=lambda: (-1.0, 1.0, 0.0, 0.0),
        ref=lambda mp, x: mp.tanh(x),
        ref_grad=lambda mp, x: mp.sech(x) ** 2,
        ref_grad_y=lambda mp, y: (1 - y) * (1 + y),
    ),
    Activation(
        name="relu",
        cheap=True,
        forward=P.relu,
        grad=P.relu_grad,
        grad_y=P.relu_grad_y,
        formula="max(x, 0)",
        grad_formula="1 if x > 0 else 0",
        grad_y_formula="1 if y > 0 else 0",
        kinks="relu'(0) = 0 (PyTorch); relu'(nan) = nan (PyTorch returns 1).",
        stability="exact.",
        limits=lambda: (0.0, INF, 0.0, 1.0),
        ref=lambda mp, x: x if x > 0 else mp.mpf(0),
        ref_grad=lambda mp, x: mp.mpf(1 if x > 0 else 0),
        ref_grad_y=lambda mp, y: mp.mpf(1 if y > 0 else 0),
    ),
    Activation(
        name="relu6",
        cheap=True,
        forward=P.relu6,
        grad=P.relu6_grad,
        grad_y=P.relu6_grad_y,
        formula="min(max(x, 0), 6)",
        grad_formula="1 if 0 < x < 6 else 0",
        grad_y_formula="1 if 0 < y < 6 else 0",
        kinks="relu6'(0) = relu6'(6) = 0 (PyTorch).",
        stability="exact.",
        limits=lambda: (0.0, 6.0, 0.0, 0.0),
        ref=lambda mp, x: min(max(x, mp.mpf(0)), mp.mpf(6)),
        ref_grad=lambda mp, x: mp.mpf(1 if 0 < x < 6 else 0),
        ref_grad_y=lambda mp, y: mp.mpf(1 if 0 < y < 6 else 0),
    ),
    Activation(
        name="leaky_relu",
        cheap=True,
        forward32=P.leaky_relu32,
        forward=P.leaky_relu,
        grad=P.leaky_relu_grad,
        grad_y=P.leaky_relu_grad_y,
        params=(Param("negative_slope", 0.01, "slope for x <= 0", 0.2),),
        formula="x if x > 0 else negative_slope * x",
        grad_formula="1 if x > 0 else negative_slope",
        grad_y_formula="1 if y > 0 else negative_slope",
        kinks="leaky_relu'(0) = negative_slope (PyTorch).",
        stability="one rounding.",
        limits=lambda s: (-INF if s > 0 else (INF if s < 0 else -s), INF, s, 1.0),  # s = +-0: s * (x < 0) = -+0
        ref=lambda mp, x, s: x if x > 0 else s * x,
        ref_grad=lambda mp, x, s: mp.mpf(1) if x > 0 else s,
        ref_grad_y=lambda mp, y, s: mp.mpf(1) if y > 0 else s,
        check_y=lambda s: None if s >= 0 else "backward_from_output needs negative_slope >= 0 "
        "(with a negative slope y > 0 no longer tells the sign of x)",
    ),
    Activation(
        name="elu",
        forward32=F32.elu,
        grad32=F32.elu_grad,
        forward=F.elu,
        grad=F.elu_grad,
        grad_y=F.elu_grad_y,
        params=(Param("alpha", 1.0, "saturation value -alpha for x -> -inf", 0.7),),
        formula="x if x > 0 else alpha * (exp(x) - 1)",
        grad_formula="1 if x > 0 else alpha * exp(x)",
        grad_y_formula="1 if y > 0 else y + alpha",
        grad_y_note="for x < -37.4 (float64) / -17.3 (float32) y rounds to -alpha and the "
        "gradient from y is 0.",
        kinks="elu'(0) = alpha (PyTorch), 1 for the default alpha = 1.",
        stability="expm1, so small negative x keep full relative accuracy.",
        limits=lambda a: (-a, INF, 0.0, 1.0),
        ref=lambda mp, x, a: x if x > 0 else a * mp.expm1(x),
        ref_grad=lambda mp, x, a: mp.mpf(1) if x > 0 else a * mp.exp(x),
        ref_grad_y=lambda mp, y, a: mp.mpf(1) if y > 0 else y + a,
        check_y=lambda a: None if a >= 0 else "backward_from_output needs alpha >= 0",
    ),
    Activation(
        name="selu",
        forward32=F32.selu,
        grad32=F32.selu_grad,
        forward=F.selu,
        grad=F.selu_grad,
        grad_y=F.selu_grad_y,
        formula="scale * (x if x > 0 else alpha * (exp(x) - 1)), "
        f"scale = {SELU_SCALE_TEXT}, alpha = {SELU_ALPHA_TEXT}",
        grad_formula="scale if x > 0 else scale * alpha * exp(x)",
        grad_y_formula="scale if y > 0 else y + scale * alpha",
        grad_y_note="for x < -37.4 (float64) / -17.3 (float32) y rounds to -scale*alpha and "
        "the gradient from y is 0 (also where the float32 y rounds below -scale*alpha).",
        kinks="selu'(0) = scale * alpha (PyTorch).",
        stability="expm1; scale * alpha is one constant rounded once from the exact values.",
        limits=lambda: (-F.SELU_SCALE_ALPHA, INF, 0.0, F.SELU_SCALE),
        ref=lambda mp, x: mp.mpf(SELU_SCALE_TEXT)
        * (x if x > 0 else mp.mpf(SELU_ALPHA_TEXT) * mp.expm1(x)),
        ref_grad=lambda mp, x: mp.mpf(SELU_SCALE_TEXT)
        * (1 if x > 0 else mp.mpf(SELU_ALPHA_TEXT) * mp.exp(x)),
        ref_grad_y=lambda mp, y: mp.mpf(SELU_SCALE_TEXT)
        if y > 0
        else (
            mp.mpf(0)  # saturated (documented): y <= -scale*alpha as a float64
            if y <= F.SELU_SCALE_ALPHA * -1
            else y + mp.mpf(SELU_SCALE_TEXT) * mp.mpf(SELU_ALPHA_TEXT)
        ),
    ),
    Activation(
        name="celu",
        forward32=F32.celu,
        grad32=F32.celu_grad,
        forward=F.celu,
        grad=F.celu_grad,
        grad_y=F.celu_grad_y,
        params=(Param("alpha", 1.0, "saturation value -alpha for x -> -inf", 0.7),),
        formula="x if x > 0 else alpha * (exp(x / alpha) - 1)",
        grad_formula="1 if x > 0 else exp(x / alpha)",
        grad_y_formula="1 if y > 0 else (y + alpha) / alpha",
        grad_y_note="for x / alpha < -37.4 (float64) / -17.3 (float32) y rounds to -alpha "
        "and the gradient from y is 0.",
        kinks="celu'(0) = 1 (PyTorch).",
        stability="expm1; the rounding error of x / alpha is carried into exp for the gradient.",
        limits=lambda a: (-a, INF, 0.0, 1.0),
        ref=lambda mp, x, a: x if x > 0 else a * mp.expm1(x / a),
        ref_grad=lambda mp, x, a: mp.mpf(1) if x > 0 else mp.exp(x / a),
        ref_grad_y=lambda mp, y, a: mp.mpf(1) if y > 0 else (y + a) / a,
        check=lambda a: None if a != 0 else "alpha must not be 0",
        check_y=lambda a: _pos("backward_from_output needs alpha > 0", a),
    ),
    Activation(
        name="softplus",
        forward32=F32.softplus,
        grad32=F32.softplus_grad,
        forward=F.softplus,
        grad=F.softplus_grad,
        grad_y=F.softplus_grad_y,
        params=(Param("beta", 1.0, "sharpness; softplus -> relu as beta -> inf", 0.7),),
        formula="log(1 + exp(beta * x)) / beta  (no threshold: exact for every x)",
        grad_formula="sigmoid(beta * x)",
        grad_y_formula="1 - exp(-beta * y)",
        grad_y_note="for beta*x > 36.7 (float64) / 16.6 (float32) the gradient from y "
        "rounds to 1.",
        stability="log1p(exp(beta x)) / beta up to beta x = 36, x + log1p(exp(-beta x)) / beta "
        "above: no overflow, no threshold (exact for every x), monotone; the rounding error "
        "of beta * x is carried into exp.",
        limits=lambda b: (0.0, INF, 0.0, 1.0),
        ref=lambda mp, x, b: mp.log1p(mp.exp(b * x)) / b,
        ref_grad=lambda mp, x, b: _sig(mp, b * x),
        ref_grad_y=lambda mp, y, b: -mp.expm1(-b * y),
        check=lambda b: _pos("beta must be > 0", b),
    ),
    Activation(
        name="log_sigmoid",
        forward32=F32.log_sigmoid,
        grad32=F32.log_sigmoid_grad,
        forward=F.log_sigmoid,
        grad=F.log_sigmoid_grad,
        grad_y=None,
        formula="log(sigmoid(x)) = -softplus(-x)",
        grad_formula="sigmoid(-x) = 1 - sigmoid(x)",
        stability="-log1p(exp(-x)) down to x = -36, x - log1p(exp(x)) below: no overflow, "
        "monotone, and -exp(-x) (not 0) for large x.",
        limits=lambda: (-INF, -0.0, 1.0, 0.0),
        ref=lambda mp, x: -mp.log1p(mp.exp(-x)),
        ref_grad=lambda mp, x: _sig(mp, -x),
    ),
    Activation(
        name="softsign",
        forward=P.softsign,
        grad=P.softsign_grad,
        grad_y=None,
        formula="x / (1 + |x|)",
        grad_formula="1 / (1 + |x|)^2",
        stability="sign(x) / (1 + 1/|x|), a chain of monotone roundings; the gradient squares "
        "1 / (1 + |x|) so it does not underflow to 0 early; softsign(+-inf) = +-1.",
        limits=lambda: (-1.0, 1.0, 0.0, 0.0),
        ref=lambda mp, x: x / (1 + abs(x)),
        ref_grad=lambda mp, x: 1 / (1 + abs(x)) ** 2,
    ),
    Activation(
        name="hardtanh",
        cheap=True,
        forward=P.hardtanh,
        grad=P.hardtanh_grad,
        grad_y=P.hardtanh_grad_y,
        params=(
            Param("min_val", -1.0, "lower clip value", -2.0),
            Param("max_val", 1.0, "upper clip value", 0.5),
        ),
        formula="min(max(x, min_val), max_val)",
        grad_formula="1 if min_val < x < max_val else 0",
        grad_y_formula="1 if min_val < y < max_val else 0",
        kinks="0 at x = min_val and x = max_val (PyTorch).",
        stability="exact.",
        limits=lambda lo, hi: (lo, hi, 0.0, 0.0),
        ref=lambda mp, x, lo, hi: min(max(x, lo), hi),
        ref_grad=lambda mp, x, lo, hi: mp.mpf(1 if lo < x < hi else 0),
        ref_grad_y=lambda mp, y, lo, hi: mp.mpf(1 if lo < y < hi else 0),
        check=lambda lo, hi: None if lo <= hi else "min_val cannot be greater than max_val",
    ),
    Activation(
        name="hardsigmoid",
        cheap=True,
        forward=P.hardsigmoid,
        grad=P.hardsigmoid_grad,
        grad_y=None,
        formula="0 if x <= -3, 1 if x >= 3, else x / 6 + 1 / 2",
        grad_formula="1/6 if -3 < x < 3 else 0",
        kinks="hardsigmoid'(-3) = hardsigmoid'(3) = 0 (PyTorch).",
        stability="(x + 3) / 6, exact numerator near x = -3 where x/6 + 1/2 cancels.",
        limits=lambda: (0.0, 1.0, 0.0, 0.0),
        ref=lambda mp, x: mp.mpf(0) if x <= -3 else (mp.mpf(1) if x >= 3 else (x + 3) / 6),
        ref_grad=lambda mp, x: mp.mpf(1) / 6 if -3 < x < 3 else mp.mpf(0),
    ),
    Activation(
        name="hardswish",
        cheap=True,
        forward=P.hardswish,
        grad=P.hardswish_grad,
        grad_y=None,
        formula="x * hardsigmoid(x) = x * min(max(x + 3, 0), 6) / 6",
        grad_formula="0 if x <= -3, 1 if x >= 3, else (2x + 3) / 6",
        kinks="hardswish'(-3) = 0 and hardswish'(3) = 1.",
        stability="(2x + 3) / 6 for the gradient: exact numerator at its root x = -1.5.",
        limits=lambda: (0.0, INF, 0.0, 1.0),
        ref=lambda mp, x: mp.mpf(0) if x <= -3 else (x if x >= 3 else x * (x + 3) / 6),
        ref_grad=lambda mp, x: mp.mpf(0) if x <= -3 else (mp.mpf(1) if x >= 3 else (2 * x + 3) / 6),
    ),
    Activation(
        name="silu",
        forward32=F32.silu,
        grad32=F32.silu_grad,
        forward=F.silu,
        grad=F.silu_grad,
        grad_y=None,
        aliases=("swish",),
        formula="x * sigmoid(x)",
        grad_formula="s * (1 + x * (1 - s)), s = sigmoid(x)",
        stability="x * e / (1 + e) with e = exp(x) for x < 0 (x e^x squared from "
        "exp(x/2) below -700 so subnormal results stay accurate); near the "
        "gradient's zero at x = -1.2785 a polynomial in x - root avoids cancellation; "
        "silu(-inf) = -0.0, silu'(+inf) = 1 (no inf*0 NaN).",
        limits=lambda: (-0.0, INF, -0.0, 1.0),
        ref=lambda mp, x: x * _sig(mp, x),
        ref_grad=lambda mp, x: _sig(mp, x) * (1 + x * _sig(mp, -x)),
        grad_root=-1.2784645427610738,
    ),
    Activation(
        name="mish",
        forward32=F32.mish,
        grad32=F32.mish_grad,
        forward=F.mish,
        grad=F.mish_grad,
        grad_y=None,
        formula="x * tanh(softplus(x))",
        grad_formula="tanh(sp) + x * sech(sp)^2 * sigmoid(x), sp = softplus(x)",
        stability="tanh(softplus(x)) as the rational n / (n + 2), n = e (e + 2) in e = exp(x) "
        "(e = exp(-x) for x > 0): no overflow, no log/tanh round trips, mish(-inf) = 0; "
        "a polynomial near the gradient's zero at x = -1.1924.",
        limits=lambda: (-0.0, INF, -0.0, 1.0),
        ref=lambda mp, x: x * mp.tanh(mp.log1p(mp.exp(x))),
        ref_grad=lambda mp, x: mp.tanh(mp.log1p(mp.exp(x)))
        + x * mp.sech(mp.log1p(mp.exp(x))) ** 2 * _sig(mp, x),
        grad_root=-1.1923834452411013,
    ),
    Activation(
        name="gelu",
        forward32=G32.gelu,
        grad32=G32.gelu_grad,
        forward=F.gelu,
        grad=F.gelu_grad,
        grad_y=None,
        choices={"approximate": {"none": None, "tanh": "gelu_tanh"}},
        formula="x * Phi(x) = x/2 * erfc(-x / sqrt(2))  (approximate='tanh': see gelu_tanh)",
        grad_formula="Phi(x) + x * phi(x)",
        stability="the rounding error of x / sqrt(2) is carried into erfc (it would cost "
        "up to 700 ulp near x = -37); for x < -26 the asymptotic series "
        "-phi(x) (1 - 1/x^2 + 3/x^4 - ...) avoids a subnormal erfc; x^2 is kept as a "
        "double-double inside exp; a polynomial near the gradient's zero at x = -0.7518.",
        limits=lambda: (-0.0, INF, -0.0, 1.0),
        ref=lambda mp, x: _gelu_ref(mp, x),
        ref_grad=lambda mp, x: _gelu_grad_ref(mp, x),
        grad_root=-0.7517915246935645,
    ),
    Activation(
        name="gelu_tanh",
        forward32=F32.gelu_tanh,
        grad32=F32.gelu_tanh_grad,
        forward=F.gelu_tanh,
        grad=F.gelu_tanh_grad,
        grad_y=None,
        formula="x/2 * (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) * (x + 0.044715 x^3)",
        grad_formula="s + x * 2u' * s * (1 - s), s = sigmoid(2u), u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2)",
        stability="x * sigmoid(2u) (no 1 + tanh cancellation); 2u is evaluated as a "
        "double-double because sigmoid magnifies its rounding by |2u| (up to ~700); "
        "a polynomial near the gradient's zero at x = -0.7528.",
        limits=lambda: (-0.0, INF, -0.0, 1.0),
        ref=lambda mp, x: x * _sig(mp, _gt_z(mp, x)),
        ref_grad=lambda mp, x: _sig(mp, _gt_z(mp, x))
        + x * _gt_dz(mp, x) * _sig(mp, _gt_z(mp, x)) * _sig(mp, -_gt_z(mp, x)),
        grad_root=-0.7528244397169633,
    ),
]


def _gelu_ref(mp, x):
    if x < -1e6:  # mpmath's erfc fails for huge arguments; the series is exact to 1e-36 here
        return -mp.npdf(x) * (1 - 1 / x**2 + 3 / x**4 - 15 / x**6)
    if x > 1e6:
        return x
    return x * mp.ncdf(x)


def _gelu_grad_ref(mp, x):
    if x < -1e6:
        return mp.npdf(x) * (x - (1 - 1 / x**2 + 3 / x**4 - 15 / x**6) / x)
    if x > 1e6:
        return mp.mpf(1)
    return mp.ncdf(x) + x * mp.npdf(x)


def _gt_z(mp, x):
    return 2 * mp.sqrt(2 / mp.pi) * (x + mp.mpf("0.044715") * x**3)


def _gt_dz(mp, x):
    return 2 * mp.sqrt(2 / mp.pi) * (1 + 3 * mp.mpf("0.044715") * x**2)


CATALOG = {e.name: e for e in ENTRIES}
