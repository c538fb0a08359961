"""Layers: for every layer, the output shape against compute_output_shape and a symbolic call, the
forward against a float64 formula written here (or ops.reference), dx and every weight gradient
against finite differences of the layer's own forward, need_dx=False, frozen layers and config round
trips; then BatchNormalization's modes and moving statistics, dropout statistics and seeds, Keras'
auto-names and bad arguments."""

import json

import numpy as np
import pytest

from cnnkit import _random, layers
from cnnkit.config import config
from cnnkit.layers import base
from cnnkit.ops import reference as ref
from cnnkit.ops.reference.nonlinear import dropout_mask
from cnnkit.utils import set_random_seed

from helpers import assert_close, assert_grad, assert_raises_naming, to_numpy

SEED = 1234  # the kernel seed random layers draw in the per-layer tests (next_seed is patched)


@pytest.fixture(autouse=True)
def float64():
    """Weights in float64: the finite differences and the 1e-12 forward tolerance need it."""
    old = config.floatx
    config.floatx = "float64"
    yield
    config.floatx = old


@pytest.fixture
def fixed_seed(monkeypatch):
    """Every training call of a random layer draws SEED, so its forward is a function of its input."""
    monkeypatch.setattr(_random, "next_seed", lambda: SEED)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def bn(x, mean, var, gamma=1.0, beta=0.0, eps=1e-3):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def batch_stats(x):
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    return mean, ((x - mean) ** 2).mean(axis=axes)  # biased, as Keras


def away_from_zero(x, margin=0.1):
    return np.where(x < 0, x - margin, x + margin)


def case(id, make, shapes, expected, training=False, data=None):
    """make() -> layer; shapes: the input shape (a list of them for merge layers); expected(x, w)
    with w = the layer's weights in order; data maps the standard-normal inputs when a case needs
    other values."""
    return pytest.param(make, shapes, expected, training, data, id=id)


