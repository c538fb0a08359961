"""Dispatch shared by every op in cnnkit.ops.

``backend(*arrays)`` picks the kernel module from the arrays' type (NumPy -> ``cnnkit._core``; CuPy ->
``cnnkit._cuda``, every call run on CuPy's current stream) and refuses mixtures. Arrays from other
GPU libraries (anything with ``__dlpack__`` on a CUDA device, such as a PyTorch CUDA tensor) are
viewed as CuPy arrays, zero-copy, by ``as_array``/``check_float``. The argument checks themselves
(ValueError/TypeError naming the argument and the shapes; ``geometry``, which turns Keras-style
window arguments into the ``Geometry`` named tuple the kernels take) are in ``_op_args``, which
cnnkit.ops.reference calls too, so that both refuse the same calls with the same messages.
``matmul`` is the one GEMM entry point (NumPy/OpenBLAS or CuPy/cuBLAS, TF32 on the GPU only when
``cnnkit.config.allow_tf32``). This module is the only place that imports the native modules, and
CuPy is imported only when a CuPy array (or a GPU request) shows up, never at ``import cnnkit``.
"""

import numpy as np

from ..config import config
# The argument checks live in _op_args, shared with cnnkit.ops.reference; geometry and
# resolve_padding are re-exported for the tests that know them from here.
from ._op_args import array_kind, float_array, geometry, is_cupy as _is_cupy  # noqa: F401
from ._op_args import is_gpu_dlpack as _is_gpu_dlpack, resolve_padding  # noqa: F401


class Backend:
    """An array module (``xp``) and the native kernel module that serves it (``lib``)."""

    __slots__ = ("name", "xp", "lib")

    def __init__(self, name, xp, lib):
        self.name, self.xp, self.lib = name, xp, lib

    def __repr__(self):
        return f"Backend({self.name})"


_cpu_backend = None
# Whether idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) in the runtime _core was loaded with.
threads_sleep = True


def _cpu():
    global _cpu_backend
    if _cpu_backend is None:
        _cpu_backend = Backend("cpu", np, _load_core())
        _tune_malloc()
    return _cpu_backend


# What _tune_malloc set (None: left glibc's defaults), for benchmarks and `python -m cnnkit info`.
malloc_tuning = None
_MMAP_THRESHOLD = 256 * 2**20
_TRIM_THRESHOLD = 512 * 2**20


def _tune_malloc():
    """Keep freed activation-sized blocks in the heap instead of handing them back to the kernel.

    Every op returns a fresh array. glibc serves blocks above its mmap threshold (128 KiB, rising
    to at most 32 MiB as blocks are freed) with mmap and unmaps them on free, and trims the top of
    the heap past 128 KiB of free space; either way the next step's arrays page-fault every page
    again, and on 2 cores those faults cost more than the kernels (training the tutorial model:
    4,500 -> 6,900 images/s at batch 128). Fixed thresholds (256 MiB for mmap, 512 MiB for trim)
    let the heap keep what a training step freed for the next step, as PyTorch's and CuPy's caching
    allocators do on the GPU; memory above that still goes back to the system. glibc only;
    CNNKIT_MALLOC_TUNING=0 leaves malloc alone."""
    global malloc_tuning
    import os
    import platform

    if os.environ.get("CNNKIT_MALLOC_TUNING", "1").strip() == "0" or platform.libc_ver()[0] != "glibc":
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        ok = libc.mallopt(m_mmap_threshold, _MMAP_THRESHOLD) and libc.mallopt(m_trim_threshold, _TRIM_THRESHOLD)
    except (OSError, AttributeError):
        return
    if ok:
        malloc_tuning = {"mmap_threshold": _MMAP_THRESHOLD, "trim_threshold": _TRIM_THRESHOLD}


