"""Optimizers with Keras 3's names, defaults and update rules: SGD, Adam, RMSprop, AdamW.

``apply(grads, variables)`` filters out frozen variables and missing gradients, builds the slots
(moments, velocities: zeros with the module, dtype and layout of each ``variable.value``) on first
sight of a variable, clips the gradients, runs one ``update_step`` per variable and counts one
iteration. Each built-in ``update_step`` is one fused kernel (``cnnkit.ops.sgd_update``,
``adam_update``, ``rmsprop_update``, on the CPU or the GPU) that applies the decoupled weight decay
too and updates ``variable.value`` and the slots in place in one pass over memory, so a step on a
large model allocates nothing new. Gradient norms for ``clipnorm``/``global_clipnorm`` stay arrays
on the gradients' device: clipping never reads a value back to the host.
Saving goes through ``get_state()`` / ``set_state()``: JSON plus plain arrays, no pickle.
"""

import inspect
import math
import re

import numpy as np

from .._checks import boolean, int_at_least, number, string
from .._registry import Configurable, Registry, config_kwargs
from .. import ops
from ..ops import get_array_module, to_host
from . import schedules
from .schedules import LearningRateSchedule

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "AdamW", "schedules", "get", "serialize",
           "deserialize"]

def _check_learning_rate(value):
    if isinstance(value, LearningRateSchedule) or callable(value):
        return value
    return number(value, "learning_rate", low=0, expected="a float >= 0, a LearningRateSchedule or a "
                                                          "callable(step) -> float")


def _call_schedule(fn, step):
    """fn(step), checked: a finite float >= 0. Keras 3 documents plain callables as taking no
    argument, so those are called bare. The check is here, before any update uses the value: a NaN
    rate would otherwise be multiplied into every weight of the step."""
    if isinstance(fn, LearningRateSchedule):
        value = fn(step)
    else:
        try:
            inspect.signature(fn).bind(step)
        except TypeError:
            value = fn()
        except ValueError:  # no signature to inspect (some builtins): assume the Keras schedule form
            value = fn(step)
        else:
            value = fn(step)
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = None
    if isinstance(value, bool) or rate is None or not 0 <= rate < math.inf:
        raise ValueError(f"The learning rate schedule {fn!r:.200} returned {value!r:.200} at step {step}; "
                         "a learning rate must be a finite float >= 0. No update was applied.")
    return rate


def _norm(g):
    """The L2 norm of g as a 0-d array of g's dtype, on g's device (no read-back to the host)."""
    return get_array_module(g).linalg.norm(g.ravel())


def _scaled(g, scale):
    """g * scale, scale a 0-d array on g's device, in g's dtype. A new array, never g *= scale: the
    caller's gradient (variable.grad) must stay as it was."""
    return g * scale.astype(g.dtype, copy=False)


