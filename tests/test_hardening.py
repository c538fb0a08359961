"""Hardening beyond the per-op tests: numerical edge cases defined against PyTorch, determinism of a
whole training run, concurrency (threads, OpenMP thread counts), faults (damaged model files,
interrupted training, allocations that cannot succeed) and a scan of the package source for code
that could deserialize code from files. The large-size check is in test_large.py (marked slow)."""

import ast
import io
import os
import pathlib
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

import cnnkit
from cnnkit import layers, models, ops, optimizers
from cnnkit.callbacks import Callback
from cnnkit.utils import set_random_seed
from cnnkit.variables import Variable
from helpers import tutorial_model

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.5, 30.0, -30.0, 1e4, -1e4])


def _torch():
    return pytest.importorskip("torch")


def _same(actual, expected, rtol):
    """NaN where expected is NaN, equal infinities, close elsewhere."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg="NaN positions differ")
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0, equal_nan=True)


# ---------------------------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "sigmoid", "tanh"])
def test_nan_and_inf_through_activations_as_pytorch(name, dtype):
    torch = _torch()
    F = torch.nn.functional
    x = SPECIALS.astype(dtype)
    ours = {"relu": ops.relu, "leaky_relu": lambda a: ops.leaky_relu(a, 0.2), "elu": ops.elu,
            "sigmoid": ops.sigmoid, "tanh": ops.tanh}[name](x)
    t = torch.from_numpy(x)
    theirs = {"relu": F.relu, "leaky_relu": lambda a: F.leaky_relu(a, 0.2), "elu": F.elu,
              "sigmoid": torch.sigmoid, "tanh": torch.tanh}[name](t).numpy()
    _same(ours, theirs, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_through_softmax_as_pytorch(dtype):
    torch = _torch()
    rows = np.array([[1.0, 2.0, np.nan], [1.0, np.inf, 0.0], [-np.inf, 0.0, 1.0], [-np.inf, -np.inf, 3.0],
                     [1e4, -1e4, 0.0]], dtype)
    for ours, theirs in ((ops.softmax, torch.softmax), (ops.log_softmax, torch.log_softmax)):
        _same(ours(rows, axis=-1), theirs(torch.from_numpy(rows), -1).numpy(), rtol=1e-6)


def _conv_torch(torch, x, w, padding):
    y = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2),
                                   torch.from_numpy(w).permute(3, 2, 0, 1), padding=padding)
    return y.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_propagate_through_conv2d_as_pytorch(value):
    torch = _torch()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 7, 6, 3))
    x[0, 3, 2, 1] = value
    x[1, 0, 0, 0] = value
    w = rng.standard_normal((3, 3, 3, 4))
    w[0, 0, 0, 0] = 0.0  # NaN/inf * 0 is NaN: the window still turns NaN, in both
    ours = ops.conv2d(x, w, padding=1)
    _same(ours, _conv_torch(torch, x, w, 1), rtol=1e-10)
    assert not np.isfinite(ours[0, 2:5, 1:4]).any()  # every window that reads the pixel
    assert np.isfinite(ours[0, 6]).all()             # and only those
    dx, dw, _ = ops.conv2d_backward(np.ones_like(ours), x, w, padding=1)
    assert np.isfinite(dx).all(), "dx = dy * w does not read x"
    assert not np.isfinite(dw).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_wins_max_pooling_and_infinities_pool_as_pytorch(dtype):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 6, 3)).astype(dtype)
    x[0, 0, 0, 0] = np.nan       # window (0, 0): NaN beats the larger numbers next to it
    x[0, 0, 1, 0] = 1e30 if dtype == np.float64 else 1e30
    x[0, 2, 2, 1] = np.inf
    x[1, 4, 4, 2] = -np.inf
    x[1, 1, 1, 0] = np.nan
    x[1, 1, 0, 0] = np.inf       # NaN beats +inf too
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    for ours, theirs in ((ops.max_pool2d(x, 2), F.max_pool2d(t, 2)), (ops.avg_pool2d(x, 2), F.avg_pool2d(t, 2)),
                         (ops.max_pool2d(x, 3, strides=1, padding="same"),
                          F.max_pool2d(F.pad(t, (1, 1, 1, 1), value=-np.inf), 3, stride=1))):
        _same(ours, theirs.permute(0, 2, 3, 1).numpy(), rtol=1e-6)
    assert np.isnan(ops.max_pool2d(x, 2)[0, 0, 0, 0]) and np.isnan(ops.global_max_pool2d(x)[1, 0])
    # the gradient of the NaN window goes to the NaN cell
    dx = ops.max_pool2d_backward(np.ones((2, 3, 3, 3), dtype), x, 2)
    assert dx[0, 0, 0, 0] == 1 and dx[0, 0, 1, 0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_finite_for_logits_of_1e4(dtype):
    torch = _torch()
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4], [0.0, 1e4, -1e4]], dtype)
    for labels in (np.array([0, 1, 2, 0]), np.eye(3, dtype=dtype)[[1, 0, 2, 2]]):
        loss = ops.softmax_cross_entropy(logits, labels)
        grad = ops.softmax_cross_entropy_backward(logits, labels)
        assert np.isfinite(loss) and np.isfinite(grad).all()
        tl = torch.from_numpy(logits).requires_grad_()
        target = torch.from_numpy(labels)
        ref = torch.nn.functional.cross_entropy(tl, target)
        ref.backward()
        np.testing.assert_allclose(loss, ref.item(), rtol=1e-6)
        np.testing.assert_allclose(grad, tl.grad.numpy(), rtol=1e-6, atol=1e-7)
    y = ops.softmax(logits)
    assert np.isfinite(y).all() and np.isfinite(ops.log_softmax(logits)).all()


def _bn_model(floatx_shape=(5, 5, 2)):
    return models.Sequential([layers.Input(floatx_shape), layers.Conv2D(3, 3, padding="same"),
                              layers.BatchNormalization(), layers.Flatten(), layers.Dense(2, activation="softmax")])


@pytest.mark.parametrize("constant", [False, True])
def test_batch_normalization_with_batch_1_and_constant_input_stays_finite(constant):
    set_random_seed(3)
    model = _bn_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.full((4, 5, 5, 2), 0.75, np.float32) if constant else np.random.rand(4, 5, 5, 2).astype(np.float32)
    y = np.array([0, 1, 0, 1])
    history = model.fit(x, y, batch_size=1, epochs=2, verbose=0)  # every batch has one sample
    assert all(np.isfinite(h) for h in history.history["loss"])
    for w in model.get_weights():
        assert np.isfinite(w).all()
    assert np.isfinite(model.predict(x, verbose=0)).all()
    # the op itself: batch 1 / constant channels have variance 0, so y = beta, dx = 0, all finite
    xb = np.full((1, 3, 3, 2), 2.0) if constant else np.random.rand(1, 1, 1, 2)
    gamma, beta = np.array([1.5, -0.5]), np.array([0.25, 0.5])
    y = ops.batch_norm(xb, gamma, beta, np.zeros(2), np.ones(2), training=True)
    np.testing.assert_allclose(y, np.broadcast_to(beta, y.shape))
    dx, dgamma, dbeta = ops.batch_norm_backward(np.random.rand(*xb.shape), xb, gamma, beta, np.zeros(2),
                                                np.ones(2), training=True)
    assert np.isfinite(dx).all() and np.isfinite(dgamma).all() and np.isfinite(dbeta).all()


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_with_zero_gradients_leaves_weights_unchanged(amsgrad):
    rng = np.random.default_rng(4)
    v = Variable(rng.standard_normal((3, 4)).astype(np.float32))
    before = v.numpy().copy()
    opt = optimizers.Adam(learning_rate=0.1, amsgrad=amsgrad)
    for _ in range(5):
        opt.apply([np.zeros((3, 4), np.float32)], [v])
    np.testing.assert_array_equal(v.numpy(), before)


# ---------------------------------------------------------------------------------------------- determinism
def _train_tutorial(x, y, seed):
    set_random_seed(seed)
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, validation_split=0.1)
    return model.get_weights(), history.history


def _images(n, seed=5):
    """n Fashion-MNIST training images when the Debian package is installed, else random images."""
    try:
        from cnnkit.datasets import fashion_mnist

        (x, y), _ = fashion_mnist.load_data()
        return (x[:n, :, :, None] / 255.0).astype(np.float32), y[:n].astype(np.int64)
    except Exception:  # no local copy and no network: the property is the same on random data
        rng = np.random.default_rng(seed)
        return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n)


def test_two_seeded_training_runs_give_bit_identical_weights():
    x, y = _images(512)  # 15 steps of 32 and a validation split: every part of fit runs
    w1, h1 = _train_tutorial(x, y, seed=123)
    w2, h2 = _train_tutorial(x, y, seed=123)
    assert len(w1) == len(w2) == 4
    for a, b in zip(w1, w2):
        assert a.tobytes() == b.tobytes(), "weights differ between two runs with the same seed"
    assert h1 == h2
    w3, _ = _train_tutorial(x, y, seed=124)
    assert any(a.tobytes() != b.tobytes() for a, b in zip(w1, w3)), "the seed must matter"


def _train_tutorial_on(device, x, y, seed):
    set_random_seed(seed)
    model = tutorial_model().to(device)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, validation_split=0.1)
    return model.get_weights(), history.history


@pytest.mark.gpu
def test_two_seeded_training_runs_on_the_gpu_give_bit_identical_weights():
    """The GPU case: every backward kernel is a gather (no atomics) and cuBLAS picks the same
    algorithm for the same shapes, so one epoch twice gives the same bits."""
    if not cnnkit.device.gpu_available():
        pytest.skip("needs CuPy, cnnkit._cuda and an NVIDIA GPU")
    x, y = _images(2048)
    w1, h1 = _train_tutorial_on("gpu", x, y, seed=123)
    w2, h2 = _train_tutorial_on("gpu", x, y, seed=123)
    for a, b in zip(w1, w2):
        assert a.tobytes() == b.tobytes(), "GPU weights differ between two runs with the same seed"
    assert h1 == h2


# ---------------------------------------------------------------------------------------------- concurrency
def _workload(seed):
    """A mix of ops on inputs of their own; returns every result."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4 + seed % 3, 17, 13, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 8 + seed)).astype(np.float32)   # direct path
    w2 = rng.standard_normal((5, 5, 3, 96)).astype(np.float32)        # im2col + GEMM path
    b = rng.standard_normal((8 + seed,)).astype(np.float32)
    y = ops.conv2d(x, w, b, padding="same")
    y2 = ops.conv2d(x, w2, strides=2, padding="same")
    out = [y, y2, *ops.conv2d_backward(np.ones_like(y), x, w, b, padding="same"),
           *ops.conv2d_backward(y2, x, w2, strides=2, padding="same")[:2]]
    p = ops.max_pool2d(y, 2)
    out += [p, ops.max_pool2d_backward(p, y, 2), ops.avg_pool2d(y, 3, strides=2, padding="same"),
            ops.stochastic_pool2d(y, 2, training=True, seed=seed)]
    flat = ops.relu(p).reshape(p.shape[0], -1)
    logits = ops.dense(flat, rng.standard_normal((flat.shape[1], 10)).astype(np.float32))
    labels = rng.integers(0, 10, logits.shape[0])
    out += [logits, ops.softmax_cross_entropy(logits, labels), ops.softmax_cross_entropy_backward(logits, labels)]
    mm, mv = np.zeros(y.shape[-1], np.float32), np.ones(y.shape[-1], np.float32)
    out += [ops.batch_norm(y, None, None, mm, mv, training=True), mm, mv, ops.dropout(y, 0.3, seed)]
    return [None if a is None else np.array(a) for a in out]


