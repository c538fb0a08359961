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

import numpy as np
from _timing import cupy_events, median_ms, peak_rss_mib, run_child, torch_events, torch_missing


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


# ---------------------------------------------------------------------- children
def child_cnnkit(args, device):
    import cnnkit
    from cnnkit.demo import build

    if device == "gpu":
        cnnkit.set_device("gpu")
    x, y, source = load_images(args.samples)
    out = {"source": source}
    for bs in args.batch_sizes:
        cnnkit.utils.set_random_seed(0)
        model = build("tutorial")
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[: bs * 5], y[: bs * 5], batch_size=bs, epochs=1, verbose=0)  # warm-up
        ms = median_ms(lambda: model.fit(x, y, batch_size=bs, epochs=1, verbose=0), args.repeat, warmup=0,
                       events=cupy_events if device == "gpu" else None)
        out[str(bs)] = len(x) / (ms / 1e3)
    # host reads (synchronizations on the GPU) in one more epoch at the last batch size, verbose=0:
    # fit reads the logs once per epoch; anything per step would show here
    from cnnkit.ops import _backend

    real, reads = _backend.read_scalars, [0]

    def counting(values):
        reads[0] += 1
        return real(values)

    _backend.read_scalars = counting
    try:
        model.fit(x, y, batch_size=bs, epochs=1, verbose=0)
    finally:
        _backend.read_scalars = real
    out["reads_per_step"] = reads[0] / -(-len(x) // bs)
    x1, y1 = x[:1], y[:1]
    out["step1_ms"] = median_ms(lambda: model.train_on_batch(x1, y1), 50, warmup=5)
    out["rss_mib"] = peak_rss_mib()
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

        ms = median_ms(lambda: run(model, opt, crit, bs, len(x)), args.repeat, warmup=0,
                       events=torch_events if device == "gpu" else None)
        out[str(bs)] = len(x) / (ms / 1e3)
    # run() reads the loss back (loss.item()) each step, so the wall clock includes the GPU's work
    out["step1_ms"] = median_ms(lambda: run(model, opt, crit, 1, 1), 50, warmup=5)
    out["rss_mib"] = peak_rss_mib()
    return out


# ---------------------------------------------------------------------- parent
def spawn(args, lib, device, extra_env=None):
    return run_child(__file__, ["--child", f"{lib}:{device}", "--samples", args.samples, "--repeat", args.repeat,
                                "--threads", args.threads, "--batch-sizes", ",".join(map(str, args.batch_sizes))],
                     {"OMP_NUM_THREADS": str(args.threads), **(extra_env or {})})


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
            if lib == "torch" and torch_missing():
                results[lib] = {"error": torch_missing()}
                continue
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
            reads = f"  host reads/step {r['reads_per_step']:.4f}" if "reads_per_step" in r else ""
            print(f"{device:6} {lib:24} {cells} {r['step1_ms']:11.2f} {r['rss_mib']:13,.0f}{reads}")
        ck, pt = results.get("cnnkit", {}), results.get("torch", {})
        if "error" not in ck and "error" not in pt and ck and pt:
            ratios = ", ".join(f"batch {b}: {ck[str(b)] / pt[str(b)]:.2f}x" for b in args.batch_sizes)
            print(f"{device:6} cnnkit/torch throughput {ratios}; batch-1 step {pt['step1_ms'] / ck['step1_ms']:.2f}x")


if __name__ == "__main__":
    main()
