"""Layers and models written the Keras way, trained through automatic differentiation: a layer with
only ``call`` (and sublayers as attributes), ``Lambda``, a subclassed model with ``call``,
GradientTape on a model against what fit applies, an overridden ``train_step``/``test_step``
(a GAN step, distillation), a loss given as a plain function, and broadcasting merge layers."""

import numpy as np
import pytest

import cnnkit
from cnnkit import GradientTape, layers, losses, metrics, models, ops, optimizers
from cnnkit.utils import set_random_seed
from helpers import rel_error, to_numpy


class Scale(layers.Layer):
    """The issue's example: a per-channel scale, written only as call."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w


class SqueezeExcite(layers.Layer):
    """A squeeze-and-excitation block in ops: x * sigmoid(relu(mean(x) @ w1 + b1) @ w2 + b2)."""

    def __init__(self, ratio=2, **kwargs):
        super().__init__(**kwargs)
        self.ratio = ratio

    def build(self, input_shape):
        c = input_shape[-1]
        self.w1 = self.add_weight("w1", (c, c // self.ratio))
        self.b1 = self.add_weight("b1", (c // self.ratio,), initializer="zeros")
        self.w2 = self.add_weight("w2", (c // self.ratio, c))
        self.b2 = self.add_weight("b2", (c,), initializer="zeros")

    def call(self, x):
        s = ops.mean(x, axis=(1, 2))
        s = ops.relu(s @ self.w1 + self.b1)
        s = ops.sigmoid(s @ self.w2 + self.b2)
        return x * ops.expand_dims(ops.expand_dims(s, 1), 1)


def _se_builtin(x, c):
    s = layers.GlobalAveragePooling2D()(x)
    s = layers.Dense(c // 2, activation="relu")(s)
    s = layers.Dense(c, activation="sigmoid")(s)
    s = layers.Reshape((1, 1, c))(s)
    return layers.Multiply()([x, s])


def _data(rng, n=12, size=6, c=4, classes=3):
    return rng.standard_normal((n, size, size, c)), rng.integers(0, classes, n)


def _se_models():
    cnnkit.config.floatx = "float64"
    try:
        def trunk(se):
            inp = layers.Input((6, 6, 4))
            h = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
            h = se(h)
            out = layers.Dense(3, activation="softmax")(layers.Flatten()(h))
            return models.Model(inp, out)

        custom = trunk(SqueezeExcite())
        builtin = trunk(lambda h: _se_builtin(h, 4))
    finally:
        cnnkit.config.floatx = "float32"
    return custom, builtin


def test_squeeze_excite_in_ops_trains_like_the_builtin_layers(rng):
    custom, builtin = _se_models()
    # the same starting weights: conv, then the SE weights in the order w1 b1 w2 b2, then the head
    builtin.set_weights(custom.get_weights())
    x, y = _data(rng)
    for model in (custom, builtin):
        model.compile(optimizer=optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(custom.get_weights(), builtin.get_weights()):
        assert rel_error(a, b) < 1e-10
    assert rel_error(custom.predict(x, verbose=0), builtin.predict(x, verbose=0)) < 1e-10


def test_a_call_only_layer_trains_in_fit_and_has_a_shape(rng):
    set_random_seed(3)
    model = models.Sequential([layers.Input((8,)), layers.Dense(16, activation="relu"), Scale(),
                               layers.Dense(3, activation="softmax")])
    assert model.layers[1].output_shape == (None, 16)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = rng.standard_normal((64, 8)).astype("float32"), rng.integers(0, 3, 64)
    before = model.layers[1].w.numpy()
    model.fit(x, y, epochs=2, verbose=0)
    assert not np.array_equal(before, model.layers[1].w.numpy())
    assert model.count_params() == 8 * 16 + 16 + 16 + 16 * 3 + 3


class TwoDense(layers.Layer):
    """Sublayers as attributes (a list too): their weights are the layer's."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first = layers.Dense(5, activation="relu")
        self.rest = [layers.Dense(4), layers.Dense(2)]

    def call(self, x):
        h = self.first(x)
        for layer in self.rest:
            h = layer(h)
        return ops.tanh(h)