def test_ops_from_four_threads_match_serial_calls():
    serial = {s: _workload(s) for s in range(4)}
    results, errors = {}, []

    def run(s):
        try:
            for _ in range(3):
                results[s] = _workload(s)
                for a, b in zip(results[s], serial[s]):
                    if (a is None) != (b is None) or (a is not None and a.tobytes() != b.tobytes()):
                        errors.append(f"thread {s}: a result differs from the serial call")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results) == [0, 1, 2, 3]


def test_each_thread_has_its_own_conv_workspace():
    from cnnkit.ops import convolution as conv

    seen = {}
    x = np.random.rand(2, 9, 9, 4).astype(np.float32)
    w = np.random.rand(5, 5, 4, 128).astype(np.float32)  # im2col path: uses the workspace

    def run(i):
        ops.conv2d(x, w)
        seen[i] = id(conv._cache.buf)
        time.sleep(0.05)  # keep the buffer alive while the others run

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen.values())) == 4


def test_native_kernels_release_the_gil():
    """While one thread is inside a long native kernel, another Python thread keeps running."""
    x = np.random.rand(16, 256, 256, 3).astype(np.float32)  # 12 MB: each call runs for milliseconds
    y = np.empty_like(x)
    ticks, window, stop = [], [], threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.01)
    for _ in range(5):
        t0 = time.perf_counter()
        ops.tanh(x, out=y)
        ops.max_pool2d(x, 3, strides=1)
        window.append((t0, time.perf_counter()))
    stop.set()
    t.join()
    inside = sum(1 for v in ticks for a, b in window if a + 0.002 < v < b - 0.002)
    assert inside > 20, f"only {inside} Python ticks while the kernels ran: is the GIL held?"


