"""Dense, Activation, Flatten and Reshape, and the bases that give a layer its ``activation=`` and its
kernel and bias."""

import math

from .. import activations
from .. import initializers as _init
from .. import ops
from ..ops import autodiff
from .. import regularizers as _reg
from . import _args
from .base import Layer, format_shape

__all__ = ["Dense", "Activation", "Flatten", "Reshape", "Lambda"]


class ActivationMixin:
    """forward = ``_forward_linear`` then the activation (in place on the fresh pre-activation);
    the model's fused softmax + cross-entropy path calls ``forward_logits``/``backward_logits`` to
    skip the softmax."""

    def forward(self, x, training=False):
        z, saved = self._forward_linear(x, training)
        y, act_saved = self.activation.forward(z, inplace=z is not x)
        return y, (saved, act_saved)

    def backward(self, saved, dy, need_dx=True):
        saved, act_saved = saved
        return self._backward_linear(saved, self.activation.backward(act_saved, dy), need_dx)

    def ends_in_softmax(self):
        return self.activation.name == "softmax" and self.activation.params.get("axis", -1) == -1

    def forward_logits(self, x, training=False):
        return self._forward_linear(x, training)

    def backward_logits(self, saved, dz, need_dx=True):
        return self._backward_linear(saved, dz, need_dx)


class KernelLayer(ActivationMixin, Layer):
    """y = activation(op(x, kernel) + bias) for an op of cnnkit.ops with a fused bias and ReLU
    (Conv2D: ``ops.conv2d``, Dense: ``ops.dense``): the kernel and the optional bias with their
    initializers and regularizers, and a ReLU that runs inside the op's output pass. A subclass names
    the op pair (``_op``, ``_op_backward``) and its window arguments (``_op_kwargs``)."""

    _op = _op_backward = None

    def _op_kwargs(self):
        return {}

    def _kernel_args(self, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                     bias_regularizer):
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _init.get(kernel_initializer)
        self.bias_initializer = _init.get(bias_initializer)
        self.kernel_regularizer = _reg.get(kernel_regularizer)
        self.bias_regularizer = _reg.get(bias_regularizer)

    def _kernel_config(self):
        return {"activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": _init.serialize(self.kernel_initializer),
                "bias_initializer": _init.serialize(self.bias_initializer),
                "kernel_regularizer": _reg.serialize(self.kernel_regularizer),
                "bias_regularizer": _reg.serialize(self.bias_regularizer)}

    def _add_kernel_and_bias(self, kernel_shape):
        """The kernel, and a bias of one value per output (the kernel's last axis) when use_bias."""
        self.kernel = self.add_weight("kernel", kernel_shape, self.kernel_initializer, self.kernel_regularizer)
        self.bias = (self.add_weight("bias", kernel_shape[-1:], self.bias_initializer, self.bias_regularizer)
                     if self.use_bias else None)

    def _bias_value(self):
        return self.bias.value if self.use_bias else None

    def _fuses_relu(self):
        return self.activation.name == "relu" and not self.activation.params

    def forward(self, x, training=False):
        if not self._fuses_relu():
            return super().forward(x, training)
        y = self._op(x, self.kernel.value, self._bias_value(), activation="relu", **self._op_kwargs())
        return y, (x, y)

    def backward(self, saved, dy, need_dx=True):
        if not self._fuses_relu():
            return super().backward(saved, dy, need_dx)
        x, y = saved
        return self._backward_linear(x, ops.relu_backward_from_output(dy, y), need_dx)

    def _forward_linear(self, x, training):
        return self._op(x, self.kernel.value, self._bias_value(), **self._op_kwargs()), x

    def _backward_linear(self, x, dz, need_dx):
        # need_dx False (a model's first layer): no dy @ w.T GEMM, no col2im
        dx, dw, db = self._op_backward(dz, x, self.kernel.value, self._bias_value(), need_dx=need_dx,
                                       **self._op_kwargs())
        if self._wants_grad(self.kernel):
            self.kernel.accumulate_grad(dw)
        if self.use_bias and self._wants_grad(self.bias):
            self.bias.accumulate_grad(db)
        return dx


