"""What fastact is compared with: one row of baselines per function.

``COMPARISONS[name]`` gives, in one place, the NumPy formula a user would write
for the forward pass and the gradient, PyTorch's kernels, SciPy's function and
the CuPy formula of the GPU bench, where they exist. ``python -m fastact bench``
and the pytest-benchmark suite (``tests/bench/test_bench_ops.py``) both read
this table; nothing else lists per-activation baselines, and
``tests/bench/test_baselines.py`` fails for a fastact function without a row.

Calling conventions (each baseline takes what fastact's function takes):

- ``numpy(*inputs)``, ``numpy_grad(grad, *inputs)``: the inputs of fastact's
  call and of its ``.backward``: ``x`` and ``(grad, x)`` for an elementwise
  activation, ``x`` and ``(grad, y)`` for softmax / log_softmax (rows along the
  last axis), ``(a, b)`` and ``(grad, a, b) -> (da, db)`` for a gated unit.
- ``torch(torch, *inputs, out)``: the torch module, then tensors; it writes
  into ``out`` where the kernel has an ``out=`` variant and returns the result.
- ``torch_grad(torch, grad, v, out)`` with ``v`` the input x, or the forward
  output y when ``torch_grad_from_y`` (the kernel's own argument).
- ``scipy(scipy.special, x, out)``.
- ``cupy(cupy, x)``, ``cupy_grad(cupy, grad, x)``: the CuPy formula timed
  against fastact's GPU kernels by ``--device cuda``.

Nothing here imports torch, SciPy or CuPy: they are passed in by the caller
(or imported inside a formula that needs them, when it is called).

Adding an activation: one ``Comparison(...)`` row in ``COMPARISONS``.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PEERS = ("torch", "scipy")  # the optional CPU peer libraries, in column order

_SQ2 = math.sqrt(2.0)
_INV_SQ2PI = 1 / math.sqrt(2 * math.pi)
_GT_C = 0.7978845608028654  # sqrt(2 / pi)
_GT_A = 0.044715
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


@dataclass(frozen=True)
class Comparison:
    """The baselines of one fastact function (see the module docstring for signatures)."""

    numpy: Callable
    numpy_grad: Callable
    torch: Callable | None = None
    torch_grad: Callable | None = None
    scipy: Callable | None = None
    cupy: Callable | None = None
    cupy_grad: Callable | None = None
    torch_grad_from_y: bool = False  # PyTorch's gradient kernel takes the forward output
    needs_scipy: bool = False  # the NumPy formula calls scipy.special (CuPy's: cupyx.scipy.special)


# ------------------------------------------------------------------ shared formulas
# The formulas a NumPy user would write, not fastact's: they are the baselines.
# ``xp`` is numpy, or cupy for the GPU bench.


def _sigmoid(x, xp=np):
    return 1 / (1 + xp.exp(-x))


def _sigmoid_grad(g, x, xp=np):
    s = _sigmoid(x, xp)
    return g * s * (1 - s)


def _silu(x):
    return x * _sigmoid(x)


def _silu_grad(g, x):
    return g * _sigmoid(x) * (1 + x * (1 - _sigmoid(x)))


def _scipy_erf():
    from scipy.special import erf  # what a NumPy user reaches for

    return erf


def _cupy_erf():
    """cupyx's erf, or None where CuPy lacks it (the GPU gelu column is then empty)."""
    try:
        from cupyx.scipy.special import erf
    except ImportError:
        return None
    return erf


def _gelu(x, erf=None):
    erf = erf or _scipy_erf()
    return x * 0.5 * (1 + erf(x / _SQ2))


def _gelu_grad(g, x, erf=None, xp=np):
    erf = erf or _scipy_erf()
    return g * (0.5 * (1 + erf(x / _SQ2)) + x * _INV_SQ2PI * xp.exp(-0.5 * x * x))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(_GT_C * (x + _GT_A * x**3)))


def _gelu_tanh_grad(g, x):
    t = np.tanh(_GT_C * (x + _GT_A * x**3))
    return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GT_C * (1 + 3 * _GT_A * x * x))


def _mish_grad(g, x):
    t = np.tanh(np.logaddexp(x, 0))
    return g * (t + x * (1 - t * t) * _sigmoid(x))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _log_softmax(x):
    s = x - x.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


