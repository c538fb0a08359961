"""Batch normalization: native vs the NumPy reference (both modes, with and without gamma/beta),
moving-statistics updates, finite-difference gradients, edge cases, thread-count determinism,
bad inputs, and a PyTorch cross-check."""

import numpy as np
import numpy as np_module
import pytest

from cnnkit import ops
from cnnkit.ops import _backend
from cnnkit.ops import reference as ref
from helpers import TOL, assert_close, assert_grad, assert_raises_naming, on_thread_counts, to_numpy

# (N, ..., C): odd spatial sizes, C = 1, 3, 17, batch 1 (with H = W = 1: one value per channel),
# and the 2-D (N, C) input that follows a Dense layer.
SHAPES = [(2, 5, 7, 3), (3, 4, 6, 1), (1, 1, 1, 17), (2, 3, 5, 17), (5, 17), (1, 3), (4, 2, 3)]
AFFINE = ["both", "none", "gamma_only"]


def make(rng, shape, affine="both", dtype=np.float64):
    """x, gamma, beta, moving_mean, moving_var (float64 masters; cast with cast())."""
    c = shape[-1]
    x = rng.standard_normal(shape) * 2.0 + 0.5
    gamma = rng.standard_normal(c) if affine in ("both", "gamma_only") else None
    beta = rng.standard_normal(c) if affine == "both" else None
    return x, gamma, beta, rng.standard_normal(c), rng.random(c) + 0.5


def cast(xp, a, dtype):
    return None if a is None else xp.asarray(np.array(a, dtype))  # always a copy


def every_case(test):
    """Parametrize test over both dtypes, every affine mode, training and inference, and SHAPES."""
    for name, values in (("shape", SHAPES), ("training", [True, False]), ("affine", AFFINE),
                         ("dtype", [np.float32, np.float64])):
        test = pytest.mark.parametrize(name, values)(test)
    return test


@every_case
def test_forward_matches_reference(xp, rng, shape, training, affine, dtype):
    x, g, b, mm, mv = make(rng, shape, affine)
    mm_n, mv_n = cast(xp, mm, dtype), cast(xp, mv, dtype)
    y = ops.batch_norm(cast(xp, x, dtype), cast(xp, g, dtype), cast(xp, b, dtype), mm_n, mv_n,
                       training=training, momentum=0.9, epsilon=1e-3)
    mm_r, mv_r = mm.copy(), mv.copy()
    y_ref = ref.batch_norm(x, g, b, mm_r, mv_r, training=training, momentum=0.9, epsilon=1e-3)
    assert y.dtype == dtype and y.shape == shape
    assert_close(y, y_ref, dtype, what="y")
    # updated in training exactly as the reference does; untouched in inference
    assert_close(mm_n, mm_r, dtype, what="moving_mean")
    assert_close(mv_n, mv_r, dtype, what="moving_var")
    if not training:
        assert np.array_equal(to_numpy(mm_n), mm.astype(dtype))
        assert np.array_equal(to_numpy(mv_n), mv.astype(dtype))


@every_case
def test_backward_matches_reference_and_leaves_moving_stats(xp, rng, shape, training, affine, dtype):
    x, g, b, mm, mv = make(rng, shape, affine)
    dy = rng.standard_normal(shape)
    mm_n, mv_n = cast(xp, mm, dtype), cast(xp, mv, dtype)
    got = ops.batch_norm_backward(cast(xp, dy, dtype), cast(xp, x, dtype), cast(xp, g, dtype),
                                  cast(xp, b, dtype), mm_n, mv_n, training=training, epsilon=1e-3)
    want = ref.batch_norm_backward(dy, x, g, b, mm, mv, training=training, epsilon=1e-3)
    # dgamma and dbeta are per-channel sums that may cancel (one channel of 72 terms, say): their
    # error is measured against the sum of their terms' sizes, what float32 rounding scales with
    axes = tuple(range(len(shape) - 1))
    if training:
        xhat = (x - x.mean(axis=axes)) / np.sqrt(x.var(axis=axes) + 1e-3)
    else:
        xhat = (x - mm) / np.sqrt(mv + 1e-3)
    terms = {"dgamma": np.abs(dy * xhat).sum(axis=axes).max(), "dbeta": np.abs(dy).sum(axis=axes).max()}
    for name, a, e in zip(("dx", "dgamma", "dbeta"), got, want):
        if e is None:
            assert a is None, name
        elif name in terms:
            assert a.dtype == dtype
            # (a batch of one sample: xhat is 0 and so is dgamma, measured in absolute terms)
            err = np.max(np.abs(to_numpy(a).astype(np.float64) - e)) / (terms[name] or 1.0)
            assert err <= TOL[np.dtype(dtype)], f"{name} error {err:.3e} of its terms' size"
        else:
            assert a.dtype == dtype
            assert_close(a, e, dtype, what=name)
    assert np.array_equal(to_numpy(mm_n), mm.astype(dtype))
    assert np.array_equal(to_numpy(mv_n), mv.astype(dtype))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 2, 3), (4, 3)])
