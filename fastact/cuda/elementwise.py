"""The elementwise kernels: one grid-stride ``@cuda.jit`` kernel per catalog
entry, kind (forward, backward, backward from the output, gated unit and its
backward), compute precision and layout, generated as source text; and
``elementwise()``, which runs one on GPU operands (plus the GPU copies made
with its identity kernel: ``copy``, ``rows_view``, ``rows_out``).

Kernels are grid-stride loops with 64-bit indices (arrays over 2**31
elements), one thread per element per step. Contiguous operands (all C- or
all F-ordered, same shape) run the 1-D kernel; anything else (strides,
broadcasting) the N-d kernel, which unravels the flat index. They are built
lazily (``fastact.cuda.target``: nothing imports ``numba.cuda`` before the
first GPU array), once per variant, in a ``KernelTable``.
"""

from __future__ import annotations

import numpy as np

from fastact.cuda import target
from fastact.cuda.interop import (
    GpuArray,
    broadcast_strides,
    check_out,
    empty_like_input,
    operands,
    stream_for,
    view,
)
from fastact.functions.args import compute_dtypes
from fastact.scalar.eft import prod3
from fastact.scalar.registry import KernelTable

_KERNELS = KernelTable()


# ------------------------------------------------------------ kernel text
# Kernels of variable arity are generated as source text (as Numba's own
# vectorize does): CUDA kernels take no *args. The statements below are the
# whole kernel body per kind; the formulas are the catalog's, bound by name.

_BODY = {
    # forward: y = f(x, *params) in the compute precision
    "forward": ("o0[{i}] = f(W(i0[{i}]){params})",),
    # backward: dx = grad * f'(x), as the CPU ufunc: in float32 where the
    # float32 evaluation returns a float32 (the product of two float32 is
    # correctly rounded either way), else in float64 (float16 storage too:
    # no double rounding through float32)
    "backward": ("o0[{i}] = G(i0[{i}]) * f(W(i1[{i}]){params})",),
    # gated unit: y = f(a) * b (float64, as the CPU gated ufunc)
    "gated": ("o0[{i}] = f(D(i0[{i}])) * D(i1[{i}])",),
    # gated backward: (grad, a, b) -> (grad * b * f'(a), grad * f(a)), the
    # first as prod3 (as the CPU gufunc: no inf * 0 = NaN after grad * b overflows)
    "gated_backward": (
        "g = D(i0[{i}])",
        "a = D(i1[{i}])",
        "o0[{i}] = prod3(g, D(i2[{i}]), fp(a))",
        "o1[{i}] = g * f(a)",
    ),
}
_ARITY = {"forward": (1, 1), "backward": (2, 1), "gated": (2, 1), "gated_backward": (3, 2)}


def _source(name, kind, nparams, ndim, param_arrays=False):
    """Source of the kernel ``name(i0.., o0.., p0..)``; ``ndim`` 1 is the
    contiguous kernel (flat views), more is the strided N-d kernel.
    ``param_arrays``: the parameters are arrays read like the inputs
    (prelu's per-channel slope), placed after them."""
    nin, nout = _ARITY[kind]
    if param_arrays:
        args = [f"i{k}" for k in range(nin + nparams)] + [f"o{k}" for k in range(nout)]
        params = "".join(f", D(i{nin + k}[{{i}}])" for k in range(nparams))
    else:
        args = [f"i{k}" for k in range(nin)] + [f"o{k}" for k in range(nout)]
        args += [f"p{k}" for k in range(nparams)]
        params = "".join(f", p{k}" for k in range(nparams))
    lines = [
        f"def {name}({', '.join(args)}):",
        "    i = cuda.grid(1)",  # 64-bit (mul.wide): no overflow past 2**31
        "    step = cuda.gridsize(1)",
        "    n = o0.size",
        "    while i < n:",
    ]
    if ndim == 1:
        idx = "i"
    else:
        # flat index -> N-d index over the output's shape (C order)
        lines.append("        r = i")
        for d in range(ndim - 1, 0, -1):
            lines.append(f"        j{d} = r % o0.shape[{d}]")
            lines.append(f"        r = r // o0.shape[{d}]")
        lines.append("        j0 = r")
        idx = "(" + ", ".join(f"j{d}" for d in range(ndim)) + ")"
    for stmt in _BODY[kind]:
        lines.append("        " + stmt.format(i=idx, params=params.format(i=idx)))
    lines.append("        i += step")
    return "\n".join(lines) + "\n"


