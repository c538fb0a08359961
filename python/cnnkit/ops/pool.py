"""Pooling over NHWC activations: max, average, global and stochastic, forward and backward.

Window arguments follow Keras: ``pool_size`` an int or a pair, ``strides`` None (= pool_size), an int
or a pair, ``padding`` "valid", "same" (TensorFlow's rule, the odd pixel at the bottom/right), an
int, (ph, pw) or ((top, bottom), (left, right)). Padded cells never take part in a window: they
never win a max and are not counted in an average. A padding so large that some window holds no
input cell at all is refused.

Max pooling treats NaN as the maximum (the first NaN in a window wins) and breaks ties in favour of
the first cell in scan order (window rows outer, columns inner). The backward passes are gathers
(each input pixel sums the windows covering it in a fixed order): deterministic, no atomics.
``max_pool2d``/``global_max_pool2d`` (``return_argmax=True``) and training-mode ``stochastic_pool2d``
(``return_index=True``) also return the cell each output took, and their ``_backward_from_argmax``/
``_backward_from_index`` forms take it back; ``<op>_backward(dy, x, ...)`` recomputes it from x.
"""

from . import _op_args
from ._backend import as_array, backend, contiguous
from ._op_args import index_dtype as _index_dtype

__all__ = [
    "max_pool2d", "max_pool2d_backward", "max_pool2d_backward_from_argmax",
    "avg_pool2d", "avg_pool2d_backward",
    "global_avg_pool2d", "global_avg_pool2d_backward",
    "global_max_pool2d", "global_max_pool2d_backward", "global_max_pool2d_backward_from_argmax",
    "stochastic_pool2d", "stochastic_pool2d_backward", "stochastic_pool2d_backward_from_index",
]


def _backward_from_index(be, dy, index, x_shape, geom):
    """dx of a window pooling that passes each window's gradient to one saved cell (the argmax, the
    drawn cell; -1: none), as a gather: each input pixel sums the windows that saved it."""
    dx = be.xp.empty(x_shape, dtype=dy.dtype)
    be.lib.max_pool2d_backward(dy, index, dx, geom)
    return dx


def _window_backward_from_index(dy, index, x_shape, pool_size, strides, padding, index_name, what):
    dy, index = as_array(dy), as_array(index)
    x_shape, geom, _ = _op_args.check_pool2d_backward_from_index(dy, index, x_shape, pool_size, strides,
                                                                padding, index_name, what)
    dy, index = contiguous(dy, index)
    return _backward_from_index(backend(dy, index), dy, index, x_shape, geom)


# ----------------------------------------------------------------------------------------------
# Max pooling


def max_pool2d(x, pool_size=2, strides=None, padding="valid", *, return_argmax=False):
    """Max pooling of an NHWC array (Keras ``MaxPooling2D``): (N, H, W, C) -> (N, OH, OW, C).

    Padded cells never win; NaN is the maximum (the first NaN in scan order wins, as PyTorch);
    ties go to the first cell in scan order (window rows outer, columns inner).
    return_argmax=True: returns (y, argmax), argmax the winning cell of each output as a flat
    in-image index h*W + w (int32 when H*W fits, else int64), for
    ``max_pool2d_backward_from_argmax``."""
    x = as_array(x)
    geom, out_shape = _op_args.check_pool2d(x, pool_size, strides, padding)
    x, = contiguous(x)
    be = backend(x)
    y = be.xp.empty(out_shape, dtype=x.dtype)
    argmax = be.xp.empty(out_shape, dtype=_index_dtype(x.shape[1], x.shape[2])) if return_argmax else None
    be.lib.max_pool2d_forward(x, y, argmax, geom)
    return (y, argmax) if return_argmax else y


def max_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid"):
    """Gradient of ``max_pool2d`` w.r.t. x: each dy goes to its window's argmax, recomputed from x
    here (a layer keeps the one ``max_pool2d(..., return_argmax=True)`` gives and calls
    ``max_pool2d_backward_from_argmax``)."""
    dy, x = as_array(dy), as_array(x)
    geom, out_shape = _op_args.check_pool2d_backward(dy, x, pool_size, strides, padding, "max_pool2d")
    dy, x = contiguous(dy, x)
    be = backend(dy, x)
    argmax = be.xp.empty(out_shape, dtype=_index_dtype(x.shape[1], x.shape[2]))
    be.lib.max_pool2d_forward(x, None, argmax, geom)  # the argmax alone: no y to write
    return _backward_from_index(be, dy, argmax, x.shape, geom)


