"""Automatic differentiation over cnnkit.ops: define-by-run, as in Chainer and PyTorch.

An op called on a :class:`Tensor` (or a :class:`cnnkit.variables.Variable`) while gradients are being
recorded runs on the raw arrays and returns a Tensor that remembers a node: its parents and a
closure, its vector-Jacobian product (VJP), holding only what that product needs. ``gradient`` walks
the nodes reachable from a target in reverse topological order, summing each tensor's gradient
before passing it on. Every public function of ``cnnkit.ops`` is registered once with its VJP
(:func:`register`; the native ``<op>_backward`` kernels are those products). Called on plain NumPy or
CuPy arrays an op takes the fast path: one scan of its arguments, then the op itself, returning a
plain array, so the built-in layers (which keep their hand-written fused ``forward``/``backward``)
and the training loop pay nothing for this module.

Recording is on inside ``with GradientTape():`` and inside the training forward pass of a layer
written with only ``call`` (``Layer.forward`` records its ``call`` and ``Layer.backward`` replays it).
While it is on, trainable variables read by an op become leaves whose gradients are collected; a
built-in layer (or a whole model) called on tensors is one node whose VJP is its own ``backward``.

VJPs run on raw arrays with recording off: gradients of gradients (second order) are not recorded,
and asking for them is an error (:meth:`GradientTape.gradient` inside another recording tape).
"""

import contextlib
import inspect

import numpy as np

from ._backend import get_array_module

__all__ = ["Tensor", "GradientTape", "stop_gradient", "convert_to_tensor", "is_tensor", "register",
           "recording"]


class _State:
    """Module-wide recording state. Not per thread: record and differentiate on one thread."""

    def __init__(self):
        self.recording = 0  # active recordings (tapes, call-layer training passes)
        self.paused = 0  # stop_recording() blocks
        self.tapes = []  # active tapes, innermost last (their watched raw arrays)
        self.accessed = 0  # recordings that watch trainable variables they read


_state = _State()
_TRACKED = set()  # Tensor and Variable: what makes an op take the recording path


def recording():
    """Whether ops called now record gradient nodes."""
    return _state.recording > 0 and _state.paused == 0


@contextlib.contextmanager
def _record(watch_variables=True):
    """Recording on in this block, even inside a paused one (a call-only layer's training forward
    runs inside a built-in model's forward, which a tape runs paused)."""
    _state.recording += 1
    _state.accessed += bool(watch_variables)
    paused, _state.paused = _state.paused, 0
    try:
        yield
    finally:
        _state.recording -= 1
        _state.accessed -= bool(watch_variables)
        _state.paused = paused


def recording_on():
    """Record ops in this block (trainable variables read are watched), as a tape does."""
    return _record(True)


def recording_off():
    """Record nothing in this block."""
    return _paused()


@contextlib.contextmanager
def _paused():
    _state.paused += 1
    try:
        yield
    finally:
        _state.paused -= 1


def _freed(g):
    raise RuntimeError("this gradient graph was already used by a non-persistent GradientTape (or a layer's "
                       "backward) and freed; record it again, or use GradientTape(persistent=True) to take "
                       "several gradients")


class _Node:
    """How a tensor was made: its parents and the VJP from its gradient to theirs. A parent is the
    node of the tensor it came from (the graph holds nodes, not tensors: a tensor the user drops is
    freed unless a VJP kept its value), or the leaf Tensor itself (a watched array, a variable's
    use), or _CONSTANT. ``vjp`` is None for a non-differentiable op (argmax, comparisons, integer
    casts): a gradient reaching it stops there, and ``gradient`` names ``name`` when a source is
    cut off by it. ``shape``/``dtype`` are the output's, which its gradient must have."""

    __slots__ = ("name", "parents", "vjp", "shape", "dtype")

    def __init__(self, name, parents, vjp, out):
        self.name, self.parents, self.vjp = name, tuple(parents), vjp
        self.shape = tuple(getattr(out, "shape", ()))
        self.dtype = getattr(out, "dtype", np.dtype(np.float64))


class _Meta:
    """What a VJP that needs only an argument's shape and dtype keeps of it (not the array)."""

    __slots__ = ("shape", "dtype", "ndim")

    def __init__(self, a):
        self.shape, self.dtype, self.ndim = tuple(a.shape), a.dtype, a.ndim


def _vertex(t):
    """A Tensor's place in the graph: its node, or the tensor itself for a leaf."""
    return t.node if t.node is not None else t


