"""BatchNormalization over the last (channels) axis, with Keras' weights, defaults and modes."""

import numbers

from .. import initializers as _init
from .. import regularizers as _reg
from ..ops import batch_norm, batch_norm_backward, batch_norm_backward_from_stats
from .base import Layer, format_shape

__all__ = ["BatchNormalization"]


class BatchNormalization(Layer):
    """Normalizes each channel with the batch statistics in training (updating the moving ones:
    ``moving = moving * momentum + batch * (1 - momentum)``, biased variance, as Keras) and with
    the moving statistics at inference. Like Keras 3, a layer with ``trainable=False`` runs in
    inference mode even in training. Only the last axis can be normalized (channels_last)."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, **kwargs):
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an int (cnnkit normalizes one axis, the last), received axis={axis!r}")
        for name, v in (("momentum", momentum), ("epsilon", epsilon)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"{name} must be a number, received {name}={v!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], received momentum={momentum!r}")
        if not 0 < epsilon < float("inf"):
            raise ValueError(f"epsilon must be a positive finite number, received epsilon={epsilon!r}")
        inits = [_init.get(i) for i in (beta_initializer, gamma_initializer, moving_mean_initializer,
                                        moving_variance_initializer)]
        regs = [_reg.get(r) for r in (beta_regularizer, gamma_regularizer)]
        super().__init__(**kwargs)
        self.axis, self.momentum, self.epsilon = int(axis), float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        (self.beta_initializer, self.gamma_initializer, self.moving_mean_initializer,
         self.moving_variance_initializer) = inits
        self.beta_regularizer, self.gamma_regularizer = regs

    def _channels(self, input_shape):
        """The channel count, after checking that ``axis`` is the last axis of this input."""
        rank = len(input_shape)
        if rank < 2 or input_shape[-1] is None:
            raise ValueError(f"BatchNormalization {self.name!r} needs inputs (batch, ..., channels) with a "
                             f"known channel count, received input shape {format_shape(input_shape)}")
        if not -rank <= self.axis < rank or self.axis % rank != rank - 1:
            raise ValueError(f"BatchNormalization normalizes the last axis only (channels_last): axis=-1 or "
                             f"{rank - 1} for a {rank}-D input, received axis={self.axis} for input shape "
                             f"{format_shape(input_shape)}")
        return input_shape[-1]

    def build(self, input_shape):
        c = (self._channels(input_shape),)
        # Keras' order: gamma, beta, moving_mean, moving_variance (get_weights/set_weights follow it)
        self.gamma = self.add_weight("gamma", c, self.gamma_initializer, self.gamma_regularizer) if self.scale else None
        self.beta = self.add_weight("beta", c, self.beta_initializer, self.beta_regularizer) if self.center else None
        self.moving_mean = self.add_weight("moving_mean", c, self.moving_mean_initializer, trainable=False)
        self.moving_variance = self.add_weight("moving_variance", c, self.moving_variance_initializer,
                                               trainable=False)

    def _check_input_shape(self, input_shape):
        c = self._channels(input_shape)
        if c != self.moving_mean.shape[0]:
            raise ValueError(f"BatchNormalization {self.name!r} was built for {self.moving_mean.shape[0]} "
                             f"channels, received input shape {format_shape(input_shape)}")

    def _affine(self):
        return (self.gamma.value if self.scale else None), (self.beta.value if self.center else None)

    def forward(self, x, training=False):
        gamma, beta = self._affine()
        mm, mv = self.moving_mean.value, self.moving_variance.value
        if training and self.trainable:
            y, mean, invstd = batch_norm(x, gamma, beta, mm, mv, True, self.momentum, self.epsilon,
                                         return_stats=True)
            return y, (x, mean, invstd)
        return batch_norm(x, gamma, beta, mm, mv, False, self.momentum, self.epsilon), (x, None, None)

    def backward(self, saved, dy, need_dx=True):
        x, mean, invstd = saved
        gamma, beta = self._affine()
        if not need_dx and not any(v is not None and self._wants_grad(v) for v in (self.gamma, self.beta)):
            return None
        if mean is not None:
            dx, dgamma, dbeta = batch_norm_backward_from_stats(dy, x, gamma, mean, invstd)
        else:  # inference mode: the moving statistics are constants
            dx, dgamma, dbeta = batch_norm_backward(dy, x, gamma, beta, self.moving_mean.value,
                                                    self.moving_variance.value, False, self.momentum,
                                                    self.epsilon)
        if self.scale and self._wants_grad(self.gamma):
            self.gamma.accumulate_grad(dgamma)
        if self.center and self._wants_grad(self.beta):
            self.beta.accumulate_grad(dbeta)
        return dx if need_dx else None

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": _init.serialize(self.beta_initializer),
                "gamma_initializer": _init.serialize(self.gamma_initializer),
                "moving_mean_initializer": _init.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": _init.serialize(self.moving_variance_initializer),
                "beta_regularizer": _reg.serialize(self.beta_regularizer),
                "gamma_regularizer": _reg.serialize(self.gamma_regularizer)}
