"""cnnkit: a compact convolutional-network library with C++/CUDA kernels and a NumPy reference."""

import os

# OpenMP threads that spin after a parallel region fight OpenBLAS's threads for the cores between our
# kernels and each GEMM (measured on 2 cores: conv2d forward+backward 1.3x PyTorch's time with
# libgomp's default spinning, 0.86x with sleeping threads). libgomp reads this when cnnkit._core first
# loads it; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import ops  # noqa: E402
from .config import config  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ops", "config", "__version__"]
