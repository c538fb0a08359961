"""Activations, softmax/log_softmax and dropout: native ops vs the NumPy reference, finite-difference
gradients, large magnitudes, NaN, the dropout mask bit for bit, bad arguments and PyTorch."""

import numpy as np
import numpy as np_module
import pytest

from cnnkit import ops
from cnnkit.ops import _backend
from cnnkit.ops import reference as ref
from cnnkit.ops.reference import nonlinear as ref_act
from helpers import assert_close, assert_grad, assert_raises_naming, on_thread_counts, to_numpy

# (name, keyword arguments): every elementwise activation, with non-default parameters too.
ELEMENTWISE = [
    ("relu", {}),
    ("leaky_relu", {}),
    ("leaky_relu", {"alpha": 0.03}),
    ("elu", {}),
    ("elu", {"alpha": 0.7}),
    ("sigmoid", {}),
    ("tanh", {}),
]
ELEMENTWISE_IDS = [name + "".join(f"-{k}{v}" for k, v in kw.items()) for name, kw in ELEMENTWISE]

# 1-D, 2-D, 4-D NHWC with odd sizes, channels 1, empty, and one big enough (> 2**15 elements) to take
# the OpenMP path.
SHAPES = [(7,), (3, 5), (2, 3, 4, 5), (1, 13, 1, 17), (0,), (2, 0, 3), (5, 7, 11, 97)]
DTYPES = [np.float32, np.float64]


def _data(rng, shape, dtype, scale=3.0):
    """Random values spread over both signs, none within 1e-3 of 0 (the kinks of relu/leaky_relu)."""
    x = rng.standard_normal(shape) * scale
    x = np.where(np.abs(x) < 1e-3, 0.5, x)
    return x.astype(dtype)


def _ref64(fn, *arrays, **kw):
    """The reference computed in float64 from the same (possibly float32) values."""
    return fn(*(np.asarray(a, np.float64) for a in arrays), **kw)


# ----------------------------------------------------------------------------------------------
# elementwise ops vs the reference

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name,kw", ELEMENTWISE, ids=ELEMENTWISE_IDS)
def test_elementwise_forward_and_backward(xp, rng, name, kw, shape, dtype):
    x = _data(rng, shape, dtype)
    dy = _data(rng, shape, dtype)
    y = getattr(ops, name)(xp.asarray(x), **kw)
    dx = getattr(ops, name + "_backward")(xp.asarray(dy), xp.asarray(x), **kw)
    assert y.dtype == dtype and y.shape == shape and dx.dtype == dtype and dx.shape == shape
    # float32 native vs float64 reference: a few roundings per element, far below 1e-5.
    assert_close(y, _ref64(getattr(ref, name), x, **kw), dtype, what=f"{name} forward")
    assert_close(dx, _ref64(getattr(ref, name + "_backward"), dy, x, **kw), dtype, what=f"{name} backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_backward_from_output_matches_backward(xp, rng, name, dtype):
    x = _data(rng, (3, 7, 5, 11), dtype)
    dy = _data(rng, x.shape, dtype)
    y = getattr(ops, name)(xp.asarray(x))
    dx = getattr(ops, f"{name}_backward_from_output")(xp.asarray(dy), y)
    assert_close(dx, _ref64(getattr(ref, name + "_backward"), dy, x), dtype, what=name)
    # out=dy: in place over the incoming gradient.
    dy_buf = xp.asarray(dy.copy())
    res = getattr(ops, f"{name}_backward_from_output")(dy_buf, y, out=dy_buf)
    assert res is dy_buf
    assert_close(res, dx, dtype)


@pytest.mark.parametrize("name,kw", ELEMENTWISE, ids=ELEMENTWISE_IDS)
def test_elementwise_gradients_match_finite_differences(xp, rng, name, kw):
    x = _data(rng, (3, 4), np.float64, scale=1.5)
    dy = rng.standard_normal(x.shape)
    dx = getattr(ops, name + "_backward")(xp.asarray(dy), xp.asarray(x), **kw)
    assert_grad(dx, lambda a: to_numpy(getattr(ops, name)(xp.asarray(a), **kw)), x, dy, what=name)


@pytest.mark.parametrize("name,kw", ELEMENTWISE, ids=ELEMENTWISE_IDS)
def test_large_magnitudes_stay_finite(xp, name, kw):
    x = np.array([-1e4, -3e3, -100.0, -88.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 88.0, 100.0, 3e3, 1e4],
                 np.float32)
    dy = np.linspace(-2, 2, x.size).astype(np.float32)
    y = to_numpy(getattr(ops, name)(xp.asarray(x), **kw))
    dx = to_numpy(getattr(ops, name + "_backward")(xp.asarray(dy), xp.asarray(x), **kw))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert_close(y, _ref64(getattr(ref, name), x, **kw), np.float32)
    assert_close(dx, _ref64(getattr(ref, name + "_backward"), dy, x, **kw), np.float32)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "elu"])
