"""conv2d forward/backward, im2col and col2im: native vs the NumPy reference over awkward geometries,
on both native paths (im2col + GEMM, and the direct kernel for small filters), bounded workspace,
adjointness, finite differences, the fused ReLU and the weights-only backward, determinism,
hand-computed cases, bad inputs, PyTorch."""

import tracemalloc

import numpy as np
import pytest

import cnnkit
from cnnkit import ops
from cnnkit.ops import _backend
from cnnkit.ops import convolution as conv_ops
from cnnkit.ops import reference as ref
from cnnkit.ops.reference import _common
from helpers import assert_close, assert_grad, assert_raises_naming, assert_sums_close, to_numpy

# (x shape NHWC, w shape HWIO, window arguments, with bias)
CASES = [
    ((1, 7, 5, 3), (3, 3, 3, 1), dict(), True),                                    # batch 1, primes
    ((2, 11, 13, 17), (2, 3, 17, 5), dict(padding="same"), False),                # asymmetric same
    ((3, 9, 10, 1), (2, 2, 1, 3), dict(strides=3), True),                         # stride > kernel
    ((2, 9, 8, 3), (3, 2, 3, 4), dict(dilation=2, padding=1), True),              # dilation 2, int pad
    ((1, 13, 11, 3), (3, 3, 3, 7), dict(dilation=3, padding="same"), False),      # dilation 3, same
    ((2, 6, 7, 3), (3, 2, 3, 2), dict(padding=((2, 0), (1, 3)), strides=(2, 1)), True),
    ((2, 8, 8, 3), (3, 3, 3, 5), dict(padding="same", strides=2), True),          # same, stride 2
    ((2, 5, 6, 2), (3, 3, 2, 3), dict(padding=(2, 1), strides=2), False),         # (ph, pw)
    ((3, 5, 7, 17), (1, 1, 17, 5), dict(dilation=2), True),                       # 1x1 fast path
    ((2, 7, 7, 3), (1, 1, 3, 4), dict(strides=2), True),                          # 1x1, strided
    ((1, 4, 5, 3), (2, 2, 3, 3), dict(padding=3, strides=(1, 2)), True),          # pad > kernel / 2
    ((2, 3, 3, 2), (5, 4, 2, 3), dict(padding="same"), True),                     # window > input
    ((0, 5, 5, 3), (3, 3, 3, 2), dict(padding="same"), True),                     # empty batch
]
IDS = [f"x{c[0]}-w{c[1]}-{c[2]}" for c in CASES]


def _data(rng, x_shape, w_shape, with_bias, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[3]).astype(dtype) if with_bias else None
    return x, w, b


def _f64(a):
    return None if a is None else a.astype(np.float64)


@pytest.fixture(params=["gemm", "direct"])
def path(request, monkeypatch):
    """Run the test on one native path: im2col + GEMM, or the direct kernel for every non-1x1 shape
    (by moving the filter-size threshold that picks between them)."""
    limit = 0 if request.param == "gemm" else 2**62
    for name in ("_DIRECT_FORWARD_MAX_KO", "_DIRECT_WEIGHTS_MAX_KO", "_DIRECT_WEIGHTS_MAX_O", "_GPU_DIRECT_MAX_K"):
        monkeypatch.setattr(conv_ops, name, limit)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_shape,kwargs,with_bias", CASES, ids=IDS)
