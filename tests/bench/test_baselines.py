"""The comparison table (fastact/bench/baselines.py): complete, and its calling conventions hold.

The formulas themselves are checked against fastact by tests/bench/test_cli.py
(float64, tight) and by every item of tests/bench/test_bench_ops.py.
"""

import types

import numpy as np
import pytest
import scipy.special  # noqa: F401  (geglu's NumPy formula uses erf)

import fastact
from fastact.bench import baselines
from fastact.bench.baselines import COMPARISONS
from fastact.catalog import ENTRIES

TABLE = "fastact/bench/baselines.py"
NAMES = [e.name for e in ENTRIES] + list(fastact.ROW_FUNCTIONS) + list(fastact.GATED_FUNCTIONS)


@pytest.mark.parametrize("name", NAMES)
def test_every_function_has_a_comparison(name):
    assert name in COMPARISONS, (
        f"{TABLE}: COMPARISONS has no entry for {name!r}; add its NumPy formula "
        f"(and torch/SciPy calls) as one Comparison(...) row"
    )


def test_no_comparison_without_a_function():
    stale = sorted(set(COMPARISONS) - set(NAMES))
    assert not stale, f"{TABLE}: COMPARISONS has entries for {stale}, which fastact does not define; remove them"


def test_entries_follow_the_conventions():
    for name, c in COMPARISONS.items():
        assert callable(c.numpy) and callable(c.numpy_grad), name
        if name in fastact.ROW_FUNCTIONS:
            # the row gradients (fastact's, NumPy's and PyTorch's) take the forward output
            assert c.torch_grad is None or c.torch_grad_from_y, name
        if name in fastact.GATED_FUNCTIONS:
            assert c.scipy is None and c.cupy is None, f"{name}: the benches time gated units on the CPU only"
        assert (c.cupy is None) == (c.cupy_grad is None), f"{name}: a CuPy forward without its gradient"


def test_gated_numpy_formulas_agree_with_fastact():
    a = np.linspace(-8, 8, 1001)
    b = np.linspace(2, -2, 1001)
    g = np.linspace(-1, 1, 1001)
    for name, f in fastact.GATED_FUNCTIONS.items():
        c = COMPARISONS[name]
        np.testing.assert_allclose(c.numpy(a, b), f(a, b), rtol=1e-12, atol=1e-15, err_msg=name)
        for got, want in zip(c.numpy_grad(g, a, b), f.backward(g, a, b), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=name)


class _Recorder:
    """A stand-in for the torch / scipy modules: records the call an accessor makes."""

    def __init__(self, log, path="torch"):
        self._log, self._path = log, path

    def __getattr__(self, attr):
        return _Recorder(self._log, f"{self._path}.{attr}")

    def __call__(self, *args, **kw):
        self._log.append((self._path, args, kw))
        return "result"


def test_torch_accessors_pass_what_each_kernel_takes():
    """Without PyTorch: the gradient gets x or y as the flag says, and out= where the kernel has one."""
    log = []
    torch = _Recorder(log)
    assert baselines.torch_backward(torch, "sigmoid")("G", "X", "Y", "O") == "result"
    assert log.pop() == ("torch.ops.aten.sigmoid_backward.grad_input", ("G", "Y"), {"grad_input": "O"})
    baselines.torch_backward(torch, "relu")("G", "X", "Y", "O")
    assert log.pop() == ("torch.ops.aten.threshold_backward.grad_input", ("G", "X", 0.0), {"grad_input": "O"})
    baselines.torch_forward(torch, "gelu")("X", "O")
    assert log.pop() == ("torch.ops.aten.gelu.out", ("X",), {"approximate": "none", "out": "O"})
    baselines.torch_forward(torch, "swiglu")("A", "B", "O")
    assert log.pop() == ("torch.mul", ("result", "B"), {"out": "O"})
    assert log.pop() == ("torch.nn.functional.silu", ("A",), {})
    assert baselines.torch_backward(torch, "identity") is None
    assert baselines.torch_forward(torch, "identity") is None


def test_scipy_and_numpy_lookups():
    log = []
    baselines.scipy_forward(types.SimpleNamespace(special=_Recorder(log, "sp")), "sigmoid")("X", "O")
    assert log == [("sp.expit", ("X",), {"out": "O"})]
    assert baselines.numpy_baselines("gelu", have_scipy=False) == (None, None)
    assert baselines.numpy_baselines("relu", have_scipy=False) == (COMPARISONS["relu"].numpy,
                                                                   COMPARISONS["relu"].numpy_grad)
