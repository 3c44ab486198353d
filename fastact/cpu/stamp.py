"""The fingerprint that keys every CPU kernel's disk cache.

Numba keys a cached kernel on its own function (bytecode and closure) and
its own file, not on the files of the functions it calls. Each kernel holds
this fingerprint in its closure, so an edit to any source a CPU kernel is
compiled from invalidates it (as does a different FMA choice,
``FASTACT_FMA``, or vector width, ``fastact.cpu.width``), and an edit
anywhere else (the public functions, the CUDA backend, the benchmark CLI,
the dev tools) does not.

The sources: the scalar layer (every ``@scalar`` function, the generated
coefficients) and the CPU modules that define kernels. A test checks that
every module with compiled CPU code is listed here.
"""

import hashlib
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1]

#: paths relative to the package: folders (every .py below) and files
SOURCES = ("scalar", "cpu/ufuncs.py", "cpu/gufuncs.py", "cpu/layers.py", "cpu/loopfix.py")

_value = None


def files():
    """The stamped files, in a fixed order."""
    out = []
    for rel in SOURCES:
        p = PACKAGE / rel
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def stamp():
    """16 hex digits of the SHA-256 of the stamped files' names and bytes and
    of the compile-time choices made from the target (vector width, FMA or
    not). The first call sets the vector width (``width.apply``): every CPU
    kernel build calls this before Numba compiles."""
    global _value
    if _value is None:
        from fastact.cpu import width

        chosen = width.token()  # before has_fma, which reads the features set
        from fastact.scalar.fma import has_fma

        h = hashlib.sha256(b"fma" if has_fma() else b"no-fma")
        h.update(chosen)
        for path in files():
            h.update(path.relative_to(PACKAGE).as_posix().encode())
            h.update(path.read_bytes())
        _value = h.hexdigest()[:16]
    return _value
