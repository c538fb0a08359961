"""callbacks.TensorBoard writes Keras' scalars in TensorBoard's event format: read back here with
TensorBoard's own event loader (the tensorboard package is a test dependency)."""

import glob
import os

import numpy as np
import pytest

from cnnkit import callbacks, layers, models

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402


def _scalars(directory):
    """{tag: [(step, value), ...]} of every event file in directory."""
    out = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in EventFileLoader(path).Load():
            for v in event.summary.value:  # TensorBoard's loader turns simple_value scalars into tensors
                value = v.simple_value if v.HasField("simple_value") else tensor_util.make_ndarray(v.tensor).item()
                out.setdefault(v.tag, []).append((event.step, value))
    return out


def _model():
    m = models.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_epoch_scalars_for_training_and_validation(rng, tmp_path):
    x, y = rng.random((20, 4)).astype("float32"), rng.integers(0, 3, 20)
    history = _model().fit(x, y, epochs=3, batch_size=5, validation_split=0.2, verbose=0,
                           callbacks=[callbacks.TensorBoard(tmp_path)])
    train, val = _scalars(tmp_path / "train"), _scalars(tmp_path / "validation")
    assert set(train) == {"epoch_loss", "epoch_accuracy"} and set(val) == {"epoch_loss", "epoch_accuracy"}
    assert [s for s, _ in train["epoch_loss"]] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in train["epoch_loss"]], history.history["loss"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in val["epoch_accuracy"]], history.history["val_accuracy"], rtol=1e-6)


@pytest.mark.parametrize("freq,count", [("batch", 8), (3, 2)])
def test_batch_scalars(rng, tmp_path, freq, count):
    x, y = rng.random((16, 4)).astype("float32"), rng.integers(0, 3, 16)
    seen = []
    _model().fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[
        callbacks.TensorBoard(tmp_path, update_freq=freq),
        callbacks.LambdaCallback(on_train_batch_end=lambda i, logs: seen.append(logs["loss"]))])
    train = _scalars(tmp_path / "train")
    steps = [s for s, _ in train["batch_loss"]]
    assert len(steps) == count and steps == sorted(steps)
    if freq == "batch":
        np.testing.assert_allclose([v for _, v in train["batch_loss"]], seen, rtol=1e-6)
    assert [s for s, _ in train["epoch_loss"]] == [0, 1]


def test_bad_update_freq():
    with pytest.raises(ValueError, match="update_freq"):
        callbacks.TensorBoard("logs", update_freq=0)
