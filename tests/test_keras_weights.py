"""Keras weight files onto zoo models: files written by hand with h5py in Keras 2's HDF5 layout
(layer_names / weight_names attributes, chunked attributes, "/" in DenseNet's Keras 2 names) and
Keras 3's .weights.h5 layout (layers/<name>/vars/<i>), weights="imagenet" from the local weights
folder, and the errors: missing or extra layers, wrong shapes, no h5py."""

import sys

import numpy as np
import pytest

from cnnkit import applications, layers, models
from cnnkit.layers.base import clear_session

h5py = pytest.importorskip("h5py")


def small_model():
    """Keras-named layers of every weighted kind: Conv2D (kernel, bias), BatchNormalization (4), Dense."""
    inp = layers.Input((6, 5, 3))
    x = layers.Conv2D(4, 3, padding="same", name="block1_conv1")(inp)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(3, activation="softmax", name="predictions")(x)
    return models.Model(inp, x, name="small")


def random_weights(rng):
    """{layer: [(keras weight name, array)]} in Keras' order, with positive variances."""
    return {
        "block1_conv1": [("kernel", rng.standard_normal((3, 3, 3, 4))), ("bias", rng.standard_normal(4))],
        "conv1_bn": [("gamma", rng.standard_normal(4)), ("beta", rng.standard_normal(4)),
                     ("moving_mean", rng.standard_normal(4)), ("moving_variance", rng.random(4) + 0.5)],
        "predictions": [("kernel", rng.standard_normal((120, 3))), ("bias", rng.standard_normal(3))],
    }


def write_keras2(path, weights, extra_layers=(), file_names=None, chunk=False, order=None, nest=None):
    """Keras 2's save_weights HDF5 layout: root attr layer_names; per layer a group with attr
    weight_names ("layer/kernel:0", ...) naming datasets below it. file_names maps our names to the
    names stored (Keras 2's "conv1/bn"); order permutes weight_names inside a layer; nest puts it all
    under model_weights (model.save's layout)."""
    file_names = file_names or {}
    with h5py.File(path, "w") as f:
        root = f.create_group(nest) if nest else f
        names = [file_names.get(n, n) for n in list(weights) + list(extra_layers)]
        encoded = np.array([n.encode() for n in names])
        if chunk:  # Keras splits an attribute over 64 KB into layer_names0, layer_names1, ...
            root.attrs["layer_names0"], root.attrs["layer_names1"] = encoded[:2], encoded[2:]
        else:
            root.attrs["layer_names"] = encoded
        root.attrs["backend"], root.attrs["keras_version"] = b"tensorflow", b"2.15.0"
        for ours, ws in list(weights.items()) + [(e, []) for e in extra_layers]:
            name = file_names.get(ours, ours)
            g = root.create_group(name)
            ws = [ws[i] for i in order] if order and len(ws) == len(order) else ws
            g.attrs["weight_names"] = np.array([f"{name}/{w}:0".encode() for w, _ in ws])
            for w, a in ws:
                g.create_dataset(f"{name}/{w}:0", data=a.astype(np.float32))


def write_keras3(path, weights, prefix="layers"):
    """Keras 3's .weights.h5: layers/<name>/vars/0, 1, ... in the layer's variable order."""
    with h5py.File(path, "w") as f:
        f.create_group("vars")
        for name, ws in weights.items():
            g = f.create_group(f"{prefix}/{name}/vars")
            for i, (_, a) in enumerate(ws):
                g.create_dataset(str(i), data=a.astype(np.float32))
        f.create_group(f"{prefix}/flatten/vars")  # weightless layers have empty groups


def assert_loaded(model, weights):
    for name, ws in weights.items():
        got = model.get_layer(name).get_weights()
        assert len(got) == len(ws)
        for g, (_, a) in zip(got, ws):
            np.testing.assert_array_equal(g, a.astype(np.float32))