def _load_core():
    """Import cnnkit._core with OMP_WAIT_POLICY=PASSIVE unless the user chose a policy.

    libgomp reads the variable once, when it is loaded (here, with _core). OpenMP threads that spin
    after a region fight OpenBLAS's threads for the cores before every GEMM that follows one of our
    kernels (on 2 cores: conv2d forward+backward 1.3x PyTorch's time spinning, about 1x sleeping, and
    the test suite 48 s -> 10 s). The variable is restored afterwards so that libraries loaded later
    keep their own defaults; a process shares one libgomp, so if another library (PyTorch) loaded it
    first, its policy applies to cnnkit too."""
    import os

    global threads_sleep
    chosen = "OMP_WAIT_POLICY" in os.environ
    threads_sleep = os.environ.get("OMP_WAIT_POLICY", "PASSIVE").strip().upper() == "PASSIVE"
    if not chosen:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from .. import _core
    finally:
        if not chosen:
            del os.environ["OMP_WAIT_POLICY"]
    return _core


def as_array(a):
    """a itself for NumPy/CuPy arrays (and anything else, left to the checks); a GPU DLPack
    exporter (a PyTorch CUDA tensor...) viewed as a CuPy array without a copy, so results written
    through the view land in the original."""
    if a is None or isinstance(a, np.ndarray) or _is_cupy(a) or not _is_gpu_dlpack(a):
        return a
    _gpu()  # one clear error when the GPU side is unusable here
    import cupy

    return cupy.from_dlpack(a)


class _CudaLib:
    """cnnkit._cuda with every function called on CuPy's current stream (``stream=`` is the
    cudaStream_t of cupy.cuda.get_current_stream(), as an integer). Wrappers are made once per name."""

    def __init__(self, module, cupy):
        self._module = module
        self._current_stream = cupy.cuda.get_current_stream

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        current_stream = self._current_stream

        def on_current_stream(*args, **kwargs):
            return fn(*args, stream=current_stream().ptr, **kwargs)

        on_current_stream.__name__ = name
        on_current_stream.__doc__ = fn.__doc__
        setattr(self, name, on_current_stream)
        return on_current_stream


_gpu_backend = None


def _gpu():
    """The CuPy backend, or one RuntimeError saying what is missing (CuPy, a device, cnnkit._cuda)."""
    global _gpu_backend
    if _gpu_backend is None:
        ok, why = cuda_status()
        if not ok:
            raise RuntimeError(f"cnnkit was given GPU arrays but cannot run them: {why}")
        import cupy

        from .. import _cuda

        # kernel scratch from CuPy's pool, as the arrays: one cache, and CuPy's OutOfMemoryError
        # (after it has freed its cache) instead of a failing cudaMallocAsync beside it
        _cuda.set_scratch_allocator(cupy.cuda.alloc)
        _gpu_backend = Backend("gpu", cupy, _CudaLib(_cuda, cupy))
    return _gpu_backend


def backend(*arrays):
    """The backend for these arrays (None entries are skipped); TypeError on a NumPy/CuPy mixture,
    ValueError for CuPy arrays that are not on the current device."""
    if array_kind(*arrays) != "cupy":
        return _cpu()
    be = _gpu()
    import cupy

    current = cupy.cuda.runtime.getDevice()
    problem = device_mismatch([getattr(getattr(a, "device", None), "id", current) for a in arrays if a is not None],
                              current)
    if problem:
        raise ValueError(problem)
    return be


def device_mismatch(device_ids, current):
    """Why arrays on these CUDA devices cannot run on the current one, or None when all are on it.
    The kernels launch on the current device (CuPy's, as CuPy's own functions do); another device's
    pointers there would be an illegal address on a multi-GPU machine, so they are refused instead."""
    others = sorted({d for d in device_ids if d != current})
    if not others:
        return None
    on = ", ".join(f"GPU {d}" for d in others)
    return (f"arrays on {on} were given while the current device is GPU {current}: run the call under "
            f"`with cupy.cuda.Device({others[0]}):`, or move the arrays to GPU {current} (cupy.asarray inside "
            f"`with cupy.cuda.Device({current}):`)")


