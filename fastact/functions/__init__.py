"""The public callables (``fastact.gelu``, ``fastact.softmax``, ...) and their
argument handling.

Each call takes one path: check the arguments (``args``), dispatch on the array
type (a ``__cuda_array_interface__`` goes to ``fastact.cuda``, anything else to
``fastact.cpu``), run one compiled kernel.
"""
