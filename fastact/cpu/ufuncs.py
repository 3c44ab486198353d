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

import numpy as np

from fastact.cpu.stamp import stamp
from fastact.scalar.registry import COMPILE_LOCK, KernelTable

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
NUMBA_NAME = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}

DUFUNCS = KernelTable()  # (name, kind) -> DUFunc
_compiled = set()  # (name, kind, dtype)


def _by_precision(f, f32):
    """A stub ``run(x, params)`` that evaluates ``f32(x, *params)`` when ``x`` is
    float32 and ``f32`` exists, else ``f(float64(x), *params)``.

    Resolved at compile time per loop (a Numba overload on the argument type),
    so one Python kernel gives the float32 loop the float32 evaluation and the
    float64 loop the definition, inside one real ufunc.
    """
    from numba.core import types
    from numba.extending import overload

    def run(x, params):
        raise NotImplementedError("compiled only")

    @overload(run, inline="always")
    def _run(x, params):
        if f32 is not None and x == types.float32:
            return lambda x, params: f32(x, *params)
        return lambda x, params: f(np.float64(x), *params)

    return run


# One maker per arity so that each kernel is a distinct closure; Numba's cache
# index keys on the closure's contents (the stamp and the formulas: `key`).
# `stamp` is referenced so that it is a closure cell. Parameters arrive in the
# loop's dtype and are widened to float64 (exactly).


def _forward0(run, stamp):
    def forward0(x):
        stamp  # noqa: B018
        return run(x, ())

    return forward0


def _forward1(run, stamp):
    def forward1(x, a):
        stamp  # noqa: B018
        return run(x, (np.float64(a),))

    return forward1


def _forward2(run, stamp):
    def forward2(x, a, b):
        stamp  # noqa: B018
        return run(x, (np.float64(a), np.float64(b)))

    return forward2


def _backward0(run, stamp):
    def backward0(g, x):
        stamp  # noqa: B018
        return np.float64(g) * run(x, ())

    return backward0


def _backward1(run, stamp):
    def backward1(g, x, a):
        stamp  # noqa: B018
        return np.float64(g) * run(x, (np.float64(a),))

    return backward1


def _backward2(run, stamp):
    def backward2(g, x, a, b):
        stamp  # noqa: B018
        return np.float64(g) * run(x, (np.float64(a), np.float64(b)))

    return backward2


def _forward_fixed(run, params, stamp):
    # parameters as compile-time constants (closure cells): a 1-input loop is
    # contiguous and vectorizes, where a broadcast scalar input (stride 0)
    # sends NumPy/Numba to the generic strided loop
    a = params[0]
    b = params[1] if len(params) > 1 else 0.0
    n = len(params)

    def forward_fixed(x):
        stamp  # noqa: B018
        if n == 1:
            return run(x, (a,))
        return run(x, (a, b))

    return forward_fixed


def _backward_fixed(run, params, stamp):
    a = params[0]
    b = params[1] if len(params) > 1 else 0.0
    n = len(params)

    def backward_fixed(g, x):
        stamp  # noqa: B018
        if n == 1:
            return np.float64(g) * run(x, (a,))
        return np.float64(g) * run(x, (a, b))

    return backward_fixed


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


def _runner(entry, kind):
    """(run, key): the precision dispatch stub and the kernel's cache key, a
    string of the stamp and both formulas' names (the stub alone pickles the
    same for every kernel; a string keeps the closure cell typeable)."""
    f = _formula(entry, kind)
    f32 = {"forward": entry.forward32, "backward": entry.grad32}.get(kind)
    names = [g.__module__ + "." + g.__qualname__ for g in (f, f32) if g is not None]
    return _by_precision(f, f32), ":".join([stamp()] + names)


def named(kernel, name):
    # distinct names give distinct cache files (and readable profiles)
    kernel.__name__ = kernel.__qualname__ = name
    return kernel


def lazy_vectorize(kernel):
    import numba

    return numba.vectorize(cache=True)(kernel)


def add_loop(uf, key, dtype, nin):
    if key not in _compiled:
        with COMPILE_LOCK:
            if key not in _compiled:
                t = NUMBA_NAME[np.dtype(dtype)]
                uf.add(f"{t}({', '.join([t] * nin)})")
                _compiled.add(key)
    return uf.ufunc


def dufunc(entry, kind):
    """The (uncompiled until used) DUFunc of ``entry``'s ``kind``."""

    def build():
        maker = _MAKERS[("forward" if kind == "forward" else "backward", len(entry.params))]
        kernel = maker(*_runner(entry, kind))
        return lazy_vectorize(named(kernel, f"{entry.name}_{kind}"))

    return DUFUNCS.get((entry.name, kind), build)


def fixed_ufunc(entry, kind, dtype):
    """The ufunc of ``entry``'s ``kind`` with its default parameters built in:
    inputs ``(x)`` or ``(grad, x|y)`` only. Used by the public functions when
    called with the defaults; other values go through the general ufunc.
    The constants are the defaults rounded to ``dtype``, exactly what the
    general ufunc receives as its parameter inputs."""
    dtype = np.dtype(dtype)
    name = f"{entry.name}_{kind}_defaults_{dtype.name}"
    params = tuple(float(dtype.type(v)) for v in entry.defaults)

    def build():
        maker = _forward_fixed if kind == "forward" else _backward_fixed
        run, key = _runner(entry, kind)
        return lazy_vectorize(named(maker(run, params, key), name))

    uf = DUFUNCS.get((name, kind), build)
    return add_loop(uf, (name, kind, dtype), dtype, 1 if kind == "forward" else 2)


def ufunc(entry, kind, dtype):
    """The real ``np.ufunc`` of ``entry``'s ``kind`` with a compiled ``dtype`` loop."""
    dtype = np.dtype(dtype)
    nin = (1 if kind == "forward" else 2) + len(entry.params)
    return add_loop(dufunc(entry, kind), (entry.name, kind, dtype), dtype, nin)


def full_ufunc(entry, kind):
    """The ``np.ufunc`` with both loops compiled, float32 first.

    NumPy picks the first loop that the inputs cast to safely, so a float64
    loop listed first would turn float32 inputs into float64 results; when
    first use compiled float64 first, the DUFunc is rebuilt in canonical order
    (from the disk cache, so this costs a load, not a compile).
    """
    for dt in DTYPES:
        uf = ufunc(entry, kind, dt)
    if uf.types[0].startswith("d"):
        with COMPILE_LOCK:
            old = dufunc(entry, kind)
            if old.ufunc.types[0].startswith("d"):
                import numba

                nin = (1 if kind == "forward" else 2) + len(entry.params)
                sigs = [f"{t}({', '.join([t] * nin)})" for t in ("float32", "float64")]
                DUFUNCS.replace((entry.name, kind), numba.vectorize(sigs, cache=True)(
                    old._dispatcher.py_func
                ))
        uf = dufunc(entry, kind).ufunc
    return uf
