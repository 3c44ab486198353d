"""Registry of scalar functions that compiled backends turn into Numba code.

Formulas and math helpers are plain Python functions marked with ``@scalar``.
Marking costs nothing at import time (``import fastact`` must not import
Numba); a backend calls :func:`ensure_registered` before its first compile,
which registers every marked function with ``numba.extending.register_jitable``
so it can be called from any Numba target (CPU ufuncs today, CUDA kernels
later) while staying callable from plain Python (the CUDA simulator, debugging).
"""

_PENDING = []
_INLINE = set()
_REASSOC = set()
_HOOKS = []  # callables run once at registration (intrinsics, overloads)
_REGISTERED = False


def on_register(hook):
    """Run ``hook()`` when the backends first register (it may import Numba)."""
    _HOOKS.append(hook)
    if _REGISTERED:
        hook()
    return hook


def scalar(fn=None, *, inline=False, reassoc=False):
    """Mark ``fn`` as a scalar function usable from compiled kernels.

    ``inline=True`` inlines it at Numba's IR level into every caller: LLVM
    does not inline across Numba's per-function libraries, and a call left in
    a ufunc's element function keeps the loop from vectorizing.

    ``reassoc=True`` compiles it with LLVM's ``reassoc`` fast-math flag only,
    so that a plain floating-point reduction loop (a sum) can be vectorized.
    Never for code that relies on the order of roundings (two-sums, Cody-Waite
    reductions, compensated sums): the flag lets LLVM cancel them away.
    """
    if fn is None:
        return lambda f: scalar(f, inline=inline, reassoc=reassoc)
    _PENDING.append(fn)
    if inline:
        _INLINE.add(fn)
    if reassoc:
        _REASSOC.add(fn)
    if _REGISTERED:  # a late definition (e.g. a user extension) after first compile
        _register(fn)
    return fn


def _register(fn):
    from numba.extending import register_jitable

    opts = {"fastmath": {"reassoc"}} if fn in _REASSOC else {}
    if fn in _INLINE:
        register_jitable(inline="always", **opts)(fn)
    elif opts:
        register_jitable(**opts)(fn)
    else:
        register_jitable(fn)


# Numba compiles every function into its own LLVM module and LLVM's default
# inline threshold (~225) leaves a formula's calls to the math layer as calls,
# so the ufunc loop around it cannot vectorize (measured: a kernel with two
# exp calls runs at 23 ns/element scalar, 3 ns/element vectorized once
# inlined). This LLVM option is process-wide: it also applies to other Numba
# code compiled in the same process (more inlining, larger functions).
LLVM_INLINE_THRESHOLD = 5000


def _raise_inline_threshold():
    from llvmlite import binding as llvm

    llvm.set_option("", f"-inline-threshold={LLVM_INLINE_THRESHOLD}")


def ensure_registered():
    """Register all marked functions with Numba (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _raise_inline_threshold()
    for hook in _HOOKS:
        hook()
    for fn in _PENDING:
        _register(fn)
    _REGISTERED = True
