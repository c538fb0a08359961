"""``plot_model``: a model's layer graph drawn as a PNG with matplotlib (no graphviz or pydot).

Layout (Sugiyama's layered drawing): each layer call sits on the rank of its longest path from an
input (one row per rank, top to bottom, or left to right with ``rankdir="LR"``); an edge that spans
several ranks (a residual shortcut, an inception branch that skips a row) gets a waypoint on each
rank in between, which takes a slot of its own, so it runs in its own lane and never through a box;
within a rank, boxes and waypoints are ordered by the mean position of their neighbours (barycenter
sweeps down and up), so branches stay beside each other and merges sit under their inputs. Drawn on
a ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot.
"""

import os

__all__ = ["plot_model"]

_BOX_W, _BOX_H = 3.3, 0.62  # inches, before scaling by the longest label
_GAP_X, _GAP_Y = 0.5, 0.42


def _figure_class():
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    except ImportError:
        raise ImportError("plot_model draws with matplotlib: pip install 'cnnkit[plot]'") from None
    return Figure, FancyArrowPatch, FancyBboxPatch


def _shape(shape):
    if isinstance(shape, list):
        return "[" + ", ".join(_shape(s) for s in shape) + "]"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _graph(model):
    """(nodes, edges): one node per layer call (inputs included) with its label parts, and
    (source index, target index) edges, in the model's topological order."""
    if not getattr(model, "_graph_ready", False):
        raise ValueError(f"plot_model needs a built graph: model {model.name!r} is "
                         + ("a subclassed model (its graph is Python code)" if getattr(model, "_subclassed", False)
                            else "not built yet (give it an input shape)"))
    index, nodes, edges = {}, [], []
    for t in model.inputs:
        index[id(t)] = len(nodes)
        nodes.append({"layer": t.node.layer, "inputs": [], "output": t.shape})
    for node in model._graph_nodes:
        i = len(nodes)
        for t in node.outputs:
            index[id(t)] = i
        shapes = [t.shape for t in node.inputs]
        nodes.append({"layer": node.layer, "inputs": shapes, "output": node.outputs[0].shape})
        for t in node.inputs:
            edges.append((index[id(t)], i))
    return nodes, edges


