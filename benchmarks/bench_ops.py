"""Time cnnkit's ops against the NumPy reference and PyTorch on the shapes of shared/BENCHMARKS.md.

    python benchmarks/bench_ops.py --device cpu            # the full CPU table
    python benchmarks/bench_ops.py --device cpu --quick    # fewer shapes and repeats
    python benchmarks/bench_ops.py --device all            # one table per op: CPU and GPU side by side
    python benchmarks/bench_ops.py --device gpu            # the GPU columns only (quick on a GPU machine)
    OMP_NUM_THREADS=1 python benchmarks/bench_ops.py --ops adam --no-torch  # Adam step: NumPy vs fused

Method: every timing is the median of repeated runs after warm-up. PyTorch runs in a child process
of this run, on the same data (fixed seeds) and with the same thread count, because a process has
one OpenMP runtime: whichever library loads it first sets its wait policy for both, and cnnkit's
(sleeping threads) slows PyTorch by up to 1.7x while PyTorch's (spinning) slows cnnkit. Each library
thus runs with its own defaults. GPU work is timed with CUDA events. Ratios
are quoted against the peers measured here ("x torch" > 1 means cnnkit is faster). Peak extra memory
is measured in a separate, untimed call with tracemalloc (NumPy reports its allocations to it):
the most memory the call held at once beyond its inputs. Nothing here asserts a speed.

GPU mode (--device gpu|all): one table per op with, for each implementation, forward and
forward+backward ms and TFLOP/s (convolutions) or GB/s (memory-bound ops): cnnkit on the GPU
(FP32, and a TF32 row with cnnkit.config.allow_tf32), PyTorch on the GPU (cuDNN, FP32 with TF32 off,
and a TF32 row; cudnn.benchmark on, best of NCHW and channels_last), a naive CuPy im2col + matmul
baseline (forward only), and with --device all the CPU rows too (NumPy reference, cnnkit, PyTorch,
at the CPU batch sizes). GPU work is timed with CUDA events around each call after warm-up, median
of the repeats; GPU batches follow shared/BENCHMARKS.md (N=256 for convolutions, 128 for pooling).
"x CPU" is the per-image speed-up of that row over cnnkit on the CPU (CPU time scaled to the GPU
batch), "x torch GPU" PyTorch's GPU time over cnnkit's (cuDNN for convolutions; > 1: cnnkit faster). "GPU MiB" is
the memory CuPy's pool held after one untimed call from an emptied pool: the call's peak.
"""

import argparse
import functools
import gc
import math
import os
import platform
import sys
import tracemalloc

import numpy as np
from _timing import cupy_events, median_ms, render_table, run_child, torch_events, torch_missing

