"""Row probes for the softmax family: one ``@njit`` loop per op over the rows
of a C-contiguous 2-D array, ``f(*inputs, out)``."""

from __future__ import annotations

import numpy as np


def probes(c):
    """{(op, kind, dtype): (row loop, number of inputs)} for float32 and float64."""
    import numba

    scalar, exp64x_64 = c.scalar, c.exp64x_64
    lo64, twom64_d = c.lo64, c.twom64_d

    # One row loop each. Every sum, difference and exp is in float64 (float32 rows: one rounding at the store); float64
    # rows are plain float64 arithmetic (no compensated sums)

    lo_d, tw_d = lo64, twom64_d

    @scalar(reassoc=True)
    def row_stats(row):
        """(m, s): the row's maximum and sum of exp(x - m) (any order: vectorized)."""
        m = row[0]
        for j in range(row.shape[0]):
            m = max(m, row[j])
        s = 0.0
        for j in range(row.shape[0]):
            d = np.float64(row[j]) - np.float64(m)
            s += exp64x_64(d if d > lo_d else lo_d) * tw_d
        return m, s

    def softmax(x, out):
        for i in range(x.shape[0]):
            row, o = x[i], out[i]
            m, s = row_stats(row)
            inv = 1.0 / s
            for j in range(row.shape[0]):
                d = np.float64(row[j]) - np.float64(m)
                o[j] = (exp64x_64(d if d > lo_d else lo_d) * tw_d) * inv

    def log_softmax(x, out):
        for i in range(x.shape[0]):
            row, o = x[i], out[i]
            m, s = row_stats(row)
            ls = np.log(s)
            for j in range(row.shape[0]):
                o[j] = (np.float64(row[j]) - np.float64(m)) - ls

    def softmax_grad(g, y, out):
        for i in range(g.shape[0]):
            gr, yr, o = g[i], y[i], out[i]
            d = 0.0
            for j in range(gr.shape[0]):
                d += np.float64(gr[j]) * np.float64(yr[j])
            for j in range(gr.shape[0]):
                o[j] = np.float64(yr[j]) * (np.float64(gr[j]) - d)

    def log_softmax_grad(g, y, out):
        for i in range(g.shape[0]):
            gr, yr, o = g[i], y[i], out[i]
            s = 0.0
            for j in range(gr.shape[0]):
                s += np.float64(gr[j])
            for j in range(gr.shape[0]):
                v = np.float64(yr[j])
                o[j] = np.float64(gr[j]) - (exp64x_64(v if v > lo_d else lo_d) * tw_d) * s

    # reassoc only, as fastact's row sums: the sums vectorize
    jit = numba.njit(fastmath={"reassoc"})
    fns = {"softmax": (softmax, 1), "log_softmax": (log_softmax, 1)}
    grads = {"softmax": (softmax_grad, 2), "log_softmax": (log_softmax_grad, 2)}
    rows = {}
    for dt in ("float32", "float64"):
        for op in fns:
            rows[(op, "forward", dt)] = (jit(fns[op][0]), 1)
            rows[(op, "backward", dt)] = (jit(grads[op][0]), 2)
    return rows


