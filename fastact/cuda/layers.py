"""CUDA kernels of the non-elementwise layers: maxout (forward/backward) and
PReLU's weight gradient (a per-channel compensated reduction).

Built lazily like every kernel of the backend (``fastact.cuda.target``):
nothing imports ``numba.cuda`` until a kernel is asked for; each kernel is
compiled once per variant (kind and storage dtype), in a ``KernelTable``.

Semantics are the CPU layers' (``fastact.maxout`` / ``prelu``), exactly:

* ``maxout_forward``: max over the last axis of a (rows, groups, k) view,
  NaN-propagating as ``np.max``. The kernel finds each group's argmax (the
  same scan as the backward) and stores that element, so the result is one
  of the group's own values (first of equal maxima, the first NaN). The one
  difference from ``np.max``: on a tie of -0.0 and 0.0 the sign of NumPy's
  result depends on its SIMD blocking (first or last entry); ours is the
  first's.
* ``maxout_backward``: each group's upstream gradient goes to its argmax
  (``np.argmax``: first on ties, first NaN), zeros elsewhere.
* ``prelu_dweight``: dweight[c] = sum over rows of g*x where ``not (x > 0)``
  (NaN x counts and propagates), products and sums in float64 with
  Neumaier compensation, as the CPU reduction. The final value is
  ``sum + compensation`` where that is finite; where it is not (the
  compensation of an infinite sum is NaN, and products that overflow may
  cancel), the block sums the channel again by ``split_prod`` /
  ``split_total``, as the CPU: +-inf where the exact sum overflows or an
  infinite term has no opposite one, NaN only for a NaN operand, inf - inf
  or 0 * inf.

Kernels are grid-stride loops with 64-bit indices. The reduction is one block
per channel (grid-stride over channels), the block's threads striding over
rows, then a tree of compensated additions in shared memory: deterministic
for a given launch configuration (no atomics).
"""

from __future__ import annotations

import numpy as np

from fastact.cuda import target
from fastact.scalar.eft import split_prod, split_total, two_sum_err
from fastact.scalar.registry import KernelTable, scalar

_KERNELS = KernelTable()
#: ``numba.cuda`` once a kernel is built (``target.bind``): the kernels name
#: it as a module global
cuda = None

#: threads per block of the reduction (its shared arrays are this long)
RED_THREADS = 256

_DTYPES = ("float16", "float32", "float64")


# ------------------------------------------------------------ kernel bodies


@scalar
def group_argmax(x3, r, j, k):
    """Index of the maximum of x3[r, j, :k]: the first of equal maxima, the
    first NaN if the group holds one (np.argmax). Compared in float64, which
    is exact for every storage dtype."""
    best = 0
    m = np.float64(x3[r, j, 0])
    if m == m:  # not NaN
        for t in range(1, k):
            v = np.float64(x3[r, j, t])
            if v != v:  # first NaN wins
                best = t
                break
            if v > m:  # strict: the first of equal maxima
                m = v
                best = t
    return best


def _maxout_forward_fn(dtype):
    def maxout_forward(x3, out2):
        i = cuda.grid(1)  # 64-bit
        step = cuda.gridsize(1)
        groups = out2.shape[1]
        n = out2.shape[0] * groups
        k = x3.shape[2]
        while i < n:
            r = i // groups
            j = i - r * groups
            best = group_argmax(x3, r, j, k)
            out2[r, j] = x3[r, j, best]
            i += step

    maxout_forward.__name__ = f"maxout_forward_{np.dtype(dtype).name}"
    return maxout_forward


def _maxout_backward_fn(dtype):
    def maxout_backward(g2, x3, dx3):
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        groups = g2.shape[1]
        n = g2.shape[0] * groups
        k = x3.shape[2]
        while i < n:
            r = i // groups
            j = i - r * groups
            best = group_argmax(x3, r, j, k)
            for t in range(k):
                dx3[r, j, t] = 0
            dx3[r, j, best] = g2[r, j]
            i += step

    maxout_backward.__name__ = f"maxout_backward_{np.dtype(dtype).name}"
    return maxout_backward


