"""The CPU vector width rule (fastact/cpu/width.py): 256 bits give ymm loops,
512 zmm loops, and the user's Numba target, live Numba code and hosts
without AVX-512 are left alone.

Subprocess tests: the width is read once per process, at the first compile.
Each compiles at most one small kernel, in a fresh NUMBA_CACHE_DIR."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from numba.core.codegen import get_host_cpu_features

from fastact.cpu import width

ROOT = pathlib.Path(__file__).resolve().parents[2]
HOST_AVX512 = "+avx512f" in get_host_cpu_features().split(",")
needs_avx512 = pytest.mark.skipif(not HOST_AVX512, reason="host has no AVX-512: no zmm code to compare")

# floating-point arithmetic on packed registers (AT&T syntax: the operands follow)
_ARITH = r"^\s*v(?:fn?m(?:add|sub)\w*|mul|add|sub|div|max|min)p[sd]\s[^\n]*%{reg}"

# the machine code of the float32 leaky_relu forward loop of fastact's own ufunc
# (float32 throughout, compiled in under a second; an exp-based float32 kernel
# gives the same picture but takes a minute to compile here)
_LOOP = r"""
import json, re, sys, numpy as np
import fastact
from fastact.cpu import ufuncs, width
from numba.core import config
from numba.core.compiler_lock import global_compiler_lock
from numba.np.ufunc.wrappers import build_ufunc_wrapper
entry = fastact.leaky_relu._entry
ufuncs.ufunc(entry, "forward", np.float32)
cres = list(ufuncs.dufunc(entry, "forward")._dispatcher.overloads.values())[0]
info = build_ufunc_wrapper(cres.library, cres.target_context, cres.fndesc.llvm_func_name,
                           cres.signature, cres.objectmode, cres)
with global_compiler_lock:
    info.library.get_pointer_to_function(info.name)