def test_float32_exp_based_ops_are_accurate_elementwise(xp, name):
    """The float32 CPU kernels use their own vectorizable exp/expm1/tanh (the GPU ones CUDA's libm):
    every element (not only the largest) must be within a few ulp of the exact value; 2e-6 is ~16
    ulp. Results below 1e-37 are excluded: exp flushes what would be subnormal to 0."""
    m = np.logspace(-8, 2, 20001)
    x = np.concatenate([-m[::-1], [0.0], m]).astype(np.float32)
    x64 = x.astype(np.float64)
    e = np.exp(-np.abs(x64))
    exact = {
        "sigmoid": (np.where(x64 >= 0, 1, e) / (1 + e), e / (1 + e) ** 2),
        "tanh": (np.tanh(x64), 1 / np.cosh(x64) ** 2),
        "elu": (np.where(x64 > 0, x64, np.expm1(np.minimum(x64, 0))),
                np.where(x64 > 0, 1, np.exp(np.minimum(x64, 0)))),
    }[name]
    xd = xp.asarray(x)
    got = (to_numpy(getattr(ops, name)(xd)), to_numpy(getattr(ops, name + "_backward")(xp.ones_like(xd), xd)))
    for what, g, ex in zip(("forward", "backward"), got, exact):
        keep = np.abs(ex) > 1e-37
        rel = np.abs(g[keep] - ex[keep]) / np.abs(ex[keep])
        worst = x[keep][np.argmax(rel)]
        assert rel.max() < 2e-6, f"{name} {what}: relative error {rel.max():.2e} at x={worst}"


