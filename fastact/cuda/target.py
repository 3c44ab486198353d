"""The CUDA target: ``numba.cuda`` imported and set up for fastact's kernels,
and how every kernel of the backend is built and launched.

What lives here: the lazy import of ``numba.cuda`` (``cuda()``; the
simulator switch ``simulated()`` and its shared-array fix), the
registration of the scalar formulas for the CUDA target with libdevice
primitives, FMA contraction off (``exact_fp``), launch bounds, ``jit`` /
``compile_ptx`` (every kernel module builds through them), ``bind`` (the
``cuda`` global kernel modules name), the grid-stride ``launch`` and the
simulator's grid sizes. The kernels themselves are in ``elementwise``,
``rows`` and ``layers``; GPU arrays in ``interop``.

Nothing here imports ``numba.cuda`` until a GPU array reaches fastact (or a
tool asks for PTX): ``import fastact`` and every CPU call work without
numba-cuda installed.

One formula, two targets: a kernel calls the same scalar formula the CPU
ufunc calls (``entry.forward`` / ``forward32`` / ``grad`` / ...). Per target
only the math primitives differ: on CUDA the float64 ``exp``, ``expm1``,
``log1p`` and ``tanh`` of ``fastact.scalar.mathlib`` are libdevice's (<= 1
ulp, as accurate as the CPU layer and cheaper on a GPU); erf/erfc keep the
vmath layer (libdevice's are 2 and 5 ulp, ours 0.7 and 0.8); float32 keeps
the vmath32 layer (libdevice's expf/tanhf/erff are 2 ulp, erfcf 4; ours <= 1).

Kernels are compiled with FMA contraction off (NVVM's default is on): the
error-free transforms of the formulas (two-sums, Dekker products, the
double-float steps of float32 sigmoid/silu) require ``a*b + c`` to round
twice. Explicit fused multiply-adds (``fastact.scalar.fma.fma``,
libdevice) stay.

In the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same kernels run as
Python, with the plain-Python formulas and primitives.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading

import numpy as np

from fastact.scalar import registry as _jit

_cuda = None
_local = threading.local()  # .exact: compiling a fastact kernel (FMA contraction off)

#: threads per block of the elementwise kernels (full warps; 256 leaves
#: the register file room for 8 blocks per SM at <= 32 registers)
THREADS = 256
#: grid-stride loops: at most this many blocks per SM
BLOCKS_PER_SM = 32

# The simulator runs each thread of a launch as a Python thread: its grids
# are small, but more than one block so that grid-stride steps (and, for the
# row kernels, merges across warps) are exercised.
#: simulated threads per block (elementwise kernels, prelu's reduction)
SIM_THREADS = 16
#: simulated threads per block of kernels that work in whole warps: two warps
SIM_WARP_THREADS = 64
#: simulated blocks per launch at most
SIM_BLOCKS = 2
#: ``sys.setswitchinterval`` during a simulated launch whose threads exchange
#: values across the warp: each exchange hands the GIL to the warp's others
SIM_SWITCH_INTERVAL = 1e-4


def simulated():
    """True when Numba's CUDA simulator is on (set before numba.cuda is imported)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def cuda():
    """``numba.cuda``, imported and set up for fastact's kernels on first use."""
    global _cuda
    if _cuda is None:
        # the compile lock: registering the formulas for the target must not
        # interleave with a compilation in another thread
        with _jit.COMPILE_LOCK:
            if _cuda is None:
                from numba import cuda as c

                if simulated():
                    _sim_fix_shared()
                else:
                    _setup_target()
                _cuda = c
    return _cuda


# ------------------------------------------------------------- the simulator


def _sim_fix_shared():
    """The simulator's ``cuda.shared.array`` looks its allocation up and
    creates it without a lock: two threads of a block that reach the line
    together can each get an array of their own (the last one stays shared),
    so a value one writes is never seen by the others (observed: a warp's
    partial sum lost, about one block launch in a few hundred). Make the
    look-up atomic (idempotent; the simulator only)."""
    import traceback

    from numba.cuda import types
    from numba.cuda.np import numpy_support
    from numba.cuda.simulator import kernelapi

    cls = kernelapi.FakeCUDAShared
    if getattr(cls.array, "_fastact_locked", False):
        return
    original = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        # keyed by the caller's file and line, as the simulator's own
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
            return res

    array._fastact_locked = True
    cls.array = array


