"""ptxas without a GPU: find the pip-installed assembler, run it on PTX, and
read its register / spill / stack report (used by ``gen_gpu_doc``)."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys


def find_ptxas(explicit=None):
    """Path of the pip-installed ptxas (nvidia-cuda-nvcc), or None.

    Order: ``explicit``, ``$FASTACT_PTXAS``, the files of the nvidia-cuda-nvcc
    distribution, any ``nvidia/**/bin/ptxas`` on sys.path. The system's
    ptxas (PATH, /usr/local/cuda) is not used: it may be too old for the PTX
    version numba-cuda emits."""
    for p in (explicit, os.environ.get("FASTACT_PTXAS")):
        if p:
            return str(p) if os.access(p, os.X_OK) else None
    try:
        files = importlib.metadata.files("nvidia-cuda-nvcc") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == "ptxas" and f.parent.name == "bin":
            p = pathlib.Path(f.locate())
            if os.access(p, os.X_OK):
                return str(p)
    for base in sys.path:
        nv = pathlib.Path(base or ".") / "nvidia"
        if nv.is_dir():
            for p in sorted(nv.glob("**/bin/ptxas")):
                if os.access(p, os.X_OK):
                    return str(p)
    return None


def ptxas_version(ptxas):
    out = subprocess.run([ptxas, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release ([\d.]+), V([\d.]+)", out)
    return m.group(2) if m else out.strip().splitlines()[-1] if out.strip() else "?"


_PROPS_RE = re.compile(r"Function properties for (\S+)")
_FRAME_RE = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED_RE = re.compile(r"Used (\d+) registers")
_SMEM_RE = re.compile(r"(\d+) bytes smem")
_ENTRY_RE = re.compile(r"Compiling entry function '(\S+)'")


def parse_ptxas(text):
    """The entry kernel's registers / stack / shared memory and the spills of
    every function in a ``ptxas -v`` report."""
    entry = _ENTRY_RE.search(text)
    entry = entry.group(1) if entry else None
    res = {"registers": None, "stack_frame": 0, "spill_stores": 0, "spill_loads": 0, "shared": 0}
    current = None
    for line in text.splitlines():
        m = _PROPS_RE.search(line)
        if m:
            current = m.group(1)
            continue
        m = _FRAME_RE.search(line)
        if m:
            frame, st, ld = map(int, m.groups())
            res["spill_stores"] += st
            res["spill_loads"] += ld
            if current == entry or entry is None:
                res["stack_frame"] = max(res["stack_frame"], frame)
            continue
        m = _USED_RE.search(line)
        if m and res["registers"] is None:  # the entry's line comes first
            res["registers"] = int(m.group(1))
            s = _SMEM_RE.search(line)
            res["shared"] = int(s.group(1)) if s else 0
    return res


def assemble(ptxas, ptx, arch, workdir):
    """``ptxas -arch=arch -v``; where the PTX calls functions resolved only at
    link time (float16 arithmetic), ``-c`` (relocatable: the entry's own
    resources). Returns the parsed report plus ``mode``; raises on failure."""
    src = pathlib.Path(workdir) / f"k_{arch}.ptx"
    src.write_text(ptx)
    obj = pathlib.Path(workdir) / f"k_{arch}.o"
    mode = "relocatable" if re.search(r"^\s*\.extern\s+\.func", ptx, re.M) else "whole"
    for attempt in range(2):
        cmd = [ptxas, f"-arch={arch}", "-v", str(src), "-o", str(obj)]
        if mode == "relocatable":
            cmd.insert(1, "-c")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            break
        if mode == "whole" and "nresolved extern" in r.stderr + r.stdout:
            mode = "relocatable"
            continue
        raise RuntimeError(f"ptxas {arch} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-2000:]}")
    res = parse_ptxas(r.stdout + r.stderr)
    if res["registers"] is None:
        raise RuntimeError(f"ptxas {arch}: no register count in\n{r.stderr}")
    res["mode"] = mode
    return res