def test_relu_propagates_nan_and_has_zero_gradient_at_zero(xp):
    x = np.array([np.nan, -1.0, 0.0, -0.0, 2.0, np.inf, -np.inf], np.float32)
    y = to_numpy(ops.relu(xp.asarray(x)))
    assert np.isnan(y[0])
    np.testing.assert_array_equal(y[1:], [0, 0, 0, 2, np.inf, 0])
    dx = to_numpy(ops.relu_backward(xp.ones(7, np.float32), xp.asarray(x)))
    np.testing.assert_array_equal(dx[1:], [0, 0, 0, 1, 1, 0])
    assert dx[0] == 1  # gradient at NaN: dy, as PyTorch
    assert np.isnan(to_numpy(ops.leaky_relu(xp.asarray(x)))[0])
    assert np.isnan(ref.relu(x)[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_on_outputs_large_enough_to_stream(xp, rng, dtype):
    """Outputs of 32 MiB and more take the non-temporal store path on the CPU: misaligned by one
    element (a scalar head) and of an odd length (a scalar tail), with NaN, -0 and 0 sprinkled in.
    The GPU runs the same large, misaligned, odd-length case through its grid-stride loop."""
    n = (1 << 25) // np.dtype(dtype).itemsize + 3
    x = rng.standard_normal(n + 1).astype(dtype)
    x[rng.integers(0, n, 50)] = np.nan
    x[rng.integers(0, n, 50)] = -0.0
    x[rng.integers(0, n, 50)] = 0.0
    dy = rng.standard_normal(n).astype(dtype)
    xd = xp.asarray(x)
    misaligned_out = xp.empty(n + 1, dtype)[1:]
    for src, y in ((x[1:], ops.relu(xd[1:], out=misaligned_out)), (x[:n], ops.relu(xd[:n]))):
        y = to_numpy(y)
        np.testing.assert_array_equal(y, ref.relu(src))
        np.testing.assert_array_equal(np.signbit(y), np.signbit(ref.relu(src)))
    np.testing.assert_array_equal(to_numpy(ops.relu_backward(xp.asarray(dy), xd[1:])), ref.relu_backward(dy, x[1:]))


def test_reference_on_hand_computed_values():
    x = np.array([-2.0, -0.5, 0.0, 1.5])
    np.testing.assert_array_equal(ref.relu(x), [0, 0, 0, 1.5])
    np.testing.assert_array_equal(ref.relu_backward(np.ones(4), x), [0, 0, 0, 1])
    np.testing.assert_allclose(ref.leaky_relu(x, 0.1), [-0.2, -0.05, 0, 1.5])
    np.testing.assert_allclose(ref.leaky_relu_backward(np.ones(4), x, 0.1), [0.1, 0.1, 0.1, 1])
    np.testing.assert_allclose(ref.elu(x, 2.0), [2 * (np.exp(-2) - 1), 2 * (np.exp(-0.5) - 1), 0, 1.5])
    np.testing.assert_allclose(ref.elu_backward(np.ones(4), x, 2.0), [2 * np.exp(-2), 2 * np.exp(-0.5), 2, 1])
    np.testing.assert_allclose(ref.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(ref.sigmoid_backward(np.ones(4), x), s * (1 - s), rtol=1e-14)
    np.testing.assert_allclose(ref.tanh_backward(np.ones(4), x), 1 / np.cosh(x) ** 2, rtol=1e-14)
    np.testing.assert_allclose(ref.softmax(np.array([0.0, np.log(3.0)])), [0.25, 0.75], rtol=1e-15)
    np.testing.assert_allclose(ref.log_softmax(np.array([0.0, np.log(3.0)])), np.log([0.25, 0.75]),
                               rtol=1e-15)
    # softmax Jacobian [[y0(1-y0), -y0 y1], [-y0 y1, y1(1-y1)]] times dy = (1, 0)
    np.testing.assert_allclose(ref.softmax_backward(np.array([1.0, 0.0]), np.array([0.0, np.log(3.0)])),
                               [0.25 * 0.75, -0.25 * 0.75], rtol=1e-14)


# ----------------------------------------------------------------------------------------------
# softmax and log_softmax

ROWWISE = ["softmax", "log_softmax"]
ROW_CASES = [((7,), -1), ((4, 10), -1), ((4, 10), 0), ((2, 5, 3), 1), ((3, 4, 6, 17), -1),
             ((3, 4, 6, 17), 2), ((3, 0), -1), ((0, 5), 1), ((2, 0, 3), 1), ((1, 1), -1), ((400, 1000), -1),
             ((2, 100_003), -1)]  # long rows: sums are blocked, their rounding must not grow with length


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", ROW_CASES, ids=str)
@pytest.mark.parametrize("name", ROWWISE)
def test_rowwise_forward_and_backward(xp, rng, name, shape, axis, dtype):
    x = _data(rng, shape, dtype)
    dy = _data(rng, shape, dtype)
    y = getattr(ops, name)(xp.asarray(x), axis=axis)
    dx = getattr(ops, name + "_backward")(xp.asarray(dy), xp.asarray(x), axis=axis)
    assert y.shape == shape and dx.shape == shape and y.dtype == dtype and dx.dtype == dtype
    assert y.flags.c_contiguous and dx.flags.c_contiguous
    # float32: the backward rows work in double (their difference can cancel), so only the final
    # rounding remains.
    assert_close(y, _ref64(getattr(ref, name), x, axis=axis), dtype, what=f"{name} forward")
    assert_close(dx, _ref64(getattr(ref, name + "_backward"), dy, x, axis=axis), dtype,
                 what=f"{name} backward")
    # From the output: the exact value for the y it is handed (float32 y carries its own rounding,
    # which the cancelling difference can amplify, so x's reference is not the right yardstick).
    dx_y = getattr(ops, f"{name}_backward_from_output")(xp.asarray(dy), y, axis=axis)
    y64, dy64 = np.asarray(to_numpy(y), np.float64), np.asarray(dy, np.float64)
    if name == "softmax":
        expected = y64 * (dy64 - (dy64 * y64).sum(axis=axis, keepdims=True))
    else:
        expected = dy64 - np.exp(y64) * dy64.sum(axis=axis, keepdims=True)
    assert_close(dx_y, expected, dtype, what=f"{name} backward from output")


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("name", ROWWISE)
def test_rowwise_gradients_match_finite_differences(xp, rng, name, axis):
    x = rng.standard_normal((3, 5)) * 2
    dy = rng.standard_normal(x.shape)
    dx = getattr(ops, name + "_backward")(xp.asarray(dy), xp.asarray(x), axis=axis)
    assert_grad(dx, lambda a: to_numpy(getattr(ops, name)(xp.asarray(a), axis=axis)), x, dy, what=name)


def test_softmax_rows_sum_to_one_and_match_axis_one_of_3d(xp, rng):
    x = _data(rng, (6, 9, 4), np.float32, scale=10)
    y = to_numpy(ops.softmax(xp.asarray(x), axis=1))
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-6)
    assert np.all(y >= 0)
    ls = to_numpy(ops.log_softmax(xp.asarray(x), axis=1))
    np.testing.assert_allclose(np.exp(ls), y, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(to_numpy(ops.softmax(xp.asarray(x), axis=-1)).sum(axis=-1), 1, rtol=1e-6)


@pytest.mark.parametrize("name", ROWWISE)
def test_rowwise_large_magnitudes_stay_finite(xp, name):
    x = np.array([[-1e4, 0.0, 1e4, 9999.0], [-1e4, -1e4, -1e4, -9990.0], [1e4, 1e4, 1e4, 1e4]], np.float32)
    dy = np.array([[1.0, -2.0, 0.5, 3.0], [0.5, 1.0, -1.0, 2.0], [1.0, 2.0, 3.0, 4.0]], np.float32)
    y = to_numpy(getattr(ops, name)(xp.asarray(x)))
    dx = to_numpy(getattr(ops, name + "_backward")(xp.asarray(dy), xp.asarray(x)))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert_close(y, _ref64(getattr(ref, name), x), np.float32)
    assert_close(dx, _ref64(getattr(ref, name + "_backward"), dy, x), np.float32)


# ----------------------------------------------------------------------------------------------
# out= and non-contiguous inputs

@pytest.mark.parametrize("name,kw",
                         ELEMENTWISE + [("softmax", {}), ("log_softmax", {}), ("softmax", {"axis": 0})],
                         ids=ELEMENTWISE_IDS + ["softmax", "log_softmax", "softmax-axis0"])
def test_out_preallocated_and_in_place(xp, rng, name, kw):
    x = xp.asarray(_data(rng, (4, 6, 5), np.float64))
    expected = getattr(ops, name)(x, **kw)
    out = xp.empty_like(x)
    assert getattr(ops, name)(x, out=out, **kw) is out
    assert_close(out, expected)
    x_copy = x.copy()
    assert getattr(ops, name)(x_copy, out=x_copy, **kw) is x_copy
    assert_close(x_copy, expected)


def test_non_contiguous_inputs_are_accepted(xp, rng):
    x = _data(rng, (6, 10), np.float32)
    dy = _data(rng, (6, 10), np.float32)
    xt, xd, dyd = x.T, xp.asarray(x), xp.asarray(dy)
    assert_close(ops.relu(xd.T), ref.relu(xt.astype(np.float64)), np.float32)
    assert_close(ops.sigmoid_backward(dyd.T, xd.T), _ref64(ref.sigmoid_backward, dy.T, xt), np.float32)
    assert_close(ops.softmax(xd[:, ::2], axis=0), _ref64(ref.softmax, x[:, ::2], axis=0), np.float32)


def test_bad_out_is_refused(xp):
    numpy, np = np_module, xp  # the same checks on either array module
    x = np.ones((3, 4), np.float32)
    assert_raises_naming(ValueError, "out", ops.relu, x, out=np.empty((4, 3), np.float32))
    assert_raises_naming(TypeError, "out", ops.relu, x, out=np.empty((3, 4), np.float64))
    assert_raises_naming(ValueError, "out", ops.relu, x, out=np.empty((4, 3), np.float32).T)
    if xp is numpy:  # CuPy arrays have no read-only flag
        ro = np.empty((3, 4), np.float32)
        ro.flags.writeable = False
        assert_raises_naming(ValueError, "out", ops.sigmoid, x, out=ro)
    if xp is not numpy:
        with pytest.raises(TypeError, match="mix"):
            ops.relu(x, out=numpy.empty((3, 4), np.float32))
    big = np.ones(13, np.float32)
    assert_raises_naming(ValueError, "out", ops.tanh, big[:12], out=big[1:])
    assert_raises_naming(TypeError, "out", ops.relu, x, out=[[0.0] * 4] * 3)
    assert_raises_naming(ValueError, "out", ops.softmax, x, axis=0, out=np.empty((4, 3), np.float32))


# ----------------------------------------------------------------------------------------------
# dropout

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4, 5), (5, 7, 11, 97), (0, 3)], ids=str)
def test_dropout_matches_reference_bit_for_bit(xp, rng, shape, rate, dtype):
    x = _data(rng, shape, dtype)
    dy = _data(rng, shape, dtype)
    seed = int(rng.integers(0, 2**63))
    y = to_numpy(ops.dropout(xp.asarray(x), rate, seed))
    dx = to_numpy(ops.dropout_backward(xp.asarray(dy), xp.asarray(x), rate, seed))
    np.testing.assert_array_equal(y, ref.dropout(x, rate, seed))
    np.testing.assert_array_equal(dx, ref.dropout_backward(dy, x, rate, seed))
    keep = ref_act.dropout_mask(shape, rate, seed)
    np.testing.assert_array_equal(y != 0, keep)
    np.testing.assert_array_equal(y[keep], x[keep] * dtype(1 / (1 - rate)))


