"""Registry of scalar functions that compiled backends turn into Numba code.

Formulas and math helpers are plain Python functions marked with ``@scalar``.
Marking costs nothing at import time (``import fastact`` must not import
Numba); a backend calls :func:`ensure_registered` before its first compile,
which registers every marked function with ``numba.extending.register_jitable``
so it can be called from any Numba target (CPU ufuncs today, CUDA kernels
later) while staying callable from plain Python (the CUDA simulator, debugging).
"""

import os
import threading

_PENDING = []
_REASSOC = set()
_CPU_CHOICE = {}  # fn -> callable giving the function the CPU compiles instead
_HOOKS = []  # callables run once at registration (intrinsics, overloads)
_TARGETS = []  # further targets registered (register_for_target)
_REGISTERED = False


def on_register(hook):
    """Run ``hook()`` when the backends first register (it may import Numba)."""
    _HOOKS.append(hook)
    if _REGISTERED:
        hook()
    return hook


def scalar(fn=None, *, reassoc=False, cpu=None):
    """Mark ``fn`` as a scalar function usable from compiled kernels.

    Each is compiled once per signature and LLVM inlines it into its callers
    (``LLVM_INLINE_THRESHOLD`` below), so a ufunc loop built on a chain of
    them still vectorizes. Numba's IR-level inlining (``inline="always"``) is
    not used: it re-runs Numba's front end on every inlined copy, recursively,
    so a chain five calls deep (sigmoid -> sig_parts -> exp_m -> exp_parts ->
    polynomial -> muladd) cost 14k passes: compiling every elementwise kernel
    took 390 s of CPU with it and 23 s without, at the same speed (geometric
    mean of 72 kernels' ns per element 0.97x; Zen 4, Dec 2026).

    ``reassoc=True`` compiles it with LLVM's ``reassoc`` fast-math flag only,
    so that a plain floating-point reduction loop (a sum) can be vectorized.
    Never for code that relies on the order of roundings (two-sums, Cody-Waite
    reductions, compensated sums): the flag lets LLVM cancel them away.

    ``cpu=choose``: the CPU target compiles ``choose()`` (called once, at
    registration) in place of ``fn``'s body, e.g. a non-FMA variant on a CPU
    without FMA; other targets and plain Python run ``fn``.
    """
    if fn is None:
        return lambda f: scalar(f, reassoc=reassoc, cpu=cpu)
    _PENDING.append(fn)
    if cpu is not None:
        _CPU_CHOICE[fn] = cpu
    if reassoc:
        _REASSOC.add(fn)
    if _REGISTERED:  # a late definition (e.g. a user extension) after first compile
        _register(fn)
        for target in _TARGETS:
            _register_plain(fn, target)
    return fn


def _register(fn):
    # CPU options (reassoc, the CPU's choice of body) as a CPU-only overload:
    # a GPU backend registers its own plain overloads of the same functions
    # (``register_for_target``)
    from numba.extending import overload

    opts = {"fastmath": {"reassoc"}} if fn in _REASSOC else {}
    impl = _CPU_CHOICE[fn]() if fn in _CPU_CHOICE else fn
    overload(fn, target="cpu", jit_options=opts, strict=False)(_returns(impl))


def _returns(fn):
    def ov(*args, **kwargs):
        return fn

    return ov


def register_for_target(target, replaced=()):
    """Register every marked function for ``target`` (e.g. "cuda"), plain
    (no CPU-only options), except those in ``replaced``: the backend gives
    those (its math primitives) its own overloads."""
    ensure_registered()
    if target in _TARGETS:
        return
    _TARGETS.append(target)
    for fn in _PENDING:
        if fn not in replaced:
            _register_plain(fn, target)


def _register_plain(fn, target):
    from numba.extending import overload

    overload(fn, target=target, strict=False)(_returns(fn))


def bitcasts(bits):
    """(to_float, to_int): bit casts between int``bits`` and float``bits``
    scalars (32 or 64) for compiled code.

    Plain Python versions use ``.view``; in compiled code they must be a
    plain LLVM bitcast, because Numba lowers a scalar ``.view()`` through a
    temporary array (~15 ns per element, and the loop no longer vectorizes).
    The overloads are registered lazily with the formulas.
    """
    import numpy as np

    itype = {32: np.int32, 64: np.int64}[bits]
    ftype = {32: np.float32, 64: np.float64}[bits]

    def to_float(i):
        return itype(i).view(ftype)

    def to_int(x):
        return ftype(x).view(itype)

    to_float.__name__ = f"bits_to_f{bits}"
    to_int.__name__ = f"f{bits}_to_bits"

    def register():
        from llvmlite import ir
        from numba.core import types
        from numba.extending import intrinsic, overload

        nb_i = getattr(types, f"int{bits}")
        nb_f = getattr(types, f"float{bits}")
        ir_f = ir.FloatType() if bits == 32 else ir.DoubleType()

        @intrinsic
        def _i2f(typingctx, i):
            def codegen(context, builder, sig, args):
                return builder.bitcast(args[0], ir_f)

            return nb_f(nb_i), codegen

        @intrinsic
        def _f2i(typingctx, x):
            def codegen(context, builder, sig, args):
                return builder.bitcast(args[0], ir.IntType(bits))

            return nb_i(nb_f), codegen

        @overload(to_float, inline="always")
        def _ov_to_float(i):
            return lambda i: _i2f(itype(i))

        @overload(to_int, inline="always")
        def _ov_to_int(x):
            return lambda x: _f2i(ftype(x))

    on_register(register)
    return to_float, to_int


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


# ------------------------------------------------------------ kernel tables
# Every backend keeps its compiled kernels in a KernelTable. Builds share one
# lock: Numba's compiler is not re-entrant across targets, and two threads
# asking for the same kernel must get one object.


COMPILE_LOCK = threading.RLock()

# A fork while another thread compiles would hand the child COMPILE_LOCK (and
# Numba's own compiler lock) held by a thread that does not exist there: the
# child's first compile would wait forever (multiprocessing fork workers,
# PyTorch DataLoader workers). So a fork waits for a running compile to end.
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(before=COMPILE_LOCK.acquire, after_in_parent=COMPILE_LOCK.release,
                         after_in_child=COMPILE_LOCK.release)


class KernelTable:
    """Compiled kernels by key, each built once under ``COMPILE_LOCK``
    (after the scalar functions are registered with Numba)."""

    def __init__(self):
        self._built = {}

    def get(self, key, build):
        """``self[key]``, calling ``build()`` the first time."""
        obj = self._built.get(key)
        if obj is None:
            with COMPILE_LOCK:
                obj = self._built.get(key)
                if obj is None:
                    ensure_registered()
                    obj = self._built[key] = build()
        return obj

    def replace(self, key, obj):
        """Swap a built object (under the lock; e.g. a rebuilt DUFunc)."""
        with COMPILE_LOCK:
            self._built[key] = obj

    def __len__(self):
        return len(self._built)
