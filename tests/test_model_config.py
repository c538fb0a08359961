"""Keras' model-config API (issue 18): get_config/from_config and to_json/model_from_json round trips
for every layer and every zoo model with identical summaries, Model.from_config of a Sequential's
config, clone_model (same architecture, fresh weights), and input/output/input_shape/output_shape."""

import json

import numpy as np
import pytest

from cnnkit import applications, layers, models
from cnnkit.layers.base import clear_session, deferred_weights

# one instance of every public layer with the input it takes (without the batch axis)
LAYERS = [
    (lambda: layers.Dense(5, activation="relu", kernel_regularizer="l2"), (7,)),
    (lambda: layers.Activation("tanh"), (3, 4)),
    (lambda: layers.Flatten(), (3, 4, 2)),
    (lambda: layers.Reshape((4, 6)), (3, 8)),
    (lambda: layers.Conv2D(4, (3, 2), strides=2, padding="same", dilation_rate=1, use_bias=False), (9, 8, 3)),
    (lambda: layers.MaxPooling2D(3, strides=2, padding="same"), (9, 8, 3)),
    (lambda: layers.AveragePooling2D((2, 3)), (9, 8, 3)),
    (lambda: layers.StochasticPooling2D(2), (8, 8, 3)),
    (lambda: layers.GlobalAveragePooling2D(), (5, 6, 3)),
    (lambda: layers.GlobalMaxPooling2D(), (5, 6, 3)),
    (lambda: layers.Dropout(0.3, seed=4), (6,)),
    (lambda: layers.BatchNormalization(momentum=0.9, epsilon=1e-4), (5, 5, 3)),
    (lambda: layers.ReLU(max_value=6.0), (6,)),
    (lambda: layers.LeakyReLU(0.1), (6,)),
    (lambda: layers.Softmax(), (6,)),
    (lambda: layers.ELU(0.5), (6,)),
    (lambda: layers.ZeroPadding2D(((1, 2), (0, 1))), (5, 5, 2)),
    (lambda: layers.Cropping2D(1), (5, 5, 2)),
    (lambda: layers.Rescaling(1 / 255.0, offset=-0.5), (5, 5, 2)),
    (lambda: layers.Normalization(mean=[0.5, 0.1], variance=[2.0, 3.0]), (5, 5, 2)),
    (lambda: layers.RandomFlip("horizontal", seed=1), (5, 5, 2)),
    (lambda: layers.RandomTranslation(0.1, 0.2, seed=1), (6, 6, 2)),
    (lambda: layers.RandomRotation(0.1, seed=1), (6, 6, 2)),
    (lambda: layers.RandomZoom(0.1, seed=1), (6, 6, 2)),
    (lambda: layers.RandomCrop(4, 4, seed=1), (6, 6, 2)),
    (lambda: layers.RandomContrast(0.2, seed=1), (6, 6, 2)),
]
MERGES = [layers.Add, layers.Subtract, layers.Multiply, layers.Average, lambda: layers.Concatenate(axis=1)]


def _summary(model):
    lines = []
    model.summary(print_fn=lines.append)
    return lines[0]


@pytest.mark.parametrize("make,shape", LAYERS, ids=lambda v: getattr(v(), "__class__", type(v)).__name__
                         if callable(v) else str(v))
def test_every_layer_round_trips(rng, make, shape):
    clear_session()
    m = models.Sequential([layers.Input(shape), make()])
    x = rng.random((2,) + shape).astype("float32")
    for again in (models.Sequential.from_config(m.get_config()), models.Model.from_config(m.get_config()),
                  models.model_from_json(m.to_json())):
        assert type(again) is models.Sequential
        assert _summary(again) == _summary(m)
        assert again.get_config() == m.get_config()
        again.set_weights(m.get_weights())
        np.testing.assert_array_equal(again.predict(x, verbose=0), m.predict(x, verbose=0))


