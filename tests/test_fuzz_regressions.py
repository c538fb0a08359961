"""Regression tests for what the property-based tests (test_fuzz_*.py) found, one per fix."""

import numpy as np
import pytest

from cnnkit import _core, ops
from cnnkit.ops import reference as ref


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


@pytest.mark.parametrize("padding", [((0, 1), 2), (1, (2, 0)), [[0, 1], 2]])
def test_reference_takes_a_padding_that_mixes_an_int_and_a_pair(padding):
    # Found by the long run of test_fuzz_pool: the native ops take each axis as an int or a pair,
    # ops.reference's pad_spec indexed an int ("'int' object is not subscriptable").
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4, 3))
    (pt, pb), (pl, pr) = ref._common.pad_spec(padding, (5, 4), (2, 3), (1, 1))
    explicit = ((pt, pb), (pl, pr))
    for native, reference in ((ops.max_pool2d, ref.max_pool2d), (ops.avg_pool2d, ref.avg_pool2d)):
        y = native(x, (2, 3), strides=1, padding=padding)
        np.testing.assert_allclose(y, reference(x, (2, 3), strides=1, padding=padding), rtol=1e-12)
        np.testing.assert_array_equal(y, native(x, (2, 3), strides=1, padding=explicit))
    w = rng.standard_normal((2, 3, 3, 4))
    np.testing.assert_allclose(ops.conv2d(x, w, padding=padding), ref.conv2d(x, w, padding=padding),
                               rtol=1e-12, atol=1e-12)


def test_float32_dense_gradient_of_cancelling_terms_is_within_the_rounding_of_its_terms():
    # Found by the long run of test_fuzz_dense (a test tolerance, not a kernel fault): dw of a
    # (12, 1) x (12, 1) product is one dot product of 12 random terms, which can cancel to 1/50 of
    # them, so float32 rounding of the terms is 3e-5 of the result. The fuzz tests now bound the
    # error by the sum of |terms|; the kernel is well within it.
    rng = np.random.default_rng(11)
    for _ in range(200):
        x = rng.standard_normal((3, 4, 1)).astype(np.float32)
        dy = rng.standard_normal((3, 4, 1)).astype(np.float32)
        w = rng.standard_normal((1, 1)).astype(np.float32)
        _, dw, _ = ops.dense_backward(dy, x, w, None)
        x64, dy64 = x.reshape(12, 1).astype(np.float64), dy.reshape(12, 1).astype(np.float64)
        assert abs(float(dw[0, 0]) - (x64.T @ dy64).item()) <= 1e-6 * (np.abs(x64).T @ np.abs(dy64)).item()


def test_batch_norm_backward_with_dy_constant_over_the_batch_is_zero_within_rounding():
    # Found by the long run of test_fuzz_batch_norm (a test tolerance): in training, dx of a dy that is
    # the same for every sample is 0, both sides compute ~1e-16, and a relative check against 2e-16
    # failed. The fuzz test now bounds dx by the size of the terms it cancels.
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 1)).astype(np.float32)
    dy = np.broadcast_to(rng.standard_normal((1, 1)).astype(np.float32), (3, 1))
    mean, var = np.zeros(1, np.float32), np.ones(1, np.float32)
    dx, dgamma, dbeta = ops.batch_norm_backward(dy, x, np.ones(1, np.float32), np.zeros(1, np.float32),
                                                mean, var, training=True, momentum=0.0, epsilon=1e-3)
    scale = abs(float(dy[0, 0])) / float(np.sqrt(x.astype(np.float64).var() + 1e-3))
    assert np.max(np.abs(dx)) <= 1e-6 * scale
    np.testing.assert_allclose(dbeta, 3 * dy[0], rtol=1e-6)


