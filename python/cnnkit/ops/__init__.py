"""cnnkit.ops: one function per op, dispatching on the array type.

NumPy arrays run on the C++ kernels (``cnnkit._core``) with GEMMs through ``numpy.matmul``; CuPy
arrays on their CUDA twins (``cnnkit._cuda``) with GEMMs through cuBLAS.
Conventions: activations are NHWC, convolution kernels HWIO ``(kh, kw, in, out)``;
``<op>_backward(dy, *forward array inputs, **forward parameters)`` returns the gradient of each
array input of the forward, in order, recomputing what it needs from them. The layers call the same
functions in the forms that save work: ``conv2d``/``dense`` with ``activation="relu"`` fused into
the output pass and their backward with ``need_dx=False``; forwards that also return what their
backward needs (``return_argmax``, ``return_index``, ``return_stats``, ``return_grad``) and the
``<op>_backward_from_output``/``_from_argmax``/``_from_index``/``_from_stats`` forms that take it.
The optimizer steps (``sgd_update``, ``adam_update``, ``rmsprop_update``) are the exception to
"returns new arrays": one fused kernel updates the variable and its slot arrays in place.
``cnnkit.ops.reference`` holds a plain NumPy version of every op, written for clarity, that the
tests and benchmarks compare against.
"""

from . import reference
from ._backend import get_array_module, to_host
from .conv import *  # noqa: F401,F403
from .conv import __all__ as _conv_all
from .cross_entropy import *  # noqa: F401,F403
from .cross_entropy import __all__ as _cross_entropy_all
from .linear import *  # noqa: F401,F403
from .linear import __all__ as _linear_all
from .nonlinear import *  # noqa: F401,F403
from .nonlinear import __all__ as _nonlinear_all
from .norm import *  # noqa: F401,F403
from .norm import __all__ as _norm_all
from .optimizer import *  # noqa: F401,F403
from .optimizer import __all__ as _optimizer_all
from .pool import *  # noqa: F401,F403
from .pool import __all__ as _pool_all

__all__ = ["reference", "get_array_module", "to_host", *_conv_all, *_cross_entropy_all, *_linear_all,
           *_nonlinear_all, *_norm_all, *_optimizer_all,
           *_pool_all]
