"""Weight penalties added to the training loss: L1, L2 and L1L2 (Keras' names and defaults).

A regularizer is called on a weight array and returns the penalty, a 0-d float64 array on the
weight's device (``float()`` reads it; summed on the device so that a training step does not wait
for it, as Keras returns a tensor); ``gradient(w)`` gives d penalty / dw, which the model adds to
the weight's gradient."""

from ._checks import number
from ._registry import Configurable, Registry
from .ops import get_array_module

__all__ = ["Regularizer", "L1", "L2", "L1L2", "get", "serialize"]


class Regularizer(Configurable):
    def __call__(self, w):
        raise NotImplementedError

    def gradient(self, w):
        raise NotImplementedError


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w**2)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = number(l1, "l1", low=0), number(l2, "l2", low=0)

    def __call__(self, w):
        xp = get_array_module(w)
        total = xp.zeros((), xp.float64)
        if self.l1:
            total = total + self.l1 * xp.abs(w).sum().astype(xp.float64)
        if self.l2:
            total = total + self.l2 * (w * w).sum().astype(xp.float64)
        return total

    def gradient(self, w):
        xp = get_array_module(w)
        g = (2 * self.l2) * w if self.l2 else xp.zeros_like(w)
        if self.l1:
            g += self.l1 * xp.sign(w)
        return g

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


# Names: "l1", "l2", Keras' "l1_l2" and "l1l2", in any case, and the class names.
_REGISTRY = Registry("regularizer", Regularizer, (L1, L2, L1L2), aliases={"l1l2": L1L2}, fold_case=True)


def get(identifier):
    """A Regularizer from a name ("l2"), a serialized dict or an instance; None stays None."""
    return None if identifier is None else _REGISTRY.get(identifier)


def serialize(reg):
    return None if reg is None else _REGISTRY.serialize(reg)