L = layers
CASES = [
    case("dense-tanh", lambda: L.Dense(5, activation="tanh"), (3, 4), lambda x, w: np.tanh(x @ w[0] + w[1])),
    case("dense-relu", lambda: L.Dense(4, activation="relu"), (3, 5), lambda x, w: np.maximum(x @ w[0] + w[1], 0)),
    case("dense-relu-nobias", lambda: L.Dense(3, activation="relu", use_bias=False), (2, 4, 6),
         lambda x, w: np.maximum(x @ w[0], 0)),
    case("dense-rank3-nobias", lambda: L.Dense(3, use_bias=False), (2, 3, 4), lambda x, w: x @ w[0]),
    case("conv2d-same-strided-relu", lambda: L.Conv2D(4, (3, 2), strides=(2, 1), padding="same", activation="relu"),
         (2, 7, 5, 3), lambda x, w: np.maximum(ref.conv2d(x, w[0], w[1], (2, 1), "same"), 0)),
    case("conv2d-dilated", lambda: L.Conv2D(3, (2, 3), dilation_rate=(2, 1), use_bias=False), (1, 7, 6, 2),
         lambda x, w: ref.conv2d(x, w[0], None, 1, "valid", (2, 1))),
    case("maxpool-same", lambda: L.MaxPooling2D((3, 2), strides=(2, 1), padding="same"), (2, 7, 5, 3),
         lambda x, w: ref.max_pool2d(x, (3, 2), (2, 1), "same")),
    case("avgpool-same", lambda: L.AveragePooling2D((2, 3), strides=2, padding="same"), (2, 7, 5, 3),
         lambda x, w: ref.avg_pool2d(x, (2, 3), 2, "same")),
    case("avgpool-valid", lambda: L.AveragePooling2D(), (1, 5, 7, 2), lambda x, w: ref.avg_pool2d(x, 2)),
    # Inputs kept 0.1 away from 0: stochastic pooling weights a window by max(x, 0), which has a
    # kink at 0 whose slope jump is sum(a^2) / sum(a)^2 (up to ~1 here). An input within the
    # finite-difference step (1e-6) of 0 makes the central difference average the two sides, and
    # the gradient check failed once in 9 full runs (dx relative error 0.124; a value of 4e-7 in a
    # window of negatives reproduces 0.04). The kink is the layer's, not a bug; the test avoids it.
    case("stochpool-inference", lambda: L.StochasticPooling2D(), (2, 5, 4, 3),
         lambda x, w: ref.stochastic_pool2d(x, 2, None, "valid", training=False), data=away_from_zero),
    case("stochpool-training", lambda: L.StochasticPooling2D((2, 3), (1, 2), "same"), (2, 5, 4, 3),
         lambda x, w: ref.stochastic_pool2d(x, (2, 3), (1, 2), "same", training=True, seed=SEED), True,
         data=away_from_zero),
    # a window with no positive cell outputs the constant 0 and passes no gradient back
    case("stochpool-training-mixed-signs", lambda: L.StochasticPooling2D(2), (2, 4, 6, 3),
         lambda x, w: ref.stochastic_pool2d(x, 2, None, "valid", training=True, seed=SEED), True,
         data=lambda x: x - 1.0),
    case("gap", lambda: L.GlobalAveragePooling2D(), (2, 3, 5, 3), lambda x, w: x.mean(axis=(1, 2))),
    case("gap-keepdims", lambda: L.GlobalAveragePooling2D(keepdims=True), (3, 1, 5, 2),
         lambda x, w: x.mean(axis=(1, 2), keepdims=True)),
    case("gmp", lambda: L.GlobalMaxPooling2D(), (2, 3, 5, 3), lambda x, w: x.max(axis=(1, 2))),
    case("gmp-keepdims", lambda: L.GlobalMaxPooling2D(keepdims=True), (1, 4, 3, 5),
         lambda x, w: x.max(axis=(1, 2), keepdims=True)),
    case("flatten", lambda: L.Flatten(), (2, 3, 5, 2), lambda x, w: x.reshape(len(x), -1)),
    case("reshape", lambda: L.Reshape((5, -1)), (2, 3, 5, 2), lambda x, w: x.reshape(2, 5, 6)),
    case("activation-sigmoid", lambda: L.Activation("sigmoid"), (3, 7), lambda x, w: sigmoid(x)),
    case("relu", lambda: L.ReLU(), (2, 3, 5), lambda x, w: np.where(x > 0, x, 0)),
    case("relu-slope", lambda: L.ReLU(negative_slope=0.1), (3, 7), lambda x, w: np.where(x > 0, x, 0.1 * x)),
    case("relu-max-threshold", lambda: L.ReLU(max_value=0.8, negative_slope=0.2, threshold=0.3), (4, 9),
         lambda x, w: np.where(x > 0.3, np.minimum(x, 0.8), 0.2 * (x - 0.3))),
    case("relu6", lambda: L.ReLU(max_value=0.5), (4, 9), lambda x, w: np.clip(x, 0, 0.5)),
    case("leaky-relu", lambda: L.LeakyReLU(), (3, 7), lambda x, w: np.where(x > 0, x, 0.3 * x)),
    case("leaky-relu-alpha", lambda: L.LeakyReLU(alpha=0.05), (3, 7), lambda x, w: np.where(x > 0, x, 0.05 * x)),
    case("softmax", lambda: L.Softmax(), (3, 7), lambda x, w: softmax(x)),
    case("softmax-axis1", lambda: L.Softmax(axis=1), (2, 3, 5), lambda x, w: softmax(x, 1)),
    case("elu", lambda: L.ELU(alpha=0.7), (3, 7), lambda x, w: np.where(x > 0, x, 0.7 * np.expm1(x))),
    case("dropout-inference", lambda: L.Dropout(0.3), (3, 7), lambda x, w: x),
    case("dropout-training", lambda: L.Dropout(0.3), (3, 7, 5),
         lambda x, w: np.where(dropout_mask(x.shape, 0.3, SEED), x / 0.7, 0), True),
    case("bn-training", lambda: L.BatchNormalization(), (5, 3, 2, 4),
         lambda x, w: bn(x, *batch_stats(x), w[0], w[1]), True),
    case("bn-inference", lambda: L.BatchNormalization(), (7, 3), lambda x, w: bn(x, w[2], w[3], w[0], w[1])),
    case("bn-no-affine", lambda: L.BatchNormalization(center=False, scale=False), (2, 3, 4, 5),
         lambda x, w: bn(x, *batch_stats(x)), True),
    case("bn-axis3-no-center", lambda: L.BatchNormalization(axis=3, momentum=0.9, epsilon=0.01, center=False),
         (2, 3, 2, 5), lambda x, w: bn(x, *batch_stats(x), w[0], eps=0.01), True),
    case("zeropad", lambda: L.ZeroPadding2D(((1, 2), (0, 3))), (2, 3, 4, 2),
         lambda x, w: np.pad(x, ((0, 0), (1, 2), (0, 3), (0, 0)))),
    case("zeropad-int", lambda: L.ZeroPadding2D(2), (1, 2, 3, 1),
         lambda x, w: np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))),
    case("crop", lambda: L.Cropping2D(((1, 0), (2, 1))), (2, 5, 6, 3), lambda x, w: x[:, 1:, 2:5]),
    case("crop-pair", lambda: L.Cropping2D((1, 2)), (1, 4, 7, 2), lambda x, w: x[:, 1:3, 2:5]),
    case("add", lambda: L.Add(), [(2, 3, 4)] * 3, lambda xs, w: xs[0] + xs[1] + xs[2]),
    case("subtract", lambda: L.Subtract(), [(3, 5)] * 2, lambda xs, w: xs[0] - xs[1]),
    case("multiply", lambda: L.Multiply(), [(2, 3, 4)] * 3, lambda xs, w: xs[0] * xs[1] * xs[2]),
    case("average", lambda: L.Average(), [(2, 5)] * 2, lambda xs, w: (xs[0] + xs[1]) / 2),
    case("concat-last", lambda: L.Concatenate(), [(2, 3, 4), (2, 3, 1)],
         lambda xs, w: np.concatenate(xs, axis=-1)),
    case("concat-axis1", lambda: L.Concatenate(axis=1), [(2, 1, 4), (2, 3, 4), (2, 2, 4)],
         lambda xs, w: np.concatenate(xs, axis=1)),
]
PARAMS = "make, shapes, expected, training, data"


