"""Softmax cross-entropy on logits (N, K), the mean over the batch.

``labels`` is either integer class ids of shape (N,) (Keras' sparse categorical cross-entropy,
``from_logits=True``) or a float array (N, K) of target probabilities / one-hot rows of the logits'
dtype (categorical cross-entropy). The log-sum-exp subtracts the row max, so any logit magnitude is
safe. An empty batch (N = 0) gives NaN (the mean over nothing, as in PyTorch) without a warning.
"""

from . import _op_args
from ._backend import as_array, backend, c_aligned, contiguous

__all__ = ["softmax_cross_entropy", "softmax_cross_entropy_backward"]


def _prepare(logits, labels):
    """Validated (backend, logits, labels) with integer labels as int64 (N,) in [0, K) (the shared
    check, ``_op_args.check_softmax_cross_entropy``), C-contiguous."""
    logits, labels = as_array(logits), as_array(labels)
    _op_args.check_softmax_cross_entropy(logits, labels)
    be = backend(logits, labels)
    logits, = contiguous(logits)
    labels = c_aligned(labels, dtype=be.xp.int64) if labels.dtype.kind in "iu" else c_aligned(labels)
    return be, logits, labels


def _check_labels():
    """Whether the kernel checks the class ids again: not where the caller validated them
    (``_op_args.labels_checked``), since on the GPU that check is a synchronization per call."""
    return not _op_args.labels_trusted()


def softmax_cross_entropy(logits, labels, *, return_grad=False):
    """Mean softmax cross-entropy: -mean_i sum_k p_ik log softmax(logits_i)_k, with p the one-hot
    rows of integer ``labels`` (N,) or the probabilities ``labels`` (N, K).

    Returns a 0-d array of the logits' dtype (NaN for an empty batch). return_grad=True: returns
    (loss, dlogits), the gradient for dloss = 1 computed in the same pass over the logits (what a
    training step needs; ``softmax_cross_entropy_backward`` reads them again)."""
    be, logits, labels = _prepare(logits, labels)
    row_loss = be.xp.empty((logits.shape[0],), be.xp.float64)  # scratch
    loss = be.xp.empty((), logits.dtype)
    if not return_grad:
        be.lib.softmax_cross_entropy_forward(logits, labels, row_loss, loss, check_labels=_check_labels())
        return loss
    dlogits = be.xp.empty(logits.shape, logits.dtype)
    be.lib.softmax_cross_entropy_fused(logits, labels, row_loss, loss, dlogits, check_labels=_check_labels())
    return loss, dlogits


def softmax_cross_entropy_backward(logits, labels, dloss=1.0):
    """Gradient of :func:`softmax_cross_entropy` with respect to the logits, scaled by ``dloss``
    (the upstream gradient of the scalar loss): ``dloss / N * (softmax(logits) - p)`` for rows of p
    that sum to 1 (in general ``dloss / N * (sum(p) * softmax(logits) - p)``, the exact gradient).
    Labels are not differentiable. Returns an array of the logits' shape and dtype ((0, K) for N = 0).
    """
    be, logits, labels = _prepare(logits, labels)
    dloss = _op_args.check_dloss(dloss)
    dlogits = be.xp.empty(logits.shape, logits.dtype)
    be.lib.softmax_cross_entropy_backward(logits, labels, dloss, dlogits, check_labels=_check_labels())
    return dlogits
