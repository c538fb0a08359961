"""cnnkit.profiler: per-op sums inside the block, the outer op only for nested calls, every
reference covered (layers and activations hold the functions), the original dispatch back afterwards
(no overhead outside), identical results, and clear errors."""

import numpy as np
import pytest

from cnnkit import layers, models, ops, optimizers, profiler
from cnnkit.layers.base import clear_session
from cnnkit.ops import _backend


def codes():
    """What a profile block wraps: the dispatch point's backends and its GEMM entry point."""
    return {"_cpu": _backend._cpu, "_gpu": _backend._gpu, "matmul": _backend.matmul}


def small_model():
    clear_session()
    inp = layers.Input((12, 10, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    y = layers.Conv2D(4, 1)(x)
    x = layers.Add()([x, y])
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(5, activation="softmax")(x)
    m = models.Model(inp, x)
    m.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return m


def test_counts_every_op_of_a_training_step(rng):
    x = rng.random((6, 12, 10, 3), dtype=np.float32)
    y = rng.integers(0, 5, 6)
    m = small_model()
    before = codes()
    out = []
    with profiler.profile(print_fn=out.append) as prof:
        loss = m.train_on_batch(x, y)
    assert codes() == before  # the original dispatch is back: nothing runs differently outside
    assert _backend.backend(x).lib is _backend._cpu_backend.lib and type(_backend._cpu_backend.lib).__name__ == "module"
    for name in ("convolution", "nonlinear", "linear", "norm", "pool", "cross_entropy"):
        assert "_cnnkit_profiler_dispatch" not in vars(__import__(f"cnnkit.ops.{name}", fromlist=["x"]))
    s = prof.stats
    assert s["conv2d"][0] == 2 and s["conv2d_backward"][0] == 2  # two Conv2D layers
    # the first computes no input gradient (need_dx=False): its direct kernel's dx would be a col2im
    assert "conv2d_direct_backward_weights" in prof.kernel_stats and "col2im_accumulate" not in prof.kernel_stats
    assert s["batch_norm"][0] == 1 and s["batch_norm_backward_from_stats"][0] == 1
    assert s["relu_backward_from_output"][0] == 1  # fused ReLU of the first convolution
    assert s["max_pool2d"][0] == 1 and s["max_pool2d_backward_from_argmax"][0] == 1
    assert s["softmax_cross_entropy"][0] == 1  # fused with its gradient
    assert s["dense"][0] == 1 and s["dense_backward"][0] == 1
    assert all(secs >= 0 for _, secs in s.values())
    assert 0 < sum(secs for _, secs in s.values()) <= prof.total
    assert len(out) == 1 and "conv2d" in out[0] and "outside cnnkit.ops" in out[0]
    assert out[0] == prof.table()
    # the same step without the profiler gives the same numbers
    m1, m2 = small_model(), small_model()
    m2.set_weights(m1.get_weights())
    with profiler.profile(print_fn=None):
        l1 = m1.train_on_batch(x, y)
    l2 = m2.train_on_batch(x, y)
    assert l1 == l2 and np.isfinite(loss)
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nested_ops_count_once_and_public_ops_are_covered(rng):
    x = rng.random((2, 7, 5, 3))
    w = rng.random((3, 3, 3, 2))
    want = ops.conv2d(x, w, padding="same")
    with profiler.profile(print_fn=None) as prof:
        got = ops.conv2d(x, w, padding="same")
        ops.relu(x)
        ops.relu(x)
    np.testing.assert_array_equal(got, want)
    assert prof.stats.keys() == {"conv2d", "relu"}
    assert prof.stats["conv2d"][0] == 1 and prof.stats["relu"][0] == 2


def test_no_nesting_and_restores_after_errors(rng):
    before = codes()
    with profiler.profile(print_fn=None):
        with pytest.raises(RuntimeError, match="already active"):
            with profiler.profile(print_fn=None):
                pass
        ops.relu(rng.random(3))
    assert codes() == before
    printed = []
    with pytest.raises(ValueError):
        with profiler.profile(print_fn=printed.append):
            ops.relu(rng.random(3))
            raise ValueError("boom")
    assert codes() == before and printed == []  # no table after an error
    with profiler.profile(print_fn=None) as prof:  # usable again
        ops.relu(rng.random(3))
    assert prof.stats["relu"][0] == 1


@pytest.mark.gpu
def test_gpu_ops_are_synchronized(xp, rng):
    if xp is np:
        pytest.skip("the GPU case")
    x = xp.asarray(rng.random((4, 32, 32, 16), dtype=np.float32))
    w = xp.asarray(rng.random((3, 3, 16, 16), dtype=np.float32))
    with profiler.profile(print_fn=None) as prof:
        ops.conv2d(x, w, padding="same")
    assert prof.stats["conv2d"][0] == 1 and prof.stats["conv2d"][1] > 0