class Tensor:
    """An array (``value``: NumPy or CuPy) that ops record gradients through.

    Inside a layer's ``call`` or a ``GradientTape`` block, ops on tensors return tensors; arithmetic,
    comparisons, ``@``, indexing and ``.T`` work as on arrays. ``numpy()`` (or ``np.asarray``)
    gives a NumPy copy, ``value`` the array itself. A tensor is immutable: build a new one with
    ``ops.where`` or ``ops.concatenate`` instead of assigning into it."""

    __slots__ = ("value", "node", "requires_grad", "variable", "__weakref__")
    __array_ufunc__ = None  # NumPy defers to the reflected operators below (ndarray * Tensor)
    __array_priority__ = 1000.0  # CuPy likewise

    def __init__(self, value, node=None, requires_grad=False, variable=None):
        self.value = value
        self.node = node
        self.requires_grad = bool(requires_grad or node is not None)
        self.variable = variable

    # array-like attributes
    shape = property(lambda self: tuple(self.value.shape))
    dtype = property(lambda self: self.value.dtype)
    ndim = property(lambda self: self.value.ndim)
    size = property(lambda self: int(self.value.size))
    T = property(lambda self: _ops().transpose(self))

    def numpy(self):
        v = self.value
        return v.get() if hasattr(v, "get") and not isinstance(v, np.ndarray) else np.array(v)

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __len__(self):
        return len(self.value)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __bool__(self):
        return bool(self.value)

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)

    def __index__(self):
        return int(self.value)

    def __repr__(self):
        grad = f", grad_fn={self.node.name}" if self.node is not None else (
            ", requires_grad=True" if self.requires_grad else "")
        return f"Tensor({self.value!r}{grad})"

    def __setitem__(self, key, value):
        raise TypeError("a Tensor is immutable: build the new value with ops.where(...) or ops.concatenate(...) "
                        "instead of assigning into it")

    __hash__ = object.__hash__

    # methods as on arrays
    def reshape(self, *shape):
        return _ops().reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return _ops().transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def sum(self, axis=None, keepdims=False):
        return _ops().sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return _ops().mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return _ops().max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return _ops().min(self, axis, keepdims)

    def astype(self, dtype):
        return _ops().cast(self, dtype)

    def __getitem__(self, key):
        return _ops().getitem(self, key)

    def __eq__(self, other):
        return _ops().equal(self, other)

    def __ne__(self, other):
        return _ops().not_equal(self, other)

    def __lt__(self, other):
        return _ops().less(self, other)

    def __le__(self, other):
        return _ops().less_equal(self, other)

    def __gt__(self, other):
        return _ops().greater(self, other)

    def __ge__(self, other):
        return _ops().greater_equal(self, other)


class _Arithmetic:
    """The arithmetic operators, for Tensor and Variable (``x * self.w`` in a layer's call)."""

    __slots__ = ()

    def __add__(self, o):
        return _ops().add(self, o)

    def __radd__(self, o):
        return _ops().add(o, self)

    def __sub__(self, o):
        return _ops().subtract(self, o)

    def __rsub__(self, o):
        return _ops().subtract(o, self)

    def __mul__(self, o):
        return _ops().multiply(self, o)

    def __rmul__(self, o):
        return _ops().multiply(o, self)

    def __truediv__(self, o):
        return _ops().divide(self, o)

    def __rtruediv__(self, o):
        return _ops().divide(o, self)

    def __pow__(self, o):
        return _ops().power(self, o)

    def __rpow__(self, o):
        return _ops().power(o, self)

    def __matmul__(self, o):
        return _ops().matmul(self, o)

    def __rmatmul__(self, o):
        return _ops().matmul(o, self)

    def __neg__(self):
        return _ops().negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops().abs(self)


for _name in [n for n in vars(_Arithmetic) if n.startswith("__") and n not in ("__slots__", "__module__",
                                                                                 "__doc__", "__dict__")]:
    setattr(Tensor, _name, getattr(_Arithmetic, _name))
del _name
_TRACKED.add(Tensor)


_OPS = []  # cnnkit.ops, once its __init__ has registered every op (bind_ops): the operators call it


def bind_ops(module):
    """cnnkit.ops hands itself over when its ops are registered (it imports this module first)."""
    _OPS[:] = [module]


def _ops():
    return _OPS[0]


def register_variable_type(cls):
    """cnnkit.variables.Variable registers itself: ops called on variables take the recording path."""
    _TRACKED.add(cls)


