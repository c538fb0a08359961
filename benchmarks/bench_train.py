"""Training throughput of the tutorial model: cnnkit vs PyTorch eager, CPU and GPU.

    python benchmarks/bench_train.py                 # 60,000 images, batch 32 and 128, CPU (+ GPU if usable)
    python benchmarks/bench_train.py --samples 6000  # a shorter epoch

The model is shared/BENCHMARKS.md's: Conv2D(32, 3x3, relu) - MaxPooling2D(2) - Flatten -
Dense(10, softmax), 54,410 parameters, Adam(1e-3), sparse categorical cross-entropy, inputs
28x28x1 float32 in [0, 1). The images are Fashion-MNIST when cnnkit.datasets can load it, else
random data of the same shape (the time of a step does not depend on the pixel values; the table
says which was used).

Method. Each configuration runs in its own child process (one OpenMP runtime per process, so
each library keeps its own thread wait policy), with the same thread count. A child warms up on a
few batches, then times whole epochs (shuffle, batch gather, forward, loss, backward, update, and
reading the loss back every step, as fit's progress bar does) and reports the median epoch of
--repeat. PyTorch's loop is the one its tutorials write: NCHW tensors, nn.Sequential,
CrossEntropyLoss on logits, Adam, loss.item() each step. GPU epochs are timed with CUDA events.
"Step at batch 1" is the median time of one training step on one image: framework overhead.
Peak memory is the child's maximum resident set size (the same measure for both libraries).
cnnkit sets glibc's mmap/trim thresholds when it loads (see cnnkit.ops._backend._tune_malloc);
--malloc-variants adds cnnkit with glibc's defaults and PyTorch with cnnkit's thresholds, so the
share of the difference that is the allocator's is visible.
Nothing here asserts a speed.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np


def load_images(samples, seed=0):
    """(x, y, source): float32 NHWC images in [0, 1) and int64 labels."""
    try:
        from cnnkit.datasets import fashion_mnist

        (x, y), _ = fashion_mnist.load_data()
        x = (x[:samples].astype(np.float32) / 255.0)[..., None]
        return x, y[:samples].astype(np.int64), "Fashion-MNIST"
    except Exception:
        rng = np.random.default_rng(seed)
        x = rng.random((samples, 28, 28, 1), dtype=np.float32)
        return x, rng.integers(0, 10, samples), "random data"


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_epoch(run_epoch, repeat):
    times = [run_epoch() for _ in range(repeat)]
    return statistics.median(times)


# ---------------------------------------------------------------------- children
def child_cnnkit(args, device):
    import cnnkit
    from cnnkit import layers, models

    if device == "gpu":
        cnnkit.set_device("gpu")
    x, y, source = load_images(args.samples)
    out = {"source": source}
    for bs in args.batch_sizes:
        cnnkit.utils.set_random_seed(0)
        model = models.Sequential([layers.Input((28, 28, 1)), layers.Conv2D(32, (3, 3), activation="relu"),
                                   layers.MaxPooling2D((2, 2)), layers.Flatten(),
                                   layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[: bs * 5], y[: bs * 5], batch_size=bs, epochs=1, verbose=0)  # warm-up

        def epoch():
            if device == "gpu":
                import cupy

                start, stop = cupy.cuda.Event(), cupy.cuda.Event()
                start.record()
                model.fit(x, y, batch_size=bs, epochs=1, verbose=0)
                stop.record()
                stop.synchronize()
                return cupy.cuda.get_elapsed_time(start, stop) / 1e3
            t0 = time.perf_counter()
            model.fit(x, y, batch_size=bs, epochs=1, verbose=0)
            return time.perf_counter() - t0

        out[str(bs)] = len(x) / median_epoch(epoch, args.repeat)
    x1, y1 = x[:1], y[:1]
    for _ in range(5):
        model.train_on_batch(x1, y1)
    steps = []
    for _ in range(50):
        t0 = time.perf_counter()
        model.train_on_batch(x1, y1)
        steps.append(time.perf_counter() - t0)
    out["step1_ms"] = statistics.median(steps) * 1e3
    out["rss_mib"] = rss_mib()
    return out


def child_torch(args, device):
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    x, y, source = load_images(args.samples)
    X = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dev)
    Y = torch.from_numpy(y).to(dev)
    out = {"source": source, "torch": torch.__version__}

    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(32 * 13 * 13, 10)).to(dev)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss()

    def run(model, opt, crit, bs, n):
        perm = torch.randperm(n, device=dev)
        total = 0.0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            opt.zero_grad()
            loss = crit(model(X[idx]), Y[idx])
            loss.backward()
            opt.step()
            total += loss.item()
        return total

    for bs in args.batch_sizes:
        model, opt, crit = make()
        run(model, opt, crit, bs, bs * 5)

        def epoch():
            if device == "gpu":
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run(model, opt, crit, bs, len(x))
                stop.record()
                stop.synchronize()
                return start.elapsed_time(stop) / 1e3
            t0 = time.perf_counter()
            run(model, opt, crit, bs, len(x))
            return time.perf_counter() - t0

        out[str(bs)] = len(x) / median_epoch(epoch, args.repeat)
    steps = []
    for i in range(55):
        t0 = time.perf_counter()
        run(model, opt, crit, 1, 1)
        if device == "gpu":
            torch.cuda.synchronize()
        if i >= 5:
            steps.append(time.perf_counter() - t0)
    out["step1_ms"] = statistics.median(steps) * 1e3
    out["rss_mib"] = rss_mib()
    return out


# ---------------------------------------------------------------------- parent
def spawn(args, lib, device, extra_env=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", f"{lib}:{device}", "--samples", str(args.samples),
           "--repeat", str(args.repeat), "--threads", str(args.threads),
           "--batch-sizes", ",".join(map(str, args.batch_sizes))]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), **(extra_env or {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        return {"error": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gpu_usable(lib):
    try:
        if lib == "cnnkit":
            import cnnkit

            return cnnkit.device.gpu_available()
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--repeat", type=int, default=3, help="epochs timed per configuration (median)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[32, 128])
    p.add_argument("--device", choices=["cpu", "gpu", "all"], default="all")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--malloc-variants", action="store_true",
                   help="also run cnnkit with glibc's default malloc and PyTorch with cnnkit's malloc thresholds")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        lib, device = args.child.split(":")
        result = (child_cnnkit if lib == "cnnkit" else child_torch)(args, device)
        print(json.dumps(result))
        return
    import platform

    import cnnkit

    from cnnkit.ops import _backend

    build = _backend._cpu().lib.build_info()
    print(f"cnnkit {cnnkit.__version__} ({'native' if build['native_build'] else 'portable'} build, malloc tuning "
          f"{'on' if _backend.malloc_tuning else 'off'}); numpy {np.__version__}; python {platform.python_version()}; "
          f"{args.threads} threads; {args.samples} samples/epoch; median of {args.repeat} epochs")
    devices = ["cpu", "gpu"] if args.device == "all" else [args.device]
    rows = []
    for device in devices:
        results = {}
        for lib in ("cnnkit", "torch"):
            if lib == "torch" and args.no_torch:
                continue
            if device == "gpu" and not gpu_usable(lib):
                results[lib] = {"error": "no usable GPU"}
                continue
            if lib == "torch":
                try:
                    import importlib.util

                    if importlib.util.find_spec("torch") is None:
                        results[lib] = {"error": "PyTorch not installed"}
                        continue
                except Exception:
                    pass
            results[lib] = spawn(args, lib, device)
        if args.malloc_variants and device == "cpu":
            from cnnkit.ops import _backend as be

            results["cnnkit, default malloc"] = spawn(args, "cnnkit", device, {"CNNKIT_MALLOC_TUNING": "0"})
            if "torch" in results and "error" not in results["torch"]:
                results["torch, cnnkit's malloc"] = spawn(args, "torch", device, {
                    "MALLOC_MMAP_THRESHOLD_": str(be._MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(be._TRIM_THRESHOLD)})
        rows.append((device, results))
    print(f"data: {next((r['source'] for _, res in rows for r in res.values() if 'source' in r), '?')}")
    head = f"{'device':6} {'library':24} " + " ".join(f"{'img/s b' + str(b):>12}" for b in args.batch_sizes) + \
        f" {'step b1 ms':>11} {'peak RSS MiB':>13}"
    print(head)
    for device, results in rows:
        for lib, r in results.items():
            if "error" in r:
                print(f"{device:6} {lib:24} {r['error']}")
                continue
            cells = " ".join(f"{r[str(b)]:12,.0f}" for b in args.batch_sizes)
            print(f"{device:6} {lib:24} {cells} {r['step1_ms']:11.2f} {r['rss_mib']:13,.0f}")
        ck, pt = results.get("cnnkit", {}), results.get("torch", {})
        if "error" not in ck and "error" not in pt and ck and pt:
            ratios = ", ".join(f"batch {b}: {ck[str(b)] / pt[str(b)]:.2f}x" for b in args.batch_sizes)
            print(f"{device:6} cnnkit/torch throughput {ratios}; batch-1 step {pt['step1_ms'] / ck['step1_ms']:.2f}x")


if __name__ == "__main__":
    main()
