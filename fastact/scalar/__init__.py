"""Scalar math compiled for every target: the formulas and the math under them.

Plain Python functions marked ``@scalar`` (``registry``), compiled by Numba
into the CPU ufuncs and the CUDA kernels, and runnable as Python (the CUDA
simulator). Layers, bottom up: ``eft`` (error-free transforms), ``vmath`` /
``vmath32`` (vectorizable exp, expm1, log1p, tanh, erf, erfc), ``mathlib`` /
``mathlib32`` (the primitives formulas call; a backend may swap them),
``formulas`` / ``formulas32`` (every activation and derivative, written once),
``rows`` / ``rows32`` (the softmax family's row kernels). ``generated/`` holds
the fitted coefficients (written by ``fastact.devtools``).
"""
