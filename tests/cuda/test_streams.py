"""Kernels run on the producer's stream (``fastact.cuda.interop.stream_for``),
in Numba's CUDA simulator.

The simulator runs every launch synchronously and ignores the stream it
names, and it has no external streams: the launches' streams are recorded
(``FakeCUDAKernel.__getitem__``) and, for the ``stream`` entry of
``__cuda_array_interface__``, Numba's stream constructors replaced by ones
returning simulator streams tagged with what was asked for. On a real GPU,
tests/cuda/test_real_gpu.py checks CuPy's and torch's current streams.
"""

import sys

import numpy as np
import pytest
from numba import cuda

import fastact
from fastact.cuda import target as _cuda
from tests.cuda.test_elementwise import Foreign

pytestmark = [
    pytest.mark.skipif(not _cuda.simulated(), reason="records launches in the CUDA simulator"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # as in test_elementwise
]

X = np.linspace(-3, 3, 24).reshape(4, 6)
#: upstream gradients: of X's shape, of half of it, a broadcast row
G = np.linspace(0.5, 2.0, 24).reshape(4, 6)
H = G[:, :3].copy()
R = G[0].copy()
W = np.array([0.1, 0.5, 2.0, 0.25])

#: one call per kind of launch: (name, call(x, g, h, r) -> result(s), the
#: CPU's); x, g, h, r: GPU arrays of X, G, H, R on the stream under test
CALLS = [
    ("elementwise", lambda x, g, h, r: fastact.sigmoid(x), fastact.sigmoid(X)),
    ("backward", lambda x, g, h, r: fastact.gelu.backward(g, x), fastact.gelu.backward(G, X)),
    ("broadcast", lambda x, g, h, r: fastact.elu.backward(r, x), fastact.elu.backward(R, X)),
    ("rows", lambda x, g, h, r: fastact.softmax(x), fastact.softmax(X)),
    ("rows copied", lambda x, g, h, r: fastact.log_softmax.backward(g, x, axis=0),
     fastact.log_softmax.backward(G, X, axis=0)),
    ("gated", lambda x, g, h, r: fastact.geglu(x, approximate="tanh"), fastact.geglu(X, approximate="tanh")),
    ("gated backward", lambda x, g, h, r: fastact.swiglu.backward(h, x), fastact.swiglu.backward(H, X)),
    ("maxout", lambda x, g, h, r: fastact.maxout(x, 2), fastact.maxout(X, 2)),
    ("maxout backward", lambda x, g, h, r: fastact.maxout.backward(h, x, 2), fastact.maxout.backward(H, X, 2)),
    ("prelu dweight", lambda x, g, h, r: fastact.prelu.backward(g, x, cuda.to_device(W), axis=0),
     fastact.prelu.backward(G, X, W, axis=0)),
]


@pytest.fixture
def launches(monkeypatch):
    """The stream of every kernel launch (None: a launch naming none)."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    seen = []
    original = FakeCUDAKernel.__getitem__

    def getitem(self, config):
        seen.append(config[2] if len(config) > 2 else None)
        return original(self, config)

    monkeypatch.setattr(FakeCUDAKernel, "__getitem__", getitem)
    return seen


class Tagged(cuda.stream):
    """A simulator stream that says which constructor made it, from what."""

    def __init__(self, *tag):
        self.tag = tag

    def __repr__(self):
        return f"Tagged{self.tag}"


@pytest.fixture
def tagged(monkeypatch):
    monkeypatch.setattr(cuda, "default_stream", lambda: Tagged("default"))
    monkeypatch.setattr(cuda, "legacy_default_stream", lambda: Tagged("legacy"))
    monkeypatch.setattr(cuda, "per_thread_default_stream", lambda: Tagged("per-thread"))
    monkeypatch.setattr(cuda, "external_stream", lambda ptr: Tagged("external", ptr))


def _results(r):
    return list(r) if isinstance(r, tuple) else [r]


def _check(call, want, make, on_stream, launches):
    """``call`` on the arrays ``make`` puts on a stream launches every kernel
    on the stream ``on_stream`` accepts, and returns Numba device arrays
    allocated on it, with the CPU's values."""
    launches.clear()
    got = _results(call(*map(make, (X, G, H, R))))
    assert launches, "no launch recorded"
    assert all(on_stream(s) for s in launches), launches
    for r, w in zip(got, _results(want), strict=True):
        assert type(r).__name__ == "FakeCUDAArray"  # Numba in, Numba out
        assert on_stream(r.stream), r.stream
        r.stream.synchronize()
        np.testing.assert_allclose(r.copy_to_host(stream=r.stream), w, rtol=1e-15, atol=1e-300)


def _on_stream(x, s):
    """A Numba device array made on stream ``s``, holding ``x``."""
    d = cuda.device_array(x.shape, x.dtype, stream=s)
    d.copy_to_device(x, stream=s)
    assert d.stream is s
    return d


def _check_numba_stream(case, launches):
    _, call, want = case
    s = cuda.stream()
    _check(call, want, lambda v: _on_stream(v, s), lambda t: t is s, launches)


def _cai(values, stream):
    """A foreign producer's array whose interface names ``stream``."""
    f = Foreign(values.copy())
    f.__cuda_array_interface__["stream"] = stream
    return f


#: the CAI v3 ``stream`` entry and the stream a launch must use for it
CAI_STREAMS = [(None, ("default",)), (1, ("legacy",)), (2, ("per-thread",)),
               (0x7F00BEEF, ("external", 0x7F00BEEF))]


def _check_cai_stream(case, entry, tag, launches):
    _, call, want = case
    _check(call, want, lambda v: _cai(v, entry), lambda t: getattr(t, "tag", None) == tag, launches)


@pytest.mark.parametrize("case", CALLS, ids=[c[0] for c in CALLS])
def test_numba_array_on_a_stream(case, launches):
    _check_numba_stream(case, launches)


@pytest.mark.parametrize("case", CALLS, ids=[c[0] for c in CALLS])
def test_interface_stream_pointer(case, launches, tagged):
    _check_cai_stream(case, *CAI_STREAMS[3], launches)


@pytest.mark.parametrize("entry,tag", CAI_STREAMS[:3], ids=["none", "legacy", "per-thread"])
def test_interface_default_streams(entry, tag, launches, tagged):
    _check_cai_stream(CALLS[0], entry, tag, launches)


def _break(monkeypatch, name, fn):
    """Replace ``fastact.cuda.interop.<name>`` wherever fastact imported it."""
    from fastact.cuda import interop

    original = getattr(interop, name)
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("fastact") and getattr(mod, name, None) is original:
            monkeypatch.setattr(mod, name, fn)


@pytest.mark.parametrize("case", [CALLS[0], CALLS[4], CALLS[9]], ids=lambda c: c[0])
def test_the_checks_fail_when_the_stream_is_ignored(case, launches, monkeypatch):
    """Each check above fails where fastact launches on the default stream
    instead, or allocates its result there."""
    from fastact.cuda import interop

    with monkeypatch.context() as m:
        _break(m, "stream_for", lambda arrays: cuda.default_stream())
        with pytest.raises(AssertionError):
            _check_numba_stream(case, launches)
    with monkeypatch.context() as m:
        m.setattr(cuda, "external_stream", lambda ptr: Tagged("external", ptr))
        _break(m, "stream_for", lambda arrays: Tagged("default"))
        with pytest.raises(AssertionError):
            _check_cai_stream(case, *CAI_STREAMS[3], launches)
    allocate = interop.empty_like_input
    with monkeypatch.context() as m:
        _break(m, "empty_like_input", lambda a, shape, dtype, stream: allocate(a, shape, dtype, 0))
        with pytest.raises(AssertionError):
            _check_numba_stream(case, launches)