def test_conv2d_forward_backward_match_reference(xp, rng, path, dtype, x_shape, w_shape, kwargs, with_bias):
    x, w, b = _data(rng, x_shape, w_shape, with_bias, dtype)
    expected = ref.conv2d(_f64(x), _f64(w), _f64(b), **kwargs)
    xd, wd, bd = xp.asarray(x), xp.asarray(w), None if b is None else xp.asarray(b)
    y = ops.conv2d(xd, wd, bd, **kwargs)
    assert y.dtype == dtype and y.shape == expected.shape
    assert_close(y, expected, dtype, what="y")

    dy = rng.standard_normal(expected.shape).astype(dtype)
    dx, dw, db = ops.conv2d_backward(xp.asarray(dy), xd, wd, bd, **kwargs)
    edx, edw, edb = ref.conv2d_backward(_f64(dy), _f64(x), _f64(w), _f64(b), **kwargs)
    # dw and db are sums over every output pixel: measured against the sizes of their terms
    tdw, tdb = ref.conv2d_backward(abs(_f64(dy)), abs(_f64(x)), _f64(w), _f64(b), **kwargs)[1:]
    assert_close(dx, edx, dtype, what="dx")
    assert_sums_close(dw, edw, tdw, dtype, what="dw")
    if with_bias:
        assert_sums_close(db, edb, tdb, dtype, what="db")
    else:
        assert db is None and edb is None

    dw2, db2 = ops.conv2d_backward(xp.asarray(dy), xd, wd, bd, **kwargs, need_dx=False)[1:]
    assert_sums_close(dw2, edw, tdw, dtype, what="dw (weights only)")
    assert (db2 is None) == (b is None)
    if with_bias:
        assert_sums_close(db2, edb, tdb, dtype, what="db (weights only)")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_shape,kwargs,with_bias", [CASES[i] for i in (0, 1, 3, 5, 8, 12)],
                         ids=[IDS[i] for i in (0, 1, 3, 5, 8, 12)])
def test_fused_relu_matches_reference(xp, rng, path, dtype, x_shape, w_shape, kwargs, with_bias):
    x, w, b = _data(rng, x_shape, w_shape, with_bias, dtype)
    expected = np.maximum(ref.conv2d(_f64(x), _f64(w), _f64(b), **kwargs), 0.0)
    bd = None if b is None else xp.asarray(b)
    y = ops.conv2d(xp.asarray(x), xp.asarray(w), bd, activation="relu", **kwargs)
    assert y.dtype == dtype
    assert_close(y, expected, dtype, what="relu(conv)")
    assert float(to_numpy(y).min(initial=0.0)) == 0.0


def test_fused_relu_keeps_nan(xp, path):
    """As ops.relu: NaN passes through (a NaN input pixel poisons the outputs whose window reads it)."""
    x = np.ones((1, 4, 4, 1))
    x[0, 0, 0, 0] = np.nan
    w = -np.ones((2, 2, 1, 3))
    y = to_numpy(ops.conv2d(xp.asarray(x), xp.asarray(w), xp.zeros(3), activation="relu"))
    assert np.isnan(y[0, 0, 0]).all() and not np.isnan(y[0, 1:]).any()
    assert (y[0, 1:] == 0).all()  # sums of -1s: clipped


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_weight_gradient_is_deterministic_and_accurate(rng, dtype):
    """Many row blocks (C1's shape at batch 9, which takes the direct kernel): float32 stays within
    1e-5 of a float64 reference, and the result is bit for bit the same with 1 or 2 threads (fixed
    blocks, no atomics)."""
    assert conv_ops._use_direct(_backend.geometry((9, 28, 28, 1), 3)[0], 32, forward=False)
    x, w, b = _data(rng, (9, 28, 28, 1), (3, 3, 1, 32), True, dtype)
    dy = rng.standard_normal((9, 26, 26, 32)).astype(dtype) + 0.5  # a mean, so sums grow
    edw, edb = ref.conv2d_backward(_f64(dy), _f64(x), _f64(w), _f64(b))[1:]
    lib = _backend.backend(x).lib
    old = lib.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            lib.set_num_threads(threads)
            results.append(ops.conv2d_backward(dy, x, w, b, need_dx=False)[1:])
    finally:
        lib.set_num_threads(old)
    (dw1, db1), (dw2, db2) = results
    np.testing.assert_array_equal(dw1, dw2)
    np.testing.assert_array_equal(db1, db2)
    assert_close(dw1, edw, dtype, what="dw")
    assert_close(db1, edb, dtype, what="db")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_direct_weight_gradient_is_deterministic_and_accurate(cupy_xp, rng, dtype):
    """The CUDA direct weight gradient over many pixel chunks (C1's shape at batch 9): within 1e-5
    of a float64 reference in float32, and bit for bit the same on every run (fixed chunks added in
    chunk order, no atomics)."""
    xp = cupy_xp
    assert conv_ops._use_direct(_backend.geometry((9, 28, 28, 1), 3)[0], 32, forward=False, gpu=True)
    x, w, b = _data(rng, (9, 28, 28, 1), (3, 3, 1, 32), True, dtype)
    dy = rng.standard_normal((9, 26, 26, 32)).astype(dtype) + 0.5
    edw, edb = ref.conv2d_backward(_f64(dy), _f64(x), _f64(w), _f64(b))[1:]
    args = [xp.asarray(a) for a in (dy, x, w, b)]
    dw1, db1 = ops.conv2d_backward(*args, need_dx=False)[1:]
    dw2, db2 = ops.conv2d_backward(*args, need_dx=False)[1:]
    np.testing.assert_array_equal(to_numpy(dw1), to_numpy(dw2))
    np.testing.assert_array_equal(to_numpy(db1), to_numpy(db2))
    assert_close(dw1, edw, dtype, what="dw")
    assert_close(db1, edb, dtype, what="db")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_shape,kwargs,with_bias", CASES, ids=IDS)