# CuPy's cuBLAS compute-type switch for float32 GEMMs (cupy/_core/_routines_linalg.pyx): the values
# of its COMPUTE_TYPE_DEFAULT (full FP32) and COMPUTE_TYPE_TF32 enums.
_CUPY_COMPUTE_DEFAULT, _CUPY_COMPUTE_TF32 = 1, 7


def _cupy_linalg():
    from cupy._core import _routines_linalg

    return _routines_linalg


def matmul(be, a, b, out=None):
    """a @ b through the backend's matmul (OpenBLAS / cuBLAS), into out when given.

    On the GPU a float32 GEMM uses TF32 tensor cores only when cnnkit.config.allow_tf32 is True
    (like PyTorch's torch.backends.cuda.matmul.allow_tf32); the default is full FP32. CuPy keeps
    that choice as a process-wide compute type (CUPY_TF32=1 turns TF32 on for all of CuPy); it is
    switched for this GEMM only and restored afterwards, so the user's own CuPy code keeps its own."""
    kwargs = {} if out is None else {"out": out}
    if be.name != "gpu" or a.dtype != np.float32:
        return be.xp.matmul(a, b, **kwargs)
    linalg = _cupy_linalg()
    if config.allow_tf32:
        want = getattr(linalg, "COMPUTE_TYPE_TF32", _CUPY_COMPUTE_TF32)
    else:
        want = getattr(linalg, "COMPUTE_TYPE_DEFAULT", _CUPY_COMPUTE_DEFAULT)
    before = linalg.get_compute_type(np.float32)
    if before == want:
        return be.xp.matmul(a, b, **kwargs)
    linalg.set_compute_type(np.float32, want)
    try:
        return be.xp.matmul(a, b, **kwargs)
    finally:
        linalg.set_compute_type(np.float32, before)


def get_array_module(*arrays):
    """numpy or cupy, whichever module the arrays belong to (numpy when none is a CuPy array).

    Layers use it for the structural work that needs no kernel (reshape, concatenate, pad)."""
    for a in arrays:
        if a is not None and _is_cupy(a):
            import cupy

            return cupy
    return np


def cupy_wheel(cuda_runtime_version):
    """The CuPy wheel built for a CUDA runtime version as cudaRuntimeGetVersion gives it (13000 ->
    "cupy-cuda13x"; CuPy ships one wheel per major version from CUDA 11 on)."""
    major, minor = cuda_runtime_version // 1000, cuda_runtime_version % 1000 // 10
    return f"cupy-cuda{major}x" if major >= 11 else f"cupy-cuda{major}{minor}"


# The oldest NVIDIA driver branch of each CUDA major version (CUDA's minor version compatibility: a
# driver of that branch runs every runtime of the same major version).
_MIN_DRIVER = {11: "R450", 12: "R525", 13: "R580"}


def _cuda_version_str(v):
    return f"{v // 1000}.{v % 1000 // 10}"


