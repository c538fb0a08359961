"""Softmax cross-entropy on logits (N, K), the mean over the batch.

``labels`` is either integer class ids of shape (N,) (Keras' sparse categorical cross-entropy,
``from_logits=True``) or a float array (N, K) of target probabilities / one-hot rows of the logits'
dtype (categorical cross-entropy). The log-sum-exp subtracts the row max, so any logit magnitude is
safe. An empty batch (N = 0) gives NaN (the mean over nothing, as in PyTorch) without a warning.
"""

import numbers

import numpy as np

from ._backend import as_array, backend, c_aligned, check_float

__all__ = ["softmax_cross_entropy", "softmax_cross_entropy_backward"]


def _prepare(logits, labels):
    """Validated (backend, logits, labels) with integer labels as int64 (N,) in [0, K).

    On the GPU the range check of integer labels reads one flag back to the host (a small
    synchronization), so that a bad label is a ValueError here rather than a NaN later."""
    logits, labels = as_array(logits), as_array(labels)
    for name, a in (("logits", logits), ("labels", labels)):
        if not hasattr(a, "dtype") or not hasattr(a, "shape"):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    be = backend(logits, labels)
    logits = check_float(logits, "logits", ndim=2, layout="(N, K)")
    n, k = (int(s) for s in logits.shape)
    if k < 1:
        raise ValueError(f"logits must have at least one class, got shape {tuple(logits.shape)}")
    xp = be.xp
    if labels.dtype.kind in "iu":
        if labels.shape != (n,):
            raise ValueError(f"integer labels must have shape ({n},) (one class id per row of logits "
                             f"{tuple(logits.shape)}), got shape {tuple(labels.shape)}")
        if n > 0:
            bad = (labels < 0) | (labels >= k)
            if bool(bad.any()):
                i = int(xp.argmax(bad))
                raise ValueError(f"labels must be class ids in [0, {k}) for logits {tuple(logits.shape)}, "
                                 f"got labels[{i}] = {int(labels[i])}")
        labels = c_aligned(labels, dtype=xp.int64)
    elif labels.dtype.kind == "f":
        labels = check_float(labels, "labels", dtype=logits.dtype)
        if labels.shape != logits.shape:
            raise ValueError(f"float labels (target probabilities) must have the shape of logits "
                             f"{tuple(logits.shape)}, got shape {tuple(labels.shape)}")
    else:
        raise TypeError(f"labels must be integer class ids (N,) or float probabilities (N, K), "
                        f"got dtype {labels.dtype}")
    return be, logits, labels


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy: -mean_i sum_k p_ik log softmax(logits_i)_k, with p the one-hot
    rows of integer ``labels`` (N,) or the probabilities ``labels`` (N, K).

    Returns a 0-d array of the logits' dtype (NaN for an empty batch)."""
    be, logits, labels = _prepare(logits, labels)
    row_loss = be.xp.empty((logits.shape[0],), be.xp.float64)  # scratch
    loss = be.xp.empty((), logits.dtype)
    be.lib.softmax_cross_entropy_forward(logits, labels, row_loss, loss)
    return loss


def softmax_cross_entropy_backward(logits, labels, dloss=1.0):
    """Gradient of :func:`softmax_cross_entropy` with respect to the logits, scaled by ``dloss``
    (the upstream gradient of the scalar loss): ``dloss / N * (softmax(logits) - p)`` for rows of p
    that sum to 1 (in general ``dloss / N * (sum(p) * softmax(logits) - p)``, the exact gradient).
    Labels are not differentiable. Returns an array of the logits' shape and dtype ((0, K) for N = 0).
    """
    be, logits, labels = _prepare(logits, labels)
    dloss = _scalar(dloss)
    dlogits = be.xp.empty(logits.shape, logits.dtype)
    be.lib.softmax_cross_entropy_backward(logits, labels, dloss, dlogits)
    return dlogits


def _softmax_cross_entropy_fused(logits, labels):
    """Training step for layers: (loss, dlogits) in one pass over the logits, dlogits for dloss = 1."""
    be, logits, labels = _prepare(logits, labels)
    row_loss = be.xp.empty((logits.shape[0],), be.xp.float64)  # scratch
    loss = be.xp.empty((), logits.dtype)
    dlogits = be.xp.empty(logits.shape, logits.dtype)
    be.lib.softmax_cross_entropy_fused(logits, labels, row_loss, loss, dlogits)
    return loss, dlogits


def _scalar(dloss):
    if isinstance(dloss, bool):
        raise TypeError(f"dloss must be a real number, received dloss={dloss!r}")
    if isinstance(dloss, numbers.Real):
        return float(dloss)
    if hasattr(dloss, "dtype") and hasattr(dloss, "size"):
        if dloss.size != 1 or dloss.dtype.kind not in "fiu":
            raise ValueError(f"dloss must be a scalar (the gradient of the scalar loss), got an array of "
                             f"shape {tuple(dloss.shape)} and dtype {dloss.dtype}")
        return float(np.asarray(dloss.get() if hasattr(dloss, "get") else dloss).reshape(()))
    raise TypeError(f"dloss must be a real number, received dloss={dloss!r}")
