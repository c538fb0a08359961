"""Regression tests for what the property-based tests (test_fuzz_*.py) found, one per fix."""

import numpy as np
import pytest

from cnnkit import _core, ops


@pytest.mark.parametrize("kwargs", [
    dict(strides=2**63), dict(strides=(1, 2**64)), dict(dilation=2**63), dict(padding=2**64),
    dict(padding=((0, 2**63 - 1), (0, 2**63 - 1))),
])
def test_window_arguments_beyond_64_bits_are_a_value_error(kwargs):
    # Found by test_fuzz_conv: a stride, dilation or padding past int64 reached the native geometry
    # cast and came back as a RuntimeError ("Unable to cast Python instance of type int").
    x = np.ones((0, 3, 3, 1), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    for call in (lambda: ops.conv2d(x, w, **kwargs), lambda: ops.im2col(x, (1, 1), **kwargs),
                 lambda: ops.max_pool2d(x, 1, **{k.replace("dilation", "strides"): v for k, v in kwargs.items()})):
        with pytest.raises(ValueError, match="64 bits|2\\*\\*62|too big"):
            call()


def test_native_geometry_refuses_extents_it_cannot_add():
    x = np.ones((1, 3, 3, 1), np.float32)
    col = np.empty((9, 1), np.float32)
    big = 2**63 - 1
    with pytest.raises(ValueError, match="64 bits"):
        _core.im2col(x, col, (1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 2**64, 0, 0, 0), 0, 9)
    with pytest.raises(ValueError, match="2\\^62"):
        _core.im2col(x, col, (1, 3, 3, 1, 1, 1, 1, 1, 1, 1, big, big, 0, 0), 0, 9)


@pytest.mark.parametrize("x_shape, w_shape", [((0, 3), (3, 0)), ((2, 0), (0, 3)), ((0, 2, 0), (0, 0)),
                                              ((4, 0), (0, 0))])
def test_dense_with_zero_features(x_shape, w_shape):
    # Found by test_fuzz_dense: reshape(-1, 0) is ambiguous, so an empty feature axis raised
    # "cannot reshape array of size 0" (in ops.dense and in the reference alike).
    x = np.ones(x_shape, np.float64)
    w = np.ones(w_shape, np.float64)
    b = np.arange(w_shape[1], dtype=np.float64)
    y = ops.dense(x, w, b)
    assert y.shape == x_shape[:-1] + (w_shape[1],)
    np.testing.assert_array_equal(y, np.broadcast_to(b, y.shape))  # x @ w sums nothing: y = b
    np.testing.assert_array_equal(ops.reference.dense(x, w, b), y)
    dy = np.ones(y.shape)
    dx, dw, db = ops.dense_backward(dy, x, w, b)
    assert dx.shape == x.shape and dw.shape == w.shape
    np.testing.assert_array_equal(dw, np.zeros(w_shape))  # x is empty or has no features
    np.testing.assert_array_equal(db, dy.sum(axis=tuple(range(dy.ndim - 1))))


def test_conv2d_with_a_huge_same_padding_computes_instead_of_aborting():
    # Found by test_fuzz_conv (the process aborted): "same" padding with a dilation of 2**40 pads by
    # ~2**40 rows; the direct kernel allocated its padded row bands inside an OpenMP region, and the
    # std::bad_alloc there called std::terminate. Such shapes now go to im2col + GEMM, which never
    # materializes the padding, and the direct kernel allocates before its parallel region.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3, 2))
    w = rng.standard_normal((2, 2, 2, 3))
    kwargs = dict(dilation=(2**40, 1), padding="same")
    y = ops.conv2d(x, w, **kwargs)
    # TensorFlow's "same" rule, worked out: height total (5 - 1) + 2**40 + 1 - 5, width (3 - 1) + 2 - 3
    explicit = dict(dilation=(2**40, 1), padding=((2**39, 2**39), (0, 1)))
    col = ops.reference.im2col(x, (2, 2), **explicit)
    np.testing.assert_allclose(y.reshape(-1, 3), col @ w.reshape(-1, 3), rtol=1e-12, atol=1e-12)
    dx, dw, _ = ops.conv2d_backward(np.ones_like(y), x, w, **kwargs)
    np.testing.assert_allclose(dw.reshape(-1, 3), col.T @ np.ones((col.shape[0], 3)), rtol=1e-12)
    assert dx.shape == x.shape


def test_direct_conv_kernel_raises_memory_error_naming_the_size():
    x = np.ones((1, 5, 1, 1), np.float32)
    w = np.ones((2, 1, 1, 1), np.float32)
    geom = (1, 5, 1, 1, 2, 1, 1, 1, 2**40, 1, 2**39, 2**39, 0, 0)
    with pytest.raises(MemoryError, match="cannot allocate [0-9]+ x 4 bytes"):
        _core.conv2d_direct_forward(x, w, None, np.empty((1, 5, 1, 1), np.float32), geom, False)
    with pytest.raises(MemoryError, match="cannot allocate"):
        _core.conv2d_direct_backward_weights(np.ones((1, 5, 1, 1), np.float32), x, np.empty_like(w), None, geom)
