"""The CUDA kernels' index arithmetic, checked on the CPU (marked ``cuda_host``; needs no GPU).

cnnkit._cuda_host (csrc/bind_cuda_host.cpp, a test-only module every ``pip install .`` builds with
the C++ compiler) runs the per-element functions of the CUDA kernels (the ``__host__ __device__``
functions in csrc/cuda/*.cuh, which the .cu launchers call once per thread) in a loop over the grid
the launcher would start (csrc/cuda_host/*.cpp). Each function is bound by the same code as its
twins in cnnkit._core and cnnkit._cuda (same arguments, same checks), with the keyword
``index_bits`` in the place of ``stream``: 0 uses the index type the launcher picks, 32 and 64 force
one (32 is refused where the launcher would index in 64 bits); host.last_index_bits() says which
one ran. Covered: im2col/col2im, direct convolution forward and weight gradient, every pooling
(max, average, stochastic, global), batch norm's elementwise passes, the elementwise activations,
dropout, bias and the optimizers' fused updates. Device-only: block reductions (softmax rows, the
losses, batch norm's statistics).

Every case runs in both index types on the shapes the GPU tests use (test_conv.py, test_pool.py,
test_activation.py), against the NumPy reference, plus the inputs of issue 22's bugs: geometry
beyond 32 bits, Inf/NaN at padded borders, more than 65535 images in global pooling, batch norm's
coefficient rows past 2^31. The GPU runs of those regressions are under the ``gpu`` mark."""

import numpy as np
import pytest

from cnnkit import _core, _cuda_host as host, ops
from cnnkit.ops import _backend, _op_args
from cnnkit.ops import convolution as conv_ops
from cnnkit.ops import reference as ref
from helpers import assert_close, assert_sums_close, to_numpy
from test_activation import ELEMENTWISE, ELEMENTWISE_IDS, SHAPES as ACT_SHAPES, _data as act_data
from test_conv import CASES as CONV_CASES, IDS as CONV_IDS
from test_optimizer_ops import (CASES as OPT_CASES, IDS as OPT_IDS, ORDER as OPT_ORDER, assert_update_close,
                                expected as opt_expected, initial_state as opt_initial_state)
from test_pool import CASE_IDS as POOL_IDS, CASES as POOL_CASES, OPS as POOL_OPS

pytestmark = pytest.mark.cuda_host

BITS = [32, 64]
DTYPES = [np.float32, np.float64]


def _f64(a):
    return None if a is None else a.astype(np.float64)


def _bits(fn, *args, **kwargs):
    """Calls host.<fn>; returns the index bits (32 or 64) it used."""
    fn(*args, **kwargs)
    return host.last_index_bits()


def _chunks(rows, parts=3):
    """[row0, row1) ranges cutting rows into `parts` pieces, as a small conv workspace does."""
    cuts = np.linspace(0, rows, parts + 1).astype(int)
    return list(zip(cuts[:-1], cuts[1:]))


def _conv_data(rng, x_shape, w_shape, with_bias, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[3]).astype(dtype) if with_bias else None
    return x, w, b


# ----------------------------------------------------------------------------------------------
# im2col and col2im (csrc/cuda/im2col.cuh)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,w_shape,kwargs,with_bias", CONV_CASES, ids=CONV_IDS)
def test_im2col_and_col2im_match_reference(rng, bits, dtype, x_shape, w_shape, kwargs, with_bias):
    x = rng.standard_normal(x_shape).astype(dtype)
    window = w_shape[:2]
    geom, _ = _backend.geometry(x_shape, window, **kwargs)
    expected = ref.im2col(x, window, **kwargs)
    rows = expected.shape[0]
    col = np.full_like(expected, np.nan)
    for r0, r1 in _chunks(rows):
        part = np.full((r1 - r0, expected.shape[1]), np.nan, dtype)
        assert _bits(host.im2col, x, part, geom, r0, r1, index_bits=bits) == bits
        col[r0:r1] = part
    np.testing.assert_array_equal(col, expected)  # a pure copy: exact

    c = rng.standard_normal(expected.shape).astype(dtype)
    dx = np.zeros(x_shape, dtype)
    for r0, r1 in _chunks(rows):
        host.col2im_accumulate(np.ascontiguousarray(c[r0:r1]), dx, geom, r0, r1, index_bits=bits)
    assert_close(dx, ref.col2im(c.astype(np.float64), x_shape, window, **kwargs), dtype, what="col2im")


