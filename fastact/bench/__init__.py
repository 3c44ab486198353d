"""The benchmarks behind ``python -m fastact bench``, one concern per module.

- :mod:`~fastact.bench.baselines`: ``COMPARISONS``, each function's NumPy,
  PyTorch, SciPy and CuPy baselines (also read by the pytest-benchmark suite).
- :mod:`~fastact.bench.common`: defaults, op names, argument checks, progress bar.
- :mod:`~fastact.bench.timing`: median timing, chunked threads, the CPU roofline.
- :mod:`~fastact.bench.cpu`: the CPU run and the call-overhead measurement.
- :mod:`~fastact.bench.cuda`: the ``--device cuda`` run (CuPy, CUDA events).
- :mod:`~fastact.bench.report`: the text tables.
- :mod:`~fastact.bench.cli`: the command line (``main``).

Importing this package imports none of them; none imports PyTorch or a GPU library
before a run asks for it.
"""
