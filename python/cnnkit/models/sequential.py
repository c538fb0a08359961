"""``Sequential([...])``: a linear stack of layers, built into a graph as soon as the input shape
is known (``layers.Input(...)`` first, ``input_shape=`` on the first layer, ``model.build(shape)``,
or the first batch given to fit/predict)."""

from ..layers.base import Input, InputLayer, KerasTensor, Layer, unique_name
from . import serialization
from .model import Model

__all__ = ["Sequential"]


class Sequential(Model):
    saved_class_name = "Sequential"
    _hide_input_layers = True
    _builds_graph = True

    def __init__(self, layers=None, name=None, trainable=True):
        Model.__init__(self, name=name or unique_name("sequential"), trainable=trainable)
        self._stack = []
        self._input_tensor = None
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_build_graph()

    @classmethod
    def _default_name(cls):
        return "sequential"

    def add(self, layer, rebuild=True):
        """Append a layer (or, first, an Input tensor / InputLayer)."""
        if isinstance(layer, KerasTensor):
            if self._stack or self._input_tensor is not None or not isinstance(layer.node.layer, InputLayer):
                raise ValueError("a symbolic tensor can only start a Sequential model, and only one from "
                                 "layers.Input(...)")
            self._input_tensor = layer
        elif isinstance(layer, InputLayer):
            if self._stack or self._input_tensor is not None:
                raise ValueError("an InputLayer can only be the first layer of a Sequential model")
            self._input_tensor = layer.output
        elif isinstance(layer, Layer):
            if layer.multi_input:
                raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) takes several inputs and "
                                 "cannot be part of a Sequential model; use the functional Model")
            if any(existing is layer for existing in self._stack):
                raise ValueError(f"layer {layer.name!r} is already in this model")
            self._stack.append(layer)
        else:
            raise TypeError(f"Sequential takes cnnkit layers, received {layer!r}")
        if rebuild:
            self._graph_ready = False
            self._maybe_build_graph()

    def pop(self):
        if not self._stack:
            raise ValueError("there are no layers to pop")
        layer = self._stack.pop()
        self._graph_ready = False
        self._maybe_build_graph()
        return layer

    def _maybe_build_graph(self):
        if self._input_tensor is None and self._stack and self._stack[0]._input_shape_arg is not None:
            self._input_tensor = Input(self._stack[0]._input_shape_arg, dtype=self._stack[0].dtype)
        if self._input_tensor is None or not self._stack:
            return
        t = self._input_tensor
        for layer in self._stack:
            t = layer(t)
        self._init_graph(self._input_tensor, t)

    def build(self, input_shape=None):
        """Build for inputs of shape (batch, ...) (the batch entry is ignored)."""
        if self._graph_ready:
            return
        if input_shape is None:
            raise ValueError("build needs input_shape, e.g. model.build((None, 28, 28, 1))")
        self._build_from_data_shape(tuple(input_shape))

    def _build_from_data_shape(self, shape):
        if self._input_tensor is None:
            self._input_tensor = Input(tuple(shape[1:]))
        self._maybe_build_graph()
        self._require_graph()

    @property
    def layers(self):
        return list(self._stack)

    def get_config(self):
        """The layers in order (the InputLayer first, when the model has one)."""
        self._require_graph()
        stack = ([self._input_tensor.node.layer] if self._input_tensor is not None else []) + self._stack
        return {"name": self.name, "trainable": self.trainable,
                "layers": [serialization.serialize(layer) for layer in stack]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        layers = [serialization.deserialize(e, custom_objects) for e in config.get("layers", [])]
        layers = [layer.output if isinstance(layer, InputLayer) else layer for layer in layers]
        return cls(layers, name=config.get("name"), trainable=config.get("trainable", True))


serialization.register(Sequential)
