"""Learning-rate schedules (Keras 3's ``keras.optimizers.schedules``): callables ``step -> float``.

An optimizer given a schedule evaluates it at its ``iterations`` (0 for the first step) every step.
The values are computed in Python floats on the host, whatever device the model runs on.
"""

import inspect
import math
import numbers

__all__ = ["LearningRateSchedule", "ExponentialDecay", "CosineDecay", "serialize", "deserialize"]


def _float(name, value, expected, ok):
    """value as a float when ok(float(value)); ValueError naming the argument otherwise."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and ok(float(value)):
        return float(value)
    raise ValueError(f"Argument `{name}` must be {expected}. Received: {name}={value!r:.200}")


def _int(name, value, expected, ok):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and ok(int(value)):
        return int(value)
    raise ValueError(f"Argument `{name}` must be {expected}. Received: {name}={value!r:.200}")


def _nonneg(v):
    return 0 <= v < math.inf


def _kwargs(cls, config):
    """config as keyword arguments of cls(...): a dict whose keys cls accepts. A ValueError otherwise,
    quoting at most 200 characters of what was received (configs come from files)."""
    if not isinstance(config, dict):
        raise ValueError(f"The config of {cls.__name__} must be a dict. Received: {config!r:.200}")
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in config if k not in params]
        if unknown:
            raise ValueError(f"Unknown argument(s) in the config of {cls.__name__}: {unknown!r:.200}. "
                             f"Expected some of {sorted(params)}")
    return dict(config)


class LearningRateSchedule:
    """Base class: override ``__call__(step)`` (step: the optimizer's iteration count, an int) and,
    to make the schedule serializable, ``get_config()``."""

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`__call__(self, step)`.")

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`get_config()` in order to be serializable.")

    @classmethod
    def from_config(cls, config):
        return cls(**_kwargs(cls, config))


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; with ``staircase=True`` the
    exponent is ``floor(step / decay_steps)``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        self.initial_learning_rate = _float("initial_learning_rate", initial_learning_rate,
                                            "a float >= 0", _nonneg)
        self.decay_steps = _int("decay_steps", decay_steps, "an int > 0", lambda v: v > 0)
        self.decay_rate = _float("decay_rate", decay_rate, "a float > 0", lambda v: 0 < v < math.inf)
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
        self.initial_learning_rate = _float("initial_learning_rate", initial_learning_rate,
                                            "a float >= 0", _nonneg)
        self.decay_steps = _int("decay_steps", decay_steps, "an int > 0", lambda v: v > 0)
        self.alpha = _float("alpha", alpha, "a float in [0, 1]", lambda v: 0 <= v <= 1)
        self.name = name
        self.warmup_target = (None if warmup_target is None else
                              _float("warmup_target", warmup_target, "None or a float >= 0", _nonneg))
        self.warmup_steps = _int("warmup_steps", warmup_steps, "an int >= 0", lambda v: v >= 0)

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


_BUILTINS = {"ExponentialDecay": ExponentialDecay, "CosineDecay": CosineDecay}


def serialize(schedule):
    """``{"class_name": ..., "config": ...}``, JSON-compatible."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config, custom_objects=None):
    """The schedule that ``serialize`` described; ``custom_objects`` maps names of user classes."""
    classes = {**_BUILTINS, **(custom_objects or {})}
    name = config.get("class_name") if isinstance(config, dict) else None
    if not isinstance(name, str) or name not in classes:
        raise ValueError(f"Could not interpret learning rate schedule: {config!r:.200}. Expected "
                         f"{{'class_name': one of {sorted(classes)}, 'config': {{...}}}}")
    return classes[name].from_config(config.get("config", {}))
