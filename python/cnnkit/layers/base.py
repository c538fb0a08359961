"""The Layer base class, symbolic tensors and Input: what every layer and model is built from.

A layer is called on arrays (runs at once, inference mode) or on the symbolic tensors that
``Input`` returns (records a node of a graph that ``Model(inputs, outputs)`` then runs). Layers keep
no per-call state: ``forward(x, training)`` returns ``(y, saved)`` and ``backward(saved, dy, need_dx)``
returns dx from that saved state, adding weight gradients to ``variable.grad``. So one layer can be
used at several places of a graph (shared weights), and a model can skip dx where no weight is
upstream (``need_dx`` False: the first layer never computes its input gradient).

A layer of your own may instead define only ``call(inputs, training=None)`` with cnnkit.ops, as in
Keras: ``forward`` then records the call (cnnkit.ops.autodiff) and ``backward`` replays it, and
``compute_output_shape`` is found by running the call once on a batch of one. Called on Tensors or
inside a ``GradientTape``, any layer records: a call-only layer its ops, a built-in layer one node
whose VJP is its own ``backward``.
"""

import numbers

from .. import device as _device
from .. import initializers, regularizers
from .._registry import snake_case
from ..config import config
from ..ops import autodiff, get_array_module
from ..variables import Variable

__all__ = ["Layer", "KerasTensor", "InputLayer", "Input"]

_name_counts = {}
_deferred = []  # non-empty inside deferred_weights(): add_weight records shapes, draws nothing


class _Unset:
    """What a Variable holds between ``add_weight`` under ``deferred_weights()`` and the assignment
    of a loaded array: its shape and dtype, and no memory (a model file's config can declare any
    size, and nothing is allocated for it before the file's arrays are checked against it)."""

    __slots__ = ("shape", "dtype", "size", "device")

    def __init__(self, shape, dtype, device):
        import numpy as np

        self.shape, self.dtype, self.device = tuple(shape), np.dtype(dtype), device
        self.size = 1
        for s in self.shape:
            self.size *= s  # Python ints: no overflow, however large the claim


class deferred_weights:
    """Within ``with deferred_weights():`` layers built create variables holding an ``_Unset``
    placeholder instead of drawing their initial values; the model loader assigns every one of them
    from the file (``Variable.value = array``) before the model is handed out."""

    def __enter__(self):
        _deferred.append(True)
        return self

    def __exit__(self, *exc):
        _deferred.pop()


