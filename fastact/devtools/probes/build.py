"""Compile the probes of every family module, lazily and once per key."""

from __future__ import annotations

from fastact.devtools.probes import (
    cores,
    elementwise32,
    elementwise64,
    gelu_mish32,
    gelu_mish64,
    piecewise,
    rows,
)

ELEMENTWISE = (elementwise32, gelu_mish32, elementwise64, gelu_mish64, piecewise)


def build(only=None):
    """({(op, kind, dtype): (ufunc, number of inputs)}, {(op, kind, dtype):
    (row loop f(*inputs, out), number of inputs)}), for the ops in ``only``
    (all by default). Elementwise probes compile as one-signature
    ``@vectorize`` ufuncs."""
    import numba

    c = cores.build()
    vec = {}
    for module in ELEMENTWISE:
        for name, fn, sig in module.probes(c):
            key = tuple(name.split())
            if only and key[0] not in only:
                continue
            if key in vec:
                raise ValueError(f"two probes for {key}")
            vec[key] = (numba.vectorize([sig], nopython=True)(fn), sig.count(",") + 1)
    row_loops = {k: v for k, v in rows.probes(c).items() if not only or k[0] in only}
    return vec, row_loops
