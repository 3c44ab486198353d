"""Registry of scalar functions that compiled backends turn into Numba code.

Formulas and math helpers are plain Python functions marked with ``@scalar``.
Marking costs nothing at import time (``import fastact`` must not import
Numba); a backend calls :func:`ensure_registered` before its first compile,
which registers every marked function with ``numba.extending.register_jitable``
so it can be called from any Numba target (CPU ufuncs today, CUDA kernels
later) while staying callable from plain Python (the CUDA simulator, debugging).
"""

_PENDING = []
_REGISTERED = False


def scalar(fn):
    """Mark ``fn`` as a scalar function usable from compiled kernels."""
    _PENDING.append(fn)
    if _REGISTERED:  # a late definition (e.g. a user extension) after first compile
        _register(fn)
    return fn


def _register(fn):
    from numba.extending import register_jitable

    register_jitable(fn)


def ensure_registered():
    """Register all marked functions with Numba (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    for fn in _PENDING:
        _register(fn)
    _REGISTERED = True