def is_tensor(x):
    return isinstance(x, Tensor)


def unwrap(a):
    """The array behind a Tensor or a Variable; anything else as it is."""
    return a.value if type(a) in _TRACKED else a


def _watched(a):
    """The leaf Tensor a recording tape made for raw array a (tape.watch), or None."""
    for tape in reversed(_state.tapes):
        leaf = tape._watched.get(id(a))
        if leaf is not None and leaf.value is a:
            return leaf
    return None


def _as_tensor(a):
    """a as a Tensor when it takes part in recording, else None (a constant)."""
    t = type(a)
    if t is Tensor:
        return a
    if t in _TRACKED:  # a Variable
        watched = any(id(a) in tape._watched_vars for tape in _state.tapes)
        wants = recording() and (watched or (a.trainable and _state.accessed > 0))
        return Tensor(a.value, requires_grad=wants, variable=a if wants else None)
    if _state.tapes:
        return _watched(a)
    return None


def _raw(a):
    t = type(a)
    if t is Tensor:
        return a.value
    if t in _TRACKED:
        return a.value
    if t in (list, tuple):
        return t(_raw(v) for v in a)
    return a


def _involved(args, kwargs):
    """Whether any argument (or item of a list/tuple argument) is a Tensor or Variable, or a raw
    array a recording tape watches."""
    for a in args:
        t = type(a)
        if t in _TRACKED:
            return True
        if t in (list, tuple) and any(type(v) in _TRACKED for v in a):
            return True
    for a in kwargs.values():
        if type(a) in _TRACKED:
            return True
    if _state.tapes and not _state.paused:
        for a in list(args) + list(kwargs.values()):
            if _watched(a) is not None:
                return True
            if type(a) in (list, tuple) and any(_watched(v) is not None for v in a):
                return True
    return False


class _Primitive:
    """A registered op: ``fn`` on raw arrays, the parameters gradients flow to (``diff``), and
    ``vjp(g, ctx, a, needs) -> {param: gradient}`` (a list for a list parameter), where ``a`` maps
    every parameter to its raw argument, ``ctx`` is what ``forward(a) -> (output, ctx)`` kept
    (by default the output) and ``needs[param]`` says which gradients are wanted."""

    def __init__(self, name, fn, diff, vjp, forward=None, keep=None):
        self.name, self.fn, self.diff, self.vjp, self.forward = name, fn, tuple(diff), vjp, forward
        self.keep = None if keep is None else frozenset(keep)
        self.signature = inspect.signature(fn)

    def __call__(self, *args, **kwargs):
        if not _involved(args, kwargs):
            return self.fn(*args, **kwargs)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"ops.{self.name}: {exc}") from None
        bound.apply_defaults()
        # the tensors behind the differentiable parameters, in order (None: a constant)
        parents, slots = [], []
        for p in self.diff:
            v = bound.arguments.get(p)
            if type(v) in (list, tuple):
                ts = [_as_tensor(u) for u in v]
                slots.append((p, len(parents), len(ts)))
                parents.extend(ts)
            else:
                slots.append((p, len(parents), None))
                parents.append(_as_tensor(v))
        # every other argument (labels given as a Tensor, say) as its raw array
        raw = {}
        for name, v in bound.arguments.items():
            if name in self.diff and type(v) in (list, tuple):
                raw[name] = type(v)(_raw_or_watched(u) for u in v)
            else:
                raw[name] = _raw_or_watched(v)
        record = recording() and any(t is not None and t.requires_grad for t in parents)
        if record and self.forward is not None:
            out, ctx = self.forward(dict(raw))
        else:
            out = self._call_raw(bound, raw)
            ctx = out
        if out is None:  # an in-place update
            return None
        extra = ()
        if isinstance(out, tuple):  # (output, saved state...): only the first is differentiable
            out, extra = out[0], out[1:]
            if self.forward is None:
                ctx = out
        if not record:
            result = Tensor(out)
        elif self.vjp is None:
            result = Tensor(out, _Node(self.name, [_vertex(t) for t in parents if t is not None and t.requires_grad],
                                       None, out))
        else:
            if self.keep is not None:  # the VJP reads only the shapes of the other arrays
                raw = {k: v if k in self.keep else _strip(v) for k, v in raw.items()}
            live = [t if t is not None and t.requires_grad else None for t in parents]
            needs = {}
            for p, start, n in slots:
                needs[p] = live[start] is not None if n is None else [t is not None for t in live[start:start + n]]
            vjp, name = self.vjp, self.name

            def node_vjp(g, raw=raw, ctx=ctx, needs=needs, slots=slots, count=len(parents)):
                grads = vjp(g, ctx, raw, needs)
                flat = [None] * count
                for p, start, n in slots:
                    got = grads.get(p)
                    if got is None:
                        continue
                    if n is None:
                        flat[start] = got
                    else:
                        flat[start:start + n] = list(got)
                return flat

            node = _Node(name, [_vertex(t) if t is not None else _CONSTANT for t in live], node_vjp, out)
            result = Tensor(out, node)
        if extra:
            return (result,) + tuple(Tensor(e) if hasattr(e, "shape") else e for e in extra)
        return result

    def _call_raw(self, bound, raw):
        bound.arguments.update(raw)
        return self.fn(*bound.args, **bound.kwargs)


