"""``python -m cnnkit info``: what this build of cnnkit is and what it can use."""

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
    lines = [
        ("cnnkit", cnnkit.__version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("numpy", np.__version__),
        ("build type", b["build_type"]),
        ("compiler", b["compiler"]),
        ("native CPU tuning", "yes (-march=native)" if b["native_build"] else "no (portable build)"),
        ("SIMD flags", ", ".join(b["simd"]) or "none"),
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
                      "linked statically)")
    except ImportError:
        cuda_built = "no (built without nvcc, or with CNNKIT_CUDA=OFF)"
    lines.append(("CUDA module", cuda_built))
    lines.append(("TF32 for GPU GEMMs", "allowed" if cnnkit.config.allow_tf32 else "off (cnnkit.config.allow_tf32)"))
    lines.append(("GPU visible", _gpu_visible()))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k:<{width}}  {v}")


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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cnnkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print version, build and device information")
    demo = sub.add_parser("demo", help="train a CNN on Fashion-MNIST and report its test accuracy")
    demo.add_argument("--epochs", type=int, default=5)
    demo.add_argument("--device", choices=["cpu", "gpu"], default=None,
                      help="default: the GPU when one is usable, else the CPU")
    demo.add_argument("--model", choices=["tutorial", "bn"], default="tutorial")
    demo.add_argument("--batch-size", type=int, default=32)
    demo.add_argument("--out", default=".", help="folder for history.png and fashion_mnist.cnnkit")
    demo.add_argument("--samples", type=int, default=None, help="use only the first N images (a quick run)")
    args = parser.parse_args(argv)
    if args.command == "info":
        info()
    elif args.command == "demo":
        from cnnkit import demo as demo_module

        demo_module.run(epochs=args.epochs, device=args.device, model_name=args.model,
                        batch_size=args.batch_size, out_dir=args.out, samples=args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
