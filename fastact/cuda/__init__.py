"""CUDA backend: the scalar formulas as ``@cuda.jit`` kernels on GPU arrays.

``target`` (``numba.cuda`` set up for fastact: lazy import, the simulator's
fixes, FMA contraction off, launch bounds, ``jit``, ``launch``), ``interop``
(GPU arrays: detection, devices, streams, views, allocation),
``elementwise`` (the generated elementwise kernels and their dispatch),
``rows`` with ``rows_steps`` (the softmax family's row kernels), ``layers``
(maxout, PReLU's weight gradient), ``occupancy`` (generated: the kernels
built with launch bounds). Kernels are built lazily, once each (``KernelTable``); nothing
imports ``numba.cuda`` until a GPU array arrives.
"""