# ----------------------------------------------------------------------------------------------
# Direct convolution (csrc/cuda/conv_direct.cuh)


def _direct_forward(x, w, b, geom, relu, bits):
    n, oh, ow, o = geom.N, geom.OH, geom.OW, w.shape[3]
    y = np.full((n, oh, ow, o), np.nan, x.dtype)
    host.conv2d_direct_forward(x, w, b, y, geom, relu, index_bits=bits)
    assert host.last_index_bits() == bits
    return y


def _direct_weights(dy, x, w_shape, with_bias, geom, bits):
    dw = np.full(w_shape, np.nan, x.dtype)
    db = np.full(w_shape[3], np.nan, x.dtype) if with_bias else None
    host.conv2d_direct_backward_weights(dy, x, dw, db, geom, index_bits=bits)
    assert host.last_index_bits() == bits
    return dw, db




@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,w_shape,kwargs,with_bias", CONV_CASES, ids=CONV_IDS)
def test_direct_conv_matches_reference(rng, bits, dtype, x_shape, w_shape, kwargs, with_bias):
    x, w, b = _conv_data(rng, x_shape, w_shape, with_bias, dtype)
    geom, _ = _backend.geometry(x_shape, w_shape[:2], **kwargs)
    expected = ref.conv2d(_f64(x), _f64(w), _f64(b), **kwargs)
    assert_close(_direct_forward(x, w, b, geom, False, bits), expected, dtype, what="y")
    assert_close(_direct_forward(x, w, b, geom, True, bits), np.maximum(expected, 0), dtype, what="relu(y)")

    dy = rng.standard_normal(expected.shape).astype(dtype)
    edw, edb = ref.conv2d_backward(_f64(dy), _f64(x), _f64(w), _f64(b), **kwargs)[1:]
    tdw, tdb = ref.conv2d_backward(abs(_f64(dy)), abs(_f64(x)), _f64(w), _f64(b), **kwargs)[1:]  # terms' sizes
    dw, db = _direct_weights(dy, x, w_shape, with_bias, geom, bits)
    assert_sums_close(dw, edw, tdw, dtype, "dw")
    if with_bias:
        assert_sums_close(db, edb, tdb, dtype, "db")


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_weight_gradient_over_many_chunks(rng, bits, dtype):
    """C1's shape at batch 9 (tests/test_conv.py's GPU twin): 6084 pixels, 3 chunks of 2048, each
    thread's lane sums added in lane order, the chunks in chunk order."""
    x, w, b = _conv_data(rng, (9, 28, 28, 1), (3, 3, 1, 32), True, dtype)
    geom, _ = _backend.geometry(x.shape, 3)
    dy = rng.standard_normal((9, 26, 26, 32)).astype(dtype) + 0.5  # a mean, so sums grow
    edw, edb = ref.conv2d_backward(_f64(dy), _f64(x), _f64(w), _f64(b))[1:]
    dw, db = _direct_weights(dy, x, w.shape, True, geom, bits)
    assert_close(dw, edw, dtype, what="dw")
    assert_close(db, edb, dtype, what="db")


# ----------------------------------------------------------------------------------------------
# Pooling (csrc/cuda/pool.cuh): max, average, stochastic (inference and training), global


def _run(lib, name, *args, bits):
    """lib.<name>(*args): host with index_bits=bits (checking that they ran, unless 0), or _core."""
    if lib is _core:
        return getattr(lib, name)(*args)
    getattr(lib, name)(*args, index_bits=bits)
    assert bits == 0 or host.last_index_bits() == bits


