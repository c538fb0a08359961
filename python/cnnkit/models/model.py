"""``Model(inputs, outputs)``: a graph of layer calls, run forward in topological order and
backward in reverse, with gradients summed where a tensor feeds several layers.

The plan is built once from the symbolic tensors: one step per layer call, each naming the
tensors it reads and writes and when they can be freed. Backward skips every step that has no
trainable weight upstream, and asks layers for dx only where something upstream needs it, so the
first convolution never computes its input gradient.
"""

import json

from .. import device as _device
from ..ops import autodiff
from ..layers.base import InputLayer, KerasTensor, Layer, format_shape, unique_name
from . import saving, serialization
from .summary import summary_text
from .training import Trainer

__all__ = ["Model"]


class _Step:
    __slots__ = ("layer", "inputs", "output", "multi", "free")

    def __init__(self, layer, inputs, output, multi):
        self.layer, self.inputs, self.output, self.multi, self.free = layer, inputs, output, multi, ()


def _as_list(x, what):
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    for t in items:
        if not isinstance(t, KerasTensor):
            raise TypeError(f"Model {what} must be symbolic tensors from cnnkit.layers.Input(...) and layer "
                            f"calls, received {t!r}")
    return items


class Model(Trainer, Layer):
    """A functional model: ``Model(inputs, outputs, name=None)``; it is also a Layer, so a model can
    be called inside another model."""

    saved_class_name = "Functional"  # Keras' name for a graph of layer calls; model files say it
    _builds_graph = False  # Sequential: a graph built from its stack

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        Layer.__init__(self, name=name or unique_name(self._default_name()), trainable=trainable, **kwargs)
        Trainer.__init__(self)
        self._graph_ready = False
        if inputs is None and outputs is None and type(self) is Model:
            raise TypeError("Model needs inputs and outputs: Model(inputs, outputs); or subclass Model with "
                            "layers as attributes and a call() method (or your own train_step)")
        # a subclassed model (Keras' model subclassing): its layers are its attributes, its forward
        # pass is its call() (recorded, cnnkit.ops.autodiff), or it trains through its own train_step
        self._subclassed = inputs is None and outputs is None and not type(self)._builds_graph
        if inputs is not None or outputs is not None:
            self._init_graph(inputs, outputs)

    @classmethod
    def _default_name(cls):
        return "functional"

    # ------------------------------------------------------------------ graph
    def _init_graph(self, inputs, outputs):
        self.inputs = _as_list(inputs, "inputs")
        self.outputs = _as_list(outputs, "outputs")
        self._single_input = not isinstance(inputs, (list, tuple))
        self._single_output = not isinstance(outputs, (list, tuple))
        for t in self.inputs:
            if not isinstance(t.node.layer, InputLayer):
                raise ValueError(f"model inputs must come straight from cnnkit.layers.Input(...), received a "
                                 f"tensor produced by layer {t.node.layer.name!r}")
        input_ids = {id(t) for t in self.inputs}
        # Depth-first post-order, with an explicit stack: a chain of thousands of layers is an
        # ordinary model, and a recursive walk would hit Python's recursion limit on it.
        order, done, on_path = [], set(), set()
        for t in self.outputs:
            if id(t) in input_ids or id(t.node) in done:
                continue
            stack = [(t.node, iter(t.node.inputs))]
            on_path.add(id(t.node))
            while stack:
                node, pending = stack[-1]
                for t_in in pending:
                    if id(t_in) in input_ids or id(t_in.node) in done:
                        continue
                    if isinstance(t_in.node.layer, InputLayer):
                        raise ValueError(f"graph disconnected: layer {node.layer.name!r} reads input "
                                         f"{t_in.node.layer.name!r}, which is not among the model's inputs")
                    if id(t_in.node) in on_path:
                        raise ValueError("the layer graph has a cycle")
                    on_path.add(id(t_in.node))
                    stack.append((t_in.node, iter(t_in.node.inputs)))
                    break
                else:
                    stack.pop()
                    on_path.discard(id(node))
                    done.add(id(node))
                    order.append(node)
        self._graph_nodes = order
        layers = [t.node.layer for t in self.inputs]
        for node in order:
            if node.layer not in layers:
                layers.append(node.layer)
        self._layers = layers
        self._plan = [_Step(n.layer, [id(t) for t in n.inputs], id(n.outputs[0]), n.layer.multi_input)
                      for n in order]
        keep = {id(t) for t in self.outputs}
        last_use = {}
        for i, step in enumerate(self._plan):
            for tid in step.inputs:
                last_use[tid] = i
        for i, step in enumerate(self._plan):
            step.free = tuple({tid for tid in step.inputs if last_use[tid] == i and tid not in keep})
        names = [layer.name for layer in layers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"layer names must be unique within a model, these repeat: {sorted(dup)}")
        self.built = True
        self._graph_ready = True

    @property
    def layers(self):
        if self._subclassed:
            return self._tracked_layers()
        return [layer for layer in self._layers if not isinstance(layer, InputLayer)] if self._hide_input_layers \
            else list(self._layers)

    _hide_input_layers = False

    def get_layer(self, name=None, index=None):
        """A layer by name or by index into ``model.layers``."""
        layers = self.layers
        if index is not None:
            if not isinstance(index, int) or not -len(layers) <= index < len(layers):
                raise ValueError(f"index must be an int in [0, {len(layers)}), received index={index!r}")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers: {[layer.name for layer in layers]}")

    def _require_graph(self):
        if not self._graph_ready and not self._subclassed:
            raise ValueError(f"model {self.name!r} is not built yet: give it an input shape (layers.Input(...) "
                             "as the first layer, input_shape= on the first layer, or model.build(shape)), "
                             "or call fit/predict on data first")

    # ------------------------------------------------------------------ running
    def _run(self, xs, training, fuse_output=False):
        """Forward pass. Returns (outputs, saved per step). With fuse_output the last step (which
        must produce the single output and end in a softmax) returns its logits instead."""
        if self._subclassed:
            y, saved = Layer.forward(self, xs[0] if len(xs) == 1 else list(xs), training)
            return [y], saved
        values = {id(t): a for t, a in zip(self.inputs, xs)}
        saved_all = []
        last = len(self._plan) - 1
        for i, step in enumerate(self._plan):
            args = [values[tid] for tid in step.inputs]
            arg = args if step.multi else args[0]
            if fuse_output and i == last:
                y, saved = step.layer.forward_logits(arg, training)
            else:
                y, saved = step.layer.forward(arg, training)
            values[step.output] = y
            saved_all.append(saved)
            for tid in step.free:
                del values[tid]
        return [values[id(t)] for t in self.outputs], saved_all

    def _needs_grad(self, input_needs):
        """Per tensor id: whether its gradient is needed (a trainable weight is upstream, or the
        model input itself needs one)."""
        need = {id(t): bool(n) for t, n in zip(self.inputs, input_needs)}
        for step in self._plan:
            need[step.output] = bool(step.layer.trainable_weights) or any(need[t] for t in step.inputs)
        return need

    def _backward(self, saved_all, douts, input_needs=None, fuse_output=False):
        """Backward pass from d loss / d outputs; fills Variable.grad; returns the input gradients."""
        if self._subclassed:
            want = bool(input_needs and input_needs[0])
            return [Layer.backward(self, saved_all, douts[0], want)]
        if input_needs is None:
            input_needs = [False] * len(self.inputs)
        need = self._needs_grad(input_needs)
        grads = {}
        for t, d in zip(self.outputs, douts):
            if d is not None:
                grads[id(t)] = d
        last = len(self._plan) - 1
        for i in range(last, -1, -1):
            step = self._plan[i]
            dy = grads.pop(step.output, None)
            if dy is None or not need[step.output]:
                continue
            wants = [need[t] for t in step.inputs]
            if fuse_output and i == last:
                dx = step.layer.backward_logits(saved_all[i], dy, wants[0])
            else:
                dx = step.layer.backward(saved_all[i], dy, wants if step.multi else wants[0])
            saved_all[i] = None  # free what the step kept as soon as it is used
            dxs = dx if step.multi else [dx]
            for tid, g, w in zip(step.inputs, dxs, wants):
                if g is None or not w:
                    continue
                grads[tid] = grads[tid] + g if tid in grads else g
        return [grads.get(id(t)) for t in self.inputs]

    # the Layer interface, so that a model can be a layer of another model
    def compute_output_shape(self, input_shape):
        if self._subclassed:
            return autodiff.infer_output_shape(self, input_shape)
        self._require_graph()
        return self.outputs[0].shape if self._single_output else [t.shape for t in self.outputs]

    def _check_input_shape(self, input_shape):
        if self._subclassed:
            return
        shapes = [input_shape] if self._single_input else list(input_shape)
        for t, s in zip(self.inputs, shapes):
            if tuple(s[1:]) != tuple(t.shape[1:]):
                raise ValueError(f"model {self.name!r} expects input shape {format_shape(t.shape)}, received "
                                 f"{format_shape(s)}")

    @property
    def multi_input(self):
        return False if self._subclassed else not self._single_input

    def forward(self, x, training=False):
        if self._subclassed:
            return Layer.forward(self, x, training)
        outs, saved = self._run([x] if self._single_input else list(x), training)
        return (outs[0] if self._single_output else outs), saved

    def backward(self, saved, dy, need_dx=True):
        if self._subclassed:
            return Layer.backward(self, saved, dy, need_dx)
        needs = [need_dx] if self._single_input else list(need_dx)
        dxs = self._backward(saved, [dy] if self._single_output else list(dy), needs)
        return dxs[0] if self._single_input else dxs

    def __call__(self, inputs, training=None):
        self._require_graph()
        return Layer.__call__(self, inputs, training)

    # ------------------------------------------------------------------ weights
    def _gather(self, kind):
        """Every layer's ``kind`` weights (weights, trainable_weights) in layer order, each once
        (layers can share variables)."""
        out, seen = [], set()
        for layer in (self._tracked_layers() if self._subclassed else self._layers):
            for v in getattr(layer, kind):
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    @property
    def weights(self):
        return self._gather("weights")

    @property
    def _weights(self):  # Layer's storage, seen through the layers
        return self.weights if self._graph_ready or self._subclassed else []

    @_weights.setter
    def _weights(self, value):
        pass

    @property
    def trainable_weights(self):
        return self._gather("trainable_weights") if self.trainable else []

    @property
    def non_trainable_weights(self):
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable]

    def count_params(self):
        self._require_graph()
        return sum(v.size for v in self.weights)

    def get_weights(self):
        """Every weight as a NumPy array, layer by layer in creation order."""
        self._require_graph()
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights):
        self._require_graph()
        Layer.set_weights(self, weights)

    def _move(self, device):
        self.device = device
        for layer in (self._tracked_layers() if self._subclassed else self._layers):
            layer._move(device)

    def to(self, device):
        """Move the weights (and the optimizer's state) to "cpu" or "gpu"; returns the model."""
        device = _device.require(device)
        self._move(device)
        if self.optimizer is not None and self.optimizer.built:
            self.optimizer._move_slots(lambda a: _device.to_device(a, device))
        return self

    def _model_device(self):
        for v in self.weights:
            return _device.device_of(v.value)
        return self.device or _device.get_device()

    # ------------------------------------------------------------------ inspection and saving
    def summary(self, line_length=None, print_fn=None, expand_nested=False, show_trainable=False,
                receptive_field=False):
        """Print a Keras-style table: layer (type), output shape, parameter count (and, for graphs
        with branches, what each layer is connected to), then the parameter totals. With
        receptive_field=True a column gives each layer's receptive field and jump in input pixels
        (cnnkit.utils.receptive_field)."""
        text = summary_text(self, line_length=line_length, show_trainable=show_trainable,
                            receptive_field=receptive_field) if not self._subclassed else self._subclassed_summary()
        (print_fn or print)(text)

    def _subclassed_summary(self):
        """A subclassed model's layers (its attributes) and their parameter counts; the output
        shapes are those of the model's call, unknown here."""
        rows = [(f"{layer.name} ({type(layer).__name__})", f"{layer.count_params() if layer.built else 0:,}")
                for layer in self._tracked_layers()]
        width = max([len(r[0]) for r in rows] + [24]) + 2
        lines = [f'Model: "{self.name}" (subclassed)', "_" * (width + 12),
                 f"{'Layer (type)':<{width}}Param #", "=" * (width + 12)]
        lines += [f"{a:<{width}}{b}" for a, b in rows]
        total = sum(v.size for v in self.weights)
        trainable = sum(v.size for v in self.trainable_weights)
        lines += ["=" * (width + 12), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}", "_" * (width + 12)]
        return "\n".join(lines)

    def get_config(self):
        """The graph as Keras writes it: every layer's config with the calls feeding it
        (``inbound_nodes``: [layer name, call index, tensor index] per input), and the model's inputs
        and outputs in the same form."""
        if self._subclassed:
            raise NotImplementedError(f"model {self.name!r} is a subclassed model: its architecture is Python code, "
                                      "which cnnkit does not write to files. Save its weights with "
                                      "save_weights(...) and rebuild it in code")
        self._require_graph()
        node_index = {}  # node -> index among the calls of its layer within this model
        per_layer = {}
        for t in self.inputs:
            node_index[id(t.node)] = 0
        for node in self._graph_nodes:
            i = per_layer.get(id(node.layer), 0)
            per_layer[id(node.layer)] = i + 1
            node_index[id(node)] = i

        def ref(t):
            return [t.node.layer.name, node_index[id(t.node)], t.index]

        entries = []
        for layer in self._layers:
            entry = serialization.serialize(layer)
            entry["name"] = layer.name
            entry["inbound_nodes"] = [[ref(t) for t in node.inputs] for node in self._graph_nodes
                                      if node.layer is layer]
            entries.append(entry)
        return {"name": self.name, "trainable": self.trainable, "layers": entries,
                "input_layers": [ref(t) for t in self.inputs], "output_layers": [ref(t) for t in self.outputs],
                "single_input": self._single_input, "single_output": self._single_output}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """The model ``get_config`` described, its layers rebuilt and called again in graph order
        (a Sequential's config gives a Sequential)."""
        if isinstance(config, dict) and "layers" in config and "input_layers" not in config and \
                not getattr(cls, "_builds_graph", False):
            return serialization.get_class("Sequential").from_config(config, custom_objects)
        try:
            created = {}
            for e in config["layers"]:
                created[e["name"]] = (serialization.deserialize(e, custom_objects), e)
            tensors = {}  # (layer name, node index, tensor index) -> tensor
            for name, (layer, _) in created.items():
                if isinstance(layer, InputLayer):
                    tensors[(name, 0, 0)] = layer.output
            pending = [(name, i, refs) for name, (layer, e) in created.items()
                       for i, refs in enumerate(e.get("inbound_nodes", []))]
            while pending:
                rest = []
                for name, i, refs in pending:
                    keys = [tuple(r) for r in refs]
                    if all(k in tensors for k in keys):
                        layer = created[name][0]
                        ins = [tensors[k] for k in keys]
                        tensors[(name, i, 0)] = layer(ins if layer.multi_input else ins[0])
                    else:
                        rest.append((name, i, refs))
                if len(rest) == len(pending):
                    raise ValueError("the saved graph references layers that are not in the file")
                pending = rest
            inputs = [tensors[tuple(r)] for r in config["input_layers"]]
            outputs = [tensors[tuple(r)] for r in config["output_layers"]]
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"malformed functional model config ({exc.__class__.__name__}: {exc})") from exc
        model = cls(inputs[0] if config.get("single_input", True) else inputs,
                    outputs[0] if config.get("single_output", True) else outputs, name=config.get("name"))
        model.trainable = config.get("trainable", True)
        return model

    # ------------------------------------------------------------------ Keras' model attributes
    def _graph_attr(self, what):
        if not self._graph_ready:
            raise AttributeError(f"model {self.name!r} has no {what} yet: it has not been built (give it an input "
                                 "shape, or call it on data first)")

    @property
    def input(self):
        """The model's input tensor (a list for several), as Keras' ``model.input``."""
        self._graph_attr("input")
        return self.inputs[0] if self._single_input else list(self.inputs)

    @property
    def output(self):
        """The model's output tensor (a list for several), as Keras' ``model.output``."""
        if not self._graph_ready and self._nodes:
            return Layer.output.fget(self)
        self._graph_attr("output")
        return self.outputs[0] if self._single_output else list(self.outputs)

    @property
    def input_shape(self):
        self._graph_attr("input shape")
        return self.inputs[0].shape if self._single_input else [t.shape for t in self.inputs]

    @property
    def output_shape(self):
        self._graph_attr("output shape")
        return self.outputs[0].shape if self._single_output else [t.shape for t in self.outputs]

    def to_json(self, **kwargs):
        """The architecture as a JSON string, as Keras' ``model.to_json()``; read it back with
        ``cnnkit.models.model_from_json``."""
        return json.dumps(serialization.serialize(self), **kwargs)

    def save(self, filepath, overwrite=True):
        """Write architecture, weights, compile arguments and optimizer state to one ``.cnnkit`` file
        (a zip of JSON and .npy members; no pickle)."""
        if self._subclassed:
            self.get_config()  # raises: a subclassed model's architecture is code
        saving.save_model(self, filepath, overwrite=overwrite)

    def _weight_layers(self):
        """The layers whose weights a weights file lists, in order."""
        return self._tracked_layers() if self._subclassed else self._layers

    def save_weights(self, filepath, overwrite=True):
        """Write the weights alone (a zip of .npy members and a JSON manifest)."""
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath):
        saving.load_weights(self, filepath)


serialization.register(Model, "Model")
