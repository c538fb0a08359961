"""Dispatch and argument checking shared by every op in cnnkit.ops.

``backend(*arrays)`` picks the kernel module from the arrays' type (NumPy -> ``cnnkit._core``; CuPy ->
``cnnkit._cuda``, every call run on CuPy's current stream) and refuses mixtures. Arrays from other
GPU libraries (anything with ``__dlpack__`` on a CUDA device, such as a PyTorch CUDA tensor) are
viewed as CuPy arrays, zero-copy, by ``as_array``/``check_float``. The ``check_*`` helpers validate
what users pass and raise ValueError/TypeError naming the argument and the shapes. ``geometry``
turns Keras-style window arguments (strides, padding, dilation) into the 14-tuple the kernels take.
``matmul`` is the one GEMM entry point (NumPy/OpenBLAS or CuPy/cuBLAS, TF32 on the GPU only when
``cnnkit.config.allow_tf32``). This module is the only place that imports the native modules, and
CuPy is imported only when a CuPy array (or a GPU request) shows up, never at ``import cnnkit``.
"""

import math
import numbers

import numpy as np

from ..config import config

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


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


def _is_cupy(a):
    return type(a).__module__.split(".")[0] == "cupy"


# DLPack device types that hold CUDA memory (kDLCUDA, kDLCUDAHost is host memory, kDLCUDAManaged).
_DLPACK_CUDA = (2, 13)


def _is_gpu_dlpack(a):
    """Whether a (not NumPy, not CuPy) exports DLPack on a CUDA device, e.g. a PyTorch CUDA tensor."""
    if isinstance(a, np.ndarray) or not hasattr(a, "__dlpack__") or not hasattr(a, "__dlpack_device__"):
        return False
    try:
        return int(a.__dlpack_device__()[0]) in _DLPACK_CUDA
    except Exception:
        return False


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

        _gpu_backend = Backend("gpu", cupy, _CudaLib(_cuda, cupy))
    return _gpu_backend


def backend(*arrays):
    """The backend for these arrays (None entries are skipped); TypeError on a NumPy/CuPy mixture."""
    kinds = set()
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, np.ndarray):
            kinds.add("numpy")
        elif _is_cupy(a) or _is_gpu_dlpack(a):
            kinds.add("cupy")
        else:
            raise TypeError(f"expected numpy.ndarray or cupy.ndarray arguments, got {type(a).__name__}")
    if len(kinds) > 1:
        raise TypeError("cannot mix NumPy and CuPy (GPU) arrays in one call; move them to one device "
                        "first (cupy.asarray(a) or a.get())")
    if kinds == {"cupy"}:
        return _gpu()
    return _cpu()


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


