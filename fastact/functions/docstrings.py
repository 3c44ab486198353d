"""Docstrings of the elementwise activations, generated from their catalog entries.

Each states the formula, the gradient (and from the output, where defined),
the kinks, the stability trick and the limits at +-inf, with an example whose
numbers are computed by the scalar formulas themselves.
"""

from __future__ import annotations

import numpy as np

from fastact.catalog import Activation
from fastact.functions.args import SUPPORTED


def _fmt(v):
    if v == float("inf"):
        return "+inf"
    if v == float("-inf"):
        return "-inf"
    return repr(float(v))


def _example(entry):
    xs = np.array([-2.0, 0.0, 2.0])
    y = np.array([entry.forward(float(v), *entry.defaults) for v in xs])
    g = np.array([entry.grad(float(v), *entry.defaults) for v in xs])
    lines = [
        ">>> import numpy as np, fastact",
        ">>> x = np.array([-2.0, 0.0, 2.0])",
        f">>> fastact.{entry.name}(x)",
        repr(y),
        f">>> fastact.{entry.name}.backward(np.ones(3), x)",
        repr(g),
    ]
    return "\n".join("    " + ln for ln in lines)


def docstring(e: Activation):
    lo, hi, dlo, dhi = e.limits(*e.defaults)
    sig = ", ".join(["x", "*", "out=None", "where=True"] + [f"{p.name}={p.default!r}" for p in e.params])
    choices = "".join(f", {k}={next(iter(v))!r}" for k, v in e.choices.items())
    parts = [
        f"{e.name}({sig}{choices})",
        "",
        f"    y = {e.formula}",
        "",
        f"Gradient: dy/dx = {e.grad_formula}",
    ]
    if e.grad_y is not None:
        parts.append(f"From the output (backward_from_output): dy/dx = {e.grad_y_formula}.")
        if e.grad_y_note:
            parts.append(f"  Where y no longer determines x: {e.grad_y_note}")
    if e.kinks:
        parts.append(f"Kinks: {e.kinks}")
    parts += [
        f"Stability: {e.stability}",
        f"Limits: f(-inf) = {_fmt(lo)}, f(+inf) = {_fmt(hi)}; "
        f"f'(-inf) = {_fmt(dlo)}, f'(+inf) = {_fmt(dhi)} (default parameters). "
        "NaN in -> NaN out, forward and backward.",
        "",
        "Parameters",
        "----------",
        f"x : array_like of {SUPPORTED}",
        "    or a GPU array (CuPy, PyTorch CUDA tensor, anything with __cuda_array_interface__):",
        "    computed by the CUDA kernel on the producer's stream, returned as the same type.",
    ]
    for p in e.params:
        parts += [f"{p.name} : float, default {p.default!r}", f"    {p.doc}"]
    for k, v in e.choices.items():
        parts += [f"{k} : one of {', '.join(map(repr, v))}", f"    selects the formula ({k}='tanh' is gelu_tanh)"]
    parts += [
        "out : ndarray, optional; may alias x (in place).",
        "where : array_like of bool, optional; NumPy ufunc semantics.",
        "",
        "Methods: backward(grad, x, ...)"
        + (", backward_from_output(grad, y, ...)" if e.grad_y is not None else "")
        + ". Attributes: ufunc, backward_ufunc"
        + (", backward_from_output_ufunc" if e.grad_y is not None else "")
        + " (real np.ufunc objects; parameters are extra inputs).",
        "",
        "Examples",
        "--------",
        _example(e),
    ]
    return "\n".join(parts) + "\n"
