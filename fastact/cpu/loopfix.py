"""Numba's ufunc loops, built with three changes: the output's stride checked
for the fast path, the floating-point status cleared on return, and a
vectorized loop for an input that is the output itself (in place).

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

**In place.** LLVM vectorizes the fast loop behind a runtime check that the
output does not overlap an input; identical pointers fail it, so
``f(x, out=x)`` ran the scalar loop, 8-13x slower for kernels calling exp
(0.95 vs 7.9 ns per element for float32 sigmoid, 2.2 vs 23 for gelu). Loops
built with ``fastact_loops(in_place=n)`` come from ``_build_ufunc_wrapper``
instead of Numba's builder: the fast loop is marked free of loop-carried
dependences, and is taken only when every input is the output itself or lies
apart from it; partial overlaps, which NumPy passes to a loop only through
``ufunc.accumulate``, take the sequential strided loop.
"""

import contextlib
import platform

# the loops clear the FP status only where the intrinsics are known
CLEARS_FP_STATUS = platform.machine().lower() in ("x86_64", "amd64")
_MXCSR_FLAGS = 0x3F  # IE DE ZE OE UE PE

_ARG = None
_IN_PLACE = 0  # the leading inputs that get an in-place loop (fastact_loops' argument)


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


def _distinct_node(module, operands=()):
    """A ``distinct`` metadata node (llvmlite uniques nodes by content)."""
    from llvmlite import ir

    class Distinct(ir.values.MDValue):
        __eq__ = object.__eq__
        __hash__ = object.__hash__

        def descr(self, buf):
            buf.append("distinct ")
            super().descr(buf)

    return Distinct(module, operands, name=str(len(module.metadata)))


def _mark_parallel(module, blocks, cond):
    """Annotate the loop made of ``blocks`` (header ``cond``) as free of
    loop-carried memory dependences: every memory access joins one access
    group (those of the inlined kernel join it through the call), the latch
    names it in ``llvm.loop.parallel_accesses``. Should an access escape the
    group, LLVM ignores the annotation and checks as before."""
    from llvmlite import ir

    group = _distinct_node(module)
    loop_id = _distinct_node(module)
    loop_id.operands = (loop_id, module.add_metadata(["llvm.loop.parallel_accesses", group]))
    for block in blocks:
        for ins in block.instructions:
            if isinstance(ins, (ir.LoadInstr, ir.StoreInstr, ir.CallInstr)):
                ins.set_metadata("llvm.access.group", group)
        term = block.terminator
        if isinstance(term, ir.Branch) and term.operands[0] is cond:
            term.set_metadata("llvm.loop", loop_id)


def _build_ufunc_wrapper(library, context, fname, signature, objmode, cres):
    """Numba's ``wrappers.build_ufunc_wrapper`` (0.68, compiled mode) whose
    unit-strided loop is marked parallel (``_mark_parallel``) and taken only
    when each input is the output itself or lies apart from it.

    Why: LLVM vectorizes Numba's fast loop behind a runtime check that the
    output does not overlap an input, and identical pointers fail that
    check, so ``f(x, out=x)`` ran the scalar loop (8-13x slower for kernels
    calling exp). Element i's inputs are read before element i is written,
    so identical operands carry no dependence from one iteration to another;
    NumPy copies the other overlaps of a ufunc call, and those it makes
    itself (``ufunc.accumulate`` passes the output shifted by one element)
    take the sequential strided loop."""
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.np.ufunc import wrappers

    byte_ptr_t = ir.IntType(8).as_pointer()
    intp_t = context.get_value_type(types.intp)
    fnty = ir.FunctionType(
        ir.VoidType(), [byte_ptr_t.as_pointer(), intp_t.as_pointer(), intp_t.as_pointer(), byte_ptr_t]
    )
    wrapperlib = context.codegen().create_library("ufunc_wrapper")
    module = wrapperlib.create_ir_module("")
    func = ir.Function(
        module, context.call_conv.get_function_type(signature.return_type, signature.args), name=fname
    )
    func.attributes.add("alwaysinline")
    wrapper = ir.Function(module, fnty, "__ufunc__." + func.name)
    arg_args, arg_dims, arg_steps, _ = wrapper.args
    builder = ir.IRBuilder(wrapper.append_basic_block("entry"))
    envptr = builder.load(context.declare_env_global(builder.module, context.get_env_name(cres.fndesc)))
    loopcount = builder.load(arg_dims, name="loopcount")
    # wrappers.UArrayArg is the Arg class here: the output's stride, the FP status
    arrays = [
        wrappers.UArrayArg(context, builder, arg_args, arg_steps, i, t) for i, t in enumerate(signature.args)
    ]
    out = wrappers.UArrayArg(context, builder, arg_args, arg_steps, len(arrays), signature.return_type)
    zero = context.get_constant(types.intp, 0)
    offsets = []
    for _ in arrays:
        offsets.append(cgutils.alloca_once(builder, intp_t))
        builder.store(zero, offsets[-1])
    store_offset = cgutils.alloca_once(builder, intp_t)
    builder.store(zero, store_offset)
    fast = cgutils.true_bit
    for ary in arrays:
        fast = builder.and_(fast, ary.is_unit_strided)  # the output's too (Arg)

    def bounds(ary):
        lo = builder.ptrtoint(ary.dataptr, intp_t)
        return lo, builder.add(lo, builder.mul(loopcount, ary.abisize))

    out_lo, out_hi = bounds(out)
    for ary in arrays:
        lo, hi = bounds(ary)
        same = builder.icmp_unsigned("==", lo, out_lo)
        apart = builder.or_(builder.icmp_unsigned("<=", hi, out_lo), builder.icmp_unsigned("<=", out_hi, lo))
        fast = builder.and_(fast, builder.or_(same, apart))
    pyapi = context.get_python_api(builder)
    with builder.if_else(fast, likely=True) as (is_fast, is_general):
        with is_fast:
            first = len(wrapper.blocks)
            with cgutils.for_range(builder, loopcount, intp=intp_t) as loop:
                wrappers.build_fast_loop_body(
                    context, func, builder, arrays, out, offsets, store_offset, signature, loop.index, pyapi,
                    env=envptr,
                )
            _mark_parallel(module, wrapper.blocks[first:], wrapper.blocks[first])
        with is_general, cgutils.for_range(builder, loopcount, intp=intp_t):
            wrappers.build_slow_loop_body(
                context, func, builder, arrays, out, offsets, store_offset, signature, pyapi, env=envptr
            )
    builder.ret_void()
    wrapperlib.add_ir_module(module)
    wrapperlib.add_linking_library(library)
    return wrappers._wrapper_info(library=wrapperlib, env=cres.environment, name=wrapper.name)


@contextlib.contextmanager
def fastact_loops(in_place=0):
    """Numba ufunc loops built inside this block take their fast path only
    when the output is unit-strided too, and clear the FP status on return;
    each of the first ``in_place`` inputs (of the output's type) gets a
    vectorized loop for when it is the output itself (``_build_ufunc_wrapper``)."""
    global _IN_PLACE
    from numba.np.ufunc import ufuncbuilder, wrappers

    original = wrappers.UArrayArg
    builder = ufuncbuilder.build_ufunc_wrapper
    wrappers.UArrayArg = _arg_class()
    if in_place:
        _IN_PLACE = in_place
        ufuncbuilder.build_ufunc_wrapper = _build_ufunc_wrapper
    try:
        yield
    finally:
        wrappers.UArrayArg = original
        ufuncbuilder.build_ufunc_wrapper = builder
        _IN_PLACE = 0
