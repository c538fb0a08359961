"""What fit, evaluate and predict accept besides arrays (issue 18): re-iterable objects of batches
(a PyTorch DataLoader, or any class with __iter__), finite generators without steps, lists of
(x, y) tuples, batches of objects with __array__ or __dlpack__; bad batches named by index; and the
background prefetch of the next batches, which changes nothing but when a batch is read."""

import threading

import numpy as np
import pytest

import cnnkit
from cnnkit import callbacks, layers, models, optimizers
from cnnkit.utils import Sequence, set_random_seed


def _model(seed=0):
    set_random_seed(seed)
    m = models.Sequential([layers.Input((5,)), layers.Dense(8, activation="relu"), layers.Dense(3, activation="softmax")])
    m.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.fixture
def data(rng):
    return rng.standard_normal((24, 5)).astype("float32"), rng.integers(0, 3, 24)


class IterOnly:
    """An object with only __iter__ (iterated afresh each epoch, read until it ends)."""

    def __init__(self, x, y, batch):
        self.x, self.y, self.batch = x, y, batch

    def __iter__(self):
        for i in range(0, len(self.x), self.batch):
            yield self.x[i:i + self.batch], self.y[i:i + self.batch]


class Loader(IterOnly):
    """A DataLoader-like object: __iter__ and __len__, no __getitem__."""

    def __len__(self):
        return -(-len(self.x) // self.batch)


class Wrapped:
    """An array exposed only through __array__ (as a PyTorch CPU tensor is)."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


class DLPackOnly:
    """An array exposed only through DLPack (host memory)."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kwargs):
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def _weights_after(source, x_y=None, **fit_kwargs):
    m = _model()
    if x_y is None:
        m.fit(source, verbose=0, **fit_kwargs)
    else:
        m.fit(*x_y, verbose=0, **fit_kwargs)
    return m.get_weights()


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def test_reiterable_loaders_and_lists_of_batches_train_like_arrays(data):
    x, y = data
    expected = _weights_after(None, (x, y), batch_size=6, epochs=2, shuffle=False)
    assert _same(_weights_after(Loader(x, y, 6), epochs=2, shuffle=False), expected)
    assert _same(_weights_after(IterOnly(x, y, 6), epochs=2, shuffle=False), expected)
    batches = [(x[i:i + 6], y[i:i + 6]) for i in range(0, 24, 6)]
    assert _same(_weights_after(batches, epochs=2, shuffle=False), expected)
    assert _same(_weights_after([(Wrapped(a), Wrapped(b)) for a, b in batches], epochs=2, shuffle=False), expected)
    assert _same(_weights_after([(DLPackOnly(a), b) for a, b in batches], epochs=2, shuffle=False), expected)
    m = _model()
    assert m.predict(Loader(x, y, 6), verbose=0).shape == (24, 3)
    assert np.isfinite(m.evaluate(batches, verbose=0)[0])


def test_pytorch_dataloader(data):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    x, y = data
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=6, shuffle=False)
    expected = _weights_after(None, (x, y), batch_size=6, epochs=2, shuffle=False)
    assert _same(_weights_after(loader, epochs=2, shuffle=False), expected)
    assert _model().predict(DataLoader(torch.from_numpy(x), batch_size=5), verbose=0).shape == (24, 3)


def test_a_finite_generator_without_steps_is_one_epoch(data):
    x, y = data
    m = _model()
    steps = []
    cb = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: steps.append(e))
    hist = m.fit(((x[i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)), epochs=1, verbose=0, callbacks=[cb])
    assert len(hist.history["loss"]) == 1 and steps == [0]
    assert m.predict((x[i:i + 5] for i in range(0, 24, 5)), verbose=0).shape == (24, 3)


def test_bad_batches_are_named_by_index(data):
    x, y = data
    batches = [(x[i:i + 6], y[i:i + 6]) for i in range(0, 24, 6)]
    batches[2] = (x[12:18, :4], y[12:18])
    with pytest.raises(ValueError, match="batch 2 of x"):
        _model().fit(batches, verbose=0, shuffle=False)
    batches[2] = (x[12:18], y[12:18], np.ones(6), "extra")
    with pytest.raises(ValueError, match=r"batch 2 of x must be x, \(x, y\) or \(x, y, sample_weight\)"):
        _model().fit(batches, verbose=0, shuffle=False)
    batches[2] = {"x": x[12:18]}
    with pytest.raises(TypeError, match="batch 2 of x"):
        _model().fit(iter(batches), verbose=0)


class Augmenting(Sequence):
    """A Sequence that augments in NumPy (flips and noise from a per-index generator) and records
    which thread read each batch and when."""

    def __init__(self, x, y, batch):
        self.x, self.y, self.batch = x, y, batch
        self.events, self.lock = [], threading.Lock()

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __getitem__(self, i):
        with self.lock:
            self.events.append(("read", i, threading.current_thread().name))
        rng = np.random.default_rng(i)
        xb = self.x[i * self.batch:(i + 1) * self.batch].copy()
        flip = rng.random(len(xb)) < 0.5
        xb[flip] = xb[flip, ::-1]
        return xb + rng.normal(0, 0.01, xb.shape).astype(xb.dtype), self.y[i * self.batch:(i + 1) * self.batch]


def test_prefetch_reads_ahead_on_a_thread_and_changes_no_result(data):
    x, y = data
    results = {}
    for depth in (0, 2):
        old = cnnkit.config.prefetch_batches
        cnnkit.config.prefetch_batches = depth
        try:
            seq = Augmenting(x, y, 4)
            m = _model(seed=7)
            cb = callbacks.LambdaCallback(on_train_batch_begin=lambda i, logs=None: (
                seq.lock.acquire(), seq.events.append(("step", i, "")), seq.lock.release()))
            m.fit(seq, epochs=2, shuffle=True, verbose=0, callbacks=[cb])
            results[depth] = (m.get_weights(), seq.events)
        finally:
            cnnkit.config.prefetch_batches = old
    assert _same(results[0][0], results[2][0])  # the same batches in the same order: the same training
    reads = [e for e in results[2][1] if e[0] == "read"]
    assert all(name == "cnnkit-prefetch" for _, _, name in reads)
    assert all(name != "cnnkit-prefetch" for kind, _, name in results[0][1] if kind == "read")
    # with prefetch, some batch was already read when an earlier step began
    order = [e[0] for e in results[2][1]]
    assert any(order[i:i + 3] == ["read", "read", "step"] or order[i:i + 2] == ["step", "read"]
               for i in range(len(order)))


def test_an_error_in_a_prefetched_batch_surfaces_in_order(data):
    x, y = data

    class Failing(Sequence):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i == 2:
                raise KeyError("batch two is missing")
            return x[i * 6:(i + 1) * 6], y[i * 6:(i + 1) * 6]

    seen = []
    cb = callbacks.LambdaCallback(on_train_batch_end=lambda i, logs: seen.append(i))
    with pytest.raises(KeyError, match="batch two"):
        _model().fit(Failing(), shuffle=False, verbose=0, callbacks=[cb])
    assert seen == [0, 1]  # the steps before it ran; nothing after it
    with pytest.raises(ValueError, match="prefetch_batches must be an int >= 0"):
        cnnkit.config.prefetch_batches = -1
