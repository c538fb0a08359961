"""Conv2D (NHWC input, HWIO kernel, like Keras' channels_last) and the output-length rule of window ops."""

from .. import ops
from . import _args
from .base import format_shape
from .core import KernelLayer

__all__ = ["Conv2D"]


def conv_output_length(n, k, stride, padding, dilation):
    """Keras' output length of a window op along one axis (None stays None)."""
    if n is None:
        return None
    eff = (k - 1) * dilation + 1
    if padding == "same":
        return -(-n // stride)
    return (n - eff) // stride + 1 if n >= eff else 0


class Conv2D(KernelLayer):
    """2-D convolution: ``Conv2D(32, (3, 3), strides=1, padding="valid", activation="relu")``."""

    _op, _op_backward = staticmethod(ops.conv2d), staticmethod(ops.conv2d_backward)

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        _args.data_format(data_format)
        self.filters = _args.positive_int(filters, "filters")
        self.kernel_size = _args.int_pair(kernel_size, "kernel_size")
        self.strides = _args.int_pair(strides, "strides")
        self.padding = _args.padding_mode(padding)
        self.dilation_rate = _args.int_pair(dilation_rate, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"strides > 1 together with dilation_rate > 1 is not supported (as in Keras), "
                             f"received strides={strides!r}, dilation_rate={dilation_rate!r}")
        self._kernel_args(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                          bias_regularizer)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"Conv2D {self.name!r} needs NHWC inputs (batch, height, width, channels) with a "
                             f"known channel count, received input shape {format_shape(input_shape)}")
        self._add_kernel_and_bias(self.kernel_size + (input_shape[-1], self.filters))

    def _check_input_shape(self, input_shape):
        channels = self.kernel.shape[2]
        if len(input_shape) != 4 or input_shape[-1] != channels:
            raise ValueError(f"Conv2D {self.name!r} expects NHWC inputs with {channels} channels, received "
                             f"input shape {format_shape(input_shape)}")
        oh, ow = self.compute_output_shape(input_shape)[1:3]
        if oh == 0 or ow == 0:
            raise ValueError(f"Conv2D {self.name!r}: kernel_size={self.kernel_size} with "
                             f"dilation_rate={self.dilation_rate} does not fit input shape "
                             f"{format_shape(input_shape)} with padding={self.padding!r}: the output would be empty")

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        oh, ow = (conv_output_length(s, k, st, self.padding, d) for s, k, st, d in
                  zip((h, w), self.kernel_size, self.strides, self.dilation_rate))
        return (n, oh, ow, self.filters)

    def _op_kwargs(self):
        return dict(strides=self.strides, padding=self.padding, dilation=self.dilation_rate)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding,
                "dilation_rate": list(self.dilation_rate), **self._kernel_config()}
