"""fit's sample_weight and class_weight, evaluate's sample_weight, validation_data=(x, y, w),
weighted_metrics and (x, y, w) batches, as Keras 3 defines them (the batch loss is
sum(w * per-sample loss) / batch size; ``metrics`` are unweighted, ``weighted_metrics`` weighted),
checked against losses and gradients computed by hand."""

import numpy as np
import pytest

import cnnkit
from cnnkit import GradientTape, layers, models, optimizers
from cnnkit.utils import set_random_seed
from helpers import rel_error


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _model(k=3, fin=4, seed=0, activation="softmax"):
    set_random_seed(seed)
    cnnkit.config.floatx = "float64"
    try:
        return models.Sequential([layers.Input((fin,)), layers.Dense(k, activation=activation)])
    finally:
        cnnkit.config.floatx = "float32"


def _data(rng, n=10, fin=4, k=3):
    return rng.standard_normal((n, fin)), rng.integers(0, k, n), rng.random(n) * 2


def test_evaluate_weighs_the_loss_by_hand(rng):
    model = _model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  weighted_metrics=["accuracy"])
    x, y, w = _data(rng)
    kernel, bias = model.get_weights()
    p = _softmax(x @ kernel + bias)
    per = -np.log(np.clip(p[np.arange(10), y], 1e-7, 1 - 1e-7))
    correct = (p.argmax(1) == y).astype(float)
    logs = model.evaluate(x, y, sample_weight=w, batch_size=4, return_dict=True, verbose=0)
    # each batch's loss is sum(w * l) / batch size; the epoch's is their mean weighted by batch size
    batches = [slice(0, 4), slice(4, 8), slice(8, 10)]
    expected = sum((w[b] * per[b]).sum() for b in batches) / 10
    assert logs["loss"] == pytest.approx(expected, rel=1e-12)
    assert logs["accuracy"] == pytest.approx(correct.mean(), rel=1e-12)  # metrics stay unweighted
    assert logs["weighted_accuracy"] == pytest.approx((w * correct).sum() / w.sum(), rel=1e-12)
    assert model.evaluate(x, y, batch_size=4, verbose=0)[0] == pytest.approx(per.mean(), rel=1e-12)