_OMP_SCRIPT = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[2])
from cnnkit import ops
import concurrent_workload
np.savez(sys.argv[1], *[a for a in concurrent_workload.run() if a is not None])
"""


def test_omp_num_threads_1_and_2_agree(tmp_path):
    (tmp_path / "concurrent_workload.py").write_text(
        "from test_hardening import _workload\n"
        "def run():\n    return [a for s in range(3) for a in _workload(s)]\n")
    results = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
                   PYTHONPATH=os.pathsep.join([str(tmp_path), str(pathlib.Path(__file__).parent),
                                               os.environ.get("PYTHONPATH", "")]))
        out = tmp_path / f"omp{threads}.npz"
        subprocess.run([sys.executable, "-c", _OMP_SCRIPT, str(out), str(tmp_path)], env=env, check=True,
                       timeout=300)
        with np.load(out) as f:
            results.append([f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))])
    identical = 0
    for a, b in zip(*results):
        # float32 sums split differently across threads (OpenBLAS) differ in rounding only
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.max(np.abs(b), initial=0))))
        identical += a.tobytes() == b.tobytes()
    # our own kernels are gathers whose results do not depend on the thread count: most results are
    # bit-identical (the GEMMs of the conv/dense paths may round differently)
    assert identical >= len(results[0]) // 2, f"only {identical} of {len(results[0])} bit-identical"


# ---------------------------------------------------------------------------------------------- faults
@pytest.fixture
def saved_model(tmp_path):
    # Layers are auto-named from process-wide counters: restart them so that the file (its
    # model.json, and so every member's offset) is the same whichever tests ran before; the damage
    # tests below flip bytes at fixed positions.
    from cnnkit.layers.base import clear_session

    clear_session()
    set_random_seed(6)
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _images(64)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    path = tmp_path / "m.cnnkit"
    model.save(path)
    return model, path, x


def _loads_with_clear_error(path, loader=models.load_model):
    with pytest.raises(ValueError) as info:
        loader(path)
    assert str(path) in str(info.value) or "member" in str(info.value) or "weight" in str(info.value), info.value
    return info.value


def test_truncated_model_file_is_a_clear_error(saved_model):
    _, path, _ = saved_model
    data = path.read_bytes()
    for keep in (0, 10, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1):
        damaged = path.with_name(f"cut{keep}.cnnkit")
        damaged.write_bytes(data[:keep])
        _loads_with_clear_error(damaged)


def test_bit_flipped_model_file_is_a_clear_error(saved_model):
    model, path, x = saved_model
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(7)
    expected = model.predict(x[:4], verbose=0)
    for trial in range(40):
        damaged = bytearray(data)
        pos = int(rng.integers(0, len(data)))
        damaged[pos] ^= 1 << int(rng.integers(0, 8))
        p = path.with_name(f"flip{trial}.cnnkit")
        p.write_bytes(bytes(damaged))
        try:
            loaded = models.load_model(p)
        except ValueError:
            continue  # the checksum, the zip structure or the manifest caught it
        # a flip the format cannot see (a zip header field nobody reads, say) must change nothing
        np.testing.assert_array_equal(loaded.predict(x[:4], verbose=0), expected)


def _with_member(path, out, replace, member="weights/00000.npy"):
    """A copy of model file ``path`` at ``out`` whose ``member`` holds ``replace(old bytes)``."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, replace(data) if info.filename == member else data)
    return out


