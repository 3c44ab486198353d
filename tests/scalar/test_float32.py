"""float32 kernels that have their own float32 evaluation (catalog ``forward32``
/ ``grad32``) against the float64 definition, densely.

The mpmath accuracy tests (test_accuracy.py) probe every binade with a few
thousand points; a float32 evaluation can also go wrong between them (a
range-reduction boundary of the float32 exp, a select between two formulas).
Here the float32 result is compared with the float64 kernel (itself within
4-8 float64 ulps of the exact value, i.e. exact to ~2**-26 float32 ulps) on
about a million inputs per kernel: every float32 in dense windows around the
exp thresholds and branch points, a fine sweep of [-110, 110] and random bit
patterns over the whole range. Generated from the catalog.
"""

import numpy as np
import pytest

import fastact
from fastact.cpu import ufuncs as _cpu
from fastact.devtools.accuracy import BOUNDS, ROOT_ABS_WINDOW, ulps_f32
from fastact.catalog import ENTRIES

F32 = np.dtype(np.float32)
CASES = [
    (e, kind)
    for e in ENTRIES
    for kind, fn in (("forward", e.forward32), ("backward", e.grad32))
    if fn is not None
]


def _inputs():
    rng = np.random.default_rng(7)
    parts = [
        np.linspace(-110, 110, 400001, dtype=np.float32),
        rng.integers(0, 2**32, 300000, dtype=np.uint64).astype(np.uint32).view(np.float32),
    ]
    for c in (0.0, 0.5, 0.55, 1.0, 3.0, 16.6, 36.0, 80.0, 87.0, 87.33654, 88.72284,
              103.27893, 103.97208):
        for s in (1.0, -1.0):
            v = np.float32(s * c)
            bits = int(np.array([v], dtype=np.float32).view(np.int32)[0])
            run = np.arange(bits - 2000, bits + 2000, dtype=np.int64)
            run = run[(run >= -(2**31)) & (run < 2**31)].astype(np.int32)
            parts.append(run.view(np.float32))
    x = np.concatenate(parts)
    return x[np.isfinite(x)]


X = _inputs()


_ulps = ulps_f32


def _param_sets(e):
    yield "default", None
    if e.params:
        yield "test", tuple(float(np.float32(p.test_value)) for p in e.params)


@pytest.mark.parametrize("entry,kind", CASES, ids=[f"{e.name}-{k}" for e, k in CASES])
def test_float32_evaluation_matches_definition(entry, kind):
    f = fastact.ACTIVATIONS[entry.name]
    x = X
    if kind == "backward" and entry.grad_root is not None:
        x = x[np.abs(x.astype(np.float64) - entry.grad_root) > ROOT_ABS_WINDOW]
    one = np.ones_like(x)
    bound = BOUNDS[(kind, "float32")]
    for label, params in _param_sets(entry):
        kw = {} if params is None else dict(zip(entry.param_names, params))
        with np.errstate(all="ignore"):
            if kind == "forward":
                got = f(x, **kw)  # public path: the built-in-defaults ufunc for defaults
                ref = f(x.astype(np.float64), **kw)
            else:
                got = f.backward(one, x, **kw)
                ref = f.backward(one.astype(np.float64), x.astype(np.float64), **kw)
        assert got.dtype == F32
        err = _ulps(got, ref)
        i = int(np.argmax(err))
        assert err[i] <= bound, (
            f"{entry.name} {kind} ({label}): {err[i]:.3g} ulp at x={x[i]!r}: got {got[i]!r}, "
            f"float64 definition {ref[i]!r}"
        )
        # and the general ufunc (parameters as inputs) agrees bit for bit
        if params is None and entry.params:
            pv = [np.float32(v) for v in entry.defaults]
            with np.errstate(all="ignore"):
                if kind == "forward":
                    g2 = _cpu.ufunc(entry, "forward", F32)(x, *pv, dtype=F32)
                else:
                    g2 = _cpu.ufunc(entry, "backward", F32)(one, x, *pv, dtype=F32)
            np.testing.assert_array_equal(g2, got)


def test_float32_kernels_use_their_float32_evaluation():
    """The float32 loop of an entry with forward32 really runs it: its results
    differ from the widened float64 definition somewhere (else the dispatch
    silently fell back to float64)."""
    e = next(e for e in ENTRIES if e.name == "sigmoid")
    x = np.linspace(-20, 20, 100001, dtype=np.float32)
    got = fastact.sigmoid(x)
    widened = fastact.sigmoid(x.astype(np.float64)).astype(np.float32)
    assert e.forward32 is not None
    assert np.any(got != widened)