def _setup(make, shapes, rng, data=None):
    """A built layer with random weights (positive variances) and random float64 inputs."""
    layer = make()
    multi = isinstance(shapes, list)
    layer._maybe_build([(None,) + s[1:] for s in shapes] if multi else (None,) + shapes[1:])
    layer.set_weights([rng.random(v.shape) + 0.5 if "variance" in v.name else rng.standard_normal(v.shape)
                       for v in layer.weights])
    xs = [rng.standard_normal(s) for s in shapes] if multi else rng.standard_normal(shapes)
    return layer, (xs if data is None else data(xs))


def _need(xs, value):
    return [value] * len(xs) if isinstance(xs, list) else value


def _inputs(xs):
    return xs if isinstance(xs, list) else [xs]


@pytest.mark.parametrize(PARAMS, CASES)
def test_forward_matches_float64_formula(xp, rng, fixed_seed, make, shapes, expected, training, data):
    layer, xs = _setup(make, shapes, rng, data)
    want = expected(xs, layer.get_weights())
    if xp is not np:
        layer._move("gpu")
    y, _ = layer.forward([xp.asarray(x) for x in xs] if isinstance(xs, list) else xp.asarray(xs), training)
    assert_close(y, want, what=type(layer).__name__)
    shapes = [x.shape for x in _inputs(xs)]
    assert tuple(y.shape) == layer.compute_output_shape(shapes if isinstance(xs, list) else shapes[0])
    symbolic = [layers.Input(s[1:]) for s in shapes]
    out = layer(symbolic if isinstance(xs, list) else symbolic[0])
    assert out.shape == (None,) + tuple(y.shape[1:])