def test_dropout_is_reproducible_and_depends_on_seed(xp):
    x = xp.ones((64, 1000), np.float32)
    a = to_numpy(ops.dropout(x, 0.5, seed=123))
    np.testing.assert_array_equal(a, to_numpy(ops.dropout(x, 0.5, seed=123)))
    assert not np.array_equal(a, to_numpy(ops.dropout(x, 0.5, seed=124)))
    # seeds are taken modulo 2**64, like the reference's
    np.testing.assert_array_equal(to_numpy(ops.dropout(x, 0.5, seed=-1)),
                                  to_numpy(ops.dropout(x, 0.5, seed=2**64 - 1)))


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.75])
def test_dropout_keeps_a_fraction_near_one_minus_rate(xp, rate):
    n = 400_000
    y = to_numpy(ops.dropout(xp.ones(n, np.float32), rate, seed=7))
    kept = np.count_nonzero(y) / n
    sigma = np.sqrt(rate * (1 - rate) / n)  # binomial standard deviation of the kept fraction
    assert abs(kept - (1 - rate)) < 6 * sigma
    np.testing.assert_array_equal(np.unique(y), [0, np.float32(1 / (1 - rate))])


def test_dropout_identity_when_not_training_or_rate_zero(xp):
    x = xp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    dy = xp.ones_like(x)
    assert ops.dropout(x, 0.5, 1, training=False) is x
    assert ops.dropout(x, 0.0, 1) is x
    assert ops.dropout_backward(dy, x, 0.5, 1, training=False) is dy
    assert ops.dropout_backward(dy, x, 0, 1) is dy


