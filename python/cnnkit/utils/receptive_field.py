"""Receptive-field arithmetic of a model (Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019), per layer and per spatial axis:

- output size ``n``;
- jump ``j`` (effective stride): the distance in input pixels between neighbouring output cells,
  ``j_out = j_in * stride``;
- receptive field ``r``: the input pixels one output cell depends on,
  ``r_out = r_in + (k_eff - 1) * j_in`` with ``k_eff = (k - 1) * dilation + 1``;
- start: the input coordinate (pixel centres are 0, 1, ...) of the centre of the first output cell's
  field, ``start_out = start_in + ((k_eff - 1) / 2 - pad_before) * j_in``; "same" padding puts
  ``pad_before = total // 2`` (TensorFlow's rule).

r is not clipped to the image: it counts padding too, as in the paper. Global pooling and Flatten act
as one window over the whole map (so the next Dense layer sees every input pixel). Where branches
merge (Add, Concatenate, ...), the field is the union of the branches' fields; the branches must
have the same jump. Layers that act per pixel (activations, BatchNormalization, Dropout, Dense on
a feature map, ...) leave the geometry unchanged.
"""

from collections import namedtuple

__all__ = ["receptive_field", "ReceptiveField"]

ReceptiveField = namedtuple("ReceptiveField", ["layer", "output_size", "jump", "receptive_field", "start"])
ReceptiveField.__doc__ = ("One layer call: its name and, per spatial axis (height, width), output size, jump, "
                          "receptive field size and the centre of the first output cell's field.")

_POINTWISE = {"BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Dropout", "Rescaling",
              "Normalization", "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom",
              "RandomContrast", "Dense"}
_MERGE = {"Add", "Subtract", "Multiply", "Average", "Concatenate"}
_GLOBAL = {"GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten"}


def _window(axis, k, s, d, padding):
    n, j, r, start = axis
    eff = (k - 1) * d + 1
    if padding == "same":
        out = -(-n // s)
        before = max((out - 1) * s + eff - n, 0) // 2
    else:
        out, before = (n - eff) // s + 1, 0
    return out, j * s, r + (eff - 1) * j, start + ((eff - 1) / 2 - before) * j


def _union(axes):
    if len({a[1] for a in axes}) != 1:
        raise ValueError(f"branches with different jumps {[a[1] for a in axes]} are merged: the receptive field "
                         "is not the same for every output cell")
    lo = min(a[3] - (a[2] - 1) / 2 for a in axes)
    hi = max(a[3] + (a[2] - 1) / 2 for a in axes)
    return axes[0][0], axes[0][1], int(round(hi - lo)) + 1, (lo + hi) / 2


def _step(layer, ins):
    """The geometry (per axis) of layer's output from its inputs' geometry."""
    kind = type(layer).__name__
    if hasattr(layer, "_graph_nodes"):  # a nested model: follow its own graph
        return _walk(layer, ins)[1][-1]
    if kind in _MERGE:
        return tuple(_union([g[a] for g in ins]) for a in range(2))
    (g,) = ins
    if kind in _POINTWISE:
        return g
    if kind == "Conv2D":
        return tuple(_window(g[a], layer.kernel_size[a], layer.strides[a], layer.dilation_rate[a], layer.padding)
                     for a in range(2))
    if kind in ("MaxPooling2D", "AveragePooling2D", "StochasticPooling2D"):
        return tuple(_window(g[a], layer.pool_size[a], layer.strides[a], 1, layer.padding) for a in range(2))
    if kind in ("ZeroPadding2D", "Cropping2D"):
        sign = 1 if kind == "ZeroPadding2D" else -1
        borders = layer.padding if sign == 1 else layer.cropping
        return tuple((n + sign * (b[0] + b[1]), j, r, start - sign * b[0] * j)
                     for (n, j, r, start), b in zip(g, borders))
    if kind in _GLOBAL:
        return tuple(_window(a, a[0], a[0], 1, "valid") for a in g)
    raise ValueError(f"receptive_field does not know the geometry of layer {layer.name!r} ({kind}); it handles "
                     "Conv2D, the pooling layers, ZeroPadding2D, Cropping2D, Flatten, merges, nested models "
                     "and per-pixel layers")


def _walk(model, input_geoms):
    geom = {id(t): g for t, g in zip(model.inputs, input_geoms)}
    rows = []
    for node in model._graph_nodes:
        g = _step(node.layer, [geom[id(t)] for t in node.inputs])
        geom[id(node.outputs[0])] = g
        rows.append(g)
    return geom, rows


def receptive_field(model):
    """A list of ReceptiveField rows, one for each of the model's inputs and then each layer call in
    the order ``model.summary()`` lists them: ``output_size``, ``jump`` and ``receptive_field`` are
    (height, width) pairs of ints, ``start`` a pair of floats.

    >>> rf = receptive_field(applications.VGG16())
    >>> rf[-5]   # block5_pool
    ReceptiveField(layer='block5_pool', output_size=(7, 7), jump=(32, 32), receptive_field=(212, 212), ...)
    """
    if not hasattr(model, "_require_graph"):  # a model, built or not (cnnkit.models imports this module)
        raise TypeError(f"receptive_field needs a cnnkit Model, received {type(model).__name__}")
    model._require_graph()
    starts = []
    for t in model.inputs:
        if len(t.shape) != 4 or None in t.shape[1:3]:
            raise ValueError(f"receptive_field needs images of known height and width; input "
                             f"{t.node.layer.name!r} has shape {t.shape}")
        starts.append(tuple((n, 1, 1, 0.0) for n in t.shape[1:3]))
    _, rows = _walk(model, starts)

    def row(name, g):
        return ReceptiveField(name, tuple(a[0] for a in g), tuple(a[1] for a in g), tuple(a[2] for a in g),
                              tuple(float(a[3]) for a in g))

    return ([row(t.node.layer.name, g) for t, g in zip(model.inputs, starts)]
            + [row(node.layer.name, g) for node, g in zip(model._graph_nodes, rows)])