def test_gradients_match_finite_differences(xp, rng, shape, training):
    x, g, b, mm, mv = make(rng, shape)
    dy = rng.standard_normal(shape)
    A = xp.asarray

    def f(x_, g_, b_):  # copies: training updates the moving statistics
        return to_numpy(ops.batch_norm(A(x_), A(g_), A(b_), A(mm.copy()), A(mv.copy()), training=training,
                                       epsilon=1e-3))

    dx, dg, db = ops.batch_norm_backward(A(dy), A(x), A(g), A(b), A(mm), A(mv), training=training, epsilon=1e-3)
    assert_grad(dx, lambda v: f(v, g, b), x, dy, what="dx")
    assert_grad(dg, lambda v: f(x, v, b), g, dy, what="dgamma")
    assert_grad(db, lambda v: f(x, g, v), b, dy, what="dbeta")


def test_saved_statistics_variants_match_public_ops(xp, rng):
    x, g, b, mm, mv = make(rng, (3, 5, 4, 6))
    dy = rng.standard_normal(x.shape)
    A = xp.asarray
    mm_p, mv_p = A(mm.copy()), A(mv.copy())
    y, mean, invstd = ops.batch_norm(A(x), A(g), A(b), mm_p, mv_p, True, 0.8, 1e-2, return_stats=True)
    mm_r, mv_r = mm.copy(), mv.copy()
    assert_close(y, ref.batch_norm(x, g, b, mm_r, mv_r, True, 0.8, 1e-2))
    assert_close(mm_p, mm_r)
    assert_close(mv_p, mv_r)
    assert_close(mean, x.mean(axis=(0, 1, 2)))
    assert_close(invstd, 1 / np.sqrt(x.var(axis=(0, 1, 2)) + 1e-2))
    # float32 input: the saved statistics stay float64
    _, mean32, invstd32 = ops.batch_norm(A(x.astype(np.float32)), None, None, A(mm.astype(np.float32)),
                                         A(mv.astype(np.float32)), True, 0.8, 1e-2, return_stats=True)
    assert mean32.dtype == invstd32.dtype == np.float64
    assert_close(mean32, x.astype(np.float32).astype(np.float64).mean(axis=(0, 1, 2)))
    got = ops.batch_norm_backward_from_stats(A(dy), A(x), A(g), mean, invstd)
    want = ref.batch_norm_backward(dy, x, g, b, mm, mv, training=True, epsilon=1e-2)
    for a, e in zip(got, want):
        assert_close(a, e)
    # without gamma the saved variant still returns both sums
    _, dg, db = ops.batch_norm_backward_from_stats(A(dy), A(x), None, mean, invstd)
    assert_close(db, dy.sum(axis=(0, 1, 2)))
    assert dg.shape == (6,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 3, 3, 5), (1, 1, 1, 5), (1, 5)])
