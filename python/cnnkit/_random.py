"""The process-wide random state behind weight initialization, shuffling and dropout seeds.

``cnnkit.utils.set_random_seed(s)`` reseeds it; everything random in cnnkit draws from ``generator()``
(a NumPy Generator on the host, so the stream is the same whichever device runs the model), which
makes two runs with the same seed repeat exactly.
"""

import numpy as np

_state = {"rng": np.random.default_rng()}


def set_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, received seed={seed!r}")
    _state["rng"] = np.random.default_rng(int(seed))


def generator():
    """The shared numpy.random.Generator."""
    return _state["rng"]


def next_seed():
    """A fresh 63-bit seed for a counter-based kernel RNG (dropout masks, stochastic pooling)."""
    return int(_state["rng"].integers(0, 2**63 - 1))
