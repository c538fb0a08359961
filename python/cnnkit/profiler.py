"""``cnnkit.profiler``: where a step's time goes, summed per op.

    with cnnkit.profiler.profile() as prof:
        model.train_on_batch(x, y)
    # prints a table at the end of the block (profile(print_fn=None) to keep quiet);
    prof.table(), prof.stats -> {op: (calls, seconds)}, prof.kernel_stats -> {kernel: (calls, seconds)}

Every op of cnnkit.ops reaches its kernels through one dispatch point, ``cnnkit.ops._backend``:
``backend()`` hands out the kernel module (``cnnkit._core`` or ``cnnkit._cuda``) and ``matmul`` runs
the GEMMs. While a ``profile`` block is active both are wrapped, and each dispatch, kernel and GEMM
is charged to the outermost public ``cnnkit.ops`` function on the call stack: the op a layer, a
loss or the user called (an op called from inside another op counts toward the outer one). An op's
time runs from its first dispatch (after its argument checks) to the end of its last kernel; each
kernel's and GEMM's own time is in ``kernel_stats``. When an op runs on CuPy arrays, the current
stream is synchronized when it starts and after each of its kernels, so the GPU work lands in the op
that queued it (that sync happens only while profiling). Time spent outside cnnkit.ops (NumPy array
arithmetic in merges and optimizers, Python overhead) is the "outside cnnkit.ops" row.

The wrappers are module attributes of ``_backend`` set for the block and put back when it ends:
outside a profile block nothing is wrapped and there is no overhead at all.
"""

import sys
import threading
import time

__all__ = ["profile", "Profile"]

_lock = threading.Lock()
_active = {"profile": None}


def _op_codes():
    """{code object: name} of the public functions of cnnkit.ops."""
    from . import ops

    # a registered op (cnnkit.ops.autodiff.register) is a wrapper: its own function is __wrapped__
    fns = (getattr(getattr(ops, name), "__wrapped__", getattr(ops, name)) for name in ops.__all__)
    return {fn.__code__: fn.__name__ for fn in fns if hasattr(fn, "__code__")}


def _outermost(codes, frame):
    """The outermost frame on the stack running one of these code objects, or None."""
    found = None
    while frame is not None:
        if frame.f_code in codes:
            found = frame
        frame = frame.f_back
    return found


def _sync():
    import cupy

    cupy.cuda.get_current_stream().synchronize()


class _Call:
    """One call of an op: its frame (held until the call is closed, so that the next call cannot
    reuse its identity), its name, and the times of its first dispatch and its last kernel's end."""

    __slots__ = ("frame", "op", "start", "end")

    def __init__(self, frame, op, start):
        self.frame, self.op, self.start, self.end = frame, op, start, start


class _TimedKernels:
    """A kernel module whose functions report each call to a Profile (wrappers made once per name)."""

    def __init__(self, lib, prof, gpu):
        self._lib, self._prof, self._gpu = lib, prof, gpu

    def __getattr__(self, name):
        fn, prof, gpu = getattr(self._lib, name), self._prof, self._gpu

        def timed(*args, **kwargs):
            return prof._run_kernel(name, fn, gpu, args, kwargs)

        timed.__name__, timed.__doc__ = name, fn.__doc__
        setattr(self, name, timed)
        return timed


class Profile:
    """The per-op totals of one ``profile`` block: ``stats`` {op: (calls, seconds)}, ``kernel_stats``
    {kernel or "matmul": (calls, seconds)}, ``total`` (the block's wall time), ``table()``."""

    def __init__(self, print_fn=print, sync=True):
        self.print_fn, self.sync = print_fn, sync
        self.stats, self.kernel_stats, self.total = {}, {}, 0.0
        self._restore_list, self._open, self._timed = [], {}, {}

    # ------------------------------------------------------------------ instrumenting
    def _enter(self, frame, gpu):
        """The call of the outermost op on frame's stack (opening it, and closing this thread's
        previous one, when it is a new call); None outside any op."""
        op_frame = _outermost(self._codes, frame)
        if op_frame is None:
            return None
        thread = threading.get_ident()
        call = self._open.get(thread)
        if call is not None and call.frame is op_frame:
            return call
        self._close(thread)
        if gpu and self.sync:
            _sync()  # work queued before this op is not its own
        call = self._open[thread] = _Call(op_frame, self._codes[op_frame.f_code], time.perf_counter())
        return call

    def _close(self, thread):
        call = self._open.pop(thread, None)
        if call is not None:
            calls, secs = self.stats.get(call.op, (0, 0.0))
            self.stats[call.op] = (calls + 1, secs + call.end - call.start)

    def _dispatch(self, real):
        """What the wrapped ``_backend._cpu``/``_gpu`` return: the backend with its kernels timed."""
        timed = self._timed.get(real.name)
        if timed is None:
            timed = self._timed[real.name] = type(real)(real.name, real.xp,
                                                        _TimedKernels(real.lib, self, real.name == "gpu"))
        self._enter(sys._getframe(1), real.name == "gpu")
        return timed

    def _run_kernel(self, name, fn, gpu, args, kwargs):
        call = self._enter(sys._getframe(1), gpu)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if gpu and self.sync:
                _sync()
            t1 = time.perf_counter()
            calls, secs = self.kernel_stats.get(name, (0, 0.0))
            self.kernel_stats[name] = (calls + 1, secs + t1 - t0)
            if call is not None:
                call.end = t1

    def __enter__(self):
        from .ops import _backend

        with _lock:
            if _active["profile"] is not None:
                raise RuntimeError("a cnnkit.profiler.profile block is already active; they do not nest")
            _active["profile"] = self
        self._codes = _op_codes()
        cpu, gpu, matmul = _backend._cpu, _backend._gpu, _backend.matmul

        def timed_matmul(be, a, b, out=None):
            return self._run_kernel("matmul", matmul, be.name == "gpu", (be, a, b), {"out": out})

        self._restore_list = [(_backend, "_cpu", cpu), (_backend, "_gpu", gpu), (_backend, "matmul", matmul)]
        _backend._cpu = lambda: self._dispatch(cpu())
        _backend._gpu = lambda: self._dispatch(gpu())
        _backend.matmul = timed_matmul
        self._t0 = time.perf_counter()
        return self

    def _restore(self):
        for module, name, original in self._restore_list:
            setattr(module, name, original)
        self._restore_list = []
        for thread in list(self._open):
            self._close(thread)
        self._timed = {}
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
    (``print_fn=None``: no printing; read ``.stats`` / ``.kernel_stats`` / ``.table()``). ``sync=False``
    skips the CUDA stream synchronization around GPU ops (then GPU times are launch times only)."""
    return Profile(print_fn=print_fn, sync=sync)
