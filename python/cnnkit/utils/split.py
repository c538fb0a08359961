"""train_test_split with scikit-learn's semantics."""

import math
import numbers

import numpy as np

from .. import _random
from ..ops import to_host

__all__ = ["train_test_split"]


def _as_array(a, name):
    a = to_host(a)  # CuPy: split on the host, the caller moves batches to the device
    if a.ndim == 0:
        raise ValueError(f"{name} must have a first (sample) axis, received a scalar")
    return a


def _test_count(test_size, n):
    """scikit-learn's rule: a float is a fraction (rounded up), an int a number of samples."""
    if isinstance(test_size, numbers.Integral) and not isinstance(test_size, bool):
        if not 1 <= test_size < n:
            raise ValueError(f"test_size={test_size} should be either positive and smaller than the number of "
                             f"samples {n} or a float in the (0, 1) range")
        return int(test_size)
    if isinstance(test_size, numbers.Real) and not isinstance(test_size, bool) and 0 < test_size < 1:
        n_test = math.ceil(test_size * n)
        if n - n_test <= 0:
            raise ValueError(f"test_size={test_size} with n_samples={n} leaves the training set empty")
        return n_test
    raise ValueError(f"test_size={test_size!r} should be either positive and smaller than the number of "
                     f"samples {n} or a float in the (0, 1) range")


def _stratified_test_indices(classes, n_test, rng):
    """Indices of a test set holding each class in (nearly) its share of the samples: every class
    gets floor(share), the samples left over go to the classes with the largest remainders."""
    labels, inverse, counts = np.unique(classes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if counts.min() < 2:
        raise ValueError(f"stratify: the least populated class has {counts.min()} member; every class needs at "
                         "least 2 to appear in both sets")
    n = len(classes)
    if n_test < len(labels) or n - n_test < len(labels):
        raise ValueError(f"stratify: the test size {n_test} and the train size {n - n_test} must each be at least "
                         f"the number of classes {len(labels)}")
    share = counts * n_test / n
    take = np.floor(share).astype(np.int64)
    left = n_test - int(take.sum())
    # Largest remainder first; a random key breaks ties so no class is favoured by its label.
    order = np.lexsort((rng.random(len(labels)), -(share - take)))
    take[order[:left]] += 1
    picks = [rng.permutation(np.flatnonzero(inverse == k))[:take[k]] for k in range(len(labels))]
    return np.concatenate(picks)


def train_test_split(x, y=None, test_size=0.25, random_state=None, stratify=None, shuffle=True):
    """Split x (and y) into random train and test subsets: returns ``x_train, x_test, y_train,
    y_test`` (``x_train, x_test`` without y), as scikit-learn does.

    test_size: a float in (0, 1) is the test fraction (the count is rounded up), an int the number of
    test samples. random_state: an int seed or a numpy Generator; None draws from cnnkit's generator,
    so ``cnnkit.utils.set_random_seed`` makes the split repeat. stratify: labels (usually y) whose
    class proportions both subsets keep. shuffle=False takes the last samples as the test set.
    """
    x = _as_array(x, "x")
    n = x.shape[0]
    arrays = [x]
    if y is not None:
        y = _as_array(y, "y")
        if y.shape[0] != n:
            raise ValueError(f"x and y have different numbers of samples: {n} and {y.shape[0]}")
        arrays.append(y)
    n_test = _test_count(test_size, n)
    if isinstance(random_state, np.random.Generator):
        rng = random_state
    elif random_state is None:
        rng = _random.generator()
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) and random_state >= 0:
        rng = np.random.default_rng(int(random_state))
    else:
        raise ValueError(f"random_state must be None, a non-negative int or a numpy Generator, "
                         f"received random_state={random_state!r}")
    if not shuffle:
        if stratify is not None:
            raise ValueError("stratified splitting needs shuffle=True")
        train, test = np.arange(n - n_test), np.arange(n - n_test, n)
    elif stratify is not None:
        stratify = _as_array(stratify, "stratify")
        if stratify.shape[0] != n:
            raise ValueError(f"stratify has {stratify.shape[0]} samples but x has {n}")
        test = rng.permutation(_stratified_test_indices(stratify, n_test, rng))
        mask = np.ones(n, dtype=bool)
        mask[test] = False
        train = rng.permutation(np.flatnonzero(mask))
    else:
        perm = rng.permutation(n)
        test, train = perm[:n_test], perm[n_test:]
    out = []
    for a in arrays:
        out += [a[train], a[test]]
    return tuple(out)