def test_sublayers_are_tracked_and_trained(rng):
    model = models.Sequential([layers.Input((3,)), TwoDense()])
    block = model.layers[0]
    assert len(block.weights) == 6 and len(model.trainable_weights) == 6
    block.rest[0].trainable = False
    assert len(model.trainable_weights) == 4 and len(model.non_trainable_weights) == 2
    frozen = block.rest[0].get_weights()
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    x, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
    loss0 = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, verbose=0)
    assert model.evaluate(x, y, verbose=0) < loss0
    assert all(np.array_equal(a, b) for a, b in zip(frozen, block.rest[0].get_weights()))


def test_lambda_layer_gradient_and_no_loading_from_a_file(rng, tmp_path):
    cnnkit.config.floatx = "float64"
    try:
        inp = layers.Input((5,))
        out = layers.Dense(2)(layers.Lambda(lambda t, k: ops.square(t) * k, arguments={"k": 0.5})(inp))
        model = models.Model(inp, out)
    finally:
        cnnkit.config.floatx = "float32"
    assert model.layers[1].output_shape == (None, 5)
    x, y = rng.standard_normal((7, 5)), rng.standard_normal((7, 2))
    model.compile(optimizer=optimizers.SGD(0.05), loss="mse")
    w, b = [a.copy() for a in model.layers[2].get_weights()]
    model.train_on_batch(x, y)
    h = 0.5 * x ** 2
    grad_w = h.T @ (2 * (h @ w + b - y) / y.size)
    assert rel_error(model.layers[2].get_weights()[0], w - 0.05 * grad_w) < 1e-10
    model.save(tmp_path / "m.cnnkit")
    with pytest.raises(ValueError, match="Lambda"):
        models.load_model(tmp_path / "m.cnnkit")
    assert layers.Lambda(ops.relu, output_shape=(3, 4)).compute_output_shape((None, 12)) == (None, 3, 4)
    with pytest.raises(TypeError, match="callable"):
        layers.Lambda(3)


def _conv_model(seed=0):
    set_random_seed(seed)
    cnnkit.config.floatx = "float64"
    try:
        return models.Sequential([
            layers.Input((7, 7, 2)), layers.Conv2D(3, 3, activation="relu"), layers.BatchNormalization(),
            layers.MaxPooling2D(), layers.Flatten(), layers.Dense(4, activation="softmax")])
    finally:
        cnnkit.config.floatx = "float32"