def max_pool2d_backward_from_argmax(dy, argmax, x_shape, pool_size=2, strides=None, padding="valid"):
    """Gradient of ``max_pool2d`` w.r.t. x from the argmax ``max_pool2d(..., return_argmax=True)``
    returned; x_shape is the input's shape (N, H, W, C)."""
    return _window_backward_from_index(dy, argmax, x_shape, pool_size, strides, padding, "argmax",
                                       "max_pool2d")


# ----------------------------------------------------------------------------------------------
# Average pooling


def avg_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """Average pooling of an NHWC array (Keras ``AveragePooling2D``): (N, H, W, C) -> (N, OH, OW, C).

    Padded cells are NOT counted: each window averages its input cells only (Keras/TensorFlow
    semantics for "same"; the same rule applies to explicit paddings, i.e. PyTorch's
    ``count_include_pad=False``)."""
    x = as_array(x)
    geom, out_shape = _op_args.check_pool2d(x, pool_size, strides, padding)
    x, = contiguous(x)
    be = backend(x)
    y = be.xp.empty(out_shape, dtype=x.dtype)
    be.lib.avg_pool2d_forward(x, y, geom)
    return y


def avg_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid"):
    """Gradient of ``avg_pool2d`` w.r.t. x: each input pixel gets dy / count of every window covering
    it (count = that window's input cells, padding excluded). Only x's shape and dtype are used."""
    dy, x = as_array(dy), as_array(x)
    geom, out_shape = _op_args.check_pool2d_backward(dy, x, pool_size, strides, padding, "avg_pool2d")
    dy, x = contiguous(dy, x)
    be = backend(dy, x)
    dx = be.xp.empty(x.shape, dtype=x.dtype)
    be.lib.avg_pool2d_backward(dy, dx, geom)
    return dx


# ----------------------------------------------------------------------------------------------
# Global pooling


def global_avg_pool2d(x):
    """Mean over height and width (Keras ``GlobalAveragePooling2D``): (N, H, W, C) -> (N, C)."""
    x = as_array(x)
    _op_args.check_global_pool2d(x)
    x, = contiguous(x)
    be = backend(x)
    y = be.xp.empty((x.shape[0], x.shape[3]), dtype=x.dtype)
    be.lib.global_avg_pool2d_forward(x, y)
    return y


def global_avg_pool2d_backward(dy, x):
    """Gradient of ``global_avg_pool2d`` w.r.t. x: dy / (H*W) at every pixel."""
    dy, x = as_array(dy), as_array(x)
    _op_args.check_global_pool2d_backward(dy, x, "global_avg_pool2d")
    dy, x = contiguous(dy, x)
    be = backend(dy, x)
    dx = be.xp.empty(x.shape, dtype=x.dtype)
    be.lib.global_avg_pool2d_backward(dy, dx)
    return dx


def global_max_pool2d(x, *, return_argmax=False):
    """Max over height and width (Keras ``GlobalMaxPooling2D``): (N, H, W, C) -> (N, C).
    NaN is the maximum and ties go to the first pixel in row-major order, as in ``max_pool2d``.
    return_argmax=True: returns (y, argmax), argmax (N, C) the flat index h*W + w of each maximum,
    for ``global_max_pool2d_backward_from_argmax``."""
    x = as_array(x)
    _op_args.check_global_pool2d(x)
    x, = contiguous(x)
    be = backend(x)
    y = be.xp.empty((x.shape[0], x.shape[3]), dtype=x.dtype)
    argmax = be.xp.empty(y.shape, dtype=_index_dtype(x.shape[1], x.shape[2])) if return_argmax else None
    be.lib.global_max_pool2d_forward(x, y, argmax)
    return (y, argmax) if return_argmax else y


