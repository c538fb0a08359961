"""Batch normalization in plain NumPy, from the textbook definitions (Ioffe and Szegedy 2015), with
Keras' conventions: channels last, biased batch variance, moving = moving * momentum +
batch * (1 - momentum) (the biased variance feeds the moving variance too)."""

import numpy as np

from .. import norm as _native
from .._op_args import (check_batch_norm, check_batch_norm_backward, check_batch_norm_backward_from_stats,
                        check_saved_state)

__all__ = _native.__all__  # the ops of cnnkit.ops.norm, each written again below


def _axes(x):
    return tuple(range(x.ndim - 1))  # every axis but the channels


def batch_norm(x, gamma, beta, moving_mean, moving_var, training=False, momentum=0.99, epsilon=1e-3, *,
               return_stats=False):
    training = bool(training)
    check_saved_state(return_stats, "return_stats", training)
    check_batch_norm(x, gamma, beta, moving_mean, moving_var, momentum, epsilon, updated=training)
    if training and x.size > 0:
        mean = np.mean(x, axis=_axes(x))
        var = np.var(x, axis=_axes(x))  # biased: divides by the number of values
        moving_mean[...] = moving_mean * momentum + mean * (1 - momentum)
        moving_var[...] = moving_var * momentum + var * (1 - momentum)
    elif training:
        y = np.empty_like(x)
        c = x.shape[-1]  # no values: mean 0 and variance 0, the moving statistics untouched
        return (y, np.zeros(c), np.full(c, 1 / np.sqrt(epsilon))) if return_stats else y
    else:
        mean, var = moving_mean, moving_var
    y = (x - mean) / np.sqrt(var + epsilon)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    if return_stats:  # the statistics again in float64, as the backward wants them
        x64 = x.astype(np.float64)
        return y, np.mean(x64, axis=_axes(x)), 1 / np.sqrt(np.var(x64, axis=_axes(x)) + epsilon)
    return y


def _train_backward(dy, x, gamma, mean, std):
    """(dx, dgamma, dbeta) of training-mode batch normalization by the chain rule through the batch
    mean and variance (var + epsilon = std**2), term by term."""
    axes = _axes(x)
    m = max(x.size // x.shape[-1], 1)
    xhat = (x - mean) / std
    dgamma = np.sum(dy * xhat, axis=axes)
    dbeta = np.sum(dy, axis=axes)
    dxhat = dy * gamma if gamma is not None else dy
    # y depends on x directly and through mean and var = mean((x - mean)^2)
    dvar = np.sum(dxhat * (x - mean), axis=axes) * -0.5 / std**3
    dmean = -np.sum(dxhat, axis=axes) / std + dvar * np.sum(-2.0 * (x - mean), axis=axes) / m
    dx = dxhat / std + dvar * 2.0 * (x - mean) / m + dmean / m
    return dx, dgamma, dbeta


def batch_norm_backward(dy, x, gamma, beta, moving_mean, moving_var, training=False, momentum=0.99,
                        epsilon=1e-3):
    """(dx, dgamma, dbeta); in training through the batch statistics, recomputed from x."""
    training = bool(training)
    check_batch_norm_backward(dy, x, gamma, beta, moving_mean, moving_var, momentum, epsilon)
    if training:
        m = x.size // x.shape[-1]
        mean = np.mean(x, axis=_axes(x)) if m else np.zeros(x.shape[-1], x.dtype)
        var = np.var(x, axis=_axes(x)) if m else np.zeros(x.shape[-1], x.dtype)
        dx, dgamma, dbeta = _train_backward(dy, x, gamma, mean, np.sqrt(var + epsilon))
    else:
        std = np.sqrt(moving_var + epsilon)
        dgamma = np.sum(dy * (x - moving_mean) / std, axis=_axes(x))
        dbeta = np.sum(dy, axis=_axes(x))
        dx = (dy * gamma if gamma is not None else dy) / std
    return dx, (dgamma if gamma is not None else None), (dbeta if beta is not None else None)


def batch_norm_backward_from_stats(dy, x, gamma, mean, invstd):
    """(dx, dgamma, dbeta) in x's dtype, from the float64 batch statistics of the forward."""
    check_batch_norm_backward_from_stats(dy, x, gamma, mean, invstd)
    grads = _train_backward(dy.astype(np.float64), x.astype(np.float64), gamma, mean, 1 / invstd)
    return tuple(g.astype(x.dtype) for g in grads)
