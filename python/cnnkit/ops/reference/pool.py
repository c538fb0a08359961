"""Reference pooling: loops over output windows, each window's input cells listed explicitly in scan
order (rows outer, columns inner) with padded cells left out, vectorized over N and C only.
Backward passes scatter-add, the plain reading of the chain rule."""

import numpy as np

from .. import pool as _native
from .._op_args import (check_global_max_pool2d_backward_from_argmax, check_global_pool2d,
                        check_global_pool2d_backward, check_pool2d, check_pool2d_backward,
                        check_pool2d_backward_from_index, check_stochastic_pool2d,
                        check_stochastic_pool2d_backward, index_dtype)
from ._common import as_pair, pad_spec, uniform01

__all__ = _native.__all__  # the ops of cnnkit.ops.pool, each written again below


def _windows(x_shape, pool_size, strides, padding):
    """(out_h, out_w, cells) where cells[oh][ow] lists the (h, w) input cells of that window."""
    _, h, w, _ = x_shape
    kh, kw = as_pair(pool_size)
    sh, sw = as_pair(pool_size if strides is None else strides)
    (pt, pb), (pl, pr) = pad_spec(padding, (h, w), (kh, kw), (sh, sw))
    out_h = (h + pt + pb - kh) // sh + 1
    out_w = (w + pl + pr - kw) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"pool_size {(kh, kw)} is larger than the padded input of shape {x_shape}")
    cells = []
    for oh in range(out_h):
        row = []
        for ow in range(out_w):
            window = [(i, j)
                      for i in range(oh * sh - pt, oh * sh - pt + kh)
                      for j in range(ow * sw - pl, ow * sw - pl + kw)
                      if 0 <= i < h and 0 <= j < w]
            if not window:
                raise ValueError(f"padding {padding!r} leaves window ({oh}, {ow}) with only padding")
            row.append(window)
        cells.append(row)
    return out_h, out_w, cells


def _gather(x, window):
    """The window's cells as an (N, K, C) array, in scan order."""
    return np.stack([x[:, i, j, :] for i, j in window], axis=1)


def _scatter(dy, index, x_shape):
    """dx with each dy added at the cell its output took (a flat in-image index h*W + w; -1: none),
    for window (N, OH, OW, C) and global (N, C) indices alike."""
    n, h, w, c = x_shape
    dx = np.zeros((n, h * w, c), dtype=dy.dtype)
    for b in range(n):
        for ch in range(c):
            cell, grad = np.ravel(index[b, ..., ch]), np.ravel(dy[b, ..., ch])
            np.add.at(dx[b, :, ch], cell[cell >= 0], grad[cell >= 0])
    return dx.reshape(x_shape)


def _max_pool_with_argmax(x, pool_size, strides, padding):
    """y and the argmax as a flat in-image index h*W + w."""
    n, h, w, c = x.shape
    out_h, out_w, cells = _windows(x.shape, pool_size, strides, padding)
    y = np.empty((n, out_h, out_w, c), dtype=x.dtype)
    argmax = np.empty((n, out_h, out_w, c), dtype=index_dtype(h, w))
    for oh in range(out_h):
        for ow in range(out_w):
            window = cells[oh][ow]
            vals = _gather(x, window)
            # np.argmax returns the first maximum, and the first NaN when there is one.
            k = np.argmax(vals, axis=1)
            y[:, oh, ow, :] = np.take_along_axis(vals, k[:, None, :], axis=1)[:, 0, :]
            flat = np.array([i * w + j for i, j in window])
            argmax[:, oh, ow, :] = flat[k]
    return y, argmax


def max_pool2d(x, pool_size=2, strides=None, padding="valid", *, return_argmax=False):
    check_pool2d(x, pool_size, strides, padding)
    y, argmax = _max_pool_with_argmax(x, pool_size, strides, padding)
    return (y, argmax) if return_argmax else y


def max_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid"):
    check_pool2d_backward(dy, x, pool_size, strides, padding, "max_pool2d")
    return _scatter(dy, _max_pool_with_argmax(x, pool_size, strides, padding)[1], x.shape)


def max_pool2d_backward_from_argmax(dy, argmax, x_shape, pool_size=2, strides=None, padding="valid"):
    x_shape, _, _ = check_pool2d_backward_from_index(dy, argmax, x_shape, pool_size, strides, padding,
                                                     "argmax", "max_pool2d")
    return _scatter(dy, argmax, x_shape)


def avg_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """Mean of each window's input cells (padding not counted)."""
    check_pool2d(x, pool_size, strides, padding)
    n, _, _, c = x.shape
    out_h, out_w, cells = _windows(x.shape, pool_size, strides, padding)
    y = np.empty((n, out_h, out_w, c), dtype=x.dtype)
    for oh in range(out_h):
        for ow in range(out_w):
            window = cells[oh][ow]
            y[:, oh, ow, :] = _gather(x, window).sum(axis=1) / len(window)
    return y


def avg_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid"):
    check_pool2d_backward(dy, x, pool_size, strides, padding, "avg_pool2d")
    out_h, out_w, cells = _windows(x.shape, pool_size, strides, padding)
    dx = np.zeros(x.shape, dtype=dy.dtype)
    for oh in range(out_h):
        for ow in range(out_w):
            window = cells[oh][ow]
            for i, j in window:
                dx[:, i, j, :] += dy[:, oh, ow, :] / len(window)
    return dx


def global_avg_pool2d(x):
    check_global_pool2d(x)
    return x.mean(axis=(1, 2))