@pytest.mark.parametrize(PARAMS, CASES)
def test_backward_matches_finite_differences(rng, fixed_seed, make, shapes, expected, training, data):
    layer, xs = _setup(make, shapes, rng, data)
    y, saved = layer.forward(xs, training)
    dy = rng.standard_normal(y.shape)
    dxs = _inputs(layer.backward(saved, dy, _need(xs, True)))
    for i, x in enumerate(_inputs(xs)):
        def f(v, i=i):
            return layer.forward(xs[:i] + [v] + xs[i + 1:] if isinstance(xs, list) else v, training)[0]
        assert_grad(dxs[i], f, x, dy, what=f"dx[{i}]")
    for var in layer.trainable_weights:
        def g(v, var=var):
            var.value[...] = v
            return layer.forward(xs, training)[0]
        original = var.value.copy()
        assert_grad(var.grad, g, original, dy, what=var.name)
        var.value[...] = original


@pytest.mark.parametrize(PARAMS, CASES)
def test_need_dx_false_gives_none_and_the_same_weight_grads(rng, fixed_seed, make, shapes, expected, training, data):
    layer, xs = _setup(make, shapes, rng, data)
    y, saved = layer.forward(xs, training)
    dy = rng.standard_normal(y.shape)
    layer.backward(saved, dy, _need(xs, True))
    grads = [v.grad for v in layer.trainable_weights]
    for v in layer.weights:
        v.grad = None
    assert layer.backward(layer.forward(xs, training)[1], dy, _need(xs, False)) == _need(xs, None)
    for v, g in zip(layer.trainable_weights, grads):
        assert_close(v.grad, g, what=v.name)


@pytest.mark.parametrize(PARAMS, CASES)
def test_frozen_layer_fills_no_grads(rng, fixed_seed, make, shapes, expected, training, data):
    layer, xs = _setup(make, shapes, rng, data)
    layer.trainable = False
    y, saved = layer.forward(xs, training)
    dx = _inputs(layer.backward(saved, rng.standard_normal(y.shape), _need(xs, True)))
    assert all(d.shape == x.shape for d, x in zip(dx, _inputs(xs)))
    assert layer.trainable_weights == [] and all(v.grad is None for v in layer.weights)


@pytest.mark.parametrize(PARAMS, CASES)
def test_config_round_trip(rng, fixed_seed, make, shapes, expected, training, data):
    layer, xs = _setup(make, shapes, rng, data)
    config_ = json.loads(json.dumps(layer.get_config()))  # a model file holds JSON
    clone = type(layer).from_config(config_)
    assert json.loads(json.dumps(clone.get_config())) == config_
    clone._maybe_build(layer._build_shape)
    clone.set_weights(layer.get_weights())
    assert_close(clone.forward(xs, training)[0], layer.forward(xs, training)[0])
    assert type(layer) is layers.get_layer_class(type(layer).__name__)


# ----------------------------------------------------------------------------------------------
# Layer-specific behaviour


def test_merge_layers_skip_the_inputs_not_needed(rng):
    xs = [rng.standard_normal((2, 3, k)) for k in (1, 4, 2)]
    cat = layers.Concatenate()
    y, saved = cat.forward(xs)
    dy = rng.standard_normal(y.shape)
    dxs = cat.backward(saved, dy, [False, True, False])
    assert dxs[0] is None and dxs[2] is None
    assert_close(dxs[1], dy[..., 1:5])
    assert layers.Multiply().backward(xs[:1] * 2, dy[..., :1], [True, False])[1] is None


