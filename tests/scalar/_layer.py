"""Helpers shared by the math-layer tests (test_vmath.py, test_vmath32.py):
a ufunc around one layer function, and the machine code of its loop."""

import re

import numba
import numpy as np

_UF = {}


def layer_ufunc(fn, dtype):
    """A ``dtype(dtype)`` ufunc around the scalar function ``fn`` (compiled once
    per test session)."""
    key = (fn, np.dtype(dtype).name)
    if key not in _UF:
        from fastact.scalar.registry import ensure_registered

        ensure_registered()
        t = np.dtype(dtype).name
        _UF[key] = numba.vectorize([f"{t}({t})"])(lambda x: fn(x))
    return _UF[key]


def loop_asm(fn, dtype):
    """Machine code of a ``dtype`` ufunc loop around ``fn`` (the element
    function inlined), for checks that a loop stays vectorized."""
    return loop_code(fn, dtype)[0]


def loop_code(fn, dtype):
    """(machine code, LLVM IR) of a ``dtype`` ufunc loop around ``fn``."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.np.ufunc.wrappers import build_ufunc_wrapper

    from fastact.scalar.registry import ensure_registered

    ensure_registered()
    t = np.dtype(dtype).name
    k = numba.vectorize([f"{t}({t})"])(lambda x: fn(x))
    k(np.ones(64, dtype=dtype))
    cres = list(k._dispatcher.overloads.values())[0]
    info = build_ufunc_wrapper(
        cres.library, cres.target_context, cres.fndesc.llvm_func_name, cres.signature, cres.objectmode, cres
    )
    with global_compiler_lock:
        info.library.get_pointer_to_function(info.name)
    return info.library.get_asm_str(), info.library.get_llvm_str()


def assert_no_contraction(llvm_ir, name):
    """Only the fused multiply-adds a formula writes (``llvm.fma``): no
    ``contract`` fast-math flag and no ``llvm.fmuladd`` that would let LLVM
    fuse a product into a sum the error-free transforms need rounded twice."""
    assert "fmuladd" not in llvm_ir, f"{name}: llvm.fmuladd (contractible)"
    assert not re.search(r"\b(?:fmul|fadd|fsub)\s+(?:\w+\s+)*contract\b", llvm_ir), f"{name}: contract flag"
    assert not re.search(r"\b(?:fmul|fadd|fsub)\s+fast\b", llvm_ir), f"{name}: fast-math flags"