def _pool(op, x, geom, out_shape, bits, lib=host, seed=1234):
    """Forward and the backward of one op, as cnnkit.ops calls the kernels: y, and a function
    dy -> dx."""
    y = np.full(out_shape, np.nan, x.dtype)
    index = None
    if op == "avg":
        _run(lib, "avg_pool2d_forward", x, y, geom, bits=bits)
    elif op == "stochastic_inference":
        _run(lib, "stochastic_pool2d_forward", x, y, None, geom, False, seed, bits=bits)
    else:  # max and training-mode stochastic pooling save the index that routes dy back
        index = np.full(out_shape, -7, _op_args.index_dtype(x.shape[1], x.shape[2]))
        if op == "max":
            _run(lib, "max_pool2d_forward", x, y, index, geom, bits=bits)
        else:
            _run(lib, "stochastic_pool2d_forward", x, y, index, geom, True, seed, bits=bits)

    def backward(dy):
        dx = np.full_like(x, np.nan)
        if op == "avg":
            _run(lib, "avg_pool2d_backward", dy, dx, geom, bits=bits)
        elif op == "stochastic_inference":
            _run(lib, "stochastic_pool2d_backward_inference", dy, x, dx, geom, bits=bits)
        else:
            _run(lib, "max_pool2d_backward", dy, index, dx, geom, bits=bits)
        return dx

    return y, backward


def _ref_pool(op, name, *args, geo, seed=1234):
    if op.startswith("stochastic"):
        fn = ref.stochastic_pool2d_backward if name == "backward" else ref.stochastic_pool2d
        return fn(*args, **geo, training=op.endswith("training"), seed=seed)
    return getattr(ref, f"{op}_pool2d" + ("_backward" if name == "backward" else ""))(*args, **geo)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", POOL_OPS)
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_pooling_matches_reference(rng, bits, dtype, op, case):
    x_shape, pool_size, strides, padding = case
    geo = dict(pool_size=pool_size, strides=strides, padding=padding)
    if op == "max":  # no ties: the argmax is unambiguous
        x = (rng.permutation(int(np.prod(x_shape))).reshape(x_shape) / 7.0 - 3.0).astype(dtype)
    else:
        x = rng.standard_normal(x_shape).astype(dtype)
    geom, out_shape = _op_args.pool_geometry(x_shape, pool_size, strides, padding)
    y, backward = _pool(op, x, geom, out_shape, bits)
    x64 = x.astype(np.float64)
    assert_close(y, _ref_pool(op, "forward", x64, geo=geo), dtype, what=f"{op} forward")
    dy = rng.standard_normal(out_shape).astype(dtype)
    assert_close(backward(dy), _ref_pool(op, "backward", dy.astype(np.float64), x64, geo=geo), dtype,
                 what=f"{op} backward")


def _global(x, bits):
    n, _, _, c = x.shape
    y_avg, y_max = np.full((n, c), np.nan, x.dtype), np.full((n, c), np.nan, x.dtype)
    argmax = np.full((n, c), -7, _op_args.index_dtype(x.shape[1], x.shape[2]))
    host.global_avg_pool2d_forward(x, y_avg)
    host.global_max_pool2d_forward(x, y_max, argmax)
    dy = np.arange(1, n * c + 1, dtype=x.dtype).reshape(n, c)
    dx_avg, dx_max = np.full_like(x, np.nan), np.full_like(x, np.nan)
    assert _bits(host.global_avg_pool2d_backward, dy, dx_avg, index_bits=bits) == bits
    assert _bits(host.global_max_pool2d_backward, dy, argmax, dx_max, index_bits=bits) == bits
    return y_avg, y_max, argmax, dy, dx_avg, dx_max


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 7, 5, 3), (3, 4, 9, 17), (0, 3, 3, 2), (2, 40, 31, 5),
                                   (2, 3, 3, 33)])  # test_pool.py's shapes, and a second channel tile
def test_global_pooling_matches_reference(rng, bits, dtype, shape):
    x = rng.permutation(int(np.prod(shape))).reshape(shape).astype(dtype) / 5.0 - 1.0  # no ties
    x[:, -1, -1, 0] = np.nan  # a NaN wins the max
    x64 = x.astype(np.float64)
    y_avg, y_max, argmax, dy, dx_avg, dx_max = _global(x, bits)
    assert_close(y_avg, ref.global_avg_pool2d(x64), dtype, what="global avg")
    assert_close(y_max, ref.global_max_pool2d(x64), dtype, what="global max")
    assert_close(dx_avg, ref.global_avg_pool2d_backward(dy.astype(np.float64), x64), dtype, what="global avg dx")
    assert_close(dx_max, ref.global_max_pool2d_backward(dy.astype(np.float64), x64), dtype, what="global max dx")