def test_batch_norm_training_updates_moving_statistics_with_keras_formula(xp, rng):
    layer = layers.BatchNormalization(momentum=0.8, epsilon=1e-2)
    x = rng.standard_normal((6, 3, 5, 4)) * 2 + 1
    layer._maybe_build((None, 3, 5, 4))
    gamma, beta, mm, mv = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4), rng.random(4) + 0.5
    layer.set_weights([gamma, beta, mm, mv])
    if xp is not np:
        layer._move("gpu")
    y = layer(xp.asarray(x), training=True)
    mean, var = batch_stats(x)
    assert_close(y, bn(x, mean, var, gamma, beta, 1e-2))
    mm1, mv1 = mm * 0.8 + mean * 0.2, mv * 0.8 + var * 0.2
    assert_close(layer.moving_mean.value, mm1)
    assert_close(layer.moving_variance.value, mv1)
    # inference normalizes with the moving statistics and leaves them alone
    assert_close(layer(xp.asarray(x), training=False), bn(x, mm1, mv1, gamma, beta, 1e-2))
    assert_close(layer.moving_mean.value, mm1)
    assert_close(layer.moving_variance.value, mv1)


def test_frozen_batch_norm_runs_in_inference_mode_during_training(rng):
    layer = layers.BatchNormalization(trainable=False)
    x = rng.standard_normal((5, 3)) * 3 + 2
    layer._maybe_build((None, 3))
    gamma, beta, mm, mv = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(3), rng.random(3) + 0.5
    layer.set_weights([gamma, beta, mm, mv])
    y, saved = layer.forward(x, training=True)
    assert_close(y, bn(x, mm, mv, gamma, beta))
    assert np.array_equal(layer.moving_mean.value, mm) and np.array_equal(layer.moving_variance.value, mv)
    dy = rng.standard_normal(x.shape)
    assert_close(layer.backward(saved, dy), dy * gamma / np.sqrt(mv + 1e-3))
    assert layer.gamma.grad is None and layer.beta.grad is None


def test_batch_norm_weights_follow_keras_order():
    layer = layers.BatchNormalization(name="bn")
    layer._maybe_build((None, 4, 4, 3))
    assert [(v.name, v.trainable) for v in layer.weights] == [
        ("bn/gamma", True), ("bn/beta", True), ("bn/moving_mean", False), ("bn/moving_variance", False)]
    assert [to_numpy(v.value).tolist() for v in layer.weights] == [[1] * 3, [0] * 3, [0] * 3, [1] * 3]
    plain = layers.BatchNormalization(center=False, scale=False)
    plain._maybe_build((None, 3))
    assert len(plain.weights) == 2 and plain.trainable_weights == []


def test_dropout_drops_a_fraction_rate_and_scales_the_rest(xp):
    layer = layers.Dropout(0.3)
    x = xp.ones((400, 500))
    y = to_numpy(layer(x, training=True))
    # 200000 draws: the dropped fraction has standard deviation sqrt(0.3 * 0.7 / 2e5) ~ 0.001
    assert abs(np.mean(y == 0) - 0.3) < 0.006
    assert np.allclose(y[y != 0], 1 / 0.7, rtol=1e-15, atol=0)
    assert layer(x, training=False) is x


def test_dropout_backward_uses_the_forward_mask(rng):
    layer = layers.Dropout(0.6)
    x = rng.random((4, 50)) + 0.1  # no zeros, so y == 0 marks exactly the dropped cells
    y, saved = layer.forward(x, training=True)
    dy = rng.standard_normal(x.shape)
    assert_close(layer.backward(saved, dy), np.where(y != 0, dy / 0.4, 0))


@pytest.mark.parametrize("make", [lambda **k: layers.Dropout(0.5, **k), lambda **k: layers.StochasticPooling2D(**k)],
                         ids=["dropout", "stochastic_pooling"])