def _raw_or_watched(v):
    t = type(v)
    if t is Tensor or t in _TRACKED:
        return v.value
    if t in (list, tuple):
        return t(_raw_or_watched(u) for u in v)
    return v


def _strip(v):
    if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, _Meta):
        return _Meta(v)
    if type(v) in (list, tuple):
        return type(v)(_strip(u) for u in v)
    return v


_CONSTANT = Tensor(None)  # a parent slot that takes no gradient


def register(name, fn, diff=(), vjp=None, forward=None, keep=None):
    """``fn`` wrapped so that calls on tensors record ``vjp``; ``vjp=None`` registers a
    non-differentiable op (its outputs carry no gradient back). ``keep`` names the arguments the
    VJP reads in full; the graph keeps only the shape and dtype of the others (None: keep all)."""
    prim = _Primitive(name, fn, diff, vjp, forward, keep)

    def op(*args, **kwargs):
        if not _involved(args, kwargs):  # plain arrays: the op itself, one scan of the arguments added
            return fn(*args, **kwargs)
        return prim(*args, **kwargs)

    op.__name__ = getattr(fn, "__name__", name)
    op.__qualname__ = op.__name__
    op.__doc__ = fn.__doc__
    op.__wrapped__ = fn
    op.__signature__ = prim.signature
    op._primitive = prim
    return op


def stop_gradient(variable):
    """The value of ``variable`` as a constant: no gradient flows back through it."""
    t = type(variable)
    if t is Tensor or t in _TRACKED:
        return Tensor(variable.value)
    return variable


def convert_to_tensor(x, dtype=None):
    """x (an array, a Variable, a Tensor, nested lists of numbers) as a Tensor."""
    if type(x) is Tensor and dtype is None:
        return x
    if type(x) is Tensor or type(x) in _TRACKED:
        return _ops().cast(x, dtype) if dtype is not None else (_as_tensor(x) or Tensor(x.value))
    xp = get_array_module(x) if hasattr(x, "__cuda_array_interface__") else np
    return Tensor(xp.asarray(x, dtype=dtype))


# ----------------------------------------------------------------------------------------------------
# Backward


def _parents(v):
    return v.parents if type(v) is _Node else ()


def _topological(roots):
    """Vertices (nodes and leaf tensors) reachable from roots, parents before children."""
    order, seen = [], set()
    for root in roots:
        if id(root) in seen:
            continue
        stack = [(root, iter(_parents(root)))]
        seen.add(id(root))
        while stack:
            v, pending = stack[-1]
            for p in pending:
                if p is _CONSTANT or id(p) in seen:
                    continue
                seen.add(id(p))
                stack.append((p, iter(_parents(p))))
                break
            else:
                stack.pop()
                order.append(v)
    return order


def _cast_like(g, v):
    shape, dtype = (v.shape, v.dtype) if type(v) is _Node else (tuple(v.value.shape), v.value.dtype)
    if g.dtype != dtype:
        g = g.astype(dtype)
    if tuple(g.shape) != shape:
        raise RuntimeError(f"internal: gradient of shape {tuple(g.shape)} for a tensor of shape {shape}")
    return g


