"""Shared fixtures: the array-module parameter (NumPy always, CuPy under the ``gpu`` mark), a fresh
random generator per test, and the seeds behind every test's randomness.

Every test draws from seeds derived from one session seed and the test's id: the ``rng`` fixture,
and (an autouse fixture) cnnkit's generator (weight initialization, shuffling, dropout), NumPy's
global generator and Python's ``random``, which are reseeded before each test. The session seed is
in the header, and a failing test's report carries a "cnnkit test seed" section with the command
that replays it: CNNKIT_TEST_SEED=<seed> python -m pytest '<test id>'. Skips are summarised by
reason at the end of the run, one line per reason with its count, instead of one line per test."""

import collections
import os
import zlib

import numpy as np
import pytest

_SEED = int(os.environ.get("CNNKIT_TEST_SEED", np.random.SeedSequence().entropy % 2**32))


def pytest_report_header(config):
    return f"cnnkit test seed: {_SEED} (replay with CNNKIT_TEST_SEED={_SEED})"


def test_seed(nodeid):
    """The seed of one test: a function of the session seed and the test's id only, so that a test
    run alone with the same CNNKIT_TEST_SEED draws what it drew in the full run."""
    return int(np.random.SeedSequence([_SEED, zlib.crc32(nodeid.encode())]).generate_state(1)[0])


test_seed.__test__ = False  # a helper, not a test for pytest to collect


@pytest.fixture(autouse=True)
def _seed_everything(request):
    """cnnkit's generator, NumPy's global one and Python's random start each test from its seed."""
    from cnnkit.utils import set_random_seed

    set_random_seed(test_seed(request.node.nodeid))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(("cnnkit test seed", (
            f"session seed {_SEED}, this test's seed {test_seed(item.nodeid)}; replay with\n"
            f"CNNKIT_TEST_SEED={_SEED} python -m pytest '{item.nodeid}'")))


def pytest_terminal_summary(terminalreporter):
    """Skips grouped by reason, most frequent first: one line each instead of one per test (143 GPU
    skips buried the failures on a machine without CuPy)."""
    reasons = collections.Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("skipped, by reason")
        for reason, count in reasons.most_common():
            terminalreporter.line(f"{count:5d}  {reason}")


def _gpu_available():
    try:
        import cupy
        from cnnkit import _cuda  # noqa: F401

        available = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False
    if available and os.environ.get("CNNKIT_TEST_CUPY_POOL") == "0":
        # every allocation its own cudaMalloc, so that compute-sanitizer sees an access past an
        # array's end even where CuPy's pool would have put it inside a larger block
        cupy.cuda.set_allocator(None)
        cupy.cuda.set_pinned_memory_allocator(None)
    return available


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
    """A generator seeded from the session seed and the test's id: fresh data each session,
    reproducible with CNNKIT_TEST_SEED. Its stream is not the one cnnkit's generator was given
    (the extra 1), so test data and initial weights are not the same numbers."""
    return np.random.default_rng([test_seed(request.node.nodeid), 1])


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
