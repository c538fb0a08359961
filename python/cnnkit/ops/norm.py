"""Batch normalization (Keras ``BatchNormalization`` semantics, channels last).

``x`` has shape ``(N, ..., C)`` (ndim >= 2: ``(N, C)`` after a Dense layer, ``(N, H, W, C)`` after a
convolution); statistics are per channel over every other axis, M = x.size / C values each.

Training uses the batch mean and the biased batch variance (divide by M) and updates the moving
statistics in place with Keras' convention ``moving = moving * momentum + batch * (1 - momentum)``;
Keras also feeds the biased variance to ``moving_variance`` (keras/src/layers/normalization/
batch_normalization.py, ``ops.moments``), unlike PyTorch, whose ``running_var`` gets the unbiased one.
Inference normalizes with the moving statistics. An empty batch (N = 0) gives an empty output and
leaves the moving statistics untouched.
"""

from . import _op_args
from ._backend import as_array, backend, contiguous

__all__ = ["batch_norm", "batch_norm_backward", "batch_norm_backward_from_stats"]


def _prepare(x, gamma, beta, moving_mean, moving_var, momentum, epsilon, updated, dy=None, backward=False):
    """The shared check (``_op_args.check_batch_norm[_backward]``), then every array C-contiguous
    (the moving statistics that are updated in place already are: the check requires it)."""
    x, gamma, beta, moving_mean, moving_var, dy = (as_array(a) for a in (x, gamma, beta, moving_mean,
                                                                         moving_var, dy))
    if backward:
        c, momentum, epsilon = _op_args.check_batch_norm_backward(dy, x, gamma, beta, moving_mean, moving_var,
                                                                 momentum, epsilon)
    else:
        c, momentum, epsilon = _op_args.check_batch_norm(x, gamma, beta, moving_mean, moving_var, momentum,
                                                        epsilon, updated)
    be = backend(dy, x, gamma, beta, moving_mean, moving_var)
    x, gamma, beta, dy = contiguous(x, gamma, beta, dy)
    if not updated:
        moving_mean, moving_var = contiguous(moving_mean, moving_var)
    return be, x, c, gamma, beta, moving_mean, moving_var, momentum, epsilon, dy


def batch_norm(x, gamma, beta, moving_mean, moving_var, training=False, momentum=0.99, epsilon=1e-3, *,
               return_stats=False):
    """Batch normalization over the last axis of ``x`` (N, ..., C).

    gamma, beta: (C,) scale and offset, or None (Keras ``scale=False`` / ``center=False``).
    moving_mean, moving_var: (C,) moving statistics of x's dtype. With ``training=True`` the output
    uses the batch mean and biased batch variance, and the moving statistics are updated IN PLACE:
    ``moving = moving * momentum + batch_stat * (1 - momentum)`` (so they must be C-contiguous and
    writable). With ``training=False`` they are read only:
    ``y = (x - moving_mean) / sqrt(moving_var + epsilon) * gamma + beta``.
    momentum in [0, 1]; epsilon > 0. Returns y, the shape and dtype of x.
    return_stats=True (training only): returns (y, mean, invstd), the batch mean and
    1 / sqrt(biased variance + epsilon) per channel as float64 (C,) arrays whatever x's dtype (a
    rounded mean would cost dgamma its accuracy), for :func:`batch_norm_backward_from_stats`.
    """
    training = bool(training)
    _op_args.check_saved_state(return_stats, "return_stats", training)
    be, x, c, gamma, beta, moving_mean, moving_var, momentum, epsilon, _ = _prepare(
        x, gamma, beta, moving_mean, moving_var, momentum, epsilon, updated=training)
    y = be.xp.empty(x.shape, x.dtype)
    if not training:
        be.lib.batch_norm_inference_forward(x.reshape(-1, c), gamma, beta, moving_mean, moving_var, epsilon,
                                            y.reshape(-1, c))
        return y
    mean = be.xp.empty((c,), be.xp.float64)
    invstd = be.xp.empty((c,), be.xp.float64)
    be.lib.batch_norm_train_forward(x.reshape(-1, c), gamma, beta, moving_mean, moving_var, momentum,
                                    epsilon, y.reshape(-1, c), mean, invstd)
    return (y, mean, invstd) if return_stats else y


def batch_norm_backward(dy, x, gamma, beta, moving_mean, moving_var, training=False, momentum=0.99,
                        epsilon=1e-3):
    """Gradients of :func:`batch_norm`: returns (dx, dgamma, dbeta), dgamma/dbeta None when gamma/beta
    is None.

    With ``training=True`` the batch statistics are recomputed from x and differentiated through
    (dx = invstd / M * (M * g - sum(g) - xhat * sum(g * xhat)), g = dy * gamma); the moving statistics
    are neither read nor updated (a layer keeps the statistics of the forward instead:
    :func:`batch_norm_backward_from_stats`). With ``training=False`` the moving statistics are
    constants: dx = dy * gamma / sqrt(moving_var + epsilon). The moving statistics (and momentum) are
    not differentiable; no gradient is returned for them.
    """
    training = bool(training)
    be, x, c, gamma, beta, moving_mean, moving_var, momentum, epsilon, dy = _prepare(
        x, gamma, beta, moving_mean, moving_var, momentum, epsilon, updated=False, dy=dy, backward=True)
    if training:
        mean = be.xp.empty((c,), be.xp.float64)
        invstd = be.xp.empty((c,), be.xp.float64)
        be.lib.batch_norm_batch_stats(x.reshape(-1, c), epsilon, mean, invstd)
        dx, dgamma, dbeta = _backward_from_stats(be, dy, x, c, gamma, mean, invstd)
    else:
        dx = be.xp.empty(x.shape, x.dtype)
        dgamma = be.xp.empty((c,), x.dtype)
        dbeta = be.xp.empty((c,), x.dtype)
        be.lib.batch_norm_inference_backward(dy.reshape(-1, c), x.reshape(-1, c), gamma, moving_mean,
                                             moving_var, epsilon, dx.reshape(-1, c), dgamma, dbeta)
    return dx, (dgamma if gamma is not None else None), (dbeta if beta is not None else None)


def batch_norm_backward_from_stats(dy, x, gamma, mean, invstd):
    """Training backward from the statistics ``batch_norm(..., training=True, return_stats=True)``
    returned: (dx, dgamma, dbeta), dgamma and dbeta always arrays (the sums of dy * xhat and dy)."""
    dy, x, gamma, mean, invstd = (as_array(a) for a in (dy, x, gamma, mean, invstd))
    c = _op_args.check_batch_norm_backward_from_stats(dy, x, gamma, mean, invstd)
    dy, x, gamma, mean, invstd = contiguous(dy, x, gamma, mean, invstd)
    return _backward_from_stats(backend(dy, x, gamma, mean, invstd), dy, x, c, gamma, mean, invstd)


def _backward_from_stats(be, dy, x, c, gamma, mean, invstd):
    dx = be.xp.empty(x.shape, x.dtype)
    dgamma = be.xp.empty((c,), x.dtype)
    dbeta = be.xp.empty((c,), x.dtype)
    be.lib.batch_norm_train_backward(dy.reshape(-1, c), x.reshape(-1, c), gamma, mean, invstd,
                                     dx.reshape(-1, c), dgamma, dbeta)
    return dx, dgamma, dbeta
