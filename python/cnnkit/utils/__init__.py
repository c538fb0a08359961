"""Utilities: reproducibility, label and data helpers, and the batch Sequence that fit streams from."""

import random

import numpy as np

from .. import _random
from .image_dataset import image_dataset_from_directory
from .model_plot import plot_model
from .numerical import normalize
from .receptive_field import ReceptiveField, receptive_field
from .sequence import PyDataset, Sequence
from .split import train_test_split

__all__ = ["set_random_seed", "to_categorical", "normalize", "train_test_split", "image_dataset_from_directory",
           "Sequence", "PyDataset", "receptive_field", "ReceptiveField", "plot_model"]


def set_random_seed(seed):
    """Seed cnnkit's generator (weight init, shuffling, dropout and stochastic-pooling seeds), Python's
    ``random`` and NumPy's global generator, like ``keras.utils.set_random_seed``: the same seed makes
    a training run repeat exactly on the same device."""
    _random.set_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot rows for integer class ids y (any shape; a trailing axis of size 1 is dropped)."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.array_equal(y, np.round(y)):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"to_categorical needs integer class ids, got dtype {y.dtype}")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if y.size and y.min() < 0:
        raise ValueError(f"class ids must be >= 0, got {int(y.min())}")
    top = int(y.max()) + 1 if y.size else 0
    if num_classes is None:
        num_classes = top
    elif top > num_classes:
        raise ValueError(f"class id {top - 1} is out of range for num_classes={num_classes}")
    out = np.zeros(y.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, y[..., None].astype(np.int64), 1, axis=-1)
    return out