def test_global_pooling_takes_any_batch_size():
    """Issue 22, bug 5: the batch was on gridDim.y (at most 65535) and the GPU refused more images;
    the blocks now run along x of the grid, a block-stride loop covering any N."""
    n = 70_000
    x = np.arange(n * 2 * 3, dtype=np.float32).reshape(n, 2, 1, 3) % 11
    y_avg, y_max, argmax, dy, dx_avg, dx_max = _global(x, 32)
    np.testing.assert_array_equal(y_avg, x.mean(axis=(1, 2)))
    np.testing.assert_array_equal(y_max, x.max(axis=(1, 2)))
    np.testing.assert_array_equal(argmax, x.reshape(n, 2, 3).argmax(axis=1))


# ----------------------------------------------------------------------------------------------
# Issue 22, bug 1: 32-bit indices only where every extent the kernel computes fits, not just the
# tensor sizes. Each geometry below has tiny tensors and one entry (a stride, a dilation, a padding,
# a dilated window or a padded extent) past int32; the launcher must pick 64-bit indices, and the
# kernels must agree with the hand values and with cnnkit._core's im2col (independent CPU code).

BIG = 2**32
# (x shape, window, geometry arguments)
HUGE = [
    ((1, 1, 1, 1), (1, 1), dict(strides=(BIG, 1), padding=((BIG, 0), (0, 0)))),    # stride and top pad
    ((1, 1, 1, 1), (2, 1), dict(dilation=(BIG, 1), padding=((BIG, 0), (0, 0)))),   # dilation
    ((1, 2, 1, 1), (3, 1), dict(strides=(2**30, 1), dilation=(2**30, 1),            # (K-1)*D+1 > 2^31
                                padding=((2**31, 2**31), (0, 0)))),
    ((1, 1, 3, 2), (1, 2), dict(strides=(1, 2**31), padding=((0, 0), (2**31, 0)))),  # left pad, column stride
    ((1, 1, 1, 1), (1, 1), dict(strides=(BIG, 1), padding=((0, BIG), (0, 0)))),     # bottom pad only
    ((2, 3, 2, 1), (2, 2), dict(strides=(3, 2**31 - 2**24), padding=((1, 1), (0, 2**31)))),  # padded width
]
HUGE_IDS = [str(kw) for _, _, kw in HUGE]


def test_issue_22_hand_values():
    """The inputs of the issue: the 32-bit path gave [10, 10], [5, 5] and [5, 5]."""
    x = np.full((1, 1, 1, 1), 5.0)
    geom, _ = _backend.geometry(x.shape, (1, 1), **HUGE[0][2])
    y = _direct_forward(x, np.full((1, 1, 1, 1), 2.0), None, geom, False, 64)
    np.testing.assert_array_equal(y.ravel(), [0, 10])
    geom, _ = _backend.geometry(x.shape, (2, 1), **HUGE[1][2])
    col = np.full((1, 2), np.nan)
    host.im2col(x, col, geom, 0, 1)
    np.testing.assert_array_equal(col, [[0, 5]])
    dx = np.zeros_like(x)
    host.col2im_accumulate(np.array([[3.0, 4.0]]), dx, geom, 0, 1)
    np.testing.assert_array_equal(dx.ravel(), [4])  # only tap 1 read the pixel


@pytest.mark.parametrize("x_shape,window,kwargs", HUGE, ids=HUGE_IDS)
def test_huge_geometry_takes_64_bit_indices_and_matches_the_cpu(rng, x_shape, window, kwargs):
    x = rng.standard_normal(x_shape)
    geom, (oh, ow) = _backend.geometry(x_shape, window, **kwargs)
    rows, k = geom.N * oh * ow, geom.patch_size
    expected = np.full((rows, k), np.nan)
    _core.im2col(x, expected, geom, 0, rows)
    col = np.full((rows, k), np.nan)
    host.im2col(x, col, geom, 0, rows)
    assert host.last_index_bits() == 64
    np.testing.assert_array_equal(col, expected)
    with pytest.raises(ValueError, match="index_bits=32 refused"):
        host.im2col(x, col, geom, 0, rows, index_bits=32)

    c = rng.standard_normal((rows, k))
    expected_dx, dx = np.zeros(x_shape), np.zeros(x_shape)
    _core.col2im_accumulate(c, expected_dx, geom, 0, rows)
    host.col2im_accumulate(c, dx, geom, 0, rows)
    assert host.last_index_bits() == 64
    np.testing.assert_array_equal(dx, expected_dx)

    # the direct convolution against the GEMM over the CPU's im2col matrix (the CPU's own direct
    # kernel copies padded rows, which these paddings make gigabytes long)
    w_shape = (*window, x_shape[3], 3)
    w, b = rng.standard_normal(w_shape), rng.standard_normal(3)
    expected_y = (expected @ w.reshape(k, 3) + b).reshape(geom.N, oh, ow, 3)
    y = np.full_like(expected_y, np.nan)
    host.conv2d_direct_forward(x, w, b, y, geom, False)
    assert host.last_index_bits() == 64
    assert_close(y, expected_y, np.float64, what="y")

    dy = rng.standard_normal(expected_y.shape)
    dw, db = np.full(w_shape, np.nan), np.full(3, np.nan)
    host.conv2d_direct_backward_weights(dy, x, dw, db, geom)
    assert host.last_index_bits() == 64
    assert_close(dw, (expected.T @ dy.reshape(rows, 3)).reshape(w_shape), np.float64, what="dw")
    assert_close(db, dy.sum(axis=(0, 1, 2)), np.float64, what="db")


