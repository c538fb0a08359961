"""Assertions shared by the tests. Tolerances, and why:

- float32 native vs a float64 reference: 1e-5 relative to the magnitude of the reference. Products
  are accumulated in float32 (by OpenBLAS or our kernels), whose rounding grows with about
  sqrt(accumulation length) * 6e-8; for the reduction lengths we test (<= a few thousand) that stays
  well under 1e-5.
- float64 native vs float64 reference: 1e-12, the same argument with 1.1e-16 unit roundoff.
- gradients vs central finite differences in float64: 1e-6 relative. The step h=1e-6 gives a
  truncation error ~h^2 * |f'''| and a cancellation error ~1e-16 / h, both far below 1e-6.
"""

import numpy as np

from cnnkit import demo
from cnnkit.ops import _backend, to_host

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def to_numpy(a):
    return None if a is None else to_host(a)


def rel_error(actual, expected):
    """max |actual - expected| / max |expected| (absolute error when expected is all zeros).
    NaNs must sit at the same places in both; infinities must match exactly."""
    a = to_numpy(actual).astype(np.float64)
    e = to_numpy(expected).astype(np.float64)
    assert a.shape == e.shape, f"shape {a.shape} != expected {e.shape}"
    if a.size == 0:
        return 0.0
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    assert np.array_equal(nan_a, nan_e), "NaNs differ in position"
    inf_e = np.isinf(e)
    assert np.array_equal(a[inf_e], e[inf_e]), "infinities differ"
    ok = ~(nan_e | inf_e)
    if not ok.any():
        return 0.0
    a, e = a[ok], e[ok]
    scale = np.max(np.abs(e))
    err = np.max(np.abs(a - e))
    return float(err / scale) if scale > 0 else float(err)


def assert_close(actual, expected, dtype=None, tol=None, what=""):
    """actual agrees with expected within the tolerance of dtype (default: actual's dtype)."""
    if tol is None:
        dt = np.dtype(dtype) if dtype is not None else np.dtype(to_numpy(actual).dtype)
        tol = TOL[dt]
    err = rel_error(actual, expected)
    assert err <= tol, f"{what} relative error {err:.3e} > {tol:.0e}"


def assert_sums_close(actual, expected, terms, dtype, what=""):
    """Sums of random terms (a convolution's dw and db, a norm's dgamma) against float64: each
    element's error measured against the sum of its terms' sizes (``terms``), since a sum that
    cancels to almost 0 (db of a (1, 7, 5, 3) input with one output channel: 1.8e-5 relative to
    itself with seed 584614078) carries the rounding of its terms, not of its value."""
    err = np.max(np.abs(to_numpy(actual).astype(np.float64) - expected) / np.maximum(terms, 1e-300), initial=0.0)
    assert err <= TOL[np.dtype(dtype)], f"{what}: error {err:.2e} of its terms' size"


def numerical_grad(f, x, dy, h=1e-6):
    """d/dx of sum(f(x) * dy) by central differences, in float64. f maps an array to an array."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat = x.reshape(-1)
    gflat = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = np.sum(np.asarray(f(x), dtype=np.float64) * dy)
        flat[i] = old - h
        down = np.sum(np.asarray(f(x), dtype=np.float64) * dy)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


def assert_grad(analytic, f, x, dy, tol=1e-6, what=""):
    """The analytic gradient of sum(f(x) * dy) w.r.t. x matches central finite differences."""
    num = numerical_grad(f, x, dy)
    err = rel_error(analytic, num)
    assert err <= tol, f"{what} gradient relative error {err:.3e} > {tol:.0e}"


def assert_raises_naming(exc_type, argname, fn, *args, **kwargs):
    """fn(*args, **kwargs) raises exc_type with a message that names argname."""
    import pytest

    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert argname in str(info.value), f"message does not name {argname!r}: {info.value}"
    return info.value


def tutorial_model():
    """The CNN of the Keras/TensorFlow tutorial: Conv2D 32 - MaxPooling2D - Flatten - Dense 10, on
    28x28x1 images (54,410 parameters), as ``python -m cnnkit demo`` builds it."""
    return demo.build("tutorial")


def on_thread_counts(compute, counts=(1, 2)):
    """[compute() with the CPU kernels on n OpenMP threads, for each n in counts]; the thread count is
    restored afterwards. Results that must not depend on it are compared bit for bit."""
    lib = _backend._cpu().lib
    old = lib.get_num_threads()
    try:
        results = []
        for n in counts:
            lib.set_num_threads(n)
            results.append(compute())
        return results
    finally:
        lib.set_num_threads(old)
