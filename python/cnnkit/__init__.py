"""cnnkit: a compact convolutional-network library with C++/CUDA kernels and a NumPy reference.

The Keras-style API: ``from cnnkit import layers, models, optimizers``; ``models.Sequential([...])``,
``cnnkit.Model(inputs, outputs)``, ``compile``/``fit``/``evaluate``/``predict``/``summary``.
``cnnkit.ops`` holds the kernels underneath, ``cnnkit.ops.reference`` their NumPy reference.
``cnnkit.GradientTape`` records ops for custom training loops, as ``tf.GradientTape``.
"""

from . import activations, applications, callbacks, datasets, initializers, layers, losses, metrics, models
from . import ops, optimizers, profiler, regularizers, utils
from ._version import __version__
from .config import config
from .device import get_device, set_device
from .models import Model, Sequential, load_model
from .ops.autodiff import GradientTape
from .variables import Variable

__all__ = ["ops", "config", "__version__", "set_device", "get_device", "layers", "models", "optimizers",
           "losses", "metrics", "callbacks", "datasets", "activations", "initializers", "regularizers", "utils",
           "Model", "Sequential", "load_model", "applications", "profiler", "GradientTape", "Variable"]
