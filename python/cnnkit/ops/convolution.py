"""2-D convolution over NHWC inputs with HWIO kernels: im2col + GEMM.

``conv2d`` copies the input windows into rows of an im2col matrix (the native im2col kernel) and
multiplies it by the kernel reshaped to (KH*KW*C, O) with ``numpy.matmul`` (OpenBLAS), writing each
chunk's result straight into the output. The im2col scratch is bounded by
``cnnkit.config.workspace_limit``: output pixels are processed in chunks of rows (a chunk may end
inside an image), reusing one buffer. ``conv2d_backward`` gives dw (col.T @ dy, accumulated over the
chunks), dx (dy @ w.T into the same buffer, then a deterministic col2im gather) and db (a native,
deterministic column sum). A 1x1, stride-1, unpadded convolution needs no im2col: it is one GEMM on
x.reshape(-1, C); small filters skip it too (the direct kernels of conv_direct.cpp, ``_use_direct``).
``conv2d(..., activation="relu")`` applies the ReLU in the bias pass, and
``conv2d_backward(..., need_dx=False)`` computes no dx: the forms the Conv2D layer calls.

The workspace is kept per thread between calls (at most ``workspace_limit`` bytes of it): a fresh
64 MiB buffer per call would cost more in page faults than the im2col copy itself.

CuPy arrays run the same algorithm on the GPU: the CUDA twins of the native kernels
(csrc/cuda/im2col.cu, conv_direct.cu) on CuPy's current stream and the GEMMs in cuBLAS through
``cupy.matmul`` (FP32, or TF32 with ``cnnkit.config.allow_tf32``); chunks are as large as the
workspace limit allows (``cnnkit.config.gpu_workspace_limit``, 1 GiB by default: each chunk costs
a few launches from Python), and the direct kernels serve only thin filters (``_GPU_DIRECT_MAX_K``).
"""

import threading

import numpy as np

from . import _backend, _op_args
from ._backend import as_array, backend, contiguous

__all__ = ["im2col", "col2im", "conv2d", "conv2d_backward"]


def _is_pointwise(geom):
    """1x1 window, stride 1, no padding: the im2col matrix is x.reshape(-1, C) itself."""
    return geom.KH == geom.KW == geom.SH == geom.SW == 1 and not geom.padded


_cache = threading.local()


def _workspace(be, rows, k, dtype):
    """A (rows, k) scratch buffer, reusing this thread's previous one when it is large enough and
    not above the current workspace limit (so lowering the limit also releases memory)."""
    need = rows * k * np.dtype(dtype).itemsize
    buf = getattr(_cache, "buf", None)
    limit = max(need, _backend.workspace_limit(be.name == "gpu"))
    # A GPU buffer is reused only on the stream it was last used on: kernels queued on another
    # stream may still be reading it.
    stream = be.xp.cuda.get_current_stream().ptr if be.name == "gpu" else None
    if (buf is None or type(buf) is not be.xp.ndarray or buf.nbytes < need or buf.nbytes > limit
            or getattr(_cache, "stream", None) != stream):
        _cache.buf = None  # let the old one go before allocating the new one
        buf = be.xp.empty(need, dtype=be.xp.uint8)
        _cache.buf, _cache.stream = buf, stream
    return buf[:need].view(dtype).reshape(rows, k)


def release_workspace():
    """Free this thread's cached im2col scratch (at most cnnkit.config.workspace_limit bytes, kept
    between calls so that each convolution does not page-fault a fresh buffer)."""
    _cache.buf = None


# Chunk size, measured on 2 cores. Chunks of a few MiB stay in the last-level cache between im2col
# and the GEMM that reads them: the forward pass (single-threaded im2col, then OpenBLAS) is ~40%
# faster with them than with one 64 MiB chunk. The backward pass also runs col2im, an OpenMP kernel,
# in every chunk; with libgomp's default spin-waiting, each switch between it and OpenBLAS makes the
# spinning OpenMP thread fight the BLAS threads for the cores, so there fewer, larger chunks (up to
# workspace_limit) win, unless OpenMP threads sleep between regions (OMP_WAIT_POLICY=PASSIVE).
_CACHE_CHUNK_BYTES = 4 * 2**20

# When the direct kernels (conv_direct.cpp: no im2col, the filter stays in L1) replace im2col +
# GEMM, by filter size K*O (K = KH*KW*C) and output channels O. Measured one thread (AVX2, Zen 3),
# N=32, 28x28 "same", 3x3 and 5x5 kernels, C 1-32, O 16-128: the direct forward was 1.4-4.8x
# faster up to K*O = 8192, 1.0-1.2x up to 16384 and slower beyond; the direct weight gradient
# 1.2-4.7x faster up to K*O = 4096 with O <= 64, but slower at O = 128 once K > 27 and at
# K*O >= 4608 with O = 64 (it rereads dy once per 4 taps). The tutorial model's first layer
# (K = 9, O = 32) is 2.9x (forward) and 3.4x (weight gradient) faster.
_DIRECT_FORWARD_MAX_KO = 8192
_DIRECT_WEIGHTS_MAX_KO = 4096
_DIRECT_WEIGHTS_MAX_O = 64


