"""Callbacks: each one driven by a scripted sequence of epoch logs, checked for the exact epoch at which
it acts (Keras' rules, worked out by hand in the comments); then the same callbacks inside a real
``fit``, the progress bar on a terminal and off one, and the plots."""

import csv
import io
import math
import os

import numpy as np
import pytest

from cnnkit import callbacks, layers, metrics, models
from cnnkit.utils import set_random_seed


class FakeOptimizer:
    def __init__(self, lr):
        self.learning_rate = lr


class FakeModel:
    """What callbacks touch: stop_training, get/set_weights (the weights are the epoch they were
    taken at), the optimizer's learning rate, save/save_weights (recorded)."""

    def __init__(self, lr=0.1):
        self.stop_training = False
        self.optimizer = FakeOptimizer(lr)
        self.epoch = -1
        self.restored = None
        self.saved = []

    def get_weights(self):
        return [np.array(self.epoch)]

    def set_weights(self, w):
        self.restored = int(w[0])

    def save(self, path, overwrite=True):
        self.saved.append(("model", path))

    def save_weights(self, path, overwrite=True):
        self.saved.append(("weights", path))


def drive(cb, values, key="val_loss", model=None):
    """Run cb through epochs whose logs hold the scripted values; returns (model, epochs run, logs)."""
    model = model or FakeModel()
    cb.set_model(model)
    cb.set_params({"epochs": len(values), "steps": 1, "verbose": 0})
    cb.on_train_begin({})
    ran, all_logs = 0, []
    for epoch, v in enumerate(values):
        model.epoch = epoch
        cb.on_epoch_begin(epoch, {})
        logs = {"loss": 1.0, key: v}
        cb.on_epoch_end(epoch, logs)
        all_logs.append(logs)
        ran += 1
        if model.stop_training:
            break
    cb.on_train_end({})
    return model, ran, all_logs


# ---------------------------------------------------------------------- EarlyStopping
def test_early_stopping_patience_counts_epochs_without_improvement():
    # best 0.5 at epoch 2; epochs 3 and 4 do not improve -> wait reaches 2 at epoch 4: stop there
    model, ran, _ = drive(callbacks.EarlyStopping(patience=2), [1.0, 0.8, 0.5, 0.6, 0.55, 0.1])
    assert ran == 5 and model.stop_training
    # patience 0 stops at the first epoch that does not improve (epoch 1), never at epoch 0
    _, ran, _ = drive(callbacks.EarlyStopping(patience=0), [1.0, 1.0, 0.5])
    assert ran == 2


def test_early_stopping_min_delta_mode_and_baseline():
    # min_delta 0.1: 0.95 and 0.92 are not improvements on 1.0 -> stop at epoch 2 (patience 2)
    _, ran, _ = drive(callbacks.EarlyStopping(patience=2, min_delta=0.1), [1.0, 0.95, 0.92, 0.5])
    assert ran == 3
    # accuracy is maximized in "auto" mode: improvements at 1 and 2, none at 3 -> stop at 3
    _, ran, _ = drive(callbacks.EarlyStopping(monitor="val_accuracy", patience=1), [0.5, 0.6, 0.7, 0.7, 0.9],
                      key="val_accuracy")
    assert ran == 4
    # mode="max" on a loss-named key turns the direction round
    _, ran, _ = drive(callbacks.EarlyStopping(mode="max", patience=0), [1.0, 2.0, 1.5], key="val_loss")
    assert ran == 3
    # baseline 0.5: an epoch that improves on the best but not on the baseline does not reset the
    # wait (and, as in Keras, an improving epoch never stops): waits 1, 2, 3 -> stop at epoch 2 ...
    _, ran, _ = drive(callbacks.EarlyStopping(patience=2, baseline=0.5), [0.9, 0.8, 0.8, 0.8])
    assert ran == 3
    # ... where without the baseline the waits are 0, 0, 1, 2 -> stop at epoch 3
    _, ran, _ = drive(callbacks.EarlyStopping(patience=2), [0.9, 0.8, 0.8, 0.8])
    assert ran == 4


