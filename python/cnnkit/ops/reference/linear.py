"""Reference fully connected layer: explicit sums over the input features."""

import numpy as np

__all__ = ["dense", "dense_backward"]


def dense(x, w, b=None):
    rows = x.reshape(-1, x.shape[-1])
    y = np.zeros((rows.shape[0], w.shape[1]), dtype=x.dtype)
    for i in range(w.shape[0]):  # y[n, o] = sum_i x[n, i] * w[i, o]
        y += rows[:, i:i + 1] * w[i]
    if b is not None:
        y += b
    return y.reshape(x.shape[:-1] + (w.shape[1],))


def dense_backward(dy, x, w, b=None):
    rows = x.reshape(-1, x.shape[-1])
    g = dy.reshape(-1, w.shape[1])
    dx = np.einsum("no,io->ni", g, w).reshape(x.shape)
    dw = np.einsum("ni,no->io", rows, g)
    db = g.sum(axis=0) if b is not None else None
    return dx, dw, db
