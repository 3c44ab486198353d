"""CUDA row kernels of the softmax family: softmax / log_softmax, forward and
backward, over (rows, n) device views with any strides.

This module holds the kernels (one factory per direction and path), their
signatures, ``run`` (the launch) and ``kernel_specs``; the per-entry steps
and the warp merges they call are in ``fastact.cuda.rows_steps``.

Built lazily like every kernel of the backend (``fastact.cuda.target``:
nothing imports ``numba.cuda`` until a kernel is asked for); one
``@cuda.jit`` kernel per (function, path, storage dtype), in a
``KernelTable``. The accuracy design is the CPU's (``fastact.scalar.rows`` /
``rows32``) and the scalar pieces are the same functions (``exp_diff``,
``rows32.exp_diff`` (float32), ``two_sum_err``, ``two_prod_err``,
``exp_dd``, ``fastact.scalar.mathlib.exp`` / ``log1p``); what is new here is
how a row is split over threads and the partial results merged.

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
(``exp_diff``; float32: ``fastact.scalar.rows32.exp_diff``), divided by the
normaliser; ``log_softmax``: ``(x_i - m) - log1p(rest)`` plus the error of
``x_i - m``. float16 and float32 storage compute in float32 with float64
sums, float64 in float64.

Special rows as the CPU: -inf entries give 0 / -inf; a row holding NaN or
+inf (recorded as a maximum of +inf), or only -inf, is NaN throughout.

Backward: one pass for the row sum (softmax: the dot product sum(g*y) as a
double-double, the product's error by Dekker's ``two_prod_err`` in float64,
exact for float32 storage; log_softmax: the compensated sum of g), merged
the same way, then one pass that writes. softmax: ``y*((g - s) - c)``
(float64: halved where g - s overflows, ``softmax_backward_elem_wide``);
log_softmax: the CPU float64 element step (``g - exp(y) S``, with exp as a
double-double where the result cancels). A row sum of +-inf or NaN is
summed again scaled, as on the CPU (``wide_sum``): the formula's IEEE
value, never a NaN from an error term.

In the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, no warp shuffles) the
same kernels run as Python, with ``shfl_xor_sync`` emulated per warp.
"""

from __future__ import annotations

import sys

import numpy as np

from fastact.cuda import target
from fastact.cuda.rows_steps import (
    INF,
    NAN,
    NEG_INF,
    build_warp_merge3,
    build_warp_merge4,
    dot_push32,
    dot_push64,
    log_softmax_a,
    log_softmax_bwd_elem32,
    merge3,
    merge32,
    push32,
    rest32,
    softmax_a,
    softmax_elem32,
    start32,
    start64,
    sum_push,
    wide_sum,
)
from fastact.scalar.registry import KernelTable
from fastact.scalar.rows import (
    INV_SCALE,
    log_softmax_backward_elem,
    log_softmax_backward_elem_scaled,
    log_softmax_elem,
    merge64,
    push64,
    rest64,
    softmax_backward_elem,
    softmax_backward_elem_scaled,
    softmax_backward_elem_wide,
    softmax_elem,
)
from fastact.scalar.rows32 import log_softmax_elem32

_KERNELS = KernelTable()
#: ``numba.cuda`` once a kernel is built (``target.bind``): the kernels name
#: it as a module global
cuda = None

#: rows of at most this many entries take the warp path (one warp per row);
#: longer rows one block each (read at launch: tests may lower it)
WARP_MAX_N = 1024
#: threads per block (both paths; a multiple of 32, at most 1024)
THREADS = 256
#: grid-stride loops: at most this many blocks per SM
BLOCKS_PER_SM = 16
#: warps per block at most (the block path's shared arrays)
NWMAX = 32

NAMES = ("softmax", "log_softmax", "softmax_backward", "log_softmax_backward")
PATHS = ("warp", "block")
_DTYPES = ("float16", "float32", "float64")


