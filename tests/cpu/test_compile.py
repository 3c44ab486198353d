"""Lazy compilation and the on-disk cache (no wall-clock limits: behaviour only)."""

import os
import subprocess
import sys
import textwrap

import numpy as np

import fastact
from fastact.cpu import ufuncs as _cpu
from fastact.cpu.stamp import stamp


def _run(code, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


def test_import_does_not_import_numba_or_compile():
    out = _run(
        """
        import sys, fastact
        from fastact.cpu import ufuncs as _cpu
        print("numba" in sys.modules, len(_cpu.DUFUNCS), len(_cpu._compiled))
        """
    )
    assert out.split()[:3] == ["False", "0", "0"]


def test_first_use_compiles_only_that_dtype_and_kind():
    out = _run(
        """
        import numpy as np, fastact
        from fastact.cpu import ufuncs as _cpu
        fastact.tanh(np.ones(4, np.float32))
        print(sorted((n, k, str(d)) for n, k, d in _cpu._compiled))
        """
    )
    assert "[('tanh', 'forward', 'float32')]" in out


def test_warm_cache_loads_machine_code_instead_of_compiling(tmp_path):
    code = """
        import numpy as np, fastact
        print(fastact.softsign(np.array([1.0, -3.0], np.float32)))
        """
    env = {"NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_DEBUG_CACHE": "1"}
    cold = _run(code, env)
    assert "data saved to" in cold
    warm = _run(code, env)
    assert "data loaded from" in warm and "data saved to" not in warm
    assert "[ 0.5  -0.75]" in warm


def test_cache_key_includes_a_fingerprint_of_the_formulas():
    uf = _cpu.dufunc(fastact.catalog.CATALOG["relu"], "forward")
    cells = [c.cell_contents for c in uf._dispatcher.py_func.__closure__]
    key = next(c for c in cells if isinstance(c, str))
    assert stamp() in key  # an edited formula changes the cache key
    assert key.endswith("fastact.scalar.piecewise.relu")
    e = fastact.catalog.CATALOG["sigmoid"]  # both precisions' formulas are named
    cells = [c.cell_contents for c in _cpu.dufunc(e, "forward")._dispatcher.py_func.__closure__]
    key = next(c for c in cells if isinstance(c, str))
    assert key.endswith("fastact.scalar.formulas.sigmoid:fastact.scalar.formulas32.sigmoid")


def test_ufunc_property_compiles_both_dtypes():
    uf = fastact.hardtanh.ufunc
    assert isinstance(uf, np.ufunc)
    assert {"fff->f", "ddd->d"} <= set(uf.types)