def test_constant_input_and_single_value_batches_stay_finite(xp, rng, shape, dtype):
    """Variance 0 (a constant input, or one value per channel): xhat = 0 and y = beta."""
    x = np.full(shape, 3.25) if shape[0] > 1 else rng.standard_normal(shape)
    _, g, b, mm, mv = make(rng, shape)
    dy = rng.standard_normal(shape)
    y = ops.batch_norm(cast(xp, x, dtype), cast(xp, g, dtype), cast(xp, b, dtype), cast(xp, mm, dtype),
                       cast(xp, mv, dtype), training=True)
    assert np.all(np.isfinite(to_numpy(y)))
    assert_close(y, np.broadcast_to(b, shape), dtype)
    dx, dg, db = ops.batch_norm_backward(cast(xp, dy, dtype), cast(xp, x, dtype), cast(xp, g, dtype),
                                         cast(xp, b, dtype), cast(xp, mm, dtype), cast(xp, mv, dtype),
                                         training=True)
    want = ref.batch_norm_backward(dy, x, g, b, mm, mv, training=True)
    for name, a, e in zip(("dx", "dgamma", "dbeta"), (dx, dg, db), want):
        assert np.all(np.isfinite(to_numpy(a)))
        assert_close(a, e, dtype, what=name)


@pytest.mark.parametrize("training", [True, False])
def test_empty_batch(xp, rng, training):
    x = xp.zeros((0, 4, 4, 3))
    _, g, b, mm, mv = make(rng, (1, 3))
    mm_n, mv_n = xp.asarray(mm.copy()), xp.asarray(mv.copy())
    y = ops.batch_norm(x, xp.asarray(g), xp.asarray(b), mm_n, mv_n, training=training)
    assert y.shape == (0, 4, 4, 3)
    assert np.array_equal(to_numpy(mm_n), mm) and np.array_equal(to_numpy(mv_n), mv)
    dx, dg, db = ops.batch_norm_backward(x, x, xp.asarray(g), xp.asarray(b), mm_n, mv_n, training=training)
    assert dx.shape == (0, 4, 4, 3)
    assert np.array_equal(to_numpy(dg), np.zeros(3)) and np.array_equal(to_numpy(db), np.zeros(3))


def test_non_contiguous_input_is_accepted(xp, rng):
    x, g, b, mm, mv = make(rng, (3, 6, 5, 4))
    xs = x[:, ::2]
    y = ops.batch_norm(xp.asarray(x)[:, ::2], xp.asarray(g), xp.asarray(b), xp.asarray(mm), xp.asarray(mv))
    assert_close(y, ref.batch_norm(xs, g, b, mm, mv))


def test_reference_on_a_hand_computed_case():
    """Channel values 1 and 3: mean 2, biased variance 1; moving stats from (0, 1) with momentum 0.9."""
    x = np.array([[1.0], [3.0]])
    mm, mv = np.zeros(1), np.ones(1)
    y = ref.batch_norm(x, np.ones(1), np.zeros(1), mm, mv, training=True, momentum=0.9, epsilon=1e-3)
    assert np.allclose(y, [[-1 / np.sqrt(1.001)], [1 / np.sqrt(1.001)]], rtol=1e-15)
    assert np.allclose(mm, [0.2], rtol=1e-15) and np.allclose(mv, [1.0], rtol=1e-15)
    dx, dg, db = ref.batch_norm_backward(np.array([[1.0], [1.0]]), x, np.ones(1), np.zeros(1), mm, mv,
                                         training=True)
    assert np.allclose(dx, 0.0, atol=1e-15)  # a uniform shift of y is absorbed by the mean
    assert np.allclose(db, [2.0]) and np.allclose(dg, [0.0], atol=1e-15)


def test_bit_identical_for_one_and_two_threads(rng):
    x, g, b, mm, mv = make(rng, (8, 33, 31, 17))
    x = x.astype(np.float32)
    g, b, mm, mv = (a.astype(np.float32) for a in (g, b, mm, mv))
    dy = rng.standard_normal(x.shape).astype(np.float32)

    def compute():
        mm_n, mv_n = mm.copy(), mv.copy()
        y, mean, invstd = ops.batch_norm(x, g, b, mm_n, mv_n, True, 0.99, 1e-3, return_stats=True)
        grads = ops.batch_norm_backward(dy, x, g, b, mm, mv, training=True)
        grads_inf = ops.batch_norm_backward(dy, x, g, b, mm, mv, training=False)
        return [y, mean, invstd, mm_n, mv_n, *grads, *grads_inf]

    for a, c in zip(*on_thread_counts(compute)):
        assert np.array_equal(a, c)