def _prelu_dweight_fn(dtype):
    import numba

    D = numba.float64
    NT = RED_THREADS

    def prelu_dweight(x2, g2, out):
        ss = cuda.shared.array(NT, numba.float64)
        ee = cuda.shared.array(NT, numba.float64)
        sb = cuda.shared.array(NT, numba.float64)
        eb = cuda.shared.array(NT, numba.float64)
        sp = cuda.shared.array(NT, numba.float64)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        rows = x2.shape[0]
        nch = x2.shape[1]
        ch = cuda.blockIdx.x
        while ch < nch:
            s = D(0.0)
            e = D(0.0)
            r = tid
            while r < rows:
                xv = D(x2[r, ch])
                if not (xv > 0.0):
                    t = xv * D(g2[r, ch])
                    s2 = s + t
                    e += two_sum_err(s, t, s2)
                    s = s2
                r += nt
            ss[tid] = s
            ee[tid] = e
            cuda.syncthreads()
            # tree of compensated additions, any block size
            m = nt
            while m > 1:
                h = (m + 1) // 2
                if tid < m - h:
                    a = ss[tid]
                    b = ss[tid + h]
                    s2 = a + b
                    ee[tid] = (ee[tid] + ee[tid + h]) + two_sum_err(a, b, s2)
                    ss[tid] = s2
                cuda.syncthreads()
                m = h
            if tid == 0:
                sp[0] = ss[0] + ee[0]
            cuda.syncthreads()
            total = sp[0]
            cuda.syncthreads()
            if not (total - total == 0.0):
                # rare (the whole block): a sum that is not finite, where an
                # infinite running sum made the errors NaN (inf - inf) or
                # products that overflow may cancel; again, by split_prod
                # (the CPU's prelu_dweight_split), with the IEEE meaning of
                # the exact sum
                s = D(0.0)
                e = D(0.0)
                s1 = D(0.0)
                e1 = D(0.0)
                s3 = D(0.0)
                r = tid
                while r < rows:
                    xv = D(x2[r, ch])
                    if not (xv > 0.0):
                        small, big, special = split_prod(D(g2[r, ch]), xv)
                        s2 = s + small
                        e += two_sum_err(s, small, s2)
                        s = s2
                        s2 = s1 + big
                        e1 += two_sum_err(s1, big, s2)
                        s1 = s2
                        s3 += special
                    r += nt
                ss[tid] = s
                ee[tid] = e
                sb[tid] = s1
                eb[tid] = e1
                sp[tid] = s3
                cuda.syncthreads()
                m = nt
                while m > 1:
                    h = (m + 1) // 2
                    if tid < m - h:
                        a = ss[tid]
                        b = ss[tid + h]
                        s2 = a + b
                        ee[tid] = (ee[tid] + ee[tid + h]) + two_sum_err(a, b, s2)
                        ss[tid] = s2
                        a = sb[tid]
                        b = sb[tid + h]
                        s2 = a + b
                        eb[tid] = (eb[tid] + eb[tid + h]) + two_sum_err(a, b, s2)
                        sb[tid] = s2
                        sp[tid] = sp[tid] + sp[tid + h]
                    cuda.syncthreads()
                    m = h
                if tid == 0:
                    total = split_total(ss[0] + ee[0], sb[0] + eb[0], sp[0])
            if tid == 0:
                out[ch] = total
            cuda.syncthreads()  # shared arrays reused by the next channel
            ch += cuda.gridDim.x

    prelu_dweight.__name__ = f"prelu_dweight_{np.dtype(dtype).name}"
    return prelu_dweight


_FACTORIES = {
    "maxout_forward": _maxout_forward_fn,
    "maxout_backward": _maxout_backward_fn,
    "prelu_dweight": _prelu_dweight_fn,
}


def pyfunc(kind, dtype):
    """The Python kernel function of ``kind`` for ``dtype`` storage."""
    target.bind(globals())
    return _FACTORIES[kind](np.dtype(dtype))


