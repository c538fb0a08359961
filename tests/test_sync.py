"""A training step does not wait for the device: the loss, the metrics and the regularizers stay on
it, and fit reads them (``ops._backend.read_scalars``, one transfer) only when the progress bar, a
callback or History needs them.

On the CPU two checks stand in for the GPU's: fit's calls to read_scalars are counted (one per
epoch, not one per step), and the per-step pieces (metrics, regularizers, losses on validated
labels) run on ``Strict`` arrays, a NumPy subclass whose float()/int()/bool()/item() raise, which is
every way a CuPy value reaches the host short of ``.get()``. The GPU test counts CuPy's
synchronizations and device-to-host copies in a whole fit directly.
"""

import contextlib

import numpy as np
import pytest

import cnnkit
from cnnkit import callbacks, layers, losses, metrics, models, regularizers
from cnnkit.ops import _backend
from cnnkit.ops._op_args import labels_checked

STEPS, EPOCHS = 10, 3


def _model(regularizer="l2"):
    model = models.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu", kernel_regularizer=regularizer),
                               layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "sparse_top_k_categorical_accuracy"])
    return model


def _data(rng, n=8 * STEPS):
    return rng.random((n, 6)).astype("float32"), rng.integers(0, 4, n)


@pytest.fixture
def reads(monkeypatch):
    """The number of read_scalars calls (each one a synchronization on the GPU) so far."""
    count = [0]
    real = _backend.read_scalars

    def counting(values):
        count[0] += 1
        return real(values)

    monkeypatch.setattr(_backend, "read_scalars", counting)
    return count


def test_fit_reads_once_per_epoch(rng, reads):
    x, y = _data(rng)
    history = _model().fit(x, y, batch_size=8, epochs=EPOCHS, verbose=0)
    assert reads[0] == EPOCHS
    assert all(type(v) is float for values in history.history.values() for v in values)


def test_fit_with_validation_and_a_log_file_reads_per_epoch(rng, reads, capsys):
    x, y = _data(rng)
    _model().fit(x, y, batch_size=8, epochs=EPOCHS, verbose=1, validation_split=0.25)
    assert "val_accuracy" in capsys.readouterr().out  # a bar on a log file draws only epoch lines
    assert reads[0] == 2 * EPOCHS


class _Terminal:
    def __init__(self):
        self.text = []

    def isatty(self):
        return True

    def write(self, text):
        self.text.append(text)

    def flush(self):
        pass


@pytest.mark.parametrize("interval, draws", [(1e9, 1), (0.0, STEPS)])
def test_progress_bar_reads_once_per_redraw(rng, reads, monkeypatch, interval, draws):
    """On a terminal the bar redraws every `interval` seconds and after the last step, reading the
    logs once per redraw."""
    monkeypatch.setenv("TERM", "xterm")
    x, y = _data(rng)
    bar = callbacks.ProgbarLogger(stream=_Terminal(), interval=interval)
    model = _model()
    model.fit(x, y, batch_size=8, epochs=EPOCHS, verbose=1, callbacks=[bar])
    assert reads[0] == EPOCHS * (draws + 1)
    assert "loss: " in "".join(bar.stream.text)
    reads[0] = 0
    model.fit(x, y, batch_size=8, epochs=EPOCHS, verbose=0, callbacks=[bar])
    assert reads[0] == EPOCHS  # verbose=0: the bar does not redraw and takes no batch logs


def test_a_batch_callback_gets_float_logs_each_step(rng, reads):
    seen = []
    x, y = _data(rng)
    cb = callbacks.LambdaCallback(on_batch_end=lambda batch, logs: seen.append(logs))
    _model().fit(x, y, batch_size=8, epochs=EPOCHS, verbose=0, callbacks=[cb])
    assert len(seen) == EPOCHS * STEPS and all(type(v) is float for logs in seen for v in logs.values())
    assert reads[0] == EPOCHS * (STEPS + 1)


def test_evaluate_reads_once(rng, reads):
    x, y = _data(rng)
    model = _model()
    loss, acc, top_k = model.evaluate(x, y, batch_size=8, verbose=0)
    assert reads[0] == 1 and type(loss) is float and 0 <= acc <= 1


# ---------------------------------------------------------------------- no host reads per step

_forbid = [False]


class Strict(np.ndarray):
    """A NumPy array that refuses to become a Python number while _forbid is set, and keeps that
    type through ufuncs and reductions (0-d results included)."""

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        return np.asarray(arr).view(Strict)

    def _refuse(self, how):
        if _forbid[0]:
            raise AssertionError(f"{how}() of an array during a step: a synchronization on the GPU")

    def __float__(self):
        self._refuse("float")
        return float(np.asarray(self))

    def __int__(self):
        self._refuse("int")
        return int(np.asarray(self))

    def __bool__(self):
        self._refuse("bool")
        return bool(np.asarray(self))

    def __index__(self):
        self._refuse("index")
        return np.asarray(self).__index__()

    def item(self, *args):
        self._refuse("item")
        return np.asarray(self).item(*args)

    def tolist(self):
        self._refuse("tolist")
        return np.asarray(self).tolist()


