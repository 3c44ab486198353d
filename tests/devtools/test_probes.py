"""The speed probes (fastact.devtools.probes): each computes its op, the
accuracy check flags a broken probe, and a run reports every field."""

import numpy as np
import pytest

import fastact
from fastact.devtools import probes as P

COARSE = 65537  # 65536 float32 inputs over all 2^32 patterns


@pytest.fixture(scope="module")
def built():
    return P._build()


def _reference(op, kind, ins):
    f = fastact.ACTIVATIONS.get(op) or getattr(fastact, op)
    if op in ("softmax", "log_softmax"):
        return f(ins[0], axis=-1) if kind == "forward" else f.backward(ins[0], ins[1], axis=-1)
    return f(ins[0]) if kind == "forward" else f.backward(ins[0], ins[1])


def test_every_probe_computes_its_op(built):
    vec, rows = built
    rng = np.random.default_rng(5)
    for key, (probe, nin) in list(vec.items()) + list(rows.items()):
        op, kind, dt = key
        ins = P._inputs(op, kind, dt, 4 * P.ROW_LEN, rng)
        out = np.empty_like(ins[-1])
        if key in rows:
            probe(*ins, out)
        else:
            probe(*ins, out=out)
        # the probes are allowed to be off by their measured ulps, not more
        np.testing.assert_allclose(out, _reference(op, kind, ins), rtol=1e-5 if dt == "float32" else 1e-12,
                                   atol=1e-30, err_msg=str(key))


def test_valid_float32_probes_stay_within_their_bound(built):
    vec, _ = built
    for key in (("sigmoid", "forward", "float32"), ("silu", "forward", "float32"),
                ("sigmoid", "backward", "float32")):
        probe, nin = vec[key]
        worst, over = P._accuracy_elementwise(key, probe, nin, COARSE)
        assert over == 0 and 0 < worst <= P.BOUNDS[(key[1], "float32")], (key, worst)


def test_the_accuracy_check_flags_a_broken_probe(built):
    vec, _ = built
    probe, _ = vec[("sigmoid", "forward", "float32")]

    def broken(x, out=None):  # 3 ulp off everywhere
        y = probe(x)
        return y * np.float32(1 + 3 * 2.0**-23)

    worst, over = P._accuracy_elementwise(("sigmoid", "forward", "float32"), broken, 1, COARSE)
    assert worst > 2 and over > 0
    worst64, over64 = P._accuracy_elementwise(
        ("silu", "forward", "float64"), lambda x: vec[("silu", "forward", "float64")][0](x) * (1 + 2.0**-49), 1, 0)
    assert worst64 > 4 and over64 > 0


def test_run_reports_each_field():
    res = P.run(size=1 << 14, repeat=2, step=COARSE, only={"silu"})
    assert {(r["op"], r["kind"], r["dtype"]) for r in res} == {
        ("silu", kind, dt) for kind in ("forward", "backward") for dt in ("float32", "float64")}
    for r in res:
        assert r["probe_ns"] > 0 and r["fastact_ns"] > 0 and r["roof_ns"] > 0
        assert r["probe_meets_bound"] == (r["probe_n_over"] == 0)
    assert fastact.get_num_threads() >= 1  # restored
    text = P.table(res)
    assert text.count("\n") == len(res) + 1 and "| silu | forward | float32 |" in text
