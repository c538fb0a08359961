"""Weight initializers with Keras' names and formulas (fans of an HWIO kernel count the window).

Values are drawn on the host from cnnkit's shared generator (``cnnkit.utils.set_random_seed``), in
float64 and then rounded to the weight's dtype, so a seed gives the same weights on every device.
"""

import math

import numpy as np

from . import _checks, _random
from ._registry import Configurable, Registry, Uninterpretable

__all__ = ["Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "GlorotUniform",
           "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform", "VarianceScaling", "get",
           "serialize"]


def compute_fans(shape):
    """(fan_in, fan_out) as Keras computes them: Dense (in, out); Conv (kh, kw, in, out) -> times kh*kw."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


_FILL_CHUNK = 1 << 20  # float64 values drawn at a time by _uniform_fill (8 MiB, stays in cache)


def _uniform_fill(low, high, shape, dtype):
    """The values ``generator().uniform(low, high, shape).astype(dtype)`` returns, bit for bit, drawn
    in chunks straight into the result: no full-size float64 temporary. (NumPy's uniform is
    ``low + (high - low) * next_double()``, one double per value in order, so chunks of the same
    stream give the same numbers.) Building VGG16's 138M weights takes a third of the time."""
    rng = _random.generator()
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    scale = high - low
    buf = np.empty(min(flat.size, _FILL_CHUNK), dtype=np.float64)
    for start in range(0, flat.size, _FILL_CHUNK):
        u = buf[:min(_FILL_CHUNK, flat.size - start)]
        rng.random(out=u)
        u *= scale
        u += low
        flat[start:start + u.size] = u
    return out


class Initializer(Configurable):
    """``init(shape, dtype)`` -> a NumPy array."""

    def __call__(self, shape, dtype="float32"):
        shape = tuple(int(s) for s in shape)
        fill = self._fill(shape, np.dtype(dtype))
        if fill is not None:
            return fill
        return np.asarray(self._draw(shape), dtype=np.float64).astype(dtype)

    def _draw(self, shape):
        raise NotImplementedError

    def _fill(self, shape, dtype):
        """The result written directly in dtype, or None to go through _draw (float64)."""
        return None


class Zeros(Initializer):
    def _draw(self, shape):
        return np.zeros(shape)


class Ones(Initializer):
    def _draw(self, shape):
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = float(value)

    def _draw(self, shape):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05):
        self.mean, self.stddev = float(mean), float(stddev)

    def _draw(self, shape):
        return _random.generator().normal(self.mean, self.stddev, shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05):
        self.minval, self.maxval = float(minval), float(maxval)

    def _draw(self, shape):
        return _random.generator().uniform(self.minval, self.maxval, shape)

    def _fill(self, shape, dtype):
        return _uniform_fill(self.minval, self.maxval, shape, dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


def _truncated_normal(shape, stddev):
    """Normal(0, stddev) redrawn outside two standard deviations (TensorFlow's truncated_normal)."""
    rng = _random.generator()
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return out * stddev


class VarianceScaling(Initializer):
    """Keras' VarianceScaling: values of variance ``scale / n``, where n is the kernel's fan_in,
    fan_out or their mean (``mode``), drawn from a normal truncated at two standard deviations
    ("truncated_normal", Keras' default; "normal" is the same), a plain normal ("untruncated_normal")
    or a uniform in +-sqrt(3 * scale / n) ("uniform"). ``VarianceScaling(1 / 3, "fan_in", "uniform")``
    is PyTorch's default for Conv2d and Linear weights, uniform in +-1 / sqrt(fan_in)."""

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal"):
        self.scale = _checks.number(scale, "scale", low=0, low_open=True)
        if mode not in self._MODES:
            _checks.refuse("mode", mode, " or ".join(map(repr, self._MODES)))
        distribution = "truncated_normal" if distribution == "normal" else distribution
        if distribution not in self._DISTRIBUTIONS:
            _checks.refuse("distribution", distribution, " or ".join(map(repr, self._DISTRIBUTIONS)))
        self.mode, self.distribution = mode, distribution

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}

    def _variance(self, shape):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        return self.scale / max(1.0, n)

    def _fill(self, shape, dtype):
        if self.distribution != "uniform":
            return None
        limit = math.sqrt(3.0 * self._variance(shape))
        return _uniform_fill(-limit, limit, shape, dtype)

    def _draw(self, shape):
        var = self._variance(shape)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return _random.generator().uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return _random.generator().normal(0.0, math.sqrt(var), shape)
        # 0.8796... is the standard deviation of a unit normal truncated at two standard deviations.
        return _truncated_normal(shape, math.sqrt(var) / 0.87962566103423978)


class _FixedVarianceScaling(VarianceScaling):
    """A VarianceScaling whose scale, mode and distribution the subclass fixes (no arguments)."""

    SCALE, MODE, DISTRIBUTION = 1.0, "fan_avg", "uniform"

    def __init__(self):
        super().__init__(self.SCALE, self.MODE, self.DISTRIBUTION)

    def get_config(self):
        return {}


class GlorotUniform(_FixedVarianceScaling):
    """Uniform in +-sqrt(6 / (fan_in + fan_out)); Keras' default kernel initializer."""


class GlorotNormal(_FixedVarianceScaling):
    DISTRIBUTION = "truncated_normal"


class HeNormal(_FixedVarianceScaling):
    """Truncated normal with stddev sqrt(2 / fan_in)."""
    SCALE, MODE, DISTRIBUTION = 2.0, "fan_in", "truncated_normal"


class HeUniform(_FixedVarianceScaling):
    """Uniform in +-sqrt(6 / fan_in)."""
    SCALE, MODE = 2.0, "fan_in"


class LecunNormal(_FixedVarianceScaling):
    """Truncated normal with stddev sqrt(1 / fan_in)."""
    MODE, DISTRIBUTION = "fan_in", "truncated_normal"


class LecunUniform(_FixedVarianceScaling):
    """Uniform in +-sqrt(3 / fan_in)."""
    MODE = "fan_in"


# Names: Keras' snake-case class names ("glorot_uniform"), in any case, and the class names.
_REGISTRY = Registry("initializer", Initializer, (Zeros, Ones, Constant, RandomNormal, RandomUniform,
                                                  GlorotUniform, GlorotNormal, HeNormal, HeUniform, LecunNormal,
                                                  LecunUniform, VarianceScaling), fold_case=True)
serialize = _REGISTRY.serialize


def get(identifier):
    """An Initializer from a name ("glorot_uniform", "he_normal", ...), a serialized dict, an instance
    or a callable(shape, dtype) -> array."""
    return _REGISTRY.get(identifier, _callable)


def _callable(fn):
    if callable(fn):
        return fn
    raise Uninterpretable(f"could not interpret initializer {fn!r:.200}; pass a name such as 'glorot_uniform' "
                          "or an Initializer")
