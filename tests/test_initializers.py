"""Initializers: Keras' limits and fans, and the chunked uniform fill gives exactly the numbers of a
single float64 draw (so a seed means the same weights as before the fast path)."""

import math

import numpy as np
import pytest

from cnnkit import _random, initializers
from cnnkit.utils import set_random_seed


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 3, 5, 7), (1,), (0, 4), (4099,)])
def test_uniform_fill_matches_one_float64_draw(monkeypatch, dtype, shape):
    monkeypatch.setattr(initializers, "_FILL_CHUNK", 1000)  # several chunks, a ragged last one
    limit = math.sqrt(6.0 / sum(initializers.compute_fans(shape)))
    set_random_seed(123)
    got = initializers.GlorotUniform()(shape, dtype)
    set_random_seed(123)
    want = _random.generator().uniform(-limit, limit, shape).astype(dtype)
    assert got.dtype == np.dtype(dtype) and got.shape == shape
    np.testing.assert_array_equal(got, want)
    set_random_seed(7)
    got = initializers.RandomUniform(-0.3, 0.2)(shape, dtype)
    set_random_seed(7)
    np.testing.assert_array_equal(got, _random.generator().uniform(-0.3, 0.2, shape).astype(dtype))


def test_glorot_and_he_limits():
    set_random_seed(0)
    w = initializers.GlorotUniform()((3, 3, 16, 32), "float64")
    limit = math.sqrt(6.0 / (9 * 16 + 9 * 32))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    assert abs(w.mean()) < 0.05 * limit
    w = initializers.HeUniform()((200, 300), "float32")
    assert np.abs(w).max() <= math.sqrt(6.0 / 200) and np.abs(w).max() > 0.95 * math.sqrt(6.0 / 200)
    w = initializers.HeNormal()((400, 300), "float64")  # truncated at 2 sigma, sigma sqrt(2/400)
    assert np.abs(w).max() <= 2 * math.sqrt(2 / 400) / 0.87962566103423978 + 1e-12
    assert abs(w.std() - math.sqrt(2 / 400)) < 0.02 * math.sqrt(2 / 400)
