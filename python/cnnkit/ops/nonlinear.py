"""Activations, softmax and dropout: forward and backward.

Elementwise ops accept arrays of any shape; ``softmax``/``log_softmax`` normalize along ``axis``
(native kernels work on the last axis; another axis is moved last and back). Every forward takes an
optional ``out`` (same shape and dtype, C-contiguous, writable; ``out=x`` works in place) so a
caller can reuse buffers. ``<op>_backward(dy, x, ...)`` returns the gradient with respect to ``x``;
``<op>_backward_from_output(dy, y, ...)`` (relu, sigmoid, tanh, softmax, log_softmax) takes the
forward's output instead, which a layer keeps anyway, and does not recompute the activation.
"""

from . import _op_args
from ._backend import as_array, backend, contiguous
from ._op_args import check_alpha as _alpha

__all__ = [
    "relu", "relu_backward", "relu_backward_from_output",
    "leaky_relu", "leaky_relu_backward",
    "elu", "elu_backward",
    "sigmoid", "sigmoid_backward", "sigmoid_backward_from_output",
    "tanh", "tanh_backward", "tanh_backward_from_output",
    "softmax", "softmax_backward", "softmax_backward_from_output",
    "log_softmax", "log_softmax_backward", "log_softmax_backward_from_output",
    "dropout", "dropout_backward",
]


# ----------------------------------------------------------------------------------------------
# argument checks (the checks themselves are in _op_args, shared with cnnkit.ops.reference)

def _input(x):
    """(backend, x) for a forward: x validated (float32/float64 array) and C-contiguous."""
    x = as_array(x)
    _op_args.check_unary(x)
    x, = contiguous(x)
    return backend(x), x


def _grad_pair(dy, v, v_name="x"):
    """(backend, dy, v) with dy of v's shape and dtype, both C-contiguous."""
    dy, v = as_array(dy), as_array(v)
    _op_args.check_grad_pair(dy, v, v_name)
    dy, v = contiguous(dy, v)
    return backend(dy, v), dy, v


def _output(be, out, x, *others):
    """A fresh array like x, or ``out`` after checking that it can receive the result (the other
    operands, if any, must not partially overlap it either)."""
    if out is None:
        return be.xp.empty(x.shape, x.dtype)
    return _op_args.check_out(as_array(out), x, *others)


def _forward(kernel, x, out, *params):
    """y = kernel(x) elementwise, into a fresh array or ``out``: ``lib.<kernel>(x, y, *params)``."""
    be, x = _input(x)
    y = _output(be, out, x)
    getattr(be.lib, kernel)(x, y, *params)
    return y


def _backward(kernel, dy, v, *params, v_name="x", out=None):
    """dx from dy and v (the forward's input x, or its output y for the ``_from_output`` kernels):
    ``lib.<kernel>(dy, v, dx, *params)``, into a fresh array or ``out``."""
    be, dy, v = _grad_pair(dy, v, v_name)
    dx = _output(be, out, dy, v)
    getattr(be.lib, kernel)(dy, v, dx, *params)
    return dx


# ----------------------------------------------------------------------------------------------
# elementwise activations

def relu(x, out=None):
    """max(x, 0) elementwise; NaN stays NaN (as in PyTorch)."""
    return _forward("relu_forward", x, out)


def relu_backward(dy, x):
    """dy where x > 0, else 0 (the gradient at 0 is 0)."""
    return _backward("relu_backward", dy, x)


def relu_backward_from_output(dy, y, out=None):
    """relu_backward given y = relu(x) instead of x (y > 0 exactly where x > 0). out=dy works."""
    return _backward("relu_backward", dy, y, v_name="y", out=out)


def leaky_relu(x, alpha=0.2, out=None):
    """x for x >= 0, alpha * x below (Keras' default negative slope 0.2)."""
    return _forward("leaky_relu_forward", x, out, _alpha(alpha, nonnegative=True))


def leaky_relu_backward(dy, x, alpha=0.2):
    """dy for x > 0, alpha * dy for x <= 0."""
    return _backward("leaky_relu_backward", dy, x, _alpha(alpha, nonnegative=True))


def elu(x, alpha=1.0, out=None):
    """x for x > 0, alpha * (exp(x) - 1) otherwise (computed with expm1)."""
    return _forward("elu_forward", x, out, _alpha(alpha, nonnegative=False))


def elu_backward(dy, x, alpha=1.0):
    """dy for x > 0, alpha * exp(x) * dy for x <= 0."""
    return _backward("elu_backward", dy, x, _alpha(alpha, nonnegative=False))


def sigmoid(x, out=None):
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    return _forward("sigmoid_forward", x, out)


def sigmoid_backward(dy, x):
    """dy * sigmoid(x) * (1 - sigmoid(x))."""
    return _backward("sigmoid_backward", dy, x)


