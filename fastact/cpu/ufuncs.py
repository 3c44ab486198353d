"""CPU backend: catalog formulas -> real NumPy ufuncs, compiled lazily by Numba.

For every (activation, kind) with kind in ``forward`` / ``backward`` /
``backward_y`` there is one Numba ``DUFunc`` whose ``.ufunc`` is a real
``np.ufunc``; the loop for a dtype (float32 or float64) is compiled on first
use and cached on disk (``cache=True``), so nothing compiles at import and a
fresh process with a warm cache only loads machine code.

Signatures: forward ``(x, *params) -> y``, backward ``(grad, x, *params) -> dx``,
backward_y ``(grad, y, *params) -> dx``. float32 loops run the entry's float32
evaluation where it has one, else widen to float64, run the formula and round
once.

The public functions call loops with the parameters built in instead
(``select``, ``fixed_dufunc``): inputs ``(x)`` / ``(grad, x|y)`` only, one
loop per value set, built lazily and kept in a bounded table; a broadcast
scalar parameter input would send the loop down NumPy's generic strided path,
which does not vectorize.
"""

import math
import struct
import threading
from collections import OrderedDict

import numpy as np

from fastact.cpu.stamp import stamp
from fastact.cpu.loopfix import fastact_loops
from fastact.scalar.registry import COMPILE_LOCK, KernelTable, ensure_registered

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


# Backward kernels multiply in the loop's precision: where the formula returns
# a float32 (a float32 evaluation), g * f'(x) is one correctly rounded
# product, as it would be in float64 (the product of two float32 is exact
# there), without float64 lanes in the loop; a float64 formula promotes it.
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
        return g * run(x, ())

    return backward0


def _backward1(run, stamp):
    def backward1(g, x, a):
        stamp  # noqa: B018
        return g * run(x, (np.float64(a),))

    return backward1


def _backward2(run, stamp):
    def backward2(g, x, a, b):
        stamp  # noqa: B018
        return g * run(x, (np.float64(a), np.float64(b)))

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
            return g * run(x, (a,))
        return g * run(x, (a, b))

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
    kinds = {
        "forward": entry.forward,
        "backward": entry.grad,
        "backward_y": entry.grad_y,
    }
    fn = kinds[kind]
    if fn is None:
        raise AttributeError(f"fastact.{entry.name} has no {kind} formula")
    return fn


def runner(entry, kind):
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


def add_loop(uf, key, dtype, nin, in_place=0):
    """``uf``'s ``dtype`` loop of ``nin`` inputs, compiled once per ``key``;
    its first ``in_place`` inputs get a vectorized loop for ``out=`` that
    input (``loopfix.fastact_loops``)."""
    if key not in _compiled:
        with COMPILE_LOCK:
            if key not in _compiled:
                t = NUMBA_NAME[np.dtype(dtype)]
                with fastact_loops(in_place):
                    uf.add(f"{t}({', '.join([t] * nin)})")
                _compiled.add(key)
    return uf.ufunc


def dufunc(entry, kind):
    """The (uncompiled until used) DUFunc of ``entry``'s ``kind``."""

    def build():
        arity = ("forward" if kind == "forward" else "backward", len(entry.params))
        maker = _MAKERS[arity]
        kernel = maker(*runner(entry, kind))
        return lazy_vectorize(named(kernel, f"{entry.name}_{kind}"))

    return DUFUNCS.get((entry.name, kind), build)


# ------------------------------------------------ parameter-specialized loops

#: specialized loops kept in memory per (activation, kind, dtype), besides the defaults
RECENT = 8
#: a value set other than the defaults gets its loop on its ADMIT-th request
ADMIT = 2
#: value sets remembered (per activation, kind, dtype) while they wait for admission
SEEN = 64
# 2**128 - 2**103: float32 rounds this and anything above to inf
_F32_OVERFLOW = 3.4028235677973366e38
_CODE = {
    DTYPES[0]: ("f", "I", 8),
    DTYPES[1]: ("d", "Q", 16),
}  # struct codes, hex digits
_BOOK = threading.Lock()  # the tables' bookkeeping (compiles hold COMPILE_LOCK instead)


