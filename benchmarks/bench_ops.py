"""Time cnnkit's ops against the NumPy reference and PyTorch on the shapes of shared/BENCHMARKS.md.

    python benchmarks/bench_ops.py --device cpu            # the full CPU table
    python benchmarks/bench_ops.py --device cpu --quick    # fewer shapes and repeats
    python benchmarks/bench_ops.py --device all            # adds the GPU columns where a GPU is usable

Method: every timing is the median of repeated runs after warm-up. PyTorch runs in a child process
of this run, on the same data (fixed seeds) and with the same thread count, because a process has
one OpenMP runtime: whichever library loads it first sets its wait policy for both, and cnnkit's
(sleeping threads) slows PyTorch by up to 1.7x while PyTorch's (spinning) slows cnnkit. Each library
thus runs with its own defaults. GPU work is timed with CUDA events. Ratios
are quoted against the peers measured here ("x torch" > 1 means cnnkit is faster). Peak extra memory
is measured in a separate, untimed call with tracemalloc (NumPy reports its allocations to it):
the most memory the call held at once beyond its inputs. Nothing here asserts a speed.
"""

import argparse
import gc
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc

import numpy as np

import cnnkit
from cnnkit import ops
from cnnkit.ops import _backend
from cnnkit.ops import conv as conv_ops
from cnnkit.ops import reference as ref

# (id, N cpu, C_in, H=W, C_out, k, stride, pad) from shared/BENCHMARKS.md
CONV_SHAPES = [
    ("C1", 128, 1, 28, 32, 3, 1, 0),
    ("C2", 128, 32, 14, 64, 3, 1, 1),
    ("C3", 32, 64, 56, 64, 3, 1, 1),
    ("C4", 32, 256, 14, 256, 3, 1, 1),
    ("C5", 32, 3, 224, 64, 7, 2, 3),
    ("C6", 32, 256, 28, 64, 1, 1, 0),
]
POOLS = [  # name, cnnkit fwd, cnnkit bwd, kwargs, torch fn name, torch kwargs
    ("max 2x2/2", "max_pool2d", dict(pool_size=2, strides=2, padding="valid"), ("max_pool2d", dict(kernel_size=2, stride=2))),
    ("max 3x3/2 p1", "max_pool2d", dict(pool_size=3, strides=2, padding=1), ("max_pool2d", dict(kernel_size=3, stride=2, padding=1))),
    ("avg 2x2/2", "avg_pool2d", dict(pool_size=2, strides=2, padding="valid"), ("avg_pool2d", dict(kernel_size=2, stride=2))),
    ("global avg", "global_avg_pool2d", dict(), ("adaptive_avg_pool2d", dict(output_size=1))),
]


def median_ms(fn, repeat, warmup=2, min_time=0.0):
    """Median wall time of fn() in ms over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    t_end = time.perf_counter() + min_time
    while len(times) < repeat or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= 10 * repeat:
            break
    return statistics.median(times)


def peak_extra_mib(fn):
    """Most memory (MiB) fn() held at once, as NumPy reports it to tracemalloc, in an untimed call.
    The convolution's cached im2col scratch is released first so that it is counted."""
    conv_ops.release_workspace()
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


class Table:
    COLS = ("op", "shape", "impl", "ms", "rate", "x torch", "x ref", "peak MiB")

    def __init__(self):
        self.rows = []

    def add(self, op, shape, impl, ms, rate="", vs_torch=None, vs_ref=None, mem=None):
        self.rows.append((op, shape, impl, f"{ms:.3f}" if ms is not None else "-", rate,
                          f"{vs_torch:.2f}" if vs_torch else "", f"{vs_ref:.0f}" if vs_ref else "",
                          f"{mem:.1f}" if mem is not None else ""))
        r = self.rows[-1]
        print("  " + " | ".join(str(c) for c in r), flush=True)

    def render(self):
        widths = [max(len(str(r[i])) for r in [self.COLS, *self.rows]) for i in range(len(self.COLS))]
        line = lambda r: " | ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
        out = [line(self.COLS), "-+-".join("-" * w for w in widths)]
        out += [line(r) for r in self.rows]
        return "\n".join(out)


