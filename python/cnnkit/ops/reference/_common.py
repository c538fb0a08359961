"""Helpers of the reference ops, derived from the definitions and independent of cnnkit.ops."""

import numpy as np


def as_pair(v):
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def padding_amounts(padding, size, window, stride, dilation=1):
    """(before, after) padding of one spatial axis, found by search rather than by formula:
    "same" is the least total padding giving ceil(size / stride) outputs, split with the extra pixel
    after (TensorFlow's rule)."""
    span = (window - 1) * dilation + 1
    if isinstance(padding, str) and padding.lower() == "valid":
        return 0, 0
    if isinstance(padding, str) and padding.lower() == "same":
        wanted = (size + stride - 1) // stride

        def enough(total):  # does a padding of `total` pixels give `wanted` outputs? (monotone in total)
            return size + total >= span and (size + total - span) // stride + 1 >= wanted

        # bisection, not a step-by-step search: a dilation of 2**31 needs a padding of billions
        lo, hi = 0, span + stride
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if enough(mid) else (mid + 1, hi)
        return lo // 2, lo - lo // 2
    raise ValueError(padding)


def pad_spec(padding, hw, window, strides, dilation=(1, 1)):
    """((top, bottom), (left, right)) for any padding spec cnnkit accepts."""
    if isinstance(padding, str):
        return tuple(padding_amounts(padding, hw[i], window[i], strides[i], dilation[i]) for i in range(2))
    if isinstance(padding, (int, np.integer)):
        return (int(padding), int(padding)), (int(padding), int(padding))
    a, b = padding  # (ph, pw), ((top, bottom), (left, right)), or a mix: each axis an int or a pair
    return as_pair(a), as_pair(b)


def uniform01(seed, index):
    """The counter-based uniform draws of csrc/common.h (splitmix64), in NumPy uint64 arithmetic:
    a float64 in [0, 1) for each element of the integer array ``index``."""
    with np.errstate(over="ignore"):
        gamma = np.uint64(0x9E3779B97F4A7C15)

        def mix(z):
            z = z ^ (z >> np.uint64(30))
            z = z * np.uint64(0xBF58476D1CE4E5B9)
            z = z ^ (z >> np.uint64(27))
            z = z * np.uint64(0x94D049BB133111EB)
            return z ^ (z >> np.uint64(31))

        key = mix(np.uint64(int(seed) % 2**64) + gamma)
        z = mix(key + gamma * (np.asarray(index, dtype=np.uint64) + np.uint64(1)))
        return (z >> np.uint64(11)).astype(np.float64) / 2.0**53
