"""Test-session setup.

GPU code is tested in Numba's CUDA simulator: the variable must be set before
anything imports numba.cuda. Set FASTACT_TEST_REAL_GPU=1 to run the GPU tests
on a real device instead.
"""

import os

if os.environ.get("FASTACT_TEST_REAL_GPU", "0") in ("", "0"):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