# (x shape, pool_size, strides, padding): a window past int32 (and "same" padding near 2^31)
HUGE_POOL = [((1, 1, 1, 1), (BIG, 1), None, "same"), ((1, 2, 3, 2), (1, 2**31), 1, "same"),
             ((2, 3, 1, 1), (2**31 + 2, 1), (2, 1), ((2**31, 2), (0, 0)))]


@pytest.mark.parametrize("op", POOL_OPS)
@pytest.mark.parametrize("case", HUGE_POOL, ids=[str(c[1:]) for c in HUGE_POOL])
def test_huge_pool_geometry_takes_64_bit_indices_and_matches_the_cpu(rng, op, case):
    """max_pool2d(x, (2**32, 1), padding="same") saw an empty window (-inf, argmax -1) on the
    32-bit path; the CPU gives the pixel."""
    x_shape, pool_size, strides, padding = case
    x = rng.permutation(int(np.prod(x_shape))).reshape(x_shape) + 1.0  # positive, no ties
    geom, out_shape = _op_args.pool_geometry(x_shape, pool_size, strides, padding)
    with pytest.raises(ValueError, match="index_bits=32 refused"):
        _pool(op, x, geom, out_shape, 32)
    y, backward = _pool(op, x, geom, out_shape, 64)
    y0, backward0 = _pool(op, x, geom, out_shape, 0)
    assert host.last_index_bits() == 64
    np.testing.assert_array_equal(y0, y)
    expected, expected_backward = _pool(op, x, geom, out_shape, 0, lib=_core)
    assert_close(y, expected, np.float64, what=f"{op} forward")
    dy = rng.standard_normal(out_shape)
    assert_close(backward(dy), expected_backward(dy), np.float64, what=f"{op} backward")
    if op == "max" and x_shape == (1, 1, 1, 1):
        assert y.ravel().tolist() == x.ravel().tolist()


def test_small_geometry_keeps_32_bit_indices(rng):
    """The fix does not cost the common case its 32-bit indices."""
    x_shape, w_shape, kwargs, _ = CONV_CASES[6]
    x = rng.standard_normal(x_shape)
    geom, (oh, ow) = _backend.geometry(x_shape, w_shape[:2], **kwargs)
    rows = geom.N * oh * ow
    assert _bits(host.im2col, x, np.empty((rows, geom.patch_size)), geom, 0, rows) == 32
    y = np.empty((geom.N, oh, ow, w_shape[3]))
    host.conv2d_direct_forward(x, rng.standard_normal(w_shape), None, y, geom, False)
    assert host.last_index_bits() == 32


# ----------------------------------------------------------------------------------------------
# Issue 22, bug 4: a padded tap contributes 0 * w (and 0 * dy to the weight gradient), so an Inf or
# NaN weight (or dy) gives NaN at the border on every path, as the CPU and the reference do.


