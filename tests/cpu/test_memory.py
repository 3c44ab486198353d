"""Memory use of the CPU paths (issue 14, item 4): with ``out=`` a call
allocates nothing of its input's size; without, exactly its outputs.

Every case runs in one subprocess (``python -m tests.cpu.test_memory``),
measured in sequence and reported as JSON; the cells below assert on it. A
case is warmed up first on a small array (compiles, loop admission, the
thread pool's start), then measured on the full one with

- tracemalloc's peak, which NumPy's data allocations report to (in every
  thread: the pool's workers included), and
- the peak RSS (VmHWM, reset through /proc/self/clear_refs) over the RSS
  before the call, which also sees memory that bypasses NumPy's allocator.

Both must lie within 1% of the input's size of the returned arrays' size
(0 with ``out=``). Two threads and arrays far above
``threads.MIN_PARALLEL_ELEMENTS_CHEAP``: the chunked path is the one measured.

Sizes, far above any fixed overhead (a few kB): every activation (forward,
backward, backward_from_output; a parameter built into the loop and passed
as a ufunc input; float64, float16) at 64 MiB; softmax and log_softmax on
every axis of a 2-D and a 3-D array, maxout, prelu and the gated units at
16 MiB (strided rows run at 10-30 ns per element); at 1 GiB, relu forward
(the cheap parallel threshold), gelu backward (the expensive one, a float32
formula), sigmoid float64, softmax forward and log_softmax backward. All
activations at 1 GiB would take over a minute more.

Known input-sized temporaries (``KNOWN``, strict xfail) are in
fastact/functions/*, not in the kernels.
"""

import itertools
import json
import os
import re
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import fastact
from fastact.cpu import threads

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
GIB = 1 << 30
SMALL = 1 << 26  # bytes: 64 MiB inputs of the elementwise functions
ROWS = 1 << 24  # 16 MiB: the others (strided rows run at 10-30 ns per element)
WARM = threads.MIN_PARALLEL_ELEMENTS_CHEAP  # warm-up elements: the pool's path too
TOLERANCE = 0.01  # of the input's size
TIMEOUT_S = 600
ROOT = Path(__file__).resolve().parents[2]
# glibc: every block from 1 MiB up is its own mapping, unmapped when freed (by
# default the threshold rises to 32 MiB as blocks are freed, and a freed
# output stays resident for the next case's to reuse: no RSS growth to see)
ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


# ------------------------------------------------------------- measuring


def _status_kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE).group(1))


def _reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: VmHWM := VmRSS


