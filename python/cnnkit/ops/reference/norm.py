"""Batch normalization in plain NumPy, from the textbook definitions (Ioffe and Szegedy 2015), with
Keras' conventions: channels last, biased batch variance, moving = moving * momentum +
batch * (1 - momentum) (the biased variance feeds the moving variance too)."""

import numpy as np

from .._op_args import check_batch_norm, check_batch_norm_backward

__all__ = ["batch_norm", "batch_norm_backward"]


def _axes(x):
    return tuple(range(x.ndim - 1))  # every axis but the channels


def batch_norm(x, gamma, beta, moving_mean, moving_var, training=False, momentum=0.99, epsilon=1e-3):
    training = bool(training)
    check_batch_norm(x, gamma, beta, moving_mean, moving_var, momentum, epsilon, updated=training)
    if training and x.size > 0:
        mean = np.mean(x, axis=_axes(x))
        var = np.var(x, axis=_axes(x))  # biased: divides by the number of values
        moving_mean[...] = moving_mean * momentum + mean * (1 - momentum)
        moving_var[...] = moving_var * momentum + var * (1 - momentum)
    elif training:
        return np.empty_like(x)
    else:
        mean, var = moving_mean, moving_var
    y = (x - mean) / np.sqrt(var + epsilon)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def batch_norm_backward(dy, x, gamma, beta, moving_mean, moving_var, training=False, momentum=0.99,
                        epsilon=1e-3):
    """(dx, dgamma, dbeta) by the chain rule through mean and variance, term by term."""
    training = bool(training)
    check_batch_norm_backward(dy, x, gamma, beta, moving_mean, moving_var, momentum, epsilon)
    axes = _axes(x)
    m = x.size // x.shape[-1]
    if training:
        mean = np.mean(x, axis=axes) if m else np.zeros(x.shape[-1], x.dtype)
        var = np.var(x, axis=axes) if m else np.zeros(x.shape[-1], x.dtype)
    else:
        mean, var = moving_mean, moving_var
    std = np.sqrt(var + epsilon)
    xhat = (x - mean) / std
    dgamma = np.sum(dy * xhat, axis=axes) if gamma is not None else None
    dbeta = np.sum(dy, axis=axes) if beta is not None else None
    dxhat = dy * gamma if gamma is not None else dy
    if not training:
        return dxhat / std, dgamma, dbeta
    # y depends on x directly and through mean and var = mean((x - mean)^2)
    dvar = np.sum(dxhat * (x - mean), axis=axes) * -0.5 * (var + epsilon) ** -1.5
    dmean = -np.sum(dxhat, axis=axes) / std + dvar * np.sum(-2.0 * (x - mean), axis=axes) / max(m, 1)
    dx = dxhat / std + dvar * 2.0 * (x - mean) / max(m, 1) + dmean / max(m, 1)
    return dx, dgamma, dbeta