def cuda_status():
    """(available, reason): whether CuPy arrays can run here, and if not, why not."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy that fails to load its CUDA libraries
        return False, f"CuPy is not importable ({exc.__class__.__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy finds no usable CUDA device ({exc})"
    if count < 1:
        return False, "CuPy finds no CUDA device"
    try:
        from .. import _cuda  # noqa: F401
    except ImportError:
        return False, ("this cnnkit build has no CUDA kernels (cnnkit._cuda); reinstall with nvcc on "
                       "PATH to build them")
    return True, ""


def check_float(a, name, ndim=None, layout=None, dtype=None):
    """Validate a float array argument and return it C-contiguous.

    ndim: required rank (layout names it in the message, e.g. "NHWC (N, H, W, C)").
    dtype: the dtype the other operands have; a mismatch is a TypeError (no silent casts)."""
    a = as_array(a)
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    if a.dtype not in _FLOATS:
        raise TypeError(
            f"{name} must be float32 or float64, got dtype {a.dtype}; cast it explicitly, "
            f"for example {name}.astype('float32')")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but the other operands are {np.dtype(dtype)}; "
                        "mixing float32 and float64 is not supported")
    if ndim is not None and a.ndim != ndim:
        what = f" {layout}" if layout else ""
        raise ValueError(f"{name} must be {ndim}-D{what}, got shape {tuple(a.shape)}")
    return c_aligned(a)


def c_aligned(a, dtype=None):
    """a as a C-contiguous array whose data is aligned for its dtype, copying only when needed.
    (np.ascontiguousarray returns a contiguous but unaligned view as it is: a byte-offset view into
    a buffer, a file mapping, a packed record field. The kernels need T*-aligned data.)"""
    xp = backend(a).xp
    if dtype is not None and a.dtype != dtype:
        return xp.ascontiguousarray(a, dtype=dtype)
    if not a.flags.c_contiguous:
        return xp.ascontiguousarray(a)
    if not getattr(a.flags, "aligned", True):  # NumPy only: CuPy memory is always aligned
        return np.array(a, order="C", copy=True)
    return a


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def pair(value, name, minimum=1):
    """An int or a pair of ints, each >= minimum, as a tuple of two Python ints."""
    vals = (value, value) if _is_int(value) else value
    try:
        vals = tuple(vals)
    except TypeError:
        vals = None
    if vals is None or len(vals) != 2 or not all(_is_int(v) for v in vals):
        raise ValueError(f"{name} must be an int or a tuple of 2 ints, received {name}={value!r}")
    if any(v < minimum for v in vals):
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, received {name}={value!r}")
    return int(vals[0]), int(vals[1])


def resolve_padding(padding, in_hw, window_hw, strides, dilation):
    """((top, bottom), (left, right)) for a padding spec: "valid", "same" (TensorFlow/Keras rule:
    output = ceil(input / stride), the odd pixel goes at the bottom/right), an int, a pair of ints
    (symmetric per axis) or ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode == "same":
            pads = []
            for n, k, s, d in zip(in_hw, window_hw, strides, dilation):
                out = -(-n // s)
                total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(f'padding must be "valid", "same", an int or ((top, bottom), (left, right)), '
                         f"received padding={padding!r}")
    if _is_int(padding):
        p = pair(padding, "padding", minimum=0)
        return (p[0], p[0]), (p[1], p[1])
    try:
        items = tuple(padding)
    except TypeError:
        raise ValueError(f"padding must be a string, an int or a tuple, received padding={padding!r}") from None
    if len(items) == 2 and all(_is_int(v) for v in items):
        ph, pw = pair(items, "padding", minimum=0)
        return (ph, ph), (pw, pw)
    if len(items) == 2:
        return pair(items[0], "padding", minimum=0), pair(items[1], "padding", minimum=0)
    raise ValueError(f"padding must be a string, an int or ((top, bottom), (left, right)), "
                     f"received padding={padding!r}")


# Window arguments and padded extents above this are refused: sums of two still fit in int64.
MAX_EXTENT = 2**62


def geometry(x_shape, window, strides=1, padding="valid", dilation=1, window_name="kernel_size"):
    """Validate window arguments against an NHWC shape.

    Returns (geom, (out_h, out_w)) where geom is the 14-tuple
    (N, H, W, C, KH, KW, SH, SW, DH, DW, PT, PB, PL, PR) the native kernels take."""
    n, h, w, c = (int(s) for s in x_shape)
    if h < 1 or w < 1 or c < 1:
        raise ValueError(f"input must have positive height, width and channels, got shape {tuple(x_shape)}")
    kh, kw = pair(window, window_name)
    sh, sw = pair(strides, "strides")
    dh, dw = pair(dilation, "dilation" if window_name == "kernel_size" else "dilation_rate")
    (pt, pb), (pl, pr) = resolve_padding(padding, (h, w), (kh, kw), (sh, sw), (dh, dw))
    eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if eff_h > h + pt + pb or eff_w > w + pl + pr:
        raise ValueError(
            f"{window_name}=({kh}, {kw}) with dilation ({dh}, {dw}) covers ({eff_h}, {eff_w}) pixels, more "
            f"than the padded input ({h + pt + pb}, {w + pl + pr}) of input shape {tuple(x_shape)} with "
            f"padding={padding!r}: the output would be empty")
    oh = (h + pt + pb - eff_h) // sh + 1
    ow = (w + pl + pr - eff_w) // sw + 1
    # The kernels index in 64 bits; a (padded) extent they cannot add up is refused here, not wrapped.
    extents = {"kernel_size/pool_size": (kh, kw), "strides": (sh, sw), "dilation": (dh, dw),
               "padding": (pt, pb, pl, pr), "padded input": (h + pt + pb, w + pl + pr)}
    for what, values in extents.items():
        if max(values) > MAX_EXTENT:
            raise ValueError(f"{what} {values} exceeds the largest extent the kernels index in 64 bits "
                             f"(2**62) for input shape {tuple(x_shape)}")
    return (n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr), (oh, ow)


def workspace_limit(gpu=False):
    """cnnkit.config.workspace_limit, or gpu_workspace_limit for CuPy arrays."""
    return config.gpu_workspace_limit if gpu else config.workspace_limit


def workspace_rows(row_bytes, total_rows, gpu=False):
    """How many im2col rows fit in the workspace limit (at least one, at most total_rows)."""
    return int(max(1, min(total_rows, workspace_limit(gpu) // max(1, row_bytes))))


def seed_value(seed, name="seed"):
    """A seed as a Python int in [0, 2**64)."""
    if not _is_int(seed):
        raise TypeError(f"{name} must be an int, received {name}={seed!r}")
    return int(seed) % 2**64


def ceil_div(a, b):
    return -(-a // b) if b else math.inf