def test_reference_same_padding_of_billions_of_pixels_is_found_at_once():
    # Found when the long runs of test_fuzz_conv seemed to hang: ops.reference found "same" padding
    # by trying one more pixel at a time, and a dilation of 2**31 needs 2**31 of them. The native ops
    # were fine; the reference now bisects.
    import time

    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 1, 2))
    t0 = time.perf_counter()
    expected = ref.im2col(x, (2, 1), strides=1, padding="same", dilation=(2**31, 1))
    assert time.perf_counter() - t0 < 5
    np.testing.assert_array_equal(ops.im2col(x, (2, 1), strides=1, padding="same", dilation=(2**31, 1)), expected)
    assert ref._common.padding_amounts("same", 3, 2, 1, 2**31) == (2**30, 2**30)


def _unaligned(values):
    raw = np.zeros(values.nbytes + 1, np.uint8)
    view = raw[1:].view(values.dtype).reshape(values.shape)
    view[...] = values
    assert view.flags.c_contiguous and not view.flags.aligned
    return view


def test_unaligned_arrays_are_copied_before_the_kernels_see_them():
    # Found by tools/sanitize.sh (UBSan: "load of misaligned address ... for type 'const double'"):
    # a C-contiguous view at an odd byte offset went to the kernels as it was (np.ascontiguousarray
    # keeps it), and a double* to it is undefined behaviour, which a vectorized loop that peels
    # to an aligned address can turn into wrong results or a fault. ops now copies such arrays,
    # refuses an unaligned out=, and the native checks refuse what is still unaligned.
    rng = np.random.default_rng(14)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 5, 4, 3)).astype(dtype)
        w = rng.standard_normal((3, 3, 3, 2)).astype(dtype)
        xu, wu = _unaligned(x), _unaligned(w)
        np.testing.assert_array_equal(ops.relu(xu), ops.relu(x))
        np.testing.assert_array_equal(ops.conv2d(xu, wu, padding="same"), ops.conv2d(x, w, padding="same"))
        np.testing.assert_array_equal(ops.max_pool2d(xu, 2), ops.max_pool2d(x, 2))
        labels = _unaligned(rng.integers(0, 3, 6).astype(np.int64))
        logits = rng.standard_normal((6, 3)).astype(dtype)
        np.testing.assert_array_equal(ops.softmax_cross_entropy(logits, labels),
                                      ops.softmax_cross_entropy(logits, np.array(labels)))
        with pytest.raises(ValueError, match="out must be aligned"):
            ops.relu(x, out=_unaligned(np.empty_like(x)))
        with pytest.raises(ValueError, match="aligned"):
            _core.relu_forward(xu, np.empty_like(x))


@pytest.mark.parametrize("kernel, strides, dilation", [((2, 2), (2**62, 2**62), 1), ((2, 3), (1, 2**62), 1),
                                                       ((1, 2), 2, (2**62, 1)), ((2, 1), (2**62, 3), (1, 2**61))])
def test_strides_and_dilations_near_2_62_compute_without_overflow(kernel, strides, dilation):
    # Found by the long fuzz run under tools/sanitize.sh (UBSan: "signed integer overflow: 4 * 2^62" in
    # the direct kernel's column step SW * C): a stride along an axis with one output, or a dilation
    # of a one-tap window, selects nothing; the native geometry now sets it to 1 and checks that the
    # padded image fits in 64 bits.
    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 5, 6, 4))
    kwargs = dict(strides=strides, padding="valid", dilation=dilation)
    for o in (3, 64):  # the direct kernel and im2col + GEMM
        w = rng.standard_normal((*kernel, 4, o))
        y = ops.conv2d(x, w, **kwargs)
        np.testing.assert_allclose(y, ref.conv2d(x, w, **kwargs), rtol=1e-12, atol=1e-12)
        dy = rng.standard_normal(y.shape)
        for got, want in zip(ops.conv2d_backward(dy, x, w, **kwargs), ref.conv2d_backward(dy, x, w, **kwargs)):
            if want is not None:
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if dilation == 1:
        np.testing.assert_array_equal(ops.max_pool2d(x, kernel, strides=strides),
                                      ref.max_pool2d(x, kernel, strides=strides))
        np.testing.assert_allclose(ops.avg_pool2d(x, kernel, strides=strides),
                                   ref.avg_pool2d(x, kernel, strides=strides), rtol=1e-12)
