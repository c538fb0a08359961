"""Softmax cross-entropy in plain NumPy: log-softmax by log-sum-exp with the row max subtracted,
then -sum(p * log softmax) per row, averaged over the rows."""

import numpy as np

from .. import cross_entropy as _native
from .._op_args import check_dloss, check_softmax_cross_entropy

__all__ = _native.__all__  # the ops of cnnkit.ops.cross_entropy, each written again below


def _targets(logits, labels):
    """The target distribution per row: one-hot rows for integer labels, else the labels themselves."""
    if np.issubdtype(labels.dtype, np.integer):
        p = np.zeros(logits.shape, logits.dtype)
        p[np.arange(logits.shape[0]), labels] = 1
        return p
    return labels


def _log_softmax(logits):
    z = logits - np.max(logits, axis=1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))


def softmax_cross_entropy(logits, labels, *, return_grad=False):
    check_softmax_cross_entropy(logits, labels)
    n = logits.shape[0]
    if n == 0:
        loss = np.asarray(np.nan, logits.dtype)
    else:
        losses = -np.sum(_targets(logits, labels) * _log_softmax(logits), axis=1)
        loss = np.asarray(np.sum(losses) / n, logits.dtype)
    return (loss, softmax_cross_entropy_backward(logits, labels)) if return_grad else loss


def softmax_cross_entropy_backward(logits, labels, dloss=1.0):
    check_softmax_cross_entropy(logits, labels)
    dloss = check_dloss(dloss)
    n = logits.shape[0]
    if n == 0:
        return np.empty(logits.shape, logits.dtype)
    p = _targets(logits, labels)
    softmax = np.exp(_log_softmax(logits))
    # d/dz_k of -sum_j p_j log softmax_j = softmax_k * sum_j p_j - p_k
    return (dloss / n * (softmax * np.sum(p, axis=1, keepdims=True) - p)).astype(logits.dtype)
