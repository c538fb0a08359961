"""Shared by the examples: the quick switch (CNNKIT_EXAMPLE_QUICK=1 shrinks every example so CI can
run them all) and a small synthetic image-classification problem."""

import os

import numpy as np

QUICK = os.environ.get("CNNKIT_EXAMPLE_QUICK") == "1"


def synthetic_images(n, classes=10, size=28, seed=0):
    """n grayscale images (n, size, size, 1) in [0, 1): each class is a bright bar at its own
    position plus noise, so a small CNN can learn it; labels (n,) int64."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.random((n, size, size, 1), dtype=np.float32) * 0.5
    rows = np.linspace(2, size - 4, classes).astype(int)
    for c, r in enumerate(rows):
        x[y == c, r:r + 3, 4:size - 4, 0] += 0.5
    return x, y
