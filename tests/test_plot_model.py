"""utils.plot_model: the layer graph as a PNG drawn with matplotlib (no graphviz). The layout is
checked structurally (every edge runs rank by rank through its own waypoints, no two vertices share
a slot); the pictures of VGG16, ResNet50 and GoogLeNet were looked at when it was written."""

import pytest

from cnnkit import applications, layers, models, utils
from cnnkit.layers.base import clear_session, deferred_weights
from cnnkit.utils import model_plot

pytest.importorskip("matplotlib")


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _branchy():
    clear_session()
    inp = layers.Input((8, 8, 3))
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    b = layers.Conv2D(4, 1)(layers.Conv2D(4, 1)(layers.Conv2D(4, 1)(a)))
    merged = layers.Add()([a, b])  # a shortcut over three ranks
    out = layers.Dense(2)(layers.Flatten()(layers.Concatenate()([merged, layers.Conv2D(2, 1)(inp)])))
    return models.Model(inp, out)


def test_layout_gives_long_edges_their_own_lanes():
    nodes, edges = model_plot._graph(_branchy())
    rank, pos, routes = model_plot._layout(len(nodes), edges)
    assert len(routes) == len(edges)
    for route, (a, b) in zip(routes, edges):
        assert route[0] == a and route[-1] == b
        assert [rank[v] for v in route] == list(range(rank[a], rank[b] + 1))  # one rank per step
    slots = {(rank[v], pos[v]) for v in range(len(rank))}
    assert len(slots) == len(rank)  # no two vertices share a slot


@pytest.mark.parametrize("rankdir", ["TB", "LR"])
def test_png_of_a_branching_model(tmp_path, rankdir):
    path = utils.plot_model(_branchy(), tmp_path / "m.png", show_shapes=True, show_dtype=True,
                            show_layer_activations=True, show_trainable=True, rankdir=rankdir)
    w, h = _png_size(path)
    assert (h > w) if rankdir == "TB" else (w > h)


def test_zoo_models_draw_within_matplotlibs_limits(tmp_path):
    clear_session()
    with deferred_weights():
        m = applications.ResNet50()
    w, h = _png_size(utils.plot_model(m, tmp_path / "resnet50.png", show_shapes=True))
    assert max(w, h) < 2**16 and h > 10 * w


def test_what_cannot_be_drawn():
    class Sub(models.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed"):
        utils.plot_model(Sub(), "x.png")
    with pytest.raises(ValueError, match="rankdir"):
        utils.plot_model(_branchy(), "x.png", rankdir="BT")