def test_tape_gradients_of_a_model_equal_what_fit_applies(rng):
    model = _conv_model()
    x, y = rng.standard_normal((9, 7, 7, 2)), rng.integers(0, 4, 9)
    model.compile(optimizer=optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
    before = [v.numpy() for v in model.trainable_weights]
    stats = [v.numpy() for v in model.non_trainable_weights]
    with GradientTape() as tape:
        loss = model.compute_loss(y=y, y_pred=model(x, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    for v, s in zip(model.non_trainable_weights, stats):  # the tape's forward moved them: undo
        v.assign(s)
    fit_loss = model.train_on_batch(x, y)
    assert abs(float(loss) - fit_loss) < 1e-12
    for b, g, v in zip(before, grads, model.trainable_weights):
        assert rel_error(b - v.numpy(), to_numpy(g)) < 1e-10


def test_tape_through_a_layer_and_watched_input(rng):
    dense = layers.Dense(3, activation="relu")
    x = rng.standard_normal((4, 2)).astype("float32")
    with GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = ops.sum(dense(x))
    gx = tape.gradient(y, x)
    gk, gb = tape.gradient(y, dense.trainable_weights)
    k, b = dense.get_weights()
    active = (x @ k + b) > 0
    assert rel_error(gx, active.astype(np.float32) @ k.T) < 1e-6
    assert rel_error(gk, x.T @ active) < 1e-6 and rel_error(gb, active.sum(0)) < 1e-6
    assert all(v.grad is None for v in dense.weights)  # the tape returns gradients, leaves .grad alone


class MLP(cnnkit.Model):
    """Keras' model subclassing: layers as attributes, the forward pass in call."""

    def __init__(self, rate=0.2):
        super().__init__()
        self.hidden = layers.Dense(8, activation="relu")
        self.out = layers.Dense(3, activation="softmax")
        self.drop = layers.Dropout(rate)

    def call(self, x, training=False):
        return self.out(self.drop(self.hidden(x), training=training))


def test_subclassed_model_with_call(rng, tmp_path):
    x, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    cnnkit.config.floatx = "float64"
    try:
        set_random_seed(1)
        model = MLP(rate=0.0)
        model(x[:1])  # built by a first call, as in Keras
        inp = layers.Input((6,))
        same = models.Model(inp, layers.Dense(3, activation="softmax")(layers.Dense(8, activation="relu")(inp)))
    finally:
        cnnkit.config.floatx = "float32"
    same.set_weights(model.get_weights())
    for m in (model, same):
        m.compile(optimizer=optimizers.SGD(0.2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    same.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    for a, b in zip(model.get_weights(), same.get_weights()):
        assert rel_error(a, b) < 1e-12
    assert rel_error(model.predict(x, verbose=0), same.predict(x, verbose=0)) < 1e-12
    assert len(model.trainable_weights) == 4 and model.count_params() == 6 * 8 + 8 + 8 * 3 + 3
    lines = []
    model.summary(print_fn=lines.append)
    assert "subclassed" in lines[0] and "hidden" not in lines[0]
    with pytest.raises(NotImplementedError, match="subclassed"):
        model.save(tmp_path / "m.cnnkit")
    model.save_weights(tmp_path / "w.weights")
    cnnkit.config.floatx = "float64"
    try:
        other = MLP()
        other(x[:1])
    finally:
        cnnkit.config.floatx = "float32"
    other.load_weights(tmp_path / "w.weights")
    assert np.array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    with_dropout = MLP(rate=0.5)  # dropout active in fit only
    with_dropout.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with_dropout.fit(x.astype("float32"), y, epochs=1, verbose=0)
    p = with_dropout.predict(x.astype("float32"), verbose=0)
    assert np.array_equal(p, with_dropout.predict(x.astype("float32"), verbose=0))


class CustomStep(cnnkit.Model):
    """A functional model whose train_step is Keras 3's documented override."""

    def train_step(self, data):
        x, y = data
        with GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        self.optimizer.apply(tape.gradient(loss, self.trainable_variables), self.trainable_variables)
        for m in self.metrics:
            m.update_state(loss) if m.name == "loss" else m.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


def test_overridden_train_step_matches_the_builtin_step(rng):
    def build(cls):
        set_random_seed(5)
        cnnkit.config.floatx = "float64"
        try:
            inp = layers.Input((4,))
            out = layers.Dense(3, activation="softmax")(layers.Dense(6, activation="relu")(inp))
            return cls(inp, out)
        finally:
            cnnkit.config.floatx = "float32"

    x, y = rng.standard_normal((24, 4)), rng.integers(0, 3, 24)
    a, b = build(models.Model), build(CustomStep)
    seen = []
    for m in (a, b):
        m.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    a.fit(x, y, batch_size=6, epochs=2, shuffle=False, verbose=0)
    cb = cnnkit.callbacks.LambdaCallback(on_train_batch_end=lambda i, logs: seen.append(logs["loss"]))
    hist = b.fit(x, y, batch_size=6, epochs=2, shuffle=False, verbose=0, callbacks=[cb])
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert rel_error(wa, wb) < 1e-12
    assert len(seen) == 8 and set(hist.history) == {"loss", "accuracy"}
    assert abs(hist.history["loss"][-1] - a.history.history["loss"][-1]) < 1e-12


class Distiller(cnnkit.Model):
    """Knowledge distillation (Keras' example): the student learns the labels and the teacher's
    softened predictions; the teacher is not trained."""

    def __init__(self, student, teacher, temperature=3.0, alpha=0.3):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.temperature, self.alpha = temperature, alpha
        self.loss_tracker = metrics.Mean(name="loss")

    def compile(self, optimizer):
        super().compile(optimizer=optimizer)
        self.hard = losses.SparseCategoricalCrossentropy(from_logits=True)

    def train_step(self, data):
        x, y = data
        soft_teacher = ops.softmax(self.teacher(x) / self.temperature)
        with GradientTape() as tape:
            logits = self.student(x, training=True)
            log_soft = ops.log_softmax(logits / self.temperature)
            distill = -ops.mean(ops.sum(soft_teacher * log_soft, axis=-1)) * self.temperature ** 2
            loss = self.alpha * self.hard(y, logits) + (1 - self.alpha) * distill
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.student.trainable_weights),
                                           self.student.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        x, y = data
        self.loss_tracker.update_state(self.hard(y, self.student(x)))
        return {"loss": self.loss_tracker.result()}


def test_distillation_trains_the_student_only(rng):
    set_random_seed(2)
    x, y = rng.standard_normal((64, 5)).astype("float32"), rng.integers(0, 3, 64)
    teacher = models.Sequential([layers.Input((5,)), layers.Dense(16, activation="relu"), layers.Dense(3)])
    student = models.Sequential([layers.Input((5,)), layers.Dense(3)])
    teacher_weights = teacher.get_weights()
    d = Distiller(student, teacher)
    d.compile(optimizer=optimizers.Adam(0.01))
    before = d.evaluate(x, y, verbose=0)
    hist = d.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert d.evaluate(x, y, verbose=0) < before
    assert all(np.array_equal(a, b) for a, b in zip(teacher_weights, teacher.get_weights()))
    assert d.metrics == [d.loss_tracker]


def test_gan_step_trains_both_models(rng):
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(
        "dcgan", pathlib.Path(__file__).parent.parent / "examples" / "dcgan.py")
    dcgan = importlib.util.module_from_spec(spec)
    import sys

    sys.path.insert(0, str(pathlib.Path(spec.origin).parent))
    try:
        spec.loader.exec_module(dcgan)
    finally:
        sys.path.pop(0)
    set_random_seed(0)
    gan = dcgan.GAN(dcgan.build_discriminator(), dcgan.build_generator())
    gan.compile(optimizers.Adam(2e-4, beta_1=0.5), optimizers.Adam(2e-4, beta_1=0.5),
                losses.BinaryCrossentropy(from_logits=True))
    x = rng.random((32, 28, 28, 1)).astype("float32")
    g0, d0 = gan.generator.get_weights(), gan.discriminator.get_weights()
    hist = gan.fit(x, epochs=1, batch_size=16, verbose=0)
    assert set(hist.history) == {"d_loss", "g_loss"} and all(np.isfinite(v[0]) for v in hist.history.values())
    assert all(not np.array_equal(a, b) for a, b in zip(g0, gan.generator.get_weights()))
    assert all(not np.array_equal(a, b) for a, b in zip(d0, gan.discriminator.get_weights()))
    with pytest.raises(ValueError, match="loss"):
        gan.evaluate(x, np.zeros(32), verbose=0)  # no test_step of its own and no compiled loss


def test_a_loss_function_written_with_ops_trains(rng):
    def huberish(y_true, y_pred):
        d = y_pred - y_true
        return ops.mean(ops.sqrt(1.0 + d * d) - 1.0, axis=-1)

    set_random_seed(4)
    model = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    model.compile(optimizer=optimizers.SGD(0.1), loss=huberish)
    x, y = rng.standard_normal((32, 3)), rng.standard_normal((32, 2))
    w = model.get_weights()
    model.train_on_batch(x, y)
    k, b = w
    d = (x @ k + b) - y
    g = d / np.sqrt(1 + d * d) / d.size
    assert rel_error(model.get_weights()[0], k - 0.1 * x.T @ g) < 1e-5
    assert abs(model.evaluate(x, y, verbose=0) - float(np.mean(np.sqrt(1 + ((x @ model.get_weights()[0] +
               model.get_weights()[1]) - y) ** 2) - 1))) < 1e-5


def test_merge_layers_broadcast(rng):
    a, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 1, 1, 5))
    mul = layers.Multiply()
    assert np.allclose(mul([a, b]), a * b)
    assert mul.compute_output_shape([(None, 3, 4, 5), (None, 1, 1, 5)]) == (None, 3, 4, 5)
    y, saved = mul.forward([a, b])
    da, db = mul.backward(saved, np.ones_like(y), [True, True])
    assert db.shape == b.shape and np.allclose(db, a.sum(axis=(1, 2), keepdims=True))
    add = layers.Add()
    y, saved = add.forward([b, a])
    assert np.allclose(y, a + b)
    assert add.backward(saved, np.ones_like(y), [True, False])[0].shape == b.shape
    with pytest.raises(ValueError, match="broadcast"):
        layers.Subtract()([layers.Input((3, 4)), layers.Input((2, 4))])


def test_add_weight_the_keras_way():
    class W(layers.Layer):
        def build(self, shape):
            self.a = self.add_weight(shape=(2,), initializer="zeros")
            self.b = self.add_weight(shape=(3,))

        def call(self, x):
            return x

    layer = W()
    layer(np.zeros((1, 4), "float32"))
    assert [v.name for v in layer.weights] == [f"{layer.name}/variable", f"{layer.name}/variable_1"]
    with pytest.raises(TypeError, match="shape"):
        layer.add_weight(name="x")
    with pytest.raises(NotImplementedError, match="call"):
        layers.Layer()(np.zeros((1, 2), "float32"))


def mean_abs(y_true, y_pred):
    return ops.mean(ops.abs(y_true - y_pred), axis=-1)


def test_a_model_compiled_with_a_loss_function_saves_and_loads(rng, tmp_path):
    model = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss=mean_abs)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    model.fit(x, y, verbose=0)
    model.save(tmp_path / "m.cnnkit")
    with pytest.raises(ValueError, match="custom_objects"):
        models.load_model(tmp_path / "m.cnnkit")
    again = models.load_model(tmp_path / "m.cnnkit", custom_objects={"mean_abs": mean_abs})
    assert again.loss.name == "mean_abs"
    assert again.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)
    assert models.load_model(tmp_path / "m.cnnkit", compile=False).predict(x, verbose=0).shape == (8, 2)