import cnnkit
from cnnkit import ops
from cnnkit.ops import _backend
from cnnkit.ops import convolution as conv_ops
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
        return render_table(self.COLS, self.rows)


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
    data = run_child(__file__, [*argv, "--peer", "--peer-threads", threads])
    if "error" in data:
        return f"PyTorch peer {data['error']}", {}
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
        if fname == "max_pool2d":  # as MaxPooling2D runs it: the forward keeps the argmax for the backward
            def layer_fb():
                yy, am = ops.max_pool2d(x, **kw, return_argmax=True)
                return ops.max_pool2d_backward_from_argmax(dy, am, x.shape, **kw)

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
    cases.append(("fwd+bwd (fused)", "fb", lambda: ops.softmax_cross_entropy(logits, labels, return_grad=True),
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


# VGG16's weights (ImageNet head): 13 3x3 convolutions and 3 dense layers, 138,357,544 parameters.
_VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512),
                (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
VGG16_SHAPES = [s for cin, cout in _VGG16_CONVS for s in ((3, 3, cin, cout), (cout,))] + [
    s for fin, fout in ((25088, 4096), (4096, 4096), (4096, 1000)) for s in ((fin, fout), (fout,))]


def numpy_adam_step(w, g, m, v, tmp, lr, t, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """One Adam step as cnnkit.optimizers wrote it before the fused kernel: NumPy array operations
    in place through a scratch array (12 passes over memory per variable)."""
    alpha = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    np.subtract(g, m, out=tmp)
    tmp *= 1 - beta_1
    m += tmp
    np.multiply(g, g, out=tmp)
    tmp -= v
    tmp *= 1 - beta_2
    v += tmp
    np.sqrt(v, out=tmp)
    tmp += epsilon
    np.divide(m, tmp, out=tmp)
    tmp *= alpha
    w -= tmp


def bench_adam(table, args, torch, dtype=np.float32):
    """An Adam step over every variable of a model: VGG16's 138M parameters (--quick: 25M in one
    array), the old NumPy path against the fused kernel (ops.adam_update), same data. "rate" is the
    fused pass's traffic (read g, w, m, v; write w, m, v) over each row's time; "x ref" and the
    printed line give NumPy's time over the fused kernel's."""
    if PEER_MODE:
        return
    rng = np.random.default_rng(4)
    shapes = [(25_000_000,)] if args.quick else VGG16_SHAPES
    n = sum(math.prod(s) for s in shapes)
    w = [rng.standard_normal(s, dtype=np.float32).astype(dtype) for s in shapes]
    g = [rng.standard_normal(s, dtype=np.float32).astype(dtype) * 0.01 for s in shapes]
    m = [np.zeros_like(a) for a in w]
    v = [np.zeros_like(a) for a in w]
    tmp = np.empty(max(a.size for a in w), dtype)
    step = {"numpy": 0, "fused": 0}

    def old():
        step["numpy"] += 1
        for wi, gi, mi, vi in zip(w, g, m, v):
            numpy_adam_step(wi, gi, mi, vi, tmp[: wi.size].reshape(wi.shape), 1e-3, step["numpy"])

    def fused():
        step["fused"] += 1
        for wi, gi, mi, vi in zip(w, g, m, v):
            ops.adam_update(wi, gi, mi, vi, learning_rate=1e-3, step=step["fused"])

    shape = f"{len(shapes)} variables, {n / 1e6:.1f}M params"
    repeat = max(3, args.repeat // 2)
    old_ms = median_ms(old, repeat)
    new_ms = median_ms(fused, repeat)
    nbytes = 6 * n * np.dtype(dtype).itemsize  # fused: read g, w, m, v; write w, m, v (one pass)
    table.add("adam step (NumPy, 12 passes)", shape, "numpy", old_ms, gbps(nbytes, old_ms))
    table.add("adam step (fused kernel)", shape, "cnnkit", new_ms, gbps(nbytes, new_ms), None, old_ms / new_ms)
    print(f"  adam step, {shape}: NumPy path {old_ms:.1f} ms, fused {new_ms:.1f} ms: {old_ms / new_ms:.2f}x",
          flush=True)


def main(argv=None):
    global PEER_MODE
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "gpu", "all"], default="cpu")
    p.add_argument("--quick", action="store_true", help="smaller batches, fewer shapes and repeats")
    p.add_argument("--repeat", type=int, default=None, help="timed repeats per measurement (default 10, quick 3)")
    p.add_argument("--ops", default="conv,pool,relu,loss,adam",
                   help="comma-separated subset of conv,pool,relu,loss,adam")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    p.add_argument("--no-ref", action="store_true", help="skip the (slow) NumPy reference")
    p.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)  # internal: run as the PyTorch peer
    p.add_argument("--peer-threads", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.repeat = args.repeat or (3 if args.quick else 10)
    sections = (("conv", bench_conv), ("pool", bench_pool), ("relu", bench_relu), ("loss", bench_loss),
                ("adam", bench_adam))
    wanted = set(args.ops.split(","))

    if args.peer:  # the child: PyTorch only, never loads cnnkit's kernels; its times go out as JSON
        import json

        import torch

        torch.set_num_threads(args.peer_threads)
        PEER_MODE = True
        if args.device in ("gpu", "all"):
            torch_gpu_peer(args, wanted, torch)
        if args.device in ("cpu", "all"):
            for name, fn in sections:
                if name in wanted:
                    fn(None, args, torch)
        gpu = (f", GPU {torch.cuda.get_device_name()} cuDNN {torch.backends.cudnn.version()}"
               if torch.cuda.is_available() else ", no CUDA")
        PEER["_info"] = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
                         f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}{gpu}, timed in a child process")
        print(json.dumps(PEER))
        return 0

    threads = _backend._cpu().lib.get_num_threads()
    peer_info = "skipped (--no-torch)"
    if not args.no_torch:
        peer_info = torch_missing()
        if peer_info is None:
            peer_info, times = run_peer(argv, threads)
            PEER.update(times)
    header(peer_info)
    if args.device in ("gpu", "all"):
        return gpu_main(args, wanted)
    table = Table()
    for name, fn in sections:
        if name in wanted:
            print(f"[{name}]", flush=True)
            fn(table, args, None)
    print()
    print(table.render())
    return 0


# ------------------------------------------------------------------------------------------------
# GPU mode: one table per op, CPU and GPU implementations side by side.

GPU_CONV_N = 256
GPU_POOL_N = 128
GPU_RELU_N = 32
COPY_GBPS = 2950.0  # H100 device-to-device copy (read + write), shared/BENCHMARKS.md


# GPU work: CUDA events on the current stream, three warm-up calls
gpu_ms = functools.partial(median_ms, warmup=3, events=cupy_events)


def gpu_pool_mib(fn):
    """MiB CuPy's pool holds after one call from an emptied pool: the call's peak device memory."""
    import cupy

    conv_ops.release_workspace()
    pool = cupy.get_default_memory_pool()
    cupy.cuda.get_current_stream().synchronize()
    pool.free_all_blocks()
    fn()
    cupy.cuda.get_current_stream().synchronize()
    return pool.total_bytes() / 2**20


def naive_cupy_conv(x, w, stride, pad):
    """The baseline of shared/BENCHMARKS.md: pad, im2col by strided view + copy, one matmul (CuPy only)."""
    import cupy
    from cupy.lib.stride_tricks import as_strided

    xp_ = cupy.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
    n, h, wd, c = xp_.shape
    k, o = w.shape[0], w.shape[3]
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    s0, s1, s2, s3 = xp_.strides
    win = as_strided(xp_, (n, oh, ow, k, k, c), (s0, s1 * stride, s2 * stride, s1, s2, s3))
    col = win.reshape(n * oh * ow, k * k * c)
    return (col @ w.reshape(-1, o)).reshape(n, oh, ow, o)


def _conv_data(rng, n, cin, hw, cout, k, s, p, dtype=np.float32):
    x = rng.standard_normal((n, hw, hw, cin)).astype(dtype)
    w = (rng.standard_normal((k, k, cin, cout)) / math.sqrt(k * k * cin)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    ho = (hw + 2 * p - k) // s + 1
    dy = rng.standard_normal((n, ho, ho, cout)).astype(dtype)
    return x, w, b, dy, ho


def _pool_cases():
    return [(name, fname, kw) for name, fname, kw, _ in POOLS]


def torch_gpu_peer(args, wanted, torch):
    """PyTorch on the GPU (in the peer child): {key: {"fwd": ms, "fb": ms}} with keys
    "gpu conv C3", "gpu conv C3 tf32", "gpu pool <name>", "gpu relu", "gpu loss"."""
    if not torch.cuda.is_available():
        return
    F = torch.nn.functional
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")

    def timed(fn):
        return median_ms(fn, args.repeat, warmup=3, events=torch_events)

    if "conv" in wanted:
        rng = np.random.default_rng(10)
        for sid, _, cin, hw, cout, k, s, p in _gpu_conv_shapes(args):
            x, w, b, dy, _ = _conv_data(rng, GPU_CONV_N, cin, hw, cout, k, s, p)
            for tf32 in (False, True):
                torch.backends.cudnn.allow_tf32 = tf32
                torch.backends.cuda.matmul.allow_tf32 = tf32
                best = {}
                for layout in ("NCHW", "NHWC"):
                    mf = torch.channels_last if layout == "NHWC" else torch.contiguous_format
                    tx = torch.from_numpy(x).to(dev).permute(0, 3, 1, 2).contiguous(memory_format=mf).requires_grad_()
                    tw = torch.from_numpy(w).to(dev).permute(3, 2, 0, 1).contiguous(memory_format=mf).requires_grad_()
                    tb = torch.from_numpy(b).to(dev).requires_grad_()
                    tdy = torch.from_numpy(dy).to(dev).permute(0, 3, 1, 2).contiguous(memory_format=mf)

                    def fwd():
                        with torch.no_grad():
                            F.conv2d(tx, tw, tb, stride=s, padding=p)

                    def fb():
                        tx.grad = tw.grad = tb.grad = None
                        F.conv2d(tx, tw, tb, stride=s, padding=p).backward(tdy)

                    for key, fn in (("fwd", fwd), ("fb", fb)):
                        ms = timed(fn)
                        if key not in best or ms < best[key]:
                            best[key], best[key + "_layout"] = ms, layout
                    del tx, tw, tb, tdy
                PEER[f"gpu conv {sid}{' tf32' if tf32 else ''}"] = best
                torch.cuda.empty_cache()
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if "pool" in wanted:
        rng = np.random.default_rng(11)
        x = rng.standard_normal((GPU_POOL_N, 56, 56, 64)).astype(np.float32)
        tx = torch.from_numpy(x).to(dev).permute(0, 3, 1, 2).requires_grad_()  # channels_last view
        for name, _, _, (tname, tkw) in POOLS:
            tf = getattr(F, tname)
            with torch.no_grad():
                ty = tf(tx, **tkw)
            tdy = torch.randn_like(ty)

            def fwd():
                with torch.no_grad():
                    tf(tx, **tkw)

            def fb():
                tx.grad = None
                tf(tx, **tkw).backward(tdy)

            PEER[f"gpu pool {name}"] = {"fwd": timed(fwd), "fb": timed(fb)}
    if "relu" in wanted:
        tx = torch.randn(GPU_RELU_N, 64, 112, 112, device=dev).to(memory_format=torch.channels_last)
        tdy = torch.randn_like(tx)
        txg = tx.clone().requires_grad_()

        def fb():
            txg.grad = None
            torch.relu(txg).backward(tdy)

        PEER["gpu relu"] = {"fwd": timed(lambda: torch.relu(tx)), "fb": timed(fb)}
    if "loss" in wanted:
        rng = np.random.default_rng(13)
        tl = torch.from_numpy((rng.standard_normal((4096, 1000)) * 3).astype(np.float32)).to(dev)
        tlab = torch.from_numpy(rng.integers(0, 1000, 4096)).to(dev)
        tlg = tl.clone().requires_grad_()

        def fwd():
            with torch.no_grad():
                F.cross_entropy(tl, tlab)

        def fb():
            tlg.grad = None
            F.cross_entropy(tlg, tlab).backward()

        PEER["gpu loss"] = {"fwd": timed(fwd), "fb": timed(fb)}


def _gpu_conv_shapes(args):
    return CONV_SHAPES if not args.quick else [s for s in CONV_SHAPES if s[0] in ("C1", "C3", "C6")]


class OpTable:
    """One op's table: a row per implementation, forward and forward+backward side by side."""

    COLS = ("impl", "device", "N", "fwd ms", "fwd rate", "fwd+bwd ms", "fwd+bwd rate", "x CPU", "x torch GPU",
            "GPU MiB")

    def __init__(self, title, unit, fwd_work, fb_work, n_gpu):
        self.title, self.unit, self.fwd_work, self.fb_work, self.n_gpu = title, unit, fwd_work, fb_work, n_gpu
        self.rows = []
        self.cpu_per_image = {}  # cnnkit CPU ms per image, for the speed-up column

    def rate(self, work_per_image, n, ms):
        if ms is None or work_per_image is None:
            return ""
        per_s = work_per_image * n / (ms * 1e-3)
        return f"{per_s / 1e12:.2f} TFLOP/s" if self.unit == "flop" else f"{per_s / 1e9:.0f} GB/s"

    def add(self, impl, device, n, fwd, fb, cudnn=None, mem=None):
        if impl == "cnnkit" and device == "CPU":
            self.cpu_per_image = {"fwd": fwd / n if fwd else None, "fb": fb / n if fb else None}
        speedup = ""
        if device == "GPU" and self.cpu_per_image:
            parts = []
            for key, ms in (("fwd", fwd), ("fb", fb)):
                ref_ms = self.cpu_per_image.get(key)
                parts.append(f"{ref_ms * n / ms:.0f}" if ref_ms and ms else "-")
            speedup = " / ".join(parts)
        vs = ""
        if cudnn:
            parts = [f"{c / m:.2f}" if c and m else "-" for c, m in ((cudnn.get("fwd"), fwd), (cudnn.get("fb"), fb))]
            vs = " / ".join(parts)
        fmt = lambda v: f"{v:.3f}" if v is not None else "-"  # noqa: E731
        self.rows.append((impl, device, str(n), fmt(fwd), self.rate(self.fwd_work, n, fwd), fmt(fb),
                          self.rate(self.fb_work, n, fb), speedup, vs, f"{mem:.0f}" if mem is not None else ""))

    def render(self):
        return render_table(self.COLS, self.rows, self.title)


def gpu_main(args, wanted):
    ok, why = _backend.cuda_status()
    if not ok:
        print(f"GPU: not usable here ({why}); GPU tables skipped")
        return 0
    import cupy

    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    from cnnkit import _cuda

    info = _cuda.build_info()
    print(f"GPU: {name}, {props['multiProcessorCount']} SMs, {props['totalGlobalMem'] / 2**30:.0f} GiB; "
          f"cnnkit._cuda for {info['cuda_architectures']}, runtime {info['cuda_runtime_version']}, "
          f"CuPy {cupy.__version__}; TF32 off unless a row says TF32")
    with_cpu = args.device == "all"
    tables, summary = [], {"fwd": [], "fb": [], "naive": [], "c34": [], "mem": []}
    if "conv" in wanted:
        gpu_conv_tables(args, with_cpu, tables, summary)
    if wanted & {"pool", "relu", "loss"}:
        gpu_memory_bound_tables(args, wanted, with_cpu, tables, summary)
    print()
    for t in tables:
        print(t.render())
        print()
    print_gpu_summary(summary)
    return 0


def _cnnkit_conv_gpu(x, w, b, dy, s, p, args, tf32):
    import cupy

    xd, wd, bd, dyd = (cupy.asarray(a) for a in (x, w, b, dy))
    kw = dict(strides=s, padding=p)
    old = cnnkit.config.allow_tf32
    cnnkit.config.allow_tf32 = tf32
    try:
        fwd = gpu_ms(lambda: ops.conv2d(xd, wd, bd, **kw), args.repeat)
        fb = gpu_ms(lambda: (ops.conv2d(xd, wd, bd, **kw), ops.conv2d_backward(dyd, xd, wd, bd, **kw)),
                           args.repeat)
        mem = gpu_pool_mib(lambda: ops.conv2d_backward(dyd, xd, wd, bd, **kw))
    finally:
        cnnkit.config.allow_tf32 = old
    return fwd, fb, mem, (xd, wd)


def gpu_conv_tables(args, with_cpu, tables, summary):
    import cupy

    rng = np.random.default_rng(10)  # the peer child draws the same data
    cpu_rng = np.random.default_rng(0)
    for sid, n_cpu, cin, hw, cout, k, s, p in _gpu_conv_shapes(args):
        x, w, b, dy, ho = _conv_data(rng, GPU_CONV_N, cin, hw, cout, k, s, p)
        flops = 2 * cout * cin * k * k * ho * ho  # per image, forward
        t = OpTable(f"conv2d {sid}: {cin}->{cout}, {hw}x{hw}, k{k} s{s} p{p} (FP32 unless TF32)", "flop",
                    flops, 3 * flops, GPU_CONV_N)
        if with_cpu:
            n = n_cpu if not args.quick else max(1, n_cpu // 4)
            cx, cw, cb, cdy, _ = _conv_data(cpu_rng, n, cin, hw, cout, k, s, p)
            kw = dict(strides=s, padding=p)
            if not args.no_ref:
                t.add("numpy reference", "CPU", n, median_ms(lambda: ref.conv2d(cx, cw, cb, **kw), 1, warmup=0),
                      median_ms(lambda: (ref.conv2d(cx, cw, cb, **kw), ref.conv2d_backward(cdy, cx, cw, cb, **kw)),
                                1, warmup=0))
            t.add("cnnkit", "CPU", n, median_ms(lambda: ops.conv2d(cx, cw, cb, **kw), args.repeat),
                  median_ms(lambda: (ops.conv2d(cx, cw, cb, **kw), ops.conv2d_backward(cdy, cx, cw, cb, **kw)),
                            args.repeat))
            tc = PEER.get(f"conv {sid}")
            if tc:
                t.add(f"torch ({tc['fwd'][1]}/{tc['fb'][1]})", "CPU", n, tc["fwd"][0], tc["fb"][0])
        cudnn = PEER.get(f"gpu conv {sid}")
        cudnn_tf32 = PEER.get(f"gpu conv {sid} tf32")
        fwd, fb, mem, (xd, wd) = _cnnkit_conv_gpu(x, w, b, dy, s, p, args, tf32=False)
        t.add("cnnkit", "GPU", GPU_CONV_N, fwd, fb, cudnn, mem)
        fwd32, fb32, mem32, _ = _cnnkit_conv_gpu(x, w, b, dy, s, p, args, tf32=True)
        t.add("cnnkit TF32", "GPU", GPU_CONV_N, fwd32, fb32, cudnn_tf32, mem32)
        if cudnn:
            t.add(f"torch cuDNN ({cudnn['fwd_layout']}/{cudnn['fb_layout']})", "GPU", GPU_CONV_N, cudnn["fwd"],
                  cudnn["fb"])
        if cudnn_tf32:
            t.add(f"torch cuDNN TF32 ({cudnn_tf32['fwd_layout']}/{cudnn_tf32['fb_layout']})", "GPU", GPU_CONV_N,
                  cudnn_tf32["fwd"], cudnn_tf32["fb"])
        naive = gpu_ms(lambda: naive_cupy_conv(xd, wd, s, p), args.repeat)
        t.add("naive CuPy im2col+matmul", "GPU", GPU_CONV_N, naive, None, None,
              gpu_pool_mib(lambda: naive_cupy_conv(xd, wd, s, p)))
        tables.append(t)
        if cudnn and sid != "C1":
            summary["fwd"].append((sid, fwd / cudnn["fwd"]))
            summary["fb"].append((sid, fb / cudnn["fb"]))
        summary["naive"].append((sid, fwd, naive))
        if with_cpu and sid in ("C3", "C4") and t.cpu_per_image.get("fb"):
            summary["c34"].append((sid, t.cpu_per_image["fwd"] * GPU_CONV_N / fwd,
                                   t.cpu_per_image["fb"] * GPU_CONV_N / fb))
        xd = wd = None  # free the GPU arrays before the next shape (not del: the lambdas above name them)
        conv_ops.release_workspace()
        cupy.get_default_memory_pool().free_all_blocks()


def gpu_memory_bound_tables(args, wanted, with_cpu, tables, summary):
    import cupy

    rng = np.random.default_rng(11)
    x = rng.standard_normal((GPU_POOL_N, 56, 56, 64)).astype(np.float32)
    xd = cupy.asarray(x)
    n_cpu = 32 if not args.quick else 8
    cx = x[:n_cpu].copy()
    for name, fname, kw in (_pool_cases() if "pool" in wanted else []):
        f, fb_ = getattr(ops, fname), getattr(ops, fname + "_backward")
        yd = f(xd, **kw)
        dyd = cupy.asarray(rng.standard_normal(yd.shape).astype(np.float32))
        per_image_fwd = (x[0].nbytes + yd[0].nbytes)
        per_image_fb = per_image_fwd + 2 * x[0].nbytes + yd[0].nbytes
        t = OpTable(f"{name} pooling on (N, 56, 56, 64)", "byte", per_image_fwd, per_image_fb, GPU_POOL_N)
        if with_cpu:
            cdy = cupy.asnumpy(dyd[:n_cpu])
            if not args.no_ref:
                t.add("numpy reference", "CPU", n_cpu, median_ms(lambda: getattr(ref, fname)(cx, **kw), 1, warmup=0),
                      None)
            t.add("cnnkit", "CPU", n_cpu, median_ms(lambda: f(cx, **kw), args.repeat),
                  median_ms(lambda: (f(cx, **kw), fb_(cdy, cx, **kw)), args.repeat))
            tc = PEER.get(f"pool {name}")
            if tc:
                t.add("torch NHWC", "CPU", n_cpu, tc["fwd"], tc["fb"])
        peer = PEER.get(f"gpu pool {name}")
        fwd = gpu_ms(lambda: f(xd, **kw), args.repeat)
        fb = gpu_ms(lambda: (f(xd, **kw), fb_(dyd, xd, **kw)), args.repeat)
        t.add("cnnkit", "GPU", GPU_POOL_N, fwd, fb, peer, gpu_pool_mib(lambda: fb_(dyd, xd, **kw)))
        if peer:
            t.add("torch (channels_last)", "GPU", GPU_POOL_N, peer["fwd"], peer["fb"])
        tables.append(t)
        summary["mem"].append((name, per_image_fwd * GPU_POOL_N / (fwd * 1e-3) / 1e9,
                               peer["fwd"] / fwd if peer else None, peer["fb"] / fb if peer else None))
    xd = None  # free the GPU array (not del: the lambdas above name it)
    if "relu" in wanted:
        xr = cupy.asarray(rng.standard_normal((GPU_RELU_N, 112, 112, 64)).astype(np.float32))
        dyr = cupy.asarray(rng.standard_normal(xr.shape).astype(np.float32))
        per_image = xr[0].nbytes
        t = OpTable("relu on (N, 112, 112, 64)", "byte", 2 * per_image, 5 * per_image, GPU_RELU_N)
        if with_cpu:
            cxr, cdyr = cupy.asnumpy(xr[:8]), cupy.asnumpy(dyr[:8])
            t.add("cnnkit", "CPU", 8, median_ms(lambda: ops.relu(cxr), args.repeat),
                  median_ms(lambda: (ops.relu(cxr), ops.relu_backward(cdyr, cxr)), args.repeat))
        peer = PEER.get("gpu relu")
        fwd = gpu_ms(lambda: ops.relu(xr), args.repeat)
        fb = gpu_ms(lambda: (ops.relu(xr), ops.relu_backward(dyr, xr)), args.repeat)
        t.add("cnnkit", "GPU", GPU_RELU_N, fwd, fb, peer)
        if peer:
            t.add("torch", "GPU", GPU_RELU_N, peer["fwd"], peer["fb"])
        tables.append(t)
        summary["mem"].append(("relu", 2 * per_image * GPU_RELU_N / (fwd * 1e-3) / 1e9,
                               peer["fwd"] / fwd if peer else None, peer["fb"] / fb if peer else None))
        del xr, dyr
    if "loss" in wanted:
        rl = np.random.default_rng(13)
        logits = cupy.asarray((rl.standard_normal((4096, 1000)) * 3).astype(np.float32))
        labels = cupy.asarray(rl.integers(0, 1000, 4096))
        t = OpTable("softmax cross-entropy on (4096, 1000)", "byte", logits[0].nbytes, 3 * logits[0].nbytes, 4096)
        peer = PEER.get("gpu loss")
        fwd = gpu_ms(lambda: ops.softmax_cross_entropy(logits, labels), args.repeat)
        fused = gpu_ms(lambda: ops.softmax_cross_entropy(logits, labels, return_grad=True), args.repeat)
        t.add("cnnkit (fwd+bwd fused)", "GPU", 4096, fwd, fused, peer)
        if peer:
            t.add("torch", "GPU", 4096, peer["fwd"], peer["fb"])
        tables.append(t)


def print_gpu_summary(summary):
    def gmean(vals):
        return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else float("nan")

    if summary["fwd"]:
        print(f"conv2d, cnnkit GPU time / cuDNN time, geometric mean over {', '.join(s for s, _ in summary['fwd'])} "
              f"at N={GPU_CONV_N}: forward {gmean([r for _, r in summary['fwd']]):.2f}x (target <= 1.5), "
              f"forward+backward {gmean([r for _, r in summary['fb']]):.2f}x (target <= 2)")
    for sid, fwd, naive in summary["naive"]:
        print(f"conv2d {sid} forward: cnnkit {fwd:.3f} ms vs naive CuPy im2col+matmul {naive:.3f} ms "
              f"({naive / fwd:.2f}x; target > 1)")
    for sid, f, b in summary["c34"]:
        print(f"conv2d {sid}: GPU per image {f:.0f}x (forward) and {b:.0f}x (forward+backward) faster than "
              f"cnnkit on the CPU (target >= 20)")
    for name, gbs, vf, vb in summary["mem"]:
        extra = f", {vf:.2f}x / {vb:.2f}x PyTorch's speed (fwd / fwd+bwd; target >= 1)" if vf else ""
        print(f"{name} forward: {gbs:.0f} GB/s ({gbs / COPY_GBPS * 100:.0f}% of the H100's "
              f"{COPY_GBPS:.0f} GB/s copy){extra}")


if __name__ == "__main__":
    sys.exit(main())
