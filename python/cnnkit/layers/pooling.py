"""Pooling layers over NHWC inputs: max, average and stochastic windows, global average and max.

Max and stochastic pooling save the chosen cell of each window for backward; average pooling and
the inference form of stochastic pooling differentiate from the saved input."""

from .. import ops
from . import _args
from ._seeds import SeedStream
from .base import Layer, format_shape
from .conv import conv_output_length

__all__ = ["MaxPooling2D", "AveragePooling2D", "StochasticPooling2D", "GlobalAveragePooling2D",
           "GlobalMaxPooling2D"]


def _check_nhwc(layer, input_shape):
    if len(input_shape) != 4:
        raise ValueError(f"{type(layer).__name__} {layer.name!r} needs NHWC inputs (batch, height, width, "
                         f"channels), received input shape {format_shape(input_shape)}")


class _Pooling2D(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        _args.data_format(data_format)
        pool_size = _args.int_pair(pool_size, "pool_size")
        strides = pool_size if strides is None else _args.int_pair(strides, "strides")
        padding = _args.padding_mode(padding)
        super().__init__(**kwargs)
        self.pool_size, self.strides, self.padding = pool_size, strides, padding

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        oh, ow = (conv_output_length(s, k, st, self.padding, 1)
                  for s, k, st in zip((h, w), self.pool_size, self.strides))
        return (n, oh, ow, c)

    def _check_input_shape(self, input_shape):
        _check_nhwc(self, input_shape)
        oh, ow = self.compute_output_shape(input_shape)[1:3]
        if oh == 0 or ow == 0:
            raise ValueError(f"{type(self).__name__} {self.name!r}: pool_size={self.pool_size} does not fit "
                             f"input shape {format_shape(input_shape)} with padding={self.padding!r}")

    def _args(self):
        return dict(pool_size=self.pool_size, strides=self.strides, padding=self.padding)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """Max over each window; NaN wins, ties go to the first cell (the gradient flows there)."""

    def forward(self, x, training=False):
        y, argmax = ops.max_pool2d(x, **self._args(), return_argmax=True)
        return y, (argmax, x.shape)

    def backward(self, saved, dy, need_dx=True):
        if not need_dx:
            return None
        argmax, shape = saved
        return ops.max_pool2d_backward_from_argmax(dy, argmax, shape, **self._args())


class AveragePooling2D(_Pooling2D):
    """Mean over each window; the padding of "same" is not counted (Keras/TensorFlow)."""

    def forward(self, x, training=False):
        return ops.avg_pool2d(x, **self._args()), x

    def backward(self, x, dy, need_dx=True):
        return ops.avg_pool2d_backward(dy, x, **self._args()) if need_dx else None


class StochasticPooling2D(_Pooling2D):
    """Stochastic pooling (Zeiler & Fergus 2013; not in Keras). Training: each window yields one of
    its cells, drawn with probability proportional to max(x, 0), with a fresh seed per call (from
    ``seed`` when given, see Dropout); inference: the probability-weighted average
    sum(a^2) / sum(a), a = max(x, 0)."""

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", seed=None, data_format=None, **kwargs):
        seed = _args.seed(seed)
        super().__init__(pool_size, strides, padding, data_format, **kwargs)
        self.seed = seed
        self._seeds = SeedStream(seed)

    def forward(self, x, training=False):
        if training:
            y, index = ops.stochastic_pool2d(x, **self._args(), training=True, seed=self._seeds.next(),
                                             return_index=True)
            return y, (index, x.shape)
        return ops.stochastic_pool2d(x, **self._args(), training=False), (None, x)

    def backward(self, saved, dy, need_dx=True):
        if not need_dx:
            return None
        index, x_or_shape = saved
        if index is not None:  # training: dy goes to the drawn cell
            return ops.stochastic_pool2d_backward_from_index(dy, index, x_or_shape, **self._args())
        return ops.stochastic_pool2d_backward(dy, x_or_shape, **self._args(), training=False)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


class _GlobalPooling2D(Layer):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        _args.data_format(data_format)
        keepdims = _args.boolean(keepdims, "keepdims")
        super().__init__(**kwargs)
        self.keepdims = keepdims

    def compute_output_shape(self, input_shape):
        n, _, _, c = input_shape
        return (n, 1, 1, c) if self.keepdims else (n, c)

    def _check_input_shape(self, input_shape):
        _check_nhwc(self, input_shape)

    def _out(self, y):
        return y.reshape(y.shape[0], 1, 1, y.shape[1]) if self.keepdims else y

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over height and width: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims=True."""

    def forward(self, x, training=False):
        return self._out(ops.global_avg_pool2d(x)), x

    def backward(self, x, dy, need_dx=True):
        return ops.global_avg_pool2d_backward(dy.reshape(x.shape[0], x.shape[3]), x) if need_dx else None


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Max over height and width: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims=True."""

    def forward(self, x, training=False):
        y, argmax = ops.global_max_pool2d(x, return_argmax=True)
        return self._out(y), (argmax, x.shape)

    def backward(self, saved, dy, need_dx=True):
        if not need_dx:
            return None
        argmax, shape = saved
        return ops.global_max_pool2d_backward_from_argmax(dy.reshape(argmax.shape), argmax, shape)
