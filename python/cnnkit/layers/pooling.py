"""Pooling layers over NHWC inputs: MaxPooling2D (the argmax is saved for backward)."""

from ..ops import pool as _pool
from . import _args
from .base import Layer, format_shape
from .conv import conv_output_length

__all__ = ["MaxPooling2D"]


class _Pooling2D(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        _args.data_format(data_format)
        self.pool_size = _args.int_pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _args.int_pair(strides, "strides")
        self.padding = _args.padding_mode(padding)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        oh, ow = (conv_output_length(s, k, st, self.padding, 1)
                  for s, k, st in zip((h, w), self.pool_size, self.strides))
        return (n, oh, ow, c)

    def _check_input_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{type(self).__name__} {self.name!r} needs NHWC inputs (batch, height, width, "
                             f"channels), received input shape {format_shape(input_shape)}")
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
        y, argmax = _pool._max_pool2d_forward_saved(x, **self._args())
        return y, (argmax, x.shape)

    def backward(self, saved, dy, need_dx=True):
        if not need_dx:
            return None
        argmax, shape = saved
        return _pool._max_pool2d_backward_saved(dy, argmax, shape, **self._args())