def sigmoid_backward_from_output(dy, y, out=None):
    """sigmoid_backward given y = sigmoid(x): dy * y * (1 - y). out=dy works."""
    return _backward("sigmoid_backward_from_output", dy, y, v_name="y", out=out)


def tanh(x, out=None):
    """Hyperbolic tangent."""
    return _forward("tanh_forward", x, out)


def tanh_backward(dy, x):
    """dy * (1 - tanh(x)**2)."""
    return _backward("tanh_backward", dy, x)


def tanh_backward_from_output(dy, y, out=None):
    """tanh_backward given y = tanh(x): dy * (1 - y**2). out=dy works."""
    return _backward("tanh_backward_from_output", dy, y, v_name="y", out=out)


# ----------------------------------------------------------------------------------------------
# softmax and log_softmax

def _along_last(be, kernel, arrays, axis, out=None):
    """Run a row kernel over ``axis``: directly when it is the last one, else on copies with the
    axis moved last, moving the result back (C-contiguous, or written into ``out``)."""
    ndim = arrays[0].ndim
    if axis == ndim - 1:
        res = _output(be, out, arrays[0])
        kernel(*arrays, res)
        return res
    moved = [be.xp.ascontiguousarray(be.xp.moveaxis(a, axis, -1)) for a in arrays]
    res = be.xp.empty_like(moved[0])
    kernel(*moved, res)
    res = be.xp.moveaxis(res, -1, axis)
    if out is None:
        return be.xp.ascontiguousarray(res)
    out = _output(be, out, arrays[0])
    out[...] = res
    return out


def _rows_forward(kernel, x, axis, out):
    be, x = _input(x)
    axis = _op_args.check_axis(axis, x.ndim)
    return _along_last(be, getattr(be.lib, kernel), [x], axis, out)


def _rows_backward(kernel, dy, v, axis, v_name="x"):
    be, dy, v = _grad_pair(dy, v, v_name)
    axis = _op_args.check_axis(axis, v.ndim, v_name)
    return _along_last(be, getattr(be.lib, kernel), [dy, v], axis)


def softmax(x, axis=-1, out=None):
    """exp(x) / sum(exp(x)) along axis, with the maximum subtracted first (no overflow)."""
    return _rows_forward("softmax_forward", x, axis, out)


def softmax_backward(dy, x, axis=-1):
    """y * (dy - sum(dy * y, axis)) with y = softmax(x, axis)."""
    return _rows_backward("softmax_backward", dy, x, axis)


def softmax_backward_from_output(dy, y, axis=-1):
    """softmax_backward given y = softmax(x, axis)."""
    return _rows_backward("softmax_backward_from_output", dy, y, axis, "y")


def log_softmax(x, axis=-1, out=None):
    """x - max - log(sum(exp(x - max))) along axis."""
    return _rows_forward("log_softmax_forward", x, axis, out)


def log_softmax_backward(dy, x, axis=-1):
    """dy - softmax(x, axis) * sum(dy, axis)."""
    return _rows_backward("log_softmax_backward", dy, x, axis)


def log_softmax_backward_from_output(dy, y, axis=-1):
    """log_softmax_backward given y = log_softmax(x, axis): dy - exp(y) * sum(dy, axis)."""
    return _rows_backward("log_softmax_backward_from_output", dy, y, axis, "y")


# ----------------------------------------------------------------------------------------------
# dropout

def dropout(x, rate, seed, training=True):
    """Inverted dropout (Keras semantics): element i of x (flat C order) is kept iff
    uniform01(seed, i) >= rate and then scaled by 1 / (1 - rate), else set to 0.

    The mask is a pure function of (seed, index): the same seed gives the same mask on every run
    and thread count. When ``training`` is false or ``rate == 0`` x itself is returned (the same
    object, not a copy), as Keras does."""
    x_in = x
    x = as_array(x)
    rate, seed = _op_args.check_dropout(x, rate, seed)
    x, = contiguous(x)
    be = backend(x)
    if not training or rate == 0:
        return x_in
    y = be.xp.empty(x.shape, x.dtype)
    be.lib.dropout_forward(x, y, rate, seed)
    return y


def dropout_backward(dy, x, rate, seed, training=True):
    """The gradient of dropout: dy masked and scaled like the forward (the mask is redrawn from
    seed, so nothing needs saving). dy itself is returned when training is false or rate == 0."""
    dy_in = dy
    dy, x = as_array(dy), as_array(x)
    rate, seed = _op_args.check_dropout_backward(dy, x, rate, seed)
    dy, x = contiguous(dy, x)
    be = backend(dy, x)
    if not training or rate == 0:
        return dy_in
    dx = be.xp.empty(dy.shape, dy.dtype)
    be.lib.dropout_forward(dy, dx, rate, seed)
    return dx
