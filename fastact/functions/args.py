"""Argument handling shared by every public function, CPU and GPU paths alike.

One rule each: array conversion (``as_array``), the dtype rule
(``compute_dtypes``), the ``out=`` checks (``check_out`` for host arrays,
``out_rule`` for any array's fields, used by the GPU path too), the shape
rules of row functions (``row_axis``), of the split form of the gated units
(``half_axis``) and of prelu's channel weight (``channel_axis``,
``check_weight_shape``), and calling a kernel with NumPy's floating-point
warnings quieted (``quiet_call``).

dtype rule: float32 and float64 are preserved; float16 is computed in
float32 and stored as float16; bool and integer inputs compute in float64
(NumPy's promotion of integers to the default float); anything else (complex,
object, strings, None, datetime, longdouble) raises TypeError.
"""

from __future__ import annotations

import numpy as np
from numpy.exceptions import AxisError
from numpy.lib.array_utils import normalize_axis_index

F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
SUPPORTED = "float16, float32, float64 (bool and integer inputs are computed in float64)"


def compute_dtypes(where, dtypes):
    """(compute, result) dtypes for operands of ``dtypes`` (NumPy dtypes or
    anything with a ``.dtype``); TypeError naming ``where`` otherwise."""
    dts = [np.dtype(getattr(d, "dtype", d)) for d in dtypes]
    try:
        dt = np.result_type(*dts)
    except TypeError:  # no common dtype (datetime64 with float, ...): reported below
        dt = np.dtype(object)
    if dt == F32 or dt == F64:
        return dt, dt
    if dt == F16:
        return F32, F16
    if dt.kind in "biu":
        return F64, F64
    names = ", ".join(str(d) for d in dts)
    raise TypeError(f"fastact.{where}: unsupported dtype {names}; supported: {SUPPORTED}")


def as_array(where, a, argname):
    """``a`` as a NumPy array of a supported kind (a TypeError names ``where``)."""
    if isinstance(a, np.ndarray):
        return a
    if a is None:
        raise TypeError(f"fastact.{where}: {argname} is None; expected an array of {SUPPORTED}")
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"fastact.{where}: unsupported {argname} of dtype {arr.dtype} "
            f"({type(a).__name__}); supported: {SUPPORTED}"
        )
    return arr


def axis_index(where, axis, ndim):
    """``axis`` normalized for ``ndim`` dimensions; an AxisError (a
    ValueError and an IndexError, as NumPy's) naming ``where`` otherwise."""
    try:
        return normalize_axis_index(axis, ndim)
    except AxisError:
        raise AxisError(axis, ndim, f"fastact.{where}") from None


def out_rule(where, out_shape, readonly, out_dtype, shape, compute, broadcast=False):
    """The ``out=`` rule for any array (host or GPU): the result's shape,
    writable, and a float dtype that ``compute`` results cast to (same_kind).
    ``shape`` None: the shape is left to NumPy's ufunc broadcasting rules;
    ``broadcast``: NumPy's ufunc rule, ``shape`` must broadcast to out's."""
    if shape is not None and tuple(out_shape) != tuple(shape):
        fits = False
        if broadcast:
            try:
                fits = np.broadcast_shapes(tuple(shape), tuple(out_shape)) == tuple(out_shape)
            except ValueError:
                pass
        if not fits:
            raise ValueError(f"fastact.{where}: out shape {tuple(out_shape)} != result shape {tuple(shape)}")
    if readonly:
        raise ValueError(f"fastact.{where}: output array is read-only")
    out_dtype = np.dtype(out_dtype)
    if out_dtype.kind != "f" or not np.can_cast(compute, out_dtype, casting="same_kind"):
        raise TypeError(f"fastact.{where}: cannot write {compute} results into out of dtype {out_dtype}")


def check_out(where, out, shape, compute, broadcast=False):
    """A host ``out=`` (an ndarray or a 1-tuple of one, as NumPy accepts)
    checked by ``out_rule``; None stays None."""
    if out is None:
        return None
    if isinstance(out, tuple) and len(out) == 1:
        out = out[0]
    if not isinstance(out, np.ndarray):
        raise TypeError(f"fastact.{where}: out must be a NumPy array, got {type(out)}")
    out_rule(where, out.shape, not out.flags.writeable, out.dtype, shape, compute, broadcast)
    return out


def overlaps(out, arrays):
    """``out`` shares memory with one of ``arrays`` without being the same
    view of it (where a kernel that runs in pieces could overwrite input
    that a later piece reads)."""
    for a in arrays:
        if a is out or not np.may_share_memory(a, out):
            continue
        same = (a.shape == out.shape and a.strides == out.strides
                and a.__array_interface__["data"][0] == out.__array_interface__["data"][0])
        if not same:
            return True
    return False


