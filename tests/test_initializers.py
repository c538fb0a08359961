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


@pytest.mark.parametrize("mode, fan", [("fan_in", 3 * 3 * 16), ("fan_out", 3 * 3 * 32), ("fan_avg", 3 * 3 * 24)])
def test_variance_scaling_uniform_limit_and_spread(mode, fan):
    shape = (3, 3, 16, 32)
    w = initializers.VarianceScaling(1.0 / 3.0, mode, "uniform")(shape, "float64")
    limit = math.sqrt(1.0 / fan)  # sqrt(3 * scale / n) with scale 1/3: PyTorch's Conv2d default in fan_in mode
    assert w.shape == shape and np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.95 * limit and abs(w.var() - limit ** 2 / 3) < 0.1 * limit ** 2 / 3


@pytest.mark.parametrize("distribution", ["truncated_normal", "normal", "untruncated_normal"])
def test_variance_scaling_normal_variance(distribution):
    w = initializers.VarianceScaling(2.0, "fan_in", distribution)((400, 300), "float64")
    assert abs(w.std() - math.sqrt(2.0 / 400)) < 0.03 * math.sqrt(2.0 / 400)
    if distribution != "untruncated_normal":  # redrawn beyond two standard deviations of the untruncated normal
        assert np.abs(w).max() <= 2 * math.sqrt(2.0 / 400) / 0.87962566103423978


def test_fixed_variance_scalings_are_variance_scaling_with_keras_arguments():
    cases = {"glorot_uniform": (1.0, "fan_avg", "uniform"), "he_normal": (2.0, "fan_in", "truncated_normal"),
             "lecun_uniform": (1.0, "fan_in", "uniform"), "lecun_normal": (1.0, "fan_in", "truncated_normal")}
    for name, args in cases.items():
        set_random_seed(3)
        a = initializers.get(name)((5, 5, 7, 11))
        set_random_seed(3)
        b = initializers.VarianceScaling(*args)((5, 5, 7, 11))
        np.testing.assert_array_equal(a, b)


def test_variance_scaling_round_trips_and_refuses_bad_arguments():
    init = initializers.VarianceScaling(0.5, "fan_out", "uniform")
    again = initializers.get(initializers.serialize(init))
    assert type(again) is initializers.VarianceScaling and again.get_config() == init.get_config()
    assert initializers.serialize(initializers.get("lecun_uniform")) == {"class_name": "LecunUniform", "config": {}}
    for kwargs, word in [({"scale": 0}, "scale"), ({"scale": float("nan")}, "scale"), ({"mode": "fan"}, "mode"),
                         ({"distribution": "gamma"}, "distribution")]:
        with pytest.raises(ValueError, match=word):
            initializers.VarianceScaling(**kwargs)
