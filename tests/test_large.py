"""Sizes past 32 bits (marked slow: not in the default run; `python -m pytest -m slow` runs them).

A convolution whose im2col matrix has more than 2**31 elements (2 GiB of float32 input and output,
about 3 GiB at peak): the chunked im2col + GEMM path and the 64-bit index arithmetic must give the
same numbers as the reference where a 32-bit row or element index would have wrapped."""

import numpy as np
import pytest

from cnnkit import ops
from cnnkit.ops import convolution as conv_module
from cnnkit.ops import reference as ref
from helpers import assert_close, to_numpy

pytestmark = pytest.mark.slow


def test_conv2d_with_an_im2col_matrix_beyond_2_31_elements():
    n, h, w, c, o, k = 1, 2800, 2800, 32, 32, 3
    rows, cols = n * (h - k + 1) * (w - k + 1), k * k * c
    assert rows * cols > 2**31 and not conv_module._use_direct(
        (n, h, w, c, k, k, 1, 1, 1, 1, 0, 0, 0, 0), o, forward=True, itemsize=4)  # im2col + GEMM path
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, c), dtype=np.float32)
    wk = rng.standard_normal((k, k, c, o), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    y = ops.conv2d(x, wk, b)
    assert y.shape == (n, h - 2, w - 2, o)
    # slices at the start, in the middle and at the very end (rows past 2**31 / cols elements)
    for r0, c0 in ((0, 0), (1400, 1390), (h - 2 - 6, w - 2 - 6)):
        crop = x[:, r0:r0 + 8, c0:c0 + 8].astype(np.float64)
        expected = ref.conv2d(crop, wk.astype(np.float64), b.astype(np.float64))
        assert_close(y[:, r0:r0 + 6, c0:c0 + 6], expected, np.float32, what=f"y at ({r0}, {c0})")
    # im2col itself, the last rows of the full matrix (element index > 2**31)
    tail = ops.im2col(x[:, -3:, -6:], k)
    assert_close(tail, ref.im2col(x[:, -3:, -6:].astype(np.float64), k), np.float32, what="im2col tail")

    # backward with dy non-zero only in the bottom-right corner: dw and db come from that corner
    # alone, so the reference on a crop gives them exactly; dx is zero away from it
    del y
    dy = np.zeros((n, h - 2, w - 2, o), np.float32)
    dy[:, -5:, -4:] = rng.standard_normal((n, 5, 4, o), dtype=np.float32)
    dx, dw, db = ops.conv2d_backward(dy, x, wk, b)
    crop = x[:, -7:, -6:].astype(np.float64)
    edx, edw, edb = ref.conv2d_backward(dy[:, -5:, -4:].astype(np.float64), crop, wk.astype(np.float64), b)
    assert_close(dw, edw, np.float32, what="dw")
    assert_close(db, edb, np.float32, what="db")
    assert_close(dx[:, -7:, -6:], edx, np.float32, what="dx corner")
    assert not dx[:, :-7].any() and not dx[:, :, :-6].any()


@pytest.mark.gpu
def test_gpu_ops_on_a_tensor_beyond_2_31_elements(cupy_xp):
    """One CuPy tensor past 2**31 elements (8 GiB of float32): an elementwise kernel and a window
    kernel take their 64-bit index paths, and the elements past the 32-bit boundary come out right."""
    cp = cupy_xp
    n = 2**31 + 4099
    x = cp.arange(n, dtype=cp.int64).astype(cp.float32)
    x[1::2] *= -1
    y = ops.relu(x)
    tail = to_numpy(y[-8:])
    expected = np.maximum(to_numpy(x[-8:]), 0)
    np.testing.assert_array_equal(tail, expected)
    assert float(y[2**31 + 1]) == 0.0 and float(y[2**31 + 2]) == float(x[2**31 + 2]) > 2**30
    del y
    # the same memory as an NHWC image (1, H, W, 1) with H * W > 2**31: 2x2 max pooling, last rows
    h = 46349  # h * h = 2,148,229,801 > 2**31
    img = x[:h * h].reshape(1, h, h, 1)
    pooled = ops.max_pool2d(img, 2)
    crop = to_numpy(img[:, h - 7:h - 1, h - 7:h - 1]).astype(np.float64)  # the windows of the last 3 outputs (h is odd)
    np.testing.assert_array_equal(to_numpy(pooled[:, -3:, -3:]), ref.max_pool2d(crop, 2).astype(np.float32))