def _glu(act):
    """The NumPy forward of a gated unit: act(a) * b."""
    return lambda a, b: act(a) * b


def _glu_grad(act, act_grad):
    """(da, db) = (grad * b * act'(a), grad * act(a)) from act's NumPy formulas."""
    return lambda g, a, b: (act_grad(g * b, a), g * act(a))


def _cupy_silu_grad(cp, g, x):
    s = _sigmoid(x, cp)  # once: the GPU bench's formula, cheaper than the NumPy one
    return g * s * (1 + x * (1 - s))


# ------------------------------------------------------------------ PyTorch calls
# torch.ops.aten kernels with out= where they have one, so that PyTorch, like
# fastact, writes into a preallocated output.


def _aten(op, *args, **kw):
    """PyTorch's forward ``aten.<op>.out(x, *args, out=o)``."""
    return lambda torch, x, o: getattr(torch.ops.aten, op).out(x, *args, **kw, out=o)


def _aten_grad(op, *args, **kw):
    """PyTorch's gradient ``aten.<op>.grad_input(g, v, *args, grad_input=o)``."""
    return lambda torch, g, v, o: getattr(torch.ops.aten, op).grad_input(g, v, *args, **kw, grad_input=o)


def _aten_grad_alloc(op):
    """``aten.<op>(g, x)`` for kernels whose out= variant allocates and copies anyway."""
    return lambda torch, g, x, o: getattr(torch.ops.aten, op)(g, x)


def _elu_grad(alpha, scale):
    # elu_backward takes x last: (grad, alpha, scale, input_scale, is_result, x)
    return lambda torch, g, x, o: torch.ops.aten.elu_backward.grad_input(
        g, alpha, scale, 1.0, False, x, grad_input=o
    )


def _torch_glu(act):
    """What a PyTorch user writes for a gated unit: F.<act>(a) * b (no fused kernel)."""
    return lambda torch, a, b, o: torch.mul(getattr(torch.nn.functional, act)(a), b, out=o)


# ------------------------------------------------------------------ the table

_C = Comparison

