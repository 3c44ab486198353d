"""Numba's ufunc loops, with the output's stride checked for the fast path.

Numba (0.68) builds each ufunc inner loop with two paths: a fast one, taken
when every *input* is unit-strided, that indexes the output as if it were
unit-strided too, and a general one that follows every operand's step. So
``f(x, out=y[::2])`` with a contiguous x writes the results packed into the
first half of y's buffer, silently.

While fastact builds its ufunc loops (``built_with_strided_out``), the fast
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
"""

import contextlib

_ARG = None


def _arg_class():
    global _ARG
    if _ARG is None:
        from numba.np.ufunc import wrappers

        class Arg(wrappers.UArrayArg):
            """An operand whose unit-stride flag covers every operand of its loop."""

            def __init__(self, context, builder, args, steps, i, fe_type):
                group = getattr(builder, "_fastact_operands", None)
                if group is None:
                    group = builder._fastact_operands = []
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


@contextlib.contextmanager
def built_with_strided_out():
    """Numba ufunc loops built inside this block take their fast path only
    when the output is unit-strided too."""
    from numba.np.ufunc import wrappers

    original = wrappers.UArrayArg
    wrappers.UArrayArg = _arg_class()
    try:
        yield
    finally:
        wrappers.UArrayArg = original