def test_train_step_gradient_is_weighted(rng):
    model = _model()
    model.compile(optimizer=optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    x, y, w = _data(rng)
    kernel, bias = model.get_weights()
    dz = (_softmax(x @ kernel + bias) - np.eye(3)[y]) * w[:, None] / 10
    model.train_on_batch(x, y, sample_weight=w)
    k2, b2 = model.get_weights()
    assert rel_error(k2, kernel - 0.5 * x.T @ dz) < 1e-10
    assert rel_error(b2, bias - 0.5 * dz.sum(0)) < 1e-10


def test_class_weight_is_sample_weight_by_label(rng):
    x, y, _ = _data(rng, n=24)
    cw = {0: 1.0, 1: 3.0, 2: 0.5}
    a, b = _model(seed=1), _model(seed=1)
    for m in (a, b):
        m.compile(optimizer=optimizers.SGD(0.2), loss="sparse_categorical_crossentropy")
    a.fit(x, y, batch_size=8, epochs=2, shuffle=False, class_weight=cw, verbose=0)
    b.fit(x, y, batch_size=8, epochs=2, shuffle=False, sample_weight=np.array([cw[c] for c in y]), verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert rel_error(wa, wb) < 1e-12
    # one-hot labels pick the class by argmax
    c = _model(seed=1)
    c.compile(optimizer=optimizers.SGD(0.2), loss="categorical_crossentropy")
    c.fit(x, np.eye(3)[y], batch_size=8, epochs=2, shuffle=False, class_weight=cw, verbose=0)
    for wa, wc in zip(a.get_weights(), c.get_weights()):
        assert rel_error(wa, wc) < 1e-12


def test_fused_and_unfused_paths_weigh_alike(rng):
    """A softmax output trains through the fused softmax-cross-entropy kernel; its weighted loss and
    gradient equal those of a loss on logits (from_logits=True, weighted per sample)."""
    x, y, w = _data(rng, n=12)
    a = _model(seed=2)
    b = _model(seed=2, activation=None)
    a.compile(optimizer=optimizers.SGD(0.3), loss="sparse_categorical_crossentropy")
    b.compile(optimizer=optimizers.SGD(0.3), loss=cnnkit.losses.SparseCategoricalCrossentropy(from_logits=True))
    la = a.train_on_batch(x, y, sample_weight=w)
    lb = b.train_on_batch(x, y, sample_weight=w)
    assert la == pytest.approx(lb, rel=1e-9)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert rel_error(wa, wb) < 1e-10


def test_mse_and_validation_data_with_weights(rng):
    model = _model(activation=None)
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse")
    x, _, w = _data(rng)
    t = rng.standard_normal((10, 3))
    kernel, bias = model.get_weights()
    per = ((x @ kernel + bias - t) ** 2).mean(axis=1)
    assert model.evaluate(x, t, sample_weight=w, batch_size=10, verbose=0) == pytest.approx((w * per).sum() / 10)
    hist = model.fit(x, t, epochs=1, batch_size=10, validation_data=(x, t, w), verbose=0)
    assert hist.history["val_loss"][0] == pytest.approx((w * per).sum() / 10)
    hist = model.fit(x, t, epochs=1, batch_size=10, sample_weight=w, validation_split=0.5, verbose=0)
    assert hist.history["val_loss"][0] == pytest.approx((w[5:] * per[5:]).sum() / 5)


def test_batches_of_x_y_and_weights(rng):
    x, y, w = _data(rng, n=12)
    a, b = _model(seed=3), _model(seed=3)
    for m in (a, b):
        m.compile(optimizer=optimizers.SGD(0.2), loss="sparse_categorical_crossentropy")
    a.fit(x, y, sample_weight=w, batch_size=4, shuffle=False, verbose=0)

    def gen():
        for i in range(0, 12, 4):
            yield x[i:i + 4], y[i:i + 4], w[i:i + 4]

    b.fit(gen(), steps_per_epoch=3, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert rel_error(wa, wb) < 1e-12


def test_compute_loss_with_sample_weight_matches_fit(rng):
    class Weighted(cnnkit.Model):
        def train_step(self, data):
            x, y, w = data
            with GradientTape() as tape:
                loss = self.compute_loss(y=y, y_pred=self(x, training=True), sample_weight=w)
            self.optimizer.apply_gradients(zip(tape.gradient(loss, self.trainable_weights), self.trainable_weights))
            return {"loss": loss}

    x, y, w = _data(rng, n=8)
    set_random_seed(4)
    cnnkit.config.floatx = "float64"
    try:
        inp = layers.Input((4,))
        out = layers.Dense(3, activation="softmax")(inp)
        custom, plain = Weighted(inp, out), models.Model(inp, layers.Dense(3, activation="softmax")(inp))
    finally:
        cnnkit.config.floatx = "float32"
    plain.set_weights(custom.get_weights())
    for m in (custom, plain):
        m.compile(optimizer=optimizers.SGD(0.4), loss="sparse_categorical_crossentropy")
    custom.fit(x, y, sample_weight=w, batch_size=8, shuffle=False, verbose=0)
    plain.fit(x, y, sample_weight=w, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(custom.get_weights(), plain.get_weights()):
        assert rel_error(a, b) < 1e-9


def test_bad_weights_are_clear_errors(rng):
    model = _model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y, w = _data(rng)
    with pytest.raises(ValueError, match=r"sample_weight must hold one weight per sample, shape \(10,\)"):
        model.fit(x, y, sample_weight=w[:7], verbose=0)
    with pytest.raises(ValueError, match="non-negative"):
        model.fit(x, y, sample_weight=-w, verbose=0)
    with_two = y.copy()
    with_two[0] = 2
    with pytest.raises(ValueError, match=r"no weight for class\(es\) \[2\]"):
        model.fit(x, with_two, class_weight={0: 1.0, 1: 2.0}, verbose=0)
    with pytest.raises(TypeError, match="class_weight must be a non-empty dict"):
        model.fit(x, y, class_weight=[1.0, 2.0, 3.0], verbose=0)
    with pytest.raises(ValueError, match="finite, non-negative"):
        model.fit(x, y, class_weight={0: 1.0, 1: float("nan"), 2: 1.0}, verbose=0)
    with pytest.raises(ValueError, match=r"validation_data\[2\]"):
        model.fit(x, y, validation_data=(x, y, w[:3]), verbose=0)
    for method, call in (("fit", lambda: model.fit(x, y, sampleweight=w, verbose=0)),
                         ("evaluate", lambda: model.evaluate(x, y, class_weight={0: 1}, verbose=0)),
                         ("predict", lambda: model.predict(x, workers=2, verbose=0))):
        with pytest.raises(TypeError, match=rf"^{method}\(\) got unexpected keyword argument") as info:
            call()
        assert "Trainer" not in str(info.value)
