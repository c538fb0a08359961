"""What a new user meets first (issue 13): README's install commands, `python -m cnnkit` (help,
version, one-line usage errors, `info` naming the SIMD code path the loader picked and the CPU's
features), the GPU errors naming what is missing and the CuPy wheel to install, example 12's dataset
guidance and the hint for predicting one sample. The CLI runs in subprocesses, as a user runs it."""

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnnkit
from cnnkit import layers, models
from cnnkit.ops import _backend

ROOT = pathlib.Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def cli(*args, prelude=""):
    """`python -m cnnkit ARGS`, after running prelude (to hide CuPy or cnnkit._cuda) in the same process."""
    code = textwrap.dedent(prelude) + "\nimport sys\nfrom cnnkit.__main__ import main\nsys.exit(main(sys.argv[1:]))"
    env = {k: v for k, v in os.environ.items() if k != "CNNKIT_DEVICE"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env)


def one_error_line(proc, *needles):
    """A usage error: exit status 2, nothing on stdout, one line on stderr holding every needle."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# -- README ------------------------------------------------------------------------------------------
def commands(readme):
    return re.findall(r"^```\n(.*?)\n```", readme, re.M | re.S)


def test_readme_install_command_needs_no_sudo_as_root_and_uses_it_otherwise():
    """The first command ran `sudo apt-get ...`: 'sudo: command not found' as root in a container."""
    first = commands(README)[0]
    assert not first.startswith("sudo") and "apt-get update" in first
    prefix = first.split(";")[0]  # S=$(... || echo sudo)
    got = subprocess.run(["sh", "-c", f'{prefix}; echo "[$S]"'], capture_output=True, text=True).stdout.strip()
    assert got == ("[]" if os.getuid() == 0 else "[sudo]")


def test_ci_runs_exactly_the_readme_test_command():
    test_command = commands(README)[1]
    assert test_command == "pip install '.[test]' && python -m pytest"
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == test_command


def test_readme_has_a_using_a_gpu_section_with_the_cupy_wheel():
    section = README.split("## Using a GPU")[1].split("\n## ")[0]
    assert "pip install cupy-cuda13x" in section and "python -m cnnkit info" in section


# -- python -m cnnkit ------------------------------------------------------------------------------------
def test_version():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"cnnkit {cnnkit.__version__}"


def test_help_is_plain_text_and_names_both_commands():
    proc = cli("--help")
    assert proc.returncode == 0
    assert "``" not in proc.stdout and "info" in proc.stdout and "demo" in proc.stdout


def test_every_demo_option_has_help_with_its_default():
    out = " ".join(cli("demo", "--help").stdout.split("options:")[1].split())  # the option list, unwrapped
    for option, default in [("--epochs N", "default: 5"), ("--model {tutorial,bn}", "default: tutorial"),
                            ("--batch-size B", "default: 32"), ("--device {cpu,gpu}", "default: the GPU when"),
                            ("--samples N", "default: all"), ("--out DIR", "default: the current folder")]:
        after = out.split(option, 1)[1]
        assert default in after.split(" --")[0], (option, after[:200])


@pytest.mark.parametrize("args, needles", [
    (["demo", "--epochs", "0"], ["--epochs", ">= 1", "received 0"]),
    (["demo", "--epochs", "-3"], ["--epochs", ">= 1"]),
    (["demo", "--batch-size", "x"], ["--batch-size", "'x'"]),
    (["demo", "--samples", "0"], ["--samples"]),
    (["demo", "--model", "vgg"], ["invalid choice", "--help"]),
    (["bogus"], ["invalid choice"]),
    ([], ["COMMAND"]),
])
def test_usage_errors_are_one_line_and_exit_2(args, needles):
    one_error_line(cli(*args), *needles)


def test_demo_refuses_zero_epochs_from_python_too():
    from cnnkit import demo

    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        demo.run(epochs=0)


def test_demo_on_the_gpu_without_cupy_is_one_line_naming_the_wheel():
    """The 16-line traceback this gave is one line: what is missing and what to install."""
    proc = cli("demo", "--device", "gpu", "--samples", "10", prelude="""
        import sys, types
        sys.modules["cupy"] = None  # CuPy not installed
        sys.modules["cnnkit._cuda"] = types.SimpleNamespace(build_info=lambda: {"cuda_runtime_version": 13000})
    """)
    one_error_line(proc, "CuPy is not importable", "pip install cupy-cuda13x", "--device cpu")


def test_demo_on_the_gpu_of_a_build_without_cuda_kernels_says_so():
    proc = cli("demo", "--device", "gpu", prelude="""
        import sys
        sys.modules["cnnkit._cuda"] = None  # a CNNKIT_CUDA=OFF build, or no nvcc at install time
    """)
    one_error_line(proc, "cnnkit._cuda was not built", "CNNKIT_CUDA=OFF", "nvcc")


@pytest.mark.parametrize("version, wheel", [(13000, "cupy-cuda13x"), (12040, "cupy-cuda12x"),
                                            (11080, "cupy-cuda11x"), (10020, "cupy-cuda102")])
def test_cupy_wheel_matches_the_cuda_runtime(version, wheel):
    assert _backend.cupy_wheel(version) == wheel


def _cpuinfo_flags():
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    line = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(line.group(1).split()) if line else None


def test_info_names_the_simd_code_path_the_loader_picked_and_the_cpu_features():
    """`info` said "SIMD flags SSE2" (the compile-time baseline) on an AVX-512 machine whose loader
    runs the AVX-512 copies of the hot loops."""
    proc = cli("info")
    assert proc.returncode == 0, proc.stderr
    fields = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in proc.stdout.splitlines())
    path = fields["SIMD code path"]
    assert re.match(r"(AVX-512|AVX2\+FMA|baseline|NEON), ", path), path
    dispatch = _backend._cpu().lib.cpu_dispatch()
    assert path.startswith(dispatch["path"] + ", ")
    flags = _cpuinfo_flags()
    features = dispatch["features"]
    if not features or flags is None:
        pytest.skip("no x86-64 feature detection in this build, or no /proc/cpuinfo")
    for name, flag in [("avx512f", "avx512f"), ("avx2", "avx2"), ("fma", "fma"), ("amx-tile", "amx_tile"),
                       ("amx-bf16", "amx_bf16")]:
        assert features[name] == (flag in flags), name
        assert f"{name} {'yes' if flag in flags else 'no'}" in fields["CPU features"]
    if "picked at load time" in dispatch["mode"]:
        # x86-64-v4 is AVX-512 F/BW/CD/DQ/VL; v3 is AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE (over v2)
        v4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags
        v3 = {"avx2", "fma", "bmi1", "bmi2", "f16c", "abm", "movbe"} <= flags
        assert dispatch["path"] == ("AVX-512" if v4 and v3 else "AVX2+FMA" if v3 else "baseline")


# -- the library -------------------------------------------------------------------------------------------
def test_predict_on_one_sample_says_how_to_make_a_batch_of_one():
    model = models.Sequential([layers.Input((6, 5, 1)), layers.Flatten(), layers.Dense(3)])
    x = np.zeros((4, 6, 5, 1), np.float32)
    with pytest.raises(ValueError, match=r"x\[None\] or np\.expand_dims\(x, 0\)"):
        model.predict(x[0], verbose=0)
    with pytest.raises(ValueError) as err:  # a shape that is not one sample gets no such hint
        model.predict(np.zeros((4, 5, 6, 1), np.float32), verbose=0)
    assert "expand_dims" not in str(err.value)
    assert model.predict(x[0][None], verbose=0).shape == (1, 3)


def test_example_12_prints_the_whole_dataset_guidance(tmp_path):
    """It printed only the first line of MNIST's 'not on this machine' message."""
    guidance = "MNIST is not on this machine. Provide it in one of these ways:\n  1. first way;\n  2. second way."
    code = f"""
        import runpy, sys
        from cnnkit import datasets
        def missing():
            raise FileNotFoundError({guidance!r})
        def stop():
            raise SystemExit(0)  # the guidance is printed by now; no need to train
        datasets.mnist.load_data, datasets.fashion_mnist.load_data = missing, stop
        sys.path.insert(0, {str(ROOT / "examples")!r})
        runpy.run_path({str(ROOT / "examples" / "12_mnist_callback.py")!r}, run_name="__main__")
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=dict(os.environ, CNNKIT_EXAMPLE_QUICK="1"))
    assert proc.returncode == 0, proc.stderr
    assert guidance in proc.stderr and "Fashion-MNIST" in proc.stderr
