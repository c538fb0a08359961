"""``python -m cnnkit demo``: trains on the real Fashion-MNIST (CI installs Debian's
dataset-fashion-mnist), prints the test accuracy and writes history.png and a model that loads and
reproduces the printed accuracy."""

import re
import subprocess
import sys

import numpy as np
import pytest

from cnnkit import datasets, models


@pytest.fixture(scope="module")
def fashion():
    try:
        return datasets.fashion_mnist.load_data()
    except (OSError, ValueError, RuntimeError) as exc:
        pytest.skip(f"Fashion-MNIST is not available here: {exc}")


@pytest.mark.parametrize("model, samples", [("tutorial", 2000), ("bn", 300)])
def test_demo_trains_reports_and_writes_its_files(fashion, tmp_path, model, samples):
    pytest.importorskip("matplotlib")
    proc = subprocess.run([sys.executable, "-m", "cnnkit", "demo", "--epochs", "1", "--model", model, "--samples",
                           str(samples), "--device", "cpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert f"Fashion-MNIST: {samples} training and {samples} test images" in out and "Epoch 1/1" in out
    acc = float(re.search(r"test accuracy (\d\.\d+)", out).group(1))
    with open(tmp_path / "history.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # the saved model gives the printed accuracy on the same test images
    (_, _), (x_test, y_test) = fashion
    x = (x_test[:samples].astype(np.float32) / 255.0)[..., None]
    saved = models.load_model(tmp_path / "fashion_mnist.cnnkit")
    got = float(np.mean(saved.predict(x, verbose=0).argmax(axis=1) == y_test[:samples]))
    assert abs(got - acc) < 1e-4
    if model == "tutorial":  # 2,000 real images, one epoch: far above chance (10%)
        assert acc > 0.6


def test_demo_refuses_a_bad_model_name():
    proc = subprocess.run([sys.executable, "-m", "cnnkit", "demo", "--model", "vgg"], capture_output=True, text=True)
    assert proc.returncode != 0 and "invalid choice" in proc.stderr
