"""Reference optimizer updates: Keras 3's formulas in NumPy, one array operation at a time, in the
variable's dtype, updating ``variable`` and the slots in place like their cnnkit.ops twins."""

import math

import numpy as np

from .._op_args import check_adam_update, check_rmsprop_update, check_sgd_update
from .. import optimizer as _native

__all__ = _native.__all__  # the ops of cnnkit.ops.optimizer, each written again below


def _decay(variable, weight_decay, learning_rate):
    """Decoupled weight decay: the variable shrinks by weight_decay * learning_rate of itself."""
    if weight_decay:
        variable *= 1.0 - weight_decay * learning_rate


def sgd_update(variable, gradient, momentum_buffer=None, *, learning_rate, momentum=0.0, nesterov=False,
               weight_decay=0.0):
    lr, momentum, weight_decay = check_sgd_update(variable, gradient, momentum_buffer, learning_rate, momentum,
                                                  nesterov, weight_decay)
    _decay(variable, weight_decay, lr)
    if momentum_buffer is None:
        variable -= lr * gradient
        return
    momentum_buffer[...] = momentum * momentum_buffer - lr * gradient
    if nesterov:
        variable += momentum * momentum_buffer - lr * gradient
    else:
        variable += momentum_buffer


def adam_update(variable, gradient, m, v, v_hat=None, *, learning_rate, step, beta_1=0.9, beta_2=0.999,
                epsilon=1e-7, weight_decay=0.0):
    lr, beta_1, beta_2, epsilon, step, weight_decay = check_adam_update(
        variable, gradient, m, v, v_hat, learning_rate, beta_1, beta_2, epsilon, step, weight_decay)
    _decay(variable, weight_decay, lr)
    m += (gradient - m) * (1 - beta_1)
    v += (gradient * gradient - v) * (1 - beta_2)
    if v_hat is not None:
        v_hat[...] = np.maximum(v_hat, v)
    second_moment = v if v_hat is None else v_hat
    alpha = lr * math.sqrt(1 - beta_2**step) / (1 - beta_1**step)
    variable -= alpha * m / (np.sqrt(second_moment) + epsilon)


def rmsprop_update(variable, gradient, velocity, momentum_buffer=None, average_gradient=None, *, learning_rate,
                   rho=0.9, momentum=0.0, epsilon=1e-7, weight_decay=0.0):
    lr, rho, momentum, epsilon, weight_decay = check_rmsprop_update(
        variable, gradient, velocity, momentum_buffer, average_gradient, learning_rate, rho, momentum, epsilon,
        weight_decay)
    _decay(variable, weight_decay, lr)
    velocity[...] = rho * velocity + (1 - rho) * gradient * gradient
    if average_gradient is None:
        denominator = velocity + epsilon
    else:
        average_gradient[...] = rho * average_gradient + (1 - rho) * gradient
        denominator = velocity - average_gradient * average_gradient + epsilon
    increment = lr * gradient / np.sqrt(denominator)
    if momentum_buffer is None:
        variable -= increment
    else:
        momentum_buffer[...] = momentum * momentum_buffer + increment
        variable -= momentum_buffer
