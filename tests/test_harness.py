"""The test suite's own machinery (tests/conftest.py): every test's seeds are printed when it fails
and replayed by CNNKIT_TEST_SEED, and skips are summarised by reason. Each check runs pytest in a
subprocess on a small test file next to a copy of the real conftest."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

HERE = Path(__file__).parent
PYTEST_OPTIONS = tomllib.loads((HERE.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]

SEEDED = '''
import random
import numpy as np
from cnnkit import _random

def test_draws(rng):
    print("DRAWS", rng.random(), np.random.random(), random.random(), _random.generator().random())
    assert False
'''


def run_pytest(tmp_path, body, seed=None):
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    # the suite's own pytest options: addopts (-r flags), markers, warnings as errors
    lines = [f"{k} = {v!r}" for k, v in PYTEST_OPTIONS.items() if k != "testpaths"]
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n" + "\n".join(lines) + "\n")
    (tmp_path / "test_it.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "CNNKIT_TEST_SEED"}
    if seed is not None:
        env["CNNKIT_TEST_SEED"] = str(seed)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_it.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300).stdout


def draws(out):
    return re.search(r"^DRAWS (.*)$", out, re.M).group(1)


def test_a_failure_names_its_seed_and_the_seed_replays_every_generator(tmp_path):
    out = run_pytest(tmp_path, SEEDED, seed=12345)
    assert "cnnkit test seed: 12345" in out  # the header
    assert "cnnkit test seed" in out.split("FAILURES")[1]  # the failing test's own section
    assert "CNNKIT_TEST_SEED=12345 python -m pytest 'test_it.py::test_draws'" in out
    # the rng fixture, NumPy's and Python's global generators and cnnkit's all repeat with the seed,
    # and all four draw different numbers
    values = draws(out).split()
    assert len(set(values)) == 4
    assert draws(run_pytest(tmp_path, SEEDED, seed=12345)) == draws(out)
    assert draws(run_pytest(tmp_path, SEEDED, seed=54321)) != draws(out)


def test_a_run_without_the_variable_draws_a_fresh_seed_and_prints_it(tmp_path):
    out = run_pytest(tmp_path, SEEDED)
    seed = re.search(r"cnnkit test seed: (\d+)", out).group(1)
    assert draws(run_pytest(tmp_path, SEEDED, seed=seed)) == draws(out)


def test_skips_are_summarised_by_reason_with_counts(tmp_path):
    body = '''
import pytest

@pytest.mark.parametrize("i", range(7))
def test_gpu(i):
    pytest.skip("needs a GPU")

def test_other():
    pytest.skip("needs something else")
'''
    out = run_pytest(tmp_path, body)
    assert re.search(r"^\s+7  needs a GPU$", out, re.M) and re.search(r"^\s+1  needs something else$", out, re.M)
    assert "SKIPPED [" not in out  # no line per skipping test
