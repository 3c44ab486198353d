"""Every catalog kernel vs mpmath over the whole float range (see fastact/accuracy.py).

Generated from the catalog: a new entry is measured without editing this file.
Fails if any point breaks its bound (ulp bound, or the absolute bound next to a
derivative's zero), if a result is inf/NaN/0/wrong-signed where the exact value
is not, or if docs/accuracy.md does not report the measured numbers.
"""

import mpmath  # noqa: F401  (the measurements need it: in the test extra)
import pytest

from fastact.devtools import accuracy as A
from fastact.devtools import gen_accuracy

CASES = list(gen_accuracy.cases())
DOC = gen_accuracy.parse_table()


@pytest.mark.parametrize(
    "entry,which,kind,dtype",
    CASES,
    ids=[f"{e.name}-{w}-{k}-{d}" for e, w, k, d in CASES],
)
def test_accuracy(entry, which, kind, dtype):
    r = A.measure(entry, kind, dtype, which)
    assert r.n > 1000
    shown = "\n".join(f"  x={x!r}: got {c!r}, exact {ex!r}: {why}" for x, c, ex, why in r.failures[:10])
    assert not r.failures, f"{len(r.failures)} points out of bounds (max {r.max_ulp:.3g} ulp):\n{shown}"
    key = gen_accuracy.row_key(entry, which, kind, dtype)
    assert key in DOC, f"docs/accuracy.md has no row {key}: run python -m fastact.devtools.gen_accuracy"
    doc_max, doc_p999 = DOC[key]
    assert abs(doc_max - r.max_ulp) <= 0.06 and abs(doc_p999 - r.p999_ulp) <= 0.06, (
        f"docs/accuracy.md says max {doc_max} / p99.9 {doc_p999}, measured "
        f"{r.max_ulp:.2f} / {r.p999_ulp:.2f}: run python -m fastact.devtools.gen_accuracy"
    )


def test_ulp_error_definition():
    import mpmath as mp
    import numpy as np

    f32 = np.dtype(np.float32)
    assert A.ulp_error(mp, np.float32(1.0), mp.mpf(1), f32) == 0
    assert A.ulp_error(mp, np.nextafter(np.float32(1), np.float32(2)), mp.mpf(1), f32) == 1
    sub = np.float32(np.finfo(np.float32).smallest_subnormal)
    assert A.ulp_error(mp, np.float32(0), mp.mpf(float(sub)) * 3, f32) == 3
    assert A.ulp_error(mp, np.float32(np.inf), mp.mpf(1), f32) == np.inf
    assert A.ulp_error(mp, np.float32(np.nan), mp.mpf(1), f32) == np.inf
    assert A.ulp_error(mp, np.float32(np.inf), mp.mpf(10) ** 40, f32) == 0


def test_points_cover_the_range():
    import numpy as np

    from fastact.catalog import CATALOG

    for dt in (np.float32, np.float64):
        x = A.points(CATALOG["silu"], dt)
        fi = np.finfo(dt)
        assert x.dtype == dt
        assert fi.smallest_subnormal in x and -fi.max in x and fi.max in x
        assert np.sum((x >= -30) & (x <= 30)) > 1500
        assert np.sum(np.abs(x - CATALOG["silu"].grad_root) < A.ROOT_ABS_WINDOW) > 100
