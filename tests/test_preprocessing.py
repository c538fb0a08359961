"""Preprocessing and augmentation layers: shapes and dtypes, identity at inference, exact results on
small hand-made images (flips, integer shifts against np.roll, 90-degree turns against np.rot90),
every fill mode and interpolation against a brute-force sampler written here over np.pad, contrast
and Normalization against NumPy formulas, gradients against finite differences, seeds, configs,
bad arguments, and a model that trains with augmentation and reloads."""

import json

import numpy as np
import pytest

from cnnkit import _random, layers, models
from cnnkit.utils import set_random_seed

from helpers import assert_close, assert_grad, assert_raises_naming, to_numpy

L = layers
AUGMENTATIONS = {  # every random layer, as a factory taking the base-layer keyword arguments
    "flip": lambda **k: L.RandomFlip(**k),
    "translation": lambda **k: L.RandomTranslation(0.3, (-0.2, 0.4), **k),
    "rotation": lambda **k: L.RandomRotation(0.2, **k),
    "zoom": lambda **k: L.RandomZoom((-0.3, 0.3), 0.2, **k),
    "crop": lambda **k: L.RandomCrop(4, 3, **k),
    "contrast": lambda **k: L.RandomContrast(0.5, **k),
}
ALL = {**AUGMENTATIONS,
       "rescaling": lambda **k: L.Rescaling(1 / 255, offset=-0.5, **k),
       "normalization": lambda **k: L.Normalization(mean=[1.0, 2.0], variance=[4.0, 0.25], **k)}


def images(rng, shape=(3, 7, 6, 2), high=255):
    return rng.uniform(0, high, shape)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("training", [False, True])
def test_shapes_and_dtypes(xp, rng, name, training):
    layer = ALL[name]()
    x = xp.asarray(images(rng).astype(np.uint8))  # integer pixels come out as the layer's floats
    y = layer(x, training=training)
    assert y.dtype == np.float32 and tuple(y.shape) == layer.compute_output_shape(x.shape)
    assert layer(L.Input((7, 6, 2))).shape == (None,) + tuple(y.shape[1:])
    assert L.Rescaling(0.5, dtype="float64")(x).dtype == np.float64


@pytest.mark.parametrize("name", [n for n in AUGMENTATIONS if n != "crop"])
def test_augmentations_are_the_identity_at_inference(xp, rng, name):
    x = xp.asarray(images(rng), dtype=np.float32)
    layer = AUGMENTATIONS[name]()
    y, saved = layer.forward(x, training=False)
    assert np.array_equal(to_numpy(y), to_numpy(x))
    dy = xp.asarray(rng.standard_normal(x.shape))
    assert layer.backward(saved, dy) is dy and layer.backward(saved, dy, False) is None


@pytest.mark.parametrize("mode, flip", [("horizontal", lambda a: a[:, ::-1]), ("vertical", lambda a: a[::-1]),
                                        ("horizontal_and_vertical", lambda a: a[::-1, ::-1])])
def test_flip_reverses_columns_or_rows_per_image(xp, rng, mode, flip):
    img = rng.standard_normal((4, 5, 2))
    y = to_numpy(L.RandomFlip(mode, seed=1, dtype="float64")(xp.asarray(np.stack([img] * 40)), training=True))
    flipped = [np.array_equal(out, flip(img)) for out in y]
    assert all(f or np.array_equal(out, img) for f, out in zip(flipped, y))
    assert 5 < sum(flipped) < 35  # about half, each image its own draw


def shift_expected(x, dy, dx, fill_mode, fill_value):
    """x shifted down by dy and right by dx; the uncovered pixels as np.roll / np.pad extend x."""
    if fill_mode in ("wrap", "constant"):
        out = np.roll(x, (dy, dx), axis=(1, 2))
        if fill_mode == "constant":
            out[:, slice(0, dy) if dy >= 0 else slice(dy, None)] = fill_value
            out[:, :, slice(0, dx) if dx >= 0 else slice(dx, None)] = fill_value
        return out
    p = 10
    ext = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode={"reflect": "symmetric", "nearest": "edge"}[fill_mode])
    h, w = x.shape[1:3]
    return ext[:, p - dy:p - dy + h, p - dx:p - dx + w]


