"""Dropout: inverted dropout in training, the identity at inference (Keras semantics)."""

from ..ops import dropout, dropout_backward
from . import _args
from ._seeds import SeedStream
from .base import Layer

__all__ = ["Dropout"]


class Dropout(Layer):
    """Sets a fraction ``rate`` of the inputs to 0 in training and scales the rest by 1 / (1 - rate).

    Each training call draws a fresh mask seed from cnnkit's generator (``set_random_seed`` makes a
    run repeat), or, given ``seed``, from a generator of the layer's own; backward replays that mask."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        rate = _args.fraction(rate, "rate")
        if noise_shape is not None:
            raise ValueError(f"Dropout does not support noise_shape (masks shared along some axes) yet; "
                             f"received noise_shape={noise_shape!r}, pass None")
        seed = _args.seed(seed)
        super().__init__(**kwargs)
        self.rate, self.noise_shape, self.seed = rate, None, seed
        self._seeds = SeedStream(seed)

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            return x, None
        seed = self._seeds.next()
        return dropout(x, self.rate, seed), (x, seed)

    def backward(self, saved, dy, need_dx=True):
        if not need_dx:
            return None
        if saved is None:
            return dy
        x, seed = saved
        return dropout_backward(dy, x, self.rate, seed)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": None, "seed": self.seed}