def measure(call, *args):
    """(result, traced peak, peak RSS growth) of ``call(*args)``, in bytes."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        _reset_peak_rss()
        rss0 = _status_kib("VmRSS")
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        res = call(*args)
        traced = tracemalloc.get_traced_memory()[1] - base
        rss = (_status_kib("VmHWM") - rss0) * 1024
    finally:
        if not tracing:
            tracemalloc.stop()
    return res, traced, rss


def fresh_bytes(res, operands):
    """The size of the arrays in ``res`` that are not ``operands`` (out=)."""
    arrays = res if isinstance(res, tuple) else (res,)
    return sum(a.nbytes for a in arrays
               if isinstance(a, np.ndarray) and not any(a is b for b in operands))


def problems(m):
    """What is wrong with a measurement ``m`` (dict: nbytes of the input,
    expect: bytes the call may allocate, traced, rss); empty if nothing."""
    slack = TOLERANCE * m["nbytes"]
    bad = []
    for what in ("traced", "rss"):
        if not m["expect"] - slack <= m[what] <= m["expect"] + slack:
            bad.append(f"{what} {m[what] / m['nbytes']:.3f} x input, "
                       f"expected {m['expect'] / m['nbytes']:.3f} +- {TOLERANCE}")
    return bad


# ----------------------------------------------------------------- cases


def _data(shape, dtype, scale=6.0):
    """Values in [-scale, scale] (both branches of every kernel), varying along every axis."""
    a = np.empty(shape, dtype)
    flat = a.reshape(-1)
    pattern = np.linspace(-scale, scale, 4099).astype(dtype)  # odd: rows of any length differ
    k = min(pattern.size, flat.size)
    flat[:k] = pattern[:k]
    while k < flat.size:  # doubling copies: memory speed
        m = min(k, flat.size - k)
        flat[k : k + m] = flat[:m]
        k += m
    return a


@dataclass
class Case:
    id: str
    shape: tuple  # of x; the warm-up runs on shape[0] scaled down
    dtype: np.dtype
    run: object  # run(x, g, o): g an array of x's shape, o the out= array or None
    out_shape: object = None  # x's shape -> out's shape; None: no out=
    warmups: int = 1  # 2: a parameter value other than the default is built in on its second use
    out_dtype: np.dtype = None  # of out=; None: dtype

    def arrays(self, shape, cache=None):
        """(x, g, o) of x's ``shape``, from ``cache`` (a dict) where it has them."""
        cache = {} if cache is None else cache
        def get(key, shape, scale=6.0, dtype=self.dtype):
            if key not in cache:
                cache[key] = _data(shape, dtype, scale)
            return cache[key]
        x = get("x", shape)
        g = get("g", shape, -4.0)
        o = None
        if self.out_shape is not None:
            dt = self.out_dtype or self.dtype
            o = get((self.out_shape(shape), dt.name), self.out_shape(shape), dtype=dt)
        return x, g, o

    def warm_shape(self):
        rest = int(np.prod(self.shape[1:]))
        return (max(2, WARM // rest),) + self.shape[1:]


def _head(a, shape):
    """A C-contiguous array of ``shape`` on the start of ``a``'s data."""
    return a.reshape(-1)[: int(np.prod(shape))].reshape(shape)


def _shape(nbytes, dtype, trailing=()):
    rest = int(np.prod(trailing))
    return (nbytes // dtype.itemsize // rest,) + tuple(trailing)


def _same(shape):
    return shape


def _half_last(shape):
    return shape[:-1] + (shape[-1] // 2,)


def _with_out(cid, shape, dtype, run, out_shape=_same, warmups=1):
    """The case with out= and the one without."""
    return [Case(f"{cid}-out", shape, dtype, run, out_shape, warmups),
            Case(cid, shape, dtype, lambda x, g, o: run(x, g, None), None, warmups)]


def _elementwise(name, f, kind, shape, dtype, **params):
    if kind == "forward":
        def run(x, g, o):
            return f(x, out=o, **params)
    elif kind == "backward":
        def run(x, g, o):
            return f.backward(g, x, out=o, **params)
    else:  # from the output: y = f(x) in [-6, 6] is as good as any for memory
        def run(x, g, o):
            return f.backward_from_output(g, x, out=o, **params)
    return _with_out(f"{name}-{kind}-{dtype.name}-{x_size(shape, dtype)}", shape, dtype, run,
                     warmups=2 if params else 1)


def x_size(shape, dtype):
    n = int(np.prod(shape)) * dtype.itemsize
    return f"{n >> 30}GiB" if n >= GIB else f"{n >> 20}MiB"


def _kinds(f):
    return ["forward", "backward"] + (["backward_y"] if hasattr(f, "backward_from_output") else [])


_fresh_alpha = itertools.count(1)


def _general_elu(x, g, o):
    # a new alpha on every call is never admitted to a built-in loop
    # (fastact.cpu.ufuncs.fixed_dufunc): the general ufunc, alpha an input
    return fastact.elu(x, out=o, alpha=0.5 + next(_fresh_alpha) * 2.0**-12)


def _rows(f, shape, dtype, axis):
    cid = f"{f.__name__}-{len(shape)}d-axis{axis}-{dtype.name}-{x_size(shape, dtype)}"
    return (_with_out(cid, shape, dtype, lambda x, g, o: f(x, axis=axis, out=o))
            + _with_out(cid.replace("-", "-backward-", 1), shape, dtype,
                        lambda x, g, o: f.backward(g, x, axis=axis, out=o)))


def _big_cases():
    # one set of 1 GiB arrays for the float32 cases (elementwise calls chunk the rows)
    big = _shape(GIB, F32, (4096,))
    cases = _elementwise("relu", fastact.relu, "forward", big, F32)  # the cheap threshold
    cases += _elementwise("gelu", fastact.gelu, "backward", big, F32)  # a float32 formula
    cases += _rows(fastact.softmax, big, F32, -1)[:2]
    cases += _rows(fastact.log_softmax, big, F32, -1)[2:]
    cases += _elementwise("sigmoid", fastact.sigmoid, "forward", _shape(GIB, F64, (4096,)), F64)
    return cases


def _small_cases():
    flat = _shape(SMALL, F32)
    cases = []
    for name, f in fastact.ACTIVATIONS.items():
        for kind in _kinds(f):
            cases += _elementwise(name, f, kind, flat, F32)
    for kind in _kinds(fastact.elu):
        cases += _elementwise("elu_alpha0.5", fastact.elu, kind, flat, F32, alpha=0.5)
    cases += _with_out(f"elu_general-forward-float32-{x_size(flat, F32)}", flat, F32, _general_elu)
    cases += _elementwise("sigmoid", fastact.sigmoid, "backward", _shape(SMALL, F64), F64)
    cases += _elementwise("sigmoid", fastact.sigmoid, "forward", _shape(SMALL, F16), F16)
    cases += _elementwise("gelu", fastact.gelu, "backward", _shape(SMALL, F16), F16)
    # results of the float32 loop cast into a float64 out= (and float64 into float32)
    cases.append(Case("sigmoid-forward-float32-into-float64-out", flat, F32,
                      lambda x, g, o: fastact.sigmoid(x, out=o), _same, out_dtype=F64))
    cases.append(Case("gelu-backward-float64-into-float32-out", _shape(SMALL, F64), F64,
                      lambda x, g, o: fastact.gelu.backward(g, x, out=o), _same, out_dtype=F32))
    for f in fastact.ROW_FUNCTIONS.values():
        for shape in (_shape(ROWS, F32, (1024,)), _shape(ROWS, F32, (128, 128))):
            for axis in range(-1, len(shape) - 1):
                cases += _rows(f, shape, F32, axis)
        cases += _rows(f, _shape(ROWS, F64, (1024,)), F64, 0)
        cases += _rows(f, _shape(ROWS, F16, (1024,)), F16, -1)
        cases += _rows(f, _shape(ROWS, F16, (128, 128)), F16, 0)  # strided rows
    # in place (out=x, out=grad): identical operands need no copy
    cases += [Case("sigmoid-forward-inplace", flat, F32, lambda x, g, o: fastact.sigmoid(x, out=x)),
              Case("sigmoid-backward-inplace", flat, F32,
                   lambda x, g, o: fastact.sigmoid.backward(g, x, out=g))]
    rows = _shape(ROWS, F32, (1024,))
    for f in fastact.ROW_FUNCTIONS.values():
        cases += [Case(f"{f.__name__}-inplace", rows, F32, lambda x, g, o, f=f: f(x, out=x)),
                  Case(f"{f.__name__}-backward-inplace", rows, F32,
                       lambda x, g, o, f=f: f.backward(g, x, out=g)),
                  Case(f"{f.__name__}-axis0-inplace", rows, F32, lambda x, g, o, f=f: f(x, axis=0, out=x)),
                  Case(f"{f.__name__}-backward-axis0-inplace-y", rows, F32,
                       lambda x, g, o, f=f: f.backward(g, x, axis=0, out=x))]
    return cases + _layer_cases()


def _layer_cases():
    cases = []
    two = _shape(ROWS, F32, (1024,))
    for axis in (-1, 0):
        def out_shape(shape, axis=axis):
            s = list(shape)
            s[axis] //= 2
            return tuple(s)

        cases += _with_out(f"maxout-k2-axis{axis}", two, F32,
                           lambda x, g, o, axis=axis: fastact.maxout(x, 2, axis=axis, out=o), out_shape)
        cases.append(Case(f"maxout-backward-k2-axis{axis}", two, F32,
                          lambda x, g, o, axis=axis, out_shape=out_shape: fastact.maxout.backward(
                              _head(g, out_shape(x.shape)), x, 2, axis=axis)))
    # per-channel weights, channels last (one row of weights reused) and (N, C, L);
    # one weight: the whole array in one channel
    for label, shape in (("channels_last", _shape(ROWS, F32, (64,))),
                         ("ncl", _shape(ROWS, F32, (64, 256))),
                         ("scalar", _shape(ROWS, F32))):
        w = np.float32(0.25) if label == "scalar" else np.linspace(0.01, 0.5, 64, dtype=F32)
        cases += _with_out(f"prelu-{label}", shape, F32,
                           lambda x, g, o, w=w: fastact.prelu(x, w, axis=1, out=o))
        cases.append(Case(f"prelu-{label}-inplace", shape, F32,
                          lambda x, g, o, w=w: fastact.prelu(x, w, axis=1, out=x)))
        cases.append(Case(f"prelu-backward-{label}", shape, F32,
                          lambda x, g, o, w=w: fastact.prelu.backward(g, x, w, axis=1)))
    for f in fastact.GATED_FUNCTIONS.values():
        cases += _with_out(f"{f.__name__}-ab", two, F32, lambda x, g, o, f=f: f(x, g, out=o))
        cases += _with_out(f"{f.__name__}-split", two, F32, lambda x, g, o, f=f: f(x, out=o), _half_last)
        cases.append(Case(f"{f.__name__}-backward-ab", two, F32,
                          lambda x, g, o, f=f: f.backward(g, x, g)))
        cases.append(Case(f"{f.__name__}-backward-split", two, F32,
                          lambda x, g, o, f=f: f.backward(_head(g, _half_last(x.shape)), x)))
    return cases


# ------------------------------------------ the measurement can fail


def _copy_input(x, g, o):
    np.copyto(o, fastact.sigmoid(x.copy()))


def _copy_chunks(x, g, o):
    # each thread copies its own chunk: the pool's workers allocate too
    def chunk(i0, i1):
        fastact.sigmoid(x[i0:i1].copy(), out=o[i0:i1])

    threads.for_chunks(chunk, x.size, x.size)


def _second_output(x, g, o):
    return fastact.sigmoid(x) * 1.0


# wasteful calls, measured as the others: id -> (run, out_shape, the least
# allocation at the peak, in units of the input's size)
WASTEFUL = {"waste-copy-input": (_copy_input, _same, 2.0),
            "waste-copy-chunks": (_copy_chunks, _same, 0.5),
            "waste-second-output": (_second_output, None, 2.0)}


def _wasteful_cases():
    return [Case(cid, _shape(ROWS, F32), F32, run, out_shape)
            for cid, (run, out_shape, _) in WASTEFUL.items()]


CASES = _big_cases() + _small_cases() + _wasteful_cases()
BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES)


def _known(reason, *ids):
    return {cid: pytest.mark.xfail(strict=True, reason=reason) for cid in ids}


# input-sized temporaries in fastact/functions/* (the fixes belong there):
# none known; an entry is _known(reason, *case ids)
KNOWN = {
}
assert set(KNOWN) <= set(BY_ID)


def run_cases(ids):
    """{id: measurement} of the cases ``ids``, in this process, in CASES' order."""
    fastact.set_num_threads(2)
    results = {}
    t0 = time.perf_counter()
    warm = {}  # (shape, dtype) -> the small warm-up arrays
    key, cache = None, {}  # the full-size arrays of the cases of one (shape, dtype)
    for case in CASES:
        if case.id not in ids:
            continue
        shape = case.warm_shape()
        for _ in range(case.warmups):  # compiles, starts the pool
            case.run(*case.arrays(shape, warm.setdefault((shape, case.dtype), {})))
        if key != (case.shape, case.dtype):
            key, cache = (case.shape, case.dtype), {}
        x, g, o = case.arrays(case.shape, cache)
        res, traced, rss = measure(case.run, x, g, o)
        print(case.id, time.perf_counter() - t0, file=sys.stderr)  # shown on a timeout
        results[case.id] = {"nbytes": x.nbytes, "expect": fresh_bytes(res, (x, g, o)),
                            "traced": traced, "rss": rss}
        del res, x, g, o
    return results


@pytest.fixture(scope="module")
def measured(request):
    # only the selected cells' cases (pytest -k ...)
    ids = {item.callspec.params["cid"] for item in request.session.items
           if getattr(item, "module", None) is sys.modules[__name__] and hasattr(item, "callspec")}
    proc = subprocess.run([sys.executable, "-m", "tests.cpu.test_memory", *sorted(ids)], cwd=ROOT,
                          env=ENV, check=False, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("cid", [pytest.param(c.id, marks=KNOWN.get(c.id, ()))
                                 for c in CASES if c.id not in WASTEFUL])
def test_allocates_only_outputs(measured, cid):
    m = measured[cid]
    assert not problems(m), (cid, problems(m), m)


@pytest.mark.parametrize("cid", list(WASTEFUL))
def test_measurement_flags_waste(measured, cid):
    m, least = measured[cid], WASTEFUL[cid][2] * measured[cid]["nbytes"]
    assert m["traced"] >= least and m["rss"] >= 0.9 * least, m
    assert len(problems(m)) == 2, m


if __name__ == "__main__":
    print(json.dumps(run_cases(set(sys.argv[1:]) or set(BY_ID))))