@pytest.mark.parametrize("variant", ["plain", "chunked", "model_weights", "shuffled"])
def test_keras2_h5(tmp_path, rng, variant):
    clear_session()
    w = random_weights(rng)
    path = tmp_path / "w.h5"
    write_keras2(path, w, extra_layers=["flatten", "conv1_relu"], chunk=variant == "chunked",
                 nest="model_weights" if variant == "model_weights" else None,
                 order=(3, 1, 0, 2) if variant == "shuffled" else None)
    m = small_model()
    applications.load_keras_weights(m, path)
    assert_loaded(m, w)
    x = rng.random((2, 6, 5, 3), dtype=np.float32)
    ref = small_model()  # the same arrays set by hand give the same predictions
    ref.set_weights([a for ws in w.values() for _, a in ws])
    np.testing.assert_array_equal(m.predict(x, verbose=0), ref.predict(x, verbose=0))


def test_keras2_slash_names(tmp_path, rng):
    """Keras 2's DenseNet stored 'conv1/bn' (nested HDF5 groups); it matches cnnkit's 'conv1_bn'."""
    clear_session()
    w = random_weights(rng)
    path = tmp_path / "w.h5"
    write_keras2(path, w, file_names={"conv1_bn": "conv1/bn"})
    m = small_model()
    applications.load_keras_weights(m, str(path))
    assert_loaded(m, w)


@pytest.mark.parametrize("stored", ["probs", "fc1000"])
def test_keras_applications_classifier_names(tmp_path, rng, stored):
    """The published ImageNet files call the classifier 'probs' (ResNet) or 'fc1000' (DenseNet)."""
    clear_session()
    w = random_weights(rng)
    write_keras2(tmp_path / "w.h5", w, file_names={"predictions": stored})
    m = small_model()
    applications.load_keras_weights(m, tmp_path / "w.h5")
    assert_loaded(m, w)


def test_keras3_weights_h5(tmp_path, rng):
    clear_session()
    w = random_weights(rng)
    path = tmp_path / "w.weights.h5"
    write_keras3(path, w)
    m = small_model()
    applications.load_keras_weights(m, path)
    assert_loaded(m, w)


def test_errors_leave_the_weights_alone(tmp_path, rng):
    clear_session()
    w = random_weights(rng)
    m = small_model()
    before = m.get_weights()
    bad = dict(w)
    bad["predictions"] = [("kernel", rng.standard_normal((120, 5))), ("bias", rng.standard_normal(5))]
    write_keras2(tmp_path / "shape.h5", bad)
    with pytest.raises(ValueError, match=r"predictions/kernel.*\(120, 3\).*\(120, 5\)"):
        applications.load_keras_weights(m, tmp_path / "shape.h5")
    missing = {k: v for k, v in w.items() if k != "conv1_bn"}
    write_keras3(tmp_path / "missing.weights.h5", missing)
    with pytest.raises(ValueError, match="'conv1_bn'.*not in the file"):
        applications.load_keras_weights(m, tmp_path / "missing.weights.h5")
    extra = dict(w, fc1=[("kernel", rng.standard_normal((2, 2))), ("bias", rng.standard_normal(2))])
    write_keras2(tmp_path / "extra.h5", extra)
    with pytest.raises(ValueError, match="lacks: fc1"):
        applications.load_keras_weights(m, tmp_path / "extra.h5")
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    applications.load_keras_weights(m, tmp_path / "extra.h5", skip_unused=True)
    assert_loaded(m, w)
    (tmp_path / "other.h5").write_bytes(b"")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(2))
    with pytest.raises(ValueError, match="neither a Keras 2"):
        applications.load_keras_weights(m, tmp_path / "other.h5")


def test_no_h5py_is_a_clear_import_error(tmp_path, rng, monkeypatch):
    write_keras3(tmp_path / "w.weights.h5", random_weights(rng))
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="pip install h5py"):
        applications.load_keras_weights(small_model(), tmp_path / "w.weights.h5")