def test_im2col_col2im_match_reference(xp, rng, dtype, x_shape, w_shape, kwargs, with_bias):
    x = rng.standard_normal(x_shape).astype(dtype)
    window = w_shape[:2]
    col = ops.im2col(xp.asarray(x), window, **kwargs)
    expected = ref.im2col(x, window, **kwargs)
    assert col.dtype == dtype
    np.testing.assert_array_equal(to_numpy(col), expected)  # a pure copy: exact

    c = rng.standard_normal(expected.shape).astype(dtype)
    dx = ops.col2im(xp.asarray(c), x_shape, window, **kwargs)
    assert_close(dx, ref.col2im(c.astype(np.float64), x_shape, window, **kwargs), dtype, what="col2im")


@pytest.mark.parametrize("x_shape,w_shape,kwargs,with_bias", CASES[:8], ids=IDS[:8])
def test_col2im_is_the_adjoint_of_im2col(xp, rng, x_shape, w_shape, kwargs, with_bias):
    """<im2col(x), c> == <x, col2im(c)> for random x and c."""
    x = rng.standard_normal(x_shape)
    col = to_numpy(ops.im2col(xp.asarray(x), w_shape[:2], **kwargs))
    c = rng.standard_normal(col.shape)
    back = to_numpy(ops.col2im(xp.asarray(c), x_shape, w_shape[:2], **kwargs))
    lhs, rhs = np.vdot(col, c), np.vdot(x, back)
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)) * np.sqrt(col.size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [1, 3, 5, 6, 11], ids=[IDS[i] for i in (1, 3, 5, 6, 11)])
def test_tiny_workspace_gives_the_same_results(xp, rng, dtype, case):
    """A workspace of a few rows forces many chunks, most ending inside an image."""
    x_shape, w_shape, kwargs, with_bias = CASES[case]
    x, w, b = (None if a is None else xp.asarray(a) for a in _data(rng, x_shape, w_shape, with_bias, dtype))
    dy = xp.asarray(rng.standard_normal(ops.conv2d(x, w, b, **kwargs).shape).astype(dtype))
    y0 = ops.conv2d(x, w, b, **kwargs)
    g0 = ops.conv2d_backward(dy, x, w, b, **kwargs)
    row_bytes = w_shape[0] * w_shape[1] * w_shape[2] * np.dtype(dtype).itemsize
    old = cnnkit.config.workspace_limit, cnnkit.config.gpu_workspace_limit
    try:
        # 5 rows: not a divisor of OH*OW here
        cnnkit.config.workspace_limit = cnnkit.config.gpu_workspace_limit = 5 * row_bytes + 1
        y1 = ops.conv2d(x, w, b, **kwargs)
        g1 = ops.conv2d_backward(dy, x, w, b, **kwargs)
    finally:
        cnnkit.config.workspace_limit, cnnkit.config.gpu_workspace_limit = old
    # The chunked GEMMs may round differently (OpenBLAS blocking, dw summed chunk by chunk).
    assert_close(y1, y0, dtype, what="y")
    for a1, a0, name in zip(g1, g0, ("dx", "dw", "db")):
        if a0 is not None:
            assert_close(a1, a0, dtype, what=name)


