"""ops.dense / dense_backward (the Dense layer's GEMMs) vs the reference, gradients, bad input."""

import numpy as np
import pytest

from cnnkit import ops
from cnnkit.ops import reference as ref
from helpers import assert_close, assert_grad, assert_raises_naming, to_numpy

# (x shape, out features): batch 1, primes, rank 3 and 4 inputs (Dense acts on the last axis), empty.
CASES = [((1, 1), 1), ((7, 13), 5), ((32, 97), 10), ((2, 3, 11), 4), ((2, 3, 5, 7), 3), ((0, 6), 4)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("shape,out", CASES, ids=str)
def test_dense_matches_reference(xp, rng, shape, out, use_bias, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((shape[-1], out)).astype(dtype)
    b = rng.standard_normal(out).astype(dtype) if use_bias else None
    dy = rng.standard_normal(shape[:-1] + (out,)).astype(dtype)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)
    xb = None if b is None else xp.asarray(b)
    y = ops.dense(xp.asarray(x), xp.asarray(w), xb)
    assert y.dtype == dtype
    assert_close(y, ref.dense(x64, w64, b64), dtype, what="dense")
    grads = ops.dense_backward(xp.asarray(dy), xp.asarray(x), xp.asarray(w), xb)
    expected = ref.dense_backward(dy.astype(np.float64), x64, w64, b64)
    for g, e, name in zip(grads, expected, ("dx", "dw", "db")):
        if e is None:
            assert g is None
        else:
            assert_close(g, e, dtype, what=name)
    dw, db = ops.dense_backward(xp.asarray(dy), xp.asarray(x), xp.asarray(w), xb, need_dx=False)[1:]
    assert_close(dw, expected[1], dtype, what="weights-only dw")


def test_dense_gradients_by_finite_differences(xp, rng):
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    dy = rng.standard_normal((4, 3))
    A = xp.asarray

    def dense(xv, wv, bv):
        return to_numpy(ops.dense(A(xv), A(wv), A(bv)))

    dx, dw, db = ops.dense_backward(A(dy), A(x), A(w), A(b))
    assert_grad(dx, lambda v: dense(v, w, b), x, dy, what="dx")
    assert_grad(dw, lambda v: dense(x, v, b), w, dy, what="dw")
    assert_grad(db, lambda v: dense(x, w, v), b, dy, what="db")


def test_dense_bad_input(xp, rng):
    np = xp  # the same checks on either array module
    x = xp.asarray(rng.standard_normal((4, 5)).astype(np.float32))
    w = xp.asarray(rng.standard_normal((5, 3)).astype(np.float32))
    assert_raises_naming(ValueError, "x", ops.dense, x[0], w)
    assert_raises_naming(ValueError, "w", ops.dense, x, w[:4])
    assert_raises_naming(ValueError, "b", ops.dense, x, w, np.zeros(4, np.float32))
    assert_raises_naming(TypeError, "w", ops.dense, x, w.astype(np.float64))
    assert_raises_naming(ValueError, "dy", ops.dense_backward, np.zeros((4, 2), np.float32), x, w)


@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_fused_relu(xp, rng, use_bias):
    x, w = rng.standard_normal((6, 7)).astype(np.float32), rng.standard_normal((7, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32) if use_bias else None
    y = ops.dense(xp.asarray(x), xp.asarray(w), None if b is None else xp.asarray(b), activation="relu")
    expected = np.maximum(ref.dense(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64)), 0)
    assert_close(y, expected, np.float32, what="dense + relu")
    assert_raises_naming(ValueError, "activation", ops.dense, xp.asarray(x), xp.asarray(w),
                         activation="tanh")