@contextlib.contextmanager
def _step(monkeypatch):
    """A step: Strict values may not be read; the modules' to_host keep the subclass (as CuPy
    arrays stay CuPy arrays); the labels count as validated, as in fit."""
    def keep(a):
        return a if isinstance(a, np.ndarray) else np.asarray(a)

    for module in (losses, metrics):
        monkeypatch.setattr(module, "to_host", keep)
    _forbid[0] = True
    try:
        with labels_checked():
            yield
    finally:
        _forbid[0] = False


def _strict(a):
    return np.asarray(a).view(Strict)


def test_strict_arrays_refuse_host_reads():
    a = _strict([1.0, 2.0])
    _forbid[0] = True
    try:
        with pytest.raises(AssertionError, match="bool"):
            bool((a > 1).any())
        with pytest.raises(AssertionError, match="float"):
            float(a.sum())
    finally:
        _forbid[0] = False


@pytest.mark.parametrize("metric", ["accuracy", "sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy",
                                    "categorical_accuracy", "binary_accuracy", "mse"])
def test_metric_updates_do_not_read(rng, monkeypatch, metric):
    pred = rng.random((7, 5)).astype("float32")
    ids = rng.integers(0, 5, 7)
    y = {"categorical_accuracy": np.eye(5)[ids], "binary_accuracy": rng.integers(0, 2, (7, 5)),
         "mse": rng.random((7, 5))}.get(metric, ids)
    m, expected = metrics.get(metric), metrics.get(metric)
    for weights in (None, 3, rng.random(7)):
        with _step(monkeypatch):
            m.update_state(_strict(y), _strict(pred), sample_weight=weights)
        expected.update_state(y, pred, sample_weight=weights)
    assert m.result() == expected.result() and type(m.result()) is float


@pytest.mark.parametrize("make", [lambda: metrics.Precision(), lambda: metrics.Recall(thresholds=[0.3, 0.6]),
                                  lambda: metrics.Precision(class_id=2), lambda: metrics.Recall(average="macro"),
                                  lambda: metrics.Precision(average="macro")],
                         ids=["precision", "recall_thresholds", "precision_class_id", "recall_macro",
                              "precision_macro"])
def test_precision_and_recall_updates_do_not_read(rng, monkeypatch, make):
    pred = rng.random((9, 4)).astype("float32")
    macro = make().average == "macro"
    y = rng.integers(0, 4, 9) if macro else rng.integers(0, 2, (9, 4))
    m, expected = make(), make()
    for weights in (None, rng.random(9)):
        with _step(monkeypatch):
            m.update_state(_strict(y), _strict(pred), sample_weight=weights)
        expected.update_state(y, pred, sample_weight=weights)
    assert m.result() == pytest.approx(expected.result(), abs=1e-12)
    # a prediction outside [0, 1] is counted on the device and refused when the result is read
    bad = make()
    if not macro:
        with _step(monkeypatch):
            bad.update_state(_strict(y), _strict(pred * 3))
        with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*outside"):
            bad.result()


def test_loss_tracker_does_not_read(monkeypatch):
    m = metrics.Mean(name="loss")
    with _step(monkeypatch):
        m.update_state(_strict(np.float32(0.5)), sample_weight=8)
        m.update_state(_strict(np.float32(2.0)), sample_weight=2)
    assert m.result() == pytest.approx((0.5 * 8 + 2.0 * 2) / 10)


@pytest.mark.parametrize("reg", [regularizers.L1(0.01), regularizers.L2(0.02), regularizers.L1L2(0.01, 0.02)])
def test_regularizers_do_not_read(rng, monkeypatch, reg):
    w = rng.standard_normal((3, 4)).astype("float32")
    with _step(monkeypatch):
        penalty = reg(_strict(w))
        reg.gradient(_strict(w))
    l1, l2 = getattr(reg, "l1", 0.0), getattr(reg, "l2", 0.0)
    assert float(penalty) == pytest.approx(l1 * np.abs(w).sum() + l2 * (w * w).sum(), rel=1e-6)


@pytest.mark.parametrize("loss", [
    losses.SparseCategoricalCrossentropy(), losses.SparseCategoricalCrossentropy(from_logits=True),
    losses.SparseCategoricalCrossentropy(ignore_class=2), losses.SparseCategoricalCrossentropy(True, ignore_class=2),
    losses.CategoricalCrossentropy(label_smoothing=0.1), losses.BinaryCrossentropy(), losses.MeanSquaredError()],
    ids=lambda loss: repr(loss)[:60])
def test_losses_on_validated_labels_do_not_read(rng, monkeypatch, loss):
    pred = rng.random((6, 4)).astype("float32") + 0.1
    ids = rng.integers(0, 4, 6)
    sparse = isinstance(loss, losses.SparseCategoricalCrossentropy)
    y = ids if sparse else np.eye(4, dtype="float32")[ids]
    with _step(monkeypatch):
        value, saved = loss.forward(_strict(y), _strict(pred))
        grad = loss.backward(saved)
        if loss.fuses_softmax:
            value2, grad2 = loss.forward_from_logits(_strict(y), _strict(pred))
    expected, saved = loss.forward(y, pred)
    np.testing.assert_array_equal(np.asarray(value), expected)
    np.testing.assert_array_equal(np.asarray(grad), loss.backward(saved))
    if loss.fuses_softmax:
        np.testing.assert_array_equal(np.asarray(value2), loss.forward_from_logits(y, pred)[0])


def test_direct_calls_still_check_labels():
    pred = np.full((3, 4), 0.25, np.float32)
    with pytest.raises(ValueError, match="class ids in"):
        losses.SparseCategoricalCrossentropy()(np.array([0, 4, 1]), pred)
    with pytest.raises(ValueError, match="labels must be class ids"):
        cnnkit.ops.softmax_cross_entropy(pred, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="class ids in"):
        metrics.SparseCategoricalAccuracy().update_state(np.array([0, 4, 1]), pred)


def test_fit_still_refuses_bad_labels_before_training(rng):
    x, y = _data(rng)
    y[5] = 4
    model = _model()
    before = model.get_weights()
    with pytest.raises(ValueError, match="class ids in"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_fit_checks_labels_for_the_metrics_too(rng):
    """With a loss that takes any labels, a class-id metric's own check runs once before training
    (the steps skip it)."""
    x, _ = _data(rng)
    model = models.Sequential([layers.Input((6,)), layers.Dense(4)])
    model.compile(optimizer="sgd", loss="mse", metrics=["sparse_categorical_accuracy"])
    y = rng.random((x.shape[0], 4)).astype("float32")
    with pytest.raises(ValueError, match="sparse_categorical_accuracy"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)


# ---------------------------------------------------------------------- the GPU: count synchronizations


_SPIN = r"""extern "C" __global__ void spin(long long cycles) {
    long long t0 = clock64();
    while (clock64() - t0 < cycles) {}
}"""


def _steps_queue_behind_a_busy_gpu(cp, model, x, y):
    """Whether STEPS training steps (and their metric updates) are all queued while the GPU is still
    busy with a kernel launched before them: any synchronization in a step would wait for it."""
    spin = cp.RawKernel(_SPIN, "spin")
    batches = [(cp.asarray(x[i:i + 8]), cp.asarray(y[i:i + 8])) for i in range(0, 8 * STEPS, 8)]
    model.train_on_batch(x[:8], y[:8])  # warm-up: kernels loaded, memory pool filled
    cp.cuda.Device().synchronize()
    done = cp.cuda.Event()
    spin((1,), (1,), (np.int64(4_000_000_000),))  # about 2 s at 2 GHz
    with model._checked_labels():
        for xb, yb in batches:
            value, pred = model._train_step(xb, yb)
            model._update_metrics(value, xb.shape[0], yb, pred)
    done.record()
    queued = not done.query()
    cp.cuda.Device().synchronize()
    return queued


@pytest.mark.gpu
def test_gpu_training_step_does_not_synchronize(cupy_xp, rng):
    """Categorical cross-entropy (target probabilities: no kernel-side label check), accuracy and an
    L2 penalty: nothing in the step waits for the device."""
    x, ids = _data(rng)
    y = np.eye(4, dtype="float32")[ids]
    model = models.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu", kernel_regularizer="l2"),
                               layers.Dense(4, activation="softmax")]).to("gpu")
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy", "mse"])
    assert _steps_queue_behind_a_busy_gpu(cupy_xp, model, x, y)


@pytest.mark.gpu
def test_gpu_sparse_training_step_does_not_synchronize(cupy_xp, rng):
    """Integer labels too: the loss kernel's own label check (a synchronization) is skipped inside
    fit, which validated the labels once (check_labels=False)."""
    x, y = _data(rng)
    model = _model().to("gpu")
    assert _steps_queue_behind_a_busy_gpu(cupy_xp, model, x, y)


