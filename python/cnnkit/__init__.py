"""cnnkit: a compact convolutional-network library with C++/CUDA kernels and a NumPy reference.

The Keras-style API: ``from cnnkit import layers, models, optimizers``; ``models.Sequential([...])``,
``cnnkit.Model(inputs, outputs)``, ``compile``/``fit``/``evaluate``/``predict``/``summary``.
``cnnkit.ops`` holds the kernels underneath, ``cnnkit.ops.reference`` their NumPy reference.
"""

from . import ops
from .config import config
from .device import get_device, set_device

__version__ = "0.1.0"

from . import activations, callbacks, datasets, initializers, layers, losses, metrics  # noqa: E402
from . import optimizers, regularizers, utils  # noqa: E402
from . import models  # noqa: E402
from . import applications, profiler  # noqa: E402
from .models import Model, Sequential, load_model  # noqa: E402

__all__ = ["ops", "config", "__version__", "set_device", "get_device", "layers", "models", "optimizers",
           "losses", "metrics", "callbacks", "datasets", "activations", "initializers", "regularizers", "utils",
           "Model", "Sequential", "load_model", "applications", "profiler"]