def backward(roots, root_grads, keep=(), retain_graph=False):
    """Gradients from ``root_grads`` at the Tensors ``roots`` back through the recorded graph.

    Returns (grads, var_grads, blocked): grads maps id(vertex) -> gradient for the leaf tensors and
    for the vertices in ``keep`` (ids of ``_vertex(tensor)``); var_grads maps id(Variable) ->
    (variable, gradient summed over its uses); blocked lists (node, op name) where a gradient
    reached a non-differentiable op. With ``retain_graph`` False every node visited is freed."""
    verts = [_vertex(r) for r in roots]
    order = _topological(verts)
    keep = set(keep)
    grads = {}
    for v, g in zip(verts, root_grads):
        if g is None:
            continue
        g = _cast_like(g, v)
        grads[id(v)] = grads[id(v)] + g if id(v) in grads else g
    var_grads, blocked, leaves = {}, [], {}
    with _paused():
        for v in reversed(order):
            g = grads.get(id(v))
            if type(v) is not _Node:  # a leaf tensor
                if g is not None:
                    leaves[id(v)] = g
                    if v.variable is not None:
                        prev = var_grads.get(id(v.variable))
                        var_grads[id(v.variable)] = (v.variable, g if prev is None else prev[1] + g)
                continue
            if id(v) not in keep:
                grads.pop(id(v), None)
            if g is None:
                continue
            if v.vjp is None:
                blocked.append((v, v.name))
                continue
            pgrads = v.vjp(g)
            for p, pg in zip(v.parents, pgrads):
                if pg is None or p is _CONSTANT:
                    continue
                pg = _cast_like(pg, p)
                grads[id(p)] = grads[id(p)] + pg if id(p) in grads else pg
    if not retain_graph:
        for v in order:
            if type(v) is _Node and v.vjp is not None:
                v.vjp, v.parents = _freed, ()
    result = dict(leaves)
    for k in keep:
        if k in grads:
            result[k] = grads[k]
    return result, var_grads, blocked


def _ancestors(vertices):
    out, stack = set(), list(vertices)
    while stack:
        for p in _parents(stack.pop()):
            if p is not _CONSTANT and id(p) not in out:
                out.add(id(p))
                stack.append(p)
    return out


# ----------------------------------------------------------------------------------------------------
# GradientTape


