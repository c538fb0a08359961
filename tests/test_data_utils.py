"""Data utilities: train_test_split (scikit-learn's counts and stratification), normalize (the
textbook L-p formula), image_dataset_from_directory (PNG/JPEG folders written here with Pillow),
and fit/evaluate/predict streaming from a Sequence or a generator, which must train exactly as the
same batches given as arrays."""

import sys

import numpy as np
import pytest

from cnnkit import callbacks, layers, models, optimizers
from cnnkit.utils import (Sequence, image_dataset_from_directory, normalize, set_random_seed,
                          train_test_split)
from helpers import assert_close, assert_raises_naming, to_numpy


# ---------------------------------------------------------------- train_test_split
@pytest.mark.parametrize("n, test_size, n_test", [(10, 0.25, 3), (10, 0.2, 2), (7, 3, 3), (100, 0.333, 34)])
def test_split_sizes_follow_scikit_learn(n, test_size, n_test):
    x = np.arange(n * 2).reshape(n, 2)
    x_train, x_test, y_train, y_test = train_test_split(x, np.arange(n), test_size=test_size, random_state=0)
    assert len(x_test) == len(y_test) == n_test and len(x_train) == len(y_train) == n - n_test
    np.testing.assert_array_equal(x_train[:, 0] // 2, y_train)  # rows stay paired
    np.testing.assert_array_equal(x_test[:, 0] // 2, y_test)
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_test])), np.arange(n))


def test_split_seed_no_shuffle_and_x_alone():
    x = np.arange(20)
    a = train_test_split(x, test_size=5, random_state=3)
    b = train_test_split(x, test_size=5, random_state=3)
    assert len(a) == 2 and all(np.array_equal(p, q) for p, q in zip(a, b))
    x_train, x_test = train_test_split(x, test_size=5, shuffle=False)
    np.testing.assert_array_equal(x_train, np.arange(15))
    np.testing.assert_array_equal(x_test, np.arange(15, 20))


def test_stratified_split_keeps_class_proportions(rng):
    y = rng.permutation(np.repeat([0, 1, 2], [60, 30, 10]))
    _, _, y_train, y_test = train_test_split(np.zeros((100, 3)), y, test_size=0.2, stratify=y, random_state=1)
    np.testing.assert_array_equal(np.bincount(y_test), [12, 6, 2])
    np.testing.assert_array_equal(np.bincount(y_train), [48, 24, 8])


def test_stratified_split_with_remainders_hits_the_exact_test_size(rng):
    y = np.repeat([0, 1, 2], [7, 7, 7])
    _, _, _, y_test = train_test_split(np.zeros(21), y, test_size=5, stratify=y, random_state=2)
    counts = np.bincount(y_test, minlength=3)
    assert counts.sum() == 5 and counts.min() >= 1 and counts.max() <= 2  # shares 5/3 each: 1 or 2


@pytest.mark.parametrize("kwargs, name", [({"test_size": 1.5}, "test_size"), ({"test_size": 0}, "test_size"),
                                          ({"test_size": 10}, "test_size"), ({"random_state": "a"}, "random_state")])
def test_split_bad_arguments(kwargs, name):
    assert_raises_naming(ValueError, name, train_test_split, np.arange(10), np.arange(10), **kwargs)


def test_split_refusals():
    with pytest.raises(ValueError, match="different numbers of samples"):
        train_test_split(np.arange(10), np.arange(9))
    with pytest.raises(ValueError, match="least populated class has 1 member"):
        train_test_split(np.arange(10), np.arange(10), stratify=np.r_[np.zeros(9), 1])
    with pytest.raises(ValueError, match="shuffle=True"):
        train_test_split(np.arange(10), stratify=np.arange(10) % 2, shuffle=False)


# ---------------------------------------------------------------- normalize
def test_normalize_l2_l1_axis_and_zero_rows(xp, rng):
    x = rng.standard_normal((4, 5))
    x[2] = 0
    got = normalize(xp.asarray(x))
    norms = np.sqrt((x ** 2).sum(axis=1, keepdims=True))
    norms[2] = 1
    assert_close(got, x / norms)
    assert_close(normalize(xp.asarray(x), axis=0, order=1), x / np.abs(x).sum(axis=0, keepdims=True))
    assert to_numpy(normalize(xp.asarray(np.arange(3)))).dtype == np.float64
    assert_raises_naming(ValueError, "order", normalize, x, order=0)


