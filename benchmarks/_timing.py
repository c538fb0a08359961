"""What the benchmarks share: the timer, the table, the peer processes.

- ``time_calls`` / ``median_ms``: each call timed after untimed warm-up calls, on the wall clock or,
  for GPU work, between CUDA events recorded on the current stream around the call (``cupy_events``,
  ``torch_events``; the host waits for the end event, so the time is the call's whole GPU work). The
  figure quoted is the median of the repeats.
- ``render_table``: rows of strings under a header, each column as wide as its widest cell.
- The peers: each library runs in a child process of its own (``run_child``: one OpenMP runtime per
  process, so each keeps its own thread wait policy, and an import of torch does not slow cnnkit's
  kernels), which prints its results as a JSON line; ``torch_missing`` says why PyTorch cannot be a
  peer here; ``torchvision_models`` loads torchvision's model builders even beside a CPU-only torch.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time


# ---------------------------------------------------------------------------------------------- timing
def time_calls(fn, repeat, warmup=0, events=None):
    """Seconds taken by each of ``repeat`` calls of fn() after ``warmup`` untimed ones. ``events``:
    None for the wall clock, or a function returning (start event, end event, elapsed_ms(start, end))
    of CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if events is None:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        else:
            start, end, elapsed_ms = events()
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(elapsed_ms(start, end) / 1e3)
    return times


def median_ms(fn, repeat, warmup=2, events=None):
    """The median of time_calls, in milliseconds."""
    return statistics.median(time_calls(fn, repeat, warmup, events)) * 1e3


def cupy_events():
    import cupy

    return cupy.cuda.Event(), cupy.cuda.Event(), cupy.cuda.get_elapsed_time


def torch_events():
    import torch

    return (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True),
            lambda start, end: start.elapsed_time(end))


def peak_rss_mib():
    """This process's maximum resident set size so far, in MiB (the same measure for every library)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------- tables
def render_table(columns, rows, title=None):
    """The rows (sequences of cells) under the column names, cells left-aligned in columns as wide as
    their widest cell, separated by " | "; the title first, as a "###" heading, when given."""
    cells = [[str(c) for c in row] for row in [columns, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]

    def line(row):
        return " | ".join(c.ljust(w) for c, w in zip(row, widths))

    out = [f"### {title}"] if title else []
    return "\n".join(out + [line(cells[0]), "-+-".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


# ---------------------------------------------------------------------------------------------- peers
def run_child(script, args, env=None, timeout=None):
    """Run ``python script *args`` with env added to this environment; the dict its last line of
    output holds (JSON), or {"error": why} when it failed."""
    cmd = [sys.executable, os.path.abspath(script), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})), timeout=timeout)
    if proc.returncode != 0:
        why = proc.stderr.strip()
        return {"error": f"failed (exit {proc.returncode}): {why[-600:] if why else 'no message'}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_missing():
    """None when PyTorch is installed here, else what to install for the peer columns."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "PyTorch not installed (pip install torch==2.13.0 for the peer columns)"
    return None


def torchvision_models():
    """torchvision's model constructors {name: fn} (resnet18, resnet50, vgg16, densenet121, ...).

    The torchvision wheel on PyPI is built against the CUDA torch; beside torch's CPU build its compiled
    ops fail to register and ``import torchvision`` raises. The model definitions are plain Python, so
    when the import fails they are loaded straight from the package's files."""
    import importlib
    import importlib.util
    import types

    try:
        import torchvision.models as tvm
    except (RuntimeError, ImportError, OSError):
        root = os.path.dirname(importlib.util.find_spec("torchvision").origin)
        for name, path in (("torchvision", root), ("torchvision.models", os.path.join(root, "models"))):
            if name not in sys.modules or not hasattr(sys.modules[name], "resnet50"):
                mod = types.ModuleType(name)
                mod.__path__ = [path]
                sys.modules[name] = mod
        tvm = types.SimpleNamespace()
        for sub in ("resnet", "vgg", "densenet", "googlenet", "alexnet"):
            m = importlib.import_module(f"torchvision.models.{sub}")
            for k, v in vars(m).items():
                if callable(v) and not k.startswith("_") and k.islower():
                    setattr(tvm, k, v)
    return {k: getattr(tvm, k) for k in dir(tvm) if not k.startswith("_")}
