"""The bad-input matrix (issue 14, item 3): one cell per (public function, case).

Every public function of ``fastact.FUNCTIONS`` and its ``.backward`` /
``.backward_from_output`` is an ``Op``; every case is a check run on one op.
Both lists are generated (from the catalog and the FUNCTIONS dict), so a new
activation gets its cells without an edit here.

The cells run in a worker subprocess (``python _bad_input_cases.py RESULTS
[CELLS_FILE]``) so that a crash in a compiled kernel fails its cell instead of
killing pytest. The worker writes one JSON line before and one after each
cell, flushed, so the parent (``run_worker``) knows which cell was running
when the worker died; see tests/functions/test_bad_input.py.

Expected values never come from the function under test alone:
- dtypes and layouts: the same function on explicitly converted / C-contiguous
  native-endian float copies (a different code path: no cast, no byte swap,
  no stride), compared bitwise with the sign of zeros;
- special and extreme values: mpmath (50 digits) on the catalog's reference
  formulas, the catalog's limits at +-inf, and IEEE rules for products with
  an infinite or zero factor; maxout's reference is its definition in Python.
"""

from __future__ import annotations

import importlib.util
import json
import math
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np

import fastact
from fastact.catalog import CATALOG

FLOATS = (np.float32, np.float64)
SHAPE = (4, 6)  # x's shape in the generic cases; maxout groups k=2 along axis -1, prelu channels axis 1
K = 2


# ------------------------------------------------------------------ the ops