def row_axis(where, shapes, axis, names=("grad", "y")):
    """The normalized ``axis`` of a row function's operands of ``shapes``
    (one, or two that must be equal); ValueError for 0-d input, AxisError
    (a ValueError) for an axis out of range."""
    if len(shapes) == 2 and tuple(shapes[0]) != tuple(shapes[1]):
        raise ValueError(
            f"fastact.{where}: {names[0]} shape {tuple(shapes[0])} and {names[1]} shape "
            f"{tuple(shapes[1])} differ"
        )
    ndim = len(shapes[0])
    if ndim == 0:
        raise ValueError(f"fastact.{where}: needs at least 1 dimension, got a 0-d array")
    return axis_index(where, axis, ndim)


def half_axis(where, shape, axis):
    """(ax, half): the normalized ``axis`` of an array of ``shape`` split in
    two halves along it (a gated unit's ``[a | b]`` form), and the halves' length."""
    if len(shape) == 0:
        raise ValueError(f"fastact.{where}: a single input needs at least 1 dimension, got a 0-d array")
    ax = axis_index(where, axis, len(shape))
    n = shape[ax]
    if n % 2:
        raise ValueError(f"fastact.{where}: axis {axis} has odd length {n}; it must split in two halves")
    return ax, n // 2


def channel_axis(ndim, axis, where="prelu"):
    """prelu's channel axis of an ``ndim``-d input, or None: like PyTorch,
    inputs with fewer than 2 dimensions have no channel axis under the
    default axis=1 (one weight)."""
    if ndim < 2 and axis == 1:
        return None
    return axis_index(where, axis, ndim)


def check_weight_shape(where, wshape, shape, ax):
    """prelu's weight: a scalar or a 1-D array of length 1 or ``shape[ax]``."""
    nch = 1 if ax is None else shape[ax]
    if len(wshape) > 1 or (len(wshape) == 1 and wshape[0] not in (1, nch)):
        what = "(x has no channel axis)" if ax is None else f"(x.shape[{ax}])"
        raise ValueError(
            f"fastact.{where}: weight must be a scalar or a 1-D array of length 1 or "
            f"{nch} {what}, got shape {tuple(wshape)}"
        )


try:  # NumPy 2's error-state context variable: setting it directly costs
    # ~0.1 us where `with np.errstate(...)` costs ~1 us (the whole call
    # budget of a 4096-element ufunc)
    from numpy._core.umath import _extobj_contextvar as EXTOBJ, _make_extobj
except ImportError:  # pragma: no cover - other NumPy layouts
    EXTOBJ = None
QUIET = {}  # the caller's error state -> the same with invalid/over/divide ignored


def quiet_state():
    """The caller's error state with invalid/over/divide ignored (cached)."""
    cur = EXTOBJ.get()
    quiet = QUIET.get(cur)
    if quiet is None:
        if len(QUIET) > 64:  # error states created and dropped by the caller
            QUIET.clear()
        quiet = QUIET[cur] = _make_extobj(invalid="ignore", over="ignore", divide="ignore")
    return quiet


def quiet_call(uf, *args, **kwargs):
    """Call a (g)ufunc without NumPy's "invalid value" warning.

    Vectorized kernels evaluate both sides of a branch and keep one, so the
    discarded side sets FP flags for results that are exact: NaN inputs reach
    ordered comparisons ("invalid"), x*(x+3)/6 at x = 1e308 overflows in a
    branch hardswish does not take ("overflow"), and the expm1 branch of elu
    at a large positive x (which returns x) can flag "divide by zero". The
    flags say nothing about the result, whose special values are specified
    and tested, so they are not turned into warnings. The caller's other
    settings (underflow, the error callback, the buffer size) are kept.
    """
    if EXTOBJ is None:
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            return uf(*args, **kwargs)
    token = EXTOBJ.set(quiet_state())
    try:
        return uf(*args, **kwargs)
    finally:
        EXTOBJ.reset(token)


def blocks(shape, limit, whole_rows=False):
    """Index tuples splitting an array of ``shape`` into blocks of at most
    ``limit`` elements: whole trailing subarrays where they fit, else single
    entries of the leading axes and blocks of the rest. ``whole_rows``: the
    last axis is never split (a row alone may exceed ``limit``)."""
    if not shape or (whole_rows and len(shape) == 1):
        yield ()
        return
    inner = int(np.prod(shape[1:]))
    if inner <= limit:
        step = max(1, limit // inner if inner else shape[0])
        for i in range(0, shape[0], step):
            yield (slice(i, i + step),)
        return
    for i in range(shape[0]):
        for rest in blocks(shape[1:], limit, whole_rows):
            yield (i,) + rest
