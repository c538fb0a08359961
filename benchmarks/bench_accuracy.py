"""Test accuracy of real training runs: cnnkit against the same recipe in PyTorch.

    python benchmarks/bench_accuracy.py                      # the tutorial model, 5 epochs, both libraries
    python benchmarks/bench_accuracy.py --model bn --epochs 15 --no-torch

Recipes (shared/BENCHMARKS.md): Fashion-MNIST (and MNIST where its files are at hand), pixels
scaled to [0, 1), Adam(1e-3), batch 32, the tutorial CNN for 5 epochs; the "bn" CNN of
``python -m cnnkit demo --model bn`` with augmentation for up to 15 epochs. PyTorch runs the same
architecture (NCHW, default PyTorch initialization, CrossEntropyLoss on logits) in a child process.
Prints test accuracy after every epoch and the training time. Accuracy depends on the seed; the
table says which seed ran. Nothing here asserts a figure.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def load(dataset):
    from cnnkit import datasets

    (x, y), (xt, yt) = getattr(datasets, dataset).load_data()
    return ((x.astype(np.float32) / 255.0)[..., None], y.astype(np.int64),
            (xt.astype(np.float32) / 255.0)[..., None], yt.astype(np.int64))


def run_cnnkit(args):
    import cnnkit
    from cnnkit.callbacks import Callback
    from cnnkit.demo import build, loss_for, optimizer_for

    x, y, xt, yt = load(args.dataset)
    if args.device == "gpu":
        cnnkit.set_device("gpu")
    cnnkit.utils.set_random_seed(args.seed)
    model = build(args.model)
    steps = -(-len(x) // args.batch_size)
    loss, encode = loss_for(args.model)
    model.compile(optimizer=optimizer_for(args.model, args.epochs, steps), loss=loss, metrics=["accuracy"])
    accs, eval_seconds = [], [0.0]

    class Track(Callback):
        def on_epoch_end(self, epoch, logs=None):
            t = time.perf_counter()
            accs.append(model.evaluate(xt, encode(yt), batch_size=500, verbose=0)[1])
            eval_seconds[0] += time.perf_counter() - t

    t0 = time.perf_counter()
    model.fit(x, encode(y), batch_size=args.batch_size, epochs=args.epochs, callbacks=[Track()], verbose=0)
    return {"acc": accs, "seconds": time.perf_counter() - t0 - eval_seconds[0]}


def run_torch(args):
    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if args.device == "gpu" and torch.cuda.is_available() else "cpu")
    x, y, xt, yt = load(args.dataset)
    X, Y = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev), torch.from_numpy(y).to(dev)
    XT, YT = torch.from_numpy(xt.transpose(0, 3, 1, 2).copy()).to(dev), torch.from_numpy(yt).to(dev)
    steps = -(-len(X) // args.batch_size)
    if args.model == "tutorial":
        model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5408, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        sched, augment = None, (lambda xb: xb)
    else:
        model, augment = torch_bn_recipe(torch, nn)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        total = args.epochs * steps  # cnnkit's CosineDecay(1e-3, total): 1e-3 * (1 + cos(pi * step / total)) / 2
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + np.cos(np.pi * min(k, total) / total)))
    model = model.to(dev)
    from cnnkit.demo import BN_LABEL_SMOOTHING

    crit = nn.CrossEntropyLoss(label_smoothing=BN_LABEL_SMOOTHING if args.model == "bn" else 0.0)
    accs, eval_seconds, t0 = [], 0.0, time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(len(X), device=dev)
        for i in range(0, len(X), args.batch_size):
            idx = perm[i:i + args.batch_size]
            opt.zero_grad()
            crit(model(augment(X[idx])), Y[idx]).backward()
            opt.step()
            if sched is not None:
                sched.step()
        t = time.perf_counter()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(XT[i:i + 500]).argmax(1) for i in range(0, len(XT), 500)])
        accs.append(float((pred == YT).float().mean()))
        eval_seconds += time.perf_counter() - t
    return {"acc": accs, "seconds": time.perf_counter() - t0 - eval_seconds}


def torch_bn_recipe(torch, nn):
    """The "bn" recipe of cnnkit.demo in PyTorch: the same layers, with Keras' BatchNormalization
    defaults (eps 1e-3, moving averages with momentum 0.99, which is PyTorch's momentum 0.01), and a
    random horizontal flip of each training image. Returns (model, augment)."""

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01), nn.ReLU()]

    model = nn.Sequential(
        *block(1, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        *block(64, 128), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3 * 3 * 128, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))

    def augment(xb):
        flip = torch.rand(xb.shape[0], device=xb.device) < 0.5
        return torch.where(flip[:, None, None, None], xb.flip(3), xb)

    return model, augment


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "mnist"])
    p.add_argument("--model", default="tutorial", choices=["tutorial", "bn"])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seeds", type=lambda v: [int(s) for s in v.split(",")], default=[0],
                   help="comma-separated seeds; each library trains once per seed and the mean is reported")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="CPU threads for both libraries (OpenMP, OpenBLAS, torch); 1 on a busy machine, "
                        "where threads that wait for each other cost far more than they bring")
    p.add_argument("--no-torch", action="store_true", help="train cnnkit only (the same as --libs cnnkit)")
    p.add_argument("--libs", type=lambda v: v.split(","), default=["cnnkit", "torch"],
                   help="comma-separated libraries to train, of cnnkit and torch (default both); two "
                        "invocations with --threads 1 can run the libraries side by side on 2 cores")
    p.add_argument("--child", choices=["cnnkit", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_cnnkit(args) if args.child == "cnnkit" else run_torch(args)))
        return
    unknown = sorted(set(args.libs) - {"cnnkit", "torch"})
    if unknown:
        p.error(f"--libs: unknown {', '.join(unknown)} (choose from cnnkit, torch)")
    libs = [lib for lib in ("cnnkit", "torch") if lib in args.libs and not (lib == "torch" and args.no_torch)]
    print(f"{args.dataset}, model {args.model}, batch {args.batch_size}, {args.epochs} epochs, seeds "
          f"{','.join(map(str, args.seeds))}, {args.device}, {args.threads} thread(s); test accuracy after each epoch, training time "
          "without the per-epoch test evaluation", flush=True)
    passthrough = list(argv if argv is not None else sys.argv[1:])
    finals = {lib: [] for lib in libs}
    for seed in args.seeds:
        for lib in libs:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", lib, "--seed", str(seed)] + passthrough
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                print(f"{lib:7} seed {seed} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            finals[lib].append(r["acc"][-1])
            curve = " ".join(f"{a * 100:.2f}" for a in r["acc"])
            print(f"{lib:7} seed {seed}: {curve}; final {r['acc'][-1] * 100:.2f}%; training {r['seconds']:.0f} s",
                  flush=True)
    for lib, accs in finals.items():
        if accs:
            print(f"{lib:7} mean final test accuracy over {len(accs)} seed(s): {np.mean(accs) * 100:.2f}% "
                  f"(min {min(accs) * 100:.2f}, max {max(accs) * 100:.2f})")

if __name__ == "__main__":
    main()