def unique_name(prefix):
    """conv2d, conv2d_1, conv2d_2, ... as Keras names layers."""
    n = _name_counts.get(prefix, 0)
    _name_counts[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def clear_session():
    """Restart layer auto-naming (conv2d, conv2d_1, ...), like keras.backend.clear_session()."""
    _name_counts.clear()




def format_shape(shape):
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class KerasTensor:
    """A symbolic tensor: a shape (batch axis None) and the layer call that produces it."""

    def __init__(self, shape, dtype, node=None, index=0):
        self.shape, self.dtype, self.node, self.index = tuple(shape), dtype, node, index

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        src = self.node.layer.name if self.node is not None else "?"
        return f"<KerasTensor shape={format_shape(self.shape)} dtype={self.dtype} from {src!r}>"


class Node:
    """One call of a layer in a graph: its input and output symbolic tensors."""

    def __init__(self, layer, inputs, outputs):
        self.layer, self.inputs, self.outputs = layer, list(inputs), list(outputs)


def _is_metric(value):
    return hasattr(value, "update_state") and hasattr(value, "reset_state") and hasattr(value, "result")


def _is_symbolic(x):
    if isinstance(x, (list, tuple)):
        return any(isinstance(t, KerasTensor) for t in x)
    return isinstance(x, KerasTensor)


class Layer:
    """Base class. Subclasses override ``build``, ``compute_output_shape``, ``forward``, ``backward``
    and ``get_config``; layers taking several inputs set ``multi_input = True``."""

    multi_input = False

    def __init__(self, trainable=True, name=None, dtype=None, input_shape=None, input_dim=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s): "
                            f"{', '.join(sorted(kwargs))}")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"name must be a non-empty string without '/', received name={name!r}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self.dtype = str(dtype or config.floatx)
        if self.dtype not in ("float32", "float64"):
            raise TypeError(f"dtype must be 'float32' or 'float64', received dtype={dtype!r}")
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        self._input_shape_arg = None if input_shape is None else tuple(input_shape)
        self._weights = []
        self.built = False
        self._build_shape = None
        self._nodes = []
        self.device = None  # set when built, or by Model.to()

    # ------------------------------------------------------------------ sublayers
    # attributes that hold a model's own bookkeeping, not sublayers of its own
    _UNTRACKED = frozenset({"_layers", "_graph_nodes", "_plan", "_nodes", "_sublayers", "inputs", "outputs"})

    def __setattr__(self, name, value):
        """Track layers assigned as attributes (``self.dense = Dense(8)``, or a list of layers), as
        Keras does: their weights are this layer's weights too."""
        if name not in Layer._UNTRACKED:
            found = [value] if isinstance(value, Layer) else (
                [v for v in value if isinstance(v, Layer)] if isinstance(value, (list, tuple)) else ())
            if found:
                subs = self.__dict__.setdefault("_sublayers", [])
                for v in found:
                    if v is not self and all(v is not u for u in subs):
                        subs.append(v)
            elif not name.startswith("_") and name != "compiled_metrics" and _is_metric(value):
                tracked = self.__dict__.setdefault("_tracked_metrics", [])
                if all(value is not m for m in tracked):
                    tracked.append(value)
        object.__setattr__(self, name, value)

    def _tracked_layers(self):
        return list(self.__dict__.get("_sublayers", ()))

    # ------------------------------------------------------------------ weights
    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)

    def add_weight(self, name=None, shape=None, initializer="glorot_uniform", regularizer=None, trainable=True):
        """Create a Variable on this layer's device, drawn from ``initializer`` (Keras' keywords:
        ``add_weight(shape=(n,), initializer="ones", name="w")``; unnamed weights are "variable",
        "variable_1", ...)."""
        if shape is None:
            raise TypeError(f"{type(self).__name__}.add_weight needs shape=, e.g. add_weight(shape=(units,))")
        if name is None:
            taken = {v.name.rsplit("/", 1)[-1] for v in self._weights}
            name = next(n for n in ("variable" if i == 0 else f"variable_{i}" for i in range(len(taken) + 1))
                        if n not in taken)
        init = initializers.get("glorot_uniform" if initializer is None else initializer)
        if _deferred:
            shape = tuple(shape)
            if not all(isinstance(s, numbers.Integral) and s >= 0 for s in shape):
                raise ValueError(f"weight {self.name}/{name} has an invalid shape {shape!r:.200}")
            shape = tuple(int(s) for s in shape)
            if self.device is None:
                self.device = _device.get_device()
            var = Variable(_Unset(shape, self.dtype, self.device), f"{self.name}/{name}", trainable,
                           regularizers.get(regularizer))
            self._weights.append(var)
            return var
        value = init(tuple(shape), self.dtype)
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"initializer {init!r} returned shape {tuple(value.shape)} for weight "
                             f"{self.name}/{name} of shape {tuple(shape)}")
        if self.device is None:
            self.device = _device.get_device()
        var = Variable(_device.to_device(value, self.device), f"{self.name}/{name}", trainable,
                       regularizers.get(regularizer))
        self._weights.append(var)
        return var

    def _all_weights(self):
        """Own weights, then each tracked sublayer's, each variable once."""
        subs = self.__dict__.get("_sublayers")
        if not subs:
            return list(self._weights)
        out, seen = [], set()
        for v in list(self._weights) + [v for layer in subs for v in layer.weights]:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    @property
    def weights(self):
        return self._all_weights()

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        subs = self.__dict__.get("_sublayers")
        if not subs:
            return [v for v in self._weights if v.trainable]
        frozen = {id(v) for layer in subs for v in layer.non_trainable_weights}
        return [v for v in self._all_weights() if v.trainable and id(v) not in frozen]

    @property
    def non_trainable_weights(self):
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self._all_weights() if id(v) not in trainable]

    @property
    def variables(self):
        return self.weights

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_variables(self):
        return self.non_trainable_weights

    def _wants_grad(self, var):
        return self.trainable and var.trainable

    def count_params(self):
        if not self.built:
            raise ValueError(f"layer {self.name!r} is not built yet, so it has no weights to count; call "
                             "it on an input or build the model first")
        return sum(v.size for v in self.weights)

    def get_weights(self):
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        mine = self.weights
        if len(weights) != len(mine):
            raise ValueError(f"layer {self.name!r} has {len(mine)} weights, received a list of "
                             f"{len(weights)}")
        for var, value in zip(mine, weights):
            shape = tuple(getattr(value, "shape", ()))
            if shape != var.shape:
                raise ValueError(f"weight {var.name!r} has shape {var.shape}, received shape {shape}")
        for var, value in zip(mine, weights):
            var.assign(value)

    def _move(self, device):
        """Move weights to device in place of the old arrays (Model.to)."""
        self.device = device
        for v in self._weights:
            v.value = _device.to_device(v.value, device)
            v.grad = None
        for layer in self._tracked_layers():
            layer._move(device)

    # ------------------------------------------------------------------ shapes and building
    def build(self, input_shape):
        """Create the weights for inputs of this shape (batch axis included, as None)."""

    def compute_output_shape(self, input_shape):
        return input_shape

    def _check_input_shape(self, input_shape):
        """Raise ValueError when an input of this shape cannot be taken (after build)."""

    def _maybe_build(self, input_shape):
        if not self.built:
            self.build(input_shape)
            self.built = True
            self._build_shape = input_shape
        self._check_input_shape(input_shape)

    # ------------------------------------------------------------------ running
    def call(self, inputs, training=None):
        """The layer's computation written with cnnkit.ops, as in Keras (the gradient is recorded);
        built-in layers define ``forward``/``backward`` instead."""
        raise NotImplementedError(f"{type(self).__name__} must define call(inputs) (written with cnnkit.ops), or "
                                  "forward(inputs, training) and backward(saved, dy, need_dx)")

    def _defines_call(self):
        return type(self).call is not Layer.call

    def forward(self, inputs, training=False):
        """(outputs, saved): the result and what ``backward`` needs. A layer that defines only
        ``call`` gets its call recorded here (cnnkit.ops.autodiff)."""
        if self._defines_call():
            return autodiff.layer_forward(self, inputs, training)
        raise NotImplementedError(f"{type(self).__name__} must define call(inputs) (written with cnnkit.ops), or "
                                  "forward(inputs, training) and backward(saved, dy, need_dx)")

    def backward(self, saved, dy, need_dx=True):
        """dx (a list for multi-input layers; None where need_dx is false), adding weight gradients to
        each trainable Variable's ``grad``. A call-only layer replays its recorded call."""
        if self._defines_call():
            return autodiff.layer_backward(self, saved, dy, need_dx)
        raise NotImplementedError(f"{type(self).__name__} must define call(inputs) (written with cnnkit.ops), or "
                                  "forward(inputs, training) and backward(saved, dy, need_dx)")

    def __call__(self, inputs, training=None):
        if _is_symbolic(inputs):
            return self._call_symbolic(inputs)
        if autodiff.wants_layer_call(inputs):
            return autodiff.layer_call(self, inputs, bool(training))
        return self._call_eager(inputs, bool(training))

    def _call_symbolic(self, inputs):
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not all(isinstance(t, KerasTensor) for t in tensors):
            raise TypeError(f"layer {self.name!r} received a mix of symbolic tensors and arrays")
        if self._defines_call() and isinstance(inputs, (list, tuple)) and not self._nodes:
            self.multi_input = True  # a call-only layer takes what its first call gave it, as in Keras
        if self.multi_input != isinstance(inputs, (list, tuple)):
            want = "a list of tensors" if self.multi_input else "one tensor"
            raise TypeError(f"layer {self.name!r} ({type(self).__name__}) takes {want}, received {inputs!r}")
        shapes = [t.shape for t in tensors] if self.multi_input else tensors[0].shape
        self._maybe_build(shapes)
        if self._defines_call() and type(self).compute_output_shape is Layer.compute_output_shape:
            out_shape = autodiff.infer_output_shape(self, shapes)
        else:
            out_shape = tuple(self.compute_output_shape(shapes))
        node = Node(self, tensors, [])
        out = KerasTensor(out_shape, self.dtype, node, 0)
        node.outputs.append(out)
        self._nodes.append(node)
        return out

    def _call_eager(self, inputs, training):
        return self._forward_checked(inputs, training)[0]

    def _forward_checked(self, inputs, training):
        """forward on arrays (built first for their shapes): (y, saved)."""
        xp = get_array_module(*(inputs if isinstance(inputs, (list, tuple)) else [inputs]))
        if isinstance(inputs, (list, tuple)):
            arrays = [xp.asarray(a) for a in inputs]
            shapes = [(None,) + tuple(a.shape[1:]) for a in arrays]
        else:
            arrays = xp.asarray(inputs)
            shapes = (None,) + tuple(arrays.shape[1:])
        self._maybe_build(shapes)
        return self.forward(arrays, training)

    # ------------------------------------------------------------------ config
    def get_config(self):
        config_ = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape_arg is not None:
            config_["input_shape"] = list(self._input_shape_arg)
        return config_

    @classmethod
    def from_config(cls, config_):
        return cls(**config_)

    @property
    def output_shape(self):
        if not self._nodes:
            raise AttributeError(f"layer {self.name!r} has not been called on a symbolic input yet")
        return self._nodes[0].outputs[0].shape

    @property
    def output(self):
        """The symbolic tensor this layer produced in the graph built last, as Keras' ``layer.output``:
        ``Model(model.inputs, model.get_layer("conv").output)`` reads intermediate activations."""
        if not self._nodes:
            raise AttributeError(f"layer {self.name!r} has not been called on a symbolic input yet")
        return self._nodes[-1].outputs[0]

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


class InputLayer(Layer):
    """The source of a graph: holds the input shape (without the batch axis)."""

    output = None  # a plain attribute here: the tensor is made once, in __init__

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, input_shape=None, **kwargs):
        if shape is None:
            shape = input_shape
        if shape is None:
            raise ValueError("InputLayer needs shape=, the shape of one sample, e.g. shape=(28, 28, 1)")
        try:
            shape = tuple(None if s is None else int(s) for s in shape)
        except TypeError:
            raise TypeError(f"shape must be a tuple of ints, received shape={shape!r}") from None
        if any(s is not None and s < 1 for s in shape):
            raise ValueError(f"shape must hold positive sizes, received shape={shape!r}")
        super().__init__(name=name or unique_name("input_layer"), dtype=dtype, **kwargs)
        self.shape, self.batch_size = shape, batch_size
        self.built = True
        node = Node(self, [], [])
        self.output = KerasTensor((batch_size,) + shape, self.dtype, node, 0)
        node.outputs.append(self.output)
        self._nodes.append(node)

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape), "batch_size": self.batch_size,
                "dtype": self.dtype}


def Input(shape=None, batch_size=None, dtype=None, name=None):
    """A symbolic input tensor for a model: ``Input((28, 28, 1))``."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name).output