@pytest.mark.gpu
def test_gpu_results_repeat_bit_for_bit(cupy_xp, rng):
    """The GPU reductions (fixed row chunks combined in chunk order) give identical results on every
    run, over a batch of many chunks."""
    xp = cupy_xp
    x, g, b, mm, mv = make(rng, (8, 33, 31, 17))
    x, g, b, mm, mv = (xp.asarray(a.astype(np.float32)) for a in (x, g, b, mm, mv))
    dy = xp.asarray(rng.standard_normal(x.shape).astype(np.float32))
    results = []
    for _ in range(2):
        mm_n, mv_n = mm.copy(), mv.copy()
        y, mean, invstd = ops.batch_norm(x, g, b, mm_n, mv_n, True, 0.99, 1e-3, return_stats=True)
        grads = ops.batch_norm_backward(dy, x, g, b, mm, mv, training=True)
        grads_inf = ops.batch_norm_backward(dy, x, g, b, mm, mv, training=False)
        results.append([to_numpy(a) for a in (y, mean, invstd, mm_n, mv_n, *grads, *grads_inf)])
    for a, c in zip(*results):
        assert np.array_equal(a, c)


def _args(rng, c=3, xp=np):
    x, g, b, mm, mv = make(rng, (2, 4, 4, c))
    return {k: xp.asarray(v) for k, v in dict(x=x, gamma=g, beta=b, moving_mean=mm, moving_var=mv).items()}


@pytest.mark.parametrize("training", [True, False])
def test_bad_inputs_name_the_argument(xp, rng, training):
    np = xp  # the same checks on either array module
    a = _args(rng, xp=xp)
    bn = ops.batch_norm
    assert_raises_naming(ValueError, "x", bn, **{**a, "x": np.ones(3)}, training=training)
    assert_raises_naming(TypeError, "x", bn, **{**a, "x": a["x"].astype(np.float16)}, training=training)
    assert_raises_naming(TypeError, "x", bn, **{**a, "x": a["x"].astype(np.int32)}, training=training)
    assert_raises_naming(ValueError, "gamma", bn, **{**a, "gamma": np.ones(4)}, training=training)
    assert_raises_naming(TypeError, "gamma", bn, **{**a, "gamma": [1.0, 1.0, 1.0]}, training=training)
    assert_raises_naming(TypeError, "beta", bn, **{**a, "beta": np.ones(3, np.float32)}, training=training)
    assert_raises_naming(ValueError, "moving_var", bn, **{**a, "moving_var": np.ones((3, 1))},
                         training=training)
    assert_raises_naming(TypeError, "moving_mean", bn, **{**a, "moving_mean": np.ones(3, np.float32)},
                         training=training)
    assert_raises_naming(TypeError, "moving_mean", bn, **{**a, "moving_mean": None}, training=training)
    for m in (-0.1, 1.5, float("nan")):
        assert_raises_naming(ValueError, "momentum", bn, **a, training=training, momentum=m)
    for e in (0.0, -1e-3, float("inf")):
        assert_raises_naming(ValueError, "epsilon", bn, **a, training=training, epsilon=e)
    assert_raises_naming(TypeError, "momentum", bn, **a, training=training, momentum="0.9")
    dy = np.ones((2, 4, 4, 4))
    assert_raises_naming(ValueError, "dy", ops.batch_norm_backward, dy, **a, training=training)
    assert_raises_naming(TypeError, "dy", ops.batch_norm_backward, a["x"].astype(np.float32), **a,
                         training=training)