def test_early_stopping_restores_the_best_epoch_and_start_from_epoch():
    model, ran, _ = drive(callbacks.EarlyStopping(patience=2, restore_best_weights=True), [1.0, 0.3, 0.4, 0.5, 0.1])
    assert ran == 4 and model.restored == 1
    # no improvement after the first monitored epoch: the weights of that epoch come back
    model, _, _ = drive(callbacks.EarlyStopping(patience=1, restore_best_weights=True, start_from_epoch=2),
                        [0.1, 0.1, 1.0, 2.0, 3.0])
    assert model.restored == 2
    # epochs before start_from_epoch never count: 5 epochs of no progress but start_from_epoch=4
    _, ran, _ = drive(callbacks.EarlyStopping(patience=0, start_from_epoch=4), [1.0] * 5)
    assert ran == 5


def test_early_stopping_missing_monitor_warns_and_bad_arguments_raise():
    with pytest.warns(RuntimeWarning, match="val_loss.*available: loss"):
        cb = callbacks.EarlyStopping()
        cb.set_model(FakeModel())
        cb.on_train_begin()
        cb.on_epoch_end(0, {"loss": 1.0})
    with pytest.raises(ValueError, match="patience"):
        callbacks.EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="mode"):
        callbacks.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="minimized or maximized"):
        callbacks.EarlyStopping(monitor="val_widgets")


# ---------------------------------------------------------------------- ReduceLROnPlateau
def test_reduce_lr_on_plateau_factor_patience_cooldown_and_min_lr():
    cb = callbacks.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2)
    _, _, logs = drive(cb, [1.0] * 8, model=FakeModel(lr=0.1))
    lrs = [round(entry["learning_rate"], 6) for entry in logs]
    # Keras' order: the cooldown counter is decremented first, then the epoch is counted if the
    # counter reached 0. Epoch 0 sets best; waits 1, 2 -> halve at 2 (cooldown 2); epoch 3 is in
    # cooldown (2 -> 1); epoch 4 (1 -> 0) counts wait 1; epoch 5 wait 2 -> halve; 6 skipped; 7 wait 1
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025]
    # cooldown=1 changes nothing in that order (the counter is back at 0 in the next epoch)
    _, _, logs = drive(callbacks.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1), [1.0] * 5,
                       model=FakeModel(lr=0.1))
    assert [round(entry["learning_rate"], 6) for entry in logs] == [0.1, 0.1, 0.05, 0.05, 0.025]
    cb = callbacks.ReduceLROnPlateau(factor=0.1, patience=1, min_lr=0.05)
    _, _, logs = drive(cb, [1.0, 2.0, 3.0, 4.0], model=FakeModel(lr=0.1))
    assert [round(entry["learning_rate"], 6) for entry in logs] == [0.1, 0.05, 0.05, 0.05]
    # improvements (by more than min_delta) reset the wait
    cb = callbacks.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.01)
    _, _, logs = drive(cb, [1.0, 0.9, 0.8, 0.795, 0.7, 0.7, 0.7], model=FakeModel(lr=1.0))
    assert [entry["learning_rate"] for entry in logs] == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.0)


# ---------------------------------------------------------------------- LearningRateScheduler
def test_learning_rate_scheduler_sets_the_rate_before_each_epoch():
    seen = []
    cb = callbacks.LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr * 0.5)
    model = FakeModel(lr=0.8)

    class Recorder(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.model.optimizer.learning_rate)

    rec = Recorder()
    rec.set_model(model)
    cb.set_model(model)
    for epoch in range(4):
        cb.on_epoch_begin(epoch)
        rec.on_epoch_begin(epoch)
    assert seen == [0.8, 0.8, 0.4, 0.2]
    one_arg = callbacks.LearningRateScheduler(lambda epoch: 0.1 * (epoch + 1))
    one_arg.set_model(model)
    one_arg.on_epoch_begin(2)
    logs = {}
    one_arg.on_epoch_end(2, logs)
    assert model.optimizer.learning_rate == pytest.approx(0.3) and logs["learning_rate"] == pytest.approx(0.3)
    bad = callbacks.LearningRateScheduler(lambda epoch, lr: "fast")
    bad.set_model(model)
    with pytest.raises(ValueError, match="finite float"):
        bad.on_epoch_begin(0)
    with pytest.raises(TypeError, match="callable"):
        callbacks.LearningRateScheduler(0.1)


