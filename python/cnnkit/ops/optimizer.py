"""The optimizers' update steps, fused: one kernel per variable and step, in place.

``sgd_update``, ``adam_update`` and ``rmsprop_update`` read ``gradient``, ``variable`` and the slot
arrays (moments, velocities: the optimizer's state for that variable) once and write the variable and
the slots back, in one pass over memory on either device (``cnnkit._core`` on NumPy arrays,
``cnnkit._cuda`` on CuPy arrays) where the step written with array operations takes a dozen. The
formulas are Keras 3's (``cnnkit.optimizers`` calls these). The variable and the slots are updated
in place, so they must be C-contiguous, aligned and writable, of one library, dtype and shape, and
share no memory; the gradient may have any layout. A slot passed as None selects the plain form:
SGD without momentum, Adam without AMSGrad (``v_hat``), RMSprop uncentered (``average_gradient``)
or without momentum. The step's scalars (the learning rate, Adam's bias correction,
``1 - weight_decay * learning_rate``) are worked out here in double and rounded once to the
variable's dtype by the kernel, as NumPy rounds a Python float; with ``weight_decay`` the variable
is first scaled by that factor (decoupled weight decay, as ``Optimizer`` applies it).
"""

import math

from . import _op_args
from ._backend import as_array, backend, contiguous

__all__ = ["sgd_update", "adam_update", "rmsprop_update"]


def _operands(variable, gradient, *slots):
    """The arrays, GPU DLPack exporters (a PyTorch CUDA tensor) seen as CuPy arrays."""
    variable, gradient = as_array(variable), as_array(gradient)
    return (variable, gradient, *[as_array(s) for s in slots])


def sgd_update(variable, gradient, momentum_buffer=None, *, learning_rate, momentum=0.0, nesterov=False,
               weight_decay=0.0):
    """SGD in place: ``variable -= learning_rate * gradient``. With ``momentum_buffer`` (required when
    ``momentum`` > 0) ``b = momentum * b - learning_rate * gradient`` then ``variable += b``
    (``nesterov``: ``variable += momentum * b - learning_rate * gradient``)."""
    variable, gradient, momentum_buffer = _operands(variable, gradient, momentum_buffer)
    lr, momentum, weight_decay = _op_args.check_sgd_update(variable, gradient, momentum_buffer, learning_rate,
                                                           momentum, nesterov, weight_decay)
    gradient, = contiguous(gradient)
    be = backend(variable, gradient, momentum_buffer)
    be.lib.sgd_update(variable, gradient, momentum_buffer, lr, momentum, bool(nesterov), 1.0 - weight_decay * lr)


def adam_update(variable, gradient, m, v, v_hat=None, *, learning_rate, step, beta_1=0.9, beta_2=0.999,
                epsilon=1e-7, weight_decay=0.0):
    """Adam in place, Keras' epsilon-hat form, at the 1-based ``step``: ``m += (g - m)(1 - beta_1)``,
    ``v += (g^2 - v)(1 - beta_2)``, ``variable -= alpha * m / (sqrt(v) + epsilon)`` with
    ``alpha = learning_rate * sqrt(1 - beta_2^step) / (1 - beta_1^step)``. With ``v_hat`` (AMSGrad)
    ``v_hat = max(v_hat, v)`` takes the place of ``v`` in the last formula. AdamW is
    ``weight_decay`` > 0."""
    variable, gradient, m, v, v_hat = _operands(variable, gradient, m, v, v_hat)
    lr, beta_1, beta_2, epsilon, step, weight_decay = _op_args.check_adam_update(
        variable, gradient, m, v, v_hat, learning_rate, beta_1, beta_2, epsilon, step, weight_decay)
    gradient, = contiguous(gradient)
    alpha = lr * math.sqrt(1 - beta_2**step) / (1 - beta_1**step)
    be = backend(variable, gradient, m, v, v_hat)
    be.lib.adam_update(variable, gradient, m, v, v_hat, alpha, 1 - beta_1, 1 - beta_2, epsilon,
                       1.0 - weight_decay * lr)


def rmsprop_update(variable, gradient, velocity, momentum_buffer=None, average_gradient=None, *, learning_rate,
                   rho=0.9, momentum=0.0, epsilon=1e-7, weight_decay=0.0):
    """RMSprop in place: ``velocity = rho * velocity + (1 - rho) * g^2``, then ``variable -= increment``
    with ``increment = learning_rate * g / sqrt(velocity + epsilon)``. With ``average_gradient``
    (centered) ``a = rho * a + (1 - rho) * g`` and ``velocity - a^2 + epsilon`` under the root; with
    ``momentum_buffer`` (required when ``momentum`` > 0) ``b = momentum * b + increment`` and
    ``variable -= b``."""
    variable, gradient, velocity, momentum_buffer, average_gradient = _operands(
        variable, gradient, velocity, momentum_buffer, average_gradient)
    lr, rho, momentum, epsilon, weight_decay = _op_args.check_rmsprop_update(
        variable, gradient, velocity, momentum_buffer, average_gradient, learning_rate, rho, momentum, epsilon,
        weight_decay)
    gradient, = contiguous(gradient)
    be = backend(variable, gradient, velocity, momentum_buffer, average_gradient)
    be.lib.rmsprop_update(variable, gradient, velocity, momentum_buffer, average_gradient, lr, rho, 1 - rho,
                          momentum, epsilon, 1.0 - weight_decay * lr)
