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