def gflops(flops, ms):
    return f"{flops / ms / 1e6:.1f} GFLOP/s"


def gbps(nbytes, ms):
    return f"{nbytes / ms / 1e6:.1f} GB/s"


def header(peer_info):
    info = _backend._cpu().lib.build_info()
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"cnnkit {cnnkit.__version__} ({info['build_type']}, "
          f"{'native -march=native' if info['native_build'] else 'portable'} build, SIMD {','.join(info['simd'])}, "
          f"{_backend._cpu().lib.get_num_threads()} OpenMP threads, "
          f"OMP_WAIT_POLICY={'PASSIVE' if _backend.threads_sleep else 'ACTIVE'}), numpy {np.__version__}")
    print(f"CPU: {cpu}, {os.cpu_count()} logical cores")
    print(f"peer: {peer_info}")


# Filled by the peer child process (PEER_MODE) and read back by the parent: PyTorch's times per case.
PEER = {}
PEER_MODE = False


def run_peer(argv, threads):
    """Time PyTorch in a child process with this process's environment as the user set it (cnnkit
    restores OMP_WAIT_POLICY after loading its runtime), on the same data; returns (info, times)."""
    import json
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        cmd = [sys.executable, os.path.abspath(__file__), *argv, "--peer-json", tmp.name,
               "--peer-threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return f"PyTorch peer failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}", {}
        with open(tmp.name) as f:
            data = json.load(f)
    return data.pop("_info"), data


