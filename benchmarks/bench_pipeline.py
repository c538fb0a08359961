"""Training from a Sequence that augments its batches in NumPy, with and without the background
prefetch of batches (cnnkit.config.prefetch_batches), on the tutorial model.

    python benchmarks/bench_pipeline.py                       # 12,000 images, batch 64, 2 threads
    python benchmarks/bench_pipeline.py --samples 6000 --repeat 5

The Sequence is what a Keras user writes with ImageDataGenerator-style augmentation: each batch is
gathered from the dataset, flipped horizontally at random and shifted by up to 3 pixels, in NumPy,
on whichever thread reads it. Without prefetch the step waits for that work; with prefetch the next
batches are prepared on a background thread while the kernels (which release the GIL) train on the
current one. Each configuration runs in its own child process; the median epoch of --repeat is
reported, with the images per second and the speed-up. The trained weights are compared too: the
prefetch must not change them. Nothing here asserts a speed.
"""

import argparse
import json
import os
import sys

import numpy as np
from _timing import median_ms, peak_rss_mib, render_table, run_child


def load_images(samples):
    try:
        from cnnkit.datasets import fashion_mnist

        (x, y), _ = fashion_mnist.load_data()
        return (x[:samples].astype(np.float32) / 255.0)[..., None], y[:samples].astype(np.int64), "Fashion-MNIST"
    except Exception:
        rng = np.random.default_rng(0)
        return rng.random((samples, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, samples), "random data"


def child(args):
    import cnnkit
    from cnnkit.demo import build

    cnnkit.config.prefetch_batches = args.prefetch
    x, y, source = load_images(args.samples)

    class Augmented(cnnkit.utils.Sequence):
        def __len__(self):
            return -(-len(x) // args.batch_size)

        def __getitem__(self, i):
            rng = np.random.default_rng(i)  # per batch: the same images whichever thread reads them
            xb = x[i * args.batch_size:(i + 1) * args.batch_size]
            flip = rng.random(len(xb)) < 0.5
            xb = np.where(flip[:, None, None, None], xb[:, :, ::-1], xb)
            dy, dx = rng.integers(-3, 4, 2)
            xb = np.roll(np.roll(xb, dy, axis=1), dx, axis=2)
            return np.ascontiguousarray(xb), y[i * args.batch_size:(i + 1) * args.batch_size]

    cnnkit.utils.set_random_seed(0)
    model = build("tutorial")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    seq = Augmented()
    model.fit(seq, epochs=1, verbose=0, shuffle=False)  # warm-up
    ms = median_ms(lambda: model.fit(seq, epochs=1, verbose=0, shuffle=False), args.repeat, warmup=0)
    checksum = float(sum(np.abs(w).sum() for w in model.get_weights()))
    return {"source": source, "images_per_s": len(x) / (ms / 1e3), "epoch_ms": ms, "checksum": checksum,
            "rss_mib": peak_rss_mib()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=12000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--prefetch", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    env = {"OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads)}
    rows, results = [], {}
    for depth in (0, 2):
        r = run_child(__file__, ["--child", "--prefetch", depth, "--samples", args.samples, "--batch-size",
                                 args.batch_size, "--repeat", args.repeat], env=env)
        if "error" in r:
            print(f"prefetch {depth}: failed: {r['error']}", file=sys.stderr)
            continue
        results[depth] = r
    base = results.get(0, {}).get("images_per_s")
    for depth, r in results.items():
        speed = f"{r['images_per_s'] / base:.2f}x" if base else "-"
        rows.append([depth, f"{r['epoch_ms'] / 1e3:.2f} s", f"{r['images_per_s']:.0f}", speed, f"{r['rss_mib']:.0f}"])
    source = next(iter(results.values()), {}).get("source", "?")
    print(render_table(["prefetch_batches", "epoch (median)", "images/s", "vs no prefetch", "peak RSS MiB"], rows,
                       title=f"tutorial model from an augmenting Sequence: {args.samples} {source} images, batch "
                             f"{args.batch_size}, {args.threads} thread(s), median of {args.repeat} epochs"))
    if len(results) == 2:
        same = results[0]["checksum"] == results[2]["checksum"]
        print(f"trained weights {'identical' if same else 'DIFFERENT'} with and without prefetch")


if __name__ == "__main__":
    main()