# ---------------------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_fills_the_path_and_saves_only_improvements(tmp_path):
    pattern = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.cnnkit")
    model, _, _ = drive(callbacks.ModelCheckpoint(pattern, save_best_only=True), [0.9, 0.7, 0.8, 0.6])
    # epochs 1, 2 and 4 (1-based) improve; epoch 3 does not
    assert model.saved == [("model", str(tmp_path / name)) for name in
                           ("ckpt-01-0.90.cnnkit", "ckpt-02-0.70.cnnkit", "ckpt-04-0.60.cnnkit")]
    model, _, _ = drive(callbacks.ModelCheckpoint(str(tmp_path / "w.cnnkit"), save_weights_only=True), [3, 2, 1])
    assert model.saved == [("weights", str(tmp_path / "w.cnnkit"))] * 3
    # initial_value_threshold: nothing is saved until the value beats it
    model, _, _ = drive(callbacks.ModelCheckpoint(str(tmp_path / "b.cnnkit"), save_best_only=True,
                                                  initial_value_threshold=0.75), [0.9, 0.8, 0.7])
    assert len(model.saved) == 1
    with pytest.raises(KeyError, match="val_acc"):
        drive(callbacks.ModelCheckpoint(str(tmp_path / "{val_acc}.cnnkit")), [1.0])
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.ModelCheckpoint("x.cnnkit", save_freq="batch")


# ---------------------------------------------------------------------- CSVLogger, TerminateOnNaN, Lambda
def test_csv_logger_writes_a_header_and_a_row_per_epoch_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    drive(callbacks.CSVLogger(path), [0.5, 0.25])
    drive(callbacks.CSVLogger(path, append=True), [0.125])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["epoch", "loss", "val_loss"], ["0", "1.0", "0.5"], ["1", "1.0", "0.25"], ["0", "1.0", "0.125"]]


def test_terminate_on_nan_stops_at_the_first_bad_batch(capsys):
    model = FakeModel()
    cb = callbacks.TerminateOnNaN()
    cb.set_model(model)
    for batch, loss in enumerate([0.5, 0.4, math.inf]):
        cb.on_train_batch_end(batch, {"loss": loss})
        if model.stop_training:
            break
    assert batch == 2 and model.stop_training and "Batch 2: Invalid loss" in capsys.readouterr().out


def test_lambda_callback_calls_the_given_functions_only():
    events = []
    cb = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: events.append(("end", epoch, logs["val_loss"])),
                                  on_train_begin=lambda logs: events.append("begin"),
                                  on_batch_end=lambda batch, logs: events.append(("batch", batch)))
    drive(cb, [0.5, 0.25])
    cb.on_train_batch_end(7, {})  # the older on_batch_end name serves the train-batch hook
    assert events == ["begin", ("end", 0, 0.5), ("end", 1, 0.25), ("batch", 7)]
    with pytest.raises(TypeError, match="unknown hook"):
        callbacks.LambdaCallback(on_epoch_ending=print)
    with pytest.raises(TypeError, match="callable"):
        callbacks.LambdaCallback(on_epoch_end=3)


# ---------------------------------------------------------------------- inside fit
def _model():
    model = models.Sequential([
        layers.Input((6, 6, 1)),
        layers.Conv2D(4, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _data(rng, n=40):
    return rng.random((n, 6, 6, 1)).astype("float32"), rng.integers(0, 3, n)


def test_callbacks_inside_fit_act_at_the_scripted_epochs(rng, tmp_path):
    """A LambdaCallback placed first rewrites val_loss with a script; EarlyStopping, ModelCheckpoint,
    ReduceLROnPlateau and CSVLogger then see the scripted values in the same logs dict."""
    set_random_seed(1)
    model = _model()
    x, y = _data(rng)
    script = [1.0, 0.6, 0.7, 0.8, 0.9, 0.2]

    def rewrite(epoch, logs):
        logs["val_loss"] = script[epoch]

    weights_at = []
    cbs = [callbacks.LambdaCallback(on_epoch_end=rewrite),
           callbacks.ModelCheckpoint(str(tmp_path / "best-{epoch}.cnnkit"), save_best_only=True),
           callbacks.ReduceLROnPlateau(factor=0.5, patience=1),
           callbacks.EarlyStopping(patience=3, restore_best_weights=True),
           callbacks.CSVLogger(tmp_path / "log.csv"),
           callbacks.LambdaCallback(on_epoch_end=lambda e, logs: weights_at.append(model.get_weights()))]
    history = model.fit(x, y, epochs=6, batch_size=8, validation_data=(x, y), verbose=0, callbacks=cbs)
    # best at epoch 1; epochs 2, 3, 4 do not improve -> EarlyStopping stops after epoch 4
    assert history.epoch == [0, 1, 2, 3, 4]
    assert sorted(os.listdir(tmp_path)) == ["best-1.cnnkit", "best-2.cnnkit", "log.csv"]
    # ReduceLROnPlateau halves at epoch 2 (first miss, patience 1), then every epoch after
    assert history.history["learning_rate"] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4])
    for got, want in zip(model.get_weights(), weights_at[1]):  # restored to the end of epoch 1
        np.testing.assert_array_equal(got, want)
    restored = models.load_model(tmp_path / "best-2.cnnkit")
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["val_loss"]) for r in rows] == script[:5]


