"""cnnkit: a compact convolutional-network library with C++/CUDA kernels and a NumPy reference."""

from . import ops
from .config import config

__version__ = "0.1.0"

__all__ = ["ops", "config", "__version__"]
