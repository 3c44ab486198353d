"""Numba's ufunc loops, built with two changes: the output's stride checked
for the fast path, and the floating-point status cleared on return.

**Strided output.** Numba (0.68) builds each ufunc inner loop with two paths: a fast one, taken
when every *input* is unit-strided, that indexes the output as if it were
unit-strided too, and a general one that follows every operand's step. So
``f(x, out=y[::2])`` with a contiguous x writes the results packed into the
first half of y's buffer, silently.

While fastact builds its ufunc loops (``fastact_loops``), the fast
path's condition also requires a unit-strided output; a strided output takes
the general path, as a strided input does. The condition is computed once per
call of the loop, so a contiguous call runs the same vectorized loop as before.
(Storing at ``i * step`` on the fast path instead was measured 2x slower on a
cheap kernel: LLVM's stride speculation does not recover the plain loop.)

How: the wrapper builder ANDs the inputs' ``is_unit_strided`` after it has
created every operand, output included; inside the block each operand's flag
is the AND over all operands of its wrapper. The patch is in force only while
fastact compiles (under ``COMPILE_LOCK``): other Numba code in the process is
not changed. Numba does not cache these wrappers on disk (only the kernels
they call), so every loaded kernel gets a checked one.

**Floating-point status.** A vectorized loop evaluates both sides of a branch
and keeps one, so the discarded lane can raise the CPU's overflow / invalid /
divide flags for a result that is exact; NumPy reads the flags after the loop
and would warn (or raise, under ``np.errstate(all="raise")``). Setting a quiet
error state around every call costs a context-variable set and reset, 0.3 us,
which is a third of a small call. Instead each loop clears the flags before it
returns (x86-64: MXCSR's six exception bits, by LLVM's ``stmxcsr`` /
``ldmxcsr`` intrinsics, once per loop call, not per element). fastact's
results never need those flags: every special value is computed, not trapped.
On other architectures ``CLEARS_FP_STATUS`` is False and the public functions
set the quiet error state instead (``fastact.functions.args.quiet_call``).
"""

import contextlib
import platform

# the loops clear the FP status only where the intrinsics are known
CLEARS_FP_STATUS = platform.machine().lower() in ("x86_64", "amd64")
_MXCSR_FLAGS = 0x3F  # IE DE ZE OE UE PE

_ARG = None


def _arg_class():
    global _ARG
    if _ARG is None:
        from numba.np.ufunc import wrappers

        class Arg(wrappers.UArrayArg):
            """An operand whose unit-stride flag covers every operand of its loop."""

            def __init__(self, context, builder, args, steps, i, fe_type):
                group = getattr(builder, "_fastact_operands", None)
                if group is None:  # the first operand of a new loop
                    group = builder._fastact_operands = []
                    if CLEARS_FP_STATUS:
                        _clear_on_return(builder)
                self._group = group
                super().__init__(context, builder, args, steps, i, fe_type)
                group.append(self)

            @property
            def is_unit_strided(self):
                flag = self._own
                for other in self._group:
                    if other is not self:
                        flag = self.builder.and_(flag, other._own)
                return flag

            @is_unit_strided.setter
            def is_unit_strided(self, value):
                self._own = value

        _ARG = Arg
    return _ARG


def _clear_on_return(builder):
    """Every ``ret void`` this builder emits (the loop's return) is preceded by
    clearing MXCSR's exception flags."""
    from llvmlite import ir
    from numba.core import cgutils

    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [i8p])
    slot = cgutils.alloca_once(builder, i32, name="mxcsr")
    ret_void = builder.ret_void

    def clear_then_return():
        st = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.stmxcsr")
        ld = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.ldmxcsr")
        ptr = builder.bitcast(slot, i8p)
        builder.call(st, [ptr])
        builder.store(builder.and_(builder.load(slot), i32(~_MXCSR_FLAGS & 0xFFFFFFFF)), slot)
        builder.call(ld, [ptr])
        return ret_void()

    builder.ret_void = clear_then_return


@contextlib.contextmanager
def fastact_loops():
    """Numba ufunc loops built inside this block take their fast path only
    when the output is unit-strided too, and clear the FP status on return."""
    from numba.np.ufunc import wrappers

    original = wrappers.UArrayArg
    wrappers.UArrayArg = _arg_class()
    try:
        yield
    finally:
        wrappers.UArrayArg = original
