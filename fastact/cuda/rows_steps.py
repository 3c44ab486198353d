"""The steps of the CUDA row kernels (``fastact.cuda.rows``): what one thread
does per entry, and how two threads' partial results merge.

Forward: the online (max, sum) states, ``start*`` / ``push*`` / ``merge*`` /
``rest*`` (float64 storage: the CPU's ``fastact.scalar.rows`` functions;
float32 storage here), and the write-pass values (``softmax_a``,
``softmax_elem32``, ...). Backward: the double-compensated row sums
(``add3``, ``merge3``, ``*_push``) and the element steps of float32
storage. All are ``@scalar`` functions, compiled into the kernels for the
GPU and run as Python in the simulator.

Warp merges: ``build_warp_merge4`` / ``build_warp_merge3`` make the device functions
that merge a state over the 32 lanes of a warp by a butterfly of
``shfl_xor_sync`` (emulated through a barrier in the simulator, which has
no warp shuffles).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from fastact.cuda import target
from fastact.scalar.eft import two_prod_err, two_sum_err
from fastact.scalar.mathlib import exp, log1p
from fastact.scalar.registry import KernelTable, scalar
from fastact.scalar.rows import (
    SCALE,
    exp_diff,
    log_softmax_backward_elem,
)
from fastact.scalar.rows32 import CANCEL as CANCEL32
from fastact.scalar.rows32 import exp_diff as exp_diff32

#: float32 terms exp(x - r) with x - r <= this cannot overflow (expf: 88.7)
RESCALE_GAP32 = 64.0

NEG_INF = -math.inf
INF = math.inf
NAN = math.nan
_FULL = 0xFFFFFFFF  # every lane of the warp takes part in the shuffles


# ------------------------------------------------------- forward states
# float64 storage: the state (m, r, s, c) of ``fastact.scalar.rows``
# (``push64`` / ``merge64`` / ``rest64``, the CPU's own). float32 storage:
# m, r float32; s, c float64 (the terms are float32 exps).


@scalar
def start64(x0):
    """The state before a row's first entry ``x0``: no maximum, the reference
    ``x0`` where finite (every thread of the row starts from it, so their
    states merge without a rescale), empty sums."""
    r = x0 if (x0 > NEG_INF and x0 < INF) else np.float64(NEG_INF)
    return np.float64(NEG_INF), r, np.float64(0.0), np.float64(0.0)


@scalar
def start32(x0):
    """``start64`` for float32 storage (m, r float32)."""
    r = x0 if (x0 > NEG_INF and x0 < INF) else np.float32(NEG_INF)
    return np.float32(NEG_INF), r, np.float64(0.0), np.float64(0.0)


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


# ------------------------------------------------------- backward sums
# (s, c, cc): the compensation c itself compensated (cc)


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
def wide_sum(s, s2, c2):
    """(s, c, scaled) of a backward row whose sum s is +-inf or NaN, from the
    row's sum again with every g scaled by 2**-64, s2 + c2 (as the CPU's
    ``*_backward_wide``): not finite either, a +-inf or NaN operand, and the
    formula's IEEE value from s with no compensation (its inf - inf is NaN);
    else the true sum, unscaled where it fits (scaled False), else scaled
    (the write steps ``*_elem_scaled``)."""
    if not (abs(s2) < INF):
        return s, 0.0, False
    if abs(s2 * SCALE) < INF:
        return s2 * SCALE, c2 * SCALE, False
    return s2, c2, True


@scalar
def log_softmax_bwd_elem32(g, y, s, c):
    """float32 storage (as ``fastact.scalar.rows32``): g - exp(y) S in float64; where
    it cancels, the float64 step; a non-finite product (y = +inf) takes no
    compensation (inf * 0 would be NaN)."""
    e = exp(y) if y == y else y
    p = e * s
    t = e * c
    r = (g - p) - (t if abs(p) < INF else 0.0)
    if abs(r) < CANCEL32 * abs(p):
        return log_softmax_backward_elem(g, y, s, c)
    return r


# ------------------------------------------------------- warp merges
# The simulator has no warp shuffles: its lanes exchange through a barrier.

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


_DEVICE = KernelTable()  # the exchange device functions, built once


def _exchanges():
    """(xch4, xch3): device functions returning their arguments as held by
    lane ``lane ^ k`` (``shfl_xor_sync`` over the full warp)."""
    if target.simulated():
        return _sim_xch4, _sim_xch3
    return _DEVICE.get("exchanges", _build_exchanges)


def _build_exchanges():
    from numba.cuda.intrinsics import shfl_xor_sync as X

    FULL = _FULL

    def xch4(a, b, s, d, k):
        return X(FULL, a, k), X(FULL, b, k), X(FULL, s, k), X(FULL, d, k)

    def xch3(a, b, s, k):
        return X(FULL, a, k), X(FULL, b, k), X(FULL, s, k)

    return _device(xch4), _device(xch3)


def _device(fn):
    """``fn`` as a device function (plain Python in the simulator)."""
    return fn if target.simulated() else target.cuda().jit(device=True)(fn)


def build_warp_merge4(merge):
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


def build_warp_merge3():
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
