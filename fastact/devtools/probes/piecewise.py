"""Probes for the piecewise ops (no transcendental): one compare-and-select
per element, both dtypes. Their misses are within noise of torch and the
roofline; the probe shows what a bare loop does on the same machine."""

from __future__ import annotations

import numpy as np


def probes(c):
    """[(\"op kind dtype\", scalar function, Numba signature)] for float32 and float64."""
    out = []
    for dt in (np.float32, np.float64):
        out += _for_dtype(dt)
    return out


def _for_dtype(dt):
    name = np.dtype(dt).name
    zero, one, three, six = dt(0), dt(1), dt(3), dt(6)
    slope, sixth = dt(0.01), dt(1.0 / 6.0)

    def relu_grad(g, x):
        y = g if x > zero else zero * g
        return y if x == x else x

    def leaky_relu_grad(g, x):
        y = g if x > zero else g * slope
        return y if x == x else x

    def hardtanh_grad(g, x):
        y = g if (x > -one) & (x < one) else zero * g
        return y if x == x else x

    def hardsigmoid_grad(g, x):
        y = g * sixth if (x > -three) & (x < three) else zero * g
        return y if x == x else x

    def identity_grad(g, x):
        return g if x == x else x  # fastact's gradients keep a NaN x

    def relu6_grad(g, x):
        y = g if (x > zero) & (x < six) else zero * g
        return y if x == x else x

    def hardtanh(x):
        y = -one if x < -one else (one if x > one else x)
        return y if x == x else x

    def hardsigmoid(x):
        t = x + three  # exact near -3 (Sterbenz); t / 6 rounds once
        y = zero if t < zero else (one if t > six else t / six)
        return y if x == x else x

    def hardswish(x):
        t = x + three
        y = zero if t < zero else (x if t > six else (x * t) / six)  # 2 roundings: <= 1 ulp
        return y if x == x else x

    inf = dt(np.inf)

    def softsign(x):
        y = x / (one + abs(x))  # 2 roundings: <= 1 ulp
        return y if abs(x) != inf else (one if x > zero else -one)  # inf / inf is NaN

    def relu(x):
        y = x if x > zero else zero  # relu(-0) = +0
        return y if x == x else x

    def relu6(x):
        y = six if x >= six else (x if x > zero else zero)
        return y if x == x else x

    def leaky_relu(x):
        return x if x > zero else x * slope

    def softsign_grad(g, x):
        r = one / (one + abs(x))  # (1 + |x|)^2 would overflow where the result is normal
        return g * (r * r)

    two = dt(2)

    def hardswish_grad(g, x):
        d = zero if x <= -three else (one if x >= three else (two * x + three) / six)
        y = g * d
        return y if x == x else x

    f1, f2 = f"{name}({name})", f"{name}({name}, {name})"
    return [
        (f"relu forward {name}", relu, f1),
        (f"relu6 forward {name}", relu6, f1),
        (f"leaky_relu forward {name}", leaky_relu, f1),
        (f"softsign backward {name}", softsign_grad, f2),
        (f"hardswish backward {name}", hardswish_grad, f2),
        (f"identity backward {name}", identity_grad, f2),
        (f"relu6 backward {name}", relu6_grad, f2),
        (f"hardtanh forward {name}", hardtanh, f1),
        (f"hardsigmoid forward {name}", hardsigmoid, f1),
        (f"hardswish forward {name}", hardswish, f1),
        (f"softsign forward {name}", softsign, f1),
        (f"relu backward {name}", relu_grad, f2),
        (f"leaky_relu backward {name}", leaky_relu_grad, f2),
        (f"hardtanh backward {name}", hardtanh_grad, f2),
        (f"hardsigmoid backward {name}", hardsigmoid_grad, f2),
    ]