# ------------------------------------------------------------- the target

_done_target = False


def _primitive_overloads():
    """The primitives CUDA replaces: stub -> libdevice function (float64 only)."""
    from fastact.scalar import mathlib as M

    return {M.exp: math.exp, M.expm1: math.expm1, M.log1p: math.log1p, M.tanh: math.tanh}


def _setup_target():
    """Register the formulas for the CUDA target and turn FMA contraction off
    for fastact's compilations (idempotent; no GPU needed)."""
    global _done_target
    if _done_target:
        return
    from numba.cuda.cudadrv import nvvm
    from numba.extending import overload

    prims = _primitive_overloads()
    _jit.register_for_target("cuda", replaced=set(prims))
    for stub, fn in prims.items():
        overload(stub, target="cuda")(_libdevice(fn))

    original = nvvm.compile_ir
    if not getattr(original, "_fastact", False):

        def compile_ir(llvmir, **options):
            if getattr(_local, "exact", False):
                if options.get("fastmath"):  # it would set fma=1 after this point
                    raise ValueError("fastact kernels compile without fastmath: FMA contraction stays off")
                options["fma"] = False
            return original(llvmir, **options)

        compile_ir._fastact = True
        nvvm.compile_ir = compile_ir
    _done_target = True


def _libdevice(fn):
    def ov(x):
        return lambda x: fn(x)

    return ov


@contextlib.contextmanager
def exact_fp():
    """Compile fastact kernels inside this block with FMA contraction off."""
    prev = getattr(_local, "exact", False)
    _local.exact = True
    try:
        yield
    finally:
        _local.exact = prev


#: (max threads per block, min blocks per SM) for the kernels listed in
#: ``fastact.cuda.occupancy.FULL_OCCUPANCY``: 65536 registers / (256 x 8) = 32 each
LAUNCH_BOUNDS = (THREADS, 8)


def launch_bounds(name):
    """The ``launch_bounds`` of kernel ``name``: ``LAUNCH_BOUNDS`` where ptxas
    fits it in 32 registers without spilling (the generated list
    ``fastact.cuda.occupancy.FULL_OCCUPANCY``), else None (its natural register count)."""
    from fastact.cuda.occupancy import FULL_OCCUPANCY

    return LAUNCH_BOUNDS if name in FULL_OCCUPANCY else None


def jit(pyfunc):
    """``cuda.jit`` of a kernel function, with its launch bounds (every
    backend module builds its kernels through this)."""
    lb = launch_bounds(pyfunc.__name__)
    if lb is None or simulated():  # the simulator takes no launch bounds
        return cuda().jit(pyfunc)
    return cuda().jit(pyfunc, launch_bounds=lb)


def compile_ptx(pyfunc, sig, cc=(9, 0), bounds="auto"):
    """PTX of a kernel for compute capability ``cc``, compiled as fastact's
    launches compile it (no GPU needed): ``(ptx, resty)``. ``bounds``: the
    launch bounds, by default those its launches use (``launch_bounds``)."""
    c = cuda()
    lb = launch_bounds(pyfunc.__name__) if bounds == "auto" else bounds
    with exact_fp():
        return c.compile_ptx(pyfunc, sig, cc=cc, launch_bounds=lb)


# ------------------------------------------------------------ kernels and launches


def bind(namespace):
    """Set ``namespace["cuda"]`` (a kernel module's ``globals()``) to
    ``numba.cuda``, once. Kernels written as Python functions name ``cuda``
    as a module global, not a closure variable: the simulator runs a kernel
    with the globals bound to ``numba.cuda`` swapped for its fake module."""
    if namespace.get("cuda") is None:
        namespace["cuda"] = cuda()


def launch(k, n, stream, *args):
    """Launch a grid-stride kernel over ``n`` elements on ``stream``."""
    c = cuda()
    if n == 0:
        return
    if simulated():
        threads, blocks = SIM_THREADS, min(SIM_BLOCKS, -(-n // SIM_THREADS))
    else:
        sms = c.get_current_device().MULTIPROCESSOR_COUNT
        threads = THREADS
        blocks = max(1, min(-(-n // THREADS), sms * BLOCKS_PER_SM))
    with exact_fp():
        k[blocks, threads, stream](*args)