def test_dropout_mask_does_not_depend_on_thread_count():
    x = np.ones((3, 50_000), np.float32)
    one, two = on_thread_counts(lambda: ops.dropout(x, 0.4, seed=99))
    np.testing.assert_array_equal(one, two)


# ----------------------------------------------------------------------------------------------
# bad arguments

ALL_BACKWARD = ["relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax", "log_softmax"]


@pytest.mark.parametrize("name", ALL_BACKWARD)
def test_bad_arrays_are_refused(xp, name):
    np = xp  # the same checks on either array module
    fwd, bwd = getattr(ops, name), getattr(ops, name + "_backward")
    x = np.ones((2, 3), np.float32)
    assert_raises_naming(ValueError, "dy", bwd, np.ones((3, 2), np.float32), x)
    assert_raises_naming(TypeError, "dy", bwd, np.ones((2, 3), np.float64), x)
    assert_raises_naming(TypeError, "x", fwd, x.astype(np.float16))
    assert_raises_naming(TypeError, "x", fwd, x.astype(np.int32))
    assert_raises_naming(TypeError, "x", bwd, x, x.astype(np.float16))
    assert_raises_naming(TypeError, "x", fwd, [[1.0, 2.0]])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.2", None, True])
def test_bad_leaky_alpha(xp, bad):
    np = xp  # the same checks on either array module
    x = np.ones(3, np.float32)
    assert_raises_naming(ValueError, "alpha", ops.leaky_relu, x, alpha=bad)
    assert_raises_naming(ValueError, "alpha", ops.leaky_relu_backward, x, x, alpha=bad)