def driver_problem(driver_version, runtime_version):
    """Why a driver supporting CUDA ``driver_version`` cannot run kernels built with the CUDA
    ``runtime_version`` runtime (both as cudaDriverGetVersion/cudaRuntimeGetVersion give them, 13000
    for 13.0), or None when it can: it needs a driver of the runtime's major version or newer."""
    need = _MIN_DRIVER.get(runtime_version // 1000, "newer")
    if driver_version <= 0:
        return (f"no NVIDIA driver was found; cnnkit's CUDA kernels use the CUDA "
                f"{_cuda_version_str(runtime_version)} runtime, which needs driver {need} or newer")
    if driver_version // 1000 < runtime_version // 1000:
        return (f"the NVIDIA driver supports CUDA {_cuda_version_str(driver_version)} only, and cnnkit's CUDA kernels "
                f"use the CUDA {_cuda_version_str(runtime_version)} runtime: install driver {need} or newer, or "
                f"reinstall cnnkit with a CUDA {driver_version // 1000} toolkit's nvcc on PATH")
    return None


def cuda_status():
    """(available, reason): whether CuPy arrays can run here, and if not, why not and what to do.

    Checked in the order a fix has to follow: cnnkit's CUDA kernels (cnnkit._cuda, present when
    nvcc was found at install time), then CuPy (the wheel matching the CUDA runtime cnnkit._cuda was
    built with), then a driver new enough for that runtime (without it every launch would fail while
    CuPy still counts the devices), then a device."""
    try:
        from .. import _cuda
    except ImportError:
        return False, ("this cnnkit build has no CUDA kernels: cnnkit._cuda was not built (nvcc was not on "
                       "PATH when cnnkit was installed, or it was built with CNNKIT_CUDA=OFF); reinstall "
                       "with nvcc on PATH to build them")
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy that fails to load its CUDA libraries
        version = _cuda.build_info()["cuda_runtime_version"]
        return False, (f"CuPy is not importable ({exc.__class__.__name__}: {exc}); cnnkit's CUDA kernels "
                       f"use the CUDA {version // 1000}.{version % 1000 // 10} runtime, so install the "
                       f"matching CuPy: pip install {cupy_wheel(version)}")
    problem = driver_problem(_cuda.driver_version(), _cuda.build_info()["cuda_runtime_version"])
    if problem:
        return False, problem
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy finds no usable CUDA device ({exc})"
    if count < 1:
        return False, "CuPy finds no CUDA device"
    return True, ""


def check_float(a, name, ndim=None, layout=None, dtype=None):
    """Validate a float array argument (``_op_args.float_array``) and return it C-contiguous."""
    return c_aligned(float_array(as_array(a), name, ndim, layout, dtype))


def contiguous(*arrays):
    """Each array C-contiguous and aligned for the kernels (``c_aligned``); None stays None."""
    return tuple([None if a is None else c_aligned(a) for a in arrays])


def c_aligned(a, dtype=None):
    """a as a C-contiguous array whose data is aligned for its dtype, copying only when needed.
    (np.ascontiguousarray returns a contiguous but unaligned view as it is: a byte-offset view into
    a buffer, a file mapping, a packed record field. The kernels need T*-aligned data.)"""
    if dtype is not None and a.dtype != dtype:
        return backend(a).xp.ascontiguousarray(a, dtype=dtype)
    if not a.flags.c_contiguous:
        return backend(a).xp.ascontiguousarray(a)
    if not getattr(a.flags, "aligned", True):  # NumPy only: CuPy memory is always aligned
        return np.array(a, order="C", copy=True)
    return a


def workspace_limit(gpu=False):
    """cnnkit.config.workspace_limit, or gpu_workspace_limit for CuPy arrays."""
    return config.gpu_workspace_limit if gpu else config.workspace_limit


def workspace_rows(row_bytes, total_rows, gpu=False):
    """How many im2col rows fit in the workspace limit (at least one, at most total_rows)."""
    return int(max(1, min(total_rows, workspace_limit(gpu) // max(1, row_bytes))))


def to_host(a):
    """a as a NumPy array: a CuPy array copied to the host (``.get()``), anything else through
    ``np.asarray`` (no copy for a NumPy array)."""
    return np.asarray(a) if get_array_module(a) is np else a.get()


def read_scalars(values):
    """Python floats of ``values`` (0-d arrays on any device, or numbers), read in one transfer.

    This is where the training loop waits for the device: reading a CuPy value synchronizes its
    stream, so fit, evaluate and the metrics keep losses and counts on the device and read them
    only here, when the progress bar, History or a callback needs them (at most once per logging
    step, once at an epoch's end). The tests count its calls to hold fit to that."""
    values = list(values)
    on_device = [i for i, v in enumerate(values) if _is_cupy(v)]
    if on_device:
        xp = get_array_module(values[on_device[0]])
        host = xp.stack([xp.asarray(values[i], xp.float64).reshape(()) for i in on_device]).get()
        for i, v in zip(on_device, host):
            values[i] = v
    return [float(v) for v in values]
