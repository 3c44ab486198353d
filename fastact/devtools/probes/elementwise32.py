"""float32 elementwise probes: x -> y (forward), (grad, x) -> dx (backward).

Each is the shortest formula found for its op at float32's contract (2 ulp
forward, 4 backward), on the cores of ``cores.py``; where a carried low part
is kept, its comment says what the bound is without it.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def probes(c):
    """[(\"op kind float32\", scalar function, Numba signature)]."""
    from fastact.scalar.formulas import SELU_SCALE, SELU_SCALE_ALPHA

    fma, exp64x_32, expm1_32 = c.fma, c.exp64x_32, c.expm1_32
    sig_parts32, sigmoid32 = c.sig_parts32, c.sigmoid32
    lo32, twom64 = c.lo32, c.twom64
    one, zero, two, four = F32(1), F32(0), F32(2), F32(4)
    selu_l, selu_la = F32(SELU_SCALE), F32(SELU_SCALE_ALPHA)

    def sigmoid(x):
        return sigmoid32(x)

    def sigmoid_grad(g, x):
        u, s, r = sig_parts32(x)
        r2 = r * r
        r2l = fma(r, r, -r2)  # exact: e r^2 = (1 + u)(r2 + r2l) s, rounded once
        y = g * (((r2 + fma(u, r2, r2l)) * s) * twom64)
        return y if x == x else x

    def softplus_grad(g, x):
        return g * sigmoid32(x)

    def silu(x):
        # x / (1 + e) needs 1/(1 + e) as a pair r + rl (2.2 ulp with r alone)
        u, s, r = sig_parts32(x)
        a = -abs(x)
        e = fma(u, s, s) * twom64
        d = one + e
        dl = (one - d) + e
        r = one / d
        rl = (fma(-r, d, one) - dl * r) * r  # 1/(d + dl) - r to first order
        xr = x * r
        t = fma(x, rl, fma(x, r, -xr))  # x (r + rl) - xr
        y = xr + t if x >= zero else ((xr + fma(u, xr, t)) * s) * twom64
        return y if x == x else x

    def tanh_grad(g, x):
        u, s, r = sig_parts32(two * x)
        r4 = (four * r) * r
        r4l = fma(four * r, r, -r4)
        y = g * (((r4 + fma(u, r4, r4l)) * s) * twom64)
        return y if x == x else x

    def elu(x):
        y = x if x > zero else expm1_32(x)
        return y if x == x else x

    def elu_grad(g, x):
        u, s = exp64x_32(x if x > lo32 else lo32)
        e = (fma(u, s, s) * twom64) if x > lo32 else zero
        y = g if x > zero else g * e
        return y if x == x else x

    def selu(x):
        y = selu_l * x if x > zero else selu_la * expm1_32(x)
        return y if x == x else x

    f1, f2 = "float32(float32)", "float32(float32, float32)"
    return [
        ("sigmoid forward float32", sigmoid, f1),
        ("sigmoid backward float32", sigmoid_grad, f2),
        ("softplus backward float32", softplus_grad, f2),
        ("silu forward float32", silu, f1),
        ("tanh backward float32", tanh_grad, f2),
        ("elu forward float32", elu, f1),
        ("elu backward float32", elu_grad, f2),
        ("selu forward float32", selu, f1),
    ]
