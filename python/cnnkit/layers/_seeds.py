"""Per-call kernel seeds for the random layers (Dropout, StochasticPooling2D)."""

import numpy as np

from .. import _random


class SeedStream:
    """A fresh seed per training call: from cnnkit's shared generator (``set_random_seed``), or, when
    the layer was given ``seed=``, from a generator of its own, so that layer repeats the same
    sequence of masks whatever else draws random numbers (like Keras' SeedGenerator)."""

    def __init__(self, seed=None):
        self._rng = None if seed is None else np.random.default_rng(seed)

    def next(self):
        if self._rng is None:
            return _random.next_seed()
        return int(self._rng.integers(0, 2**63 - 1))
