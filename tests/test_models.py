"""The model API: building (Sequential, add, functional graphs with branches), summary, weights,
save/load round trips, devices and bad arguments."""

import numpy as np
import pytest

import cnnkit
from cnnkit import layers, models, optimizers
from cnnkit.utils import set_random_seed
from helpers import tutorial_model


def branchy_model(channels=3):
    inp = layers.Input((9, 8, channels))
    a = layers.Conv2D(4, 3, padding="same", activation="relu", name="left")(inp)
    b = layers.Conv2D(4, 1, name="right")(inp)
    s = layers.Add(name="sum")([a, b])
    c = layers.Concatenate(name="cat")([s, a])
    h = layers.BatchNormalization(name="bn")(c)
    h = layers.GlobalAveragePooling2D()(h)
    h = layers.Dropout(0.25)(h)
    out = layers.Dense(5, activation="softmax", name="head")(h)
    return cnnkit.Model(inp, out, name="branchy")


def test_tutorial_summary_counts_54410(capsys):
    model = tutorial_model()
    assert model.count_params() == 54410
    model.summary()
    text = capsys.readouterr().out
    for needle in ["Layer (type)", "Output Shape", "Param #", "(None, 26, 26, 32)", "(None, 13, 13, 32)",
                   "(None, 5408)", "(None, 10)", "320", "54,090", "Total params: 54,410 (212.54 KB)",
                   "Trainable params: 54,410", "Non-trainable params: 0"]:
        assert needle in text, needle
    assert [layer.name for layer in model.layers] == ["conv2d", "max_pooling2d", "flatten", "dense"] or \
        len(model.layers) == 4


def test_sequential_add_input_shape_and_deferred_build(rng):
    m = models.Sequential()
    m.add(layers.Conv2D(2, 3, input_shape=(7, 5, 1)))
    m.add(layers.Flatten())
    m.add(layers.Dense(3))
    assert m.count_params() == (3 * 3 * 1 * 2 + 2) + (5 * 3 * 2 * 3 + 3)
    deferred = models.Sequential([layers.Dense(4), layers.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        deferred.count_params()
    out = deferred.predict(rng.standard_normal((3, 6)).astype("float32"), verbose=0)
    assert out.shape == (3, 2) and deferred.count_params() == 6 * 4 + 4 + 4 * 2 + 2
    assert deferred.pop().units == 2


def test_functional_branches_summary_and_get_layer(capsys):
    model = branchy_model()
    model.summary()
    text = capsys.readouterr().out
    assert "Connected to" in text and "left, right" in text
    assert model.get_layer("bn").count_params() == 4 * 8
    assert model.get_layer(index=0).name.startswith("input_layer")
    with pytest.raises(ValueError, match="no layer named"):
        model.get_layer("nope")
    bn = model.get_layer("bn")
    assert len(bn.non_trainable_weights) == 2
    assert model.count_params() == sum(w.size for w in model.get_weights())


def test_trainable_flags_change_counts(capsys):
    model = tutorial_model()
    model.layers[0].trainable = False
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2
    model.summary()
    assert "Non-trainable params: 320" in capsys.readouterr().out


def test_get_set_weights_round_trip(rng):
    a, b = tutorial_model(), tutorial_model()
    b.set_weights(a.get_weights())
    x = rng.random((4, 28, 28, 1)).astype("float32")
    np.testing.assert_array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))
    with pytest.raises(ValueError, match="4 weights"):
        b.set_weights(a.get_weights()[:3])
    bad = a.get_weights()
    bad[0] = bad[0][..., :3]
    with pytest.raises(ValueError, match="shape"):
        b.set_weights(bad)


def test_predict_rows_sum_to_one(rng):
    model = tutorial_model()
    probs = model.predict(rng.random((5, 28, 28, 1)).astype("float32"), verbose=0)
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("build", [tutorial_model, branchy_model], ids=["sequential", "functional"])
def test_save_load_round_trip_is_bit_identical(tmp_path, rng, build):
    set_random_seed(3)
    model = build()
    shape = (12,) + model.inputs[0].shape[1:]
    x = rng.random(shape).astype("float32")
    y = rng.integers(0, model.outputs[0].shape[-1], 12)
    model.compile(optimizer=optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "m.cnnkit"
    model.save(path)
    loaded = models.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    # the optimizer state came along: one more identical step on both gives identical weights
    set_random_seed(9)
    model.train_on_batch(x[:4], y[:4])
    set_random_seed(9)
    loaded.train_on_batch(x[:4], y[:4])
    for w1, w2 in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(w1, w2)
    assert loaded.optimizer.iterations == model.optimizer.iterations


def test_save_weights_load_weights(tmp_path, rng):
    a, b = tutorial_model(), tutorial_model()
    a.save_weights(tmp_path / "w.cnnkit")
    b.load_weights(tmp_path / "w.cnnkit")
    for w1, w2 in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(w1, w2)
    other = models.Sequential([layers.Input((28, 28, 1)), layers.Conv2D(8, 3), layers.Flatten(), layers.Dense(10)])
    with pytest.raises(ValueError):
        other.load_weights(tmp_path / "w.cnnkit")


def test_model_file_is_a_zip_of_json_and_npy(tmp_path):
    import zipfile

    model = tutorial_model()
    model.save(tmp_path / "m.cnnkit")
    names = zipfile.ZipFile(tmp_path / "m.cnnkit").namelist()
    assert "model.json" in names and all(n.endswith(".npy") for n in names if n != "model.json")


def test_damaged_model_files_are_clear_errors(tmp_path):
    model = tutorial_model()
    path = tmp_path / "m.cnnkit"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "short.cnnkit").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        models.load_model(tmp_path / "short.cnnkit")
    flipped = bytearray(data)
    flipped[len(flipped) // 3] ^= 0xFF
    (tmp_path / "flip.cnnkit").write_bytes(bytes(flipped))
    with pytest.raises(ValueError):
        models.load_model(tmp_path / "flip.cnnkit")


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="filters"):
        layers.Conv2D(0, 3)
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="units"):
        layers.Dense(-1)
    with pytest.raises(ValueError, match="unknown activation"):
        layers.Dense(3, activation="swishy")
    with pytest.raises(TypeError, match="unexpected keyword"):
        layers.Dense(3, kernal_initializer="zeros")
    with pytest.raises(TypeError, match="Sequential takes"):
        models.Sequential([np.zeros(3)])
    inp = layers.Input((4, 4, 3))
    with pytest.raises(ValueError, match="3 channels"):
        c = layers.Conv2D(2, 3)
        c(inp)
        c(layers.Input((4, 4, 2)))


def test_disconnected_graph_is_refused():
    a, b = layers.Input((3,)), layers.Input((3,))
    out = layers.Dense(2)(layers.Add()([a, b]))
    with pytest.raises(ValueError, match="disconnected"):
        cnnkit.Model(a, out)


def test_gpu_request_without_gpu_is_one_clear_error():
    if cnnkit.device.gpu_available():
        pytest.skip("this machine has a usable GPU")
    with pytest.raises(RuntimeError, match="GPU"):
        cnnkit.set_device("gpu")
    with pytest.raises(RuntimeError, match="GPU"):
        tutorial_model().to("gpu")
    with pytest.raises(ValueError, match="device"):
        cnnkit.set_device("tpu")
    assert cnnkit.get_device() == "cpu"