class GradientTape:
    """Records ops for differentiation, as ``tf.GradientTape``::

        with cnnkit.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = loss_fn(y, y_pred)
        grads = tape.gradient(loss, model.trainable_weights)

    Trainable variables read inside the block are watched (``watch_accessed_variables``); arrays
    and non-trainable variables are watched with :meth:`watch`. ``gradient`` gives None for a
    source the target does not depend on, and ValueError when the only path to it crosses a
    non-differentiable op (argmax, a comparison, an integer cast). A tape gives one set of
    gradients and frees its graph, unless ``persistent=True``. Gradients flow through everything
    recorded since the sources were watched, whichever tape was active then (as in PyTorch)."""

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self.persistent = bool(persistent)
        self.watch_accessed_variables = bool(watch_accessed_variables)
        self._watched = {}  # id(raw array) -> leaf Tensor
        self._watched_vars = set()
        self._keep = []  # what the tape must keep alive (watched arrays, variables)
        self._active = False
        self._used = False
        self._ctx = None

    def __enter__(self):
        if self._active:
            raise RuntimeError("this GradientTape is already recording")
        self._active = True
        _state.tapes.append(self)
        self._ctx = _record(self.watch_accessed_variables)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        self._ctx = None
        _state.tapes.remove(self)
        self._active = False
        return False

    def watch(self, tensor):
        """Watch an array, a Variable or a Tensor (or a list of them). Returns the watched Tensor
        for an array, so operators on it record too: ``x = tape.watch(x)``."""
        if isinstance(tensor, (list, tuple)):
            return type(tensor)(self.watch(t) for t in tensor)
        t = type(tensor)
        if t in _TRACKED and t is not Tensor:
            self._watched_vars.add(id(tensor))
            self._keep.append(tensor)
            return tensor
        if t is Tensor:
            if tensor.node is None and not tensor.requires_grad:
                tensor.requires_grad = True
            return tensor
        if not (hasattr(tensor, "shape") and hasattr(tensor, "dtype")):
            raise TypeError(f"GradientTape.watch takes arrays, Variables and Tensors, received "
                            f"{type(tensor).__name__}")
        if tensor.dtype not in (np.float16, np.float32, np.float64):
            raise ValueError(f"GradientTape.watch: only floating-point arrays have gradients, received dtype "
                             f"{tensor.dtype}")
        leaf = self._watched.get(id(tensor))
        if leaf is None or leaf.value is not tensor:
            leaf = Tensor(tensor, requires_grad=True)
            self._watched[id(tensor)] = leaf
            self._keep.append(tensor)
        return leaf

    def watched_variables(self):
        return [v for v in self._keep if type(v) in _TRACKED and type(v) is not Tensor]

    @contextlib.contextmanager
    def stop_recording(self):
        """Ops in this block are not recorded (their results are constants)."""
        if not self._active:
            raise RuntimeError("stop_recording() needs the tape to be recording (inside its with block)")
        with _paused():
            yield

    def reset(self):
        """Forget everything watched so far (variables read later are watched again)."""
        self._watched.clear()
        self._watched_vars.clear()
        self._keep.clear()

    def gradient(self, target, sources, output_gradients=None, unconnected_gradients="none"):
        """d target / d sources. ``target``: a Tensor (or a list, summed), ``sources``: a Variable,
        a watched array, a Tensor, or a list/tuple/dict of them; the result has the same structure.
        ``output_gradients`` weights a non-scalar target (ones by default)."""
        if unconnected_gradients not in ("none", "zero"):
            raise ValueError(f"unconnected_gradients must be 'none' or 'zero', received {unconnected_gradients!r}")
        if self._used and not self.persistent:
            raise RuntimeError("a non-persistent GradientTape gives one set of gradients; use "
                               "GradientTape(persistent=True) to take several")
        if any(t is not self and t._active for t in _state.tapes) and _state.paused == 0:
            raise NotImplementedError(
                "gradient() inside another recording GradientTape: second-order gradients are not supported "
                "(the gradient computation is not recorded). Take the gradient after the outer tape's with "
                "block, or inside outer_tape.stop_recording()")
        self._used = True
        targets = list(target) if isinstance(target, (list, tuple)) else [target]
        if isinstance(sources, dict):
            keys, flat = list(sources), list(sources.values())
        elif isinstance(sources, (list, tuple)):
            keys, flat = None, list(sources)
        else:
            keys, flat = None, [sources]
        roots, root_grads = [], []
        outs = list(output_gradients) if isinstance(output_gradients, (list, tuple)) else [output_gradients] * len(targets)
        if len(outs) != len(targets):
            raise ValueError(f"output_gradients has {len(outs)} entries for {len(targets)} targets")
        for t, og in zip(targets, outs):
            if type(t) is not Tensor or not t.requires_grad:
                continue  # a constant: every gradient is None
            if og is None:
                g = get_array_module(t.value).ones(t.value.shape, t.value.dtype)
            else:
                g = _raw(og)
                if tuple(g.shape) != tuple(t.value.shape):
                    raise ValueError(f"output_gradients of shape {tuple(g.shape)} for a target of shape "
                                     f"{tuple(t.value.shape)}")
            roots.append(t)
            root_grads.append(g)
        resolved = [self._resolve(s) for s in flat]
        keep = [id(_vertex(r)) for r in resolved if type(r) is Tensor]
        grads, var_grads, blocked = backward(roots, root_grads, keep, retain_graph=self.persistent)
        result = []
        blocked_from = None
        for s, r in zip(flat, resolved):
            if r is None:
                g = None
            elif type(r) is Tensor:
                g = grads.get(id(_vertex(r)))
            else:
                g = var_grads.get(id(r), (None, None))[1]
            if g is None and blocked:
                if blocked_from is None:
                    blocked_from = {}
                    for v, name in blocked:
                        for a in _ancestors([v]) | {id(v)}:
                            blocked_from.setdefault(a, name)
                key = id(_vertex(r)) if type(r) is Tensor else None
                name = blocked_from.get(key) if key is not None else None
                if name is None and r is not None and type(r) is not Tensor:
                    name = next((n for (v, n) in blocked
                                 if any(getattr(p, "variable", None) is r for p in _walk(v))), None)
                if name is not None:
                    raise ValueError(f"the gradient of the target with respect to source {len(result)} passes only "
                                     f"through ops.{name}, which is not differentiable (its output is "
                                     "integer, boolean or piecewise constant)")
            if g is None and unconnected_gradients == "zero" and r is not None:
                value = r.value
                g = get_array_module(value).zeros(value.shape, value.dtype)
            result.append(g)
        if keys is not None:
            return dict(zip(keys, result))
        if isinstance(sources, (list, tuple)):
            return type(sources)(result) if isinstance(sources, tuple) else result
        return result[0]

    def _resolve(self, s):
        """A source as what backward reports: a Tensor (leaf or intermediate), a Variable, or None."""
        t = type(s)
        if t is Tensor:
            return s
        if t in _TRACKED:
            return s
        if hasattr(s, "shape"):
            leaf = self._watched.get(id(s))
            return leaf if leaf is not None and leaf.value is s else None
        raise TypeError(f"GradientTape.gradient sources must be Variables, Tensors or watched arrays, received "
                        f"{type(s).__name__}")