def _nonfinite_case():
    x = np.ones((1, 3, 3, 1))
    w = np.full((3, 3, 1, 2), np.inf)
    w[1, 1, 0, 1] = np.nan
    w[0, 0, 0, 1] = 1.0
    dy = np.ones((1, 3, 3, 2))
    dy[0, 0, 0, 0] = np.inf
    dy[0, 2, 1, 1] = np.nan
    return x, w, dy


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("bits", BITS)
def test_padded_taps_propagate_inf_and_nan(bits):
    x, w, dy = _nonfinite_case()
    geom, _ = _backend.geometry(x.shape, (3, 3), padding="same")
    expected = ref.conv2d(x, w, padding="same")
    assert np.isnan(expected[0, 0, 0, 0]) and np.isinf(expected[0, 1, 1, 0])  # the issue's values
    assert_close(_direct_forward(x, w, None, geom, False, bits), expected, np.float64, what="y")
    edw = ref.conv2d_backward(dy, x, w, padding="same", need_dx=False)[1]
    assert np.isnan(edw).any()
    dw, _ = _direct_weights(dy, x, w.shape, False, geom, bits)
    assert_close(dw, edw, np.float64, what="dw")


# ----------------------------------------------------------------------------------------------
# The same regressions through cnnkit.ops on the GPU (both conv paths), skipped without one.


@pytest.fixture(params=["gemm", "direct"])
def conv_path(request, monkeypatch):
    """One native conv path: im2col + GEMM, or the direct kernel (as tests/test_conv.py's ``path``)."""
    limit = 0 if request.param == "gemm" else 2**62
    for name in ("_DIRECT_FORWARD_MAX_KO", "_DIRECT_WEIGHTS_MAX_KO", "_DIRECT_WEIGHTS_MAX_O", "_GPU_DIRECT_MAX_K"):
        monkeypatch.setattr(conv_ops, name, limit)
    return request.param


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("x_shape,window,kwargs", HUGE, ids=HUGE_IDS)
def test_gpu_huge_geometry_matches_the_cpu(cupy_xp, conv_path, rng, x_shape, window, kwargs):
    cp = cupy_xp
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((*window, x_shape[3], 3))
    b = rng.standard_normal(3)
    expected = ops.conv2d(x, w, b, **kwargs)
    assert_close(ops.conv2d(cp.asarray(x), cp.asarray(w), cp.asarray(b), **kwargs), expected, what="y")
    dy = rng.standard_normal(expected.shape)
    want = ops.conv2d_backward(dy, x, w, b, **kwargs)
    got = ops.conv2d_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), cp.asarray(b), **kwargs)
    for g, e, what in zip(got, want, ("dx", "dw", "db")):
        assert_close(g, e, np.float64, what=what)
    col = ops.im2col(cp.asarray(x), window, **kwargs)
    np.testing.assert_array_equal(to_numpy(col), ops.im2col(x, window, **kwargs))


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_gpu_padded_taps_propagate_inf_and_nan(cupy_xp, conv_path):
    cp = cupy_xp
    x, w, dy = _nonfinite_case()
    assert_close(ops.conv2d(cp.asarray(x), cp.asarray(w), padding="same"), ref.conv2d(x, w, padding="same"),
                 np.float64, what="y")
    dw = ops.conv2d_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), padding="same", need_dx=False)[1]
    assert_close(dw, ref.conv2d_backward(dy, x, w, padding="same", need_dx=False)[1], np.float64, what="dw")


@pytest.mark.gpu
@pytest.mark.parametrize("op", ["max", "avg", "stochastic"])
@pytest.mark.parametrize("case", HUGE_POOL, ids=[str(c[1:]) for c in HUGE_POOL])
def test_gpu_huge_pool_geometry_matches_the_cpu(cupy_xp, rng, op, case):
    cp = cupy_xp
    x_shape, pool_size, strides, padding = case
    geo = dict(pool_size=pool_size, strides=strides, padding=padding)
    x = rng.permutation(int(np.prod(x_shape))).reshape(x_shape) + 1.0
    kw = dict(training=True, seed=5) if op == "stochastic" else {}
    fn = getattr(ops, f"{op}_pool2d")
    y = fn(x, **geo, **kw)
    assert_close(fn(cp.asarray(x), **geo, **kw), y, np.float64, what=op)
    dy = rng.standard_normal(y.shape)
    back = getattr(ops, f"{op}_pool2d_backward")
    assert_close(back(cp.asarray(dy), cp.asarray(x), **geo, **kw), back(dy, x, **geo, **kw), np.float64, what=op)