class Optimizer(Configurable):
    """Base class: subclasses list their slots in ``_slot_names()`` and implement
    ``update_step(grad, variable, learning_rate)`` in place."""

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None):
        self._learning_rate = _check_learning_rate(learning_rate)
        self.weight_decay = number(weight_decay, "weight_decay", low=0, allow_none=True)
        self.clipnorm = number(clipnorm, "clipnorm", low=0, low_open=True, allow_none=True)
        self.clipvalue = number(clipvalue, "clipvalue", low=0, low_open=True, allow_none=True)
        self.global_clipnorm = number(global_clipnorm, "global_clipnorm", low=0, low_open=True, allow_none=True)
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                             f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        self.name = string(name, "name", allow_none=True) or type(self).__name__.lower()
        self.iterations = 0
        self.built = False
        # Slots are found by id(variable); holding the variables keeps those ids from being reused.
        self._variables, self._index, self._slots = [], {}, []
        self._exclude_ids, self._exclude_pattern = set(), None

    # -- learning rate -----------------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The rate the next step uses (a schedule evaluated at ``iterations``), as a float."""
        lr = self._learning_rate
        return _call_schedule(lr, self.iterations) if callable(lr) else lr

    @learning_rate.setter
    def learning_rate(self, value):
        value = _check_learning_rate(value)
        if callable(self._learning_rate) and not callable(value):
            raise TypeError("This optimizer was created with a schedule as its `learning_rate`, so its "
                            "learning rate cannot be set to a float; create the optimizer with a float "
                            f"learning rate to change it during training. Received: learning_rate={value}")
        self._learning_rate = value

    # -- slots ---------------------------------------------------------------------------------------
    def _slot_names(self):
        return ()

    def build(self, variables):
        """Create zero slots for every variable not seen before, appended in the order given."""
        for v in variables:
            if id(v) in self._index:
                continue
            xp = get_array_module(v.value)
            self._index[id(v)] = len(self._variables)
            self._variables.append(v)
            self._slots.append({name: xp.zeros_like(v.value) for name in self._slot_names()})
        self.built = True

    def _slot(self, variable, name):
        return self._slots[self._index[id(variable)]][name]

    # -- the step ------------------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """Apply (grad, variable) pairs; returns ``iterations``."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])
        return self.iterations

    def apply(self, grads, variables=None):
        """One step on ``variables`` (default: those the optimizer was built on) with ``grads``."""
        grads = list(grads)
        if variables is None:
            if not self.built:
                raise ValueError("When passing `grads` without `variables`, the optimizer must already "
                                 "be built on a list of variables. Call `optimizer.build(variables)` first.")
            variables = self._variables
        variables = list(variables)
        if len(grads) != len(variables):
            raise ValueError(f"Expected one gradient per variable. Received: {len(grads)} gradients for "
                             f"{len(variables)} variables")
        pairs = [(g, v) for g, v in zip(grads, variables) if v.trainable]
        if not pairs:
            return
        self.build([v for _, v in pairs])
        pairs = [(g, v) for g, v in pairs if g is not None]
        if not pairs:
            raise ValueError("No gradients provided for any variable.")
        for g, v in pairs:
            if tuple(g.shape) != v.shape:
                raise ValueError(f"Gradient of shape {tuple(g.shape)} does not match variable {v.name!r:.200} "
                                 f"of shape {v.shape}")
        variables = [v for _, v in pairs]
        grads = self._clip([g if g.dtype == v.dtype else g.astype(v.dtype) for g, v in pairs])
        lr = self.learning_rate
        if not self._fuses_weight_decay:
            self._apply_weight_decay(variables, lr)
        for g, v in zip(grads, variables):
            self.update_step(g, v, lr)
        self.iterations += 1

    def update_step(self, grad, variable, learning_rate):
        raise NotImplementedError(f"{type(self).__name__} must implement update_step()")

    # The built-in optimizers apply the decoupled weight decay inside their fused update; for a
    # subclass with its own update_step, apply() applies it to every variable first.
    _fuses_weight_decay = False

    def _weight_decay_for(self, variable):
        """The weight decay a fused update applies to this variable (0.0: none)."""
        if self.weight_decay is None or not self._use_weight_decay(variable):
            return 0.0
        return self.weight_decay

    def _fused(self, update, grad, variable, *slots, **scalars):
        """``update(variable.value, grad, *slots, **scalars)``: one fused kernel (cnnkit.ops), which
        updates the value and the slots in place. One it cannot update in place (a value set to a
        strided or unaligned view) goes through a contiguous copy, written back afterwards."""
        arrays = [variable.value, *slots]
        fits = [a is None or (a.flags.c_contiguous and getattr(a.flags, "aligned", True)) for a in arrays]
        if all(fits):
            update(arrays[0], grad, *arrays[1:], **scalars)
            return
        xp = get_array_module(variable.value)
        work = [a if ok else xp.array(a, order="C", copy=True) for a, ok in zip(arrays, fits)]
        update(work[0], grad, *work[1:], **scalars)
        for a, w, ok in zip(arrays, work, fits):
            if not ok:
                a[...] = w

    def _clip(self, grads):
        # The norms and scales are 0-d arrays on the gradients' device, never read back: on the GPU a
        # float(norm) would wait for the whole backward pass, every step.
        if self.clipnorm is not None:
            c = self.clipnorm
            return [_scaled(g, c / get_array_module(g).maximum(_norm(g), c)) for g in grads]
        if self.global_clipnorm is not None:
            c = self.global_clipnorm
            xp = get_array_module(*grads)
            norm = xp.sqrt(sum(_norm(g).astype(np.float64) ** 2 for g in grads))
            # Like Keras: a non-finite global norm turns every gradient into NaN rather than hiding it.
            scale = xp.where(xp.isfinite(norm), c / xp.maximum(norm, c), math.nan)
            return [_scaled(g, scale) for g in grads]
        if self.clipvalue is not None:
            return [get_array_module(g).clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Skip weight decay for the variables in ``var_list`` and for those whose name matches any
        of the regular expressions in ``var_names`` (e.g. ``["bias"]``). Call before the first step."""
        if self.built:
            raise ValueError("`exclude_from_weight_decay()` can only be configured before the optimizer "
                             "is built.")
        self._exclude_ids = {id(v) for v in var_list or ()}
        self._exclude_pattern = re.compile("|".join(var_names)) if var_names else None

    def _use_weight_decay(self, v):
        if id(v) in self._exclude_ids:
            return False
        return self._exclude_pattern is None or self._exclude_pattern.search(v.name) is None

    def _apply_weight_decay(self, variables, lr):
        # Decoupled (AdamW-style) decay, before the update: w -= w * weight_decay * lr.
        if self.weight_decay is None:
            return
        factor = 1.0 - self.weight_decay * lr
        for v in variables:
            if self._use_weight_decay(v):
                value = v.value
                value *= factor

    # -- configuration -------------------------------------------------------------------------------
    def get_config(self):
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            lr = schedules.serialize(lr)
        elif callable(lr):
            raise TypeError(f"A plain callable learning rate cannot be serialized. Received: "
                            f"learning_rate={lr!r:.200}; use a LearningRateSchedule subclass with get_config()")
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                "clipvalue": self.clipvalue}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = config_kwargs(cls, config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"], custom_objects)
        return cls(**config)

    # -- saving and moving ---------------------------------------------------------------------------
    def get_state(self):
        """``(state, arrays)``: a JSON-compatible dict with ``iterations`` and the slot names, and host
        (NumPy) copies of every slot array, variable by variable in build order."""
        names = [[v.name, s] for v, slots in zip(self._variables, self._slots) for s in slots]
        # copies: the slots go on changing in place as training goes on
        arrays = [a.copy() if isinstance(a, np.ndarray) else to_host(a)
                  for slots in self._slots for a in slots.values()]
        return {"iterations": self.iterations, "slots": names}, arrays

    def set_state(self, state, arrays):
        """Restore ``get_state()``'s output into this optimizer, built on the same variables."""
        iterations = state.get("iterations") if isinstance(state, dict) else None
        int_at_least(iterations, "state['iterations']", 0)
        targets = [(v, name, a) for v, slots in zip(self._variables, self._slots)
                   for name, a in slots.items()]
        arrays = list(arrays)
        if len(arrays) != len(targets):
            raise ValueError(f"This optimizer has {len(targets)} slot arrays (built on "
                             f"{len(self._variables)} variables) but the state holds {len(arrays)}; "
                             "build it on the same variables first.")
        for (v, name, a), new in zip(targets, arrays):
            if tuple(new.shape) != a.shape:
                raise ValueError(f"Slot {name!r} of variable {v.name!r:.200} has shape {a.shape}; the state's "
                                 f"array has shape {tuple(new.shape)}")
        for (_, _, a), new in zip(targets, arrays):
            xp = get_array_module(a)
            a[...] = to_host(new) if xp is np else xp.asarray(new)
        self.iterations = int(iterations)

    def _move_slots(self, convert):
        """Replace every slot array with ``convert(array)`` (``Model.to(device)`` moves them)."""
        self._slots = [{name: convert(a) for name, a in slots.items()} for slots in self._slots]

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} learning_rate={self._learning_rate!r}>"


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum. With momentum ``m``:
    ``v = m * v - lr * g; w += v`` (Nesterov: ``w += m * v - lr * g``)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name="SGD"):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.momentum = number(momentum, "momentum", 0, 1)
        self.nesterov = boolean(nesterov, "nesterov")

    def _slot_names(self):
        return ("momentum",) if self.momentum != 0 else ()

    _fuses_weight_decay = True

    def update_step(self, grad, variable, learning_rate):
        buf = self._slot(variable, "momentum") if self.momentum != 0 else None
        self._fused(ops.sgd_update, grad, variable, buf, learning_rate=learning_rate, momentum=self.momentum,
                    nesterov=self.nesterov, weight_decay=self._weight_decay_for(variable))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba) with Keras' epsilon-hat form: ``m += (g - m)(1 - b1)``,
    ``v += (g^2 - v)(1 - b2)``, ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``;
    ``amsgrad`` uses the running maximum of ``v``."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name="adam"):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.beta_1 = number(beta_1, "beta_1", 0, 1, high_open=True)
        self.beta_2 = number(beta_2, "beta_2", 0, 1, high_open=True)
        self.epsilon = number(epsilon, "epsilon", low=0)
        self.amsgrad = boolean(amsgrad, "amsgrad")

    def _slot_names(self):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    _fuses_weight_decay = True

    def update_step(self, grad, variable, learning_rate):
        m, v = self._slot(variable, "momentum"), self._slot(variable, "velocity")
        v_hat = self._slot(variable, "velocity_hat") if self.amsgrad else None
        self._fused(ops.adam_update, grad, variable, m, v, v_hat, learning_rate=learning_rate,
                    step=self.iterations + 1, beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                    weight_decay=self._weight_decay_for(variable))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``w -= w * weight_decay * lr`` first."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None, name="adamw"):
        number(weight_decay, "weight_decay", low=0)  # AdamW without decay is Adam: None is refused
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm,
                         clipvalue, global_clipnorm, name)


