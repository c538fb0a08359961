"""Where models run: ``cnnkit.set_device("gpu")``, ``CNNKIT_DEVICE=gpu`` or ``model.to("gpu")``.

The device decides which array module holds a model's weights (NumPy on "cpu", CuPy on "gpu");
``cnnkit.ops`` then dispatches on the array type. Asking for the GPU where there is none (no CuPy, no
CUDA device, or a build without cnnkit._cuda) is one clear RuntimeError.
"""

import os

import numpy as np

from .ops import _backend

__all__ = ["set_device", "get_device", "gpu_available"]

_ALIASES = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "cuda:0": "gpu", "gpu:0": "gpu"}
_state = {"device": None}


def canonical(device):
    """'cpu' or 'gpu' for a device name; ValueError for anything else."""
    if not isinstance(device, str) or device.strip().lower() not in _ALIASES:
        raise ValueError(f'device must be "cpu" or "gpu" (or "cuda"), received device={device!r}')
    return _ALIASES[device.strip().lower()]


def gpu_available():
    """True when CuPy, a CUDA device and cnnkit's CUDA kernels are all present."""
    return _backend.cuda_status()[0]


def require(device):
    """The canonical device name, after checking that it can be used here."""
    device = canonical(device)
    if device == "gpu":
        ok, why = _backend.cuda_status()
        if not ok:
            raise RuntimeError(f"the GPU was requested but cannot be used: {why}")
    return device


def set_device(device):
    """Run models built from now on (and fit/evaluate/predict of models not moved explicitly) on
    "cpu" or "gpu"."""
    _state["device"] = require(device)


def get_device():
    """The current default device: set_device's choice, else CNNKIT_DEVICE, else "cpu"."""
    if _state["device"] is None:
        env = os.environ.get("CNNKIT_DEVICE", "").strip()
        _state["device"] = require(env) if env else "cpu"
    return _state["device"]


def array_module(device):
    if canonical(device) == "gpu":
        import cupy

        return cupy
    return np


def device_of(array):
    return "gpu" if _backend._is_cupy(array) else "cpu"


def to_device(array, device):
    """array on device (the same object when it is already there)."""
    if array is None:
        return None
    if canonical(device) == "gpu":
        import cupy

        return cupy.asarray(array)
    return _backend.to_host(array)