def bench_conv(table, args, torch, dtype=np.float32):
    rng = np.random.default_rng(0)
    shapes = CONV_SHAPES if not args.quick else [s for s in CONV_SHAPES if s[0] in ("C1", "C2", "C6")]
    ratios_fb = []
    for sid, n, cin, hw, cout, k, s, p in shapes:
        n = n if not args.quick else max(1, n // 4)
        x = rng.standard_normal((n, hw, hw, cin)).astype(dtype)
        w = (rng.standard_normal((k, k, cin, cout)) / math.sqrt(k * k * cin)).astype(dtype)
        b = rng.standard_normal(cout).astype(dtype)
        kw = dict(strides=s, padding=p)
        ho = (hw + 2 * p - k) // s + 1
        dy = rng.standard_normal((n, ho, ho, cout)).astype(dtype)
        flops = 2 * n * cout * cin * k * k * ho * ho
        shape = f"{sid} N={n} {cin}->{cout} {hw}x{hw} k{k} s{s} p{p}"
        fwd = lambda: ops.conv2d(x, w, b, **kw)  # noqa: E731
        fb = lambda: (ops.conv2d(x, w, b, **kw), ops.conv2d_backward(dy, x, w, b, **kw))  # noqa: E731
        if PEER_MODE:
            PEER[f"conv {sid}"] = torch_conv_times(torch, x, w, b, dy, s, p, args.repeat)
            continue
        t_torch = PEER.get(f"conv {sid}", {})
        t_ref = {}
        if not args.no_ref and not PEER_MODE:
            rx, rw, rb = x, w, b
            t_ref["fwd"] = median_ms(lambda: ref.conv2d(rx, rw, rb, **kw), 1, warmup=0)
            t_ref["fb"] = median_ms(lambda: (ref.conv2d(rx, rw, rb, **kw), ref.conv2d_backward(dy, rx, rw, rb, **kw)),
                                    1, warmup=0)
        for label, fn, mult in (("fwd", fwd, 1), ("fwd+bwd", fb, 3)):
            key = "fwd" if label == "fwd" else "fb"
            ms = median_ms(fn, args.repeat)
            mem = peak_extra_mib(fn)
            tt = t_torch.get(key)
            table.add(f"conv2d {label}", shape, "cnnkit", ms, gflops(mult * flops, ms),
                      tt[0] / ms if tt else None, t_ref[key] / ms if key in t_ref else None, mem)
            if tt:
                table.add(f"conv2d {label}", shape, f"torch {tt[1]}", tt[0], gflops(mult * flops, tt[0]))
            if key in t_ref:
                table.add(f"conv2d {label}", shape, "numpy ref", t_ref[key], gflops(mult * flops, t_ref[key]))
            if tt and key == "fb" and sid != "C1":
                ratios_fb.append(ms / tt[0])
    if ratios_fb:
        gm = math.exp(sum(map(math.log, ratios_fb)) / len(ratios_fb))
        print(f"conv2d fwd+bwd, cnnkit time / torch time, geometric mean over "
              f"{len(ratios_fb)} shapes (C2-C6 present): {gm:.2f}x")
    if not args.quick and not PEER_MODE:
        print("conv2d workspace at N=256 (limit "
              f"{cnnkit.config.workspace_limit / 2**20:g} MiB): peak extra memory beyond inputs and outputs")
        for sid, _, cin, hw, cout, k, s, p in shapes[1:]:
            x = rng.standard_normal((256, hw, hw, cin)).astype(dtype)
            w = (rng.standard_normal((k, k, cin, cout)) / math.sqrt(k * k * cin)).astype(dtype)
            kw = dict(strides=s, padding=p)
            y = ops.conv2d(x, w, None, **kw)
            out_mib = y.nbytes / 2**20
            fwd_extra = peak_extra_mib(lambda: ops.conv2d(x, w, None, **kw)) - out_mib
            dy = y
            grads_mib = (x.nbytes + w.nbytes) / 2**20
            bwd_extra = peak_extra_mib(lambda: ops.conv2d_backward(dy, x, w, None, **kw)) - grads_mib
            unchunked = 256 * y.shape[1] * y.shape[2] * k * k * cin * x.itemsize / 2**20
            print(f"  {sid} N=256: forward {fwd_extra:.1f} MiB, backward {bwd_extra:.1f} MiB "
                  f"(an unchunked im2col would take {unchunked:.0f} MiB)")
            del x, y, dy


def torch_conv_times(torch, x, w, b, dy, s, p, repeat):
    """Best of NCHW and channels_last PyTorch layouts: {'fwd': (ms, layout), 'fb': (ms, layout)}."""
    F = torch.nn.functional
    best = {}
    for layout in ("NCHW", "NHWC"):
        mf = torch.channels_last if layout == "NHWC" else torch.contiguous_format
        tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=mf).requires_grad_(True)
        tw = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(memory_format=mf).requires_grad_(True)
        tb = torch.from_numpy(b).requires_grad_(True)
        tdy = torch.from_numpy(dy).permute(0, 3, 1, 2).contiguous(memory_format=mf)

        def fwd():
            with torch.no_grad():
                return F.conv2d(tx, tw, tb, stride=s, padding=p)

        def fb():
            tx.grad = tw.grad = tb.grad = None
            F.conv2d(tx, tw, tb, stride=s, padding=p).backward(tdy)

        for key, fn in (("fwd", fwd), ("fb", fb)):
            ms = median_ms(fn, repeat)
            if key not in best or ms < best[key][0]:
                best[key] = (ms, layout)
    return best