def _layout(n, edges):
    """Ranks and in-rank positions for the n nodes and for the waypoints of long edges (Sugiyama's
    layered layout): an edge spanning several ranks gets one waypoint per rank in between, which
    takes a slot of its own, so the edge runs in its own lane instead of through boxes. Returns
    (rank, pos, routes): rank/pos per vertex (nodes first, then waypoints), and per edge the list of
    vertices it passes through."""
    parents = [[] for _ in range(n)]
    for a, b in edges:
        parents[b].append(a)
    rank = [0] * n
    for i in range(n):  # nodes come in topological order
        rank[i] = max((rank[p] + 1 for p in parents[i]), default=0)
    ups = [[] for _ in range(n)]
    routes = []
    for a, b in edges:  # the expanded graph: waypoints on long edges
        route, prev = [a], a
        for r in range(rank[a] + 1, rank[b]):
            rank.append(r)
            ups.append([prev])
            prev = len(rank) - 1
            route.append(prev)
        route.append(b)
        ups[b].append(prev)
        routes.append(route)
    total = len(rank)
    downs = [[] for _ in range(total)]
    for v in range(total):
        for u in ups[v]:
            downs[u].append(v)
    rows = {}
    for v in range(total):
        rows.setdefault(rank[v], []).append(v)
    pos = {}
    for r, row in rows.items():
        for k, v in enumerate(row):
            pos[v] = k - (len(row) - 1) / 2
    for sweep in range(6):  # barycenter ordering: down from the parents, then up from the children
        order = sorted(rows) if sweep % 2 == 0 else sorted(rows, reverse=True)
        near = ups if sweep % 2 == 0 else downs
        for r in order:
            row = rows[r]
            key = {v: (sum(pos[u] for u in near[v]) / len(near[v]) if near[v] else pos[v]) for v in row}
            row.sort(key=lambda v: (key[v], pos[v]))
            for k, v in enumerate(row):
                pos[v] = k - (len(row) - 1) / 2
    return rank, pos, routes


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=True,
               rankdir="TB", expand_nested=False, dpi=100, show_layer_activations=False, show_trainable=False):
    """Draw the model's graph of layer calls into ``to_file`` (PNG), as ``keras.utils.plot_model``:
    a box per layer call with its name and class, and with ``show_shapes`` its input and output
    shapes (``show_dtype``, ``show_layer_activations``, ``show_trainable`` add those). ``rankdir``
    "TB" (top to bottom) or "LR". Returns the path written. A nested model is one box
    (``expand_nested`` is accepted for Keras' signature and not supported)."""
    if rankdir not in ("TB", "LR"):
        raise ValueError(f'rankdir must be "TB" or "LR", received rankdir={rankdir!r}')
    if expand_nested:
        raise NotImplementedError("plot_model: expand_nested=True is not supported; a nested model is drawn as one box")
    Figure, FancyArrowPatch, FancyBboxPatch = _figure_class()
    nodes, edges = _graph(model)
    labels = []
    for node in nodes:
        layer = node["layer"]
        head = f"{layer.name} ({type(layer).__name__})" if show_layer_names else type(layer).__name__
        lines = [head]
        if show_layer_activations and getattr(getattr(layer, "activation", None), "name", None):
            lines[0] += f"  activation: {layer.activation.name}"
        if show_shapes:
            ins = node["inputs"]
            shown_in = _shape(ins[0]) if len(ins) == 1 else _shape(ins) if ins else _shape(node["output"])
            lines.append(f"in: {shown_in}   out: {_shape(node['output'])}")
        if show_dtype:
            lines.append(f"dtype: {layer.dtype}")
        if show_trainable:
            lines.append(f"trainable: {bool(layer.trainable)}")
        labels.append(lines)
    rank, pos, routes = _layout(len(nodes), edges)
    longest = max(len(line) for lines in labels for line in lines)
    box_w = max(_BOX_W, 0.075 * longest + 0.3)
    box_h = _BOX_H * (0.55 + 0.45 * max(len(lines) for lines in labels))
    ranks = max(rank) + 1
    low, high = min(pos.values()), max(pos.values())
    step_main, step_side = box_h + _GAP_Y, box_w + _GAP_X
    if rankdir == "LR":
        step_main, step_side = box_w + _GAP_X, box_h + _GAP_Y
    extent_main, extent_side = ranks * step_main, (high - low + 1) * step_side
    width, height = (extent_side, extent_main) if rankdir == "TB" else (extent_main, extent_side)
    # matplotlib refuses figures past 2^16 pixels a side: lower the resolution of a very deep model
    dpi = max(10, min(dpi, int(60000 / max(width, height))))
    fig = Figure(figsize=(width, height), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")

    def center(v):
        main = (rank[v] + 0.5) * step_main
        side = (pos[v] - low + 0.5) * step_side
        return (side, height - main) if rankdir == "TB" else (main, height - side)

    half_w, half_h = box_w / 2, box_h / 2

    def leave(v):  # where an edge leaves a box or a waypoint's row: its bottom (right)
        x, y = center(v)
        return (x, y - half_h) if rankdir == "TB" else (x + half_w, y)

    def enter(v):  # where an edge enters a box or a waypoint's row: its top (left)
        x, y = center(v)
        return (x, y + half_h) if rankdir == "TB" else (x - half_w, y)

    for route in routes:
        # through each waypoint's row straight down its lane, so the slanted parts stay in the gaps
        points = [leave(route[0])] + [p for v in route[1:-1] for p in (enter(v), leave(v))] + [enter(route[-1])]
        if len(points) > 2:
            xs, ys = zip(*points[:-1])
            ax.plot(xs, ys, color="#555555", lw=0.9, solid_capstyle="round")
        ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=10, lw=0.9,
                                     color="#555555", shrinkA=0, shrinkB=0))
    for i, lines in enumerate(labels):
        x, y = center(i)
        is_input = not nodes[i]["inputs"]
        ax.add_patch(FancyBboxPatch((x - half_w, y - half_h), box_w, box_h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    linewidth=0.9, edgecolor="#333333",
                                    facecolor="#dfeaf7" if is_input else "#f4f4f4"))
        ax.text(x, y, "\n".join(lines), ha="center", va="center", fontsize=8, family="monospace",
                linespacing=1.4)
    path = os.fspath(to_file)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, format="png")
    return path
