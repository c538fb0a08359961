"""Without a GPU (these run everywhere, CI included): cnnkit imports without CuPy and never imports
it on its own, cnnkit._cuda (when this build has it) imports without a driver, and asking for the
GPU where it cannot run is one clear RuntimeError saying what is missing. Each case runs in a fresh
interpreter so that what it hides (CuPy, cnnkit._cuda) stays hidden from the rest of the suite."""

import os
import subprocess
import sys
import textwrap

import pytest

import cnnkit


def _run(code, tmp_path=None, extra_path=()):
    """Run code in a fresh interpreter that sees this test session's cnnkit; return its stdout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*extra_path, *sys.path]))
    env.pop("CNNKIT_DEVICE", None)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         env=env, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_import_never_imports_cupy(tmp_path):
    """With an importable 'cupy' on the path (a stand-in here, the real one on a GPU machine),
    importing cnnkit and running CPU ops, models included, never imports it."""
    out = _run("""
        import sys
        import numpy as np
        import cnnkit
        from cnnkit import ops
        ops.relu(np.ones(3, np.float32))
        ops.conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 2)))
        model = cnnkit.models.Sequential([cnnkit.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(np.ones((4, 3), np.float32), np.ones((4, 2), np.float32), epochs=1, verbose=0)
        print("cupy" in sys.modules)
    """, tmp_path, [_fake_cupy(tmp_path)])
    assert out.strip().splitlines()[-1] == "False"


def test_without_cupy_the_gpu_request_is_one_clear_error():
    """... naming the CuPy wheel that matches the CUDA runtime of cnnkit._cuda (a stand-in for CUDA
    12.4 here, so the case runs the same whether this build has the module or not)."""
    out = _run("""
        import sys, types
        sys.modules["cupy"] = None  # import cupy raises ImportError
        sys.modules["cnnkit._cuda"] = types.SimpleNamespace(build_info=lambda: {"cuda_runtime_version": 12040})
        import cnnkit
        from cnnkit.ops import _backend
        ok, why = _backend.cuda_status()
        print(ok, "|", why)
        print(cnnkit.device.gpu_available() if hasattr(cnnkit, "device") else False)
        try:
            cnnkit.set_device("gpu")
        except RuntimeError as exc:
            print("RuntimeError |", exc)
    """)
    lines = out.strip().splitlines()
    assert lines[0].startswith("False | CuPy is not importable") and "pip install cupy-cuda12x" in lines[0]
    assert lines[1] == "False"
    assert lines[2].startswith("RuntimeError |") and "GPU" in lines[2] and "CuPy" in lines[2]


def _fake_cupy(tmp_path):
    """A stand-in 'cupy' package that reports one device, with an ndarray type CuPy arrays are
    recognized by (their module name); enough to reach the checks that follow CuPy's import."""
    pkg = tmp_path / "fake" / "cupy"
    (pkg / "cuda").mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        import numpy
        from . import cuda

        class _Flags:
            c_contiguous = True
            writeable = True

        class ndarray:
            dtype = numpy.dtype("float32")
            shape = (2,)
            ndim = 1
            flags = _Flags()
    """))
    (pkg / "cuda" / "__init__.py").write_text(textwrap.dedent("""
        class runtime:
            @staticmethod
            def getDeviceCount():
                return 1
    """))
    return str(tmp_path / "fake")


def test_build_without_cuda_kernels_is_one_clear_error(tmp_path):
    """CuPy and a device present but no cnnkit._cuda (a CNNKIT_CUDA=OFF build, or no nvcc): handing
    cnnkit a CuPy array raises RuntimeError naming the missing module; NumPy keeps working."""
    out = _run("""
        import sys
        sys.modules["cnnkit._cuda"] = None  # as in a build without the CUDA module
        import numpy as np
        import cupy
        import cnnkit
        from cnnkit import ops
        from cnnkit.ops import _backend
        ok, why = _backend.cuda_status()
        print(ok, "|", why)
        try:
            ops.relu(cupy.ndarray())
        except RuntimeError as exc:
            print("RuntimeError |", exc)
        try:
            ops.relu(np.ones(2, np.float32), out=cupy.ndarray())
        except TypeError as exc:
            print("TypeError |", exc)
        print(ops.relu(np.array([-1.0, 1.0])).tolist())
    """, tmp_path, [_fake_cupy(tmp_path)])
    lines = out.strip().splitlines()
    assert lines[0].startswith("False |") and "cnnkit._cuda" in lines[0] and "nvcc" in lines[0]
    assert lines[1].startswith("RuntimeError |") and "cnnkit._cuda" in lines[1]
    assert lines[2].startswith("TypeError |") and "mix" in lines[2]
    assert lines[3] == "[0.0, 1.0]"


def test_cuda_module_imports_without_a_driver():
    """The CUDA runtime is linked statically and loads the driver on first use: importing
    cnnkit._cuda and asking it for devices never fails, GPU or not."""
    try:
        from cnnkit import _cuda
    except ImportError:
        pytest.skip("this build has no cnnkit._cuda (no nvcc, or CNNKIT_CUDA=OFF)")
    info = _cuda.build_info()
    assert info["version"] == cnnkit.__version__
    assert "80" in info["cuda_architectures"] and "90" in info["cuda_architectures"]
    assert _cuda.device_count() >= 0
    names = {n for n in dir(_cuda) if not n.startswith("_")}
    from cnnkit import _core
    # host-only functions: OpenMP threads and the CPU's SIMD code path have no GPU counterpart
    core = {n for n in dir(_core) if not n.startswith("_")} - {"get_num_threads", "set_num_threads", "cpu_dispatch"}
    missing = core - names
    assert not missing, f"CPU kernels without a CUDA twin: {sorted(missing)}"


def test_cuda_stub_lists_every_function():
    """python/cnnkit/_cuda.pyi (tools/gen_stub.sh) is valid Python and stays in step with the module."""
    import ast
    import pathlib
    import re

    try:
        from cnnkit import _cuda
    except ImportError:
        pytest.skip("this build has no cnnkit._cuda (no nvcc, or CNNKIT_CUDA=OFF)")
    stub = pathlib.Path(cnnkit.__file__).parent / "_cuda.pyi"
    assert stub.exists(), "the _cuda.pyi stub is not installed with the package"
    text = stub.read_text()
    ast.parse(text)
    declared = set(re.findall(r"^def (\w+)\(", text, re.M))
    built = {n for n in dir(_cuda) if not n.startswith("__") and callable(getattr(_cuda, n))}
    assert declared == built, f"missing from stub: {built - declared}; stale in stub: {declared - built}"


def test_driver_problem_names_the_driver_to_install():
    from cnnkit.ops._backend import driver_problem

    assert driver_problem(13000, 13000) is None and driver_problem(13020, 13000) is None
    assert driver_problem(13000, 13010) is None  # minor version compatibility within CUDA 13
    assert driver_problem(12080, 12040) is None and driver_problem(13000, 12040) is None
    old = driver_problem(12080, 13000)
    assert "supports CUDA 12.8 only" in old and "CUDA 13.0 runtime" in old and "R580" in old
    none = driver_problem(0, 13000)
    assert none.startswith("no NVIDIA driver was found") and "R580" in none


def test_an_old_driver_makes_the_gpu_unusable_with_the_fix(tmp_path):
    """CuPy imports and counts a device, but the driver is older than the CUDA runtime the kernels
    were built with: every launch would fail, so cuda_status says so before any launch."""
    out = _run("""
        import sys, types
        sys.modules["cnnkit._cuda"] = types.SimpleNamespace(build_info=lambda: {"cuda_runtime_version": 13000},
                                                            driver_version=lambda: 12020)
        from cnnkit.ops import _backend
        ok, why = _backend.cuda_status()
        print(ok, "|", why)
    """, tmp_path, [_fake_cupy(tmp_path)])
    line = out.strip().splitlines()[-1]
    assert line.startswith("False | the NVIDIA driver supports CUDA 12.2 only") and "R580" in line


def test_arrays_on_another_gpu_are_refused_with_the_fix():
    from cnnkit.ops._backend import device_mismatch

    assert device_mismatch([0, 0], 0) is None and device_mismatch([], 1) is None
    msg = device_mismatch([1, 0, 2], 0)
    assert "arrays on GPU 1, GPU 2 were given while the current device is GPU 0" in msg
    assert "cupy.cuda.Device(1)" in msg
