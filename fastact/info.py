"""``python -m fastact info``: what this installation is and will do.

Versions, the CPU features the kernels are compiled for (FMA, vector width),
the thread count and where it comes from, the disk cache (directory, files,
size), whether a CUDA device or the simulator is present, and which optional
packages import. Asking compiles nothing and sets nothing: the vector width
is the decision the first CPU compile would make (``fastact.cpu.width``).
"""

import importlib
import json
import os
import pathlib
import platform
import sys

#: optional packages fastact works with, by what they are for
EXTRAS = {
    "scipy": "test baselines (scipy.special)",
    "mpmath": "accuracy references",
    "torch": "PyTorch baselines and tensors",
    "cupy": "CUDA arrays",
    "numba_cuda": "CUDA backend",
    "dask": "lazy arrays",
    "distributed": "dask clusters",
    "xarray": "labelled arrays",
    "matplotlib": "plots",
    "asv": "benchmarks over commits",
}

PACKAGE = pathlib.Path(__file__).resolve().parent


def _version(name):
    try:
        return importlib.import_module(name).__version__
    except Exception as e:  # noqa: BLE001  (a broken install is reported, not raised)
        return f"not importable ({type(e).__name__})"


def cache():
    """Where Numba keeps fastact's compiled kernels, and how much is there."""
    from numba.core import config
    from numba.core.caching import _CacheLocator

    if config.CACHE_DIR:
        root = pathlib.Path(config.CACHE_DIR)
        # Numba's folder there for a source folder: "<name>_<sha1 of its path>"
        # (numba.core.caching._CacheLocator.get_suitable_cache_subpath)
        dirs = [root / _CacheLocator.get_suitable_cache_subpath(str(d / "x.py"))
                for d in [PACKAGE, *PACKAGE.rglob("*")] if d.is_dir()]
    else:
        root = PACKAGE
        dirs = [d for d in PACKAGE.rglob("__pycache__")]
    files = [p for d in dirs if d.is_dir() for p in d.glob("*.nb[ic]")]
    return {
        "dir": str(root),
        "from": "NUMBA_CACHE_DIR" if config.CACHE_DIR else "__pycache__ beside the sources",
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }


def threads():
    from fastact.cpu import threads as t

    env = os.environ.get("FASTACT_NUM_THREADS")
    try:
        n = t.get_num_threads()
    except ValueError as e:
        n = str(e)
    source = ("set_num_threads" if t._num_threads is not None
              else "FASTACT_NUM_THREADS" if env and env.strip() else "CPU count")
    return {"threads": n, "from": source, "cpus": os.cpu_count()}


def cpu():
    from fastact.cpu import width
    from fastact.scalar.fma import has_fma

    w = width.describe()
    return {"machine": platform.machine(), "processor": platform.processor() or None,
            "fma": has_fma(), "vector_bits": w["bits"], "vector_width_reason": w["reason"]}


def gpu():
    """The CUDA side, in a way that never fails: simulator, device, or why none."""
    from fastact.cuda import target

    if target.simulated():
        return {"backend": "CUDA simulator (NUMBA_ENABLE_CUDASIM=1)", "device": None}
    try:
        from numba import cuda
    except Exception as e:  # noqa: BLE001
        return {"backend": None, "device": None, "why": f"numba.cuda not importable ({type(e).__name__})"}
    try:
        if not cuda.is_available():
            return {"backend": "numba-cuda", "device": None, "why": "no CUDA driver or device"}
        d = cuda.get_current_device()
        name = d.name.decode() if isinstance(d.name, bytes) else d.name
        return {"backend": "numba-cuda", "device": f"{name} (cc {d.compute_capability[0]}.{d.compute_capability[1]})"}
    except Exception as e:  # noqa: BLE001
        return {"backend": "numba-cuda", "device": None, "why": f"{type(e).__name__}: {e}"}


def extras():
    out = {}
    for name, what in EXTRAS.items():
        try:
            m = importlib.import_module(name)
            out[name] = {"version": getattr(m, "__version__", "?"), "for": what}
        except Exception as e:  # noqa: BLE001
            out[name] = {"version": None, "for": what, "why": type(e).__name__}
    return out


def collect():
    import fastact

    return {
        "versions": {"fastact": fastact.__version__, "python": sys.version.split()[0],
                     "numpy": _version("numpy"), "numba": _version("numba"),
                     "llvmlite": _version("llvmlite")},
        "cpu": cpu(),
        "threads": threads(),
        "cache": cache(),
        "gpu": gpu(),
        "extras": extras(),
    }


def text(info):
    lines = []
    for section, items in info.items():
        lines.append(f"{section}:")
        for k, v in items.items():
            if isinstance(v, dict):
                v = ", ".join(f"{a}={b}" for a, b in v.items() if b is not None)
            lines.append(f"  {k}: {v}")
    return "\n".join(lines)


def main(argv=()):
    argv = list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m fastact info [--json]")
        return 0
    if argv not in ([], ["--json"]):
        print(f"unknown arguments {argv}; usage: python -m fastact info [--json]", file=sys.stderr)
        return 2
    info = collect()
    print(json.dumps(info, indent=2) if argv else text(info))
    return 0