@dataclass(frozen=True)
class Op:
    """One public callable: ``call(*operands, **kw)`` returns an array or a tuple."""

    name: str  # as the error messages name it: "sigmoid.backward"
    family: str  # elementwise | rows | gated | maxout | prelu
    roles: tuple  # operand names in call order
    call: Callable
    has_out: bool
    entry: object = None  # catalog entry (elementwise, gated)
    kind: str = "forward"  # forward | backward | backward_y
    axis: bool = False  # takes axis=

    def shape(self, role, xshape):
        """The shape of operand ``role`` for an input x of ``xshape``."""
        if self.family == "maxout" and role == "grad" and xshape:
            return xshape[:-1] + (xshape[-1] // K,)
        if role == "weight":
            return (xshape[1],) if len(xshape) >= 2 else ()
        return xshape


def _ops():
    ops = []
    for name, f in fastact.ACTIVATIONS.items():
        e = CATALOG[name]
        ops.append(Op(name, "elementwise", ("x",), f, True, e, "forward"))
        ops.append(Op(f"{name}.backward", "elementwise", ("grad", "x"), f.backward, True, e, "backward"))
        if e.grad_y is not None:
            ops.append(Op(f"{name}.backward_from_output", "elementwise", ("grad", "y"),
                          f.backward_from_output, True, e, "backward_y"))
    for name, f in fastact.ROW_FUNCTIONS.items():
        ops.append(Op(name, "rows", ("x",), f, True, axis=True))
        ops.append(Op(f"{name}.backward", "rows", ("grad", "y"), f.backward, True, kind="backward", axis=True))
    for name, f in fastact.GATED_FUNCTIONS.items():
        e = f._variants["none"]
        ops.append(Op(name, "gated", ("a", "b"), f, True, e))
        ops.append(Op(f"{name}.backward", "gated", ("grad", "a", "b"), f.backward, False, e, "backward"))
    m, p = fastact.maxout, fastact.prelu
    ops.append(Op("maxout", "maxout", ("x",), lambda x, axis=-1, **kw: m(x, K, axis, **kw), True, axis=True))
    ops.append(Op("maxout.backward", "maxout", ("grad", "x"),
                  lambda g, x, axis=-1: m.backward(g, x, K, axis), False, kind="backward", axis=True))
    ops.append(Op("prelu", "prelu", ("x", "weight"), lambda x, w, axis=1, **kw: p(x, w, axis, **kw), True,
                  axis=True))
    ops.append(Op("prelu.backward", "prelu", ("grad", "x", "weight"),
                  lambda g, x, w, axis=1: p.backward(g, x, w, axis), False, kind="backward", axis=True))
    missing = set(fastact.FUNCTIONS) - {o.name for o in ops}
    assert not missing, f"public functions without bad-input cells: {missing}"
    return ops


OPS = _ops()


# ------------------------------------------------------------------- inputs

# away from 0 and from the derivatives' roots (silu -1.28, gelu -0.75, mish
# -1.19, hardswish -1.5), so that special values meet no exact zero factor
_VALUES = {
    "x": [-2.5, -0.5, 0.625, 1.5, -3.75, 4.25, 0.3125, -1.125],
    "a": [-2.5, -0.5, 0.625, 1.5, -3.75, 4.25, 0.3125, -1.125],
    "b": [1.5, -0.75, 2.25, 0.5, -1.25, 3.0],
    "grad": [0.75, -1.25, 2.0, -0.5, 1.0, -3.0, 0.25],
    "weight": [0.25, -0.5, 0.0, 1.5, 0.125, 2.0],
}
_INTS = {"x": [-3, -1, 0, 1, 2, 4, -2], "a": [-3, -1, 0, 1, 2, 4, -2], "b": [1, -2, 3, 0, 2],
         "grad": [2, -1, 1, 3, -2], "weight": [0, 1, -1, 2], "y": [0, 1, 1, 0, 1]}


def _fill(vals, shape):
    n = math.prod(shape)
    return np.resize(np.array(vals, dtype=np.float64), n).reshape(shape)


def _softmax_ref(x, axis=-1):
    # a valid softmax output for rows backward (NumPy, float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def inputs(op, dt=np.float64, xshape=SHAPE, ints=False):
    """Operands of ``op`` for an input of ``xshape`` (float64 values cast to ``dt``)."""
    out = []
    for role in op.roles:
        shape = op.shape(role, xshape)
        if ints:
            a = _fill(_INTS[role], shape)
        elif role == "y" and op.family == "rows":
            p = _softmax_ref(_fill(_VALUES["x"], shape)) if math.prod(shape) else np.ones(shape)
            a = np.log(p) if op.name.startswith("log_softmax") else p
        elif role == "y":  # inside every backward_from_output's range
            a = _fill([0.25, 0.75, 0.5, 0.125, 0.875], shape)
        else:
            a = _fill(_VALUES[role], shape)
        out.append(a.astype(dt))
    return out


def results(r):
    """A call's result(s) as a tuple of arrays."""
    return tuple(np.asarray(v) for v in (r if isinstance(r, tuple) else (r,)))


# --------------------------------------------------------------- comparisons


def assert_identical(got, expected, what=""):
    """Same dtype, shape and values, NaN == NaN and -0.0 != 0.0."""
    got, expected = results(got), results(expected)
    assert len(got) == len(expected), what
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype, f"{what}: dtype {g.dtype}, expected {e.dtype}"
        assert g.shape == e.shape, f"{what}: shape {g.shape}, expected {e.shape}"
        nan = np.isnan(e)
        ok = np.array_equal(g, e, equal_nan=True) and np.array_equal(np.signbit(g)[~nan], np.signbit(e)[~nan])
        assert ok, f"{what}:\n got      {g!r}\n expected {e!r}"


def _ulps(a, b, dt):
    """|a - b| in ulps of dtype dt (finite, same sign or zero)."""
    it = np.int64 if np.dtype(dt).itemsize == 8 else np.int32
    ia, ib = (np.array([v], dt).view(it)[0].item() for v in (a, b))
    return abs(ia - ib)


def assert_ieee(got, expected, dt, what="", ulps=4):
    """``got`` (dtype dt) against float64 expected values: NaN, infinities and
    zeros exactly (zeros with their sign), finite values within ``ulps``."""
    got = np.asarray(got)
    assert got.dtype == np.dtype(dt), f"{what}: dtype {got.dtype}, expected {np.dtype(dt)}"
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    with np.errstate(over="ignore"):
        exp = expected.astype(dt)  # IEEE rounding: overflow to +-inf, underflow to +-0
    bad = []
    for i in np.ndindex(got.shape):
        g, e = got[i], exp[i]
        if np.isnan(e) or np.isnan(g) or np.isinf(e) or e == 0:
            ok = (np.isnan(g) and np.isnan(e)) or (g == e and np.signbit(g) == np.signbit(e))
        elif abs(e) < np.finfo(dt).tiny:
            # a subnormal result may underflow further: backward is grad * f'(x),
            # and f'(x) is rounded (or flushed to 0) before the product
            ok = abs(g) <= abs(e) * 2 and (g == 0 or np.sign(g) == np.sign(e)) and np.signbit(g) == np.signbit(e)
        else:
            ok = np.isfinite(g) and np.sign(g) == np.sign(e) and _ulps(g, e, dt) <= ulps
        if not ok:
            bad.append(f"at {i}: got {g!r}, expected {e!r}")
    assert not bad, f"{what} ({np.dtype(dt)}):\n  " + "\n  ".join(bad[:12])


# ---------------------------------------------------------- exact references


def mp():
    import mpmath

    return mpmath


def _signed(v):
    """An mpmath result as a float: exact zero -> +0.0 (a zero that is exactly
    zero has no sign in the reals; the kernels return +0 for it, and products
    with it follow IEEE in ``ref_mul``), nonzero values keep their sign even
    when they underflow (that sign is the IEEE result's)."""
    if isinstance(v, float):
        return v
    m = mp()
    if m.isnan(v):
        return math.nan
    if m.isinf(v):
        return math.inf if v > 0 else -math.inf
    if v == 0:
        return 0.0
    f = float(v)  # mpmath: overflow -> +-inf, underflow -> +-0.0
    return f if f != 0 else math.copysign(0.0, float(m.sign(v)))


def ref_mul(*factors):
    """The IEEE value of the exact product of ``factors`` (floats, or finite
    mpf values): NaN if any factor is NaN or an infinity meets a zero, a
    signed infinity or zero (signs multiplied) if one occurs, else the exact
    product, to be rounded once by the caller."""
    m = mp()
    fl = [_signed(f) if not isinstance(f, float) and not m.isfinite(f) else f for f in factors]
    if any(isinstance(f, float) and math.isnan(f) for f in fl):
        return math.nan
    inf = any(isinstance(f, float) and math.isinf(f) for f in fl)
    zero = any(f == 0 for f in fl)
    if inf and zero:
        return math.nan
    if inf or zero:
        neg = sum(1 for f in fl if (math.copysign(1.0, f) if isinstance(f, float) else m.sign(f)) < 0) % 2
        return math.copysign(math.inf if inf else 0.0, -1.0 if neg else 1.0)
    prod = m.mpf(1)
    for f in fl:
        prod *= m.mpf(f)
    return prod


def _limit_zero_sign(entry, fn, side, dt):
    """The sign a zero limit of ``fn`` (ref or ref_grad) at ``side`` * inf is
    approached with: the sign of fn at the largest finite argument."""
    m = mp()
    with m.workdps(50):
        v = fn(m, m.mpf(side * float(np.finfo(dt).max)), *entry.defaults)
    return -0.0 if v < 0 else 0.0


def ref_f(entry, x, dt, which="f"):
    """f(x) or f'(x) (which = "f" / "d") at a float x: NaN, the catalog's
    limits at +-inf (a zero limit signed as approached), else exact (mpf)."""
    m = mp()
    fn = entry.ref if which == "f" else entry.ref_grad
    if math.isnan(x):
        return math.nan
    if math.isinf(x):
        lo, hi, dlo, dhi = entry.limits(*entry.defaults)
        v = (lo, hi) if which == "f" else (dlo, dhi)
        v = float(v[x > 0])
        return _limit_zero_sign(entry, fn, 1 if x > 0 else -1, dt) if v == 0 else v
    with m.workdps(50):
        return +fn(m, m.mpf(x), *entry.defaults)


def ref_fy(entry, y):
    """The derivative written through the output, at a float y (inf arithmetic
    as mpmath's: inf - inf = nan)."""
    m = mp()
    if math.isnan(y):
        return math.nan
    with m.workdps(50):
        v = entry.ref_grad_y(m, m.mpf(y) if math.isfinite(y) else (m.inf if y > 0 else -m.inf), *entry.defaults)
    return v if m.isfinite(v) else _signed(v)


def ref_rows(name, xrow):
    """softmax / log_softmax of one row, exact, with the documented special
    rows (PyTorch's and scipy.special.softmax's choice, see test_bad_input)."""
    m = mp()
    xs = [float(v) for v in xrow]
    if any(math.isnan(v) or v == math.inf for v in xs) or all(v == -math.inf for v in xs):
        return [math.nan] * len(xs)
    with m.workdps(50):
        xm = max(xs)
        top = xs.index(xm)
        # the normaliser as 1 + rest: log1p(rest) keeps the sign and size of a
        # dominant entry's log_softmax, -rest (1 + rest would round to 1)
        rest = m.fsum(m.exp(m.mpf(v) - xm) for j, v in enumerate(xs) if v != -math.inf and j != top)
        if name == "softmax":
            return [0.0 if v == -math.inf else m.exp(m.mpf(v) - xm) / (1 + rest) for v in xs]
        return [-math.inf if v == -math.inf else m.mpf(v) - xm - m.log1p(rest) for v in xs]


def _mp_sum(terms):
    """IEEE-style sum of floats / mpf: NaN, or +-inf, or the exact sum."""
    m = mp()
    fl = [_signed(t) if isinstance(t, float) or not m.isfinite(t) else t for t in terms]
    specials = [t for t in fl if isinstance(t, float) and not math.isfinite(t)]
    if any(math.isnan(t) for t in specials) or (math.inf in specials and -math.inf in specials):
        return math.nan
    if specials:
        return specials[0]
    return m.fsum(m.mpf(t) for t in fl)


def ref_rows_backward(name, grow, yrow):
    """softmax.backward = y * (g - sum(g * y)); log_softmax.backward =
    g - exp(y) * sum(g), evaluated exactly, specials by IEEE rules."""
    m = mp()
    g = [float(v) for v in grow]
    y = [float(v) for v in yrow]
    with m.workdps(60):
        if name == "softmax":
            dot = _mp_sum([ref_mul(a, b) for a, b in zip(g, y)])
            return [ref_mul(yi, _diff(gi, dot)) for gi, yi in zip(g, y)]
        s = _mp_sum(g)
        return [_diff(gi, ref_mul(_exp(yi), s)) for gi, yi in zip(g, y)]


def _exp(y):
    m = mp()
    if math.isnan(y):
        return math.nan
    if math.isinf(y):
        return math.inf if y > 0 else 0.0
    return m.exp(m.mpf(y))


def _diff(a, b):
    return _mp_sum([a, ref_mul(b, -1.0)])


def ref_maxout(x, g=None):
    """maxout's definition per group of K along the last axis: the maximum
    (NaN if the group holds one); the backward routes g to the first NaN,
    else to the first maximum."""
    xs = x.reshape(-1, K)
    idx = []
    for grp in xs.tolist():
        nans = [i for i, v in enumerate(grp) if math.isnan(v)]
        idx.append(nans[0] if nans else grp.index(max(grp)))
    if g is None:
        return np.array([grp[i] for grp, i in zip(xs.tolist(), idx)]).reshape(x.shape[:-1] + (-1,))
    dx = np.zeros(xs.shape)
    for r, (i, gv) in enumerate(zip(idx, g.reshape(-1).tolist())):
        dx[r, i] = gv
    return dx.reshape(x.shape)


def ref_prelu(x, w, g=None):
    """prelu on a 2-D x with channels along axis 1: y = x if x > 0 else w*x,
    limits at x = -inf as leaky_relu's catalog entry (slope w); backward:
    dx = g if x > 0 else w*g, dw[c] = sum of g*x over x <= 0 (and NaN x)."""
    leaky = CATALOG["leaky_relu"]
    y, dx = np.empty(x.shape), np.empty(x.shape)
    dw = []
    for c in range(x.shape[1]):
        terms = []
        for r in range(x.shape[0]):
            xv, wv = float(x[r, c]), float(w[c])
            gv = None if g is None else float(g[r, c])
            if math.isnan(xv):  # NaN in, NaN out (README), in dx and dweight too
                y[r, c] = dx[r, c] = math.nan
                terms.append(math.nan)
                continue
            if xv > 0:
                y[r, c] = xv
                dx[r, c] = gv if gv is not None else 0.0
                continue
            if xv == -math.inf:
                lo = leaky.limits(wv)[0]
                y[r, c] = lo if lo != 0 else math.copysign(0.0, -wv)  # 0*(-inf): sign of w*x near -inf
            else:
                y[r, c] = _signed(ref_mul(wv, xv))
            if gv is not None:
                dx[r, c] = _signed(ref_mul(gv, wv))
                terms.append(ref_mul(gv, xv))
        dw.append(_signed(_mp_sum(terms)) if terms else 0.0)
    return y if g is None else (dx, np.array(dw))


# --------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    build: Callable  # op -> zero-argument check, or None where the case does not apply


CASES = []


def case(group, name=None):
    def deco(fn):
        CASES.append(Case(group, name or fn.__name__.replace("_", "-"), fn))
        return fn

    return deco


def expect_error(exc, call, op, *words):
    """``call()`` raises ``exc`` with a message naming the function and ``words``."""
    try:
        call()
    except exc as err:
        msg = str(err)
        missing = [w for w in (f"fastact.{op.name}:", *words) if w not in msg]
        assert not missing, f"{type(err).__name__} message {msg!r} lacks {missing}"
        return
    except Exception as err:  # the wrong type: report it as the failure
        raise AssertionError(f"expected {exc.__name__}, got {type(err).__name__}: {err}") from err
    raise AssertionError(f"expected {exc.__name__}, nothing raised")


# dtypes -------------------------------------------------------------------


def _converted(op, convert):
    """A check: op on ``convert(a, i)`` of integer-valued operands == op on
    float copies in NumPy's result_type of them (integers, bool: float64)."""

    def check():
        bad = [convert(a, i) for i, a in enumerate(inputs(op, ints=True))]
        got = results(op.call(*bad))
        ref_dt = np.result_type(*bad)
        ref_dt = ref_dt if ref_dt.kind == "f" else np.dtype(np.float64)
        want = results(op.call(*[b.astype(ref_dt) for b in bad]))
        assert_identical(got, want, f"{op.name} on {[b.dtype for b in bad]}")

    return check


@case("dtype")
def int64(op):
    # NumPy's ufunc type resolution: integer inputs compute in float64
    return _converted(op, lambda a, i: a.astype(np.int64))


@case("dtype", "bool")
def boolean(op):
    return _converted(op, lambda a, i: a != 0)


@case("dtype", "int-mixed")
def int_mixed(op):
    # the first operand stays float32, the others are integers: the
    # computation and the result take NumPy's result_type (float64 for
    # int32, float32 for int8), not the float operand's dtype
    if len(op.roles) < 2:
        return None
    return _converted(op, lambda a, i: a.astype(np.float32) if i == 0 else a.astype(np.int32 if i % 2 else np.int8))


@case("dtype")
def float16(op):
    # computed in float32, stored as float16 (README)
    def check():
        ins = inputs(op, np.float32)
        got = results(op.call(*[a.astype(np.float16) for a in ins]))
        want = results(op.call(*[a.astype(np.float16).astype(np.float32) for a in ins]))
        assert_identical(got, tuple(w.astype(np.float16) for w in want), op.name)

    return check


_BAD_DTYPES = {
    "complex": lambda a: a.astype(np.complex128),
    "object": lambda a: a.astype(object),
    "str": lambda a: a.astype(str),
    "None": lambda a: None,
    "datetime": lambda a: np.zeros(a.shape, "datetime64[s]"),
}


def _bad_dtype(kind):
    def build(op):
        def check():
            ins = inputs(op)
            for i, role in enumerate(op.roles):
                if kind == "None" and op.family == "gated" and role == "b":
                    continue  # b=None is the split form [a | b] of the gated units
                bad = list(ins)
                bad[i] = _BAD_DTYPES[kind](ins[i])
                try:
                    expect_error(TypeError, lambda: op.call(*bad), op, "float16", "float32", "float64")
                except AssertionError as err:
                    raise AssertionError(f"{kind} {role}: {err}") from None

        return check

    return build


for _kind in _BAD_DTYPES:
    CASES.append(Case("dtype", _kind, _bad_dtype(_kind)))


# shapes and layouts -------------------------------------------------------


def _same_as_contiguous(op, transform, shapes=(SHAPE,)):
    def check():
        for dt in FLOATS:
            for shape in shapes:
                ins = inputs(op, dt, shape)
                got = results(op.call(*[transform(a) for a in ins]))
                want = results(op.call(*[np.ascontiguousarray(a) for a in ins]))
                assert_identical(got, want, f"{op.name} {dt.__name__} {shape}")

    return check


@case("layout", "0-d")
def zero_d(op):
    if op.family in ("rows", "maxout"):
        # a row / a group needs an axis
        return lambda: expect_error(ValueError, lambda: op.call(*inputs(op, np.float64, ())), op, "0-d")

    def check():
        for dt in FLOATS:
            got = results(op.call(*inputs(op, dt, ())))
            # the same values as 1-element arrays (prelu: one weight either way)
            want = results(op.call(*[a.reshape(1) for a in inputs(op, dt, ())]))
            assert all(g.ndim == 0 for g in got), [g.shape for g in got]
            assert_identical(got, tuple(w.reshape(()) for w in want), f"{op.name} {dt.__name__}")

    return check


@case("layout")
def empty(op):
    def check():
        for dt in FLOATS:
            for shape in ((0, 6), (4, 0)):
                got = results(op.call(*inputs(op, dt, shape)))
                want = [shape] * len(got)
                if op.name == "maxout":
                    want = [op.shape("grad", shape)]
                if op.name == "prelu.backward":  # dweight: one (empty) sum per channel
                    want = [shape, (shape[1],)]
                    assert_identical(got[1], np.zeros(shape[1], dt), "dweight")
                assert [g.shape for g in got] == want, [g.shape for g in got]
                assert all(g.dtype == dt for g in got), [g.dtype for g in got]

    return check


def _strided(a):
    if a.ndim == 0:
        return a
    buf = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, a.dtype)
    buf[..., ::2] = a
    return buf[..., ::2]