def global_avg_pool2d_backward(dy, x):
    check_global_pool2d_backward(dy, x, "global_avg_pool2d")
    _, h, w, _ = x.shape
    return np.broadcast_to(dy[:, None, None, :] / (h * w), x.shape).astype(dy.dtype)


def _global_max_with_argmax(x):
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    k = np.argmax(flat, axis=1)  # first maximum; the first NaN when there is one
    return np.take_along_axis(flat, k[:, None, :], axis=1)[:, 0, :], k.astype(index_dtype(h, w))


def global_max_pool2d(x, *, return_argmax=False):
    check_global_pool2d(x)
    y, argmax = _global_max_with_argmax(x)
    return (y, argmax) if return_argmax else y


def global_max_pool2d_backward(dy, x):
    check_global_pool2d_backward(dy, x, "global_max_pool2d")
    return _scatter(dy, _global_max_with_argmax(x)[1], x.shape)


def global_max_pool2d_backward_from_argmax(dy, argmax, x_shape):
    x_shape = check_global_max_pool2d_backward_from_argmax(dy, argmax, x_shape)
    return _scatter(dy, argmax, x_shape)


def _stochastic_pool2d_choice(x, pool_size, strides, padding, seed):
    """Training-mode stochastic pooling: y and the chosen cell (h*W + w, int64)."""
    n, h, w, c = x.shape
    out_h, out_w, cells = _windows(x.shape, pool_size, strides, padding)
    y = np.empty((n, out_h, out_w, c), dtype=x.dtype)
    chosen = np.empty((n, out_h, out_w, c), dtype=index_dtype(h, w))
    batch, channel = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for oh in range(out_h):
        for ow in range(out_w):
            window = cells[oh][ow]
            vals = _gather(x, window).astype(np.float64)  # (N, K, C)
            a = np.where(vals > 0, vals, 0.0)
            running = np.cumsum(a, axis=1)  # sequential, as the definition says
            total = running[:, -1, :]
            u = uniform01(seed, ((batch * out_h + oh) * out_w + ow) * c + channel)
            exceeds = running > (u * total)[:, None, :]
            last_positive = a.shape[1] - 1 - np.argmax((a > 0)[:, ::-1, :], axis=1)
            k = np.where(exceeds.any(axis=1), np.argmax(exceeds, axis=1), last_positive)
            k = np.where(total == 0, 0, k)
            picked = np.take_along_axis(vals, k[:, None, :], axis=1)[:, 0, :]
            y[:, oh, ow, :] = np.where(total == 0, 0.0, picked)
            flat = np.array([i * w + j for i, j in window])
            # no positive cell: y = 0 whatever x is, so no cell gets a gradient (-1)
            chosen[:, oh, ow, :] = np.where(total == 0, -1, flat[k])
    return y, chosen


def _stochastic_inference_stats(x, pool_size, strides, padding):
    """Per window, the float64 S = sum(a) and y = sum(a^2) / S, and the cells."""
    out_h, out_w, cells = _windows(x.shape, pool_size, strides, padding)
    n, _, _, c = x.shape
    s = np.empty((n, out_h, out_w, c))
    y = np.empty((n, out_h, out_w, c))
    for oh in range(out_h):
        for ow in range(out_w):
            vals = _gather(x, cells[oh][ow]).astype(np.float64)
            a = np.where(vals > 0, vals, 0.0)
            s[:, oh, ow, :] = np.cumsum(a, axis=1)[:, -1, :]
            q = np.cumsum(a * a, axis=1)[:, -1, :]
            with np.errstate(invalid="ignore", divide="ignore"):
                y[:, oh, ow, :] = np.where(s[:, oh, ow, :] > 0, q / s[:, oh, ow, :], 0.0)
    return s, y, cells


def stochastic_pool2d(x, pool_size=2, strides=None, padding="valid", training=False, seed=0, *,
                      return_index=False):
    check_stochastic_pool2d(x, pool_size, strides, padding, seed, training, return_index)
    if training:
        y, index = _stochastic_pool2d_choice(x, pool_size, strides, padding, seed)
        return (y, index) if return_index else y
    _, y, _ = _stochastic_inference_stats(x, pool_size, strides, padding)
    return y.astype(x.dtype)


def stochastic_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid", training=False, seed=0):
    check_stochastic_pool2d_backward(dy, x, pool_size, strides, padding, seed)
    if training:
        return _scatter(dy, _stochastic_pool2d_choice(x, pool_size, strides, padding, seed)[1], x.shape)
    s, y, cells = _stochastic_inference_stats(x, pool_size, strides, padding)
    dx = np.zeros(x.shape, dtype=np.float64)
    for oh in range(len(cells)):
        for ow in range(len(cells[0])):
            with np.errstate(invalid="ignore", divide="ignore"):
                for i, j in cells[oh][ow]:
                    a = np.where(x[:, i, j, :] > 0, x[:, i, j, :].astype(np.float64), 0.0)
                    term = dy[:, oh, ow, :] * (2 * a - y[:, oh, ow, :]) / s[:, oh, ow, :]
                    dx[:, i, j, :] += np.where((a > 0) & (s[:, oh, ow, :] > 0), term, 0.0)
    return dx.astype(dy.dtype)


def stochastic_pool2d_backward_from_index(dy, index, x_shape, pool_size=2, strides=None, padding="valid"):
    x_shape, _, _ = check_pool2d_backward_from_index(dy, index, x_shape, pool_size, strides, padding, "index",
                                                     "stochastic_pool2d")
    return _scatter(dy, index, x_shape)