def _npy_bytes(array, **kwargs):
    buf = io.BytesIO()
    np.save(buf, array, **kwargs)
    return buf.getvalue()


def test_member_with_the_wrong_shape_is_a_clear_error(saved_model, tmp_path):
    _, path, _ = saved_model
    out = _with_member(path, tmp_path / "wrong.cnnkit", lambda _: _npy_bytes(np.zeros((3, 3, 1, 31), np.float32)))
    err = _loads_with_clear_error(out)
    assert "shape" in str(err)


def test_model_file_with_a_pickled_member_is_refused_without_running_it(saved_model, tmp_path):
    _, path, _ = saved_model
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    payload = _npy_bytes(np.array([Exploit()], dtype=object), allow_pickle=True)
    assert b"touch" in payload  # the payload is really there
    out = _with_member(path, tmp_path / "pickled.cnnkit", lambda _: payload)
    _loads_with_clear_error(out)
    assert not marker.exists(), "loading a model file ran code"


def test_npy_member_header_larger_than_the_manifest_is_refused_before_allocating(saved_model, tmp_path):
    _, path, _ = saved_model

    def huge_header(data):
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (2**40, 2**20)})
        return buf.getvalue() + data[-64:]

    err = _loads_with_clear_error(_with_member(path, tmp_path / "huge.cnnkit", huge_header))
    assert "shape" in str(err)