@pytest.mark.gpu
def test_gpu_global_pooling_takes_any_batch_size(cupy_xp):
    cp = cupy_xp
    x = np.arange(70_000 * 2 * 3, dtype=np.float32).reshape(70_000, 2, 1, 3) % 11
    for name in ("global_avg_pool2d", "global_max_pool2d"):
        assert_close(getattr(ops, name)(cp.asarray(x)), getattr(ref, name)(x.astype(np.float64)), np.float32,
                     what=name)


# ----------------------------------------------------------------------------------------------
# Batch normalization's elementwise passes (csrc/cuda/norm.cuh) and issue 22, bug 2


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (40, 33), (0, 5)])
def test_batch_norm_elementwise_passes(rng, bits, dtype, shape):
    """The three passes against their formulas, with coef laid out as norm.cu writes it. Random
    coefficients can make a result cancel to almost nothing (one element in the (1, 1) case), so each
    element's error is measured against the size of the terms it was computed from: a few roundings
    of the dtype, whatever the cancellation."""
    a, b = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    coef = rng.standard_normal((4, shape[1])).astype(dtype)
    a64, b64, c64 = _f64(a), _f64(b), _f64(coef)
    m = np.abs(c64)
    for name, expected, terms in [
            ("batch_norm_normalize", (a64 - c64[0]) * c64[1] + c64[2], (abs(a64) + m[0]) * m[1] + m[2]),
            ("batch_norm_train_dx", c64[1] * (a64 - c64[2] - (b64 - c64[0]) * c64[3]),
             m[1] * (abs(a64) + m[2] + (abs(b64) + m[0]) * m[3])),
            ("batch_norm_scale_dx", c64[3] * a64, m[3] * abs(a64))]:
        out = np.full(shape, np.nan, dtype)
        assert _bits(getattr(host, name), a, b, coef, out, index_bits=bits) == bits
        if out.size:
            err = np.max(np.abs(out.astype(np.float64) - expected) / np.maximum(terms, np.finfo(np.float64).tiny))
            assert err <= 8 * np.finfo(dtype).eps, f"{name}: error {err:.2e} of the terms' size"


def test_batch_norm_coefficient_rows_pick_64_bit_indices():
    """Issue 22, bug 2: the passes read coef[3 * C + c], but only M * C was checked against int32, so
    C >= 537M channels with a small batch read out of bounds. (No array that large is made here: the
    launcher's choice is asked directly.)"""
    assert host.batch_norm_index_bits(1, 2**29) == 64  # 4 * C = 2^31
    assert host.batch_norm_index_bits(1, 2**28) == 32
    assert host.batch_norm_index_bits(2**20, 2**9) == 32
    assert host.batch_norm_index_bits(2**22, 2**9) == 64  # M * C = 2^31


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_batch_norm_with_half_a_billion_channels(cupy_xp):
    """Bug 2 on the device: 2^29 channels and batch 1, whose inference pass reads coef[3 * C + c]
    past 2^31 (about 20 GiB of GPU memory: x, y, four (C,) vectors and 4C coefficients)."""
    cp = cupy_xp
    C = 2**29
    x = cp.ones((1, C), cp.float32)
    x[0, -1] = 3.0
    gamma, beta = cp.full(C, 2.0, cp.float32), cp.full(C, 0.5, cp.float32)
    mean, var = cp.zeros(C, cp.float32), cp.ones(C, cp.float32)
    y = ops.batch_norm(x, gamma, beta, mean, var, training=False, epsilon=1e-3)
    scale = 2.0 / np.sqrt(1.0 + 1e-3)
    np.testing.assert_allclose(to_numpy(y[0, -2:]), [scale + 0.5, 3 * scale + 0.5], rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Elementwise activations and dropout (csrc/cuda/activation.cuh), bias (csrc/cuda/bias.cuh)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ACT_SHAPES, ids=str)
