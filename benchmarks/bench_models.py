"""Training throughput of real models: cnnkit.applications vs PyTorch eager with torchvision's models.

    python benchmarks/bench_models.py --device cpu                   # 64x64, batch 16, 2 threads here
    python benchmarks/bench_models.py --device gpu                   # 224x224, batch 32, TF32 off and on
    python benchmarks/bench_models.py --device cpu --models resnet50 --profile
    python benchmarks/bench_models.py --memory                       # ResNet50 fwd+bwd, batch 8, 224x224, CPU

Models: VGG16, ResNet50, DenseNet121 (cnnkit's Keras layouts; torchvision's vgg16, resnet50,
densenet121). A step is forward + loss + backward + SGD(0.01) update on random images and labels
(the time does not depend on the values), read back to the host each step as a training loop does
(cnnkit's train_on_batch returns the loss; the PyTorch loop calls loss.item()).

Method. Each (library, model, setting) runs in its own child process: one OpenMP runtime per process.
(Importing torch into a process slows cnnkit's OpenMP kernels there by one to two orders of
magnitude on a loaded 2-core machine: a ReLU went from 0.03 ms to 21 ms; so peers never share a
process.) Both libraries get the same thread count (OMP_NUM_THREADS and torch.set_num_threads) and
the same niceness (the parent's). A child builds the model, runs --warmup steps, then --steps timed
steps; the figure is the median step (CPU: time.perf_counter; GPU: CUDA events around each step),
quoted as images/s. Peak memory: the child's maximum resident set size on the CPU (the same measure
for both libraries, the model's weights included), and on the GPU the most device memory held
(PyTorch: torch.cuda.max_memory_allocated; cnnkit: the CuPy memory pool's total bytes after the
steps, which keeps every block it ever needed since blocks are cached, not returned).

Equivalence of the peers. torchvision's ResNet50 has no convolution biases (25,557,032 parameters
against Keras' 25,636,712) and puts the stride of a bottleneck in its 3x3 convolution instead of the
first 1x1 (v1.5: more FLOPs than Keras' v1); its VGG16 has dropout and an adaptive 7x7 average pooling
before the classifier: for the comparison the pooling is dropped where the map is not 7x7 and fc1 is
sized to the flattened map, and dropout is removed, as in Keras' VGG16. DenseNet121s agree
(7,978,856 trainable parameters). The table prints both parameter counts.

GPU: cnnkit runs through its device API (model.to("gpu"), CuPy arrays, GEMMs by CuPy's matmul =
cuBLAS). TF32 "on" sets CUPY_TF32=1 for cnnkit (CuPy reads it at import) and
torch.backends.{cuda.matmul,cudnn}.allow_tf32 = True for PyTorch; "off" sets both off. Where cnnkit's
GPU is not usable (no CuPy, no CUDA kernels in the build, no device) its rows say why and the run
goes on. --profile prints cnnkit.profiler's per-op table of one training step of each model.
For a GPU session (one short run; VGG16, ResNet50 and DenseNet121 x TF32 off/on x 2 libraries are 12
children of 5 + 20 steps, a few minutes on an H100/H200):
    CuPy for the machine's CUDA (e.g. cupy-cuda13x), then pip install .   # cnnkit with its CUDA kernels
    a CUDA build of torch 2.13.0 (PyTorch's CUDA wheel index) for the peer, torchvision 0.28.0 --no-deps
    python benchmarks/bench_models.py --device gpu --profile --json $OUT/bench_models_gpu.json
ResNet50's row at batch 32, 224x224 gives its GPU training memory. Without a CUDA torch the PyTorch rows
say so and cnnkit's still run; without cnnkit's GPU, its rows say why.

--rounds N runs N children per library, alternating with the peer (cnnkit first, then PyTorch
first, ...), and takes the median over all their steps: on a shared machine whose load changes
during the run, that exposes both libraries to the same conditions. Nothing here asserts a speed.
"""

import argparse
import json
import os
import statistics
import sys

import numpy as np
from _timing import cupy_events, peak_rss_mib, run_child, time_calls, torch_events, torchvision_models

MODELS = {"vgg16": ("VGG16", "vgg16"), "resnet50": ("ResNet50", "resnet50"),
          "densenet121": ("DenseNet121", "densenet121")}


