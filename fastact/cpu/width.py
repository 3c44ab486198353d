"""The one rule for the SIMD width of fastact's CPU kernels: 256 or 512 bits.

On an x86 host with AVX-512, LLVM emits 512-bit (zmm) loops unless the CPU's
tuning says ``prefer-256-bit`` (Intel Skylake-X to Sapphire Rapids do; AMD
Zen 4 does not). Measured (docs/vector_width.md, ``python -m
fastact.devtools.vector_width``): on an Intel Xeon 512 bits were faster
(float32 exp 0.27 vs 0.30 ns, sigmoid 0.29 vs 0.34 ns per element); on Zen 4,
which splits 512-bit operations in two, 512 bits were still faster by the
geometric mean over the kernel families. The width is one process-wide
choice, so ``auto`` takes the width faster overall: 512 (``AUTO_BITS``).

``FASTACT_VECTOR_WIDTH`` (read once, at the first CPU compile):

- ``auto`` (default): on a host with ``avx512f``, Numba's CPU features become
  the host's with ``-prefer-256-bit`` appended (512-bit code on Intel, the
  same code as Numba's default on Zen 4); on a host without AVX-512 nothing
  is set (nothing to choose: never slower than Numba's default);
- ``512`` / ``256``: that width where the host has AVX-512 (``+prefer-256-bit``
  for 256); nothing where it has none;
- ``native``: nothing is set (Numba's and LLVM's default).

Nothing is set either when the user chose the target (``NUMBA_CPU_FEATURES``
or ``NUMBA_CPU_NAME``, or ``numba.config`` holds them: their choice wins), or
when Numba's CPU code generator already exists in the process (the user
compiled Numba code before fastact's first kernel): it reads the features
once, when it is created, and config changed under live code would not apply.

Cost: ``numba.config.CPU_FEATURES`` is process-wide, like the LLVM inline
threshold (``fastact.scalar.registry``): Numba code the user compiles later
in the same process targets the same features (512-bit vectors on an Intel
AVX-512 host). ``FASTACT_VECTOR_WIDTH=native`` opts out. The decision is part
of every CPU kernel's cache stamp; ``describe()`` reports it.
"""

import os
import threading

ENV = "FASTACT_VECTOR_WIDTH"
SETTINGS = ("auto", "native", "256", "512")
#: the width ``auto`` chooses on an AVX-512 host (see the module docstring)
AUTO_BITS = 512

_FLAG = {256: "+prefer-256-bit", 512: "-prefer-256-bit"}
_lock = threading.Lock()
_decision = None


def setting():
    """``FASTACT_VECTOR_WIDTH``, checked (``auto`` when unset)."""
    value = os.environ.get(ENV, "").strip().lower() or "auto"
    if value not in SETTINGS:
        raise ValueError(f"{ENV} must be one of {', '.join(SETTINGS)}, got {value!r}")
    return value


def bits_of(features):
    """The vector width LLVM gives loops for an x86 feature string: 512 or 256
    where it says so, None where AVX-512 is left to the CPU's own tuning."""
    flags = {}
    for f in filter(None, (features or "").split(",")):
        flags[f[1:]] = f[0] == "+"  # the last mention of a feature wins
    if not flags.get("avx512f"):
        return 256 if flags.get("avx") else 128
    if "prefer-256-bit" in flags:
        return 256 if flags["prefer-256-bit"] else 512
    return None


def decide(value, features, user_set=False, live_features=None):
    """The rule, without side effects: ``(features to set or None, bits,
    reason)`` for the setting ``value``, the host's Numba ``features``,
    whether the user set Numba's CPU target, and the features of Numba's CPU
    code generator if it already exists (else None)."""
    if user_set:
        return None, bits_of(features), "NUMBA_CPU_FEATURES/NUMBA_CPU_NAME set: the user's target"
    if live_features is not None:
        return None, bits_of(live_features), "Numba's CPU codegen existed before fastact's first compile: left as is"
    if value == "native":
        return None, bits_of(features), f"{ENV}=native: Numba's default"
    if "+avx512f" not in (features or "").split(","):
        return None, bits_of(features), "no AVX-512 on this host: Numba's default"
    bits = AUTO_BITS if value == "auto" else int(value)
    why = "auto: the faster width on AVX-512 (docs/vector_width.md)" if value == "auto" else f"{ENV}={value}"
    return f"{features},{_FLAG[bits]}", bits, why


def _inputs():
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features
    from numba.core.registry import cpu_target

    user = (
        "NUMBA_CPU_FEATURES" in os.environ
        or "NUMBA_CPU_NAME" in os.environ
        or config.CPU_FEATURES is not None
        or config.CPU_NAME is not None
    )
    live = None
    if "_toplevel_target_context" in vars(cpu_target):  # created lazily, with the codegen
        live = cpu_target.target_context.codegen()._tm_features
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return setting(), features, user, live


def _as_dict(decided):
    features, bits, reason = decided
    flag = features.rsplit(",", 1)[-1] if features is not None else None
    return {"bits": bits, "reason": reason, "flag": flag}


def apply():
    """Make the decision once (idempotent; called by ``stamp()`` before any
    fastact CPU compile) and, where it sets a width, set
    ``numba.config.CPU_FEATURES``. Returns ``describe()``."""
    global _decision
    if _decision is None:
        with _lock:
            if _decision is None:
                decided = decide(*_inputs())
                if decided[0] is not None:
                    from numba.core import config

                    config.CPU_FEATURES = decided[0]
                _decision = _as_dict(decided)
    return dict(_decision)


def describe():
    """``{"bits", "reason", "flag"}``: the decision made, or the one the first
    CPU compile would make (nothing is set by asking). ``bits`` is None where
    the width is left to LLVM's tuning for the CPU (e.g. ``native``); ``flag``
    is the feature appended to the host's (None: nothing set)."""
    if _decision is not None:
        return dict(_decision)
    return _as_dict(decide(*_inputs()))


def token():
    """The decision as bytes for the cache stamp."""
    d = apply()
    return f"vector-width:{d['bits']}:{d['flag']}".encode()