class _Loops:
    """The specialized loops of one (activation, kind, dtype), keyed by the
    bits of their parameter values in that dtype: the defaults' loop (kept
    for the process), up to ``RECENT`` others (least recently used dropped
    first), and the value sets requested fewer than ``ADMIT`` times."""

    __slots__ = ("defaults", "pinned", "recent", "seen")

    def __init__(self, defaults):
        self.defaults = defaults  # the key of the default parameters
        self.pinned = {}  # defaults key -> DUFunc
        self.recent = OrderedDict()  # key -> DUFunc, most recently used last
        self.seen = OrderedDict()  # key -> requests so far, most recent last

    def lookup(self, key):
        d = self.pinned.get(key)  # written once, under the lock
        if d is None:
            with _BOOK:
                d = self.recent.get(key)
                if d is not None:
                    self.recent.move_to_end(key)
        return d

    def admit(self, key):
        """Count a request for a loop not built yet; True once it is due."""
        if key == self.defaults:
            return True
        with _BOOK:
            n = self.seen.pop(key, 0) + 1
            self.seen[key] = n
            if len(self.seen) > SEEN:
                self.seen.popitem(last=False)
            return n >= ADMIT

    def store(self, key, d):
        with _BOOK:
            if key == self.defaults:
                self.pinned[key] = d
                return
            self.seen.pop(key, None)
            self.recent[key] = d
            while len(self.recent) > RECENT:
                self.recent.popitem(last=False)


LOOPS = {}  # (name, kind, dtype) -> _Loops


def _key(dtype, params):
    """The bits of ``params`` (Python floats) rounded to ``dtype`` (bytes):
    -0.0 and 0.0 are different value sets. struct's float32 packing is C's
    round-to-nearest conversion, NumPy's cast, short of its overflow error."""
    fmt = f"<{len(params)}{_CODE[dtype][0]}"
    try:
        return struct.pack(fmt, *params)
    except OverflowError:  # rounds beyond float32's range: +-inf, as the cast gives
        big = [
            math.copysign(math.inf, v) if abs(v) >= _F32_OVERFLOW else v for v in params
        ]
        return struct.pack(fmt, *big)


def _unpack(dtype, key):
    return struct.unpack(f"<{len(key) // dtype.itemsize}{_CODE[dtype][0]}", key)


def constants(dtype, params):
    """``params`` (Python floats) rounded to ``dtype`` as the general ufunc
    receives them (round to nearest; beyond float32's range, +-inf), as
    Python floats: the constants of their specialized loop."""
    dtype = np.dtype(dtype)
    return _unpack(dtype, _key(dtype, params))


def _loops(entry, kind, dtype):
    t = LOOPS.get((entry.name, kind, dtype))
    if t is None:
        with _BOOK:
            t = LOOPS.get((entry.name, kind, dtype))
            if t is None:
                t = LOOPS[(entry.name, kind, dtype)] = _Loops(
                    _key(dtype, entry.defaults)
                )
    return t


def _build_fixed(entry, kind, dtype, consts):
    """A DUFunc with ``consts`` built in as closure cells and its ``dtype`` loop
    compiled (or loaded from the disk cache). The name carries the constants'
    bits, so every value set has its own cache file."""
    code, icode, digits = _CODE[dtype]
    ints = struct.unpack(
        f"<{len(consts)}{icode}", struct.pack(f"<{len(consts)}{code}", *consts)
    )
    name = f"{entry.name}_{kind}_{dtype.name}_" + "_".join(
        f"{i:0{digits}x}" for i in ints
    )
    maker = _forward_fixed if kind == "forward" else _backward_fixed
    run, key = runner(entry, kind)
    d = lazy_vectorize(named(maker(run, consts, key), name))
    t = NUMBA_NAME[dtype]
    nin = 1 if kind == "forward" else 2
    with fastact_loops(in_place=nin):
        d.add(f"{t}({', '.join([t] * nin)})")
    return d


