"""Every public function pickles by name, and pickles written by earlier
layouts of the package still load (multiprocessing, dask ship them)."""

import pickle

import pytest

import fastact

# written by fastact 0.1 before the subpackages (commit ad01e73): elementwise
# functions named fastact.api._lookup, the others the global fastact.<name>
OLD = {
    ("sigmoid", 2): b"\x80\x02cfastact.api\n_lookup\nq\x00X\x07\x00\x00\x00sigmoidq\x01\x85q\x02Rq\x03.",
    ("sigmoid", 5): b"\x80\x05\x95)\x00\x00\x00\x00\x00\x00\x00\x8c\x0bfastact.api\x94\x8c\x07_lookup\x94"
    b"\x93\x94\x8c\x07sigmoid\x94\x85\x94R\x94.",
    ("gelu", 2): b"\x80\x02cfastact.api\n_lookup\nq\x00X\x04\x00\x00\x00geluq\x01\x85q\x02Rq\x03.",
    ("silu", 5): b"\x80\x05\x95&\x00\x00\x00\x00\x00\x00\x00\x8c\x0bfastact.api\x94\x8c\x07_lookup\x94"
    b"\x93\x94\x8c\x04silu\x94\x85\x94R\x94.",
    ("softmax", 2): b"\x80\x02cfastact\nsoftmax\nq\x00.",
    ("log_softmax", 5): b"\x80\x05\x95\x1b\x00\x00\x00\x00\x00\x00\x00\x8c\x07fastact\x94\x8c\x0b"
    b"log_softmax\x94\x93\x94.",
    ("maxout", 2): b"\x80\x02cfastact\nmaxout\nq\x00.",
    ("prelu", 5): b"\x80\x05\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\x07fastact\x94\x8c\x05prelu\x94\x93\x94.",
    ("swiglu", 2): b"\x80\x02cfastact\nswiglu\nq\x00.",
}


@pytest.mark.parametrize("name,proto", sorted(OLD))
def test_old_pickles_load(name, proto):
    assert pickle.loads(OLD[(name, proto)]) is getattr(fastact, name)


@pytest.mark.parametrize("name", sorted(fastact.FUNCTIONS))
def test_new_pickles_name_the_public_global(name):
    f = fastact.FUNCTIONS[name]
    data = pickle.dumps(f, protocol=2)
    assert b"fastact" in data and name.encode() in data
    assert b"fastact.functions" not in data and b"fastact.api" not in data  # no internal path
    assert pickle.loads(data) is f


def test_old_pickles_load_in_a_fresh_process():
    import subprocess
    import sys

    code = "import pickle, sys; f = pickle.loads(sys.stdin.buffer.read()); print(f.__name__)"
    r = subprocess.run([sys.executable, "-c", code], input=OLD[("sigmoid", 5)], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().strip() == "sigmoid"
