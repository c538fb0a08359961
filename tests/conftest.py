"""Shared fixtures: the array-module parameter (NumPy always, CuPy under the ``gpu`` mark) and a
fresh random generator per test whose seed is printed in the header so any failure can be replayed
with CNNKIT_TEST_SEED=<seed>."""

import os

import numpy as np
import pytest

_SEED = int(os.environ.get("CNNKIT_TEST_SEED", np.random.SeedSequence().entropy % 2**32))


def pytest_report_header(config):
    return f"cnnkit test seed: {_SEED} (replay with CNNKIT_TEST_SEED={_SEED})"


def _gpu_available():
    try:
        import cupy
        from cnnkit import _cuda  # noqa: F401

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module a test body runs on: one body checks the CPU and (under -m gpu) the GPU."""
    if request.param == "numpy":
        return np
    if not _gpu_available():
        pytest.skip("needs CuPy, cnnkit._cuda and an NVIDIA GPU")
    import cupy

    return cupy


@pytest.fixture
def cupy_xp():
    """CuPy, for GPU-only tests (mark them ``gpu``); skips where CuPy, cnnkit._cuda or a GPU is missing."""
    if not _gpu_available():
        pytest.skip("needs CuPy, cnnkit._cuda and an NVIDIA GPU")
    import cupy

    return cupy


@pytest.fixture
def rng(request):
    """A generator seeded from the session seed and the test's name: fresh data each session,
    reproducible with CNNKIT_TEST_SEED."""
    name_hash = sum(ord(ch) * (i + 1) for i, ch in enumerate(request.node.nodeid)) % 2**32
    return np.random.default_rng([_SEED, name_hash])


def _imports_torch(item):
    fn = getattr(item, "function", None)
    code = getattr(fn, "__code__", None)
    return code is not None and "torch" in code.co_consts


def pytest_collection_modifyitems(config, items):
    """Run the PyTorch cross-checks last. Once torch is imported its own OpenMP runtime shares the
    process with cnnkit's, and on 2 cores every later cnnkit kernel slows down many times over
    (the whole suite ran 5x longer); the cross-checks themselves are unaffected by the order."""
    items.sort(key=_imports_torch)  # stable: the order within each group is kept


# Hypothesis profiles for the property-based tests (tests/test_fuzz_*.py). "ci", the default, keeps
# the whole fuzz suite to well under a minute on 2 cores; `--hypothesis-profile=long` runs at least
# 10,000 examples per op (run it under `nice`, it takes a while). No example database: nothing is
# written into the checkout, and a failure prints the example and the seed to replay it with.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the fuzz tests skip themselves without hypothesis
    pass
else:
    _common = dict(deadline=None, database=None, print_blob=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.filter_too_much])
    settings.register_profile("ci", max_examples=150, **_common)
    settings.register_profile("long", max_examples=10_000, **_common)
    settings.load_profile("ci")
