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

import numbers

from ._backend import as_array, backend, check_float

__all__ = ["batch_norm", "batch_norm_backward"]


def _channels(x):
    x = check_float(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (N, ..., C), got shape {tuple(x.shape)}")
    c = int(x.shape[-1])
    if c < 1:
        raise ValueError(f"x must have at least one channel (last axis), got shape {tuple(x.shape)}")
    return x, c


def _per_channel(a, name, x, c, dtype=None):
    """gamma/beta/statistics: None passes through; otherwise a (C,) array of x's dtype (or dtype)."""
    if a is None:
        return None
    a = check_float(a, name, dtype=x.dtype if dtype is None else dtype)
    if a.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},) to match the {c} channels of x "
                         f"{tuple(x.shape)}, got shape {tuple(a.shape)}")
    return a


def _moving(a, name, x, c, updated):
    """A moving statistic: a (C,) array of x's dtype; when it is updated in place it must also be
    C-contiguous and writable (a copy would silently lose the update)."""
    if a is None:
        raise TypeError(f"{name} is required: pass a ({c},) array of dtype {x.dtype}")
    if updated:
        a = as_array(a)
        if not hasattr(a, "dtype") or not hasattr(a, "flags"):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")
        if a.dtype != x.dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but x is {x.dtype}; the moving statistics are "
                            "updated in place and must have the dtype of x")
        if a.shape != (c,):
            raise ValueError(f"{name} must have shape ({c},) to match the {c} channels of x "
                             f"{tuple(x.shape)}, got shape {tuple(a.shape)}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous: it is updated in place")
        if not getattr(a.flags, "aligned", True):
            raise ValueError(f"{name} must be aligned (its data address a multiple of {a.dtype.itemsize} "
                             "bytes): it is updated in place")
        if not getattr(a.flags, "writeable", True):  # CuPy arrays have no read-only flag
            raise ValueError(f"{name} must be writable: it is updated in place")
        return a
    return _per_channel(a, name, x, c)


def _scalars(momentum, epsilon):
    for name, v in (("momentum", momentum), ("epsilon", epsilon)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must be a real number, received {name}={v!r}")
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], received momentum={momentum!r}")
    if not float(epsilon) > 0.0 or float(epsilon) == float("inf"):
        raise ValueError(f"epsilon must be positive and finite, received epsilon={epsilon!r}")
    return float(momentum), float(epsilon)


def _arrays(**named):
    """TypeError naming the first argument that is neither None nor an array."""
    for name, a in named.items():
        if a is not None and not (hasattr(a, "dtype") and hasattr(a, "shape")):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")


def _prepare(x, gamma, beta, moving_mean, moving_var, momentum, epsilon, updated):
    _arrays(x=x, gamma=gamma, beta=beta, moving_mean=moving_mean, moving_var=moving_var)
    be = backend(x, gamma, beta, moving_mean, moving_var)
    x, c = _channels(x)
    gamma = _per_channel(gamma, "gamma", x, c)
    beta = _per_channel(beta, "beta", x, c)
    moving_mean = _moving(moving_mean, "moving_mean", x, c, updated)
    moving_var = _moving(moving_var, "moving_var", x, c, updated)
    momentum, epsilon = _scalars(momentum, epsilon)
    return be, x, c, gamma, beta, moving_mean, moving_var, momentum, epsilon


def _check_dy(dy, x):
    _arrays(dy=dy)
    backend(dy, x)  # refuses a NumPy/CuPy mixture
    dy = check_float(dy, "dy", dtype=x.dtype)
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x {tuple(x.shape)}, got {tuple(dy.shape)}")
    return dy


def batch_norm(x, gamma, beta, moving_mean, moving_var, training=False, momentum=0.99, epsilon=1e-3):
    """Batch normalization over the last axis of ``x`` (N, ..., C).

    gamma, beta: (C,) scale and offset, or None (Keras ``scale=False`` / ``center=False``).
    moving_mean, moving_var: (C,) moving statistics of x's dtype. With ``training=True`` the output
    uses the batch mean and biased batch variance, and the moving statistics are updated IN PLACE:
    ``moving = moving * momentum + batch_stat * (1 - momentum)`` (so they must be C-contiguous and
    writable). With ``training=False`` they are read only:
    ``y = (x - moving_mean) / sqrt(moving_var + epsilon) * gamma + beta``.
    momentum in [0, 1]; epsilon > 0. Returns y, the shape and dtype of x.
    """
    training = bool(training)
    be, x, c, gamma, beta, moving_mean, moving_var, momentum, epsilon = _prepare(
        x, gamma, beta, moving_mean, moving_var, momentum, epsilon, updated=training)
    if training:
        return _batch_norm_train_forward(x, gamma, beta, moving_mean, moving_var, momentum, epsilon)[0]
    y = be.xp.empty(x.shape, x.dtype)
    be.lib.batch_norm_inference_forward(x.reshape(-1, c), gamma, beta, moving_mean, moving_var, epsilon,
                                        y.reshape(-1, c))
    return y