COMPARISONS = {
    # no PyTorch column for identity: there is no kernel to compare with
    "identity": _C(lambda x: x.copy(), lambda g, x: g.copy()),
    "sigmoid": _C(
        _sigmoid, _sigmoid_grad,
        torch=lambda torch, x, o: torch.sigmoid(x, out=o), torch_grad=_aten_grad("sigmoid_backward"),
        torch_grad_from_y=True, scipy=lambda sp, x, o: sp.expit(x, out=o),
        cupy=lambda cp, x: _sigmoid(x, cp), cupy_grad=lambda cp, g, x: _sigmoid_grad(g, x, cp),
    ),
    "tanh": _C(
        np.tanh, lambda g, x: g * (1 - np.tanh(x) ** 2),
        torch=lambda torch, x, o: torch.tanh(x, out=o), torch_grad=_aten_grad("tanh_backward"),
        torch_grad_from_y=True,
        cupy=lambda cp, x: cp.tanh(x), cupy_grad=lambda cp, g, x: g * (1 - cp.tanh(x) ** 2),
    ),
    "relu": _C(
        lambda x: np.maximum(x, 0), lambda g, x: np.where(x > 0, g, 0),
        # aten.relu's own kernel (relu.out copies through a temporary)
        torch=_aten("clamp_min", 0.0), torch_grad=_aten_grad("threshold_backward", 0.0),
        cupy=lambda cp, x: cp.maximum(x, 0), cupy_grad=lambda cp, g, x: cp.where(x > 0, g, 0),
    ),
    "relu6": _C(
        lambda x: np.clip(x, 0, 6), lambda g, x: np.where((x > 0) & (x < 6), g, 0),
        torch=_aten("hardtanh", 0.0, 6.0), torch_grad=_aten_grad("hardtanh_backward", 0.0, 6.0),  # = F.relu6
    ),
    "leaky_relu": _C(
        lambda x: np.where(x > 0, x, 0.01 * x), lambda g, x: np.where(x > 0, g, 0.01 * g),
        torch=_aten("leaky_relu", 0.01), torch_grad=_aten_grad("leaky_relu_backward", 0.01, False),
    ),
    "elu": _C(
        lambda x: np.where(x > 0, x, np.expm1(x)), lambda g, x: np.where(x > 0, g, g * np.exp(x)),
        torch=_aten("elu", 1.0, 1.0, 1.0), torch_grad=_elu_grad(1.0, 1.0),
    ),
    "selu": _C(
        lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(x)),
        lambda g, x: _SELU_SCALE * np.where(x > 0, g, _SELU_ALPHA * g * np.exp(x)),
        torch=_aten("elu", _SELU_ALPHA, _SELU_SCALE, 1.0), torch_grad=_elu_grad(_SELU_ALPHA, _SELU_SCALE),  # = F.selu
    ),
    "celu": _C(
        lambda x: np.where(x > 0, x, np.expm1(x)), lambda g, x: np.where(x > 0, g, g * np.exp(x)),
        # aten.celu's kernel at alpha = 1 (celu.out copies through a temporary)
        torch=_aten("elu", 1.0, 1.0, 1.0), torch_grad=_elu_grad(1.0, 1.0),
    ),
    "softplus": _C(
        lambda x: np.logaddexp(x, 0), lambda g, x: g * _sigmoid(x),
        torch=_aten("softplus", 1.0, 20.0), torch_grad=_aten_grad("softplus_backward", 1.0, 20.0),
    ),
    # no PyTorch gradient: log_sigmoid_backward needs the forward's buffer
    "log_sigmoid": _C(
        lambda x: -np.logaddexp(-x, 0), lambda g, x: g * _sigmoid(-x),
        torch=_aten("log_sigmoid"), scipy=lambda sp, x, o: sp.log_expit(x, out=o),
    ),
    # F.softsign is composite: no out=, and no gradient kernel
    "softsign": _C(
        lambda x: x / (1 + np.abs(x)), lambda g, x: g / (1 + np.abs(x)) ** 2,
        torch=lambda torch, x, o: torch.nn.functional.softsign(x),
    ),
    "hardtanh": _C(
        lambda x: np.clip(x, -1, 1), lambda g, x: np.where((x > -1) & (x < 1), g, 0),
        torch=_aten("hardtanh", -1.0, 1.0), torch_grad=_aten_grad("hardtanh_backward", -1.0, 1.0),
    ),
    "hardsigmoid": _C(
        lambda x: np.clip(x / 6 + 0.5, 0, 1), lambda g, x: np.where((x > -3) & (x < 3), g / 6, 0),
        torch=_aten("hardsigmoid"), torch_grad=_aten_grad("hardsigmoid_backward"),
    ),
    "hardswish": _C(
        lambda x: x * np.clip(x + 3, 0, 6) / 6,
        lambda g, x: g * np.where(x <= -3, 0, np.where(x >= 3, 1, (2 * x + 3) / 6)),
        torch=_aten("hardswish"), torch_grad=_aten_grad_alloc("hardswish_backward"),
    ),
    "silu": _C(
        _silu, _silu_grad,
        torch=_aten("silu"), torch_grad=_aten_grad("silu_backward"),
        cupy=lambda cp, x: x / (1 + cp.exp(-x)), cupy_grad=_cupy_silu_grad,
    ),
    "mish": _C(
        lambda x: x * np.tanh(np.logaddexp(x, 0)), _mish_grad,
        torch=_aten("mish"), torch_grad=_aten_grad_alloc("mish_backward"),  # mish_backward: no out=
    ),
    "gelu": _C(
        _gelu, _gelu_grad, needs_scipy=True,
        torch=_aten("gelu", approximate="none"), torch_grad=_aten_grad("gelu_backward", approximate="none"),
        cupy=lambda cp, x: _gelu(x, _cupy_erf()), cupy_grad=lambda cp, g, x: _gelu_grad(g, x, _cupy_erf(), cp),
    ),
    "gelu_tanh": _C(
        _gelu_tanh, _gelu_tanh_grad,
        torch=_aten("gelu", approximate="tanh"), torch_grad=_aten_grad("gelu_backward", approximate="tanh"),
    ),
    # rows along the last axis; the gradients take the forward output y
    "softmax": _C(
        _softmax, lambda g, y: y * (g - (g * y).sum(-1, keepdims=True)),
        torch=_aten("_softmax", -1, False), torch_grad_from_y=True,
        torch_grad=lambda torch, g, y, o: torch.ops.aten._softmax_backward_data.out(g, y, -1, y.dtype, grad_input=o),
        scipy=lambda sp, x, o: sp.softmax(x, axis=-1),
    ),
    "log_softmax": _C(
        _log_softmax, lambda g, y: g - np.exp(y) * g.sum(-1, keepdims=True),
        torch=_aten("_log_softmax", -1, False), torch_grad_from_y=True,
        torch_grad=lambda torch, g, y, o: torch.ops.aten._log_softmax_backward_data.out(g, y, -1, y.dtype, out=o),
        scipy=lambda sp, x, o: sp.log_softmax(x, axis=-1),
    ),
    # gated units: (a, b) in, (da, db) out of the gradient; PyTorch has no fused kernel
    # and its gradient is autograd's, so only its forward is compared
    "swiglu": _C(_glu(_silu), _glu_grad(_silu, _silu_grad), torch=_torch_glu("silu")),
    "geglu": _C(_glu(_gelu), _glu_grad(_gelu, _gelu_grad), torch=_torch_glu("gelu"), needs_scipy=True),
}