@pytest.mark.parametrize("fill_mode", ["constant", "wrap", "reflect", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_translation_by_whole_pixels_matches_roll_and_fill(xp, rng, fill_mode, interpolation):
    x = rng.standard_normal((2, 8, 6, 3))
    layer = L.RandomTranslation((0.25, 0.25), (-0.5, -0.5), fill_mode, interpolation, fill_value=-7.0,
                                dtype="float64")  # forced draws: 2 rows down, 3 columns left
    assert_close(layer(xp.asarray(x), training=True), shift_expected(x, 2, -3, fill_mode, -7.0))


@pytest.mark.parametrize("factor, turns", [((0.25, 0.25), 1), ((-0.25, -0.25), -1), ((0.5, 0.5), 2)])
def test_rotation_by_quarter_turns_matches_rot90(xp, rng, factor, turns):
    x = rng.standard_normal((2, 5, 5, 3))
    y = L.RandomRotation(factor, fill_mode="constant")(xp.asarray(x, dtype=np.float32), training=True)
    # sin and cos of the angle are off by ~1e-16 in float64, ~1e-8 after the float32 sampling
    assert_close(y, np.rot90(x, turns, axes=(1, 2)), np.float32)


def test_zoom_factor_zero_is_the_identity(xp, rng):
    x = rng.standard_normal((3, 5, 4, 2))
    assert np.array_equal(to_numpy(L.RandomZoom(0.0, dtype="float64")(xp.asarray(x), training=True)), x)


def sample_brute_force(img, src, fill_mode, interpolation, fill_value):
    """One image sampled at src(u, v) -> (column, row), pixel by pixel, over the image extended by
    np.pad in the fill mode's way."""
    h, w, _ = img.shape
    p = 2 * (h + w)
    pad = {"reflect": "symmetric", "wrap": "wrap", "nearest": "edge", "constant": "constant"}[fill_mode]
    ext = np.pad(img, ((p, p), (p, p), (0, 0)), mode=pad,
                 **({"constant_values": fill_value} if fill_mode == "constant" else {}))
    out = np.empty_like(img)
    for v in range(h):
        for u in range(w):
            sx, sy = src(u, v)
            if interpolation == "nearest":
                out[v, u] = ext[int(np.floor(sy + 0.5)) + p, int(np.floor(sx + 0.5)) + p]
                continue
            x0, y0 = int(np.floor(sx)), int(np.floor(sy))
            fx, fy = sx - x0, sy - y0
            a, b = ext[y0 + p, x0 + p], ext[y0 + p, x0 + 1 + p]
            c, d = ext[y0 + 1 + p, x0 + p], ext[y0 + 1 + p, x0 + 1 + p]
            out[v, u] = (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)
    return out


H, W = 5, 7
CX, CY = (W - 1) / 2, (H - 1) / 2
TH = 0.1 * 2 * np.pi  # 36 degrees
GEOMETRIC = {  # a layer with forced draws, and where its output pixel (u, v) reads the input
    "rotation": (lambda **k: L.RandomRotation((0.1, 0.1), **k),
                 lambda u, v: (np.cos(TH) * (u - CX) - np.sin(TH) * (v - CY) + CX,
                               np.sin(TH) * (u - CX) + np.cos(TH) * (v - CY) + CY)),
    "zoom": (lambda **k: L.RandomZoom((-0.2, -0.2), (0.3, 0.3), **k),
             lambda u, v: (CX + 1.3 * (u - CX), CY + 0.8 * (v - CY))),
    "translation": (lambda **k: L.RandomTranslation((0.15, 0.15), (-0.15, -0.15), **k),
                    lambda u, v: (u + 0.15 * W, v - 0.15 * H)),
}


@pytest.mark.parametrize("name", GEOMETRIC)
@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_resampling_matches_a_brute_force_sampler(xp, rng, name, fill_mode, interpolation):
    make, src = GEOMETRIC[name]
    x = rng.standard_normal((2, H, W, 2))
    layer = make(fill_mode=fill_mode, interpolation=interpolation, fill_value=2.5, dtype="float64")
    want = np.stack([sample_brute_force(img, src, fill_mode, interpolation, 2.5) for img in x])
    assert_close(layer(xp.asarray(x), training=True), want)


@pytest.mark.parametrize("name", ["translation", "rotation", "zoom", "contrast"])
def test_each_image_gets_its_own_draw(xp, rng, name):
    x = np.stack([images(rng, (6, 5, 1))] * 8)
    y = to_numpy(AUGMENTATIONS[name](seed=2)(xp.asarray(x), training=True))
    assert len({out.tobytes() for out in y}) == 8


def test_contrast_follows_the_keras_formula_per_image_and_channel(xp, rng):
    x = images(rng, (40, 4, 5, 3))
    y = to_numpy(L.RandomContrast(0.4, value_range=(-1e9, 1e9), seed=3, dtype="float64")(xp.asarray(x),
                                                                                       training=True))
    mean = x.mean(axis=(1, 2), keepdims=True)
    d, e = (x - mean)[..., :1], (y - mean)[..., :1]
    f = (d * e).sum(axis=(1, 2), keepdims=True) / (d * d).sum(axis=(1, 2), keepdims=True)  # each image's factor,
    # fitted on its first channel
    assert_close(y, (x - mean) * f + mean)  # one factor for every pixel and channel of an image
    assert f.min() >= 0.6 and f.max() <= 1.4 and f.min() < 0.8 and f.max() > 1.2  # [1 - 0.4, 1 + 0.4]


def test_contrast_clips_to_value_range(xp, rng):
    x = rng.uniform(0, 2, (2, 4, 5, 3))
    y = L.RandomContrast(0.0, value_range=(0.5, 1.5), dtype="float64")(xp.asarray(x), training=True)
    assert_close(y, np.clip(x, 0.5, 1.5))  # factor 0: a contrast of exactly 1, then the clip


def test_random_crop_in_training_takes_one_window_per_batch(xp, rng):
    x = rng.standard_normal((3, 7, 6, 2))
    layer = L.RandomCrop(4, 3, seed=5, dtype="float64")
    corners = set()
    for _ in range(12):
        y = to_numpy(layer(xp.asarray(x), training=True))
        found = [(t, l) for t in range(4) for l in range(4) if np.array_equal(y, x[:, t:t + 4, l:l + 3])]
        assert len(found) == 1
        corners.add(found[0])
    assert len(corners) > 3


def test_random_crop_at_inference_takes_the_center_and_resizes(xp, rng):
    x = rng.standard_normal((2, 5, 9, 3))
    assert_close(L.RandomCrop(5, 5, dtype="float64")(xp.asarray(x)), x[:, :, 2:7])
    # an 8x6 image to 4x3: the whole image halved; bilinear with half-pixel centers reads the
    # middle of every 2x2 block, its average
    x = rng.standard_normal((2, 8, 6, 3))
    want = x.reshape(2, 4, 2, 3, 2, 3).mean(axis=(2, 4))
    assert_close(L.RandomCrop(4, 3, dtype="float64")(xp.asarray(x)), want)
    # too small to crop in training: the same center window and resize
    assert_close(L.RandomCrop(4, 3, dtype="float64")(xp.asarray(x[:, :3]), training=True),
                 L.RandomCrop(4, 3, dtype="float64")(xp.asarray(x[:, :3])))


def test_rescaling_and_given_normalization(xp, rng):
    x = images(rng, (2, 3, 4, 3))
    assert_close(L.Rescaling(1 / 127.5, offset=-1, dtype="float64")(xp.asarray(x)), x / 127.5 - 1)
    assert_close(L.Rescaling([1.0, 2.0, 0.5], dtype="float64")(xp.asarray(x)), x * [1.0, 2.0, 0.5])
    mean, var = np.array([1.0, -2.0, 3.0]), np.array([4.0, 0.5, 2.0])
    norm = L.Normalization(mean=mean.tolist(), variance=var.tolist(), dtype="float64")
    assert_close(norm(xp.asarray(x)), (x - mean) / np.sqrt(var))
    inv = L.Normalization(mean=mean.tolist(), variance=var.tolist(), invert=True, dtype="float64")
    assert_close(inv(norm(xp.asarray(x))), x)
    assert norm.weights == []


def test_normalization_adapt_matches_numpy_statistics(rng):
    x = rng.standard_normal((50, 4, 3, 5)) * [1, 2, 3, 4, 5] + [5, 4, 3, 2, 1]
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # biased variance, as Keras
    norm = L.Normalization(dtype="float64")
    norm.adapt(x, batch_size=7)
    assert [v.name.split("/")[1] for v in norm.non_trainable_weights] == ["mean", "variance"]
    assert_close(norm.mean.value, mean)
    assert_close(norm.variance.value, var)
    assert_close(norm(x), (x - mean) / np.sqrt(var))
    batches = L.Normalization(dtype="float64")
    batches.adapt((x[i:i + 16], np.zeros(16)) for i in range(0, 50, 16))  # (x, y) batches, uneven
    assert_close(batches.variance.value, var)
    scalar = L.Normalization(axis=None, dtype="float64")
    scalar.adapt(x)
    assert_close(scalar.mean.value, x.mean())
    assert_close(scalar.variance.value, x.var())
    rows = L.Normalization(axis=(1, 3), dtype="float64")
    rows.adapt(x.astype(np.float32))
    assert_close(rows.variance.value, x.astype(np.float32).astype(np.float64).var(axis=(0, 2)))


GRADIENT_CASES = {  # layers with an exact input gradient, and whether they run in training mode
    "rescaling": (lambda: L.Rescaling([0.5, -2.0], offset=1.0, dtype="float64"), True),
    "normalization": (lambda: L.Normalization(mean=[1.0, -1.0], variance=[4.0, 0.3], dtype="float64"), True),
    "normalization-invert": (lambda: L.Normalization(mean=[1.0, -1.0], variance=[4.0, 0.3], invert=True,
                                                     dtype="float64"), True),
    "flip": (lambda: L.RandomFlip(seed=4, dtype="float64"), True),
    "contrast-clipped": (lambda: L.RandomContrast((0.3, 0.9), value_range=(0.1, 0.9), seed=4, dtype="float64"),
                         True),
    "crop-random": (lambda: L.RandomCrop(3, 2, seed=4, dtype="float64"), True),
    "crop-center": (lambda: L.RandomCrop(4, 4, dtype="float64"), False),  # 4x5 -> the middle 4x4
}


@pytest.mark.parametrize("name", GRADIENT_CASES)
def test_exact_gradients_match_finite_differences(rng, name):
    make, training = GRADIENT_CASES[name]
    x = rng.uniform(0, 1, (3, 4, 5, 2))

    def fresh():  # a new layer with the same seed makes the same draws: the forward is a function of x
        layer = make()
        layer._maybe_build((None,) + x.shape[1:])
        return layer

    y, saved = fresh().forward(x, training)
    dy = rng.standard_normal(y.shape)
    assert_grad(fresh().backward(saved, dy), lambda v: fresh().forward(v, training)[0], x, dy)
    assert fresh().backward(saved, dy, need_dx=False) is None


@pytest.mark.parametrize("make", [lambda: L.RandomRotation(0.1, name="rot"), lambda: L.RandomZoom(0.2, name="rot"),
                                  lambda: L.RandomTranslation(0.1, 0.1, name="rot"),
                                  lambda: L.RandomCrop(4, 6, name="rot")])
def test_resampling_layers_refuse_a_gradient_naming_the_layer(rng, make):
    x = rng.standard_normal((2, 5, 5, 1))
    layer = make()
    y, saved = layer.forward(x, training=True)
    assert layer.backward(saved, y, need_dx=False) is None
    with pytest.raises(NotImplementedError, match="'rot'"):
        layer.backward(saved, y)


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_seeds_repeat_draws(rng, name):
    x = images(rng, (8, 7, 6, 2))

    def draws(layer, n=3):
        return [to_numpy(layer(x, training=True)) for _ in range(n)]

    seeded = draws(AUGMENTATIONS[name](seed=11))
    _random.next_seed()  # a layer seed ignores cnnkit's shared generator
    assert all(np.array_equal(a, b) for a, b in zip(seeded, draws(AUGMENTATIONS[name](seed=11))))
    assert not all(np.array_equal(seeded[0], s) for s in seeded[1:])  # fresh draws each call
    set_random_seed(7)
    first = draws(AUGMENTATIONS[name]())
    set_random_seed(7)
    assert all(np.array_equal(a, b) for a, b in zip(first, draws(AUGMENTATIONS[name]())))


def test_set_random_seed_repeats_a_model(rng):
    x = images(rng, (4, 8, 8, 1))

    def run():
        model = models.Sequential([L.RandomFlip(input_shape=(8, 8, 1)), L.RandomRotation(0.2), L.RandomZoom(0.2),
                                   L.RandomContrast(0.3)])
        return [to_numpy(model(x, training=True)) for _ in range(2)]

    set_random_seed(3)
    a = run()
    set_random_seed(3)
    b = run()
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and not np.array_equal(a[0], a[1])


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip(rng, name):
    layer = ALL[name](seed=9) if name in AUGMENTATIONS else ALL[name]()
    config_ = json.loads(json.dumps(layer.get_config()))  # a model file holds JSON
    clone = type(layer).from_config(config_)
    assert json.loads(json.dumps(clone.get_config())) == config_
    x = images(rng)
    assert np.array_equal(to_numpy(clone(x, training=True)), to_numpy(layer(x, training=True)))
    assert type(layer) is layers.get_layer_class(type(layer).__name__)


def test_a_model_with_augmentation_trains_and_reloads(tmp_path, rng):
    set_random_seed(0)
    x, y = images(rng, (32, 8, 8, 1), high=1), rng.integers(0, 2, 32)
    norm = L.Normalization(input_shape=(8, 8, 1))
    norm.adapt(x)
    model = models.Sequential([norm, L.RandomFlip("horizontal"), L.RandomRotation(0.1),
                               L.Conv2D(4, 3, activation="relu"), L.Flatten(), L.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    kernel = model.layers[3].kernel.numpy()
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and not np.array_equal(kernel, model.layers[3].kernel.numpy())
    model.save(tmp_path / "aug.cnnkit")
    loaded = models.load_model(tmp_path / "aug.cnnkit")
    assert [type(la).__name__ for la in loaded.layers][:3] == ["Normalization", "RandomFlip", "RandomRotation"]
    assert_close(loaded.layers[0].mean.value, norm.mean.value)  # adapt's statistics travel with the file
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))  # inference: no augmentation


@pytest.mark.parametrize("exc, name, make", [
    (ValueError, "scale='x'", lambda: L.Rescaling("x")),
    (ValueError, "offset=nan", lambda: L.Rescaling(1.0, offset=float("nan"))),
    (TypeError, "axis=1.5", lambda: L.Normalization(axis=1.5)),
    (ValueError, "variance=None", lambda: L.Normalization(mean=1.0)),
    (ValueError, "variance=[1.0, -1.0]", lambda: L.Normalization(mean=[0.0, 0.0], variance=[1.0, -1.0])),
    (ValueError, "mode='diagonal'", lambda: L.RandomFlip("diagonal")),
    (ValueError, "seed=-1", lambda: L.RandomFlip(seed=-1)),
    (ValueError, "height_factor=1.5", lambda: L.RandomTranslation(1.5, 0.1)),
    (ValueError, "width_factor=(0.1, 0.2, 0.3)", lambda: L.RandomTranslation(0.1, (0.1, 0.2, 0.3))),
    (ValueError, "fill_mode='mirror'", lambda: L.RandomTranslation(0.1, 0.1, fill_mode="mirror")),
    (ValueError, "interpolation='bicubic'", lambda: L.RandomRotation(0.1, interpolation="bicubic")),
    (ValueError, "factor='big'", lambda: L.RandomRotation("big")),
    (ValueError, "fill_value=inf", lambda: L.RandomRotation(0.1, fill_value=float("inf"))),
    (ValueError, "height_factor=(-2, 0)", lambda: L.RandomZoom((-2, 0))),
    (ValueError, "width_factor=True", lambda: L.RandomZoom(0.1, True)),
    (ValueError, "height=0", lambda: L.RandomCrop(0, 3)),
    (ValueError, "width=2.5", lambda: L.RandomCrop(3, 2.5)),
    (ValueError, "factor=-0.5", lambda: L.RandomContrast(-0.5)),
    (ValueError, "value_range=(1, 0)", lambda: L.RandomContrast(0.2, value_range=(1, 0))),
    (ValueError, "data_format='channels_first'", lambda: L.RandomFlip(data_format="channels_first")),
])
def test_bad_arguments_are_refused_naming_the_value(exc, name, make):
    assert_raises_naming(exc, name, make)


@pytest.mark.parametrize("name, call", [
    ("(None, 6, 2)", lambda: L.RandomFlip()(np.zeros((3, 6, 2)))),
    ("axis=(2,)", lambda: L.Normalization(axis=2)(np.zeros((3, 4)))),
    ("does not broadcast", lambda: L.Normalization(mean=[0.0] * 4, variance=[1.0] * 4)(np.zeros((2, 5)))),
    ("was given mean", lambda: L.Normalization(mean=[0.0] * 4, variance=[1.0] * 4).adapt(np.zeros((2, 4)))),
    ("(None, 4, 2)", lambda: L.Normalization(axis=-1).adapt([np.ones((3, 4, 3)), np.ones((3, 4, 2))])),
    ("no samples", lambda: L.Normalization().adapt(np.zeros((0, 3)))),
])
def test_bad_inputs_are_refused_naming_the_problem(name, call):
    assert_raises_naming(ValueError, name, call)