def test_workspace_stays_bounded(rng):
    """Peak extra memory of conv2d / conv2d_backward, beyond their outputs, stays under the
    workspace limit although an unchunked im2col matrix would be ~30x the limit."""
    x = rng.standard_normal((64, 16, 16, 8))
    w = rng.standard_normal((3, 3, 8, 4))
    b = rng.standard_normal(4)
    limit = 256 * 1024
    im2col_bytes = 64 * 16 * 16 * 3 * 3 * 8 * 8
    assert im2col_bytes > 30 * limit
    dy = rng.standard_normal((64, 16, 16, 4))
    slack = 64 * 1024  # small bookkeeping: views, the (K, O) partial dw, db
    old = cnnkit.config.workspace_limit
    try:
        cnnkit.config.workspace_limit = limit
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        y = ops.conv2d(x, w, b, padding="same")
        peak = tracemalloc.get_traced_memory()[1] - base
        assert peak - y.nbytes < limit + slack, f"forward peak {peak - y.nbytes} bytes beyond y"
        del y
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        dx, dw, db = ops.conv2d_backward(dy, x, w, b, padding="same")
        peak = tracemalloc.get_traced_memory()[1] - base
        outs = dx.nbytes + dw.nbytes + db.nbytes
        assert peak - outs < limit + slack, f"backward peak {peak - outs} bytes beyond dx, dw, db"
    finally:
        tracemalloc.stop()
        cnnkit.config.workspace_limit = old


@pytest.mark.parametrize("x_shape,w_shape,kwargs", [
    ((2, 5, 4, 2), (3, 2, 2, 3), dict()),
    ((1, 6, 5, 2), (3, 3, 2, 2), dict(strides=2, padding="same")),
    ((2, 5, 5, 1), (2, 2, 1, 2), dict(dilation=2, padding=((1, 0), (0, 2)))),
    ((1, 3, 4, 3), (1, 1, 3, 2), dict()),
])
def test_conv2d_backward_matches_finite_differences(xp, rng, path, x_shape, w_shape, kwargs):
    x, w, b = _data(rng, x_shape, w_shape, True, np.float64)
    A = xp.asarray

    def conv(xv, wv, bv):
        return to_numpy(ops.conv2d(A(xv), A(wv), A(bv), **kwargs))

    dy = rng.standard_normal(conv(x, w, b).shape)
    dx, dw, db = ops.conv2d_backward(A(dy), A(x), A(w), A(b), **kwargs)
    assert_grad(dx, lambda v: conv(v, w, b), x, dy, what="dx")
    assert_grad(dw, lambda v: conv(x, v, b), w, dy, what="dw")
    assert_grad(db, lambda v: conv(x, w, v), b, dy, what="db")
    dw2, db2 = ops.conv2d_backward(A(dy), A(x), A(w), A(b), **kwargs, need_dx=False)[1:]
    assert_grad(dw2, lambda v: conv(x, v, b), w, dy, what="dw (weights only)")
    assert_grad(db2, lambda v: conv(x, w, v), b, dy, what="db (weights only)")


@pytest.mark.parametrize("conv", [ops.conv2d, ref.conv2d], ids=["native", "reference"])
def test_hand_computed_cases(xp, conv):
    arr = xp.asarray if conv is ops.conv2d else np.asarray
    # A constant image has zero Laplacian.
    x = arr(np.full((1, 5, 5, 1), 3.0))
    lap = arr(np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64).reshape(3, 3, 1, 1))
    np.testing.assert_array_equal(to_numpy(conv(x, lap)), np.zeros((1, 3, 3, 1)))
    # 1..9 in a 3x3 image, 2x2 box filter: sums of each 2x2 block, plus the bias.
    x = arr(np.arange(1.0, 10.0).reshape(1, 3, 3, 1))
    box = arr(np.ones((2, 2, 1, 1)))
    y = to_numpy(conv(x, box, arr(np.array([0.5]))))
    np.testing.assert_array_equal(y[0, :, :, 0], [[12.5, 16.5], [24.5, 28.5]])
    # "same" with a 2x2 kernel pads one pixel at the bottom/right only (TensorFlow rule).
    y = to_numpy(conv(x, box, padding="same"))
    np.testing.assert_array_equal(y[0, :, :, 0], [[12, 16, 9], [24, 28, 15], [15, 17, 9]])
    # Two input and two output channels, stride 2: each output picks its own channel mix.
    x = arr(np.stack([np.arange(16.0).reshape(4, 4), np.ones((4, 4))], axis=-1)[None])
    w = arr(np.array([[1.0, 0.0], [0.0, 2.0]]).reshape(1, 1, 2, 2))
    y = to_numpy(conv(x, w, strides=2))
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, 2], [8, 10]])
    np.testing.assert_array_equal(y[0, :, :, 1], [[2, 2], [2, 2]])


