"""Fully connected layer: y = x @ w + b over the last axis of x.

The GEMMs go through the array library's matmul (OpenBLAS under NumPy, cuBLAS under CuPy, TF32 only
with cnnkit.config.allow_tf32); the bias add (with the ReLU fused when asked) and the bias gradient
are the same native kernels the convolution uses (a deterministic column sum, no atomics). x may
have any rank >= 2, like Keras' Dense: the leading axes are flattened into rows.
"""

from . import _backend, _op_args
from ._backend import as_array, backend, contiguous

__all__ = ["dense", "dense_backward"]


def _rows(x):
    """The number of rows x's leading axes flatten into (explicit: reshape(-1, 0) is ambiguous)."""
    rows = 1
    for s in x.shape[:-1]:
        rows *= int(s)
    return rows


def dense(x, w, b=None, *, activation=None):
    """x (..., in) @ w (in, out) + b (out,) -> (..., out). activation: None or "relu", fused into
    the bias pass."""
    x, w, b = as_array(x), as_array(w), as_array(b)
    _op_args.check_dense(x, w, b, activation)
    x, w, b = contiguous(x, w, b)
    be = backend(x, w, b)
    rows = _rows(x)
    y = be.xp.empty(x.shape[:-1] + (w.shape[1],), dtype=x.dtype)
    y2d = y.reshape(rows, w.shape[1])
    _backend.matmul(be, x.reshape(rows, w.shape[0]), w, out=y2d)
    if rows and b is not None:
        be.lib.bias_add(y2d, b, activation == "relu")
    elif rows and activation == "relu":
        be.lib.relu_forward(y, y)
    return y


def dense_backward(dy, x, w, b=None, *, need_dx=True):
    """Gradients of ``dense(x, w, b)`` given dy, the gradient of its own output (for
    ``activation="relu"``, pass ``relu_backward_from_output(dy, y)``): (dx, dw, db), db None when b
    is None, dx None with need_dx=False (a layer whose input needs no gradient)."""
    dy, x, w, b = as_array(dy), as_array(x), as_array(w), as_array(b)
    _op_args.check_dense_backward(dy, x, w, b)
    dy, x, w, b = contiguous(dy, x, w, b)
    be = backend(dy, x, w, b)
    rows = _rows(x)
    dy2d = dy.reshape(rows, w.shape[1])
    dx = _backend.matmul(be, dy2d, w.T).reshape(x.shape) if need_dx else None
    dw = _backend.matmul(be, x.reshape(rows, w.shape[0]).T, dy2d)
    db = None
    if b is not None:
        db = be.xp.empty((w.shape[1],), dtype=x.dtype)
        if rows:
            be.lib.bias_grad(dy2d, db)
        else:
            db[...] = 0
    return dx, dw, db