@pytest.mark.parametrize("name,kw", ELEMENTWISE, ids=ELEMENTWISE_IDS)
def test_elementwise_activations_match_reference(rng, name, kw, shape, dtype):
    x, dy = act_data(rng, shape, dtype), act_data(rng, shape, dtype)
    x.flat[:3] = [np.inf, -np.inf, np.nan][:x.size]  # the NaN and overflow rules too
    alpha = [kw.get("alpha", {"leaky_relu": 0.2, "elu": 1.0}[name])] if name in ("leaky_relu", "elu") else []
    y, dx = np.full_like(x, 7.0), np.full_like(x, 7.0)
    assert _bits(getattr(host, f"{name}_forward"), x, y, *alpha) == 64  # flat 64-bit index
    getattr(host, f"{name}_backward")(dy, x, dx, *alpha)
    # the host's libm, not CUDA's (within 2 ulp): float32 within 1e-5 as on the device
    assert_close(y, getattr(ref, name)(_f64(x), **kw), dtype, what=f"{name} forward")
    assert_close(dx, getattr(ref, f"{name}_backward")(_f64(dy), _f64(x), **kw), dtype, what=f"{name} backward")
    if name in ("relu", "sigmoid", "tanh"):
        getattr(host, f"{name}_backward_from_output" if name != "relu" else "relu_backward")(dy, y, dx)
        # against the same formula on the same y: from the rounded y, 1 - y^2 (tanh) or y(1 - y)
        # (sigmoid) cancels where |x| is large, so the exact gradient of x is not the measure (a
        # (7,) case drew 3.6e-5 relative with seed 15838)
        assert_close(dx, getattr(ref, f"{name}_backward_from_output")(_f64(dy), _f64(y)), dtype,
                     what=f"{name} from output")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4, 5), (5, 7, 11, 97), (0, 3)], ids=str)
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.9])
def test_dropout_mask_matches_reference_bit_for_bit(rng, dtype, shape, rate):
    x = rng.standard_normal(shape).astype(dtype)
    y = np.full_like(x, np.nan)
    host.dropout_forward(x, y, rate, 2**64 - 3)
    np.testing.assert_array_equal(y, ref.dropout(x, rate, 2**64 - 3))


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (3000, 33), (0, 4)], ids=str)
def test_bias_add_and_grad(rng, bits, dtype, shape):
    y, b = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    for relu in (False, True):
        out = y.copy()
        assert _bits(host.bias_add, out, b, relu, index_bits=bits) == bits
        expected = _f64(y) + _f64(b)
        assert_close(out, np.maximum(expected, 0) if relu else expected, dtype, what="bias_add")
    db = np.full(shape[1], np.nan, dtype)
    host.bias_grad(y, db)  # 3000 rows: 3 chunks of 1024, 8 row lanes each
    assert_close(db, _f64(y).sum(axis=0), dtype, what="bias_grad")


# ----------------------------------------------------------------------------------------------
# The optimizers' fused updates (csrc/cuda/optimizer.cuh)


def _native_scalars(op, kwargs, step):
    """The scalars cnnkit.ops.optimizer hands the kernels, worked out again from Keras' formulas."""
    lr, wd = kwargs["learning_rate"], kwargs.get("weight_decay", 0.0)
    keep = 1.0 - wd * lr
    if op == "sgd_update":
        return (lr, kwargs.get("momentum", 0.0), kwargs.get("nesterov", False), keep)
    if op == "adam_update":
        b1, b2 = kwargs.get("beta_1", 0.9), kwargs.get("beta_2", 0.999)
        alpha = lr * np.sqrt(1 - b2**step) / (1 - b1**step)
        return (alpha, 1 - b1, 1 - b2, kwargs.get("epsilon", 1e-7), keep)
    rho = kwargs.get("rho", 0.9)
    return (lr, rho, 1 - rho, kwargs.get("momentum", 0.0), kwargs.get("epsilon", 1e-7), keep)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, slots, kwargs", OPT_CASES, ids=OPT_IDS)
def test_optimizer_update_matches_reference(rng, dtype, op, slots, kwargs):
    for shape in [(1,), (13, 17), (1031,)]:
        state = opt_initial_state(rng, op, slots, shape, dtype)
        grads = [rng.normal(size=shape).astype(dtype) for _ in range(3)]
        want = opt_expected(op, state, grads, kwargs)
        start = {k: a.astype(np.float64) for k, a in state.items()}
        for step, g in enumerate(grads, start=1):
            slot_arrays = [state.get(name) for name in OPT_ORDER[op]]
            assert _bits(getattr(host, op), state["variable"], g, *slot_arrays,
                         *_native_scalars(op, kwargs, step)) == 64
        for name, a in state.items():
            assert_update_close(a, want[name], dtype, f"{op} {name}", start[name])
    with pytest.raises(ValueError, match="index_bits=32 refused"):
        getattr(host, op)(state["variable"], g, *slot_arrays, *_native_scalars(op, kwargs, 1), index_bits=32)
