"""Public API: one callable object per catalog entry.

``fastact.<name>(x, *, out=None, where=True, **params)`` runs the forward pass,
``.backward(grad, x, ...)`` the gradient from the input, and, where the
derivative is a function of the output, ``.backward_from_output(grad, y, ...)``.
``.ufunc`` / ``.backward_ufunc`` / ``.backward_from_output_ufunc`` are the
general real ``np.ufunc`` objects (parameters are extra ufunc inputs); the
calls themselves run loops with the parameter values built in
(``fastact.cpu.ufuncs.select``), which vectorize where a broadcast parameter
input would not, with bitwise identical results.

Argument rules (dtypes, ``out=``) live in ``fastact.functions.args``; the
docstrings come from ``fastact.functions.docstrings``. Large arrays run in
chunks on ``fastact.cpu.threads``; GPU arrays go to ``fastact.cuda``.
"""

from __future__ import annotations

import functools

import numpy as np

from fastact.catalog import ENTRIES, Activation
from fastact.cpu import threads as _threads
from fastact.cpu import ufuncs as _cpu
from fastact.cpu.loopfix import CLEARS_FP_STATUS as _CLEARS_FP_STATUS
from fastact.cuda import elementwise as gpu_kernels
from fastact.cuda import interop as _gpu
from fastact.functions import args
from fastact.functions.args import quiet_call
from fastact.functions.docstrings import docstring

# elements per block of a cast output: the blocks of each operand (64 KiB
# of float32) stay in cache between the kernel and the casts; measured
# 1.3-1.7x faster than NumPy's cast of the whole output, and 2**15-2**16 no
# faster than 2**14
CAST_BLOCK = 1 << 14


def _cast_blocks(*operands, out, dtype, loop):
    """``loop(*operands, out=out, dtype=dtype)`` for an ``out`` of another dtype
    (float16 results of the float32 loop, float32 ``x`` into a float64
    ``out``), computed in ``CAST_BLOCK``-element blocks of ``dtype`` and cast
    into ``out`` block by block. Handed the ``out`` itself, NumPy would cast
    through a ``dtype`` copy of the whole output: Numba's ufuncs flag their
    outputs READWRITE|UPDATEIFCOPY, which rules out NumPy's buffered casts.
    Each result is rounded by the same cast either way: the same bits."""
    it = np.nditer(
        [*operands, out],
        flags=["external_loop", "buffered", "zerosize_ok"],
        op_flags=[["readonly"]] * len(operands) + [["writeonly", "no_broadcast"]],
        op_dtypes=[dtype] * (len(operands) + 1),
        casting="same_kind",
        buffersize=CAST_BLOCK,
    )
    with it:
        for ops in it:
            loop(*ops[:-1], out=ops[-1], dtype=dtype)
    return out