class RMSprop(Optimizer):
    """RMSprop (Hinton): ``v = rho v + (1 - rho) g^2``, ``w -= lr g / sqrt(v + eps)``; ``centered``
    subtracts the squared running mean of g inside the root; ``momentum`` accumulates the steps."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name="rmsprop"):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.rho = number(rho, "rho", 0, 1)
        self.momentum = number(momentum, "momentum", 0, 1)
        self.epsilon = number(epsilon, "epsilon", low=0)
        self.centered = boolean(centered, "centered")

    def _slot_names(self):
        return (("velocity",) + (("momentum",) if self.momentum > 0 else ())
                + (("average_gradient",) if self.centered else ()))

    _fuses_weight_decay = True

    def update_step(self, grad, variable, learning_rate):
        velocity = self._slot(variable, "velocity")
        buf = self._slot(variable, "momentum") if self.momentum > 0 else None
        average = self._slot(variable, "average_gradient") if self.centered else None
        self._fused(ops.rmsprop_update, grad, variable, velocity, buf, average, learning_rate=learning_rate,
                    rho=self.rho, momentum=self.momentum, epsilon=self.epsilon,
                    weight_decay=self._weight_decay_for(variable))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


# Keras names optimizers by their class names in lower case ("rmsprop", "adamw"), in any case ("Adam").
_REGISTRY = Registry("optimizer", Optimizer, (SGD, Adam, RMSprop, AdamW),
                     names={cls.__name__: cls for cls in (SGD, Adam, RMSprop, AdamW)}, fold_case=True, nested=True)
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize
get = _REGISTRY.get
