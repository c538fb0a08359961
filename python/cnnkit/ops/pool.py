"""Pooling over NHWC activations: max, average, global and stochastic, forward and backward.

Window arguments follow Keras: ``pool_size`` an int or a pair, ``strides`` None (= pool_size), an int
or a pair, ``padding`` "valid", "same" (TensorFlow's rule, the odd pixel at the bottom/right), an
int, (ph, pw) or ((top, bottom), (left, right)). Padded cells never take part in a window: they
never win a max and are not counted in an average. A padding so large that some window holds no
input cell at all is refused.

Max pooling treats NaN as the maximum (the first NaN in a window wins) and breaks ties in favour of
the first cell in scan order (window rows outer, columns inner). The backward passes are gathers
(each input pixel sums the windows covering it in a fixed order): deterministic, no atomics.
"""

import numpy as np

from . import _backend, _op_args
from ._backend import as_array, contiguous
from ._op_args import pool_geometry as _geometry

__all__ = [
    "max_pool2d", "max_pool2d_backward",
    "avg_pool2d", "avg_pool2d_backward",
    "global_avg_pool2d", "global_avg_pool2d_backward",
    "global_max_pool2d", "global_max_pool2d_backward",
    "stochastic_pool2d", "stochastic_pool2d_backward",
]


def _index_dtype(h, w):
    """The dtype of a saved flat in-image index h*W + w: int32 when it fits (half the traffic)."""
    return np.int32 if h * w <= 2**31 - 1 else np.int64


def _check_x(x):
    x = as_array(x)
    _op_args.pool_x(x)
    return _backend.c_aligned(x)


def _check_dy(dy, expected_shape, dtype, what):
    dy = as_array(dy)
    _op_args.pool_dy(dy, expected_shape, dtype, what)
    return _backend.c_aligned(dy)


def _check_index(index, name, expected_shape, be):
    index = _backend.as_array(index)
    if not hasattr(index, "dtype") or index.dtype not in (np.int32, np.int64):
        raise TypeError(f"{name} must be an int32 or int64 array, got "
                        f"{getattr(index, 'dtype', type(index).__name__)}")
    if tuple(index.shape) != tuple(expected_shape):
        raise ValueError(f"{name} has shape {tuple(index.shape)}, expected {tuple(expected_shape)}")
    return _backend.c_aligned(index)


def _check_x_shape(x_shape):
    try:
        shape = tuple(int(s) for s in x_shape)
    except TypeError:
        raise ValueError(f"x_shape must be a tuple of 4 ints, received x_shape={x_shape!r}") from None
    if len(shape) != 4 or min(shape) < 0 or min(shape[1:]) < 1:
        raise ValueError(f"x_shape must be (N, H, W, C) with positive H, W, C, received x_shape={x_shape!r}")
    return shape


# ----------------------------------------------------------------------------------------------
# Max pooling


def _max_pool2d_forward_saved(x, pool_size=2, strides=None, padding="valid"):
    """Max pooling that also returns the argmax (flat in-image index h*W + w per (n, oh, ow, c),
    int32 or int64) for ``_max_pool2d_backward_saved``."""
    x = _check_x(x)
    be = _backend.backend(x)
    geom, out_shape = _geometry(x.shape, pool_size, strides, padding)
    y = be.xp.empty(out_shape, dtype=x.dtype)
    argmax = be.xp.empty(out_shape, dtype=_index_dtype(x.shape[1], x.shape[2]))
    be.lib.max_pool2d_forward(x, y, argmax, geom)
    return y, argmax


def _max_pool2d_backward_saved(dy, argmax, x_shape, pool_size=2, strides=None, padding="valid"):
    """Gradient of max pooling w.r.t. x from the argmax saved by ``_max_pool2d_forward_saved``."""
    x_shape = _check_x_shape(x_shape)
    geom, out_shape = _geometry(x_shape, pool_size, strides, padding)
    dy = _check_dy(dy, out_shape, None, "pooling")
    be = _backend.backend(dy, argmax)
    argmax = _check_index(argmax, "argmax", out_shape, be)
    dx = be.xp.empty(x_shape, dtype=dy.dtype)
    be.lib.max_pool2d_backward(dy, argmax, dx, geom)
    return dx


