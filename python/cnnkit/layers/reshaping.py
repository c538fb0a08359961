"""ZeroPadding2D and Cropping2D: add or remove rows and columns at the borders of NHWC images."""

from ..ops import get_array_module
from . import _args
from .base import Layer, format_shape

__all__ = ["ZeroPadding2D", "Cropping2D"]


class _Borders2D(Layer):
    _arg = None  # "padding" or "cropping"
    _sign = 1    # +1: the borders are added, -1: removed

    def __init__(self, value, data_format=None, **kwargs):
        _args.data_format(data_format)
        borders = _args.padding_2d(value, self._arg)
        super().__init__(**kwargs)
        setattr(self, self._arg, borders)

    @property
    def _borders(self):
        return getattr(self, self._arg)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        (t, b), (l, r) = self._borders
        return (n, None if h is None else h + self._sign * (t + b),
                None if w is None else w + self._sign * (l + r), c)

    def _check_input_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{type(self).__name__} {self.name!r} needs NHWC inputs (batch, height, width, "
                             f"channels), received input shape {format_shape(input_shape)}")
        if any(s is not None and s < 1 for s in self.compute_output_shape(input_shape)[1:3]):
            raise ValueError(f"{type(self).__name__} {self.name!r}: {self._arg}={self._borders} leaves nothing "
                             f"of input shape {format_shape(input_shape)}")

    def get_config(self):
        return {**super().get_config(), self._arg: [list(p) for p in self._borders]}


class ZeroPadding2D(_Borders2D):
    """Zeros around each image: padding an int, (symmetric_height, symmetric_width) or
    ((top, bottom), (left, right))."""

    _arg = "padding"

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)

    def forward(self, x, training=False):
        xp = get_array_module(x)
        (t, b), (l, r) = self.padding
        return xp.pad(x, ((0, 0), (t, b), (l, r), (0, 0))), x.shape[1:3]

    def backward(self, hw, dy, need_dx=True):
        if not need_dx:
            return None
        (t, _), (l, _) = self.padding
        return dy[:, t:t + hw[0], l:l + hw[1], :]


class Cropping2D(_Borders2D):
    """Removes rows and columns at the borders: cropping an int, (symmetric_height, symmetric_width)
    or ((top, bottom), (left, right))."""

    _arg = "cropping"
    _sign = -1

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(cropping, data_format, **kwargs)

    def forward(self, x, training=False):
        (t, b), (l, r) = self.cropping
        _, h, w, _ = x.shape
        return x[:, t:h - b, l:w - r, :], x.shape

    def backward(self, shape, dy, need_dx=True):
        if not need_dx:
            return None
        xp = get_array_module(dy)
        (t, _), (l, _) = self.cropping
        dx = xp.zeros(shape, dy.dtype)
        dx[:, t:t + dy.shape[1], l:l + dy.shape[2], :] = dy
        return dx