def formula(entry, kind, dtype):
    """(f, is_f32): the catalog's scalar formula a ``dtype`` kernel runs:
    the float32 evaluation for float32/float16 storage where the catalog
    has one (as the CPU float32 loop), else the float64 definition."""
    dtype = np.dtype(dtype)
    f64 = {"forward": entry.forward, "backward": entry.grad, "backward_y": entry.grad_y}[kind]
    f32 = {"forward": entry.forward32, "backward": entry.grad32}.get(kind)
    if f64 is None:
        raise AttributeError(f"fastact.{entry.name} has no {kind} formula")
    if dtype != np.float64 and f32 is not None:
        return f32, True
    return f64, False


def pyfunc(entry, kind, dtype, nparams, ndim=1, param_arrays=False):
    """The Python kernel function for ``entry``'s ``kind`` ("forward",
    "backward", "backward_y", "gated", "gated_backward") with ``dtype``
    storage, ``nparams`` parameters as scalar arguments."""
    import numba

    dtype = np.dtype(dtype)
    if kind in ("gated", "gated_backward"):
        f, fp, is32 = entry.forward, entry.grad, False
    else:
        f, is32 = formula(entry, kind, dtype)
        fp = None
    body_kind = "forward" if kind == "forward" else ("backward" if kind == "backward_y" else kind)
    name = f"{entry.name}_{kind}_{dtype.name}_{ndim}d" + ("_pa" if param_arrays else "")
    src = _source(name, body_kind, nparams, ndim, param_arrays)
    w = numba.float32 if is32 else numba.float64
    g = numba.float32 if (is32 and dtype == np.float32) else numba.float64
    ns = {"cuda": target.cuda(), "f": f, "fp": fp, "W": w, "D": numba.float64, "G": g, "prod3": prod3}
    exec(compile(src, f"<fastact.cuda {name}>", "exec"), ns)
    fn = ns[name]
    fn.__fastact_source__ = src
    return fn


def signature(kind, dtype, nparams, ndim=1, param_arrays=False):
    """The Numba signature of a kernel of ``pyfunc`` (all arrays ``dtype``;
    parameters float64)."""
    nin, nout = _ARITY["forward" if kind == "forward" else
                      ("backward" if kind == "backward_y" else kind)]
    t = {np.dtype(np.float16): "float16", np.dtype(np.float32): "float32",
         np.dtype(np.float64): "float64"}[np.dtype(dtype)]
    arr = f"{t}[::1]" if ndim == 1 else f"{t}[{', '.join([':'] * ndim)}]"
    if param_arrays:
        return f"void({', '.join([arr] * (nin + nparams + nout))})"
    return f"void({', '.join([arr] * (nin + nout) + ['float64'] * nparams)})"


def kernel(entry, kind, dtype, nparams, ndim, param_arrays=False):
    """The lazily compiled ``@cuda.jit`` kernel (specialized on first launch)."""
    key = (entry.name, kind, np.dtype(dtype), nparams, ndim, param_arrays)
    return _KERNELS.get(key, lambda: target.jit(
        pyfunc(entry, kind, dtype, nparams, ndim, param_arrays)))


# ------------------------------------------------------------ enumeration


def kernel_specs(dtypes=("float16", "float32", "float64")):
    """Every elementwise kernel fastact can launch, for PTX checks:
    yields (name, pyfunc, signature), the contiguous (1-d) kernels of every
    catalog entry and kind, with the catalog's parameter count, plus the
    strided (2-d) variant of each forward kernel and the gated units."""
    from fastact.catalog import CATALOG, ENTRIES

    for e in ENTRIES:
        kinds = ["forward", "backward"] + (["backward_y"] if e.grad_y is not None else [])
        for kind in kinds:
            for dt in dtypes:
                for ndim in (1, 2) if kind == "forward" else (1,):
                    fn = pyfunc(e, kind, dt, len(e.params), ndim)
                    yield fn.__name__, fn, signature(kind, dt, len(e.params), ndim)
    leaky = CATALOG["leaky_relu"]  # prelu: the slope as a broadcast array
    for kind in ("forward", "backward"):
        for dt in dtypes:
            fn = pyfunc(leaky, kind, dt, 1, 2, param_arrays=True)
            yield fn.__name__, fn, signature(kind, dt, 1, 2, param_arrays=True)
    for name in ("silu", "gelu", "gelu_tanh"):
        for kind in ("gated", "gated_backward"):
            for dt in dtypes:
                fn = pyfunc(CATALOG[name], kind, dt, 0, 1)
                yield fn.__name__, fn, signature(kind, dt, 0, 1)