# ---------------------------------------------------------------- fit on a Sequence or a generator
def dense_model(seed=0):
    set_random_seed(seed)
    model = models.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Batches(Sequence):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size, self.epochs_ended = x, y, batch_size, 0

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[sl], self.y[sl]

    def on_epoch_end(self):
        self.epochs_ended += 1


@pytest.fixture
def data(rng):
    return rng.standard_normal((22, 4)).astype("float32"), rng.integers(0, 3, 22)


def test_fit_on_a_sequence_matches_fit_on_arrays(data):
    x, y = data
    ref = dense_model()
    h_ref = ref.fit(x, y, batch_size=5, epochs=3, shuffle=False, validation_data=(x, y), verbose=0)
    seq = Batches(x, y, 5)
    model = dense_model()
    h = model.fit(seq, epochs=3, shuffle=False, validation_data=Batches(x, y, 7), verbose=0)
    for a, b in zip(ref.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert seq.epochs_ended == 3
    assert_close(np.array(h.history["loss"]), np.array(h_ref.history["loss"]), tol=1e-6)
    assert_close(np.array(h.history["val_loss"]), np.array(h_ref.history["val_loss"]), tol=1e-6)
    assert_close(np.array(model.evaluate(Batches(x, y, 4), verbose=0)), np.array(ref.evaluate(x, y, verbose=0)),
                 tol=1e-6)
    np.testing.assert_array_equal(model.predict(Batches(x, y, 6), verbose=0), ref.predict(x, verbose=0))


def test_fit_shuffles_sequence_batches_and_honours_steps_per_epoch(data):
    x, y = data

    class Logged(Batches):
        seen = []

        def __getitem__(self, i):
            self.seen.append(i)
            return super().__getitem__(i)

    seq = Logged(x, y, 5)
    dense_model().fit(seq, epochs=2, steps_per_epoch=3, verbose=0)
    assert len(seq.seen) == 6 and len(set(seq.seen[:3])) == 3 and set(seq.seen) <= set(range(5))


def test_fit_on_a_generator_with_and_without_steps_per_epoch(data, capsys):
    x, y = data

    def batches(n):
        for i in range(n):
            yield x[i * 4:(i + 1) * 4], y[i * 4:(i + 1) * 4]

    model = dense_model()
    # without steps_per_epoch a finite generator is one epoch, read until it ends (as Keras)
    seen = []
    cb = callbacks.LambdaCallback(on_train_batch_end=lambda i, logs: seen.append(i))
    history = model.fit(batches(5), epochs=3, verbose=0, callbacks=[cb])
    assert seen == [0, 1, 2, 3, 4] and len(history.history["loss"]) == 1
    assert "ran out of data" in capsys.readouterr().err  # the second epoch found it empty
    assert model.predict((xb for xb, _ in batches(3)), verbose=0).shape == (12, 3)
    assert np.isfinite(model.evaluate(batches(2), verbose=0)[0])
    history = model.fit(batches(5), steps_per_epoch=2, epochs=2, validation_data=batches(4), validation_steps=2,
                        verbose=0)
    assert len(history.history["loss"]) == len(history.history["val_loss"]) == 2
    history = model.fit(batches(3), steps_per_epoch=2, epochs=4, verbose=0)  # runs dry in epoch 2
    assert len(history.history["loss"]) == 2
    assert "ran out of data" in capsys.readouterr().err
    assert np.isfinite(model.evaluate(batches(5), steps=5, verbose=0)[0])
    assert model.predict((xb for xb, _ in batches(3)), steps=3, verbose=0).shape == (12, 3)


def test_streamed_batches_are_checked_like_arrays(data):
    x, y = data
    bad = x.copy()
    bad[13, 1] = np.nan
    model = dense_model()
    with pytest.raises(ValueError, match="batch 2 of x.*NaN"):
        model.fit(Batches(bad, y, 5), shuffle=False, verbose=0)
    with pytest.raises(ValueError, match=r"y of batch 0 of x: .*class ids in \[0, 3\)"):
        model.fit(Batches(x, y + 3, 5), shuffle=False, verbose=0)  # class ids out of range for 3 outputs
    with pytest.raises(ValueError, match="no labels"):
        model.fit(iter([x]), steps_per_epoch=1, verbose=0)
    assert_raises_naming(ValueError, "y", model.fit, Batches(x, y, 5), y, verbose=0)
    assert_raises_naming(ValueError, "batch_size", model.fit, Batches(x, y, 5), batch_size=4, verbose=0)
    assert_raises_naming(ValueError, "validation_split", model.fit, Batches(x, y, 5), validation_split=0.2,
                         verbose=0)
    assert_raises_naming(ValueError, "steps_per_epoch", model.fit, Batches(x, y, 5), steps_per_epoch=6, verbose=0)


# ---------------------------------------------------------------- image_dataset_from_directory
@pytest.fixture
def image_dir(tmp_path):
    """Two classes of solid-colour images in several sizes and formats, one stray text file."""
    Image = pytest.importorskip("PIL.Image")
    colours = {"cats": (200, 10, 10), "dogs": (10, 200, 10)}
    for k, (name, colour) in enumerate(colours.items()):
        folder = tmp_path / "pets" / name
        (folder / "more").mkdir(parents=True)
        for i, size in enumerate([(40, 30), (17, 23), (64, 64)]):
            Image.new("RGB", size, colour).save(folder / f"{i}.png")
        Image.new("RGB", (20, 20), colour).save(folder / "more" / "x.jpg", quality=100)
        (folder / "notes.txt").write_text("not an image")
    return tmp_path / "pets", colours


def test_image_dataset_batches_labels_and_pixels(image_dir, capsys):
    directory, colours = image_dir
    ds = image_dataset_from_directory(directory, image_size=(12, 10), batch_size=3, shuffle=False)
    assert "Found 8 files belonging to 2 classes." in capsys.readouterr().out
    assert ds.class_names == ["cats", "dogs"] and len(ds) == 3
    x, y = ds[0]
    assert x.shape == (3, 12, 10, 3) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(y, [0, 0, 0])
    np.testing.assert_allclose(x, np.broadcast_to(np.float32(colours["cats"]), x.shape))  # solid stays solid
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    np.testing.assert_array_equal(np.concatenate(ys), [0] * 4 + [1] * 4)
    np.testing.assert_allclose(xs[2][-1, 0, 0], colours["dogs"], atol=2)  # the JPEG, nearly exact at quality 100


def test_image_dataset_modes_and_validation_split(image_dir):
    directory, _ = image_dir
    gray = image_dataset_from_directory(directory, color_mode="grayscale", label_mode="categorical",
                                        image_size=(8, 8), batch_size=8)
    x, y = gray[0]
    assert x.shape == (8, 8, 8, 1) and y.shape == (8, 2) and np.array_equal(y.sum(axis=1), np.ones(8))
    train, val = image_dataset_from_directory(directory, image_size=(8, 8), validation_split=0.25, subset="both",
                                              seed=5, label_mode="binary")
    assert len(train.file_paths) == 6 and len(val.file_paths) == 2
    assert not set(train.file_paths) & set(val.file_paths)
    assert val[0][1].shape == (2, 1)
    again = image_dataset_from_directory(directory, image_size=(8, 8), validation_split=0.25, subset="validation",
                                         seed=5)
    assert sorted(again.file_paths) == sorted(val.file_paths)
    assert_raises_naming(ValueError, "seed", image_dataset_from_directory, directory, validation_split=0.25,
                         subset="training")
    assert_raises_naming(ValueError, "class_names", image_dataset_from_directory, directory,
                         class_names=["cats", "birds"])


def test_fit_on_an_image_dataset(image_dir):
    directory, _ = image_dir
    ds = image_dataset_from_directory(directory, image_size=(6, 6), batch_size=4, seed=0)
    set_random_seed(0)
    model = models.Sequential([layers.Input((6, 6, 3)), layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(ds, epochs=2, verbose=0)
    assert len(history.history["accuracy"]) == 2 and np.isfinite(history.history["loss"]).all()


def test_image_dataset_without_pillow_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    (tmp_path / "a").mkdir()
    with pytest.raises(ImportError, match=r"pip install 'cnnkit\[images\]'"):
        image_dataset_from_directory(tmp_path)
