"""cnnkit's command line: ``python -m cnnkit info`` describes this build and machine,
``python -m cnnkit demo`` trains a CNN on Fashion-MNIST. A wrong argument, or a request this machine
cannot serve (the GPU where there is none, a dataset that is not here), is one error line and exit
status 2, as argparse gives for any usage error."""

import argparse
import os
import platform
import sys


def info():
    import numpy as np

    import cnnkit
    from cnnkit.ops import _backend

    lib = _backend._cpu().lib
    b = lib.build_info()
    dispatch = lib.cpu_dispatch()
    lines = [
        ("cnnkit", cnnkit.__version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("numpy", np.__version__),
        ("build type", b["build_type"]),
        ("compiler", b["compiler"]),
        ("native CPU tuning", "yes (-march=native)" if b["native_build"] else "no (portable build)"),
        ("compile-time SIMD flags", ", ".join(b["simd"]) or "none"),
        ("SIMD code path", f"{dispatch['path']}, {dispatch['mode']}"),
        ("CPU features", _features(dispatch["features"])),
        ("OpenMP", f"yes, {lib.get_num_threads()} threads" if b["openmp"] else "no (single-threaded)"),
        ("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "(unset)")),
        ("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "(unset: cnnkit loads OpenMP with PASSIVE)")),
        ("im2col workspace limit", f"{cnnkit.config.workspace_limit / 2**20:g} MiB"),
        ("malloc tuning", "mmap threshold {mmap_threshold}, trim threshold {trim_threshold} bytes".format(
            **_backend.malloc_tuning) if _backend.malloc_tuning else "off (glibc defaults)"),
        ("default device", cnnkit.get_device()),
    ]
    try:
        from cnnkit import _cuda

        info = _cuda.build_info()
        rt = info["cuda_runtime_version"]
        cuda_built = (f"yes, for {info['cuda_architectures']} (CUDA runtime {rt // 1000}.{rt % 1000 // 10}, "
                      f"linked statically; CuPy wheel to match: {_backend.cupy_wheel(rt)})")
    except ImportError:
        cuda_built = "no (built without nvcc, or with CNNKIT_CUDA=OFF)"
    lines.append(("CUDA module", cuda_built))
    if cuda_built.startswith("yes"):
        drv = _cuda.driver_version()
        problem = _backend.driver_problem(drv, rt)
        lines.append(("NVIDIA driver", problem or f"supports CUDA {drv // 1000}.{drv % 1000 // 10}"))
    lines.append(("TF32 for GPU GEMMs", "allowed" if cnnkit.config.allow_tf32 else "off (cnnkit.config.allow_tf32)"))
    lines.append(("GPU visible", _gpu_visible()))
    usable, why = _backend.cuda_status()
    lines.append(("GPU usable by cnnkit", "yes" if usable else f"no: {why}"))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k:<{width}}  {v}")


def _features(features):
    if not features:
        return "unknown (the compiler of this build cannot ask the CPU)"
    shown = ("avx512f", "avx2", "fma", "amx-tile", "amx-bf16", "amx-int8")
    return ", ".join(f"{name} {'yes' if features.get(name) else 'no'}" for name in shown)


def _gpu_visible():
    try:
        import cupy
    except ImportError:
        return "unknown (CuPy is not installed)"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, no device
        return f"no ({type(e).__name__}: {e})"
    if n == 0:
        return "no"
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return f"yes, {n} ({name.decode() if isinstance(name, bytes) else name})"


def _at_least_one(text):
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, received {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (what is wrong and where the options are listed),
    exit status 2 as argparse's own."""

    def error(self, message):
        self.fail(f"{message} ('{self.prog} --help' lists the options)")

    def fail(self, message):
        """A request this machine cannot serve: the message says what to do."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser():
    import cnnkit

    top = _Parser(
        prog="python -m cnnkit",
        description="cnnkit, a compact CNN library (Keras-style API, C++/CUDA kernels). Commands: "
                    "'info' describes this build and machine, 'demo' trains a CNN on Fashion-MNIST. "
                    "'python -m cnnkit COMMAND --help' lists a command's options.")
    top.add_argument("--version", action="version", version=f"cnnkit {cnnkit.__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("info", help="print the version, the build (compiler, SIMD code path, OpenMP, CUDA) and "
                                "whether a GPU is usable",
                   description="Print the version, the build (compiler, the SIMD code path this CPU runs and "
                               "its features, OpenMP threads, the CUDA module) and whether a GPU is usable.")
    demo = sub.add_parser(
        "demo", help="train a CNN on Fashion-MNIST and report its test accuracy",
        description="Train a CNN on Fashion-MNIST with a progress bar, print the test accuracy, and write "
                    "the training curves (history.png) and the trained model (fashion_mnist.cnnkit).")
    demo.add_argument("--epochs", type=_at_least_one, default=5, metavar="N",
                      help="passes over the training images, at least 1 (default: %(default)s)")
    demo.add_argument("--device", choices=["cpu", "gpu"], default=None,
                      help="where to train (default: the GPU when one is usable, else the CPU)")
    demo.add_argument("--model", choices=["tutorial", "bn"], default="tutorial",
                      help="'tutorial': Conv2D 32 - MaxPooling2D - Dense 10 (54,410 parameters); 'bn': a "
                           "deeper CNN with BatchNormalization, dropout and flips (default: %(default)s)")
    demo.add_argument("--batch-size", type=_at_least_one, default=32, metavar="B",
                      help="images per step (default: %(default)s)")
    demo.add_argument("--out", default=".", metavar="DIR",
                      help="folder for history.png and fashion_mnist.cnnkit (default: the current folder)")
    demo.add_argument("--samples", type=_at_least_one, default=None, metavar="N",
                      help="use only the first N training and N test images, a quick run (default: all "
                           "60,000 and 10,000)")
    return top, demo


def main(argv=None):
    top, demo = parser()
    args = top.parse_args(argv)
    if args.command == "info":
        info()
    elif args.command == "demo":
        import cnnkit
        from cnnkit import demo as demo_module

        if args.device == "gpu":
            try:
                cnnkit.device.require("gpu")
            except RuntimeError as e:
                demo.fail(f"{e}. Run with --device cpu, or see README's 'Using a GPU'")
        try:
            demo_module.run(epochs=args.epochs, device=args.device, model_name=args.model,
                            batch_size=args.batch_size, out_dir=args.out, samples=args.samples)
        except FileNotFoundError as e:  # Fashion-MNIST is not on this machine: its message says how to add it
            demo.fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
