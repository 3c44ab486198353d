"""fastact: numerically stable, fast activation functions as NumPy ufuncs.

Every elementwise activation is declared once in :mod:`fastact.catalog`; the
forward pass, the gradient (``.backward``) and, where it exists, the gradient
from the output (``.backward_from_output``) are compiled by Numba on first use.
Row-wise and parametric functions (softmax, log_softmax, maxout, prelu,
swiglu, geglu) are built on the same formulas.

>>> import numpy as np, fastact
>>> fastact.sigmoid(np.array([-100.0, 0.0, 100.0], dtype=np.float32))
array([3.7835e-44, 5.0000e-01, 1.0000e+00], dtype=float32)
"""

from fastact.cpu.threads import get_num_threads, set_num_threads
from fastact.functions.elementwise import ACTIVATIONS, ALIASES, ActivationFunction
from fastact.functions.gated import GATED_FUNCTIONS, geglu, swiglu
from fastact.functions.maxout import maxout
from fastact.functions.prelu import prelu
from fastact.functions.rowwise import ROW_FUNCTIONS, log_softmax, softmax

__version__ = "0.1.0"


def _old_pickle_names():
    # Pickles written before the subpackages (0.1) name fastact.api._lookup;
    # a module under that name, created here, keeps them loading.
    import sys
    import types

    from fastact.functions.elementwise import _lookup

    api = types.ModuleType("fastact.api", "Pickle compatibility: fastact.api._lookup(name).")
    api._lookup = _lookup
    sys.modules.setdefault("fastact.api", api)


_old_pickle_names()

globals().update(ACTIVATIONS)
globals().update({alias: ACTIVATIONS[name] for alias, name in ALIASES.items()})

#: every public function by name: elementwise, row-wise and parametric
FUNCTIONS = {
    **ACTIVATIONS,
    **ROW_FUNCTIONS,
    **GATED_FUNCTIONS,
    "maxout": maxout,
    "prelu": prelu,
}

__all__ = [
    "ACTIVATIONS",
    "ALIASES",
    "FUNCTIONS",
    "ROW_FUNCTIONS",
    "GATED_FUNCTIONS",
    "ActivationFunction",
    "get_num_threads",
    "set_num_threads",
    *FUNCTIONS,
    *ALIASES,
]
