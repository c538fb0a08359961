"""Reference fully connected layer: explicit sums over the input features."""

import math

import numpy as np

from .. import linear as _native
from .._op_args import check_dense, check_dense_backward

__all__ = _native.__all__  # the ops of cnnkit.ops.linear, each written again below


def _flat(a):
    """a as rows over its last axis (math.prod, not -1: reshape(-1, 0) is ambiguous)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def dense(x, w, b=None, *, activation=None):
    check_dense(x, w, b, activation)
    rows = _flat(x)
    y = np.zeros((rows.shape[0], w.shape[1]), dtype=x.dtype)
    for i in range(w.shape[0]):  # y[n, o] = sum_i x[n, i] * w[i, o]
        y += rows[:, i:i + 1] * w[i]
    if b is not None:
        y += b
    if activation == "relu":
        y = np.where(y < 0, np.zeros((), y.dtype), y)  # not np.maximum: NaN stays NaN
    return y.reshape(x.shape[:-1] + (w.shape[1],))


def dense_backward(dy, x, w, b=None, *, need_dx=True):
    check_dense_backward(dy, x, w, b)
    rows = _flat(x)
    g = _flat(dy)
    dx = np.einsum("no,io->ni", g, w).reshape(x.shape) if need_dx else None
    dw = np.einsum("ni,no->io", rows, g)
    db = g.sum(axis=0) if b is not None else None
    return dx, dw, db
