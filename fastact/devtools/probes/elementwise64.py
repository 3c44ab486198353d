"""float64 elementwise probes: x -> y (forward), (grad, x) -> dx (backward),
at float64's contract (4 ulp forward, 8 backward), on ``cores.py``'s exp."""

from __future__ import annotations


def probes(c):
    """[(\"op kind float64\", scalar function, Numba signature)]."""
    sig_parts64, sigmoid64, twom64_d = c.sig_parts64, c.sigmoid64, c.twom64_d

    def sigmoid(x):
        return sigmoid64(x)

    def silu(x):
        es, r = sig_parts64(x)
        y = x * r if x >= 0.0 else ((x * es) * r) * twom64_d
        return y if x == x else x

    def sigmoid_grad(g, x):
        es, r = sig_parts64(x)
        y = g * (((es * r) * r) * twom64_d)
        return y if x == x else x

    def softplus_grad(g, x):
        return g * sigmoid64(x)

    def tanh_grad(g, x):
        es, r = sig_parts64(2.0 * x)
        y = g * ((((4.0 * es) * r) * r) * twom64_d)
        return y if x == x else x

    f1, f2 = "float64(float64)", "float64(float64, float64)"
    return [
        ("sigmoid forward float64", sigmoid, f1),
        ("silu forward float64", silu, f1),
        ("sigmoid backward float64", sigmoid_grad, f2),
        ("softplus backward float64", softplus_grad, f2),
        ("tanh backward float64", tanh_grad, f2),
    ]
