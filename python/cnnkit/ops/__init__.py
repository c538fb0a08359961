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

Every op is also differentiable (``ops.autodiff``): called on a :class:`Tensor` (what a layer's
``call`` receives, or an array a ``GradientTape`` watches) it records its vector-Jacobian product,
registered once in ``ops.gradients`` from the ``_backward`` kernels. ``ops.array`` adds the array
functions of ``keras.ops`` (arithmetic, reductions, shapes, indexing, ``where``, ``matmul``, ``conv``,
``depthwise_conv``, ...), each with its VJP. On plain arrays every op runs as before and returns a
plain array.
"""

from . import reference
from ._backend import get_array_module as _get_array_module, to_host as _to_host
from .array import *  # noqa: F401,F403
from .array import __all__ as _array_all
from .autodiff import GradientTape, Tensor, convert_to_tensor, is_tensor
from .convolution import *  # noqa: F401,F403
from .convolution import __all__ as _conv_all
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

import sys as _sys

from . import autodiff as _autodiff
from .gradients import wrap as _wrap

_wrap(globals())  # every op above records its gradient when called on Tensors (ops.autodiff)
_autodiff.bind_ops(_sys.modules[__name__])


def get_array_module(*arrays):
    """numpy or cupy, whichever module the arrays (or Tensors, Variables) belong to."""
    return _get_array_module(*(_autodiff.unwrap(a) for a in arrays))


def to_host(a):
    """a as a NumPy array (a CuPy array, a Tensor or a Variable copied to the host)."""
    return _to_host(_autodiff.unwrap(a))


__all__ = ["reference", "get_array_module", "to_host", "GradientTape", "Tensor", "convert_to_tensor",
           "is_tensor", *_array_all, *_conv_all, *_cross_entropy_all, *_linear_all,
           *_nonlinear_all, *_norm_all, *_optimizer_all,
           *_pool_all]