class ActivationFunction:
    """An activation from the catalog; see the instance docstrings."""

    def __init__(self, entry: Activation, alternatives=None):
        self._entry = entry
        self._alternatives = alternatives or {}
        self.__name__ = self.__qualname__ = entry.name
        self.__module__ = "fastact"
        self.__doc__ = docstring(entry)
        self._fast = {}  # dtype -> 1-input forward ufunc of the default parameters
        # below this size a call stays on the calling thread (the fast path's bound too)
        self._min_parallel = (
            _threads.MIN_PARALLEL_ELEMENTS_CHEAP if entry.cheap else _threads.MIN_PARALLEL_ELEMENTS
        )
        if entry.grad_y is not None:
            self.backward_from_output = self._backward_from_output

    def __repr__(self):
        return f"<fastact activation {self._entry.name}>"

    def __reduce__(self):
        # pickled by name as the global fastact.<name> (multiprocessing, dask)
        return self._entry.name

    # ------------------------------------------------------------ parameters

    def _params(self, where, kw):
        e = self._entry
        vals = []
        for p in e.params:
            v = kw.pop(p.name, p.default)
            if isinstance(v, (str, bytes)) or isinstance(v, np.ndarray) and v.ndim:
                raise TypeError(f"fastact.{where}: {p.name} must be a real number, got {v!r}")
            try:
                vals.append(float(v))
            except (TypeError, ValueError):
                raise TypeError(
                    f"fastact.{where}: {p.name} must be a real number, got {v!r}"
                ) from None
        if kw:
            names = ", ".join(sorted(kw))
            valid = ", ".join(e.param_names) or "none"
            raise TypeError(
                f"fastact.{where}: unexpected keyword argument(s) {names}; parameters: {valid}"
            )
        if e.check is not None:
            msg = e.check(*vals)
            if msg:
                raise ValueError(f"fastact.{where}: {msg}")
        return vals

    def _resolve(self, kw):
        """Follow a choice parameter (gelu's approximate) to its catalog entry."""
        for pname, options in self._entry.choices.items():
            if pname in kw:
                value = kw.pop(pname)
                if value not in options:
                    raise ValueError(
                        f"fastact.{self._entry.name}: {pname} must be one of "
                        f"{', '.join(map(repr, options))}, got {value!r}"
                    )
                if options[value] is not None:
                    return self._alternatives[options[value]]
        return self

    # --------------------------------------------------------------- calling

    def _run(self, kind, where, inputs, out, mask, params):
        if _gpu.any_gpu(out, *(a for a, _ in inputs)):
            if mask is not True:
                raise TypeError(f"fastact.{where}: where= is not supported for GPU arrays")
            with _gpu.on_device(where, out, *(a for a, _ in inputs)):
                return gpu_kernels.elementwise(where, self._entry, kind, inputs, out, params)
        res = self._run_ufunc(kind, where, inputs, out, mask, params)
        if out is None and isinstance(res, np.ndarray) and res.ndim == 0:
            return res[()]  # a NumPy scalar, as NumPy's ufuncs return for 0-d input
        return res

    def _run_ufunc(self, kind, where, inputs, out, mask, params):
        arrays = [args.as_array(where, a, n) for a, n in inputs]
        if len(arrays) == 2 and arrays[0].shape != arrays[1].shape:
            try:
                np.broadcast_shapes(arrays[0].shape, arrays[1].shape)
            except ValueError:
                raise ValueError(
                    f"fastact.{where}: {inputs[0][1]} shape {arrays[0].shape} and "
                    f"{inputs[1][1]} shape {arrays[1].shape} do not broadcast"
                ) from None
        compute, result = args.compute_dtypes(where, arrays)
        # the parameters built into the loop where it is there (cpu/ufuncs.select)
        uf, params, defaults = _cpu.select(self._entry, kind, compute, params)
        if kind == "forward" and defaults and not params and compute is result:
            self._fast[compute] = uf
        if out is not None:  # shapes: NumPy's broadcasting (out may be larger), errors named
            shape = arrays[0].shape if len(arrays) == 1 else np.broadcast_shapes(*(a.shape for a in arrays))
            out = args.check_out(where, out, shape, compute, broadcast=True)
        if mask is not True:
            shape = np.broadcast_shapes(*(a.shape for a in arrays), np.shape(mask))
            full = quiet_call(uf, *[np.broadcast_to(a, shape) for a in arrays], *params, dtype=compute)
            if out is None:
                out = np.empty(shape, dtype=result)
            np.copyto(out, full, where=mask, casting="same_kind")
            return out
        big = arrays[0].size >= self._min_parallel and _threads.get_num_threads() > 1
        if out is None and (big or result is not compute):
            shape = np.broadcast_shapes(*(a.shape for a in arrays))
            out = np.empty(shape, dtype=result)
        # dtype= pins the loop: NumPy takes the first loop the inputs cast to
        # safely, and float64 may have been compiled before float32
        run = uf
        if out is not None and out.dtype != compute:
            run = functools.partial(_cast_blocks, loop=uf)
        if big:
            views = _threads.split_views(arrays, out)
            if views is not None:
                ins, o = views

                def chunk(i0, i1):
                    quiet_call(run, *[a[i0:i1] for a in ins], *params, out=o[i0:i1], dtype=compute)

                _threads.for_chunks(chunk, o.shape[0], o.size)
                return out
        return quiet_call(run, *arrays, *params, out=out, dtype=compute)

    def __call__(self, x, *, out=None, where=True, **params):
        if type(x) is np.ndarray and out is None and where is True and not params:
            # the common call (an array, default parameters) straight to its
            # compiled loop once the general path below has set it up; the
            # loop clears the FP flags itself where it can (cpu/loopfix), which
            # saves the error-state set/reset, a third of a small call
            uf = self._fast.get(x.dtype)
            if uf is not None and x.ndim and x.size < self._min_parallel:
                return uf(x) if _CLEARS_FP_STATUS else quiet_call(uf, x)
        target = self._resolve(params)
        if target is not self:
            return target(x, out=out, where=where, **params)
        name = self._entry.name
        vals = self._params(name, params)
        return self._run("forward", name, ((x, "x"),), out, where, vals)

    def backward(self, grad, x, *, out=None, where=True, **params):
        """Gradient dL/dx = grad * f'(x), from the upstream grad and the input x."""
        target = self._resolve(params)
        if target is not self:
            return target.backward(grad, x, out=out, where=where, **params)
        name = f"{self._entry.name}.backward"
        vals = self._params(name, params)
        return self._run("backward", name, ((grad, "grad"), (x, "x")), out, where, vals)

    def _backward_from_output(self, grad, y, *, out=None, where=True, **params):
        """Gradient dL/dx = grad * f'(x), computed from the output y = f(x)."""
        e = self._entry
        name = f"{e.name}.backward_from_output"
        vals = self._params(name, params)
        if e.check_y is not None:
            msg = e.check_y(*vals)
            if msg:
                raise ValueError(f"fastact.{name}: {msg}")
        return self._run("backward_y", name, ((grad, "grad"), (y, "y")), out, where, vals)

    # ----------------------------------------------------------------- ufuncs

    @property
    def ufunc(self):
        """The forward ``np.ufunc`` ``(x, *params) -> y`` (compiles both dtypes).

        Vectorized loops compute both sides of a branch and select one; the
        flags a discarded lane raises are cleared by the loop itself on
        x86-64 (``fastact.cpu.loopfix``). Elsewhere a raw call can raise
        NumPy's "overflow"/"invalid"/"divide" warnings for lanes whose result
        is exact, which the public function silences (see ``quiet_call``):
        wrap raw calls in ``np.errstate`` there.
        """
        return _cpu.full_ufunc(self._entry, "forward")

    @property
    def backward_ufunc(self):
        """The backward ``np.ufunc`` ``(grad, x, *params) -> dx``."""
        return _cpu.full_ufunc(self._entry, "backward")

    @property
    def backward_from_output_ufunc(self):
        """The ``np.ufunc`` ``(grad, y, *params) -> dx`` (None if not defined)."""
        if self._entry.grad_y is None:
            return None
        return _cpu.full_ufunc(self._entry, "backward_y")

    @property
    def params(self):
        """Parameter names and defaults, in ufunc input order."""
        return {p.name: p.default for p in self._entry.params}

    @property
    def catalog_entry(self):
        return self._entry


ACTIVATIONS = {}
for _e in ENTRIES:
    ACTIVATIONS[_e.name] = ActivationFunction(_e, ACTIVATIONS)
ALIASES = {a: e.name for e in ENTRIES for a in e.aliases}


def _lookup(name):
    """Pickles written before 0.2 name ``fastact.api._lookup`` (see fastact/__init__.py)."""
    return ACTIVATIONS[name]