class Dense(KernelLayer):
    """y = activation(x @ kernel + bias) over the last axis of x."""

    _op, _op_backward = staticmethod(ops.dense), staticmethod(ops.dense_backward)

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = _args.positive_int(units, "units")
        self._kernel_args(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                          bias_regularizer)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(f"Dense {self.name!r} needs inputs of shape (batch, ..., features) with a known "
                             f"last axis, received input shape {format_shape(input_shape)}")
        self._add_kernel_and_bias((input_shape[-1], self.units))

    def _check_input_shape(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] != self.kernel.shape[0]:
            raise ValueError(f"Dense {self.name!r} expects inputs with {self.kernel.shape[0]} features on the "
                             f"last axis, received input shape {format_shape(input_shape)}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, **self._kernel_config()}


class ActivationLayer(ActivationMixin, Layer):
    """A layer that is only its activation: the linear part is the identity. ``config`` holds the
    constructor arguments that ``get_config`` returns, each kept as an attribute of that name."""

    def __init__(self, activation, config=None, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self._config_names = tuple(config or ())
        for name, value in (config or {}).items():
            setattr(self, name, value)

    def _forward_linear(self, x, training):
        return x, None

    def _backward_linear(self, saved, dz, need_dx):
        return dz if need_dx else None

    def get_config(self):
        return {**super().get_config(), **{name: getattr(self, name) for name in self._config_names}}


class Activation(ActivationLayer):
    """Applies an activation by name: ``Activation("relu")``."""

    def __init__(self, activation, **kwargs):
        super().__init__(activation, **kwargs)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...) in C order (NHWC flattens channel-fastest, like Keras)."""

    def __init__(self, data_format=None, **kwargs):
        _args.data_format(data_format)
        super().__init__(**kwargs)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if None in rest else math.prod(rest))

    def forward(self, x, training=False):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, shape, dy, need_dx=True):
        return dy.reshape(shape) if need_dx else None


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            self.target_shape = tuple(int(s) for s in target_shape)
        except TypeError:
            raise ValueError(f"target_shape must be a tuple of ints, received target_shape={target_shape!r}") from None
        if sum(s == -1 for s in self.target_shape) > 1 or any(s < 1 and s != -1 for s in self.target_shape):
            raise ValueError(f"target_shape must hold positive sizes and at most one -1, received "
                             f"target_shape={target_shape!r}")

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        if None in rest:
            return (input_shape[0],) + tuple(None if s == -1 else s for s in self.target_shape)
        total, known = math.prod(rest), math.prod(s for s in self.target_shape if s != -1)
        if -1 in self.target_shape:
            if total % known:
                raise ValueError(f"cannot reshape input of shape {format_shape(input_shape)} to "
                                 f"target_shape={self.target_shape}")
            return (input_shape[0],) + tuple(total // known if s == -1 else s for s in self.target_shape)
        if total != known:
            raise ValueError(f"cannot reshape input of shape {format_shape(input_shape)} ({total} values per "
                             f"sample) to target_shape={self.target_shape} ({known} values)")
        return (input_shape[0],) + self.target_shape

    def _check_input_shape(self, input_shape):
        self.compute_output_shape(input_shape)

    def forward(self, x, training=False):
        return x.reshape((x.shape[0],) + self.target_shape), x.shape

    def backward(self, shape, dy, need_dx=True):
        return dy.reshape(shape) if need_dx else None

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}




class Lambda(Layer):
    """A layer from a function of its input written with cnnkit.ops, as keras.layers.Lambda:
    ``Lambda(lambda x: ops.square(x))``, its gradient recorded like any ``call``.

    ``output_shape`` (a shape without the batch axis, or a function of the input shape) is found by
    running the function once when not given; ``arguments`` are extra keyword arguments for it. A
    Lambda is built in code: its function is Python code, which a model file never carries into
    cnnkit, so loading a file that holds one is a clear error (rebuild the model in code, then
    ``load_weights``)."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        if not callable(function):
            raise TypeError(f"Lambda needs a callable, received function={function!r:.100}")
        if mask is not None:
            raise ValueError("Lambda: masking is not supported in cnnkit (mask must be None)")
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(f"Lambda: arguments must be a dict of keyword arguments, received {arguments!r:.100}")
        super().__init__(**kwargs)
        self.function, self.arguments = function, dict(arguments or {})
        self._output_shape = output_shape

    def call(self, inputs):
        return self.function(inputs, **self.arguments)

    def compute_output_shape(self, input_shape):
        if self._output_shape is None:
            return autodiff.infer_output_shape(self, input_shape)
        if callable(self._output_shape):
            return tuple(self._output_shape(input_shape))
        first = input_shape[0] if isinstance(input_shape, list) else input_shape
        return (first[0],) + tuple(self._output_shape)

    def get_config(self):
        config = super().get_config()
        fn = self.function
        config["function"] = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
        if self._output_shape is not None and not callable(self._output_shape):
            config["output_shape"] = list(self._output_shape)
        return config

    @classmethod
    def from_config(cls, config):
        raise ValueError(
            f"the model file holds a Lambda layer ({config.get('name', '?')!r}, function "
            f"{config.get('function', '?')}): its function is Python code, which cnnkit never loads from a file. "
            "Build the model in code and read the weights with model.load_weights(...)")