def batch_norm_backward(dy, x, gamma, beta, moving_mean, moving_var, training=False, momentum=0.99,
                        epsilon=1e-3):
    """Gradients of :func:`batch_norm`: returns (dx, dgamma, dbeta), dgamma/dbeta None when gamma/beta
    is None.

    With ``training=True`` the batch statistics are recomputed from x and differentiated through
    (dx = invstd / M * (M * g - sum(g) - xhat * sum(g * xhat)), g = dy * gamma); the moving statistics
    are neither read nor updated. With ``training=False`` the moving statistics are constants:
    dx = dy * gamma / sqrt(moving_var + epsilon). The moving statistics (and momentum) are not
    differentiable; no gradient is returned for them.
    """
    training = bool(training)
    be, x, c, gamma, beta, moving_mean, moving_var, momentum, epsilon = _prepare(
        x, gamma, beta, moving_mean, moving_var, momentum, epsilon, updated=False)
    dy = _check_dy(dy, x)
    if training:
        mean = be.xp.empty((c,), be.xp.float64)
        invstd = be.xp.empty((c,), be.xp.float64)
        be.lib.batch_norm_batch_stats(x.reshape(-1, c), epsilon, mean, invstd)
        dx, dgamma, dbeta = _batch_norm_train_backward(dy, x, gamma, mean, invstd)
    else:
        dx = be.xp.empty(x.shape, x.dtype)
        dgamma = be.xp.empty((c,), x.dtype)
        dbeta = be.xp.empty((c,), x.dtype)
        be.lib.batch_norm_inference_backward(dy.reshape(-1, c), x.reshape(-1, c), gamma, moving_mean,
                                             moving_var, epsilon, dx.reshape(-1, c), dgamma, dbeta)
    return dx, (dgamma if gamma is not None else None), (dbeta if beta is not None else None)


def _batch_norm_train_forward(x, gamma, beta, moving_mean, moving_var, momentum, epsilon):
    """Training forward for layers: returns (y, mean, invstd), the batch mean and
    1 / sqrt(biased variance + epsilon) per channel as float64 (C,) arrays whatever x's dtype (a
    rounded mean would cost dgamma its accuracy), to pass to :func:`_batch_norm_train_backward`;
    updates moving_mean / moving_var in place like :func:`batch_norm`."""
    be, x, c, gamma, beta, moving_mean, moving_var, momentum, epsilon = _prepare(
        x, gamma, beta, moving_mean, moving_var, momentum, epsilon, updated=True)
    y = be.xp.empty(x.shape, x.dtype)
    mean = be.xp.empty((c,), be.xp.float64)
    invstd = be.xp.empty((c,), be.xp.float64)
    be.lib.batch_norm_train_forward(x.reshape(-1, c), gamma, beta, moving_mean, moving_var, momentum,
                                    epsilon, y.reshape(-1, c), mean, invstd)
    return y, mean, invstd


def _batch_norm_train_backward(dy, x, gamma, mean, invstd):
    """Training backward from the statistics saved by :func:`_batch_norm_train_forward`:
    returns (dx, dgamma, dbeta); dgamma and dbeta are always arrays (the sums of dy * xhat and dy)."""
    _arrays(dy=dy, x=x, gamma=gamma, mean=mean, invstd=invstd)
    be = backend(dy, x, gamma, mean, invstd)
    x, c = _channels(x)
    dy = _check_dy(dy, x)
    gamma = _per_channel(gamma, "gamma", x, c)
    if mean is None or invstd is None:
        raise TypeError("mean and invstd are required: pass those returned by _batch_norm_train_forward")
    mean = _per_channel(mean, "mean", x, c, dtype=be.xp.float64)  # float64, whatever x's dtype
    invstd = _per_channel(invstd, "invstd", x, c, dtype=be.xp.float64)
    dx = be.xp.empty(x.shape, x.dtype)
    dgamma = be.xp.empty((c,), x.dtype)
    dbeta = be.xp.empty((c,), x.dtype)
    be.lib.batch_norm_train_backward(dy.reshape(-1, c), x.reshape(-1, c), gamma, mean, invstd,
                                     dx.reshape(-1, c), dgamma, dbeta)
    return dx, dgamma, dbeta