def test_random_layers_draw_per_call_and_repeat_under_seeds(rng, make):
    x = rng.random((2, 8, 8, 3))

    def draws(layer, n=3):
        return [to_numpy(layer(x, training=True)) for _ in range(n)]

    set_random_seed(7)
    first = draws(make())
    assert not np.array_equal(first[0], first[1])  # a fresh seed each call
    set_random_seed(7)
    assert all(np.array_equal(a, b) for a, b in zip(first, draws(make())))
    # a layer seed gives its own sequence, whatever else draws from the shared generator
    seeded = draws(make(seed=3))
    _random.next_seed()
    assert all(np.array_equal(a, b) for a, b in zip(seeded, draws(make(seed=3))))
    assert not np.array_equal(seeded[0], seeded[1])
    clone = type(make()).from_config(make(seed=3).get_config())
    assert np.array_equal(draws(clone, 1)[0], seeded[0])


def test_softmax_layer_takes_the_fused_cross_entropy_path():
    assert layers.Softmax().ends_in_softmax()
    assert not layers.Softmax(axis=1).ends_in_softmax()
    assert not layers.ReLU().ends_in_softmax()
    x = np.arange(6.0).reshape(2, 3)
    assert layers.Softmax().forward_logits(x)[0] is x


def test_auto_names_follow_keras():
    base.clear_session()
    assert [layers.Conv2D(1, 1).name for _ in range(3)] == ["conv2d", "conv2d_1", "conv2d_2"]
    with pytest.raises(ValueError):
        layers.Dropout(2.0)  # a refused layer takes no name
    names = [c().name for c in (lambda: layers.Dropout(0.1), layers.BatchNormalization, layers.ReLU,
                                layers.LeakyReLU, layers.GlobalAveragePooling2D, layers.ZeroPadding2D,
                                layers.StochasticPooling2D, layers.ELU, layers.Add, layers.Concatenate)]
    assert names == ["dropout", "batch_normalization", "re_lu", "leaky_re_lu", "global_average_pooling2d",
                     "zero_padding2d", "stochastic_pooling2d", "elu", "add", "concatenate"]


@pytest.mark.parametrize("exc, name, make", [
    (ValueError, "rate=-0.1", lambda: layers.Dropout(-0.1)),
    (ValueError, "rate=1.0", lambda: layers.Dropout(1.0)),
    (ValueError, "noise_shape=(None, 1)", lambda: layers.Dropout(0.5, noise_shape=(None, 1))),
    (ValueError, "seed=-1", lambda: layers.Dropout(0.5, seed=-1)),
    (ValueError, "pool_size=0", lambda: layers.AveragePooling2D(pool_size=0)),
    (ValueError, "strides=(1, 0)", lambda: layers.MaxPooling2D(strides=(1, 0))),
    (ValueError, "padding='full'", lambda: layers.AveragePooling2D(padding="full")),
    (ValueError, "seed=1.5", lambda: layers.StochasticPooling2D(seed=1.5)),
    (TypeError, "keepdims='no'", lambda: layers.GlobalMaxPooling2D(keepdims="no")),
    (ValueError, "data_format='channels_first'", lambda: layers.GlobalAveragePooling2D("channels_first")),
    (ValueError, "momentum=1.5", lambda: layers.BatchNormalization(momentum=1.5)),
    (ValueError, "epsilon=0", lambda: layers.BatchNormalization(epsilon=0)),
    (TypeError, "axis=[1, 2]", lambda: layers.BatchNormalization(axis=[1, 2])),
    (ValueError, "max_value=-1", lambda: layers.ReLU(max_value=-1)),
    (ValueError, "negative_slope=-0.1", lambda: layers.ReLU(negative_slope=-0.1)),
    (ValueError, "threshold=-1", lambda: layers.ReLU(threshold=-1)),
    (ValueError, "negative_slope=-1", lambda: layers.LeakyReLU(alpha=-1)),
    (ValueError, "alpha='x'", lambda: layers.ELU(alpha="x")),
    (TypeError, "axis=1.5", lambda: layers.Softmax(axis=1.5)),
    (TypeError, "axis='x'", lambda: layers.Concatenate(axis="x")),
    (ValueError, "padding=-1", lambda: layers.ZeroPadding2D(padding=-1)),
    (ValueError, "padding=((1, 2, 3), (0, 0))", lambda: layers.ZeroPadding2D(((1, 2, 3), (0, 0)))),
    (ValueError, "cropping='a'", lambda: layers.Cropping2D("a")),
    (ValueError, "units=0", lambda: layers.Dense(0)),
    (TypeError, "activaton", lambda: layers.Dense(3, activaton="relu")),
])
def test_bad_arguments_are_refused_naming_the_value(exc, name, make):
    assert_raises_naming(exc, name, make)