def max_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """Max pooling of an NHWC array (Keras ``MaxPooling2D``): (N, H, W, C) -> (N, OH, OW, C).

    Padded cells never win; NaN is the maximum (the first NaN in scan order wins, as PyTorch);
    ties go to the first cell in scan order (window rows outer, columns inner)."""
    x = as_array(x)
    geom, out_shape = _op_args.check_pool2d(x, pool_size, strides, padding)
    x, = contiguous(x)
    be = _backend.backend(x)
    y = be.xp.empty(out_shape, dtype=x.dtype)
    be.lib.max_pool2d_forward(x, y, None, geom)
    return y


def max_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid"):
    """Gradient of ``max_pool2d`` w.r.t. x: each dy goes to its window's argmax (recomputed here;
    layers save it with ``_max_pool2d_forward_saved``)."""
    dy, x = as_array(dy), as_array(x)
    geom, out_shape = _op_args.check_pool2d_backward(dy, x, pool_size, strides, padding, "max_pool2d")
    dy, x = contiguous(dy, x)
    be = _backend.backend(dy, x)
    argmax = be.xp.empty(out_shape, dtype=_index_dtype(x.shape[1], x.shape[2]))
    be.lib.max_pool2d_forward(x, None, argmax, geom)  # the argmax alone: no y to write
    dx = be.xp.empty(x.shape, dtype=x.dtype)
    be.lib.max_pool2d_backward(dy, argmax, dx, geom)
    return dx


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
    be = _backend.backend(x)
    y = be.xp.empty(out_shape, dtype=x.dtype)
    be.lib.avg_pool2d_forward(x, y, geom)
    return y


def avg_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid"):
    """Gradient of ``avg_pool2d`` w.r.t. x: each input pixel gets dy / count of every window covering
    it (count = that window's input cells, padding excluded). Only x's shape and dtype are used."""
    dy, x = as_array(dy), as_array(x)
    geom, out_shape = _op_args.check_pool2d_backward(dy, x, pool_size, strides, padding, "avg_pool2d")
    dy, x = contiguous(dy, x)
    be = _backend.backend(dy, x)
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
    be = _backend.backend(x)
    y = be.xp.empty((x.shape[0], x.shape[3]), dtype=x.dtype)
    be.lib.global_avg_pool2d_forward(x, y)
    return y


def global_avg_pool2d_backward(dy, x):
    """Gradient of ``global_avg_pool2d`` w.r.t. x: dy / (H*W) at every pixel."""
    dy, x = as_array(dy), as_array(x)
    _op_args.check_global_pool2d_backward(dy, x, "global_avg_pool2d")
    dy, x = contiguous(dy, x)
    be = _backend.backend(dy, x)
    dx = be.xp.empty(x.shape, dtype=x.dtype)
    be.lib.global_avg_pool2d_backward(dy, dx)
    return dx


def _global_max_pool2d_forward_saved(x):
    """``global_max_pool2d`` that also returns the argmax (N, C) as a flat index h*W + w."""
    x = _check_x(x)
    be = _backend.backend(x)
    y = be.xp.empty((x.shape[0], x.shape[3]), dtype=x.dtype)
    argmax = be.xp.empty(y.shape, dtype=_index_dtype(x.shape[1], x.shape[2]))
    be.lib.global_max_pool2d_forward(x, y, argmax)
    return y, argmax


def _global_max_pool2d_backward_saved(dy, argmax, x_shape):
    """Gradient of global max pooling w.r.t. x from the argmax of ``_global_max_pool2d_forward_saved``."""
    x_shape = _check_x_shape(x_shape)
    dy = _check_dy(dy, (x_shape[0], x_shape[3]), None, "global_max_pool2d")
    be = _backend.backend(dy, argmax)
    argmax = _check_index(argmax, "argmax", dy.shape, be)
    dx = be.xp.empty(x_shape, dtype=dy.dtype)
    be.lib.global_max_pool2d_backward(dy, argmax, dx)
    return dx


