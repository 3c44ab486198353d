"""float32 math primitives for the float32 formulas (``formulas32``).

Formulas call these names instead of a layer directly, so that a backend can
swap the implementation of a primitive without touching any formula (as
``_mathlib`` does for float64). On the CPU they are the vectorizable float32
layer of ``vmath32``. Each takes and returns float32.
"""

from fastact.scalar.registry import scalar
from fastact.scalar.vmath32 import verfcf, verff, vexpf, vexpm1f, vlog1pf, vtanhf


@scalar
def expf(x):
    return vexpf(x)


@scalar
def expm1f(x):
    return vexpm1f(x)


@scalar
def log1pf(x):
    return vlog1pf(x)


@scalar
def tanhf(x):
    return vtanhf(x)


@scalar
def erff(x):
    return verff(x)


@scalar
def erfcf(x):
    return verfcf(x)