def bench_pool(table, args, torch, dtype=np.float32):
    rng = np.random.default_rng(1)
    n = 32 if not args.quick else 8
    x = rng.standard_normal((n, 56, 56, 64)).astype(dtype)
    shape = f"({n}, 56, 56, 64)"
    F = torch.nn.functional if torch is not None else None
    for name, fname, kw, (tname, tkw) in POOLS:
        f = getattr(ops, fname)
        fb_ = getattr(ops, fname + "_backward")
        rf, rfb = getattr(ref, fname), getattr(ref, fname + "_backward")
        y_shape = rf(x[:1], **kw).shape
        y_shape = (n, *y_shape[1:])
        dy = rng.standard_normal(y_shape).astype(dtype)
        fwd = lambda: f(x, **kw)  # noqa: E731
        fb = lambda: (f(x, **kw), fb_(dy, x, **kw))  # noqa: E731
        nb_fwd = x.nbytes + dy.nbytes
        nb_fb = nb_fwd + 2 * x.nbytes + dy.nbytes
        if PEER_MODE:
            tx = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)  # channels_last view
            tdy = torch.from_numpy(dy)
            tdy = tdy.reshape(n, 1, 1, -1).permute(0, 3, 1, 2) if dy.ndim == 2 else tdy.permute(0, 3, 1, 2)
            tf = getattr(F, tname)

            def tfwd():
                with torch.no_grad():
                    return tf(tx, **tkw)

            def tfb():
                tx.grad = None
                tf(tx, **tkw).backward(tdy)

            PEER[f"pool {name}"] = {"fwd": median_ms(tfwd, args.repeat), "fb": median_ms(tfb, args.repeat)}
            continue
        t = PEER.get(f"pool {name}", {})
        r = {}
        if not args.no_ref:
            r = {"fwd": median_ms(lambda: rf(x, **kw), 1, warmup=0),
                 "fb": median_ms(lambda: (rf(x, **kw), rfb(dy, x, **kw)), 1, warmup=0)}
        for label, fn, nb, key in (("fwd", fwd, nb_fwd, "fwd"), ("fwd+bwd", fb, nb_fb, "fb")):
            ms = median_ms(fn, args.repeat)
            table.add(f"{name} {label}", shape, "cnnkit", ms, gbps(nb, ms), t[key] / ms if t else None,
                      r[key] / ms if r else None, peak_extra_mib(fn))
            if t:
                table.add(f"{name} {label}", shape, "torch NHWC", t[key], gbps(nb, t[key]))
        if fname == "max_pool2d" and hasattr(ops, "_max_pool2d_forward_saved"):
            def layer_fb():
                yy, am = ops._max_pool2d_forward_saved(x, **kw)
                return ops._max_pool2d_backward_saved(dy, am, x.shape, **kw)

            ms = median_ms(layer_fb, args.repeat)
            table.add(f"{name} fwd+bwd (saved argmax)", shape, "cnnkit", ms, gbps(nb_fb, ms),
                      t["fb"] / ms if t else None, r["fb"] / ms if r else None, peak_extra_mib(layer_fb))


def bench_relu(table, args, torch, dtype=np.float32):
    rng = np.random.default_rng(2)
    n = 32 if not args.quick else 8
    x = rng.standard_normal((n, 112, 112, 64)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    out = np.empty_like(x)
    shape = f"({n}, 112, 112, 64)"
    if PEER_MODE:
        t = {}
        tx, tout, tdy = torch.from_numpy(x.copy()), torch.from_numpy(out), torch.from_numpy(dy)
        t["fresh"] = median_ms(lambda: torch.relu(tx), args.repeat)
        t["out"] = median_ms(lambda: torch.clamp_min(tx, 0, out=tout), args.repeat)
        t["inplace"] = median_ms(lambda: torch.relu_(tx), args.repeat)
        txg = torch.from_numpy(x).requires_grad_(True)

        def tfb():
            txg.grad = None
            torch.relu(txg).backward(tdy)

        t["fb"] = median_ms(tfb, args.repeat)
        PEER["relu"] = t
        return
    t = PEER.get("relu", {})
    r = {}
    if not args.no_ref:
        r["fresh"] = median_ms(lambda: ref.relu(x), 1, warmup=0)
        r["fb"] = median_ms(lambda: (ref.relu(x), ref.relu_backward(dy, x)), 1, warmup=0)
    xi = x.copy()
    cases = [("fwd (fresh output)", "fresh", lambda: ops.relu(x), 2 * x.nbytes),
             ("fwd (preallocated out)", "out", lambda: ops.relu(x, out=out), 2 * x.nbytes),
             ("fwd (in place)", "inplace", lambda: ops.relu(xi, out=xi), 2 * x.nbytes),
             ("fwd+bwd", "fb", lambda: (ops.relu(x), ops.relu_backward(dy, x)), 5 * x.nbytes)]
    for label, key, fn, nb in cases:
        ms = median_ms(fn, args.repeat)
        table.add(f"relu {label}", shape, "cnnkit", ms, gbps(nb, ms), t[key] / ms if key in t else None,
                  r[key] / ms if key in r else None, peak_extra_mib(fn))
        if key in t:
            table.add(f"relu {label}", shape, "torch", t[key], gbps(nb, t[key]))


def bench_loss(table, args, torch, dtype=np.float32):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((4096, 1000)) * 3).astype(dtype)
    labels = rng.integers(0, 1000, 4096)
    shape = "(4096, 1000)"
    fwd = lambda: ops.softmax_cross_entropy(logits, labels)  # noqa: E731
    fb = lambda: (ops.softmax_cross_entropy(logits, labels), ops.softmax_cross_entropy_backward(logits, labels))  # noqa: E731
    cases = [("fwd", "fwd", fwd, logits.nbytes), ("fwd+bwd", "fb", fb, 3 * logits.nbytes)]
    if hasattr(ops, "_softmax_cross_entropy_fused"):
        cases.append(("fwd+bwd (fused)", "fb", lambda: ops._softmax_cross_entropy_fused(logits, labels),
                      2 * logits.nbytes))
    if PEER_MODE:
        F = torch.nn.functional
        tl, tlab = torch.from_numpy(logits), torch.from_numpy(labels)
        tlg = torch.from_numpy(logits.copy()).requires_grad_(True)

        def tfwd():
            with torch.no_grad():
                return F.cross_entropy(tl, tlab)

        def tfb():
            tlg.grad = None
            F.cross_entropy(tlg, tlab).backward()

        PEER["loss"] = {"fwd": median_ms(tfwd, args.repeat), "fb": median_ms(tfb, args.repeat)}
        return
    t = PEER.get("loss", {})
    r = {}
    if not args.no_ref:
        r = {"fwd": median_ms(lambda: ref.softmax_cross_entropy(logits, labels), 1, warmup=0),
             "fb": median_ms(lambda: (ref.softmax_cross_entropy(logits, labels),
                                      ref.softmax_cross_entropy_backward(logits, labels)), 1, warmup=0)}
    for label, key, fn, nb in cases:
        ms = median_ms(fn, args.repeat)
        table.add(f"softmax-xent {label}", shape, "cnnkit", ms, gbps(nb, ms), t[key] / ms if t else None,
                  r[key] / ms if r else None, peak_extra_mib(fn))
        if t and label in ("fwd", "fwd+bwd"):
            table.add(f"softmax-xent {label}", shape, "torch", t[key], gbps(nb, t[key]))