def fixed_dufunc(entry, kind, dtype, params=None):
    """The DUFunc of ``entry``'s ``kind`` with ``params`` (default: the
    catalog's defaults) built in, its ``dtype`` loop compiled; None while the
    value set waits for admission, and for NaN parameters.

    Policy. The parameters become compile-time constants of a 1-input
    (forward) / 2-input (backward) loop, which is contiguous and vectorizes;
    passed as ufunc inputs instead, a broadcast scalar (stride 0) sends NumPy
    and Numba to the generic strided loop, which does not. The constants are
    the values rounded to ``dtype`` exactly as the general ufunc receives
    them (``constants``), so both give bitwise identical results. Per
    (activation, kind, dtype):

    - the defaults' loop is built on first use and kept for the process;
    - any other value set (told apart by its bits: -0.0 is not 0.0) is
      built on its ``ADMIT``-th (2nd) request, so a value that changes on
      every call (a learned or annealed parameter) never pays a compile nor
      writes a cache file, and keeps running the general ufunc; meanwhile,
      and for parameters given as arrays, callers use the general ufunc;
    - at most ``RECENT`` (8) such loops are kept, the least recently used
      dropped first; a dropped value set is admitted again as a new one
      (and then loads its machine code from the disk cache);
    - a NaN parameter always runs the general ufunc: LLVM folds arithmetic
      on a NaN constant to a NaN of its own, where the general loop may
      return the NaN input's (a -NaN x would come back as +NaN).

    Every loop is cached on disk (``cache=True``) under a name carrying the
    constants' bits, its closure holding them and the stamp. Builds hold
    ``COMPILE_LOCK``: threads asking for the same new value set get one loop.
    """
    dtype = np.dtype(dtype)
    params = entry.defaults if params is None else params
    return _fixed(entry, kind, dtype, _loops(entry, kind, dtype), _key(dtype, params))


def _fixed(entry, kind, dtype, table, key):
    d = table.lookup(key)
    if d is not None:
        return d
    consts = _unpack(dtype, key)
    if any(math.isnan(c) for c in consts) or not table.admit(key):
        return None
    with COMPILE_LOCK:
        d = table.lookup(key)
        if d is None:
            ensure_registered()
            d = _build_fixed(entry, kind, dtype, consts)
            table.store(key, d)
    return d


def fixed_ufunc(entry, kind, dtype, params=None):
    """The real ``np.ufunc`` of ``fixed_dufunc`` (inputs ``(x)`` or ``(grad, x|y)``
    only), or None where the general ufunc runs."""
    d = fixed_dufunc(entry, kind, dtype, params)
    return None if d is None else d.ufunc


def select(entry, kind, dtype, params):
    """The one rule for a call with scalar ``params`` (Python floats):
    ``(ufunc, parameter inputs, defaults)``: the specialized loop of
    ``fixed_dufunc`` where there is one (no parameter inputs), else the
    general ufunc with the parameters as inputs; ``defaults``: the parameters
    round to the defaults (or there are none)."""
    dtype = np.dtype(dtype)
    if not entry.params:
        return ufunc(entry, kind, dtype), (), True
    table = _loops(entry, kind, dtype)
    key = _key(dtype, params)
    d = _fixed(entry, kind, dtype, table, key)
    if d is None:
        return ufunc(entry, kind, dtype), tuple(params), key == table.defaults
    return d.ufunc, (), key == table.defaults


def ufunc(entry, kind, dtype):
    """The real ``np.ufunc`` of ``entry``'s ``kind`` with a compiled ``dtype`` loop."""
    dtype = np.dtype(dtype)
    data = 1 if kind == "forward" else 2
    nin = data + len(entry.params)
    # parameters as inputs are broadcast scalars (stride 0) in every
    # in-place call but a raw one with parameter arrays: no in-place loop
    in_place = 0 if entry.params else data
    return add_loop(dufunc(entry, kind), (entry.name, kind, dtype), dtype, nin, in_place)


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

                data = 1 if kind == "forward" else 2
                nin = data + len(entry.params)
                sigs = [f"{t}({', '.join([t] * nin)})" for t in ("float32", "float64")]
                with fastact_loops(0 if entry.params else data):
                    rebuilt = numba.vectorize(sigs, cache=True)(old._dispatcher.py_func)
                DUFUNCS.replace((entry.name, kind), rebuilt)
        uf = dufunc(entry, kind).ufunc
    return uf
