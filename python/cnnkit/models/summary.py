"""Keras-style ``model.summary()`` text: one row per layer (name (type), output shape, parameters,
and for graphs that are not a plain chain, the layers it is connected to), then the totals."""

from ..layers.base import format_shape
from ..utils.receptive_field import receptive_field


def _size(n_bytes):
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024


def _param_bytes(variables):
    return sum(v.size * v.value.dtype.itemsize for v in variables)


def _rows(model):
    """(name (type), output shape, params, connected to) per layer call of the graph."""
    rows, chain = [], True
    producer = {id(t): t.node.layer.name for t in model.inputs}
    prev = None
    for t in model.inputs:
        if not model._hide_input_layers:
            rows.append([f"{t.node.layer.name} (InputLayer)", format_shape(t.shape), "0", ""])
        prev = id(t)
    for node in model._graph_nodes:
        layer = node.layer
        srcs = [producer[id(t)] for t in node.inputs]
        if len(node.inputs) != 1 or id(node.inputs[0]) != prev:
            chain = False
        out = node.outputs[0]
        producer[id(out)] = layer.name
        prev = id(out)
        params = sum(v.size for v in layer.weights)
        rows.append([f"{layer.name} ({type(layer).__name__})", format_shape(out.shape), f"{params:,}",
                     ", ".join(srcs)])
    return rows, chain


def _rf_cells(model):
    """'receptive field (jump)' per summary row, e.g. '212 (32)', or '7x5 (2x1)' when not square."""
    def pair(p):
        return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"

    rf = receptive_field(model)
    cells = [f"{pair(r.receptive_field)} ({pair(r.jump)})" for r in rf]
    return cells if not model._hide_input_layers else cells[len(model.inputs):]


def summary_text(model, line_length=None, show_trainable=False, receptive_field=False):
    model._require_graph()
    rows, chain = _rows(model)
    headers = ["Layer (type)", "Output Shape", "Param #"]
    if not chain:
        headers.append("Connected to")
    if show_trainable:
        headers.append("Trainable")
        by_name = {layer.name: layer for layer in model._layers}
        for r in rows:
            layer = by_name.get(r[0].split(" (")[0])
            r.append("Y" if layer is None or layer.trainable else "N")
    else:
        for r in rows:
            r.append("")
    if receptive_field:
        headers.append("RF (jump)")
        for r, cell in zip(rows, _rf_cells(model)):
            r.append(cell)
    keep = [0, 1, 2] + ([3] if not chain else []) + ([4] if show_trainable else []) + ([5] if receptive_field else [])
    table = [[r[i] for i in keep] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in table]) + 3 for i, h in enumerate(headers)]
    total = sum(widths)
    if line_length and line_length > total:
        widths[0] += line_length - total
        total = line_length

    def line(cells):
        return " " + "".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    weights = model.weights
    trainable = model.trainable_weights
    trainable_ids = {id(v) for v in trainable}
    non_trainable = [v for v in weights if id(v) not in trainable_ids]
    out = [f'Model: "{model.name}"', "_" * total, line(headers), "=" * total]
    for i, r in enumerate(table):
        out.append(line(r))
        out.append("" if i < len(table) - 1 else "=" * total)
    if not table:
        out.append("=" * total)

    def count(vs):
        return f"{sum(v.size for v in vs):,} ({_size(_param_bytes(vs))})"

    out += [f"Total params: {count(weights)}", f"Trainable params: {count(trainable)}",
            f"Non-trainable params: {count(non_trainable)}", "_" * total]
    return "\n".join(out)
