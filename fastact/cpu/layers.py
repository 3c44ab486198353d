"""CPU backend, layer kernels that are neither ufuncs nor gufuncs.

PReLU forward and backward over a C-contiguous 3-D view ``(outer, C,
inner)`` of x, C the channels (C = 1 for one weight). A leaky_relu ufunc
with a broadcast weight operand runs NumPy's strided loop, which does not
vectorize; here each row ``x[o, c, :]`` runs with its weight hoisted out of
the loop, and when the channel axis is last (``inner == 1``) each row of
channels runs with the weight row reused. The element formula is the
catalog entry's (``ufuncs.runner``, the evaluation the ufunc loops run), so
results are bitwise those of the leaky_relu ufunc.

The backward kernel computes dx and, in the same pass, dweight[c] = the sum
of g*x over ``not (x > 0)`` (NaN included) in float64 with compensation
(Neumaier), branch free: a channel's rows sum into ``LANES`` independent
sum+error chains, so that the loop over a block of ``LANES`` elements
vectorizes across them, and the chains are folded with two-sums at the end;
channels last, each channel is one chain across the rows and the loop over
the channels vectorizes. float32 products are exact in float64.

Compiled lazily and cached on disk, the stamp (and the formulas' names) in
each kernel's closure (``fastact.cpu.stamp``), so an edit to a helper they
call (``two_sum_err``, the formula) recompiles them.
"""

import numpy as np

from fastact.cpu.ufuncs import runner
from fastact.scalar.eft import split_prod, split_total, two_sum_err
from fastact.scalar.registry import KernelTable, scalar

KERNELS = KernelTable()

#: independent compensated sums per channel: 16 float64 chains fill two
#: AVX-512 (four AVX2) registers and a block's loop over them vectorizes
#: (with 8, LLVM unrolls that loop instead and it runs scalar, 5x slower)
LANES = 16


def _prelu_forward(run, key):
    def prelu_forward(x3, w, y3):
        key  # noqa: B018
        to = y3.dtype.type  # the compute dtype (x may be float32 in a float64 call)
        outer, nch, inner = x3.shape
        if inner == 1:  # channels last: a row of channels, the weight row reused
            x2, y2 = x3.reshape(outer, nch), y3.reshape(outer, nch)
            for o in range(outer):
                for c in range(nch):
                    y2[o, c] = run(to(x2[o, c]), (np.float64(w[c]),))
            return
        for o in range(outer):
            for c in range(nch):
                wc = np.float64(w[c])
                xr, yr = x3[o, c], y3[o, c]
                for i in range(inner):
                    yr[i] = run(to(xr[i]), (wc,))

    return prelu_forward


@scalar
def add_nonpositive(s, e, x, g):
    """Sum ``s`` and error ``e`` (float64, Neumaier) with g*x added where
    ``not (x > 0)`` (NaN included), else as they were: +0.0 added to ``s``
    (``s`` is never -0.0) and the two-sum's error (NaN for an infinite
    ``s``) dropped. Branch free, with the operands selected rather than the
    results: selected results become masked stores in the vectorized loop,
    from which the next block's load of the chain cannot be forwarded."""
    t = 0.0 if x > 0.0 else np.float64(x) * np.float64(g)
    u = s + t
    err = two_sum_err(s, t, u)
    return u, e + (0.0 if x > 0.0 else err)


