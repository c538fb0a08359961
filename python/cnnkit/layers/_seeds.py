"""Random state for the random layers: per-call kernel seeds (Dropout, StochasticPooling2D) and
per-layer generators (the augmentation layers)."""

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


def layer_generator(seed=None):
    """A NumPy generator of a layer's own, for augmentation parameters drawn on the host: seeded by
    ``seed=``, else from cnnkit's shared generator when the layer is made (so ``set_random_seed``
    before building a model makes its augmentations repeat), like Keras' SeedGenerator."""
    return np.random.default_rng(_random.next_seed() if seed is None else seed)