def test_save_and_save_weights_write_atomically(saved_model, monkeypatch):
    model, path, x = saved_model
    before = path.read_bytes()
    weights_path = path.with_name("w.weights.cnnkit")
    model.save_weights(weights_path)
    weights_before = weights_path.read_bytes()
    import cnnkit.models.saving as saving

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C halfway through writing

    monkeypatch.setattr(saving, "_npy_bytes", lambda a, real=saving._npy_bytes: (boom() if a.size > 1000 else real(a)))
    for save, target, content in ((model.save, path, before), (model.save_weights, weights_path, weights_before)):
        with pytest.raises(KeyboardInterrupt):
            save(target)
        assert target.read_bytes() == content, "an interrupted save must leave the old file intact"
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".cnnkit-")) == []
    monkeypatch.undo()
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _InterruptAt(Callback):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            raise KeyboardInterrupt


def test_fit_interrupted_by_keyboard_interrupt_leaves_the_model_usable():
    set_random_seed(8)
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _images(256)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[_InterruptAt(3)])
    for w in model.get_weights():
        assert np.isfinite(w).all()
    p = model.predict(x[:8], verbose=0)
    assert p.shape == (8, 10) and np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.evaluate(x, y, verbose=0)[0] > 0


def test_keyboard_interrupt_during_a_checkpoint_leaves_the_last_checkpoint_complete(tmp_path, monkeypatch):
    """Ctrl-C lands while ModelCheckpoint is writing its third file over the second: fit stops with
    KeyboardInterrupt, the file on disk is the complete second checkpoint (loads, same weights and
    optimizer step), no temporary file is left, and the model trains on."""
    import cnnkit.models.saving as saving
    from cnnkit.callbacks import ModelCheckpoint

    class Spy(ModelCheckpoint):
        def _save(self, *args):
            self.calls += 1
            self.armed = self.calls == 3
            super()._save(*args)
            self.saved.append(self.model.get_weights())

    path = tmp_path / "ckpt.cnnkit"
    spy = Spy(str(path), save_freq=2)
    spy.calls, spy.armed, spy.saved = 0, False, []
    real = saving._npy_bytes

    def interrupted(a):
        if spy.armed and a.size > 1000:
            raise KeyboardInterrupt
        return real(a)

    monkeypatch.setattr(saving, "_npy_bytes", interrupted)
    set_random_seed(9)
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _images(256)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[spy])
    monkeypatch.undo()
    assert spy.calls == 3 and len(spy.saved) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.cnnkit"], "a partial or temporary file was left"
    restored = models.load_model(path)
    for a, b in zip(restored.get_weights(), spy.saved[-1]):
        np.testing.assert_array_equal(a, b)
    assert int(restored.optimizer.iterations) == 4
    assert np.isfinite(model.fit(x, y, batch_size=32, epochs=1, verbose=0).history["loss"][0])
    assert np.isfinite(restored.fit(x, y, batch_size=32, epochs=1, verbose=0).history["loss"][0])