@pytest.mark.parametrize("merge", MERGES, ids=lambda f: getattr(f, "__name__", "Concatenate"))
def test_functional_graphs_with_merges_round_trip(rng, merge):
    clear_session()
    a, b = layers.Input((4, 3)), layers.Input((4, 3))
    h = layers.Dense(3)(a)
    m = models.Model([a, b], layers.Flatten()(merge()([h, b])))
    xs = [rng.random((2, 4, 3)).astype("float32") for _ in range(2)]
    again = models.model_from_json(m.to_json())
    assert type(again) is models.Model and _summary(again) == _summary(m)
    again.set_weights(m.get_weights())
    np.testing.assert_array_equal(again(xs), m(xs))
    assert json.loads(m.to_json())["class_name"] == "Functional"


ZOO = ["LeNet5", "AlexNet", "VGG16", "VGG19", "GoogLeNet", "ResNet18", "ResNet34", "ResNet50", "ResNet101",
       "ResNet152", "DenseNet121", "DenseNet169", "DenseNet201"]


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_model_round_trips_with_an_identical_summary(name):
    clear_session()
    with deferred_weights():  # the architecture only: nothing is drawn or allocated for the weights
        m = getattr(applications, name)()
        again = models.model_from_json(m.to_json())
        clone = models.clone_model(m)
    assert _summary(again) == _summary(m) == _summary(clone)
    assert again.count_params() == m.count_params()
    assert [layer.name for layer in again.layers] == [layer.name for layer in m.layers]


def test_clone_model_has_fresh_weights_and_custom_layers(rng):
    class Double(layers.Layer):
        def call(self, x):
            return x * 2.0

    clear_session()
    inp = layers.Input((5,))
    m = models.Model(inp, layers.Dense(3)(Double()(layers.Dense(4)(inp))))
    c = models.clone_model(m)
    assert type(c) is models.Model and [type(layer) for layer in c.layers] == [type(layer) for layer in m.layers]
    assert not np.array_equal(c.get_weights()[0], m.get_weights()[0])  # re-initialized
    c.set_weights(m.get_weights())
    x = rng.random((3, 5)).astype("float32")
    np.testing.assert_allclose(c.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)

    class Sub(models.Model):
        def call(self, x):
            return x

    with pytest.raises(NotImplementedError, match="subclassed"):
        models.clone_model(Sub())


def test_input_and_output_attributes():
    clear_session()
    m = models.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(2, 3), layers.Flatten()])
    assert m.input_shape == (None, 8, 8, 1) and m.output_shape == (None, 72)
    assert m.input is m.inputs[0] and m.output is m.outputs[0]
    a, b = layers.Input((3,)), layers.Input((4,))
    two = models.Model([a, b], [layers.Dense(2)(a), layers.Dense(5)(b)])
    assert two.input_shape == [(None, 3), (None, 4)] and two.output_shape == [(None, 2), (None, 5)]
    unbuilt = models.Sequential([layers.Dense(3)])
    with pytest.raises(AttributeError, match="not been built"):
        unbuilt.output_shape
    with pytest.raises(ValueError, match="not valid JSON"):
        models.model_from_json("{'class_name': 1")
    with pytest.raises(ValueError, match="Lambda"):
        models.model_from_json(models.Sequential([layers.Input((2,)), layers.Lambda(lambda t: t)]).to_json())


def test_a_config_declaring_huge_weights_is_refused_before_allocating(tmp_path):
    """model_from_json builds the architecture without weights first (deferred_weights): a config
    that declares more weight memory than the machine has is refused at once."""
    import resource
    import time

    clear_session()
    small = models.Sequential([layers.Input((4,)), layers.Dense(3)])
    entry = json.loads(small.to_json())
    for layer in entry["config"]["layers"]:
        if layer["class_name"] == "Dense":
            layer["config"]["units"] = 10**12
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ValueError, match="bytes of weights"):
        models.model_from_json(json.dumps(entry))
    assert time.perf_counter() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: under 200 MiB