asm = info.library.get_asm_str()
arith = {reg: len(re.findall(ARITH.format(reg=reg), asm, re.M)) for reg in ("ymm", "zmm")}
print(json.dumps({"arith": arith, "width": width.describe(), "features": config.CPU_FEATURES}))
"""


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME", "FASTACT_VECTOR_WIDTH", "NUMBA_ENABLE_CUDASIM")}
    env.update(NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT), **extra)
    return env


def _run(code, env):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                       check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _loop(tmp_path, **extra):
    return _run(f"ARITH = {_ARITH!r}\n" + _LOOP, _env(tmp_path, **extra))


# ------------------------------------------------------------ the rule itself

AVX512 = "+64bit,+avx,+avx2,+fma,+avx512f,+avx512vl,+avx512bw"
AVX2 = "+64bit,+avx,+avx2,+fma,-avx512f,-avx512vl"


def test_rule_on_an_avx512_host():
    assert width.decide("auto", AVX512) == (AVX512 + ",-prefer-256-bit", 512, width.decide("auto", AVX512)[2])
    assert width.AUTO_BITS == 512
    assert width.decide("512", AVX512)[:2] == (AVX512 + ",-prefer-256-bit", 512)
    assert width.decide("256", AVX512)[:2] == (AVX512 + ",+prefer-256-bit", 256)
    assert width.decide("native", AVX512)[:2] == (None, None)  # LLVM's tuning for the CPU decides


@pytest.mark.parametrize("value", ["auto", "256", "512", "native"])
def test_rule_sets_nothing_without_avx512(value):
    assert width.decide(value, AVX2)[:2] == (None, 256)
    assert width.decide(value, "+64bit,+sse2,+sse4.2")[:2] == (None, 128)


@pytest.mark.parametrize("value", ["auto", "256", "512"])
def test_rule_leaves_the_users_target_and_live_code_alone(value):
    assert width.decide(value, AVX512, user_set=True)[0] is None
    features, bits, reason = width.decide(value, AVX512, live_features=AVX512)
    assert features is None and bits is None and "existed" in reason
    assert width.decide(value, AVX512, live_features=AVX512 + ",+prefer-256-bit")[1] == 256


def test_bits_of_reads_the_last_mention():
    assert width.bits_of(AVX512 + ",+prefer-256-bit,-prefer-256-bit") == 512
    assert width.bits_of(AVX512 + ",-prefer-256-bit,+prefer-256-bit") == 256
    assert width.bits_of(AVX512 + ",-avx512f") == 256


def test_setting_is_checked(monkeypatch):
    monkeypatch.setenv("FASTACT_VECTOR_WIDTH", "1024")
    with pytest.raises(ValueError, match="FASTACT_VECTOR_WIDTH"):
        width.setting()
    monkeypatch.setenv("FASTACT_VECTOR_WIDTH", " 512 ")
    assert width.setting() == "512"
    monkeypatch.delenv("FASTACT_VECTOR_WIDTH")
    assert width.setting() == "auto"


def test_apply_is_idempotent():
    assert width.apply() == width.apply() == width.describe()


# ------------------------------------------------------- compiled code, per process


@needs_avx512
def test_256_gives_ymm_arithmetic_only(tmp_path):
    r = _loop(tmp_path, FASTACT_VECTOR_WIDTH="256")
    assert r["width"]["bits"] == 256 and r["features"].endswith(",+prefer-256-bit")
    assert r["arith"]["zmm"] == 0 and r["arith"]["ymm"] >= 2, r["arith"]


@needs_avx512
@pytest.mark.parametrize("value", ["512", "auto"])
def test_512_gives_zmm_arithmetic(tmp_path, value):
    r = _loop(tmp_path, FASTACT_VECTOR_WIDTH=value)
    assert r["width"]["bits"] == 512 and r["features"].endswith(",-prefer-256-bit")
    assert r["arith"]["zmm"] >= 2, r["arith"]


def test_native_sets_nothing(tmp_path):
    r = _run("import json, fastact.cpu.stamp as s, fastact.cpu.width as w\nfrom numba.core import config\n"
             "s.stamp()\nprint(json.dumps([config.CPU_FEATURES, w.describe()]))",
             _env(tmp_path, FASTACT_VECTOR_WIDTH="native"))
    assert r[0] is None and r[1]["flag"] is None and "native" in r[1]["reason"]


def test_the_users_numba_cpu_features_win(tmp_path):
    theirs = get_host_cpu_features() + ",+prefer-256-bit"
    r = _run("import json, fastact.cpu.stamp as s, fastact.cpu.width as w\nfrom numba.core import config\n"
             "s.stamp()\nprint(json.dumps([config.CPU_FEATURES, w.describe()]))",
             _env(tmp_path, FASTACT_VECTOR_WIDTH="512", NUMBA_CPU_FEATURES=theirs))
    assert r[0] == theirs and r[1]["flag"] is None and "user" in r[1]["reason"]


def test_nothing_changes_once_numba_code_exists(tmp_path):
    # the user's own Numba function, defined (its dispatcher creates the CPU
    # codegen, which has read the features) before fastact's first kernel
    code = """
import json, numba
from numba.core import config
from numba.core.registry import cpu_target
from fastact.cpu import stamp, width
assert "_toplevel_target_context" not in vars(cpu_target)
f = numba.njit(lambda x: x + 1)
assert "_toplevel_target_context" in vars(cpu_target)
before = cpu_target.target_context.codegen()._tm_features
stamp.stamp()
after = cpu_target.target_context.codegen()._tm_features
print(json.dumps([config.CPU_FEATURES, before == after, width.describe()]))
"""
    r = _run(code, _env(tmp_path, FASTACT_VECTOR_WIDTH="512"))
    assert r[0] is None and r[1] and r[2]["flag"] is None and "existed" in r[2]["reason"]


@needs_avx512
def test_the_stamp_carries_the_width(tmp_path):
    code = "import json, fastact.cpu.stamp as s\nprint(json.dumps(s.stamp()))"
    stamps = {v: _run(code, _env(tmp_path, FASTACT_VECTOR_WIDTH=v)) for v in ("256", "512", "auto", "native")}
    assert stamps["512"] == stamps["auto"]
    assert len({stamps["256"], stamps["512"], stamps["native"]}) == 3


def test_import_fastact_does_not_import_numba(tmp_path):
    r = _run("import json, sys, fastact\nprint(json.dumps('numba' in sys.modules))", _env(tmp_path))
    assert r is False