# ------------------------------------------------------------------ lookups

_EMPTY = Comparison(numpy=None, numpy_grad=None)


def peer_available(name):
    """Whether the peer library ``name`` ("torch", "scipy") can be imported."""
    return importlib.util.find_spec(name) is not None


def load_peers():
    """{peer name: module} for the peers that are installed (scipy with scipy.special loaded)."""
    mods = {}
    for name in PEERS:
        if peer_available(name):
            mods[name] = importlib.import_module(name)
            if name == "scipy":
                importlib.import_module("scipy.special")
    return mods


def _entry(name):
    # a function without a row (tests/bench/test_baselines.py fails for it) is
    # still timed: its baseline columns are left empty
    return COMPARISONS.get(name, _EMPTY)


def numpy_baselines(name, have_scipy=True):
    """(forward, gradient) NumPy formulas of ``name``; (None, None) where they need
    SciPy and it is missing."""
    c = _entry(name)
    if c.needs_scipy and not have_scipy:
        return None, None
    return c.numpy, c.numpy_grad


def torch_grad_from_y(name):
    """Whether PyTorch's gradient kernel of ``name`` takes the forward output."""
    return _entry(name).torch_grad_from_y


def torch_forward(torch, name):
    """``fn(*inputs, out) -> tensor`` running PyTorch's forward of ``name``, or None."""
    fn = _entry(name).torch
    return None if fn is None else (lambda *args: fn(torch, *args))


def torch_backward(torch, name):
    """``fn(grad, x, y, out) -> tensor``: PyTorch's gradient of ``name`` from the
    input x or the output y, whichever its kernel takes; None where there is no
    plain aten backward kernel."""
    c = _entry(name)
    fn = c.torch_grad
    if fn is None:
        return None
    if c.torch_grad_from_y:
        return lambda g, x, y, o: fn(torch, g, y, o)
    return lambda g, x, y, o: fn(torch, g, x, o)


def scipy_forward(scipy, name):
    """``fn(x, out)`` running SciPy's version of ``name``, or None."""
    fn = _entry(name).scipy
    return None if fn is None else (lambda x, o: fn(scipy.special, x, o))


def _cupy_formula(name, attr):
    c = _entry(name)
    fn = getattr(c, attr)
    if fn is None or (c.needs_scipy and _cupy_erf() is None):
        return None
    return fn


def cupy_forward(cp, name):
    """``fn(x)``: the CuPy formula a CuPy user would write for ``name``, or None."""
    fn = _cupy_formula(name, "cupy")
    return None if fn is None else (lambda x: fn(cp, x))


def cupy_backward(cp, name):
    """``fn(g, x)``: the CuPy formula of ``name``'s gradient, or None."""
    fn = _cupy_formula(name, "cupy_grad")
    return None if fn is None else (lambda g, x: fn(cp, g, x))
