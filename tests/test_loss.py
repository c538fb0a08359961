"""Softmax cross-entropy: native vs the NumPy reference with integer and probability labels,
stability at large logits, finite-difference gradients, hand-computed values, empty batches,
thread-count determinism, bad inputs, and a PyTorch cross-check."""

import functools
import math

import numpy as np
import pytest

from cnnkit import ops
from cnnkit.ops import _backend
from cnnkit.ops import reference as ref
from helpers import assert_close, assert_grad, assert_raises_naming, on_thread_counts, to_numpy

SHAPES = [(1, 1), (1, 7), (5, 3), (17, 10), (33, 1000)]


def make(rng, shape, sparse, label_dtype=np.int64, scale=3.0):
    """logits and labels (float64 masters): class ids or random probability rows."""
    n, k = shape
    logits = rng.standard_normal(shape) * scale
    if sparse:
        return logits, rng.integers(0, k, n).astype(label_dtype)
    p = rng.random(shape)
    return logits, p / p.sum(axis=1, keepdims=True)


def cast_labels(xp, labels, dtype):
    return xp.asarray(labels if labels.dtype.kind in "iu" else labels.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_reference(xp, rng, shape, sparse, dtype):
    logits, labels = make(rng, shape, sparse)
    lg, lb = xp.asarray(logits.astype(dtype)), cast_labels(xp, labels, dtype)
    out = ops.softmax_cross_entropy(lg, lb)
    assert out.shape == () and out.dtype == dtype
    assert_close(out, ref.softmax_cross_entropy(logits, labels), dtype, what="loss")
    for dloss in (1.0, -0.375):
        d = ops.softmax_cross_entropy_backward(lg, lb, dloss)
        assert d.shape == shape and d.dtype == dtype
        assert_close(d, ref.softmax_cross_entropy_backward(logits, labels, dloss), dtype, what="dlogits")
    fused_loss, fused_d = ops.softmax_cross_entropy(lg, lb, return_grad=True)
    assert fused_loss.shape == () and fused_loss.dtype == dtype
    assert np.array_equal(to_numpy(fused_loss), to_numpy(out))
    assert np.array_equal(to_numpy(fused_d), to_numpy(ops.softmax_cross_entropy_backward(lg, lb)))


@pytest.mark.parametrize("label_dtype", [np.int32, np.uint8, np.int16, np.uint64])
def test_any_integer_label_dtype(xp, rng, label_dtype):
    logits, labels = make(rng, (9, 6), True, label_dtype)
    lg, lb = xp.asarray(logits), xp.asarray(labels)
    assert_close(ops.softmax_cross_entropy(lg, lb), ref.softmax_cross_entropy(logits, labels))
    assert_close(ops.softmax_cross_entropy_backward(lg, lb), ref.softmax_cross_entropy_backward(logits, labels))


@pytest.mark.parametrize("sparse", [True, False])
def test_large_logits_in_float32_are_stable(xp, rng, sparse):
    logits, labels = make(rng, (64, 50), sparse)
    logits = (np.sign(logits) * 1e4 + rng.standard_normal(logits.shape)).astype(np.float32)
    lg, lb = xp.asarray(logits), cast_labels(xp, labels, np.float32)
    out = ops.softmax_cross_entropy(lg, lb)
    d = ops.softmax_cross_entropy_backward(lg, lb)
    assert np.isfinite(to_numpy(out)) and np.all(np.isfinite(to_numpy(d)))
    exact = logits.astype(np.float64)  # the same float32 values, evaluated in float64
    assert_close(out, ref.softmax_cross_entropy(exact, labels), np.float32, what="loss")
    assert_close(d, ref.softmax_cross_entropy_backward(exact, labels), np.float32, what="dlogits")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_gaps_are_exact(xp, dtype):
    logits = xp.asarray(np.array([[1e4, -1e4], [-1e4, 1e4]], dtype))
    labels = xp.asarray(np.array([0, 0]))
    assert float(ops.softmax_cross_entropy(logits, labels)) == 1e4  # (0 + 2e4) / 2
    d = to_numpy(ops.softmax_cross_entropy_backward(logits, labels))
    assert np.array_equal(d, np.array([[0, 0], [-0.5, 0.5]], dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, -np.nan, np.inf, -np.inf, "default"])
def test_non_finite_logits_give_nan(xp, dtype, bad):
    """A NaN or infinite logit makes its row's loss and gradient NaN, whatever the NaN's sign bit
    (x86 produces a negative NaN for 0 * inf); the other rows are unaffected."""
    logits = np.zeros((3, 40), dtype)
    with np.errstate(invalid="ignore"):
        logits[1, 17] = np.float32(0) * np.float32(np.inf) if bad == "default" else bad
    logits, labels = xp.asarray(logits), xp.asarray(np.array([0, 1, 2]))
    assert np.isnan(to_numpy(ops.softmax_cross_entropy(logits, labels)))
    d = to_numpy(ops.softmax_cross_entropy_backward(logits, labels))
    assert np.all(np.isnan(d[1])) and np.all(np.isfinite(d[[0, 2]]))


def test_hand_computed_values(xp):
    two = xp.asarray(np.zeros((1, 2)))
    assert math.isclose(float(ops.softmax_cross_entropy(two, xp.asarray(np.array([0])))), math.log(2),
                        rel_tol=1e-15)
    assert math.isclose(float(ref.softmax_cross_entropy(np.zeros((1, 2)), np.array([0]))), math.log(2),
                        rel_tol=1e-15)
    for k in (1, 3, 10, 1000):
        uniform = np.full((4, k), 2.5)
        assert math.isclose(float(ops.softmax_cross_entropy(xp.asarray(uniform), xp.asarray(np.arange(4) % k))),
                            math.log(k), rel_tol=1e-14, abs_tol=1e-15)
        assert math.isclose(float(ref.softmax_cross_entropy(uniform, np.arange(4) % k)), math.log(k),
                            rel_tol=1e-14, abs_tol=1e-15)
    # one-hot probability rows equal integer labels; the gradient is softmax - onehot over N
    z = np.array([[1.0, 2.0, 3.0]])
    e = np.exp(z) / np.exp(z).sum()
    zd = xp.asarray(z)
    assert math.isclose(float(ops.softmax_cross_entropy(zd, xp.asarray(np.array([[0.0, 0.0, 1.0]])))),
                        -math.log(e[0, 2]), rel_tol=1e-15)
    assert np.allclose(to_numpy(ops.softmax_cross_entropy_backward(zd, xp.asarray(np.array([2])), 3.0)),
                       3.0 * (e - [0, 0, 1]), rtol=1e-15, atol=1e-16)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("dloss", [1.0, 1.7])
def test_gradient_matches_finite_differences(xp, rng, sparse, dloss):
    logits, labels = make(rng, (4, 5), sparse)
    if not sparse:
        labels = labels * rng.uniform(0.5, 2.0, (4, 1))  # rows not summing to 1: the exact gradient
    lb = xp.asarray(labels)
    d = ops.softmax_cross_entropy_backward(xp.asarray(logits), lb, dloss)
    assert_grad(d, lambda z: to_numpy(ops.softmax_cross_entropy(xp.asarray(z), lb)), logits, dloss)
    assert_grad(ref.softmax_cross_entropy_backward(logits, labels, dloss),
                lambda z: ref.softmax_cross_entropy(z, labels), logits, dloss, what="reference")


@pytest.mark.parametrize("sparse", [True, False])
def test_empty_batch(xp, sparse):
    logits = xp.asarray(np.zeros((0, 5), np.float32))
    labels = xp.asarray(np.zeros((0,), np.int64) if sparse else np.zeros((0, 5), np.float32))
    out = ops.softmax_cross_entropy(logits, labels)  # no RuntimeWarning (warnings are errors)
    assert out.shape == () and out.dtype == np.float32 and np.isnan(to_numpy(out))
    d = ops.softmax_cross_entropy_backward(logits, labels)
    assert d.shape == (0, 5) and d.dtype == np.float32
    fused_loss, fused_d = ops.softmax_cross_entropy(logits, labels, return_grad=True)
    assert np.isnan(to_numpy(fused_loss)) and fused_d.shape == (0, 5)


def test_non_contiguous_logits(xp, rng):
    logits, labels = make(rng, (6, 14), True)
    view = logits[:, ::2]
    labels = labels % 7
    assert_close(ops.softmax_cross_entropy(xp.asarray(logits)[:, ::2], xp.asarray(labels)),
                 ref.softmax_cross_entropy(view, labels))


def test_bit_identical_for_one_and_two_threads(rng):
    logits, labels = make(rng, (301, 1000), True)
    logits = logits.astype(np.float32)
    results = on_thread_counts(lambda: [ops.softmax_cross_entropy(logits, labels),
                                        *ops.softmax_cross_entropy(logits, labels, return_grad=True)])
    for a, b in zip(*results):
        assert np.array_equal(a, b)


@pytest.mark.gpu
def test_gpu_results_repeat_bit_for_bit(cupy_xp, rng):
    """One block per row and a block tree for the mean: the same bits on every run."""
    logits, labels = make(rng, (301, 1000), True)
    lg, lb = cupy_xp.asarray(logits.astype(np.float32)), cupy_xp.asarray(labels)
    results = [[to_numpy(a) for a in (ops.softmax_cross_entropy(lg, lb), *ops.softmax_cross_entropy(lg, lb, return_grad=True))]
               for _ in range(2)]
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_bad_inputs_name_the_argument(xp, rng):
    np = xp  # the same checks on either array module
    logits, labels = (xp.asarray(a) for a in make(rng, (4, 3), True))
    fused = functools.partial(ops.softmax_cross_entropy, return_grad=True)
    for f in (ops.softmax_cross_entropy, ops.softmax_cross_entropy_backward, fused):
        for bad in (-1, 3):
            err = assert_raises_naming(ValueError, "labels", f, logits, np.array([0, 1, bad, 2]))
            assert str(bad) in str(err)
        assert_raises_naming(ValueError, "labels", f, logits, labels[:3])
        assert_raises_naming(ValueError, "labels", f, logits, labels.reshape(4, 1))
        assert_raises_naming(ValueError, "labels", f, logits, np.full((4, 4), 0.25))
        assert_raises_naming(TypeError, "labels", f, logits, np.full((4, 3), 0.25, np.float32))
        assert_raises_naming(TypeError, "labels", f, logits, labels.astype(bool))
        assert_raises_naming(TypeError, "labels", f, logits, [0, 1, 2, 0])
        assert_raises_naming(TypeError, "logits", f, logits.astype(np.float16), labels)
        assert_raises_naming(TypeError, "logits", f, logits.astype(np.int32), labels)
        assert_raises_naming(ValueError, "logits", f, logits[0], labels)
        assert_raises_naming(ValueError, "logits", f, np.zeros((4, 0)), labels * 0)
    for bad in (np.ones(2), "1", True):
        assert_raises_naming((TypeError, ValueError), "dloss", ops.softmax_cross_entropy_backward, logits,
                             labels, bad)


def test_native_kernel_checks_labels_again(xp, rng):
    """The kernel never trusts the Python layer: an out-of-range id is refused, not read."""
    np = xp  # the CUDA bindings check what the CPU ones do
    logits = xp.asarray(rng.standard_normal((5, 3)))
    lib = _backend.backend(logits).lib
    labels = np.array([0, 1, 2, 7, 1], np.int64)
    with pytest.raises(ValueError, match=r"labels\[3\] = 7"):
        lib.softmax_cross_entropy_forward(logits, labels, np.empty(5), np.empty(()))
    with pytest.raises(ValueError, match="labels"):
        lib.softmax_cross_entropy_backward(logits, labels * -1, 1.0, np.empty((5, 3)))
    with pytest.raises(ValueError, match="labels"):
        lib.softmax_cross_entropy_fused(logits, labels[:4], np.empty(5), np.empty(()), np.empty((5, 3)))
    with pytest.raises(ValueError, match="row_loss"):
        lib.softmax_cross_entropy_forward(logits, labels % 3, np.empty(4), np.empty(()))
    with pytest.raises(TypeError, match="labels"):
        lib.softmax_cross_entropy_forward(logits, labels.astype(np.float32), np.empty(5), np.empty(()))


@pytest.mark.parametrize("sparse", [True, False])
def test_matches_pytorch(rng, sparse):
    torch = pytest.importorskip("torch")
    logits, labels = make(rng, (7, 11), sparse)
    lt = torch.tensor(logits, requires_grad=True)
    out = torch.nn.functional.cross_entropy(lt, torch.tensor(labels))
    out.backward(torch.tensor(2.5, dtype=torch.float64))
    assert_close(ops.softmax_cross_entropy(logits, labels), out.detach().numpy(), what="loss")
    assert_close(ops.softmax_cross_entropy_backward(logits, labels, 2.5), lt.grad.numpy(), what="dlogits")


def test_the_kernel_skips_its_label_check_only_where_the_caller_validated_the_labels(monkeypatch):
    """The GPU's label check is a synchronization per call; the training loop validates the labels
    once per fit (ops._op_args.labels_checked) and then asks the kernels not to check again. A direct
    call checks, and the CPU kernel refuses a bad label either way (its check is free)."""
    from cnnkit.ops import _backend, _op_args

    lib = _backend.backend(np.zeros(1, np.float32)).lib
    seen = []
    for name in ("softmax_cross_entropy_forward", "softmax_cross_entropy_fused", "softmax_cross_entropy_backward"):
        real = getattr(lib, name)
        monkeypatch.setattr(lib, name, lambda *a, _real=real, **kw: (seen.append(kw["check_labels"]), _real(*a, **kw))[1])
    logits, labels = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32), np.array([0, 2, 1, 1, 0])
    ops.softmax_cross_entropy(logits, labels, return_grad=True)
    ops.softmax_cross_entropy_backward(logits, labels)
    with _op_args.labels_checked():
        ops.softmax_cross_entropy(logits, labels)
    assert seen == [True, True, False]
    monkeypatch.undo()
    row_loss, loss = np.empty(5), np.empty((), np.float32)
    with pytest.raises(ValueError, match=r"labels\[1\] = 3 is out of range \[0, 3\)"):
        lib.softmax_cross_entropy_forward(logits, np.array([0, 3, 1, 1, 0]), row_loss, loss, check_labels=False)
