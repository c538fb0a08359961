"""Reference 2-D convolution in plain NumPy: x NHWC, w HWIO (kh, kw, in, out).

The convolution is written as a sum over kernel offsets (i, j): pad x, take the strided (and dilated)
slice of the padded input that offset (i, j) reads for every output pixel, and contract its channels
with w[i, j] (tensordot). The backward pass is the same sum read backwards (chain rule); im2col and
col2im are explicit loops over windows.
"""

import numpy as np

from .. import convolution as _native
from .._op_args import check_col2im, check_conv2d, check_conv2d_backward, check_im2col
from ._common import as_pair, pad_spec

__all__ = _native.__all__  # the ops of cnnkit.ops.convolution, each written again below


def _geometry(x_shape, kernel_size, strides, padding, dilation):
    """Padding ((top, bottom), (left, right)), output size, strides, dilation, kernel size."""
    _, h, w, _ = x_shape
    kh, kw = as_pair(kernel_size)
    sh, sw = as_pair(strides)
    dh, dw = as_pair(dilation)
    pads = pad_spec(padding, (h, w), (kh, kw), (sh, sw), (dh, dw))
    (pt, pb), (pl, pr) = pads
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    return pads, (oh, ow), (sh, sw), (dh, dw), (kh, kw)


def _tap(i, j, out_hw, strides, dilation):
    """The (row, column) slices of the padded input that kernel offset (i, j) reads."""
    (oh, ow), (sh, sw), (dh, dw) = out_hw, strides, dilation
    return (slice(i * dh, i * dh + (oh - 1) * sh + 1, sh),
            slice(j * dw, j * dw + (ow - 1) * sw + 1, sw))


def conv2d(x, w, b=None, strides=1, padding="valid", dilation=1, *, activation=None):
    check_conv2d(x, w, b, strides, padding, dilation, activation)
    pads, out_hw, st, dil, (kh, kw) = _geometry(x.shape, w.shape[:2], strides, padding, dilation)
    xpad = np.pad(x, ((0, 0), *pads, (0, 0)))
    y = np.zeros((x.shape[0], *out_hw, w.shape[3]), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap(i, j, out_hw, st, dil)
            y += np.tensordot(xpad[:, rows, cols, :], w[i, j], axes=([3], [0]))
    if b is not None:
        y += b
    if activation == "relu":
        y = np.where(y < 0, np.zeros((), y.dtype), y)  # not np.maximum: NaN stays NaN
    return y


def conv2d_backward(dy, x, w, b=None, strides=1, padding="valid", dilation=1, *, need_dx=True):
    check_conv2d_backward(dy, x, w, b, strides, padding, dilation)
    pads, out_hw, st, dil, (kh, kw) = _geometry(x.shape, w.shape[:2], strides, padding, dilation)
    (pt, _), (pl, _) = pads
    xpad = np.pad(x, ((0, 0), *pads, (0, 0)))
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap(i, j, out_hw, st, dil)
            # y[n, oh, ow, o] += xpad[n, rows[oh], cols[ow], c] * w[i, j, c, o]
            dw[i, j] = np.tensordot(xpad[:, rows, cols, :], dy, axes=([0, 1, 2], [0, 1, 2]))
            dxpad[:, rows, cols, :] += np.tensordot(dy, w[i, j], axes=([3], [1]))
    dx = dxpad[:, pt:pt + x.shape[1], pl:pl + x.shape[2], :]
    db = dy.sum(axis=(0, 1, 2)) if b is not None else None
    return (np.ascontiguousarray(dx) if need_dx else None), dw, db


def _window_cells(x_shape, kernel_size, strides, padding, dilation):
    """(out_hw, kernel_hw, cells): cells lists every (a, b, i, j, r, s) where output pixel (a, b)
    reads input pixel (r, s) through kernel tap (i, j); taps that fall on padding are left out."""
    _, h, w, _ = x_shape
    ((pt, _), (pl, _)), (oh, ow), (sh, sw), (dh, dw), (kh, kw) = _geometry(
        x_shape, kernel_size, strides, padding, dilation)
    cells = [(a, b, i, j, a * sh - pt + i * dh, b * sw - pl + j * dw)
             for a in range(oh) for b in range(ow) for i in range(kh) for j in range(kw)]
    return (oh, ow), (kh, kw), [t for t in cells if 0 <= t[4] < h and 0 <= t[5] < w]


def im2col(x, kernel_size, strides=1, padding="valid", dilation=1):
    check_im2col(x, kernel_size, strides, padding, dilation)
    n, _, _, c = x.shape
    (oh, ow), (kh, kw), cells = _window_cells(x.shape, kernel_size, strides, padding, dilation)
    col = np.zeros((n, oh, ow, kh, kw, c), dtype=x.dtype)
    for a, b, i, j, r, s in cells:
        col[:, a, b, i, j, :] = x[:, r, s, :]
    return col.reshape(n * oh * ow, kh * kw * c)


def col2im(col, x_shape, kernel_size, strides=1, padding="valid", dilation=1):
    x_shape, _, _ = check_col2im(col, x_shape, kernel_size, strides, padding, dilation)
    n, h, w, c = x_shape
    (oh, ow), (kh, kw), cells = _window_cells(x_shape, kernel_size, strides, padding, dilation)
    col = col.reshape(n, oh, ow, kh, kw, c)
    dx = np.zeros((n, h, w, c), dtype=col.dtype)
    for a, b, i, j, r, s in cells:
        dx[:, r, s, :] += col[:, a, b, i, j, :]
    return dx
