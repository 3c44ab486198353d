"""CUDA row kernels of the softmax family: softmax / log_softmax, forward and
backward, over (rows, n) device views with any strides.

Built lazily like ``_cuda``'s kernels (nothing imports ``numba.cuda`` until a
kernel is asked for); one ``@cuda.jit`` kernel per (function, path, storage
dtype), kept in ``_kernels``. The accuracy design is the CPU's
(``_rowkernels`` / ``_rowkernels32``) and the scalar pieces are the same
functions (``exp_diff``, ``_exp_diff`` (float32), ``two_sum_err``,
``two_prod_err``, ``exp_dd``, ``_mathlib.exp`` / ``log1p``); what is new here
is how a row is split over threads and the partial results merged.

Layout. A row of at most ``WARP_MAX_N`` entries is one warp's (a block holds
several warps, one row each); a longer row is one block's. Rows are a
grid-stride loop (warps / blocks step over them), element offsets are 64-bit
(Numba's index arithmetic is ``intp``). Each forward row is read twice: a
statistics pass (the maximum and the normaliser together) and a pass that
reads again and writes.

Statistics pass (online max + sum). Each thread keeps ``(m, r, s, c)``: its
maximum ``m``, a reference ``r`` and the compensated (Neumaier) sum ``s + c``
of ``exp(x_i - r)`` over its entries except one occurrence of ``m`` (whose
term is implicit): a new maximum moves the old maximum's term into the sum,
so every entry costs one exp. As on the CPU, ``r`` only moves when an entry
exceeds it by more than the gap (600 in float64, 64 for float32 terms, so no
term overflows), and then the sum is rescaled; every thread of a row starts
from the same reference, the row's first entry, so for rows that span less
than the gap all threads share ``r`` and merging two states needs no rescale
at all (the sums add, the smaller maximum's term joins them). Where
references differ (a row spanning more than the gap, or a first entry of
-inf) the rescale is ``exp`` as a double-double (float64; float32 states use
a float64 exp) and loses nothing. States are merged across the lanes of a
warp with a butterfly of ``shfl_xor_sync`` (every lane ends with the row's
state: the merge is symmetric, bit for bit), then, in the block path, across
the warps in shared memory. The result is ``rest = sum_{i != argmax}
exp(x_i - m)`` (one final rescale from ``r`` to ``m``, a double-double exp in
float64), so the normaliser is ``1 + rest`` and ``log_softmax`` of a dominant
entry is ``-log1p(rest)``, the tiny negative number (as the CPU kernels).

Write pass: ``exp(x_i - m)`` with the rounding error of ``x_i - m`` carried
(``exp_diff``; float32: ``_rowkernels32._exp_diff``), divided by the
normaliser; ``log_softmax``: ``(x_i - m) - log1p(rest)`` plus the error of
``x_i - m``. float16 and float32 storage compute in float32 with float64
sums, float64 in float64.

Special rows as the CPU: -inf entries give 0 / -inf; a row holding NaN or
+inf (recorded as a maximum of +inf), or only -inf, is NaN throughout.

Backward: one pass for the row sum (softmax: the dot product sum(g*y) as a
double-double, the product's error by Dekker's ``two_prod_err`` in float64,
exact for float32 storage; log_softmax: the compensated sum of g), merged
the same way, then one pass that writes. softmax: ``y*((g - s) - c)``;
log_softmax: the CPU float64 element step (``g - exp(y) S``, with exp as a
double-double where the result cancels). float32 storage keeps the CPU
float32 kernel's results on non-finite sums (where the compensation is NaN):
``g - exp(y) S`` without it.

In the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, no warp shuffles) the
same kernels run as Python, with ``shfl_xor_sync`` emulated per warp.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

from fastact.cuda import target as _cuda
from fastact.scalar.eft import two_prod_err, two_sum_err
from fastact.scalar.registry import scalar
from fastact.scalar.mathlib import exp, log1p
from fastact.scalar.rows import (
    exp_diff,
    merge64,
    push64,
    rest64,
    log_softmax_backward_elem,
    log_softmax_elem,
    softmax_backward_elem,
    softmax_elem,
)
from fastact.scalar.rows32 import _CANCEL as CANCEL32
from fastact.scalar.rows32 import _exp_diff as exp_diff32
from fastact.scalar.rows32 import log_softmax_elem32

_kernels = {}
#: ``numba.cuda`` once a kernel is built: the kernels name it as a module
#: global (the simulator swaps globals bound to numba.cuda, not closures)
cuda = None

#: rows of at most this many entries take the warp path (one warp per row);
#: longer rows one block each (read at launch: tests may lower it)
WARP_MAX_N = 1024
#: threads per block (both paths; a multiple of 32, at most 1024)
THREADS = 256
#: grid-stride loops: at most this many blocks per SM
BLOCKS_PER_SM = 16
#: in the simulator (each thread a Python thread): two warps per block and at
#: most two blocks, so cross-warp merges and grid strides are exercised
SIM_THREADS = 64
SIM_BLOCKS = 2
SIM_SWITCH_INTERVAL = 1e-4

#: float32 terms exp(x - r) with x - r <= this cannot overflow (expf: 88.7)
RESCALE_GAP32 = 64.0

NAMES = ("softmax", "log_softmax", "softmax_backward", "log_softmax_backward")
_DTYPES = ("float16", "float32", "float64")
_FULL = 0xFFFFFFFF
NEG_INF = -math.inf
INF = math.inf
NAN = math.nan


def _bind():
    global cuda
    if cuda is None:
        cuda = _cuda.cuda()


# ---------------------------------------------------------- state helpers
# float64 forward state (m, r, s, c): ``_rowkernels.push64`` / ``merge64`` /
# ``rest64``, the CPU's own. float32 storage (below): float32 m, r.


# float32 forward state: m, r float32; s, c float64 (terms are float32 exps)


@scalar
def push32(v, m, r, s, c):
    if v > m:
        if v == INF:
            return np.float32(INF), r, s, c
        lo = m
        m = v
        if v > r + RESCALE_GAP32:
            if s != 0.0 or c != 0.0:
                f = exp_diff(np.float64(r), np.float64(v))
                s *= f
                c *= f
            r = v
    elif v <= m:
        lo = v
    else:
        return np.float32(INF), r, s, c
    if lo > NEG_INF and m < INF:
        t = np.float64(exp_diff32(lo, r))
        u = s + t
        c += two_sum_err(s, t, u)
        s = u
    return m, r, s, c


@scalar
def merge32(m1, r1, s1, c1, m2, r2, s2, c2):
    if r2 > r1:
        m1, r1, s1, c1, m2, r2, s2, c2 = m2, r2, s2, c2, m1, r1, s1, c1
    if r2 != r1 and r2 > NEG_INF and (s2 != 0.0 or c2 != 0.0):
        f = exp_diff(np.float64(r2), np.float64(r1))
        s2 *= f
        c2 *= f
    u = s1 + s2
    c = (c1 + c2) + two_sum_err(s1, s2, u)
    hi = max(m1, m2)
    lo = min(m1, m2)
    if lo > NEG_INF and hi < INF:
        t = np.float64(exp_diff32(lo, r1))
        s = u + t
        c += two_sum_err(u, t, s)
        u = s
    return hi, r1, u, c


@scalar
def rest32(m, r, s, c):
    if r == m:
        return s + c
    return (s + c) * exp_diff(np.float64(r), np.float64(m))


# the write-pass values; ``a``: the normaliser 1 + rest, or log1p(rest)


@scalar
def softmax_a(rest):
    return 1.0 + rest


@scalar
def log_softmax_a(rest):
    return log1p(rest)


@scalar
def softmax_elem32(v, m, a):
    if v == NEG_INF:
        return 0.0
    return np.float64(exp_diff32(v, m)) / a


# backward sums: (s, c, cc), the compensation c itself compensated (cc)


@scalar
def add3(s, c, cc, p, e):
    """(s, c, cc) plus a term p whose own rounding error is e."""
    u = s + p
    t = two_sum_err(s, p, u) + e
    v = c + t
    cc += two_sum_err(c, t, v)
    return u, v, cc


@scalar
def merge3(s1, c1, cc1, s2, c2, cc2):
    u = s1 + s2
    e = two_sum_err(s1, s2, u)
    v = c1 + c2
    cc = (cc1 + cc2) + two_sum_err(c1, c2, v)
    w = v + e
    cc += two_sum_err(v, e, w)
    return u, w, cc


@scalar
def dot_push64(s, c, cc, g, y):
    p = g * y
    return add3(s, c, cc, p, two_prod_err(g, y, p))


@scalar
def dot_push32(s, c, cc, g, y):
    return add3(s, c, cc, g * y, 0.0)  # float32 * float32: exact in float64


@scalar
def sum_push(s, c, cc, g, y):
    return add3(s, c, cc, g, 0.0)


@scalar
def softmax_bwd_elem32(g, y, s, c):
    if not (abs(c) < INF):  # non-finite sum: the CPU float32 kernel's NaN
        return y * (g - s) if s == s and abs(s) < INF else NAN
    return softmax_backward_elem(g, y, s, c)


@scalar
def log_softmax_bwd_elem32(g, y, s, c):
    """float32 storage (as ``_rowkernels32``): g - exp(y) S in float64; where
    it cancels, the float64 step; a non-finite compensation is left out."""
    e = exp(y) if y == y else y
    p = e * s
    cz = c if abs(c) < INF else 0.0
    r = (g - p) - e * cz
    if abs(r) < CANCEL32 * abs(p):
        return log_softmax_backward_elem(g, y, s, c)
    return r


# ------------------------------------------------- warp shuffle (simulator)

_sim_lock = threading.Lock()


def _sim_exchange(values, lane_mask):
    """``shfl_xor_sync`` of a tuple of values for the simulator (which has
    no warp shuffles): the lanes of the calling thread's warp exchange them
    through a barrier. Every lane of the warp calls it (full mask), as in
    these kernels."""
    t = threading.current_thread()
    mgr = t._manager
    tid = t.thread_id
    w, lane = tid >> 5, tid & 31
    with _sim_lock:
        warps = mgr.__dict__.setdefault("_fastact_warps", {})
        ent = warps.get(w)
        if ent is None:
            nthreads = int(np.prod(mgr._block_dim))
            size = min(32, nthreads - 32 * w)
            ent = warps[w] = (threading.Barrier(size, timeout=120), [None] * 32, size)
    bar, slots, size = ent
    slots[lane] = values
    bar.wait()
    other = lane ^ lane_mask
    res = slots[other] if other < size else values
    bar.wait()
    return res


def _sim_xch4(a, b, c, d, k):
    return _sim_exchange((a, b, c, d), k)


def _sim_xch3(a, b, c, k):
    return _sim_exchange((a, b, c), k)


_xch = None


def _exchanges():
    """(xch4, xch3): device functions returning their arguments as held by
    lane ``lane ^ k`` (``shfl_xor_sync`` over the full warp)."""
    global _xch
    if _xch is None:
        if _cuda.simulated():
            _xch = (_sim_xch4, _sim_xch3)
        else:
            from numba.cuda.intrinsics import shfl_xor_sync as X

            c = _cuda.cuda()
            FULL = _FULL

            def xch4(a, b, s, d, k):
                return X(FULL, a, k), X(FULL, b, k), X(FULL, s, k), X(FULL, d, k)

            def xch3(a, b, s, k):
                return X(FULL, a, k), X(FULL, b, k), X(FULL, s, k)

            _xch = (c.jit(device=True)(xch4), c.jit(device=True)(xch3))
    return _xch


def _device(fn):
    """``fn`` as a device function (plain Python in the simulator)."""
    return fn if _cuda.simulated() else _cuda.cuda().jit(device=True)(fn)


def _warp_merge4(merge):
    """Device function: a forward state (m, r, s, c) merged over the lanes
    of the warp with ``merge`` (butterfly; every lane ends with the warp's
    state)."""
    xch = _exchanges()[0]

    def warp_merge4(m, r, s, c):
        k = 16
        while k > 0:
            m2, r2, s2, c2 = xch(m, r, s, c, k)
            m, r, s, c = merge(m, r, s, c, m2, r2, s2, c2)
            k >>= 1
        return m, r, s, c

    return _device(warp_merge4)


def _warp_merge3():
    """Device function: a backward sum (s, c, cc) merged over the warp."""
    xch = _exchanges()[1]

    def warp_merge3(s, c, cc):
        k = 16
        while k > 0:
            s2, c2, cc2 = xch(s, c, cc, k)
            s, c, cc = merge3(s, c, cc, s2, c2, cc2)
            k >>= 1
        return s, c, cc

    return _device(warp_merge3)


# ------------------------------------------------------------ kernel bodies


def _types(dtype):
    import numba

    f64 = np.dtype(dtype) == np.float64
    return (numba.float64 if f64 else numba.float32), f64


def _forward_fn(name, path, dtype):
    import numba

    _bind()
    W, f64 = _types(dtype)
    D = numba.float64
    PUSH, MERGE, REST = (push64, merge64, rest64) if f64 else (push32, merge32, rest32)
    WARP_MERGE = _warp_merge4(MERGE)
    A = softmax_a if name == "softmax" else log_softmax_a
    if name == "softmax":
        ELEM = softmax_elem if f64 else softmax_elem32
    else:
        ELEM = log_softmax_elem if f64 else log_softmax_elem32
    NWMAX = 32  # warps per block at most (shared arrays)

    def forward_warp(x, out):
        tid = cuda.threadIdx.x
        lane = tid & 31
        wpb = cuda.blockDim.x >> 5
        rows = x.shape[0]
        n = x.shape[1]
        row = np.int64(cuda.blockIdx.x) * wpb + (tid >> 5)
        rstep = np.int64(cuda.gridDim.x) * wpb
        while row < rows:
            r0 = W(x[row, 0])
            m = W(NEG_INF)
            r = r0 if (r0 > NEG_INF and r0 < INF) else W(NEG_INF)
            s = D(0.0)
            c = D(0.0)
            j = np.int64(lane)
            while j < n:
                m, r, s, c = PUSH(W(x[row, j]), m, r, s, c)
                j += 32
            m, r, s, c = WARP_MERGE(m, r, s, c)
            j = np.int64(lane)
            if m < INF and m > NEG_INF:
                a = A(REST(m, r, s, c))
                while j < n:
                    out[row, j] = W(ELEM(W(x[row, j]), m, a))
                    j += 32
            else:
                while j < n:
                    out[row, j] = NAN
                    j += 32
            row += rstep

    def forward_block(x, out):
        sm = cuda.shared.array(NWMAX, W)
        sr = cuda.shared.array(NWMAX, W)
        ss = cuda.shared.array(NWMAX, D)
        sc = cuda.shared.array(NWMAX, D)
        sa = cuda.shared.array(1, D)
        sb = cuda.shared.array(1, W)
        tid = cuda.threadIdx.x
        lane = tid & 31
        warp = tid >> 5
        nt = cuda.blockDim.x
        nw = nt >> 5
        rows = x.shape[0]
        n = x.shape[1]
        row = np.int64(cuda.blockIdx.x)
        while row < rows:
            r0 = W(x[row, 0])
            m = W(NEG_INF)
            r = r0 if (r0 > NEG_INF and r0 < INF) else W(NEG_INF)
            s = D(0.0)
            c = D(0.0)
            j = np.int64(tid)
            while j < n:
                m, r, s, c = PUSH(W(x[row, j]), m, r, s, c)
                j += nt
            m, r, s, c = WARP_MERGE(m, r, s, c)
            if lane == 0:
                sm[warp] = m
                sr[warp] = r
                ss[warp] = s
                sc[warp] = c
            cuda.syncthreads()
            if warp == 0:  # one warp merges the warps' states, in order
                m = sm[0]
                r = sr[0]
                s = ss[0]
                c = sc[0]
                for w in range(1, nw):
                    m, r, s, c = MERGE(m, r, s, c, sm[w], sr[w], ss[w], sc[w])
                a = D(0.0)
                if m < INF and m > NEG_INF:
                    a = A(REST(m, r, s, c))
                if tid == 0:
                    sb[0] = m  # the row's maximum and value for every thread
                    sa[0] = a
            cuda.syncthreads()
            m = sb[0]
            a = sa[0]
            j = np.int64(tid)
            if m < INF and m > NEG_INF:
                while j < n:
                    out[row, j] = W(ELEM(W(x[row, j]), m, a))
                    j += nt
            else:
                while j < n:
                    out[row, j] = NAN
                    j += nt
            # no barrier needed here: the next row writes sb/sa only after
            # its first barrier, which every thread passes after reading them
            row += cuda.gridDim.x

    fn = forward_warp if path == "warp" else forward_block
    fn.__name__ = f"{name}_{path}_{np.dtype(dtype).name}"
    return fn


def _backward_fn(name, path, dtype):
    import numba

    _bind()
    W, f64 = _types(dtype)
    D = numba.float64
    WARP_MERGE = _warp_merge3()
    if name == "softmax_backward":
        PUSH = dot_push64 if f64 else dot_push32
        ELEM = softmax_backward_elem if f64 else softmax_bwd_elem32
    else:
        PUSH = sum_push
        ELEM = log_softmax_backward_elem if f64 else log_softmax_bwd_elem32
    NWMAX = 32

    def backward_warp(g, y, out):
        tid = cuda.threadIdx.x
        lane = tid & 31
        wpb = cuda.blockDim.x >> 5
        rows = y.shape[0]
        n = y.shape[1]
        row = np.int64(cuda.blockIdx.x) * wpb + (tid >> 5)
        rstep = np.int64(cuda.gridDim.x) * wpb
        while row < rows:
            s = D(0.0)
            c = D(0.0)
            cc = D(0.0)
            j = np.int64(lane)
            while j < n:
                s, c, cc = PUSH(s, c, cc, D(g[row, j]), D(y[row, j]))
                j += 32
            s, c, cc = WARP_MERGE(s, c, cc)
            c += cc
            j = np.int64(lane)
            while j < n:
                out[row, j] = W(ELEM(D(g[row, j]), D(y[row, j]), s, c))
                j += 32
            row += rstep

    def backward_block(g, y, out):
        ss = cuda.shared.array(NWMAX, D)
        sc = cuda.shared.array(NWMAX, D)
        scc = cuda.shared.array(NWMAX, D)
        tid = cuda.threadIdx.x
        lane = tid & 31
        warp = tid >> 5
        nt = cuda.blockDim.x
        nw = nt >> 5
        rows = y.shape[0]
        n = y.shape[1]
        row = np.int64(cuda.blockIdx.x)
        while row < rows:
            s = D(0.0)
            c = D(0.0)
            cc = D(0.0)
            j = np.int64(tid)
            while j < n:
                s, c, cc = PUSH(s, c, cc, D(g[row, j]), D(y[row, j]))
                j += nt
            s, c, cc = WARP_MERGE(s, c, cc)
            if lane == 0:
                ss[warp] = s
                sc[warp] = c
                scc[warp] = cc
            cuda.syncthreads()
            # every thread merges the warps' states in the same order
            s = ss[0]
            c = sc[0]
            cc = scc[0]
            for w in range(1, nw):
                s, c, cc = merge3(s, c, cc, ss[w], sc[w], scc[w])
            c += cc
            cuda.syncthreads()  # read before the next row writes
            j = np.int64(tid)
            while j < n:
                out[row, j] = W(ELEM(D(g[row, j]), D(y[row, j]), s, c))
                j += nt
            row += cuda.gridDim.x

    fn = backward_warp if path == "warp" else backward_block
    fn.__name__ = f"{name}_{path}_{np.dtype(dtype).name}"
    return fn


def pyfunc(name, path, dtype):
    """The Python kernel function of ``name`` ("softmax", ...) for the
    ``path`` ("warp" or "block") and ``dtype`` storage."""
    if name not in NAMES:
        raise ValueError(f"fastact: no CUDA row kernel {name!r}")
    if path not in ("warp", "block"):
        raise ValueError(f"fastact: no CUDA row path {path!r}")
    factory = _backward_fn if name.endswith("_backward") else _forward_fn
    return factory(name, path, np.dtype(dtype))


def signature(name, dtype):
    """The Numba signature of ``pyfunc(name, path, dtype)`` (any strides)."""
    t = np.dtype(dtype).name
    a2 = f"{t}[:, :]"
    nin = 2 if name.endswith("_backward") else 1
    return f"void({', '.join([a2] * (nin + 1))})"


def kernel(name, path, dtype):
    """The lazily compiled ``@cuda.jit`` kernel (specialized on first launch)."""
    key = (name, path, np.dtype(dtype))
    k = _kernels.get(key)
    if k is None:
        with _cuda._lock:
            k = _kernels.get(key)
            if k is None:
                k = _kernels[key] = _cuda.jit(pyfunc(name, path, dtype))
    return k


# --------------------------------------------------------------- launches


def run(name, ins, out, stream):
    """``name`` ("softmax", "log_softmax", "softmax_backward",
    "log_softmax_backward") along the last axis of 2-D device arrays:
    ``ins`` [x] or [grad, y], ``out``, all (rows, n), any strides, on
    ``stream``. float16/float32 storage computes in float32 (float64 sums),
    float64 in float64."""
    if name not in NAMES:
        raise ValueError(f"fastact: no CUDA row kernel {name!r}")
    nin = 2 if name.endswith("_backward") else 1
    if len(ins) != nin:
        raise ValueError(f"fastact.{name}: expects {nin} input array(s), got {len(ins)}")
    shape = tuple(out.shape)
    if len(shape) != 2:
        raise ValueError(f"fastact.{name}: row kernels take 2-D (rows, n) arrays, got {shape}")
    for a in ins:
        if tuple(a.shape) != shape:
            raise ValueError(f"fastact.{name}: input shape {tuple(a.shape)} != out shape {shape}")
    dt = np.dtype(ins[0].dtype)
    for a in list(ins) + [out]:
        if np.dtype(a.dtype).name not in _DTYPES:
            raise TypeError(f"fastact.{name}: CUDA row kernels take float16/32/64, got {a.dtype}")
    if any(np.dtype(a.dtype) != dt for a in ins):
        raise TypeError(f"fastact.{name}: inputs must share one dtype")
    rows, n = shape
    if rows == 0 or n == 0:
        return out
    c = _cuda.cuda()
    path = "warp" if n <= WARP_MAX_N else "block"
    if _cuda.simulated():
        threads, cap = SIM_THREADS, SIM_BLOCKS
    else:
        threads = THREADS
        cap = c.get_current_device().MULTIPROCESSOR_COUNT * BLOCKS_PER_SM
    need = -(-rows // (threads // 32)) if path == "warp" else rows
    blocks = max(1, min(need, cap))
    k = kernel(name, path, dt)
    with _cuda.exact_fp():
        if _cuda.simulated():
            # the emulated shuffles hand the GIL between the warp's threads
            # at every exchange: a short switch interval for the launch
            old = sys.getswitchinterval()
            sys.setswitchinterval(SIM_SWITCH_INTERVAL)
            try:
                k[blocks, threads, stream](*ins, out)
            finally:
                sys.setswitchinterval(old)
        else:
            k[blocks, threads, stream](*ins, out)
    return out


# ------------------------------------------------------------ enumeration


def kernel_specs(dtypes=_DTYPES):
    """Every kernel of this module, for PTX checks: (name, pyfunc, signature)."""
    for name in NAMES:
        for path in ("warp", "block"):
            for dt in dtypes:
                fn = pyfunc(name, path, dt)
                yield fn.__name__, fn, signature(name, dt)