@pytest.mark.gpu
def test_custom_layers_and_tapes_on_the_gpu(cupy_xp, rng):
    """The same recorded graphs on CuPy arrays: a call-only layer trains to the same weights as the
    built-in layers, and a tape's gradients of a GPU model equal what fit applies."""
    cp = cupy_xp
    custom, builtin = _se_models()
    builtin.set_weights(custom.get_weights())
    x, y = _data(rng)
    for model in (custom, builtin):
        model.to("gpu")
        model.compile(optimizer=optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
        model.fit(cp.asarray(x), cp.asarray(y), batch_size=4, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(custom.get_weights(), builtin.get_weights()):
        assert rel_error(a, b) < 1e-10
    model = _conv_model().to("gpu")
    model.compile(optimizer=optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
    xg, yg = cp.asarray(rng.standard_normal((5, 7, 7, 2))), cp.asarray(rng.integers(0, 4, 5))
    before = [v.numpy() for v in model.trainable_weights]
    stats = [v.numpy() for v in model.non_trainable_weights]
    with GradientTape() as tape:
        loss = model.compute_loss(y=yg, y_pred=model(xg, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(isinstance(g, cp.ndarray) for g in grads)
    for v, s in zip(model.non_trainable_weights, stats):
        v.assign(s)
    model.train_on_batch(xg, yg)
    for b, g, v in zip(before, grads, model.trainable_weights):
        assert rel_error(b - v.numpy(), to_numpy(g)) < 1e-10
