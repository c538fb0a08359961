"""Training: a full step (forward, loss, backward, update) against a float64 NumPy implementation
of the same step, a finite-difference check through every layer type, fit/evaluate/History,
reproducibility, and bad data refused before any weight changes."""

import numpy as np
import pytest

import cnnkit
from cnnkit import _random, layers, models, optimizers
from cnnkit.ops import reference as ref
from cnnkit.utils import set_random_seed
from helpers import assert_close, numerical_grad, rel_error, tutorial_model


@pytest.fixture
def float64():
    old = cnnkit.config.floatx
    cnnkit.config.floatx = "float64"
    yield
    cnnkit.config.floatx = old


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _adam(w, g, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """The first Adam step from zero moments, as Keras writes it."""
    m, v = (1 - b1) * g, (1 - b2) * g * g
    alpha = lr * np.sqrt(1 - b2) / (1 - b1)
    return w - alpha * m / (np.sqrt(v) + eps)


def _tutorial_step_reference(x, y, w1, b1, w2, b2):
    """Loss and gradients of the tutorial model on (x, y), float64 NumPy with the reference ops."""
    n = len(y)
    z1 = ref.conv2d(x, w1, b1)
    a1 = np.maximum(z1, 0)
    p1 = ref.max_pool2d(a1, 2)
    f = p1.reshape(n, -1)
    probs = _softmax(f @ w2 + b2)
    loss = -np.mean(np.log(probs[np.arange(n), y]))
    dz2 = probs.copy()
    dz2[np.arange(n), y] -= 1
    dz2 /= n
    dw2, db2 = f.T @ dz2, dz2.sum(0)
    dp1 = (dz2 @ w2.T).reshape(p1.shape)
    dz1 = ref.max_pool2d_backward(dp1, a1, 2) * (z1 > 0)
    _, dw1, db1 = ref.conv2d_backward(dz1, x, w1, b1)
    return loss, [dw1, db1, dw2, db2]


def assert_update_close(new, old, expected, tol=1e-5, what=""):
    """new (float32 weights after a step) - old matches the expected update within tol of the
    update's scale, plus the rounding of storing old + update in float32 (half an ulp of the
    result; 2**-23 * |new| allows a factor 2), which is not an error of the step itself."""
    update = new.astype(np.float64) - old
    allowed = tol * np.abs(expected).max() + 2.0**-23 * np.abs(new.astype(np.float64))
    worst = np.max(np.abs(update - expected) / allowed) if update.size else 0.0
    assert worst <= 1, f"{what}: update error {worst:.2f}x the allowed {tol:.0e} of its scale"


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_tutorial_training_step_matches_numpy_float64(rng, optimizer):
    model = tutorial_model()
    model.compile(optimizer=optimizers.SGD(0.1) if optimizer == "sgd" else "adam",
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((8, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 8)
    weights = model.get_weights()
    weights[1] += rng.standard_normal(weights[1].shape).astype("float32") * 0.1  # nonzero biases
    weights[3] += rng.standard_normal(weights[3].shape).astype("float32") * 0.1
    model.set_weights(weights)
    old = [w.astype(np.float64) for w in weights]
    loss, grads = _tutorial_step_reference(x.astype(np.float64), y, *old)

    value = model.train_on_batch(x, y)[0]
    # the loss: a 10-term log-sum-exp in float32, far below 1e-5
    assert abs(value - loss) <= 1e-5 * abs(loss)
    names = ("conv kernel", "conv bias", "dense kernel", "dense bias")
    for var, new, o, g, name in zip(model.trainable_weights, model.get_weights(), old, grads, names):
        # the float32 gradient the step used (kept on the variable until the next step)
        g32 = np.asarray(var.grad, np.float64)
        assert_close(g32, g, np.float32, what=name + " gradient")
        if optimizer == "sgd":
            assert_update_close(new, o, -0.1 * g, what=name)
            continue
        # Adam's first step is lr * g / (|g| + eps'), steep near g = 0 (slope 1 / eps' ~ 3e5), where
        # float32's ~1e-9 error in a gradient entry becomes ~1e-4 of the update: the update is
        # checked against the formula applied to the gradient it was given, the gradient above.
        assert_update_close(new, o, _adam(o, g32) - o, what=name)


def _bn_dropout_add_concat_model():
    inp = layers.Input((6, 5, 2))
    a = layers.Conv2D(3, 3, padding="same", name="a")(inp)
    b = layers.Conv2D(3, 1, name="b")(inp)
    s = layers.Add()([a, b])
    c = layers.Concatenate()([s, b])
    h = layers.BatchNormalization(name="bn")(c)
    h = layers.Activation("relu")(h)
    h = layers.Flatten()(h)
    h = layers.Dropout(0.3, name="drop")(h)
    out = layers.Dense(4, activation="softmax", name="out")(h)
    return cnnkit.Model(inp, out)


def test_bn_dropout_add_concat_step_matches_numpy_float64(rng):
    model = _bn_dropout_add_concat_model()
    model.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((7, 6, 5, 2)).astype("float32")
    y = rng.integers(0, 4, 7)
    wa, ba, wb, bb, gamma, beta, mm, mv, wo, bo = (w.astype(np.float64) for w in model.get_weights())
    set_random_seed(11)
    seed = _random.next_seed()  # the seed the Dropout layer will draw in the step below
    set_random_seed(11)

    x64 = x.astype(np.float64)
    za = ref.conv2d(x64, wa, ba, padding="same")
    zb = ref.conv2d(x64, wb, bb)
    c = np.concatenate([za + zb, zb], axis=-1)
    mean, var = c.reshape(-1, 6).mean(0), c.reshape(-1, 6).var(0)
    xhat = (c - mean) / np.sqrt(var + 1e-3)
    h = np.maximum(gamma * xhat + beta, 0)
    hf = h.reshape(7, -1)
    d = ref.dropout(hf, 0.3, seed)
    probs = _softmax(d @ wo + bo)
    loss = -np.mean(np.log(probs[np.arange(7), y]))
    dz = probs.copy()
    dz[np.arange(7), y] -= 1
    dz /= 7
    dwo, dbo = d.T @ dz, dz.sum(0)
    dh = ref.dropout_backward(dz @ wo.T, hf, 0.3, seed).reshape(h.shape) * (gamma * xhat + beta > 0)
    dgamma, dbeta = (dh * xhat).reshape(-1, 6).sum(0), dh.reshape(-1, 6).sum(0)
    m = c.reshape(-1, 6).shape[0]
    dxhat = dh * gamma
    dc = (dxhat - dxhat.reshape(-1, 6).mean(0) - xhat * (dxhat * xhat).reshape(-1, 6).mean(0)) / np.sqrt(var + 1e-3)
    assert m == 7 * 30
    ds, dzb = dc[..., :3], dc[..., 3:] + dc[..., :3]
    _, dwa, dba = ref.conv2d_backward(ds, x64, wa, ba, padding="same")
    _, dwb, dbb = ref.conv2d_backward(dzb, x64, wb, bb)

    value = model.train_on_batch(x, y)
    assert abs(value - loss) <= 1e-5 * abs(loss)
    new = [w.astype(np.float64) for w in model.get_weights()]
    grads = {0: dwa, 1: dba, 2: dwb, 3: dbb, 4: dgamma, 5: dbeta, 8: dwo, 9: dbo}
    old = (wa, ba, wb, bb, gamma, beta, mm, mv, wo, bo)
    scale = max(np.abs(g).max() for g in grads.values())
    for i, g in grads.items():
        if i in (1, 3):
            # conv biases feeding BatchNormalization: their true gradient is 0 (the batch mean cancels
            # them), so compare against the scale of the other gradients instead of their own
            assert np.abs(new[i] - old[i]).max() <= 1e-5 * 0.1 * scale, model.weights[i].name
            continue
        assert_update_close(model.get_weights()[i], old[i], -0.1 * g, what=model.weights[i].name)
    # moving statistics: Keras' momentum update with the (unbiased? no: Keras uses the biased) batch variance
    assert_close(new[6], 0.99 * mm + 0.01 * mean, tol=1e-5, what="moving mean")
    assert_close(new[7], 0.99 * mv + 0.01 * var, tol=1e-5, what="moving variance")


def _loss_and_grads(model, x, y):
    """Training-mode loss and the model's analytic gradient of every trainable weight."""
    _random.set_seed(5)  # the same dropout mask in every evaluation
    for v in model.weights:
        v.grad = None
    outs, saved = model._run([x], training=True)
    value, lsaved = model.loss.forward(y, outs[0])
    model._backward(saved, [model.loss.backward(lsaved)])
    return float(value), [v.grad for v in model.trainable_weights]


def test_whole_model_gradient_check_float64(rng, float64):
    inp = layers.Input((7, 6, 2))
    a = layers.Conv2D(3, 3, padding="same", activation="tanh")(inp)
    b = layers.ZeroPadding2D(((1, 0), (0, 1)))(layers.Conv2D(3, 2, activation="elu")(inp))
    s = layers.Add()([a, b])
    c = layers.Concatenate()([s, a])
    h = layers.BatchNormalization()(c)
    h = layers.LeakyReLU(0.1)(h)
    h1 = layers.AveragePooling2D(2)(h)
    h2 = layers.MaxPooling2D(2, strides=1)(h)
    g = layers.Concatenate()([layers.GlobalAveragePooling2D()(h1), layers.GlobalMaxPooling2D()(h2),
                              layers.Flatten()(h1)])
    g = layers.Dropout(0.2)(g)
    g = layers.Reshape((-1,))(g)
    g = layers.Dense(6, activation="sigmoid", kernel_regularizer="l2")(g)
    g = layers.ReLU()(layers.Dense(5)(g))
    out = layers.Softmax()(layers.Dense(3)(g))
    model = cnnkit.Model(inp, out)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((4, 7, 6, 2))
    y = rng.integers(0, 3, 4)
    _, grads = _loss_and_grads(model, x, y)
    for var, g in zip(model.trainable_weights, grads):
        def f(value, var=var):
            old = var.value.copy()
            var.value[...] = value
            loss = _loss_and_grads(model, x, y)[0]
            var.value[...] = old
            return loss
        num = numerical_grad(f, var.value.copy(), 1.0)
        assert rel_error(g, num) <= 1e-6, var.name


def test_fit_history_evaluate_predict(rng):
    set_random_seed(0)
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((100, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 100)
    history = model.fit(x, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0)
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(v) == 2 for v in history.history.values()) and history.epoch == [0, 1]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert np.isfinite(loss) and 0 <= acc <= 1
    assert model.predict(x[:5], verbose=0).shape == (5, 10)


def test_fit_learns_a_separable_problem(rng):
    set_random_seed(1)
    y = rng.integers(0, 2, 256)
    x = rng.random((256, 8, 8, 1)).astype("float32") * 0.5
    x[y == 1, :4] += 0.5  # class 1 is bright at the top, class 0 at the bottom
    x[y == 0, 4:] += 0.5
    model = models.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(8, 3, activation="relu"),
                               layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert model.evaluate(x, y, verbose=0)[1] > 0.95


def test_same_seed_same_weights_bit_for_bit(rng):
    x = rng.random((64, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 64)
    weights = []
    for _ in range(2):
        set_random_seed(42)
        model = models.Sequential([layers.Input((28, 28, 1)), layers.Conv2D(8, 3, activation="relu"),
                                   layers.MaxPooling2D(), layers.Dropout(0.3), layers.Flatten(),
                                   layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def _compiled(metrics=("accuracy",)):
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=list(metrics))
    return model


@pytest.mark.parametrize("x_shape,y,match", [
    ((4, 28, 28), np.arange(4), "expects input shape"),
    ((4, 28, 28, 3), np.arange(4), "expects input shape"),
    ((4, 28, 28, 1), np.array([0, 1, 2, 10]), "10"),
    ((4, 28, 28, 1), np.array([0, 1, 2, -1]), "-1"),
    ((4, 28, 28, 1), np.arange(3), "samples"),
])
def test_bad_data_is_refused_before_any_weight_changes(rng, x_shape, y, match):
    model = _compiled()
    before = model.get_weights()
    with pytest.raises(ValueError, match=match):
        model.fit(rng.random(x_shape).astype("float32"), y, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nan_input_and_fit_before_compile(rng):
    model = tutorial_model()
    x = rng.random((4, 28, 28, 1)).astype("float32")
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, np.arange(4))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x[2, 3, 4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(x, np.arange(4), verbose=0)


def test_unknown_loss_metric_optimizer_names():
    model = tutorial_model()
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        model.compile(optimizer="adam", loss="sparse_categorial_crossentropy")
    with pytest.raises(ValueError, match="accurracy"):
        model.compile(optimizer="adam", loss="mse", metrics=["accurracy"])
    with pytest.raises(ValueError, match="adamm"):
        model.compile(optimizer="adamm", loss="mse")


def test_non_finite_loss_stops_training(rng, capsys):
    model = models.Sequential([layers.Input((3,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = rng.random((64, 3)).astype("float32")
    x[40:] *= 3e38  # finite inputs whose squared error overflows float32: the loss becomes inf
    y = rng.random((64, 1)).astype("float32")
    before = model.get_weights()
    history = model.fit(x, y, epochs=5, batch_size=8, shuffle=False, verbose=0)
    assert "invalid loss" in capsys.readouterr().err
    assert len(history.history["loss"]) == 1 and not np.isfinite(history.history["loss"][0])
    weights = model.get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    assert not all(np.array_equal(a, b) for a, b in zip(before, weights))  # the first 5 batches trained


def test_callback_protocol_order(rng):
    events = []

    class Recorder(cnnkit.callbacks.Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            events.append(f"epoch_begin {epoch}")

        def on_batch_end(self, batch, logs=None):
            events.append(f"batch_end {batch} {sorted(logs)}")

        def on_epoch_end(self, epoch, logs=None):
            events.append(f"epoch_end {epoch} {sorted(logs)}")
            if epoch == 1:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            events.append("train_end")

    model = _compiled()
    x, y = rng.random((10, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 10)
    model.fit(x, y, epochs=5, batch_size=6, callbacks=[Recorder()], validation_data=(x, y), verbose=0,
              initial_epoch=0)
    assert events == ["train_begin", "epoch_begin 0", "batch_end 0 ['accuracy', 'loss']",
                      "batch_end 1 ['accuracy', 'loss']",
                      "epoch_end 0 ['accuracy', 'loss', 'val_accuracy', 'val_loss']", "epoch_begin 1",
                      "batch_end 0 ['accuracy', 'loss']", "batch_end 1 ['accuracy', 'loss']",
                      "epoch_end 1 ['accuracy', 'loss', 'val_accuracy', 'val_loss']", "train_end"]


def test_fused_softmax_cross_entropy_is_used_when_it_applies():
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert model._fuses()
    model.compile(optimizer="adam", loss=cnnkit.losses.categorical_crossentropy)
    assert model._fuses()
    model.compile(optimizer="adam", loss=cnnkit.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert not model._fuses()
    model.compile(optimizer="adam", loss="mse")
    assert not model._fuses()


def test_categorical_labels_metrics_and_callable_loss(rng):
    set_random_seed(2)
    model = tutorial_model()
    model.compile(optimizer=optimizers.RMSprop(), loss=cnnkit.losses.categorical_crossentropy,
                  metrics=["accuracy", "top_k_categorical_accuracy", cnnkit.metrics.F1Score(average="macro")])
    x = rng.random((40, 28, 28, 1)).astype("float32")
    y = cnnkit.utils.to_categorical(rng.integers(0, 10, 40), 10)
    history = model.fit(x, y, epochs=1, batch_size=16, validation_data=(x, y), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "top_k_categorical_accuracy", "f1_score", "val_loss",
                                    "val_accuracy", "val_top_k_categorical_accuracy", "val_f1_score"}
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    probs = model.predict(x, verbose=0)
    assert logs["accuracy"] == np.mean(probs.argmax(1) == y.argmax(1))


@pytest.mark.gpu
def test_gpu_model_matches_cpu(rng):
    if not cnnkit.device.gpu_available():
        pytest.skip("needs CuPy, cnnkit._cuda and an NVIDIA GPU")
    set_random_seed(4)
    cpu = tutorial_model()
    gpu = tutorial_model().to("gpu")
    gpu.set_weights(cpu.get_weights())
    for m in (cpu, gpu):
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((64, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 64)
    # float32 on two devices: GEMM summation orders differ, so agreement is to float32 tolerance
    assert_close(gpu.predict(x, verbose=0), cpu.predict(x, verbose=0), np.float32)
    for m in (cpu, gpu):
        m.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(gpu.get_weights(), cpu.get_weights()):
        assert_close(a - b, np.zeros_like(b), tol=1e-4)
    assert isinstance(gpu.predict(x[:3], verbose=0), np.ndarray)


def test_initial_epoch_batches_and_on_batch_apis(rng):
    model = _compiled()
    x, y = rng.random((20, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 20)
    history = model.fit(x, y, epochs=3, initial_epoch=1, batch_size=7, verbose=0)
    assert history.epoch == [1, 2] and len(history.history["loss"]) == 2
    steps = model.optimizer.iterations
    loss, acc = model.train_on_batch(x[:5], y[:5])
    assert model.optimizer.iterations == steps + 1 and np.isfinite(loss) and 0 <= acc <= 1
    logs = model.test_on_batch(x[:5], y[:5], return_dict=True)
    assert set(logs) == {"loss", "accuracy"} and model.optimizer.iterations == steps + 1
    probs = model.predict_on_batch(x[:3])
    expected = -np.mean(np.log(np.clip(probs[np.arange(3), y[:3]], 1e-7, 1)))
    assert abs(model.test_on_batch(x[:3], y[:3])[0] - expected) <= 1e-5 * expected
    # predict in batches of 7 equals one big batch (each sample is independent at inference)
    np.testing.assert_allclose(model.predict(x, batch_size=7, verbose=0), model.predict(x, batch_size=20, verbose=0),
                               rtol=1e-5, atol=1e-7)


def test_verbose_fit_prints_keras_style_epochs(rng, capsys):
    model = _compiled()
    x, y = rng.random((20, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 20)
    model.fit(x, y, epochs=2, batch_size=10, validation_split=0.5)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "val_accuracy" in out
    with pytest.raises(ValueError, match="verbose"):
        model.fit(x, y, verbose=3)