# ------------------------------------------------------------ forward kernels
# A factory per path takes the steps of one variant (``_forward_steps`` /
# ``_backward_steps``) and returns the kernel function naming them as
# closure variables, which Numba compiles in as constants (the simulator
# calls them as Python). ``pyfunc`` names the kernel.


def _forward_steps(name, dtype):
    """(W, D, START, PUSH, MERGE, REST, WARP_MERGE, A, ELEM): the storage's
    compute type, float64, and the steps of forward kernel ``name``."""
    import numba

    f64 = np.dtype(dtype) == np.float64
    W = numba.float64 if f64 else numba.float32
    START, PUSH, MERGE, REST = (start64, push64, merge64, rest64) if f64 else (
        start32, push32, merge32, rest32)
    if name == "softmax":
        A, ELEM = softmax_a, (softmax_elem if f64 else softmax_elem32)
    else:
        A, ELEM = log_softmax_a, (log_softmax_elem if f64 else log_softmax_elem32)
    return W, numba.float64, START, PUSH, MERGE, REST, build_warp_merge4(MERGE), A, ELEM


# one warp per row: the lanes' states merged by the butterfly
def _forward_warp(W, D, START, PUSH, MERGE, REST, WARP_MERGE, A, ELEM):
    def forward_warp(x, out):
        tid = cuda.threadIdx.x
        lane = tid & 31
        wpb = cuda.blockDim.x >> 5
        rows = x.shape[0]
        n = x.shape[1]
        row = np.int64(cuda.blockIdx.x) * wpb + (tid >> 5)
        rstep = np.int64(cuda.gridDim.x) * wpb
        while row < rows:
            m, r, s, c = START(W(x[row, 0]))
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

    return forward_warp


# one block per row: the warps' states merged from shared memory by warp 0
def _forward_block(W, D, START, PUSH, MERGE, REST, WARP_MERGE, A, ELEM):
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
            m, r, s, c = START(W(x[row, 0]))
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

    return forward_block


# ------------------------------------------------------------ backward kernels


def _backward_steps(name, dtype):
    """(W, D, PUSH, ELEM, SCALED, WARP_MERGE): the storage's compute type,
    float64, and the steps of backward kernel ``name`` (SCALED: the write
    step of a row whose sum overflowed, see ``wide_sum``)."""
    import numba

    f64 = np.dtype(dtype) == np.float64
    W = numba.float64 if f64 else numba.float32
    if name == "softmax_backward":
        PUSH = dot_push64 if f64 else dot_push32
        # float32 storage computes in float64, where its g - S cannot overflow
        ELEM = softmax_backward_elem_wide if f64 else softmax_backward_elem
        SCALED = softmax_backward_elem_scaled
    else:
        PUSH = sum_push
        ELEM = log_softmax_backward_elem if f64 else log_softmax_bwd_elem32
        SCALED = log_softmax_backward_elem_scaled
    return W, numba.float64, PUSH, ELEM, SCALED, build_warp_merge3()


# Both paths: a row sum that is +-inf or NaN (rare; the same in every
# thread of the row, so the branch is uniform) is summed again with g scaled
# by 2**-64, as on the CPU: an overflow of finite terms is undone, and a
# +-inf operand drops the compensation (inf - inf = NaN) for the formula's
# IEEE value.


# one warp per row: the lanes' sums merged by the butterfly
def _backward_warp(W, D, PUSH, ELEM, SCALED, WARP_MERGE):
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
            scaled = False
            if not (abs(s) < INF):
                s2 = D(0.0)
                c2 = D(0.0)
                cc2 = D(0.0)
                j = np.int64(lane)
                while j < n:
                    s2, c2, cc2 = PUSH(s2, c2, cc2, D(g[row, j]) * INV_SCALE, D(y[row, j]))
                    j += 32
                s2, c2, cc2 = WARP_MERGE(s2, c2, cc2)
                s, c, scaled = wide_sum(s, s2, c2 + cc2)
            j = np.int64(lane)
            while j < n:
                gj = D(g[row, j])
                yj = D(y[row, j])
                out[row, j] = W(SCALED(gj, yj, s, c) if scaled else ELEM(gj, yj, s, c))
                j += 32
            row += rstep

    return backward_warp