def global_max_pool2d(x):
    """Max over height and width (Keras ``GlobalMaxPooling2D``): (N, H, W, C) -> (N, C).
    NaN is the maximum and ties go to the first pixel in row-major order, as in ``max_pool2d``."""
    x = as_array(x)
    _op_args.check_global_pool2d(x)
    x, = contiguous(x)
    be = _backend.backend(x)
    y = be.xp.empty((x.shape[0], x.shape[3]), dtype=x.dtype)
    be.lib.global_max_pool2d_forward(x, y, None)
    return y


def global_max_pool2d_backward(dy, x):
    """Gradient of ``global_max_pool2d`` w.r.t. x: dy goes to the argmax pixel of each (n, c)."""
    dy, x = as_array(dy), as_array(x)
    _op_args.check_global_pool2d_backward(dy, x, "global_max_pool2d")
    _, argmax = _global_max_pool2d_forward_saved(x)
    return _global_max_pool2d_backward_saved(dy, argmax, x.shape)


# ----------------------------------------------------------------------------------------------
# Stochastic pooling


def _stochastic_pool2d_forward_saved(x, pool_size=2, strides=None, padding="valid", seed=0):
    """Training-mode ``stochastic_pool2d`` that also returns the chosen cell (flat in-image index
    h*W + w per (n, oh, ow, c)) for ``_stochastic_pool2d_backward_saved``."""
    x = _check_x(x)
    be = _backend.backend(x)
    seed = _backend.seed_value(seed)
    geom, out_shape = _geometry(x.shape, pool_size, strides, padding)
    y = be.xp.empty(out_shape, dtype=x.dtype)
    index = be.xp.empty(out_shape, dtype=_index_dtype(x.shape[1], x.shape[2]))
    be.lib.stochastic_pool2d_forward(x, y, index, geom, True, seed)
    return y, index


def _stochastic_pool2d_backward_saved(dy, index, x_shape, pool_size=2, strides=None, padding="valid"):
    """Gradient of training-mode stochastic pooling from the saved chosen cells: dy goes there."""
    return _max_pool2d_backward_saved(dy, index, x_shape, pool_size, strides, padding)


def stochastic_pool2d(x, pool_size=2, strides=None, padding="valid", training=False, seed=0):
    """Stochastic pooling (Zeiler & Fergus 2013) of an NHWC array: (N, H, W, C) -> (N, OH, OW, C).

    Each window's input cells (padding excluded) get weights a_i = max(x_i, 0) (NaN counts as 0);
    S = sum(a_i), summed in order in float64.
    training=True: one cell is drawn with probability a_i / S using the counter-based draw
    u = uniform01(seed, flat output index) (the first cell whose running sum exceeds u*S), and y is
    its value; a window with S == 0 (no positive cell) gives 0 and passes no gradient back. The same seed
    gives the same result.
    training=False: the probability-weighted average y = sum(a_i^2) / S (0 when S == 0)."""
    x = as_array(x)
    geom, out_shape, seed = _op_args.check_stochastic_pool2d(x, pool_size, strides, padding, seed)
    x, = contiguous(x)
    be = _backend.backend(x)
    y = be.xp.empty(out_shape, dtype=x.dtype)
    be.lib.stochastic_pool2d_forward(x, y, None, geom, bool(training), seed)
    return y


def stochastic_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid", training=False, seed=0):
    """Gradient of ``stochastic_pool2d`` w.r.t. x (same arguments as the forward).

    training=True: dy goes to the chosen cell (the draw is replayed from the seed).
    training=False: for x_j > 0, dx_j = sum over windows of dy * (2 a_j - y) / S; 0 elsewhere."""
    dy, x = as_array(dy), as_array(x)
    geom, out_shape, seed = _op_args.check_stochastic_pool2d_backward(dy, x, pool_size, strides, padding, seed)
    dy, x = contiguous(dy, x)
    be = _backend.backend(dy, x)
    if training:
        _, index = _stochastic_pool2d_forward_saved(x, pool_size, strides, padding, seed)
        return _stochastic_pool2d_backward_saved(dy, index, x.shape, pool_size, strides, padding)
    dx = be.xp.empty(x.shape, dtype=x.dtype)
    be.lib.stochastic_pool2d_backward_inference(dy, x, dx, geom)
    return dx