def test_checkpoint_every_n_batches(rng, tmp_path):
    model = _model()
    x, y = _data(rng, 40)  # 5 batches of 8 per epoch, 2 epochs: 10 batches -> saves after 4 and 8
    cb = callbacks.ModelCheckpoint(str(tmp_path / "e{epoch}-b{batch}.cnnkit"), save_freq=4, save_weights_only=True)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[cb])
    assert sorted(os.listdir(tmp_path)) == ["e1-b4.cnnkit", "e2-b3.cnnkit"]


# ---------------------------------------------------------------------- progress output
class Tty(io.StringIO):
    def isatty(self):
        return True


def _progbar_run(stream, verbose, steps=5):
    bar = callbacks.ProgbarLogger(stream=stream, interval=0)
    bar.set_params({"epochs": 2, "steps": steps, "verbose": verbose})
    bar.on_train_begin()
    for epoch in range(2):
        bar.on_epoch_begin(epoch)
        for step in range(steps):
            bar.on_train_batch_end(step, {"loss": 1.0 / (step + 1), "accuracy": 0.5})
        bar.on_epoch_end(epoch, {"loss": 0.25, "accuracy": 0.75, "val_loss": 0.3, "val_accuracy": 0.7})
    return stream.getvalue()


def test_progress_bar_redraws_in_place_on_a_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    out = _progbar_run(Tty(), verbose=1)
    lines = out.split("\n")
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and lines[-1] == ""
    frames = lines[1].split("\r")[1:]  # each batch redraws the line, then the epoch line closes it
    assert len(frames) == 6
    assert frames[0].startswith("1/5 [======>") and "ETA: " in frames[0] and "loss: 1.0000" in frames[0]
    assert frames[-1].startswith("5/5 [==============================] - 0s")
    assert "/step - loss: 0.2500 - accuracy: 0.7500 - val_loss: 0.3000 - val_accuracy: 0.7000" in frames[-1]


def test_progress_is_plain_lines_off_a_terminal_and_with_verbose_2():
    for stream, verbose in ((io.StringIO(), 1), (Tty(), 2)):
        lines = _progbar_run(stream, verbose).splitlines()
        assert len(lines) == 4 and "\r" not in "".join(lines)
        assert lines[0] == "Epoch 1/2" and lines[1].startswith("5/5 - 0s ") and "val_accuracy: 0.7000" in lines[1]


# ---------------------------------------------------------------------- plots
def test_plots_write_png_files(rng, tmp_path):
    pytest.importorskip("matplotlib")
    from cnnkit.utils import plot

    model = _model()
    x, y = _data(rng)
    history = model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    probs = model.predict(x, verbose=0)
    written = [
        plot.plot_history(history, tmp_path / "h.png"),
        plot.plot_confusion_matrix(metrics.confusion_matrix(y, probs, num_classes=3), tmp_path / "cm.png",
                                   class_names=["a", "b", "c"], normalize=True),
        plot.plot_images(x, y, probs, tmp_path / "img.png", max_images=9),
        plot.plot_filters(model.layers[0], tmp_path / "f.png"),
        plot.plot_feature_maps(model, x[0], model.layers[0].name, tmp_path / "fm.png"),
    ]
    for path in written:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 2000
    # the feature maps come from the layer's output: the sub-model agrees with running the layer
    sub = models.Model(model.inputs, model.layers[0].output).predict(x[:1], verbose=0)
    np.testing.assert_array_equal(sub, model.layers[0](x[:1]))
    with pytest.raises(ValueError, match="not in the history"):
        plot.plot_history(history, tmp_path / "x.png", metrics="auc")
    with pytest.raises(ValueError, match="square"):
        plot.plot_confusion_matrix(np.ones((2, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="Conv2D"):
        plot.plot_filters(model.layers[-1], tmp_path / "x.png")