def _reversed(a):
    buf = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
    return buf[(slice(None, None, -1),) * a.ndim]


def _big_endian(a):
    return a.astype(a.dtype.newbyteorder(">"))


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _unaligned(a):
    buf = np.empty(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
    buf[...] = a
    return buf


for _name, _fn in [("non-contiguous", _strided), ("negative-strides", _reversed),
                   ("fortran", np.asfortranarray), ("big-endian", _big_endian),
                   ("read-only", _read_only), ("unaligned", _unaligned)]:
    CASES.append(Case("layout", _name, lambda op, fn=_fn: _same_as_contiguous(op, fn)))


# out= ---------------------------------------------------------------------


def _out_shape(op, xshape=SHAPE):
    return op.shape("grad", xshape) if op.family == "maxout" else xshape


@case("out")
def out_read_only(op):
    if not op.has_out:
        return None

    def check():
        out = np.zeros(_out_shape(op))
        out.flags.writeable = False
        expect_error(ValueError, lambda: op.call(*inputs(op), out=out), op, "read-only")
        assert not out.any()

    return check


@case("out")
def out_shape(op):
    if not op.has_out:
        return None

    def check():
        s = _out_shape(op)
        for shape in ((5,), s[:-1] + (s[-1] + 1,), (s[0] + 1,) + s[1:]):
            out = np.zeros(shape)
            expect_error(ValueError, lambda: op.call(*inputs(op), out=out), op, "shape")
            assert not out.any()

    return check


@case("out")
def out_dtype(op):
    if not op.has_out:
        return None

    def check():
        for dt in (np.int64, np.int32, np.bool_, np.complex128):
            out = np.zeros(_out_shape(op), dt)
            expect_error(TypeError, lambda: op.call(*inputs(op), out=out), op, "dtype")
            assert not out.any()

    return check


def _overlap(op, xshape, dtypes):
    """out sharing memory with one operand, shifted by one element: the
    result must be the one computed from copies (NumPy's semantics)."""

    def check():
        for dt in dtypes:
            ins = inputs(op, dt, xshape)
            want = results(op.call(*[a.copy() for a in ins]))[0]
            for i, role in enumerate(op.roles):
                if role == "weight":
                    continue
                a = ins[i]
                n = max(a.size, want.size) + 1
                for shift in (1, -1):
                    buf = np.zeros(n, dt)
                    lo = 1 if shift > 0 else 0
                    src = buf[lo:lo + a.size].reshape(a.shape)
                    src[...] = a
                    o0 = 0 if shift > 0 else 1
                    out = buf[o0:o0 + want.size].reshape(want.shape)
                    args = list(ins)
                    args[i] = src
                    r = op.call(*args, out=out)
                    assert r is out
                    assert_identical(out, want, f"{op.name} {dt.__name__} out overlapping {role} (shift {shift})")

    return check


@case("out")
def out_overlap(op):
    return _overlap(op, SHAPE, FLOATS) if op.has_out else None


@case("out")
def out_overlap_large(op):
    # above fastact.cpu.threads.MIN_PARALLEL_ELEMENTS (2**16): chunks run on
    # threads, and one chunk's out must not overwrite another chunk's input
    return _overlap(op, (512, 256), (np.float32,)) if op.has_out else None


# arguments ----------------------------------------------------------------


@case("args")
def broadcast(op):
    # a grad (or a gated unit's b) whose shape does not fit the input's
    roles = [r for r in op.roles if r in ("grad", "b")]
    if not roles:
        return None

    def check():
        for role in roles:
            i = op.roles.index(role)
            for shape in ((5,), (3, 6), (4, 5)):
                bad = inputs(op)
                bad[i] = np.ones(shape)
                try:
                    expect_error(ValueError, lambda: op.call(*bad), op, "shape")
                except AssertionError as err:
                    raise AssertionError(f"{role} {shape}: {err}") from None

    return check


@case("args")
def axis_out_of_range(op):
    if not op.axis:
        return None
    return lambda: [expect_error(ValueError, lambda: op.call(*inputs(op), axis=ax), op, "axis", str(ax))
                    for ax in (2, -3, 7)]


@case("args")
def split_axis(op):
    # the gated units' one-array form: axis out of range, odd length, 0-d
    if op.family != "gated":
        return None
    f = fastact.FUNCTIONS[op.name.split(".")[0]]
    x = np.ones((4, 6))

    def call(arr, axis, backward):
        if backward:
            return f.backward(np.ones((4, 3)), arr, axis=axis)
        return f(arr, axis=axis)

    back = op.kind == "backward"

    def check():
        for ax in (2, -3):
            expect_error(ValueError, lambda: call(x, ax, back), op, "axis", str(ax))
        expect_error(ValueError, lambda: call(np.ones((4, 5)), -1, back), op, "odd")
        expect_error(ValueError, lambda: call(np.float64(1.0), -1, back), op, "dimension")

    return check


@case("args")
def k_invalid(op):
    if op.family != "maxout":
        return None
    m = fastact.maxout
    x = np.ones(SHAPE)
    back = op.kind == "backward"

    def call(k):
        return m.backward(np.ones((4, 1)), x, k) if back else m(x, k)

    def check():
        expect_error(ValueError, lambda: call(4), op, "divisible", "k=4")
        expect_error(ValueError, lambda: call(0), op, "k")
        expect_error(TypeError, lambda: call(1.5), op, "integer")

    return check


@case("args")
def weight_shape(op):
    if op.family != "prelu":
        return None

    def check():
        ins = inputs(op)
        for w in (np.ones(5), np.ones(7), np.ones((6, 1)), np.ones((1, 6))):
            bad = ins[:-1] + [w]
            expect_error(ValueError, lambda: op.call(*bad), op, "weight", str(w.shape))

    return check


# special values -----------------------------------------------------------

SPECIALS = [math.nan, math.inf, -math.inf]


def _elementwise_ref(op, ins, dt):
    """Reference of an elementwise / gated op, position by position (1-D)."""
    e = op.entry
    outs = []
    for vals in zip(*[a.tolist() for a in ins]):
        if op.family == "gated":
            if op.kind == "forward":
                a, b = vals
                outs.append((ref_mul(ref_f(e, a, dt), b),))
            else:
                g, a, b = vals
                outs.append((ref_mul(g, b, ref_f(e, a, dt, "d")), ref_mul(g, ref_f(e, a, dt))))
        elif op.kind == "forward":
            outs.append((ref_f(e, vals[0], dt),))
        elif op.kind == "backward":
            outs.append((ref_mul(vals[0], ref_f(e, vals[1], dt, "d")),))
        else:
            outs.append((ref_mul(vals[0], ref_fy(e, vals[1])),))
    return [np.array([_signed(v) for v in col]) for col in zip(*outs)]


def reference(op, ins, dt):
    """The exact (IEEE-rounded later) results of ``op`` on ``ins``."""
    if op.family in ("elementwise", "gated"):
        return _elementwise_ref(op, ins, dt)
    if op.family == "rows":
        name = op.name.split(".")[0]
        if op.kind == "forward":
            rows = [ref_rows(name, r) for r in ins[0]]
        else:
            rows = [ref_rows_backward(name, g, y) for g, y in zip(ins[0], ins[1])]
        return [np.array([[_signed(v) for v in r] for r in rows])]
    if op.family == "maxout":
        return [ref_maxout(ins[0])] if op.kind == "forward" else [ref_maxout(ins[1], ins[0])]
    if op.kind == "forward":
        return [ref_prelu(ins[0], ins[1])]
    return list(ref_prelu(ins[1], ins[2], ins[0]))


def _special_inputs(op, dt, role, value):
    """op's inputs with ``value`` placed in operand ``role`` (every row /
    group / channel gets one; elementwise ops are 1-D)."""
    if op.family in ("elementwise", "gated"):
        ins = inputs(op, dt, (6,))
    else:
        ins = inputs(op, dt, (3, 4))
    i = op.roles.index(role)
    a = ins[i].copy()
    if a.ndim == 2:
        a[0, 1] = a[1, -2] = value
        if op.family == "rows" and value == -math.inf:
            a[2, :] = value  # a row of only -inf
    else:
        a[1] = a[-2] = value
    ins[i] = a
    return ins


def _check_values(op, make, dt, what, ulps=4):
    ins = make(dt)
    with np.errstate(all="ignore"):  # a reference's own overflow is the point
        got = results(op.call(*ins))
    want = reference(op, ins, dt)
    for k, (g, w) in enumerate(zip(got, want)):
        assert_ieee(g, w, dt, f"{op.name} output {k} {what}", ulps)


def _all(checks):
    """Run every check; one AssertionError listing each failure (so that an
    expected failure's report names all of its inputs)."""
    failures = []
    for check in checks:
        try:
            check()
        except AssertionError as err:
            failures.append(str(err))
    assert not failures, "\n".join(failures)


def _special(value_name, values):
    def build(op):
        return lambda: _all(
            lambda dt=dt, role=role, v=v: _check_values(op, lambda dt: _special_inputs(op, dt, role, v), dt,
                                                        f"{role}={v}")
            for dt in FLOATS for role in op.roles for v in values)

    return build


CASES.append(Case("special", "nan", _special("nan", [math.nan])))
CASES.append(Case("special", "inf", _special("inf", [math.inf, -math.inf])))


# extreme finite values ----------------------------------------------------


def _extreme_inputs(op, dt):
    """Operands at +-the largest float, where a product, a difference or a
    sum of the formulas overflows while the true result may not."""
    M = float(np.finfo(dt).max)
    if op.family in ("elementwise", "gated"):
        big = [M, -M, M / 3, -M / 3, 1.5, -0.75]
        n = len(big) ** len(op.roles)
        cols = np.array(np.meshgrid(*[big] * len(op.roles), indexing="ij")).reshape(len(op.roles), n)
        ins = [c.copy() for c in cols]
        if op.kind == "backward_y":  # keep y inside a range where y determines x: f(x) for large x
            ins[1] = np.resize(np.array([M, 0.5, 0.25]), n)
        return [a.astype(dt) for a in ins]
    if op.family == "rows":
        x = np.array([[M, -M, 0.0, 1.0], [M, M, -M, -M], [-M, -M, -M, -M], [M, M / 2, -M, 0.0]])
        if op.kind == "forward":
            return [x.astype(dt)]
        g = np.array([[M, -M, M, 0.5], [M, M, 1.0, 1.0], [-M, M, -M, M], [M, -M, 0.0, 0.0]])
        p = np.array([[0.25, 0.75, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25],
                      [0.125, 0.375, 0.25, 0.25]])
        with np.errstate(divide="ignore"):  # log(0) = -inf: a probability of 0
            y = np.log(p) if op.name.startswith("log_softmax") else p
        return [g.astype(dt), y.astype(dt)]
    if op.family == "maxout":
        x = np.array([[M, -M, -M, -M, M, M], [-M, M / 2, 1.0, -M, M, -1.0]])
        return [x.astype(dt)] if op.kind == "forward" else [np.array([[M, -M, M], [-M, M, 1.0]], dt), x.astype(dt)]
    x = np.array([[-M, M, -M, -1.0], [-M, -M, -M / 2, M], [M, -M, 1.0, -M]])
    w = np.array([1.5, 0.25, -2.0, M])
    if op.kind == "forward":
        return [x.astype(dt), w.astype(dt)]
    g = np.array([[M, M, -M, M], [-M, 2.0, M, -M], [1.0, M, -M, M]])
    return [g.astype(dt), x.astype(dt), w.astype(dt)]


@case("extreme")
def extreme(op):
    # e.g. softmax([max, -max]) = [1, 0], log_softmax([max, -max]) = [0, -inf],
    # softmax([max, max]) = [0.5, 0.5], silu.backward(max, max) = max,
    # swiglu.backward(max, -max, max): da = max * max * silu'(-max) = -0.0
    return lambda: _all(lambda dt=dt: _check_values(op, lambda dt: _extreme_inputs(op, dt), dt, "at +-max")
                        for dt in FLOATS)


# --------------------------------------------------------------------- cells


def cells():
    """{cell id: zero-argument check} for every applicable (op, case)."""
    out = {}
    for c in CASES:
        for op in OPS:
            check = c.build(op)
            if check is not None:
                out[f"{op.name}|{c.group}|{c.name}"] = check
    return out


# -------------------------------------------------------------------- worker


def _run(checks, path):
    """Run ``checks`` ({id: check}); one flushed JSON line before and after each."""
    with open(path, "w") as f:
        for cid, check in checks.items():
            f.write(json.dumps({"id": cid, "start": True}) + "\n")
            f.flush()
            try:
                check()
                rec = {"id": cid, "status": "ok"}
            except AssertionError as err:
                rec = {"id": cid, "status": "failed", "message": str(err)}
            except BaseException as err:  # noqa: BLE001 - a crash of the check is its cell's failure
                rec = {"id": cid, "status": "error", "message": "".join(traceback.format_exception(err))[-3000:]}
            f.write(json.dumps(rec) + "\n")
            f.flush()


def _load(path):
    spec = importlib.util.spec_from_file_location("_bad_input_cells", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.cells()


def run_worker(cells_file, ids, results_path, timeout, env=None):
    """Run the cells ``ids`` of ``cells_file`` in a subprocess; {id: (status,
    message)} for each, where a worker that dies (signal, exit, timeout)
    fails the cell it was running and every cell it did not reach."""
    ids_path = f"{results_path}.ids"
    with open(ids_path, "w") as f:
        json.dump(list(ids), f)
    cmd = [sys.executable, __file__, cells_file, ids_path, results_path]
    try:
        proc = subprocess.run(cmd, timeout=timeout, env=env, capture_output=True, text=True)
        rc, tail = proc.returncode, (proc.stderr or "")[-2000:]
        death = None if rc == 0 else (
            f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with status {rc}")
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-2000:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        death = f"timed out after {timeout} s"
    done, running = {}, None
    try:
        with open(results_path) as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("start"):
                    running = rec["id"]
                else:
                    done[rec["id"]] = (rec["status"], rec.get("message", ""))
                    running = None
    except FileNotFoundError:
        pass
    out = {}
    for cid in ids:
        if cid in done:
            out[cid] = done[cid]
        elif cid == running:
            out[cid] = ("crashed", f"the worker was {death} while running this cell\n{tail}")
        else:
            out[cid] = ("crashed", f"not run: the worker was {death} at cell {running}\n{tail}")
    return out


if __name__ == "__main__":
    cells_file, ids_path, results_path = sys.argv[1:4]
    all_cells = cells() if cells_file == __file__ else _load(cells_file)
    with open(ids_path) as f:
        wanted = json.load(f)
    _run({cid: all_cells[cid] for cid in wanted}, results_path)
