"""CPU backend: the scalar formulas as real NumPy ufuncs and gufuncs.

``ufuncs`` (elementwise, one DUFunc per activation and kind), ``gufuncs``
(softmax-family rows, fused gated units), ``layers`` (PReLU's weight
reduction): all compiled lazily per dtype and cached on disk, keyed by
``stamp``. ``threads`` splits large calls over a thread pool.
"""