def test_moving_stats_updated_in_place_must_be_contiguous_and_writable(xp, rng):
    a = _args(rng, xp=xp)
    strided = xp.ones(6)[::2]
    assert_raises_naming(ValueError, "moving_var", ops.batch_norm, **{**a, "moving_var": strided}, training=True)
    ops.batch_norm(**{**a, "moving_var": strided}, training=False)  # inference only reads them
    if xp is not np:
        return  # CuPy arrays have no read-only flag
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    assert_raises_naming(ValueError, "moving_mean", ops.batch_norm, **{**a, "moving_mean": frozen},
                         training=True)
    # inference only reads them: both are fine there
    ops.batch_norm(**{**a, "moving_mean": frozen, "moving_var": strided}, training=False)


def test_native_bindings_validate_buffers(xp, rng):
    numpy, np = np_module, xp  # the CUDA bindings check what the CPU ones do
    x = xp.asarray(rng.standard_normal((6, 3)))
    c = np.ones(3)
    lib = _backend.backend(x).lib
    with pytest.raises(ValueError, match="y"):
        lib.batch_norm_train_forward(x, None, None, c.copy(), c.copy(), 0.9, 1e-3, np.empty((6, 4)),
                                     np.empty(3), np.empty(3))
    with pytest.raises(TypeError, match="gamma"):
        lib.batch_norm_inference_forward(x, c.astype(np.float32), None, c, c, 1e-3, np.empty((6, 3)))
    with pytest.raises(ValueError, match="momentum"):
        lib.batch_norm_train_forward(x, None, None, c.copy(), c.copy(), 2.0, 1e-3, np.empty((6, 3)),
                                     np.empty(3), np.empty(3))
    if xp is numpy:  # CuPy arrays have no read-only flag
        frozen = np.ones(3)
        frozen.flags.writeable = False
        with pytest.raises(ValueError, match="moving_mean"):
            lib.batch_norm_train_forward(x, None, None, frozen, c.copy(), 0.9, 1e-3, np.empty((6, 3)),
                                         np.empty(3), np.empty(3))
    with pytest.raises(ValueError, match="dx"):
        lib.batch_norm_train_backward(x, x, None, c, c, np.empty((6, 3))[:, ::2], np.empty(3), np.empty(3))


@pytest.mark.parametrize("affine", ["both", "none"])
def test_matches_pytorch(rng, affine):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, g, b, mm, mv = make(rng, (3, 5, 6, 4), affine)
    dy = rng.standard_normal(x.shape)
    momentum, eps = 0.9, 1e-3
    for training in (True, False):
        xt = torch.tensor(x).permute(0, 3, 1, 2).requires_grad_()
        gt = torch.tensor(g).requires_grad_() if g is not None else None
        bt = torch.tensor(b).requires_grad_() if b is not None else None
        rm, rv = torch.tensor(mm), torch.tensor(mv)
        # PyTorch's momentum weighs the new batch statistic: 1 - Keras' momentum
        yt = F.batch_norm(xt, rm, rv, gt, bt, training=training, momentum=1 - momentum, eps=eps)
        yt.backward(torch.tensor(dy).permute(0, 3, 1, 2))
        mm_n, mv_n = mm.copy(), mv.copy()
        y = ops.batch_norm(x, g, b, mm_n, mv_n, training=training, momentum=momentum, epsilon=eps)
        assert_close(y, yt.detach().permute(0, 2, 3, 1).numpy(), what="y")
        assert_close(mm_n, rm.numpy(), what="moving_mean")
        if training:
            # PyTorch feeds the unbiased variance to running_var; Keras (and cnnkit) the biased one
            m = x.size // x.shape[-1]
            var_b = x.reshape(-1, x.shape[-1]).var(axis=0)
            assert_close(mv_n, rv.numpy() - (1 - momentum) * var_b * (m / (m - 1) - 1), what="moving_var")
        dx, dg, db = ops.batch_norm_backward(dy, x, g, b, mm, mv, training=training, momentum=momentum,
                                             epsilon=eps)
        assert_close(dx, xt.grad.permute(0, 2, 3, 1).numpy(), what="dx")
        if g is not None:
            assert_close(dg, gt.grad.numpy(), what="dgamma")
            assert_close(db, bt.grad.numpy(), what="dbeta")
