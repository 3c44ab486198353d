"""The disk-cache stamp covers exactly the sources CPU kernels are compiled from.

An edit to a helper a kernel calls must recompile the kernel (Numba's own
cache check only sees the kernel's file); an edit anywhere else (the public
functions, the benchmark CLI) must leave every cached kernel in place.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

from fastact.cpu import stamp

PKG = stamp.PACKAGE
# markers of code Numba compiles for the CPU
COMPILED = re.compile(r"^\s*@(scalar|overload|intrinsic)\b|numba\.(njit|jit|vectorize|guvectorize)\(|register_jitable\(",
                      re.M)


def _rel(paths):
    return {p.relative_to(PKG).as_posix() for p in paths}


def test_stamp_lists_the_scalar_layer_and_cpu_kernel_modules_only():
    files = _rel(stamp.files())
    assert _rel((PKG / "scalar").rglob("*.py")) <= files
    assert {"cpu/ufuncs.py", "cpu/gufuncs.py", "cpu/layers.py"} <= files
    for other in ("bench/", "functions/", "cuda/", "devtools/", "catalog.py", "cpu/threads.py"):
        assert not any(f.startswith(other) for f in files), other


def test_every_module_with_compiled_cpu_code_is_stamped():
    files = _rel(stamp.files())
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith("cuda/") or rel.startswith("devtools/"):
            continue  # CUDA kernels are compiled per process, never cached on disk
        if COMPILED.search(path.read_text()):
            assert rel in files, f"{rel} holds compiled code: add it to fastact/cpu/stamp.py SOURCES"


def test_stamped_modules_do_not_import_unstamped_code():
    # a helper imported from outside the stamp could change without recompiling
    allowed = re.compile(r"from fastact\.(scalar|cpu\.(stamp|ufuncs|gufuncs|layers|loopfix))\b|import fastact\.(scalar)")
    for path in stamp.files():
        for line in path.read_text().splitlines():
            if re.match(r"\s*(from|import) fastact", line):
                assert allowed.match(line.strip()), f"{path.name}: {line.strip()}"


SCRIPT = """
import numpy as np, fastact
x = np.array([[-1.0, 2.0], [-1e16, 1.0], [1e16, -3.0], [-1.0, -0.5]])
_, dw = fastact.prelu.backward(np.ones_like(x), x, np.array([0.1, 0.2]), axis=1)
print(repr(dw.tolist()), repr(fastact.gelu(x[0]).tolist()))
"""


def _run(root, cache):
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(cache))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=root)
    assert r.returncode == 0, r.stderr
    snapshot = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in pathlib.Path(cache).rglob("*")
                if p.is_file()}
    return r.stdout, snapshot


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found"
    path.write_text(text.replace(old, new))


def test_editing_a_helper_recompiles_and_editing_the_cli_does_not(tmp_path):
    root = tmp_path / "src"
    shutil.copytree(PKG, root / "fastact", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    cold, files = _run(root, cache)
    assert files, "nothing was cached"
    warm, files2 = _run(root, cache)
    assert warm == cold and files2 == files  # loaded, nothing rewritten

    # not a kernel source: the cached kernels stay valid (no file rewritten)
    _edit(root / "fastact" / "bench" / "cli.py", '"""', '"""Edited.\n', )
    _edit(root / "fastact" / "functions" / "elementwise.py", "class ActivationFunction:", "# edited\nclass ActivationFunction:")
    after_cli, files3 = _run(root, cache)
    assert after_cli == cold and files3 == files

    # a helper prelu's reduction and gelu call: both must recompile and see it
    _edit(root / "fastact" / "scalar" / "eft.py", "    return (a - (s - bb)) + (b - bb)",
          "    return (a - (s - bb)) + (b - bb) + 1.0")
    edited, files4 = _run(root, cache)
    assert edited != cold, "kernels did not recompile after an edit to scalar/eft.py"
    dw_before = eval(cold.split("] [")[0] + "]")
    dw_after = eval(edited.split("] [")[0] + "]")
    assert dw_after[0] == dw_before[0] + 3  # three compensated additions of x <= 0 in channel 0
    assert files4 != files


def test_stamp_changes_with_each_stamped_file(tmp_path):
    root = tmp_path / "fastact"
    shutil.copytree(PKG, root, ignore=shutil.ignore_patterns("__pycache__"))
    code = textwrap.dedent("""
        import sys
        from fastact.cpu import stamp
        print(stamp.stamp())
    """)

    def current():
        env = dict(os.environ, PYTHONPATH=str(tmp_path))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    base = current()
    (root / "scalar" / "generated" / "vmath_coeffs.py").write_text(
        (root / "scalar" / "generated" / "vmath_coeffs.py").read_text() + "\n# edited\n")
    assert current() != base
    base = current()
    (root / "bench" / "cli.py").write_text((root / "bench" / "cli.py").read_text() + "\n# edited\n")
    assert current() == base