def test_reference_im2col_by_hand():
    x = np.arange(1.0, 7.0).reshape(1, 2, 3, 1)  # [[1, 2, 3], [4, 5, 6]]
    col = ref.im2col(x, (2, 2), padding=((0, 0), (1, 0)))
    np.testing.assert_array_equal(col, [[0, 1, 0, 4], [1, 2, 4, 5], [2, 3, 5, 6]])
    dx = ref.col2im(np.ones_like(col), x.shape, (2, 2), padding=((0, 0), (1, 0)))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[2, 2, 1], [2, 2, 1]])  # windows reading each pixel


def test_conv2d_bad_inputs(xp):
    np = xp  # the same checks on either array module
    x = xp.zeros((2, 6, 6, 3), xp.float32)
    w = xp.zeros((3, 3, 3, 4), xp.float32)
    b = xp.zeros(4, xp.float32)
    dy = xp.zeros((2, 4, 4, 4), xp.float32)
    assert_raises_naming(ValueError, "x", ops.conv2d, x[0], w)
    assert_raises_naming(ValueError, "w", ops.conv2d, x, w[0])
    assert_raises_naming(ValueError, "w", ops.conv2d, x, np.zeros((3, 3, 2, 4), np.float32))
    assert_raises_naming(ValueError, "b", ops.conv2d, x, w, np.zeros(5, np.float32))
    assert_raises_naming(ValueError, "dy", ops.conv2d_backward, dy[:, :3], x, w, b)
    assert_raises_naming(ValueError, "dy", ops.conv2d_backward, dy, x, w, b, padding="same")
    assert_raises_naming(ValueError, "strides", ops.conv2d, x, w, strides=0)
    assert_raises_naming(ValueError, "strides", ops.conv2d, x, w, strides=(1, -2))
    assert_raises_naming(ValueError, "dilation", ops.conv2d, x, w, dilation=0)
    assert_raises_naming(ValueError, "kernel_size", ops.conv2d, x[:, :2], w)  # empty output
    assert_raises_naming(ValueError, "padding", ops.conv2d, x, w, padding="full")
    assert_raises_naming(TypeError, "x", ops.conv2d, x.astype(np.float16), w)
    assert_raises_naming(TypeError, "w", ops.conv2d, x, w.astype(np.int32))
    assert_raises_naming(TypeError, "w", ops.conv2d, x, w.astype(np.float64))
    assert_raises_naming(TypeError, "b", ops.conv2d, x, w, b.astype(np.float64))
    assert_raises_naming(TypeError, "dy", ops.conv2d_backward, dy.astype(np.float64), x, w)
    assert_raises_naming(ValueError, "activation", ops.conv2d, x, w, activation="tanh")
    assert_raises_naming(ValueError, "dy", ops.conv2d_backward, dy[:, :3], x, w, b, need_dx=False)
    assert_raises_naming(TypeError, "dy", ops.conv2d_backward, dy.astype(np.float64), x, w, need_dx=False)
    assert_raises_naming(ValueError, "x", ops.im2col, x[0], 3)
    assert_raises_naming(ValueError, "col", ops.col2im, np.zeros((5, 27), np.float32), x.shape, 3)
    assert_raises_naming(ValueError, "x_shape", ops.col2im, np.zeros((5, 27), np.float32), (6, 6, 3), 3)


