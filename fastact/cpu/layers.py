"""CPU backend, layer kernels that are neither ufuncs nor gufuncs.

PReLU's weight gradient: a per-channel reduction, compiled lazily and cached
on disk with the stamp in its closure (``fastact.cpu.stamp``), so an edit to
the helpers it calls (``two_sum_err``) recompiles it.
"""

import numpy as np

from fastact.cpu.stamp import stamp
from fastact.scalar.eft import two_sum_err
from fastact.scalar.registry import KernelTable

KERNELS = KernelTable()


def _prelu_dweight(stamp):
    def prelu_dweight(x2, g2, acc, comp):
        stamp  # noqa: B018
        # rows x channels; acc/comp: per-channel float64 sum and its compensation
        for i in range(x2.shape[0]):
            for c in range(x2.shape[1]):
                xv = np.float64(x2[i, c])
                if not (xv > 0.0):
                    t = xv * np.float64(g2[i, c])
                    s = acc[c] + t
                    comp[c] += two_sum_err(acc[c], t, s)
                    acc[c] = s

    return prelu_dweight


def prelu_dweight():
    """``kernel(x2, g2, acc, comp)``: adds, per channel c, g*x over the rows
    where not (x > 0) to ``acc[c]`` (float64), the rounding errors to ``comp[c]``."""

    def build():
        import numba

        return numba.njit(cache=True, nogil=True)(_prelu_dweight(stamp()))

    return KERNELS.get("prelu_dweight", build)
