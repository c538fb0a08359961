"""Activation layers with parameters: ReLU, LeakyReLU, Softmax and ELU (Keras 3 names and defaults).

Each applies a cnnkit activation through ActivationMixin, so ``Softmax()`` at the end of a model
takes the model's fused softmax + cross-entropy path like ``Dense(10, activation="softmax")``."""

from .. import activations
from ..ops import get_array_module
from . import _args
from .base import format_shape
from .core import ActivationLayer

__all__ = ["ReLU", "LeakyReLU", "Softmax", "ELU"]


def _relu_general(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras' relu: min(x, max_value) above threshold, negative_slope * (x - threshold) at or below."""
    xp = get_array_module(x)
    top = x if max_value is None else xp.minimum(x, x.dtype.type(max_value))
    return xp.where(x > threshold, top, x.dtype.type(negative_slope) * (x - x.dtype.type(threshold)))


def _relu_general_backward(dy, x, negative_slope=0.0, max_value=None, threshold=0.0):
    xp = get_array_module(dy, x)
    zero = dy.dtype.type(0)
    top = dy if max_value is None else xp.where(x < max_value, dy, zero)
    return xp.where(x > threshold, top, dy.dtype.type(negative_slope) * dy)


class ReLU(ActivationLayer):
    """``f(x) = min(x, max_value)`` for x > threshold, ``negative_slope * (x - threshold)`` otherwise.

    The default form runs the native relu kernel and ``negative_slope`` alone the leaky_relu kernel;
    ``max_value`` or ``threshold`` use elementwise array math."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        max_value = _args.nonnegative_float(max_value, "max_value", allow_none=True)
        negative_slope = _args.nonnegative_float(negative_slope, "negative_slope")
        threshold = _args.nonnegative_float(threshold, "threshold")
        if max_value is None and threshold == 0:
            activation = (activations.get("relu") if negative_slope == 0
                          else activations.get("leaky_relu", alpha=negative_slope))
        else:
            activation = activations.Activation("relu", _relu_general, _relu_general_backward, False,
                                                negative_slope=negative_slope, max_value=max_value,
                                                threshold=threshold)
        config = {"max_value": max_value, "negative_slope": negative_slope, "threshold": threshold}
        super().__init__(activation, config, **kwargs)


class LeakyReLU(ActivationLayer):
    """x for x >= 0, ``negative_slope * x`` below (default 0.3, as Keras; ``alpha=`` is Keras 2's name)."""

    def __init__(self, negative_slope=0.3, alpha=None, **kwargs):
        if alpha is not None:
            negative_slope = alpha
        negative_slope = _args.nonnegative_float(negative_slope, "negative_slope")
        super().__init__(activations.get("leaky_relu", alpha=negative_slope), {"negative_slope": negative_slope},
                         **kwargs)


class Softmax(ActivationLayer):
    """Softmax along ``axis`` (default the last)."""

    def __init__(self, axis=-1, **kwargs):
        axis = _args.integer(axis, "axis")
        super().__init__(activations.get("softmax", axis=axis), {"axis": axis}, **kwargs)

    def _check_input_shape(self, input_shape):
        if not -len(input_shape) <= self.axis < len(input_shape):
            raise ValueError(f"Softmax {self.name!r}: axis={self.axis} is out of range for input shape "
                             f"{format_shape(input_shape)}")


class ELU(ActivationLayer):
    """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha=1.0, **kwargs):
        alpha = _args.finite_float(alpha, "alpha")
        super().__init__(activations.get("elu", alpha=alpha), {"alpha": alpha}, **kwargs)
