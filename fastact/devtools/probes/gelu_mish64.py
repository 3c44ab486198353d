"""float64 probes for mish, gelu (erf) and gelu_tanh, forward and backward."""

from __future__ import annotations


def probes(c):
    """[(\"op kind float64\", scalar function, Numba signature)]."""
    return []