def main(argv=None):
    global PEER_MODE
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "gpu", "all"], default="cpu")
    p.add_argument("--quick", action="store_true", help="smaller batches, fewer shapes and repeats")
    p.add_argument("--repeat", type=int, default=None, help="timed repeats per measurement (default 10, quick 3)")
    p.add_argument("--ops", default="conv,pool,relu,loss", help="comma-separated subset of conv,pool,relu,loss")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    p.add_argument("--no-ref", action="store_true", help="skip the (slow) NumPy reference")
    p.add_argument("--peer-json", help=argparse.SUPPRESS)  # internal: run as the PyTorch peer
    p.add_argument("--peer-threads", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.repeat = args.repeat or (3 if args.quick else 10)
    sections = (("conv", bench_conv), ("pool", bench_pool), ("relu", bench_relu), ("loss", bench_loss))
    wanted = set(args.ops.split(","))

    if args.peer_json:  # the child: PyTorch only, never loads cnnkit's kernels
        import json

        import torch

        torch.set_num_threads(args.peer_threads)
        PEER_MODE = True
        for name, fn in sections:
            if name in wanted:
                fn(None, args, torch)
        PEER["_info"] = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
                         f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, timed in a child process")
        with open(args.peer_json, "w") as f:
            json.dump(PEER, f)
        return 0

    threads = _backend._cpu().lib.get_num_threads()
    peer_info = "skipped (--no-torch)"
    if not args.no_torch:
        try:
            import importlib.util

            if importlib.util.find_spec("torch") is None:
                raise ImportError
            peer_info, times = run_peer(argv, threads)
            PEER.update(times)
        except ImportError:
            peer_info = "PyTorch not installed (pip install torch==2.13.0 for the peer columns)"
    header(peer_info)
    if args.device in ("gpu", "all"):
        print("GPU: cnnkit has no CUDA kernels in this build yet (cnnkit._cuda); GPU columns skipped")
        if args.device == "gpu":
            return 0
    table = Table()
    for name, fn in sections:
        if name in wanted:
            print(f"[{name}]", flush=True)
            fn(table, args, None)
    print()
    print(table.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