# ------------------------------------------------------------ launches


def elementwise(where, entry, kind, inputs, out, params, nout=1, param_arrays=()):
    """Run a catalog kernel on GPU operands; returns the result(s) in the
    input's library. ``kind``: forward / backward / backward_y / gated /
    gated_backward; ``params``: float values of the entry's parameters, or
    ``param_arrays``: (obj, name) GPU arrays broadcast against the inputs."""
    arrays = operands(where, list(inputs) + list(param_arrays))
    try:
        shape = tuple(np.broadcast_shapes(*[a.shape for a in arrays]))
    except ValueError:
        names = " and ".join(f"{n} shape {a.shape}" for a, (_, n) in zip(arrays, inputs))
        raise ValueError(f"fastact.{where}: {names} do not broadcast") from None
    compute, result = compute_dtypes(where, [a.dtype for a in arrays])
    stream = stream_for(arrays)
    if out is None:
        outs_obj = [empty_like_input(arrays[0], shape, result, stream) for _ in range(nout)]
        outs = [GpuArray(where, o, "out") for o in outs_obj]
    else:
        outs_obj = list(out) if isinstance(out, tuple) else [out]
        outs = [check_out(where, o, shape, compute) for o in outs_obj]
    # parameters rounded to the compute dtype, as the CPU ufunc receives them
    pvals = [float(compute.type(v)) for v in params]
    n = int(np.prod(shape, dtype=np.int64))
    if n:
        storage = result if out is None else outs[0].dtype
        flat = all(a.shape == shape for a in arrays) and any(
            all(x.contiguous(order) for x in arrays + outs) for order in "CF")
        if flat:
            vs = [view(a, (n,), (a.itemsize,)) for a in arrays + outs]
            ndim = 1
        else:
            shp = shape
            vs = [view(a, shp, broadcast_strides(a, shape)) for a in arrays]
            vs += [view(o, shp, o.strides) for o in outs]
            ndim = len(shp)
        k = kernel(entry, kind, _kernel_dtype(compute, storage),
                   len(pvals) + len(param_arrays), ndim, bool(param_arrays))
        target.launch(k, n, stream, *vs, *pvals)
    return tuple(outs_obj) if nout > 1 else outs_obj[0]


def _kernel_dtype(compute, storage):
    # float16 storage computes in float32; the kernel's formula choice
    # depends on the compute precision only
    return np.dtype(np.float32) if compute == np.float32 else np.dtype(np.float64)


# ------------------------------------------------------------ GPU copies
# by the identity kernel, for layouts a kernel cannot take as a view


def copy(where, a, stream, dtype=None):
    """A C-contiguous GPU copy of ``a`` (in ``dtype``: float16/32/64 kept,
    integers to float64), by the identity kernel: never via the host."""
    from fastact.catalog import CATALOG

    dtype = np.dtype(dtype or (a.dtype if a.dtype.kind == "f" else np.float64))
    out = empty_like_input(a, a.shape, dtype, stream)
    elementwise(where, CATALOG["identity"], "forward", [(a, "x")], out, [])
    return GpuArray(where, out, "copy")


def rows_view(where, a, ax, stream):
    """(rows, n) GPU view of ``a`` with axis ``ax`` last, copied to a
    contiguous array on the GPU where the layout allows no view."""
    m = a.moved(ax)
    r = m.rows()
    if r is None:
        c = copy(where, m, stream)
        r = c.rows()
    return r


def rows_out(where, o, ax, stream):
    """(o2, finish): a (rows, n) GPU view of out ``o`` with axis ``ax`` last
    to write into, and the call that completes the write (a GPU copy from a
    contiguous temporary when ``o``'s layout allows no such view)."""
    moved = o.moved(ax)
    o2 = moved.rows()
    if o2 is not None:
        return o2, lambda: None
    temp = GpuArray(where, empty_like_input(o, moved.shape, o.dtype, stream), "out")

    def finish():
        from fastact.catalog import CATALOG

        elementwise(where, CATALOG["identity"], "forward", [(temp, "x")], moved, [])

    return temp.rows(), finish
