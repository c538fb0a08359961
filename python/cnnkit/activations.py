"""Activation functions by name, as layers apply them (``Dense(10, activation="softmax")``).

Each is an object with ``forward(x, inplace)`` -> (y, saved) and ``backward(saved, dy)`` -> dx, built on
cnnkit.ops. relu, sigmoid, tanh, softmax and log_softmax save their output and differentiate from
it, so they can overwrite a layer's fresh pre-activation in place; leaky_relu and elu keep the input.
"""

from . import ops

__all__ = ["get", "serialize", "Activation"]


class Activation:
    """An activation: ``name`` and its parameters."""

    def __init__(self, name, forward, backward, from_output, **params):
        self.name, self._f, self._b, self._from_output, self.params = name, forward, backward, from_output, params

    def forward(self, x, inplace=False):
        if self._f is None:
            return x, None
        if self._from_output:
            y = self._f(x, out=x, **self.params) if inplace else self._f(x, **self.params)
            return y, y
        return self._f(x, **self.params), x

    def backward(self, saved, dy):
        if self._f is None:
            return dy
        return self._b(dy, saved, **self.params)

    def __call__(self, x):
        return self.forward(x)[0]

    def __repr__(self):
        return f"<activation {self.name}>"


def _softmax_f(x, out=None, axis=-1):
    return ops.softmax(x, axis=axis, out=out)


def _log_softmax_f(x, out=None, axis=-1):
    return ops.log_softmax(x, axis=axis, out=out)


_TABLE = {
    "linear": (None, None, False),
    "relu": (ops.relu, ops.relu_backward_from_output, True),
    "sigmoid": (ops.sigmoid, ops.sigmoid_backward_from_output, True),
    "tanh": (ops.tanh, ops.tanh_backward_from_output, True),
    "softmax": (_softmax_f, ops.softmax_backward_from_output, True),
    "log_softmax": (_log_softmax_f, ops.log_softmax_backward_from_output, True),
    "leaky_relu": (ops.leaky_relu, ops.leaky_relu_backward, False),
    "elu": (ops.elu, ops.elu_backward, False),
}


def get(identifier, **params):
    """An Activation for a name ("relu", "softmax", ...; None means linear) or an Activation itself."""
    if isinstance(identifier, Activation):
        return identifier
    if identifier is None:
        identifier = "linear"
    if isinstance(identifier, str) and identifier.lower() in _TABLE:
        name = identifier.lower()
        forward, backward, from_output = _TABLE[name]
        return Activation(name, forward, backward, from_output, **params)
    known = ", ".join(sorted(_TABLE))
    if callable(identifier):
        raise TypeError(f"activation must be a name cnnkit can differentiate ({known}), received the "
                        f"callable {identifier!r}; use an Activation layer from cnnkit.layers instead")
    raise ValueError(f"unknown activation {identifier!r}; known: {known}")


def serialize(activation):
    return activation.name