def _prelu_backward(run, key):
    lanes = LANES

    def prelu_backward(g3, x3, w, dx3, acc):
        key  # noqa: B018
        to = dx3.dtype.type  # the compute dtype (g, x may be float32 in a float64 call)
        outer, nch, inner = x3.shape
        if inner == 1:  # channels last: one chain per channel, across the rows
            g2, x2, dx2 = g3.reshape(outer, nch), x3.reshape(outer, nch), dx3.reshape(outer, nch)
            for o in range(outer):
                for c in range(nch):
                    xv, gv = to(x2[o, c]), to(g2[o, c])
                    dx2[o, c] = gv * run(xv, (np.float64(w[c]),))
                    acc[0, c], acc[1, c] = add_nonpositive(acc[0, c], acc[1, c], xv, gv)
            return
        # channel by channel (one set of chains, folded into acc once per
        # channel): the chains' sums in [:lanes], their errors in [lanes:]
        ch = np.empty(2 * lanes)
        full = inner - inner % lanes
        for c in range(nch):
            wc = np.float64(w[c])
            ch[:] = 0.0
            for o in range(outer):
                gr, xr, dxr = g3[o, c], x3[o, c], dx3[o, c]
                for i0 in range(0, full, lanes):
                    for j in range(lanes):
                        xv, gv = to(xr[i0 + j]), to(gr[i0 + j])
                        dxr[i0 + j] = gv * run(xv, (wc,))
                        ch[j], ch[lanes + j] = add_nonpositive(ch[j], ch[lanes + j], xv, gv)
                for i in range(full, inner):
                    xv, gv, j = to(xr[i]), to(gr[i]), i - full
                    dxr[i] = gv * run(xv, (wc,))
                    ch[j], ch[lanes + j] = add_nonpositive(ch[j], ch[lanes + j], xv, gv)
            s, e = acc[0, c], acc[1, c]
            for j in range(lanes):
                t = s + ch[j]
                e += two_sum_err(s, ch[j], t) + ch[lanes + j]
                s = t
            acc[0, c], acc[1, c] = s, e

    return prelu_backward


def _prelu_dweight_split(key):
    def prelu_dweight_split(g3, x3, c):
        key  # noqa: B018
        outer, _, inner = x3.shape
        s = e = sb = eb = sp = 0.0
        for o in range(outer):
            for i in range(inner):
                xv = np.float64(x3[o, c, i])
                if not (xv > 0.0):
                    small, big, special = split_prod(np.float64(g3[o, c, i]), xv)
                    t = s + small
                    e += two_sum_err(s, small, t)
                    s = t
                    t = sb + big
                    eb += two_sum_err(sb, big, t)
                    sb = t
                    sp += special
        return split_total(s + e, sb + eb, sp)

    return prelu_dweight_split


def _build(maker, entry, kind, name):
    kernel = maker(*runner(entry, kind))  # the stamp before Numba compiles, as for the ufuncs
    kernel.__name__ = kernel.__qualname__ = name
    import numba

    return numba.njit(cache=True, nogil=True)(kernel)


def prelu_forward(entry):
    """``kernel(x3, w, y3)``: ``y3[o, c, i] = entry.forward(x3[o, c, i], w[c])``
    (``entry``: leaky_relu's catalog entry) in y3's dtype, all C-contiguous."""
    return KERNELS.get(("prelu_forward", entry.name),
                       lambda: _build(_prelu_forward, entry, "forward", "prelu_forward"))


def prelu_dweight_split():
    """``kernel(g3, x3, c) -> float``: channel c's dweight, the sum of g*x over
    ``not (x > 0)``, with the IEEE meaning of the exact sum (``split_prod``):
    +-inf where it overflows or an infinite term has no opposite one, NaN
    only for a NaN operand, inf - inf or 0 * inf; else the compensated sum of
    the rounded products, as ``prelu_backward``'s, with those that overflow
    (or nearly) summed scaled. The rare path for a channel whose
    ``prelu_backward`` sum is not finite: there an infinite running sum makes
    the error terms NaN, and products that overflow may cancel."""
    def build():
        import numba

        from fastact.cpu.stamp import stamp

        kernel = _prelu_dweight_split(stamp())
        return numba.njit(cache=True, nogil=True)(kernel)

    return KERNELS.get(("prelu_dweight_split",), build)


def prelu_backward(entry):
    """``kernel(g3, x3, w, dx3, acc)``: ``dx3 = g3 * entry.grad(x3, w[c])``, and
    adds, per channel c, g*x over ``not (x > 0)`` to ``acc[0, c]`` (float64),
    the rounding errors to ``acc[1, c]``."""
    return KERNELS.get(("prelu_backward", entry.name),
                       lambda: _build(_prelu_backward, entry, "backward", "prelu_backward"))