@pytest.mark.gpu
def test_gpu_fit_reads_once_per_epoch(cupy_xp, rng, reads):
    x, y = _data(rng)
    history = _model().to("gpu").fit(x, y, batch_size=8, epochs=EPOCHS, verbose=0)
    assert reads[0] == EPOCHS and all(type(v) is float for v in history.history["loss"])


# ---------------------------------------------------------------------- data on the GPU, host data prefetched


class _FakeCuda:
    """The part of CuPy that _PinnedUploads uses, on the host: copies happen at once, and the test
    sees which events the compute stream waited on and which buffers were reused."""

    class Event:
        def __init__(self):
            self.synchronized = 0

        def synchronize(self):
            self.synchronized += 1

    class Stream:
        def __init__(self, non_blocking=False):
            self.non_blocking, self.waited = non_blocking, []

        def record(self):
            return _FakeCuda.Event()

        def wait_event(self, event):
            self.waited.append(event)

    class Array:
        def __init__(self, shape, dtype):
            self.data = np.full(shape, -1, dtype)

        def set(self, host, stream=None):
            assert stream is not None and stream.non_blocking, "the upload runs on the side stream"
            self.data[...] = host

    def __init__(self):
        self.compute = self.Stream()
        self.pinned = []
        self.cuda = self

    def get_current_stream(self):
        return self.compute

    def alloc_pinned_memory(self, nbytes):
        self.pinned.append(bytearray(nbytes))
        return self.pinned[-1]

    def empty(self, shape, dtype):
        return self.Array(shape, dtype)


def test_pinned_uploads_run_one_batch_ahead(rng):
    from cnnkit.models.training import _PinnedUploads

    cp = _FakeCuda()
    x = rng.random((23, 3, 2))  # float64 on the host, float32 on the device
    y = rng.integers(0, 5, 23)
    fetched = []

    w = rng.random(23)

    def source():
        for i in range(0, 23, 4):
            fetched.append(i)
            yield x[i:i + 4], y[i:i + 4], w[i:i + 4]

    uploads = _PinnedUploads(cp)
    got = []
    for xb, yb, wb in uploads.batches(source(), lambda xb, yb, wb: [(xb, np.float32), (yb, yb.dtype),
                                                                    (wb, np.float64)]):
        got.append((xb.data, yb.data, wb.data))
        assert len(fetched) == min(len(got) + 1, 6), "the next batch is staged before this one is used"
    assert len(got) == 6 and len(cp.compute.waited) == 6  # the compute stream waits on each copy's event
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), x.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), y)
    np.testing.assert_array_equal(np.concatenate([g[2] for g in got]), w)  # the sample weights ride along
    assert got[0][0].dtype == np.float32 and len(cp.pinned) == _PinnedUploads.SLOTS  # buffers reused


@pytest.mark.gpu
def test_gpu_fit_on_gpu_data_matches_host_data(cupy_xp, rng):
    """fit(x, y) with CuPy arrays gathers its batches on the GPU; with NumPy arrays it uploads them
    through pinned memory one batch ahead. Same seed, same weights: the same training."""
    cp = cupy_xp
    x, y = _data(rng)
    runs = []
    for data in ((x, y), (cp.asarray(x), cp.asarray(y))):
        cnnkit.utils.set_random_seed(3)
        model = _model().to("gpu")
        history = model.fit(*data, batch_size=8, epochs=2, verbose=0, validation_split=0.25)
        runs.append((history.history, model.get_weights(), model.predict(data[0], verbose=0)))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(runs[0][2], runs[1][2])
    assert isinstance(runs[1][2], np.ndarray)


def test_pinned_uploads_order_an_unused_batch_before_its_block_is_reused(rng):
    """Training stops with a batch uploaded ahead: the compute stream still waits on its copy, so its
    device block is not reused before the copy lands."""
    from cnnkit.models.training import _PinnedUploads

    cp = _FakeCuda()
    source = ((np.zeros((2, 3)), np.zeros(2, np.int64), None) for _ in range(5))
    batches = _PinnedUploads(cp).batches(source, lambda xb, yb, wb: [(xb, np.float32), (yb, yb.dtype), None])
    next(batches)
    batches.close()
    assert len(cp.compute.waited) == 2


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
def test_f1_updates_do_not_read(rng, monkeypatch, average):
    pred = rng.random((9, 4)).astype("float32")
    ids = rng.integers(0, 4, 9)
    m, expected = metrics.F1Score(average=average), metrics.F1Score(average=average)
    for weights in (None, rng.random(9)):
        with _step(monkeypatch):
            m.update_state(_strict(ids), _strict(pred), sample_weight=weights)
        expected.update_state(ids, pred, sample_weight=weights)
    np.testing.assert_array_equal(m.result(), expected.result())