# On the GPU the direct kernels (csrc/cuda/conv_direct.cu: one thread per output, no im2col matrix)
# replace im2col + cuBLAS only for thin filters, K = KH*KW*C <= this: a first layer on 1-3 channels
# (the tutorial model's 3x3x1, a 3x3x3 RGB layer), where the im2col GEMM is too thin for cuBLAS.
# Not yet measured on a GPU: set from the per-output work (K multiply-adds per output element,
# about the cost of writing that element at K = 32); benchmarks/bench_ops.py shows both paths.
_GPU_DIRECT_MAX_K = 32


def _chunk_rows(row_bytes, total_rows, with_openmp_kernels, gpu=False):
    rows = _backend.workspace_rows(row_bytes, total_rows, gpu)
    if gpu:  # no cache to fit: the biggest chunk the workspace limit allows (fewer, larger GEMMs)
        return rows
    if _backend.threads_sleep or not with_openmp_kernels:
        rows = min(rows, max(1, _CACHE_CHUNK_BYTES // row_bytes))
    return rows


def _chunks(total_rows, rows):
    for r0 in range(0, total_rows, rows):
        yield r0, min(total_rows, r0 + rows)


def im2col(x, kernel_size, strides=1, padding="valid", dilation=1):
    """The im2col matrix of x (N, H, W, C): shape (N*OH*OW, KH*KW*C), one row per output pixel in
    (n, oh, ow) order, columns in (kh, kw, c) order; padded cells are 0. ``col @ w.reshape(-1, O)``
    is the convolution with an HWIO kernel w."""
    x = as_array(x)
    geom, (oh, ow) = _op_args.check_im2col(x, kernel_size, strides, padding, dilation)
    x, = contiguous(x)
    be = backend(x)
    rows = x.shape[0] * oh * ow
    col = be.xp.empty((rows, geom.patch_size), dtype=x.dtype)
    be.lib.im2col(x, col, geom, 0, rows)
    return col


def col2im(col, x_shape, kernel_size, strides=1, padding="valid", dilation=1):
    """The adjoint of ``im2col``: an (N, H, W, C) array in which each input pixel is the sum of every
    entry of col (N*OH*OW, KH*KW*C) that im2col would have copied from it."""
    col = as_array(col)
    x_shape, geom, (oh, ow) = _op_args.check_col2im(col, x_shape, kernel_size, strides, padding, dilation)
    col, = contiguous(col)
    be = backend(col)
    rows = x_shape[0] * oh * ow
    dx = be.xp.zeros(x_shape, dtype=col.dtype)
    be.lib.col2im_accumulate(col, dx, geom, 0, rows)
    return dx


# The direct kernels copy, per thread, the padded input rows a window row spans (eff_h rows of
# (W + PL + PR) * C values; for the weight gradient, one such band per output row of a block of
# ~1024 pixels). Beyond this many bytes (a huge padding or dilation) im2col + GEMM, which never
# materializes the padding, is used instead.
_DIRECT_MAX_BAND_BYTES = 16 * 2**20


def _direct_band_bytes(geom, itemsize, forward):
    if not geom.padded:
        return 0
    rows = 1 if forward else max(1, 1024 // geom.OW)
    return rows * ((geom.KH - 1) * geom.DH + 1) * (geom.W + geom.PL + geom.PR) * geom.C * itemsize


def _use_direct(geom, o, forward, itemsize=8, gpu=False):
    """Whether the direct kernel (conv_direct.cpp / conv_direct.cu) beats im2col + GEMM here."""
    if _is_pointwise(geom) or _direct_band_bytes(geom, itemsize, forward) > _DIRECT_MAX_BAND_BYTES:
        return False
    k = geom.patch_size
    if gpu:
        return k <= _GPU_DIRECT_MAX_K
    if forward:
        return k * o <= _DIRECT_FORWARD_MAX_KO
    return k * o <= _DIRECT_WEIGHTS_MAX_KO and o <= _DIRECT_WEIGHTS_MAX_O


def conv2d(x, w, b=None, strides=1, padding="valid", dilation=1, *, activation=None):
    """2-D convolution (cross-correlation, like Keras Conv2D), with the bias and ReLU fused.

    x: (N, H, W, C); w: (KH, KW, C, O); b: (O,) or None. padding: "valid", "same" (TensorFlow rule,
    the odd pixel at the bottom/right), an int, (ph, pw) or ((top, bottom), (left, right)).
    strides, dilation: int or pair. activation: None or "relu", applied before the output is stored
    (one pass over the output instead of two, and no second output array). Returns (N, OH, OW, O)."""
    x, w, b = as_array(x), as_array(w), as_array(b)
    geom, (oh, ow) = _op_args.check_conv2d(x, w, b, strides, padding, dilation, activation)
    relu = activation == "relu"
    x, w, b = contiguous(x, w, b)
    be = backend(x, w, b)
    n, c, o = x.shape[0], x.shape[3], w.shape[3]
    rows, k = n * oh * ow, geom.patch_size
    y = be.xp.empty((n, oh, ow, o), dtype=x.dtype)
    if rows and _use_direct(geom, o, forward=True, itemsize=x.itemsize, gpu=be.name == "gpu"):
        be.lib.conv2d_direct_forward(x, w, b, y, geom, relu)
        return y
    y2d = y.reshape(rows, o)
    w2d = w.reshape(k, o)
    if rows and _is_pointwise(geom):
        _backend.matmul(be, x.reshape(rows, c), w2d, out=y2d)
    elif rows:
        step = _chunk_rows(k * x.itemsize, rows, with_openmp_kernels=False, gpu=be.name == "gpu")
        col = _workspace(be, step, k, x.dtype)
        for r0, r1 in _chunks(rows, step):
            chunk = col[: r1 - r0]
            be.lib.im2col(x, chunk, geom, r0, r1, parallel=False)
            _backend.matmul(be, chunk, w2d, out=y2d[r0:r1])
    if b is not None:
        be.lib.bias_add(y2d, b, relu)
    elif relu:
        be.lib.relu_forward(y, y)
    return y


def conv2d_backward(dy, x, w, b=None, strides=1, padding="valid", dilation=1, *, need_dx=True):
    """Gradients of ``conv2d(x, w, b, ...)`` given dy = dL/dy (N, OH, OW, O), the gradient of the
    convolution's own output (for ``activation="relu"``, pass ``relu_backward_from_output(dy, y)``).

    Returns (dx, dw, db); db is None when b is None. need_dx=False (a layer whose input needs no
    gradient, such as a model's first) gives dx None and skips the dy @ w.T GEMM and col2im."""
    dy, x, w, b = as_array(dy), as_array(x), as_array(w), as_array(b)
    geom, out_hw = _op_args.check_conv2d_backward(dy, x, w, b, strides, padding, dilation)
    dy, x, w, b = contiguous(dy, x, w, b)
    be = backend(dy, x, w, b)
    xp = be.xp
    n, c, o = x.shape[0], x.shape[3], w.shape[3]
    rows, k = n * out_hw[0] * out_hw[1], geom.patch_size
    dy2d = dy.reshape(rows, o)
    w2d = w.reshape(k, o)
    if rows and _use_direct(geom, o, forward=False, itemsize=x.itemsize, gpu=be.name == "gpu"):
        dw = xp.empty(w.shape, dtype=x.dtype)
        db = None if b is None else xp.empty((o,), dtype=x.dtype)
        be.lib.conv2d_direct_backward_weights(dy, x, dw, db, geom)
        dx = _gemm_backward(be, dy2d, x, w2d, geom, want_dw=False)[0] if need_dx else None
        return dx, dw, db
    if rows and _is_pointwise(geom):
        dx = None
        if need_dx:
            dx = xp.empty(x.shape, dtype=x.dtype)
            _backend.matmul(be, dy2d, w2d.T, out=dx.reshape(rows, c))
        dw = xp.empty(w.shape, dtype=x.dtype)
        _backend.matmul(be, x.reshape(rows, c).T, dy2d, out=dw.reshape(k, o))
        return dx, dw, _bias_grad(be, dy2d, b)
    dx, dw2d = _gemm_backward(be, dy2d, x, w2d, geom, want_dw=True, want_dx=need_dx)
    # After col2im, so that two native (OpenMP) kernels run back to back rather than around a GEMM.
    return dx, dw2d.reshape(w.shape), _bias_grad(be, dy2d, b)


def _gemm_backward(be, dy2d, x, w2d, geom, want_dw, want_dx=True):
    """(dx or None, dw2d or None) by im2col + GEMM over chunks of output pixels: dw += col.T @ dy,
    dcol = dy @ w.T into the same buffer, then a col2im gather into dx."""
    xp = be.xp
    (rows, o), k = dy2d.shape, w2d.shape[0]
    dx = xp.zeros(x.shape, dtype=x.dtype) if want_dx else None
    dw2d = xp.zeros((k, o), dtype=x.dtype) if want_dw else None
    if not rows:
        return dx, dw2d
    dw_part = xp.empty((k, o), dtype=x.dtype) if want_dw else None
    step = _chunk_rows(k * x.itemsize, rows, with_openmp_kernels=want_dx, gpu=be.name == "gpu")
    col = _workspace(be, step, k, x.dtype)
    for r0, r1 in _chunks(rows, step):
        chunk, dy_chunk = col[: r1 - r0], dy2d[r0:r1]
        if want_dw:
            be.lib.im2col(x, chunk, geom, r0, r1, parallel=False)
            _backend.matmul(be, chunk.T, dy_chunk, out=dw2d if r0 == 0 else dw_part)
            if r0:
                dw2d += dw_part
        if want_dx:
            _backend.matmul(be, dy_chunk, w2d.T, out=chunk)  # the buffer now holds dcol for these rows
            be.lib.col2im_accumulate(chunk, dx, geom, r0, r1)
    return dx, dw2d


def _bias_grad(be, dy2d, b):
    if b is None:
        return None
    db = be.xp.empty((dy2d.shape[1],), dtype=dy2d.dtype)
    be.lib.bias_grad(dy2d, db)
    return db