def _built(layer, shape):
    layer(np.zeros(shape))
    return layer


@pytest.mark.parametrize("exc, name, call", [
    (ValueError, "(None, 5, 5)", lambda: layers.Conv2D(2, 3)(np.zeros((2, 5, 5)))),
    (ValueError, "(None, 5, 5, 4)", lambda: _built(layers.Conv2D(2, 3), (1, 5, 5, 3))(np.zeros((1, 5, 5, 4)))),
    (ValueError, "(None, 6)", lambda: _built(layers.Dense(2), (1, 5))(np.zeros((1, 6)))),
    (ValueError, "(None, 2, 2, 4)", lambda: _built(layers.BatchNormalization(), (2, 3))(np.zeros((2, 2, 2, 4)))),
    (ValueError, "axis=1", lambda: layers.BatchNormalization(axis=1)(np.zeros((2, 3, 3, 2)))),
    (ValueError, "(None, 5, 5)", lambda: layers.MaxPooling2D()(np.zeros((1, 5, 5)))),
    (ValueError, "pool_size=(5, 5)", lambda: layers.AveragePooling2D(5)(np.zeros((1, 3, 3, 1)))),
    (ValueError, "(None, 4)", lambda: layers.GlobalMaxPooling2D()(np.zeros((1, 4)))),
    (ValueError, "cropping=((3, 3), (3, 3))", lambda: layers.Cropping2D(3)(np.zeros((1, 5, 9, 1)))),
    (ValueError, "axis=3", lambda: layers.Softmax(axis=3)(np.zeros((2, 4)))),
    (ValueError, "at least 2", lambda: layers.Add()([np.zeros((2, 3))])),
    (ValueError, "(None, 3), (None, 4)", lambda: layers.Add()([np.zeros((2, 3)), np.zeros((2, 4))])),
    (ValueError, "exactly 2", lambda: layers.Subtract()([np.zeros((2, 3))] * 3)),
    (ValueError, "(None, 2, 3), (None, 3, 3)",
     lambda: layers.Concatenate()([np.zeros((1, 2, 3)), np.zeros((1, 3, 3))])),
    (ValueError, "axis=0", lambda: layers.Concatenate(axis=0)([np.zeros((1, 3))] * 2)),
    (TypeError, "list of tensors", lambda: layers.Add()(layers.Input((3,)))),
])
def test_bad_input_shapes_are_refused_naming_the_shape(exc, name, call):
    assert_raises_naming(exc, name, call)


def test_stochpool_cases_draw_inputs_away_from_the_kink_at_zero(rng):
    """The finite-difference cases of stochastic pooling never draw an input within the step of 0,
    where max(x, 0) has a kink (see the comment on the cases): the check failed once in 9 runs."""
    cases = {p.id: p.values for p in CASES}
    for name in ("stochpool-inference", "stochpool-training"):
        data = cases[name][4]
        assert np.abs(data(rng.standard_normal(10**5))).min() >= 0.1
