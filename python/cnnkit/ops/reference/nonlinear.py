"""Reference activations, softmax and dropout: the textbook formulas in NumPy, in the given dtype.

Where a formula could overflow (exp of a large argument) it is written in its stable form, with
the branch shown explicitly (np.where over both halves), so the reference stays finite for inputs
up to |x| = 1e4 and can check the native kernels there.
"""

import numpy as np

from .._op_args import (check_alpha, check_axis, check_backward_from_output, check_dropout, check_dropout_backward,
                        check_grad_pair, check_softmax, check_softmax_backward, check_unary)
from .. import nonlinear as _native
from ._common import uniform01

__all__ = _native.__all__  # the ops of cnnkit.ops.nonlinear, each written again below


def _zero(x):
    return np.zeros((), dtype=x.dtype)


def relu(x, out=None):
    check_unary(x, out)
    y = np.where(x < 0, _zero(x), x)  # not np.maximum: NaN must stay NaN either way
    return _into(y, out)


def relu_backward(dy, x):
    check_grad_pair(dy, x)
    # x <= 0 rather than x > 0 picks the gradient at NaN: dy, as PyTorch's threshold_backward.
    return np.where(x <= 0, _zero(dy), dy)


def relu_backward_from_output(dy, y, out=None):
    check_backward_from_output(dy, y, out)
    return _into(np.where(y <= 0, _zero(dy), dy), out)  # y <= 0 exactly where x <= 0, NaN where x is


def leaky_relu(x, alpha=0.2, out=None):
    check_alpha(alpha, nonnegative=True)
    check_unary(x, out)
    a = x.dtype.type(alpha)
    return _into(np.where(x < 0, a * x, x), out)


def leaky_relu_backward(dy, x, alpha=0.2):
    check_alpha(alpha, nonnegative=True)
    check_grad_pair(dy, x)
    a = x.dtype.type(alpha)
    return np.where(x > 0, dy, a * dy)


def elu(x, alpha=1.0, out=None):
    check_alpha(alpha, nonnegative=False)
    check_unary(x, out)
    a = x.dtype.type(alpha)
    negative = np.minimum(x, _zero(x))  # expm1 only of x <= 0
    return _into(np.where(x > 0, x, a * np.expm1(negative)), out)


def elu_backward(dy, x, alpha=1.0):
    check_alpha(alpha, nonnegative=False)
    check_grad_pair(dy, x)
    a = x.dtype.type(alpha)
    negative = np.minimum(x, _zero(x))
    return np.where(x > 0, dy, a * np.exp(negative) * dy)


def sigmoid(x, out=None):
    check_unary(x, out)
    # 1 / (1 + exp(-x)) for x >= 0 and exp(x) / (1 + exp(x)) for x < 0: exp never sees a
    # positive argument, so it cannot overflow.
    one = x.dtype.type(1)
    e = np.exp(-np.abs(x))
    return _into(np.where(x >= 0, one / (one + e), e / (one + e)), out)


def sigmoid_backward(dy, x):
    check_grad_pair(dy, x)
    s = sigmoid(x)
    return dy * s * (x.dtype.type(1) - s)


def sigmoid_backward_from_output(dy, y, out=None):
    check_backward_from_output(dy, y, out)
    return _into(dy * y * (y.dtype.type(1) - y), out)


def tanh(x, out=None):
    check_unary(x, out)
    return _into(np.tanh(x), out)


def tanh_backward(dy, x):
    check_grad_pair(dy, x)
    t = np.tanh(x)
    return dy * (x.dtype.type(1) - t * t)


def tanh_backward_from_output(dy, y, out=None):
    check_backward_from_output(dy, y, out)
    return _into(dy * (y.dtype.type(1) - y * y), out)


def softmax(x, axis=-1, out=None):
    check_softmax(x, axis, out)
    if x.shape[axis] == 0:  # no rows to normalize (np.max has nothing to reduce)
        return _into(x.copy(), out)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return _into(e / np.sum(e, axis=axis, keepdims=True), out)


def softmax_backward(dy, x, axis=-1):
    check_softmax_backward(dy, x, axis)
    y = softmax(x, axis)
    # Jacobian of softmax: dy_i/dx_j = y_i (delta_ij - y_j), so dx = y * (dy - <dy, y>).
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def softmax_backward_from_output(dy, y, axis=-1):
    check_grad_pair(dy, y, "y")
    axis = check_axis(axis, y.ndim, "y")
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def log_softmax(x, axis=-1, out=None):
    check_softmax(x, axis, out)
    if x.shape[axis] == 0:
        return _into(x.copy(), out)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return _into(shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True)), out)


def log_softmax_backward(dy, x, axis=-1):
    check_softmax_backward(dy, x, axis)
    return dy - softmax(x, axis) * np.sum(dy, axis=axis, keepdims=True)


def log_softmax_backward_from_output(dy, y, axis=-1):
    check_grad_pair(dy, y, "y")
    axis = check_axis(axis, y.ndim, "y")
    # y = log softmax(x), so softmax(x) = exp(y)
    return dy - np.exp(y) * np.sum(dy, axis=axis, keepdims=True)


def dropout_mask(shape, rate, seed):
    """The keep mask of dropout: element i (flat C order) is kept iff uniform01(seed, i) >= rate."""
    n = int(np.prod(shape, dtype=np.int64))
    return (uniform01(seed, np.arange(n, dtype=np.uint64)) >= rate).reshape(shape)


def dropout(x, rate, seed, training=True):
    check_dropout(x, rate, seed)
    if not training or rate == 0:
        return x
    keep = dropout_mask(x.shape, rate, seed)
    return np.where(keep, x * x.dtype.type(1.0 / (1.0 - rate)), _zero(x))


def dropout_backward(dy, x, rate, seed, training=True):
    check_dropout_backward(dy, x, rate, seed)
    if not training or rate == 0:
        return dy
    keep = dropout_mask(x.shape, rate, seed)
    return np.where(keep, dy * dy.dtype.type(1.0 / (1.0 - rate)), _zero(dy))


def _into(y, out):
    y = np.asarray(y)
    if out is None:
        return y
    out[...] = y
    return out
