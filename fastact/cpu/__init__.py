"""CPU backend: the scalar formulas as real NumPy ufuncs and gufuncs.

``ufuncs`` (elementwise, one DUFunc per activation and kind), ``gufuncs``
(softmax-family rows, fused gated units), ``layers`` (PReLU's forward and
its one-pass backward with the weight gradient): all compiled lazily per
dtype and cached on disk, keyed by ``stamp``. ``loopfix`` makes Numba's ufunc
loops honour a strided ``out``. ``threads`` splits large calls over a thread
pool.
"""