@pytest.mark.parametrize("writer", [write_keras2, write_keras3], ids=["keras2", "keras3"])
def test_truncated_or_bit_flipped_file_is_a_clear_error(tmp_path, rng, writer):
    """Every cut and random bit flips: loading raises ValueError naming the file (whatever libhdf5
    structure the damage hit) and leaves the model as it was, or loads finite values of the right
    shapes (HDF5 keeps no checksum of the data, so a flipped mantissa bit is invisible)."""
    clear_session()
    w = random_weights(rng)
    good = tmp_path / "good.h5"
    writer(good, w)
    data = good.read_bytes()
    m = small_model()
    before = m.get_weights()
    refused = 0
    for trial in range(120):
        damaged = bytearray(data)
        if trial < 24:
            damaged = damaged[: len(data) * trial // 24]
        else:
            for _ in range(1 + trial % 3):
                damaged[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        p = tmp_path / f"damaged{trial}.h5"
        p.write_bytes(bytes(damaged))
        m.set_weights(before)
        try:
            applications.load_keras_weights(m, p)
        except ValueError as e:
            assert str(p) in str(e), e
            for a, b in zip(before, m.get_weights()):
                np.testing.assert_array_equal(a, b)
            refused += 1
        else:
            assert all(np.isfinite(a).all() for a in m.get_weights())
    assert refused >= 24  # at least every truncation


def test_weights_that_are_nan_or_not_numbers_or_claim_huge_shapes_are_refused(tmp_path, rng):
    clear_session()
    m = small_model()
    w = random_weights(rng)
    nan = dict(w, conv1_bn=[(n, a.copy()) for n, a in w["conv1_bn"]])
    nan["conv1_bn"][1][1][2] = np.nan
    write_keras3(tmp_path / "nan.weights.h5", nan)
    with pytest.raises(ValueError, match="NaN or infinity"):
        applications.load_keras_weights(m, tmp_path / "nan.weights.h5")
    # names and counts are matched first, so these files hold every layer, with one dataset replaced
    write_keras3(tmp_path / "text.weights.h5", w)
    with h5py.File(tmp_path / "text.weights.h5", "a") as f:
        del f["layers/predictions/vars/0"]
        f.create_dataset("layers/predictions/vars/0", data=np.array([b"kernel"]))
    with pytest.raises(ValueError, match="not a real number"):
        applications.load_keras_weights(m, tmp_path / "text.weights.h5")
    # a dataset whose header claims 2**38 floats (1 TiB) that the file does not hold: refused before
    # anything is allocated, not a MemoryError or the OOM killer
    write_keras3(tmp_path / "huge.weights.h5", w)
    with h5py.File(tmp_path / "huge.weights.h5", "a") as f:
        del f["layers/predictions/vars/0"]
        f.create_dataset("layers/predictions/vars/0", shape=(2**19, 2**19), dtype="f4")
    with pytest.raises(ValueError, match=r"claims shape \(524288, 524288\)"):
        applications.load_keras_weights(m, tmp_path / "huge.weights.h5")


def keras2_densenet_name(name):
    """DenseNet's stem as Keras 2 named it: conv1/conv, conv1/bn (blocks kept their '_' names)."""
    return {"conv1_conv": "conv1/conv", "conv1_bn": "conv1/bn"}.get(name, name)


def test_imagenet_from_the_weights_folder(tmp_path, rng, monkeypatch):
    """weights="imagenet" finds Keras' file name in CNNKIT_WEIGHTS_DIR / ~/.cnnkit/weights and loads it
    (a file of random values in the layout of Keras 2's DenseNet121 notop file; 32x32 input, since
    without the top the weights do not depend on the image size)."""
    clear_session()
    template = applications.DenseNet121(include_top=False, input_shape=(32, 32, 3))
    weights = {}
    for layer in template.layers:
        if layer.weights:
            weights[layer.name] = [(v.name.split("/")[-1], rng.standard_normal(v.shape).astype(np.float32))
                                   for v in layer.weights]
    # 1 + 2 * 58 + 3 convolutions; their BatchNormalizations and the final one
    assert len(weights) == 120 + 121
    home = tmp_path / "home"
    folder = home / ".cnnkit" / "weights"
    folder.mkdir(parents=True)
    write_keras2(folder / "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", weights,
                 file_names={n: keras2_densenet_name(n) for n in weights})
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CNNKIT_WEIGHTS_DIR", raising=False)
    m = applications.DenseNet121(include_top=False, weights="imagenet", input_shape=(32, 32, 3))
    assert_loaded(m, weights)
    monkeypatch.setenv("CNNKIT_WEIGHTS_DIR", str(tmp_path / "nowhere"))
    assert applications.imagenet_weights_path("densenet121", include_top=False).startswith(str(folder))