def rss_now_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ---------------------------------------------------------------------------------------------- cnnkit
def child_cnnkit(a):
    import cnnkit
    from cnnkit import applications, optimizers, profiler

    out = {"lib": "cnnkit"}
    if a.device == "gpu":
        if not cnnkit.device.gpu_available():
            from cnnkit.ops import _backend

            return {**out, "skipped": f"cnnkit's GPU is not usable here: {_backend.cuda_status()[1]}"}
    rng = np.random.default_rng(0)
    model = getattr(applications, MODELS[a.model][0])(weights=None, input_shape=(a.size, a.size, 3),
                                                        classes=a.classes)
    out["params"] = model.count_params()
    if a.device == "gpu":
        model.to("gpu")
    model.compile(optimizer=optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    x = rng.random((a.batch, a.size, a.size, 3), dtype=np.float32)
    y = rng.integers(0, a.classes, a.batch)
    model.train_on_batch(x[:1], y[:1])  # builds the optimizer state and checks the data path once
    # then the step fit runs on a batch already on the device: no per-step input checks or copies
    # (the PyTorch loop has its tensors on the device too)
    xp = model._xp()
    xb, yb = model._inputs_on_device(x, xp), model._labels_for(y, xp)
    rss_before = rss_now_mib()

    def step():
        value, _ = model._train_step(xb, yb)
        return float(value)

    times = time_calls(step, a.steps, a.warmup, cupy_events if a.device == "gpu" else None)
    out.update(step_s=statistics.median(times), all_s=times, peak_rss_mib=peak_rss_mib(),
               rss_after_build_mib=rss_before)
    if a.device == "gpu":
        import cupy

        out["gpu_mem_mib"] = cupy.get_default_memory_pool().total_bytes() / 2**20
    if a.profile:
        with profiler.profile(print_fn=None) as prof:
            step()
        out["profile"] = prof.table()
    return out


# ---------------------------------------------------------------------------------------------- torch
def child_torch(a):
    import torch

    torch.set_num_threads(a.threads)
    out = {"lib": "torch", "torch": torch.__version__}
    dev = "cuda" if a.device == "gpu" else "cpu"
    if dev == "cuda":
        if not torch.cuda.is_available():
            return {**out, "skipped": f"torch {torch.__version__} sees no CUDA device (a CPU build?)"}
        torch.backends.cuda.matmul.allow_tf32 = a.tf32 == "on"
        torch.backends.cudnn.allow_tf32 = a.tf32 == "on"
    tvm = torchvision_models()
    model = tvm[MODELS[a.model][1]](weights=None, num_classes=a.classes)
    if a.model == "vgg16":  # Keras' VGG16: no dropout, fc1 sized to the flattened map
        side = a.size // 32
        model.avgpool = torch.nn.Identity()
        model.classifier[0] = torch.nn.Linear(512 * side * side, 4096)
        for i, layer in enumerate(model.classifier):
            if isinstance(layer, torch.nn.Dropout):
                model.classifier[i] = torch.nn.Identity()
    out["params"] = sum(p.numel() for p in model.parameters())
    model = model.to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    crit = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    x = torch.rand((a.batch, 3, a.size, a.size), generator=g).to(dev)
    y = torch.randint(0, a.classes, (a.batch,), generator=g).to(dev)
    rss_before = rss_now_mib()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()  # the steps' peak, not the warm-up's
    times = time_calls(step, a.steps, events=torch_events if dev == "cuda" else None)
    out.update(step_s=statistics.median(times), all_s=times, peak_rss_mib=peak_rss_mib(),
               rss_after_build_mib=rss_before)
    if dev == "cuda":
        out["gpu_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


# ---------------------------------------------------------------------------------------------- memory
def child_memory(a):
    """ResNet50 training steps (forward + backward + SGD update) at a.batch x 224 x 224 on the CPU:
    the process's peak RSS, weights, gradients and every saved activation included."""
    from cnnkit import applications, optimizers

    model = applications.ResNet50(weights=None)
    model.compile(optimizer=optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((a.batch, 224, 224, 3), dtype=np.float32)
    y = rng.integers(0, 1000, a.batch)
    after_build = rss_now_mib()
    times = time_calls(lambda: model.train_on_batch(x, y), 2)  # the second step also holds the first's cached buffers
    return {"lib": "cnnkit", "batch": a.batch, "rss_after_build_mib": after_build, "peak_rss_mib": peak_rss_mib(),
            "seconds": times}


# ---------------------------------------------------------------------------------------------- parent
def spawn(a, lib, model, tf32="off", mode="train", profile=False):
    args = ["--child", lib, "--mode", mode, "--model", model, "--device", a.device, "--batch", a.batch,
            "--size", a.size, "--classes", a.classes, "--steps", a.steps, "--warmup", a.warmup,
            "--threads", a.threads, "--tf32", tf32] + (["--profile"] if profile else [])
    env = {"OMP_NUM_THREADS": str(a.threads), "OPENBLAS_NUM_THREADS": str(a.threads)}
    if lib == "cnnkit" and a.device == "gpu":
        env["CUPY_TF32"] = "1" if tf32 == "on" else "0"
    r = run_child(__file__, args, env, a.child_timeout)
    return {"lib": lib, "skipped": r["error"]} if "error" in r else r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--models", default="vgg16,resnet50,densenet121")
    p.add_argument("--batch", type=int, default=None, help="default: 16 on the CPU, 32 on the GPU")
    p.add_argument("--size", type=int, default=None, help="default: 64 on the CPU, 224 on the GPU")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 5 CPU, 20 GPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 CPU, 5 GPU)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--tf32", choices=["off", "on", "both", "-"], default="both", help="GPU only")
    p.add_argument("--profile", action="store_true", help="print cnnkit's per-op table of one step")
    p.add_argument("--memory", action="store_true", help="ResNet50 fwd+bwd peak RSS at --batch (default 8), CPU")
    p.add_argument("--libs", default="cnnkit,torch")
    p.add_argument("--rounds", type=int, default=1,
                   help="child processes per library, alternating with the peer; the median is over all steps")
    p.add_argument("--child-timeout", type=int, default=1800)
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--child", choices=["cnnkit", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--mode", default="train", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    unknown = [m for m in a.models.split(",") if m not in MODELS]
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    gpu = a.device == "gpu"
    a.batch = a.batch or (8 if a.memory else 32 if gpu else 16)
    a.size = a.size or (224 if gpu or a.memory else 64)
    a.steps = a.steps or (20 if gpu else 5)
    a.warmup = a.warmup if a.warmup is not None else (5 if gpu else 2)

    if a.child:
        fn = child_memory if a.mode == "memory" else child_cnnkit if a.child == "cnnkit" else child_torch
        print(json.dumps(fn(a)))
        return 0

    results = []
    print(f"# bench_models: device={a.device} batch={a.batch} size={a.size}x{a.size} threads={a.threads} "
          f"nice={os.nice(0)} steps={a.steps} x rounds={a.rounds} (median) warmup={a.warmup}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if a.memory:
        a.device = "cpu"
        r = spawn(a, "cnnkit", "resnet50", mode="memory")
        results.append(r)
        if "skipped" in r:
            print("cnnkit:", r["skipped"])
        else:
            print(f"ResNet50 training step (forward+backward+SGD), batch {a.batch}, 224x224, CPU: peak RSS "
                  f"{r['peak_rss_mib']:.0f} MiB ({r['peak_rss_mib'] / 1024:.2f} GiB; {r['rss_after_build_mib']:.0f} MiB "
                  f"after building the model); steps took {', '.join(f'{t:.1f}' for t in r['seconds'])} s")
    else:
        settings = ["off", "on"] if gpu and a.tf32 == "both" else [a.tf32 if gpu else "-"]
        header = (f"{'model':<12} {'tf32':<4} {'cnnkit img/s':>12} {'torch img/s':>11} {'ratio':>6} "
                  f"{'cnnkit params':>14} {'torch params':>13} {'cnnkit peak MiB':>15} {'torch peak MiB':>14}")
        print(header)
        print("-" * len(header))
        profiles = []
        for name in a.models.split(","):
            for tf32 in settings:
                row = {}
                libs = a.libs.split(",")
                for rnd in range(a.rounds):  # alternate which library goes first, so that a change of
                    for lib in (libs if rnd % 2 == 0 else libs[::-1]):  # load hits both alike
                        r = spawn(a, lib, name, tf32, profile=a.profile and lib == "cnnkit" and rnd == 0)
                        if lib not in row or "skipped" in row[lib]:
                            row[lib] = r
                        elif "skipped" in r:
                            row[lib].setdefault("notes", []).append(r["skipped"])
                        else:
                            prev = row[lib]
                            prev["all_s"] = prev["all_s"] + r["all_s"]
                            prev["step_s"] = statistics.median(prev["all_s"])
                            for key in ("peak_rss_mib", "gpu_mem_mib"):
                                if key in r:
                                    prev[key] = max(prev[key], r[key])
                for lib, r in row.items():
                    r.update(model=name, tf32=tf32, device=a.device, batch=a.batch, size=a.size, rounds=a.rounds)
                    results.append(r)
                c, t = row.get("cnnkit", {}), row.get("torch", {})

                def ips(r):
                    return a.batch / r["step_s"] if "step_s" in r else None

                def mem(r):
                    key = "gpu_mem_mib" if gpu else "peak_rss_mib"
                    return f"{r[key]:.0f}" if key in r else "-"

                ci, ti = ips(c), ips(t)
                ratio = f"{ci / ti:.2f}x" if ci and ti else "-"
                def num(v, fmt):
                    return "-" if v is None else format(v, fmt)

                print(f"{name:<12} {tf32:<4} {num(ci, '.1f'):>12} {num(ti, '.1f'):>11} {ratio:>6} "
                      f"{num(c.get('params'), ','):>14} {num(t.get('params'), ','):>13} {mem(c):>15} {mem(t):>14}")
                for lib, r in row.items():
                    if "skipped" in r:
                        print(f"    {lib}: {r['skipped']}")
                if c.get("profile"):
                    profiles.append((name, tf32, c["profile"]))
        print("\nratio = cnnkit images/s / PyTorch images/s (above 1: cnnkit is faster)."
              f" Peak memory: {'GPU memory held' if gpu else 'the child process maximum RSS'}.")
        for name, tf32, text in profiles:
            print(f"\n## cnnkit.profiler, one training step of {name} ({a.device}"
                  f"{', TF32 ' + tf32 if gpu else ''}, batch {a.batch}, {a.size}x{a.size})\n{text}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
