"""Standalone speed probes for the ops that miss issue 13's speed targets.

``python -m fastact.devtools.probes [--size N] [--repeat R] [--step S] [--only OPS] [--json]``

Why: where fastact is slower than PyTorch or than the memory roofline, a
probe answers "how fast can this op be made from Numba on this machine, at
the contract's accuracy?". Each probe is the shortest formula written for
the op, outside fastact's layers: its own exp core (a polynomial fitted at
import, 2^k scaling by bits), a plain division, only the carried low parts
without which the bound fails (each says so), one ``@vectorize`` loop
(elementwise) or one ``@njit`` row loop (softmax family).
It borrows only two primitives from ``fastact.scalar``: ``fma`` (one
``vfmadd``) and the bit casts.

Layout: ``cores.py`` (the probes' exp and sigmoid parts), one module per
family of probes (``elementwise32``, ``elementwise64``, ``piecewise``,
``rows``; each returns its probes from ``probes(cores)``), ``measure.py``
(timing, accuracy, the table, the command line). If a probe is much faster than fastact at the
same accuracy, fastact's formula has room; if it is not, the op is bound by
the machine (memory or the arithmetic the bound needs), and a gap to torch
is accuracy torch does not keep.

What is reported, one thread, float32 (and float64 where listed):
- ns per element of the probe, of fastact's public call and of the roofline
  (np.copyto for 1-in-1-out, np.add for 2-in-1-out), median of --repeat
  runs on --size elements (default 2^22: beyond the caches here);
- the probe's max error in ulps of the exact value: float32 probes over
  every --step-th float32 bit pattern against fastact's float64 kernel
  (``sweep32.sweep``); float64 probes against mpmath at half of the accuracy
  table's points (``fastact.devtools.accuracy``); row probes on random rows
  against the row formula in 80-bit long double. Whether that meets the
  contract (float32 2 / 4 ulp forward / backward, float64 4 / 8): a probe
  over its bound is reported as such; it is not a valid floor, only an upper
  bound on the speed at that accuracy.
"""

from fastact.devtools.probes.build import build as _build
from fastact.devtools.probes.measure import (
    BOUNDS,
    ROW_LEN,
    _accuracy_elementwise,
    _accuracy_rows,
    _inputs,
    main,
    run,
    table,
)

__all__ = ["run", "table", "main"]