# one block per row: the warps' sums merged from shared memory by every thread
def _backward_block(W, D, PUSH, ELEM, SCALED, WARP_MERGE):
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
            scaled = False
            if not (abs(s) < INF):
                s2 = D(0.0)
                c2 = D(0.0)
                cc2 = D(0.0)
                j = np.int64(tid)
                while j < n:
                    s2, c2, cc2 = PUSH(s2, c2, cc2, D(g[row, j]) * INV_SCALE, D(y[row, j]))
                    j += nt
                s2, c2, cc2 = WARP_MERGE(s2, c2, cc2)
                if lane == 0:
                    ss[warp] = s2
                    sc[warp] = c2
                    scc[warp] = cc2
                cuda.syncthreads()
                s2 = ss[0]
                c2 = sc[0]
                cc2 = scc[0]
                for w in range(1, nw):
                    s2, c2, cc2 = merge3(s2, c2, cc2, ss[w], sc[w], scc[w])
                cuda.syncthreads()
                s, c, scaled = wide_sum(s, s2, c2 + cc2)
            j = np.int64(tid)
            while j < n:
                gj = D(g[row, j])
                yj = D(y[row, j])
                out[row, j] = W(SCALED(gj, yj, s, c) if scaled else ELEM(gj, yj, s, c))
                j += nt
            row += cuda.gridDim.x

    return backward_block


_FACTORIES = {
    ("forward", "warp"): _forward_warp,
    ("forward", "block"): _forward_block,
    ("backward", "warp"): _backward_warp,
    ("backward", "block"): _backward_block,
}


def pyfunc(name, path, dtype):
    """The Python kernel function of ``name`` ("softmax", ...) for the
    ``path`` ("warp" or "block") and ``dtype`` storage."""
    if name not in NAMES:
        raise ValueError(f"fastact: no CUDA row kernel {name!r}")
    if path not in PATHS:
        raise ValueError(f"fastact: no CUDA row path {path!r}")
    target.bind(globals())
    dtype = np.dtype(dtype)
    if name.endswith("_backward"):
        fn = _FACTORIES["backward", path](*_backward_steps(name, dtype))
    else:
        fn = _FACTORIES["forward", path](*_forward_steps(name, dtype))
    fn.__name__ = f"{name}_{path}_{dtype.name}"
    return fn


def signature(name, dtype):
    """The Numba signature of ``pyfunc(name, path, dtype)`` (any strides)."""
    t = np.dtype(dtype).name
    a2 = f"{t}[:, :]"
    nin = 2 if name.endswith("_backward") else 1
    return f"void({', '.join([a2] * (nin + 1))})"


def kernel(name, path, dtype):
    """The lazily compiled ``@cuda.jit`` kernel (specialized on first launch)."""
    key = (name, path, np.dtype(dtype))
    return _KERNELS.get(key, lambda: target.jit(pyfunc(name, path, dtype)))


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
    c = target.cuda()
    path = "warp" if n <= WARP_MAX_N else "block"
    if target.simulated():  # two warps per block: cross-warp merges run
        threads, cap = target.SIM_WARP_THREADS, target.SIM_BLOCKS
    else:
        threads = THREADS
        cap = c.get_current_device().MULTIPROCESSOR_COUNT * BLOCKS_PER_SM
    need = -(-rows // (threads // 32)) if path == "warp" else rows
    blocks = max(1, min(need, cap))
    k = kernel(name, path, dt)
    with target.exact_fp():
        if target.simulated():
            # the emulated shuffles hand the GIL between the warp's threads
            # at every exchange: a short switch interval for the launch
            old = sys.getswitchinterval()
            sys.setswitchinterval(target.SIM_SWITCH_INTERVAL)
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
        for path in PATHS:
            for dt in dtypes:
                fn = pyfunc(name, path, dt)
                yield fn.__name__, fn, signature(name, dt)
