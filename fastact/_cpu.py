"""CPU backend: catalog formulas -> real NumPy ufuncs, compiled lazily by Numba.

For every (activation, kind) with kind in ``forward`` / ``backward`` /
``backward_y`` there is one Numba ``DUFunc`` whose ``.ufunc`` is a real
``np.ufunc``; the loop for a dtype (float32 or float64) is compiled on first
use and cached on disk (``cache=True``), so nothing compiles at import and a
fresh process with a warm cache only loads machine code.

Signatures: forward ``(x, *params) -> y``, backward ``(grad, x, *params) -> dx``,
backward_y ``(grad, y, *params) -> dx``. float32 loops widen to float64, run
the formula and round once, which keeps them within 1 ulp of the true value.
"""

import hashlib
import pathlib
import threading

import numpy as np

from ._jit import ensure_registered

KINDS = ("forward", "backward", "backward_y")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_NUMBA_NAME = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}

_lock = threading.RLock()
_dufuncs = {}  # (name, kind) -> DUFunc
_compiled = set()  # (name, kind, dtype)
_stamp_value = None


def _stamp():
    """Fingerprint of every file a kernel's machine code depends on.

    Numba keys its disk cache on the kernel's own file and closure, not on the
    files of the functions it calls; putting this fingerprint in the closure
    makes an edited formula invalidate the cached kernels.
    """
    global _stamp_value
    if _stamp_value is None:
        here = pathlib.Path(__file__).parent
        h = hashlib.sha256()
        for name in ("formulas.py", "_mathlib.py", "_rootpolys.py", "_cpu.py", "_jit.py"):
            h.update((here / name).read_bytes())
        _stamp_value = h.hexdigest()[:16]
    return _stamp_value


# One maker per arity so that each kernel is a distinct closure; Numba's cache
# index keys on the closure's contents (the formula and the stamp).
# `stamp` is referenced so that it is a closure cell.


def _forward0(f, stamp):
    def forward0(x):
        stamp  # noqa: B018
        return f(np.float64(x))

    return forward0


def _forward1(f, stamp):
    def forward1(x, a):
        stamp  # noqa: B018
        return f(np.float64(x), np.float64(a))

    return forward1


def _forward2(f, stamp):
    def forward2(x, a, b):
        stamp  # noqa: B018
        return f(np.float64(x), np.float64(a), np.float64(b))

    return forward2


def _backward0(f, stamp):
    def backward0(g, x):
        stamp  # noqa: B018
        return np.float64(g) * f(np.float64(x))

    return backward0


def _backward1(f, stamp):
    def backward1(g, x, a):
        stamp  # noqa: B018
        return np.float64(g) * f(np.float64(x), np.float64(a))

    return backward1


def _backward2(f, stamp):
    def backward2(g, x, a, b):
        stamp  # noqa: B018
        return np.float64(g) * f(np.float64(x), np.float64(a), np.float64(b))

    return backward2


_MAKERS = {
    ("forward", 0): _forward0,
    ("forward", 1): _forward1,
    ("forward", 2): _forward2,
    ("backward", 0): _backward0,
    ("backward", 1): _backward1,
    ("backward", 2): _backward2,
}


def _formula(entry, kind):
    fn = {"forward": entry.forward, "backward": entry.grad, "backward_y": entry.grad_y}[kind]
    if fn is None:
        raise AttributeError(f"fastact.{entry.name} has no {kind} formula")
    return fn


def dufunc(entry, kind):
    """The (uncompiled until used) DUFunc of ``entry``'s ``kind``."""
    key = (entry.name, kind)
    uf = _dufuncs.get(key)
    if uf is not None:
        return uf
    with _lock:
        uf = _dufuncs.get(key)
        if uf is None:
            import numba

            ensure_registered()
            fn = _formula(entry, kind)
            maker = _MAKERS[("forward" if kind == "forward" else "backward", len(entry.params))]
            kernel = maker(fn, _stamp())
            kernel.__name__ = kernel.__qualname__ = f"{entry.name}_{kind}"
            uf = numba.vectorize(cache=True)(kernel)
            _dufuncs[key] = uf
    return uf


def ufunc(entry, kind, dtype):
    """The real ``np.ufunc`` of ``entry``'s ``kind`` with a compiled ``dtype`` loop."""
    dtype = np.dtype(dtype)
    key = (entry.name, kind, dtype)
    uf = dufunc(entry, kind)
    if key not in _compiled:
        with _lock:
            if key not in _compiled:
                t = _NUMBA_NAME[dtype]
                nin = (1 if kind == "forward" else 2) + len(entry.params)
                uf.add(f"{t}({', '.join([t] * nin)})")
                _compiled.add(key)
    return uf.ufunc


def full_ufunc(entry, kind):
    """The ``np.ufunc`` with both float32 and float64 loops compiled."""
    for dt in DTYPES:
        uf = ufunc(entry, kind, dt)
    return uf