def _walk(v):
    """Every vertex reachable from v through parents (v included)."""
    stack, seen = [v], set()
    while stack:
        u = stack.pop()
        if id(u) in seen or u is _CONSTANT:
            continue
        seen.add(id(u))
        yield u
        stack.extend(_parents(u))


# ----------------------------------------------------------------------------------------------------
# Layers: a layer written with only ``call`` records it; a built-in layer is one node


def _unwrap_outputs(out):
    if isinstance(out, (list, tuple)):
        return [o.value if type(o) is Tensor else o for o in out]
    return out.value if type(out) is Tensor else out


def _call_kwargs(layer, training):
    try:
        params = inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return {}
    if "training" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return {"training": training}
    return {}


def layer_forward(layer, inputs, training):
    """``Layer.forward`` for a layer that defines only ``call``: returns (output array, saved). The
    call is recorded when training (or inside a tape), so that :func:`layer_backward` can replay it."""
    multi = isinstance(inputs, (list, tuple))
    arrays = list(inputs) if multi else [inputs]
    record = bool(training) or recording()
    if not record:
        with _paused():
            out = layer.call(_pack([Tensor(a) for a in arrays], multi), **_call_kwargs(layer, training))
        return _check_output(layer, out), None
    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    with _record(True):
        out = layer.call(_pack(leaves, multi), **_call_kwargs(layer, training))
    value = _check_output(layer, out)
    return value, (leaves, out, multi)


def _pack(tensors, multi):
    return list(tensors) if multi else tensors[0]


def _check_output(layer, out):
    if type(out) is Tensor:
        return out.value
    if hasattr(out, "shape") and hasattr(out, "dtype"):
        return out
    raise TypeError(f"{type(layer).__name__}.call must return one tensor (built with cnnkit.ops), received "
                    f"{type(out).__name__}")


def layer_backward(layer, saved, dy, need_dx):
    """``Layer.backward`` for a call-only layer: replays the recorded call from dy, adds the weight
    gradients to each variable's ``grad`` and returns dx."""
    if saved is None:
        raise RuntimeError(f"layer {layer.name!r}: backward needs a forward pass with training=True")
    leaves, out, multi = saved
    if type(out) is not Tensor or not out.requires_grad:
        grads, var_grads = {}, {}
    else:
        grads, var_grads, _ = backward([out], [dy])
    for var, g in var_grads.values():
        if var.trainable:
            var.accumulate_grad(g)
    needs = list(need_dx) if multi else [need_dx]
    dxs = []
    for leaf, want in zip(leaves, needs):
        g = grads.get(id(leaf)) if want else None
        if want and g is None:
            g = get_array_module(leaf.value).zeros(leaf.value.shape, leaf.value.dtype)
        dxs.append(g)
    return dxs if multi else dxs[0]


def layer_call(layer, inputs, training):
    """``layer(inputs)`` with tensors or while recording: a call-only layer runs its call on the
    tensors (its ops are recorded in place); a layer with its own forward/backward (built-in layers,
    models) becomes one node whose VJP is its backward, the weight gradients routed to the
    variables."""
    multi = isinstance(inputs, (list, tuple))
    items = list(inputs) if multi else [inputs]
    tensors = []
    for a in items:
        t = _as_tensor(a)
        tensors.append(t if t is not None else Tensor(a.value if type(a) in _TRACKED else a))
    arrays = [t.value for t in tensors]
    if layer._defines_call():
        layer._maybe_build([(None,) + tuple(a.shape[1:]) for a in arrays] if multi
                           else (None,) + tuple(arrays[0].shape[1:]))
        out = layer.call(_pack(tensors, multi), **_call_kwargs(layer, training))
        if type(out) is not Tensor:
            out = Tensor(_check_output(layer, out))
        return out
    with _paused():  # the layer's own ops run on raw arrays (a watched one among them included)
        y, saved = layer._forward_checked(_pack(arrays, multi), training)
    if not recording():
        return Tensor(y)
    variables = [v for v in layer.trainable_weights]
    var_leaves = [_as_tensor(v) for v in variables]
    live = [t if t.requires_grad else None for t in tensors]
    wants_vars = [v for v, t in zip(variables, var_leaves) if t is not None and t.requires_grad]
    if all(t is None for t in live) and not wants_vars:
        return Tensor(y)
    var_leaves = [t for t in var_leaves if t is not None and t.requires_grad]
    persistent = any(tape.persistent for tape in _state.tapes)

    def vjp(g):
        old = [v.grad for v in variables]
        for v in variables:
            v.grad = None
        try:
            need = [t is not None for t in live]
            state = list(saved) if persistent and isinstance(saved, list) else saved
            dx = layer.backward(state, g, need if multi else need[0])
            new = {id(v): v.grad for v in variables}
        finally:
            for v, o in zip(variables, old):
                v.grad = o
        dxs = list(dx) if multi else [dx]
        return [d if t is not None else None for d, t in zip(dxs, live)] + [new.get(id(t.variable))
                                                                           for t in var_leaves]

    parents = [_vertex(t) if t is not None else _CONSTANT for t in live] + var_leaves
    return Tensor(y, _Node(type(layer).__name__, parents, vjp, y))


