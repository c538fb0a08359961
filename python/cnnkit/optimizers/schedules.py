"""Learning-rate schedules (Keras 3's ``keras.optimizers.schedules``): callables ``step -> float``.

An optimizer given a schedule evaluates it at its ``iterations`` (0 for the first step) every step.
The values are computed in Python floats on the host, whatever device the model runs on.
"""

import math

from .._checks import int_at_least, number
from .._registry import Configurable, Registry

__all__ = ["LearningRateSchedule", "ExponentialDecay", "CosineDecay", "serialize", "deserialize"]


class LearningRateSchedule(Configurable):
    """Base class: override ``__call__(step)`` (step: the optimizer's iteration count, an int) and,
    to make the schedule serializable, ``get_config()``."""

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`__call__(self, step)`.")

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`get_config()` in order to be serializable.")


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; with ``staircase=True`` the
    exponent is ``floor(step / decay_steps)``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        self.initial_learning_rate = number(initial_learning_rate, "initial_learning_rate", low=0)
        self.decay_steps = int_at_least(decay_steps, "decay_steps", 1)
        self.decay_rate = number(decay_rate, "decay_rate", low=0, low_open=True)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate**p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay (SGDR without restarts) with an optional linear warmup.

    Without ``warmup_target``: ``initial_learning_rate * ((1 - alpha) * c + alpha)`` with
    ``c = 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps))``. With it, the rate first rises
    linearly from ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps``, then decays from
    ``warmup_target`` the same way over the next ``decay_steps``."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = number(initial_learning_rate, "initial_learning_rate", low=0)
        self.decay_steps = int_at_least(decay_steps, "decay_steps", 1)
        self.alpha = number(alpha, "alpha", 0, 1)
        self.name = name
        self.warmup_target = number(warmup_target, "warmup_target", low=0, allow_none=True)
        self.warmup_steps = int_at_least(warmup_steps, "warmup_steps", 0)

    def _decay(self, step, start):
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return (self.warmup_target - self.initial_learning_rate) * fraction + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


_REGISTRY = Registry("learning rate schedule", LearningRateSchedule, (ExponentialDecay, CosineDecay))
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize
