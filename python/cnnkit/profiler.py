"""``cnnkit.profiler``: where a step's time goes, summed per op.

    with cnnkit.profiler.profile() as prof:
        model.train_on_batch(x, y)
    # prints a table at the end of the block (profile(print_fn=None) to keep quiet);
    prof.table(), prof.stats -> {op: (calls, seconds)}

While a ``profile`` block is active, every function defined in the op modules of ``cnnkit.ops``
(conv, linear, pool, nonlinear, norm, cross_entropy: the public ops and the private entry points layers call,
such as ``_conv2d_forward``) measures its wall time with ``time.perf_counter``; an op called from
inside another op counts toward the outer one only. When an op's arguments or result are CuPy arrays,
the current stream is synchronized before and after it, so the GPU work lands in the op that queued
it (that sync happens only while profiling). Time spent outside cnnkit.ops (NumPy array arithmetic in
merges and optimizers, Python overhead) is the "outside cnnkit.ops" row.

The functions are instrumented in place (their code object is swapped for a timing trampoline, so
every reference to them, including those that layers and activations keep, is covered) and
restored when the block ends: outside a profile block there is no overhead at all.
"""

import inspect
import threading
import time

__all__ = ["profile", "Profile"]

_OP_MODULES = ("conv", "cross_entropy", "linear", "nonlinear", "norm", "pool")
_SKIP_PREFIXES = ("_check", "_is_", "_as_", "_norm_")
_SKIP = {"release_workspace", "get_array_module", "_workspace"}
_DISPATCH = "_cnnkit_profiler_dispatch"
_lock = threading.Lock()
_active = {"profile": None}


def _op_functions():
    import importlib

    out = []
    for short in _OP_MODULES:
        mod = importlib.import_module(f"cnnkit.ops.{short}")
        for name, fn in vars(mod).items():
            if (inspect.isfunction(fn) and fn.__module__ == mod.__name__ and name not in _SKIP
                    and not name.startswith(_SKIP_PREFIXES)):
                out.append((short, name, fn))
    return out


_KEY_PLACEHOLDER = "<cnnkit profiler op key>"


def _trampoline(*args, **kwargs):
    # a template: its code object, with the placeholder constant replaced by an op's key, becomes
    # that op's code while profiling; the global name is bound in the op's module for the block
    return _cnnkit_profiler_dispatch("<cnnkit profiler op key>", args, kwargs)  # noqa: F821


def _trampoline_code(key):
    code = _trampoline.__code__
    consts = tuple(key if c == _KEY_PLACEHOLDER else c for c in code.co_consts)
    assert consts != code.co_consts, "the trampoline template lost its key placeholder"
    return code.replace(co_consts=consts)


def _has_cupy(objs):
    from .ops._backend import _is_cupy

    for o in objs:
        if isinstance(o, (tuple, list)):
            if _has_cupy(o):
                return True
        elif _is_cupy(o):
            return True
    return False


def _sync():
    import cupy

    cupy.cuda.get_current_stream().synchronize()


class Profile:
    """The per-op totals of one ``profile`` block: ``stats`` {op: (calls, seconds)}, ``total`` (the
    block's wall time), ``table()``."""

    def __init__(self, print_fn=print, sync=True):
        self.print_fn, self.sync = print_fn, sync
        self.stats, self.total = {}, 0.0
        self._saved, self._local = [], threading.local()

    # ------------------------------------------------------------------ instrumenting
    def _dispatch(self, key, args, kwargs):
        real, op = self._real[key]
        if getattr(self._local, "depth", 0):  # inside another op: counts toward that one
            return real(*args, **kwargs)
        gpu = self.sync and _has_cupy(args) or (self.sync and _has_cupy(kwargs.values()))
        if gpu:
            _sync()
        self._local.depth = 1
        t0 = time.perf_counter()
        try:
            out = real(*args, **kwargs)
            if self.sync and (gpu or _has_cupy(out if isinstance(out, (tuple, list)) else (out,))):
                _sync()
        finally:
            dt = time.perf_counter() - t0
            self._local.depth = 0
            calls, secs = self.stats.get(op, (0, 0.0))
            self.stats[op] = (calls + 1, secs + dt)
        return out

    def __enter__(self):
        import types

        with _lock:
            if _active["profile"] is not None:
                raise RuntimeError("a cnnkit.profiler.profile block is already active; they do not nest")
            _active["profile"] = self
        self._real = {}
        try:
            for short, name, fn in _op_functions():
                key = f"{short}.{name}"
                real = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
                real.__kwdefaults__ = fn.__kwdefaults__
                if fn.__closure__:  # the trampoline cannot take over a closure's code; leave it alone
                    continue
                self._real[key] = (real, name.lstrip("_"))
                fn.__globals__[_DISPATCH] = self._dispatch
                self._saved.append((fn, fn.__code__))
                fn.__code__ = _trampoline_code(key)
        except BaseException:
            self._restore()
            raise
        self._t0 = time.perf_counter()
        return self

    def _restore(self):
        for fn, code in self._saved:
            fn.__code__ = code
            fn.__globals__.pop(_DISPATCH, None)
        self._saved = []
        with _lock:
            _active["profile"] = None

    def __exit__(self, *exc):
        self.total = time.perf_counter() - self._t0
        self._restore()
        if self.print_fn is not None and exc[0] is None:
            self.print_fn(self.table())
        return False

    # ------------------------------------------------------------------ report
    def table(self):
        """Ops by total time: calls, total and mean milliseconds, share of the block's wall time."""
        rows = sorted(self.stats.items(), key=lambda kv: -kv[1][1])
        in_ops = sum(s for _, s in self.stats.values())
        total = max(self.total, in_ops)
        width = max([len("outside cnnkit.ops")] + [len(op) for op in self.stats])
        lines = [f"{'op':<{width}}  {'calls':>6}  {'total ms':>10}  {'mean ms':>9}  {'share':>6}",
                 "-" * (width + 39)]
        for op, (calls, secs) in rows:
            share = secs / total if total else 0.0
            lines.append(f"{op:<{width}}  {calls:>6}  {secs * 1e3:>10.2f}  {secs * 1e3 / calls:>9.3f}  {share:>6.1%}")
        other = total - in_ops
        lines.append(f"{'outside cnnkit.ops':<{width}}  {'':>6}  {other * 1e3:>10.2f}  {'':>9}  "
                     f"{(other / total if total else 0):>6.1%}")
        lines.append("-" * (width + 39))
        lines.append(f"{'wall time of the block':<{width}}  {'':>6}  {total * 1e3:>10.2f}")
        return "\n".join(lines)


def profile(print_fn=print, sync=True):
    """A context manager that times every cnnkit op called inside it and prints the table at its end
    (``print_fn=None``: no printing; read ``.stats`` / ``.table()``). ``sync=False`` skips the CUDA
    stream synchronization around GPU ops (then GPU times are launch times only)."""
    return Profile(print_fn=print_fn, sync=sync)