def global_max_pool2d_backward(dy, x):
    """Gradient of ``global_max_pool2d`` w.r.t. x: dy goes to the argmax pixel of each (n, c),
    recomputed from x."""
    dy, x = as_array(dy), as_array(x)
    _op_args.check_global_pool2d_backward(dy, x, "global_max_pool2d")
    _, argmax = global_max_pool2d(x, return_argmax=True)
    return global_max_pool2d_backward_from_argmax(dy, argmax, x.shape)


def global_max_pool2d_backward_from_argmax(dy, argmax, x_shape):
    """Gradient of global max pooling w.r.t. x from the argmax ``global_max_pool2d(x,
    return_argmax=True)`` returned; x_shape is the input's shape (N, H, W, C)."""
    dy, argmax = as_array(dy), as_array(argmax)
    x_shape = _op_args.check_global_max_pool2d_backward_from_argmax(dy, argmax, x_shape)
    dy, argmax = contiguous(dy, argmax)
    be = backend(dy, argmax)
    dx = be.xp.empty(x_shape, dtype=dy.dtype)
    be.lib.global_max_pool2d_backward(dy, argmax, dx)
    return dx


# ----------------------------------------------------------------------------------------------
# Stochastic pooling


def stochastic_pool2d(x, pool_size=2, strides=None, padding="valid", training=False, seed=0, *,
                      return_index=False):
    """Stochastic pooling (Zeiler & Fergus 2013) of an NHWC array: (N, H, W, C) -> (N, OH, OW, C).

    Each window's input cells (padding excluded) get weights a_i = max(x_i, 0) (NaN counts as 0);
    S = sum(a_i), summed in order in float64.
    training=True: one cell is drawn with probability a_i / S using the counter-based draw
    u = uniform01(seed, flat output index) (the first cell whose running sum exceeds u*S), and y is
    its value; a window with S == 0 (no positive cell) gives 0 and passes no gradient back. The same seed
    gives the same result. return_index=True (training only): returns (y, index), index the drawn
    cell of each output as a flat in-image index h*W + w (-1 where none was), for
    ``stochastic_pool2d_backward_from_index``.
    training=False: the probability-weighted average y = sum(a_i^2) / S (0 when S == 0)."""
    x = as_array(x)
    geom, out_shape, seed = _op_args.check_stochastic_pool2d(x, pool_size, strides, padding, seed, training,
                                                             return_index)
    x, = contiguous(x)
    be = backend(x)
    y = be.xp.empty(out_shape, dtype=x.dtype)
    index = be.xp.empty(out_shape, dtype=_index_dtype(x.shape[1], x.shape[2])) if return_index else None
    be.lib.stochastic_pool2d_forward(x, y, index, geom, bool(training), seed)
    return (y, index) if return_index else y


def stochastic_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid", training=False, seed=0):
    """Gradient of ``stochastic_pool2d`` w.r.t. x (same arguments as the forward).

    training=True: dy goes to the chosen cell (the draw is replayed from the seed).
    training=False: for x_j > 0, dx_j = sum over windows of dy * (2 a_j - y) / S; 0 elsewhere."""
    dy, x = as_array(dy), as_array(x)
    geom, out_shape, seed = _op_args.check_stochastic_pool2d_backward(dy, x, pool_size, strides, padding, seed)
    dy, x = contiguous(dy, x)
    be = backend(dy, x)
    if training:
        _, index = stochastic_pool2d(x, pool_size, strides, padding, True, seed, return_index=True)
        return _backward_from_index(be, dy, index, x.shape, geom)
    dx = be.xp.empty(x.shape, dtype=x.dtype)
    be.lib.stochastic_pool2d_backward_inference(dy, x, dx, geom)
    return dx


def stochastic_pool2d_backward_from_index(dy, index, x_shape, pool_size=2, strides=None, padding="valid"):
    """Gradient of training-mode ``stochastic_pool2d`` w.r.t. x from the index
    ``stochastic_pool2d(..., training=True, return_index=True)`` returned: dy goes to the drawn cell."""
    return _window_backward_from_index(dy, index, x_shape, pool_size, strides, padding, "index",
                                       "stochastic_pool2d")
