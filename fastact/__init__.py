"""fastact: numerically stable, fast activation functions as NumPy ufuncs.

Every activation is declared once in :mod:`fastact.catalog`; the forward
pass, the gradient (``.backward``) and, where it exists, the gradient from
the output (``.backward_from_output``) are compiled by Numba on first use.

>>> import numpy as np, fastact
>>> fastact.sigmoid(np.array([-100.0, 0.0, 100.0], dtype=np.float32))
array([3.7835e-44, 5.0000e-01, 1.0000e+00], dtype=float32)
"""

from .api import ACTIVATIONS, ALIASES, ActivationFunction

__version__ = "0.1.0"

globals().update(ACTIVATIONS)
globals().update({alias: ACTIVATIONS[name] for alias, name in ALIASES.items()})

__all__ = ["ACTIVATIONS", "ALIASES", "ActivationFunction", *ACTIVATIONS, *ALIASES]