def wants_layer_call(inputs):
    """Whether ``layer(inputs)`` must take :func:`layer_call` (tensors, variables, or recording)."""
    if recording():
        return True
    items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return any(type(a) in _TRACKED for a in items)


def infer_output_shape(layer, input_shape):
    """``compute_output_shape`` of a call-only layer: its call run once on a batch of 1 of zeros,
    without recording (on the device of the layer's weights)."""
    weights = layer.weights
    xp = get_array_module(weights[0].value) if weights else np
    multi = isinstance(input_shape, list)
    shapes = input_shape if multi else [input_shape]
    arrays = [xp.zeros([1 if d is None else int(d) for d in s], layer.dtype) for s in shapes]
    with _paused(), np.errstate(all="ignore"):
        out = layer.call(_pack([Tensor(a) for a in arrays], multi), **_call_kwargs(layer, False))
    value = _check_output(layer, out)
    return (None,) + tuple(value.shape[1:])


def regularizer_node(variable):
    """A variable's regularization penalty as a 0-d Tensor whose VJP is the regularizer's
    ``gradient``."""
    leaf = _as_tensor(variable)
    penalty = variable.regularizer(variable.value)
    if leaf is None or not leaf.requires_grad or not recording():
        return Tensor(penalty)
    reg = variable.regularizer

    def vjp(g):
        return [reg.gradient(variable.value) * g]

    return Tensor(penalty, _Node("regularizer", [leaf], vjp, penalty))


def weighted_loss_node(loss, y_true, y_pred, sample_weight):
    """A loss weighted per sample as Keras 3 weighs it (sum(w * per-sample loss) / their number), as
    a 0-d Tensor whose VJP is the loss's backward with each sample's rows scaled by its weight."""
    pred = _as_tensor(y_pred)
    yt, yp = _raw(y_true), _raw(y_pred)
    per = loss.per_sample(yt, yp)
    xp = get_array_module(per)
    w = xp.asarray(_raw(sample_weight), dtype=xp.float64)
    if w.shape != per.shape[:1]:
        raise ValueError(f"sample_weight must hold one weight per sample, shape ({per.shape[0]},); received shape "
                         f"{tuple(w.shape)}")
    value = xp.asarray((per * w.reshape(w.shape + (1,) * (per.ndim - 1))).sum() / max(per.size, 1), dtype=yp.dtype)
    if pred is None or not pred.requires_grad or not recording():
        return Tensor(value)
    _, saved = loss.forward(yt, yp)

    def vjp(g):
        d = loss.backward(saved)
        return [d * (w.reshape(w.shape + (1,) * (d.ndim - 1)) * g).astype(d.dtype)]

    return Tensor(value, _Node(type(loss).__name__, [_vertex(pred)], vjp, value))


def loss_node(loss, y_true, y_pred):
    """A cnnkit.losses.Loss applied to tensors: its value as a 0-d Tensor whose VJP is the loss's
    own ``backward`` (y_true is a constant: targets carry no gradient)."""
    pred = _as_tensor(y_pred)
    value, saved = loss.forward(_raw(y_true), _raw(y_pred))
    if pred is None or not pred.requires_grad or not recording():
        return Tensor(value)

    def vjp(g):
        return [loss.backward(saved) * g]

    return Tensor(value, _Node(type(loss).__name__, [_vertex(pred)], vjp, value))