def signature(kind, dtype):
    """The Numba signature of ``pyfunc(kind, dtype)`` (any strides)."""
    t = np.dtype(dtype).name
    a2, a3 = f"{t}[:, :]", f"{t}[:, :, :]"
    d3 = "float32[:, :, :]" if t == "float16" else a3
    return {
        "maxout_forward": f"void({a3}, {a2})",
        # dx in the compute dtype, as the CPU's (float32 for float16)
        "maxout_backward": f"void({a2}, {a3}, {d3})",
        "prelu_dweight": f"void({a2}, {a2}, float64[:])",
    }[kind]


def kernel(kind, dtype):
    """The lazily compiled ``@cuda.jit`` kernel of ``kind`` for ``dtype``."""
    return _KERNELS.get((kind, np.dtype(dtype)), lambda: target.jit(pyfunc(kind, dtype)))


def _check_dtype(where, *arrays):
    for a in arrays:
        if np.dtype(a.dtype).name not in _DTYPES:
            raise TypeError(f"fastact.{where}: CUDA kernels take float16/32/64, got {a.dtype}")


# --------------------------------------------------------------- launches


def maxout_forward(x3, out2, stream):
    """out2[r, j] = max(x3[r, j, :]) (NaN-propagating) on ``stream``.

    x3: (rows, groups, k) device array, k >= 1; out2: (rows, groups)."""
    _check_dtype("maxout", x3)
    rows, groups, k = x3.shape
    if tuple(out2.shape) != (rows, groups):
        raise ValueError(f"fastact.maxout: out shape {out2.shape} != {(rows, groups)}")
    n = rows * groups
    if n == 0:
        return out2
    if k < 1:
        raise ValueError("fastact.maxout: k must be >= 1")
    target.launch(kernel("maxout_forward", x3.dtype), n, stream, x3, out2)
    return out2


def maxout_backward(g2, x3, dx3, stream):
    """dx3[r, j, argmax(x3[r, j, :])] = g2[r, j], zeros elsewhere, on ``stream``."""
    _check_dtype("maxout.backward", x3)
    rows, groups, k = x3.shape
    if tuple(g2.shape) != (rows, groups) or tuple(dx3.shape) != tuple(x3.shape):
        raise ValueError(f"fastact.maxout.backward: shapes grad {g2.shape}, x {x3.shape}, "
                         f"dx {dx3.shape} do not match")
    n = rows * groups
    if n == 0 or k == 0:
        return dx3
    target.launch(kernel("maxout_backward", x3.dtype), n, stream, g2, x3, dx3)
    return dx3


def prelu_dweight(x2, g2, stream):
    """float64 device array (nch,): per channel, the compensated float64 sum
    over rows of g*x where not (x > 0); x2, g2: (rows, nch)."""
    _check_dtype("prelu.backward", x2, g2)
    if tuple(x2.shape) != tuple(g2.shape) or len(x2.shape) != 2:
        raise ValueError(f"fastact.prelu.backward: shapes {x2.shape} and {g2.shape} "
                         "must be the same (rows, channels)")
    c = target.cuda()
    nch = x2.shape[1]
    out = c.device_array(nch, dtype=np.float64, stream=stream)
    if nch == 0:
        return out
    if target.simulated():
        threads, blocks = target.SIM_THREADS, min(target.SIM_BLOCKS, nch)
    else:
        sms = c.get_current_device().MULTIPROCESSOR_COUNT
        threads = RED_THREADS
        blocks = max(1, min(nch, sms * target.BLOCKS_PER_SM))
    k = kernel("prelu_dweight", np.result_type(x2.dtype, g2.dtype))
    with target.exact_fp():
        k[blocks, threads, stream](x2, g2, out)
    return out


# ------------------------------------------------------------ enumeration


def kernel_specs(dtypes=_DTYPES):
    """Every kernel of this module, for PTX checks: (name, pyfunc, signature)."""
    for kind in _FACTORIES:
        for dt in dtypes:
            fn = pyfunc(kind, dt)
            yield fn.__name__, fn, signature(kind, dt)