def test_a_batch_too_large_to_allocate_is_a_memory_error_naming_the_size():
    # a 1x1 convolution to 65536 channels of 16 images of 256 x 256: 256 GiB of output
    model = models.Sequential([layers.Input((256, 256, 1)), layers.Conv2D(65536, 1)])
    x = np.zeros((16, 256, 256, 1), np.float32)
    with pytest.raises(MemoryError, match="GiB|TiB"):
        model.predict(x, batch_size=16, verbose=0)
    # im2col of a kernel as large as half the image: 256 GiB of columns
    with pytest.raises(MemoryError, match="GiB|TiB"):
        ops.im2col(np.zeros((1, 1024, 1024, 1), np.float32), 512)
    # and afterwards everything still works
    small = models.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(4, 1)])
    assert small.predict(x[:2, :8, :8], verbose=0).shape == (2, 8, 8, 4)


# ---------------------------------------------------------------------------------------------- security
_PACKAGE = pathlib.Path(cnnkit.__file__).parent


def _forbidden_calls(source, filename):
    """(line, what) for every call that could turn file contents into code."""
    found = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) or isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                if n and n.split(".")[0] in ("pickle", "cPickle", "dill", "marshal", "shelve", "joblib"):
                    found.append((node.lineno, f"import {n}"))
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name in ("eval", "exec", "compile", "__import__") and isinstance(f, ast.Name):
            found.append((node.lineno, name))
        if name in ("load", "loads") and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                and f.value.id in ("pickle", "cPickle", "dill", "marshal", "joblib"):
            found.append((node.lineno, f"{f.value.id}.{name}"))
        if name in ("load", "Unpickler"):
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append((node.lineno, f"{name}(allow_pickle={ast.unparse(kw.value)})"))
        if name == "load" and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                and f.value.id in ("np", "numpy") and not any(kw.arg == "allow_pickle" for kw in node.keywords):
            found.append((node.lineno, "np.load without allow_pickle=False"))
    return found


def test_package_never_unpickles_or_evaluates_code():
    sources = sorted(_PACKAGE.rglob("*.py"))
    assert len(sources) > 20
    problems = []
    for path in sources:
        for line, what in _forbidden_calls(path.read_text(), str(path)):
            problems.append(f"{path.relative_to(_PACKAGE)}:{line}: {what}")
    assert not problems, "code that can run what a file holds:\n" + "\n".join(problems)


@pytest.mark.parametrize("snippet, what", [
    ("import pickle\npickle.load(f)", "pickle.load"), ("pickle.loads(b)", "pickle.loads"),
    ("np.load(p, allow_pickle=True)", "allow_pickle"), ("np.load(p)", "np.load without"),
    ("eval(s)", "eval"), ("exec(s)", "exec"), ("import marshal", "import marshal"),
])
def test_the_source_scan_catches_each_forbidden_call(snippet, what):
    assert any(what in w for _, w in _forbidden_calls(snippet, "<test>"))