@pytest.mark.parametrize("bad", [float("nan"), float("-inf"), "1", None])
def test_bad_elu_alpha(xp, bad):
    np = xp  # the same checks on either array module
    x = np.ones(3, np.float64)
    assert_raises_naming(ValueError, "alpha", ops.elu, x, alpha=bad)
    assert_raises_naming(ValueError, "alpha", ops.elu_backward, x, x, alpha=bad)


@pytest.mark.parametrize("name", ROWWISE)
def test_bad_axis(xp, name):
    np = xp  # the same checks on either array module
    x = np.ones((2, 3), np.float32)
    for bad in (2, -3, 1.0, True, None):
        assert_raises_naming(ValueError, "axis", getattr(ops, name), x, axis=bad)
        assert_raises_naming(ValueError, "axis", getattr(ops, name + "_backward"), x, x, axis=bad)
    assert_raises_naming(ValueError, "x", getattr(ops, name), np.ones((), np.float32))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5", None, True])
def test_bad_dropout_rate(xp, bad):
    np = xp  # the same checks on either array module
    x = np.ones(4, np.float32)
    assert_raises_naming(ValueError, "rate", ops.dropout, x, bad, 0)
    assert_raises_naming(ValueError, "rate", ops.dropout_backward, x, x, bad, 0)


def test_bad_dropout_seed_and_arrays(xp):
    np = xp  # the same checks on either array module
    x = np.ones(4, np.float32)
    assert_raises_naming(TypeError, "seed", ops.dropout, x, 0.5, 1.5)
    assert_raises_naming(TypeError, "seed", ops.dropout, x, 0.5, None)
    assert_raises_naming(TypeError, "x", ops.dropout, x.astype(np.float16), 0.5, 0)
    assert_raises_naming(ValueError, "dy", ops.dropout_backward, np.ones(5, np.float32), x, 0.5, 0)


def test_native_bindings_check_their_arguments(xp):
    numpy, np = np_module, xp  # the CUDA bindings check what the CPU ones do
    x = np.ones((2, 3), np.float32)
    lib = _backend.backend(x).lib
    assert_raises_naming(ValueError, "y", lib.relu_forward, x, np.empty((3, 2), np.float32))
    assert_raises_naming(TypeError, "y", lib.relu_forward, x, np.empty((2, 3), np.float64))
    assert_raises_naming(TypeError, "x", lib.sigmoid_forward, x.astype(np.int64), np.empty((2, 3), np.int64))
    assert_raises_naming(ValueError, "dx", lib.tanh_backward, x, x, np.empty((2, 3), np.float32).T.copy().T)
    assert_raises_naming(ValueError, "alpha", lib.leaky_relu_forward, x, np.empty_like(x), -1.0)
    assert_raises_naming(ValueError, "rate", lib.dropout_forward, x, np.empty_like(x), 1.0, 0)
    if xp is numpy:  # CuPy arrays have no read-only flag
        ro = np.empty_like(x)
        ro.flags.writeable = False
        assert_raises_naming(ValueError, "y", lib.softmax_forward, x, ro)
    scalar = np.ones((), np.float32)
    assert_raises_naming(ValueError, "x", lib.softmax_forward, scalar, np.empty_like(scalar))


# ----------------------------------------------------------------------------------------------
# PyTorch cross-check

@pytest.mark.parametrize("name,kw", ELEMENTWISE + [("softmax", {"axis": 1}), ("log_softmax", {"axis": -1})],
                         ids=ELEMENTWISE_IDS + ["softmax-axis1", "log_softmax"])
def test_against_pytorch(rng, name, kw):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    fns = {
        "relu": lambda t: F.relu(t),
        "leaky_relu": lambda t: F.leaky_relu(t, kw.get("alpha", 0.2)),
        "elu": lambda t: F.elu(t, kw.get("alpha", 1.0)),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softmax": lambda t: F.softmax(t, dim=kw.get("axis")),
        "log_softmax": lambda t: F.log_softmax(t, dim=kw.get("axis")),
    }
    x = _data(rng, (4, 9, 5, 3), np.float64)
    dy = rng.standard_normal(x.shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = fns[name](tx)
    ty.backward(torch.tensor(dy))
    assert_close(getattr(ops, name)(x, **kw), ty.detach().numpy(), what=f"{name} vs torch")
    assert_close(getattr(ops, name + "_backward")(dy, x, **kw), tx.grad.numpy(), what=f"{name} grad vs torch")