def test_native_bindings_check_their_arguments(xp):
    np = xp  # the CUDA bindings check exactly what the CPU ones do
    x = xp.zeros((2, 6, 6, 3), xp.float32)
    geom, (oh, ow) = _backend.geometry(x.shape, 3)
    rows, k = 2 * oh * ow, 27
    lib = _backend.backend(x).lib
    with pytest.raises(ValueError, match="row range"):
        lib.im2col(x, np.zeros((2, k), np.float32), geom, rows - 1, rows + 1)
    with pytest.raises(ValueError, match="row range"):
        lib.col2im_accumulate(np.zeros((1, k), np.float32), x.copy(), geom, 3, 2)
    with pytest.raises(ValueError, match="col"):
        lib.im2col(x, np.zeros((3, k), np.float32), geom, 0, 2)
    with pytest.raises(ValueError, match="dx"):
        lib.col2im_accumulate(np.zeros((2, k), np.float32), x[:1].copy(), geom, 0, 2)
    with pytest.raises(TypeError, match="col"):
        lib.im2col(x, np.zeros((2, k), np.float64), geom, 0, 2)
    with pytest.raises(ValueError, match="y"):
        lib.bias_add(np.zeros((3, 5), np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="dy"):
        lib.bias_grad(np.zeros((3, 5), np.float64), np.zeros(4, np.float64))
    y = np.zeros((2, oh, ow, 4), np.float32)
    w = np.zeros((3, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match="w"):
        lib.conv2d_direct_forward(x, w[:2], None, y, geom, False)
    with pytest.raises(ValueError, match="y"):
        lib.conv2d_direct_forward(x, w, None, y[:, :3], geom, False)
    with pytest.raises(ValueError, match="b"):
        lib.conv2d_direct_forward(x, w, np.zeros(5, np.float32), y, geom, False)
    with pytest.raises(TypeError, match="w"):
        lib.conv2d_direct_forward(x, w.astype(np.float64), None, y, geom, False)
    with pytest.raises(ValueError, match="dy"):
        lib.conv2d_direct_backward_weights(y[:, :3], x, w.copy(), None, geom)
    with pytest.raises(ValueError, match="db"):
        lib.conv2d_direct_backward_weights(y, x, w.copy(), np.zeros(3, np.float32), geom)
    with pytest.raises(ValueError, match="dw"):
        lib.conv2d_direct_backward_weights(y, x, w[:, :, :2].copy(), None, geom)


def test_bias_grad_is_deterministic_and_accurate(xp, rng):
    """Column sums over many rows, in float32, agree with a float64 sum and repeat bit for bit."""
    dy = rng.standard_normal((3000, 7)).astype(np.float32) + 100.0
    x = xp.zeros((1, 3000, 1, 1), np.float32)
    w = xp.zeros((1, 1, 1, 7), np.float32)
    b = xp.zeros(7, np.float32)
    dyd = xp.asarray(dy.reshape(1, 3000, 1, 7))
    db = ops.conv2d_backward(dyd, x, w, b)[2]
    assert_close(db, dy.astype(np.float64).sum(axis=0), np.float32, tol=1e-6)
    again = ops.conv2d_backward(dyd, x, w, b)[2]
    np.testing.assert_array_equal(to_numpy(db), to_numpy(again))


@pytest.mark.parametrize("x_shape,w_shape,kwargs,with_bias", [CASES[i] for i in (1, 3, 5, 6, 8)],
                         ids=[IDS[i] for i in (1, 3, 5, 6, 8)])
def test_conv2d_matches_pytorch(rng, x_shape, w_shape, kwargs, with_bias):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = _data(rng, x_shape, w_shape, True, np.float64)
    strides = _common.as_pair(kwargs.get("strides", 1))
    dilation = _common.as_pair(kwargs.get("dilation", 1))
    (pt, pb), (pl, pr) = _common.pad_spec(kwargs.get("padding", "valid"), x_shape[1:3], w_shape[:2],
                                          strides, dilation)
    tx = torch.tensor(x).permute(0, 3, 1, 2).requires_grad_()
    tw = torch.tensor(w).permute(3, 2, 0, 1).requires_grad_()
    tb = torch.tensor(b).requires_grad_()
    ty = F.conv2d(F.pad(tx, (pl, pr, pt, pb)), tw, tb, stride=strides, dilation=dilation)
    y = ops.conv2d(x, w, b, **kwargs)
    assert_close(y, ty.detach().permute(0, 2, 3, 1).numpy(), np.float64, what="y")
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy).permute(0, 3, 1, 2))
    dx, dw, db = ops.conv2d_backward(dy, x, w, b, **kwargs)
    assert_close(dx, tx.grad.permute(0, 2, 3, 1).numpy(), np.float64, what="dx")
    assert_close(dw, tw.grad.permute(2, 3, 1, 0).numpy(), np.float64, what="dw")
    assert_close(db, tb.grad.numpy(), np.float64, what="db")
