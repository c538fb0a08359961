"""compile / fit / evaluate / predict / train_on_batch / test_on_batch for Model.

A training step is: forward (training=True) -> loss -> backward -> regularizer gradients ->
optimizer update in place. When the output layer ends in a softmax and the loss is (sparse)
categorical cross-entropy on probabilities, the step runs the output layer up to its logits and
uses the fused, stable softmax-cross-entropy kernel instead (as Keras/TensorFlow do). Data arrives
as NumPy arrays, or as batches from a Sequence (``__len__``/``__getitem__``) or a generator so it
need not fit in memory; each batch is cast to the model's dtype and moved to the model's device here.
Everything that can be wrong with array data (shapes, label values, NaN) is checked before the first
weight changes; streamed batches get the same checks one batch at a time. So the steps skip the
per-call label checks of the loss and the metrics (``labels_checked``), which on the GPU would each
read the device back.

The loss and the metrics stay on the device: a step returns its loss as a 0-d array and the metrics
add device-side totals, so a GPU step never waits for the device. They are read (one transfer,
``ops._backend.read_scalars``) only when someone looks: at each epoch's end, and per step only for
a callback that takes the batch's logs (the progress bar only when it redraws). A NumPy loss is host
memory, so on the CPU every step's loss is still checked for NaN/inf at no cost and a non-finite
batch's update is not applied; on the GPU that check would synchronize every step, so there a
non-finite loss stops training when the loss is next read.
"""

import copy
import math
import sys

import numpy as np

from .. import _random
from .._checks import fraction, int_at_least, positive_int
from .. import callbacks as _callbacks
from .. import device as _device
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from ..config import config
from ..layers.base import format_shape
from ..ops import get_array_module, softmax, to_host
from ..ops import _backend, autodiff
from ..ops._op_args import is_cupy, labels_checked

__all__ = ["Trainer"]


def _to_numpy_input(a, name):
    """a as a NumPy array, or a CuPy array as it is: data already on the GPU stays there and its
    batches are gathered there. Objects with ``__array__`` (a PyTorch CPU tensor) or a host
    ``__dlpack__`` are read as NumPy arrays, GPU DLPack ones as CuPy arrays, without importing their
    library."""
    if a is None:
        raise ValueError(f"{name} is required")
    if is_cupy(a):
        return a
    if not hasattr(a, "__array__") and hasattr(a, "__dlpack__"):
        return _backend.as_array(a) if _backend._is_gpu_dlpack(a) else np.from_dlpack(a)
    if hasattr(a, "__array__") or isinstance(a, (list, tuple)):
        arr = to_host(a)
        if arr.dtype == object:
            raise TypeError(f"{name} must be a numeric array, received an object array")
        return arr
    raise TypeError(f"{name} must be a NumPy array (or array-like), received {type(a).__name__}")


def _batch_size(value, name="batch_size"):
    return 32 if value is None else positive_int(value, name)


def _steps(value, name):
    return int_at_least(value, name, 1, allow_none=True)


def _is_stream(x):
    """Batches rather than arrays: a Sequence-like object (__len__ and __getitem__ but no array
    interface), an iterator (a generator), any other iterable (a PyTorch DataLoader), or a list of
    (x, y[, w]) tuples of arrays."""
    if x is None or isinstance(x, (dict, str, bytes)) or hasattr(x, "__array__") or hasattr(x, "shape") or \
            hasattr(x, "__dlpack__"):
        return False
    if isinstance(x, (list, tuple)):
        first = x[0] if x else None
        return isinstance(first, (list, tuple)) and len(first) in (2, 3) and _is_batch_array(first[0])
    return hasattr(x, "__next__") or hasattr(x, "__iter__") or (hasattr(x, "__len__") and hasattr(x, "__getitem__"))


def _is_batch_array(a):
    """An array of at least one axis (what a batch's x is), not a number or a nested list of numbers."""
    return (hasattr(a, "shape") or hasattr(a, "__array__") or hasattr(a, "__dlpack__")) and len(getattr(a, "shape", (1,))) >= 1


class _ArrayBatches:
    """Batches (x, y, sample_weight) of batch_size rows from in-memory arrays (already checked; y and
    the weights may be None), shuffled per epoch on request."""

    def __init__(self, x, y, batch_size, steps=None, steps_name="steps", w=None):
        self.x, self.y, self.w, self.batch_size = x, y, w, batch_size
        self.samples = x.shape[0]
        full = -(-self.samples // batch_size)
        if steps is not None and steps > full:
            raise ValueError(f"{steps_name}={steps} is more than the {full} batches of {batch_size} in the "
                             f"{self.samples} samples given")
        self.steps = steps or full
        self.exhausted = False

    def epoch(self, shuffle=False):
        order = _random.generator().permutation(self.samples) if shuffle else None
        # GPU-resident arrays are gathered on the GPU, the shuffled order uploaded once per epoch
        x_order = y_order = order
        if order is not None and is_cupy(self.x):
            x_order = get_array_module(self.x).asarray(order)
        if order is not None and is_cupy(self.y):
            y_order = x_order if is_cupy(self.x) else get_array_module(self.y).asarray(order)
        for step in range(self.steps):
            sl = slice(step * self.batch_size, min(self.samples, (step + 1) * self.batch_size))
            xi, yi = (sl, sl) if order is None else (x_order[sl], y_order[sl])
            wi = sl if order is None else order[sl]
            yield self.x[xi], None if self.y is None else self.y[yi], None if self.w is None else self.w[wi]

    def on_epoch_end(self):
        pass


class _PinnedUploads:
    """Host (NumPy) batches to the GPU one batch ahead. Each batch is cast into page-locked host
    memory and copied on a side stream while the GPU runs the previous step; the compute stream waits
    on the copy's event, the host does not. (A pageable upload, cupy.asarray of a NumPy array, waits
    until the stream has caught up, every step.) Destination arrays are taken from CuPy's pool on the
    compute stream, so the side stream first waits for the compute work queued so far (the block may
    be one a queued kernel still reads). A pinned buffer is reused after its copy has finished: the
    host may wait for a copy, a DMA, not for the compute."""

    SLOTS = 3

    def __init__(self, cp):
        self.cp = cp
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.pinned = [None] * self.SLOTS  # per slot: [memory, bytes, event of the copy that read it]
        self.slot = 0

    def _upload(self, hosts):
        """Device arrays holding the NumPy arrays ``hosts`` (pairs (array, dtype) cast on the way;
        None stays None) and the event after which they hold the data."""
        cp = self.cp
        i, self.slot = self.slot, (self.slot + 1) % self.SLOTS
        sizes = [0 if h is None else -(-h[0].size * np.dtype(h[1]).itemsize // 64) * 64 for h in hosts]
        if self.pinned[i] is not None and self.pinned[i][2] is not None:
            self.pinned[i][2].synchronize()  # the copy that last read this buffer has finished
        if self.pinned[i] is None or self.pinned[i][1] < sum(sizes):
            self.pinned[i] = [cp.cuda.alloc_pinned_memory(max(sum(sizes), 64)), max(sum(sizes), 64), None]
        memory = self.pinned[i][0]
        compute = cp.cuda.get_current_stream()
        self.stream.wait_event(compute.record())
        out, offset = [], 0
        for h, size in zip(hosts, sizes):
            if h is None:
                out.append(None)
                continue
            array, dtype = h
            staged = np.frombuffer(memory, dtype, array.size, offset).reshape(array.shape)
            np.copyto(staged, array, casting="unsafe")  # the one host copy, with the cast
            offset += size
            dev = cp.empty(array.shape, dtype)  # from the compute stream's pool
            dev.set(staged, stream=self.stream)
            out.append(dev)
        self.pinned[i][2] = self.stream.record()
        return out, self.pinned[i][2]

    def batches(self, source, prepare):
        """(x, y, w) device batches for the host batches of ``source``; ``prepare(xb, yb, wb)`` gives
        the list of (host array, dtype) to upload."""
        compute = self.cp.cuda.get_current_stream()
        ahead = None
        try:
            for xb, yb, wb in source:
                nxt = self._upload(prepare(xb, yb, wb))
                if ahead is not None:
                    (x, y, w), ready = ahead
                    compute.wait_event(ready)
                    yield x, y, w
                ahead = nxt
            if ahead is not None:
                (x, y, w), ready = ahead
                ahead = None
                compute.wait_event(ready)
                yield x, y, w
        finally:
            # a batch uploaded but never used (training stopped): its device block goes back to the
            # compute stream's pool, so that stream must not reuse it before the copy has landed
            if ahead is not None:
                compute.wait_event(ahead[1])


class _StreamBatches:
    """(x, y, sample_weight) NumPy batches from
    - a Sequence (len + getitem) or a list of (x, y[, w]) tuples: the batch order is shuffled per
      epoch on request, as Keras does;
    - an iterable that is not an iterator (a PyTorch DataLoader): iterated afresh each epoch, for
      ``steps`` batches or until it ends;
    - an iterator (a generator): ``steps`` batches per epoch, continuing where the last epoch
      stopped; without ``steps``, until it ends (one epoch, whose length is then known, as Keras).
    Each batch is checked as fit checks arrays, when it arrives; with ``config.prefetch_batches`` the
    next ones are read and checked on a background thread while the current step runs."""

    def __init__(self, trainer, data, steps, name, steps_name, labels=True):
        self.trainer, self.data, self.name, self.labels = trainer, data, name, labels
        if hasattr(data, "__next__"):
            self.kind = "iterator"
        elif hasattr(data, "__len__") and hasattr(data, "__getitem__"):
            self.kind = "sequence"
        else:
            self.kind = "iterable"
        self.samples = None
        self.exhausted = False
        self.steps_name = steps_name
        if self.kind == "sequence":
            n = len(data)
            if n == 0:
                raise ValueError(f"{name} has no batches (len({name}) == 0)")
            if steps is not None and steps > n:
                raise ValueError(f"{steps_name}={steps} is more than the {n} batches of {name}")
            self.steps = steps or n
        elif self.kind == "iterable" and steps is None and hasattr(data, "__len__"):
            self.steps = len(data) or None
        else:
            self.steps = steps  # None: until the data ends
        self.until_exhausted = self.steps is None

    @property
    def sequence(self):
        return self.kind == "sequence"

    def epoch(self, shuffle=False):
        return _prefetched(self._epoch(shuffle), config.prefetch_batches)

    def _epoch(self, shuffle):
        if self.kind == "sequence":
            if hasattr(self.data, "on_epoch_begin"):
                self.data.on_epoch_begin()
            n = len(self.data)
            order = _random.generator().permutation(n)[:self.steps] if shuffle else range(self.steps)
            for i in order:
                yield self._checked(self.data[int(i)], int(i))
            return
        source = iter(self.data) if self.kind == "iterable" else self.data
        step = 0
        while self.steps is None or step < self.steps:
            try:
                batch = next(source)
            except StopIteration:
                if self.until_exhausted and (self.kind == "iterable" or step > 0):
                    if self.kind == "iterator":
                        self.steps = step  # the length of the one epoch a finite generator holds
                    return
                self.exhausted = True
                print(f"Your input ran out of data after {step} batches of this epoch; interrupting. Make sure "
                      f"{self.name} can generate at least {self.steps_name} * epochs batches.", file=sys.stderr,
                      flush=True)
                return
            yield self._checked(batch, step)
            step += 1

    def on_epoch_end(self):
        if self.sequence and hasattr(self.data, "on_epoch_end"):
            self.data.on_epoch_end()

    def _checked(self, batch, i):
        what = f"batch {i} of {self.name}"
        wb = None
        if isinstance(batch, (list, tuple)):
            if len(batch) not in (1, 2, 3):
                raise ValueError(f"{what} must be x, (x, y) or (x, y, sample_weight), received a "
                                 f"{type(batch).__name__} of {len(batch)} items")
            xb, yb = batch[0], batch[1] if len(batch) >= 2 else None
            wb = batch[2] if len(batch) == 3 else None
        else:
            xb, yb = batch, None
        xb = self.trainer._check_x(xb, f"x of {what}")
        if xb.shape[0] == 0:
            raise ValueError(f"{what} is empty")
        if not self.labels:
            return xb, None, None
        if yb is None and not self.trainer._custom("train_step"):
            raise ValueError(f"{what} has no labels: yield (x, y) pairs")
        if wb is not None:
            wb = _check_sample_weight(wb, xb.shape[0], f"sample_weight of {what}")
        if yb is None:
            return xb, None, wb
        try:
            return xb, self.trainer._check_y(yb, xb.shape[0], f"y of {what}"), wb
        except ValueError as e:
            if f"y of {what}" in str(e):
                raise
            # The loss's own label checks do not know which batch they were given.
            raise ValueError(f"y of {what}: {e}") from None


class Trainer:
    """The training API of Model; expects the graph interface of cnnkit.models.Model."""

    def __init__(self):
        self.optimizer = None
        self.loss = None
        self.compiled_metrics = []
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._loss_tracker = None

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, weighted_metrics=None, **kwargs):
        """Set the optimizer, the loss and the metrics to report (names or objects, as in Keras);
        ``weighted_metrics`` are weighted by fit's and evaluate's sample_weight / class_weight (the
        loss is, ``metrics`` are not, as in Keras 3)."""
        ignored = {"run_eagerly", "jit_compile", "steps_per_execution"}
        unknown = set(kwargs) - ignored
        if unknown:
            raise TypeError(f"compile got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        if loss is None and not self._custom("train_step"):
            raise ValueError("compile needs a loss, e.g. loss='sparse_categorical_crossentropy' (a model with its "
                             "own train_step may compile without one)")
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, _metrics.Metric)) or callable(metrics) and not isinstance(metrics, (list, tuple)):
            metrics = [metrics]
        if isinstance(metrics, dict):
            raise TypeError("metrics per output (a dict) are not supported; pass a list")
        out_shape = self.outputs[0].shape if getattr(self, "_graph_ready", False) else None
        self.compiled_metrics = [_metrics.get(m, loss=self.loss, output_shape=out_shape) for m in metrics]
        if weighted_metrics is None:
            weighted_metrics = []
        if isinstance(weighted_metrics, (str, _metrics.Metric)) or callable(weighted_metrics) and \
                not isinstance(weighted_metrics, (list, tuple)):
            weighted_metrics = [weighted_metrics]
        self.compiled_weighted_metrics = [_metrics.get(m, loss=self.loss, output_shape=out_shape)
                                          for m in weighted_metrics]
        taken = {m.name for m in self.compiled_metrics}
        for m in self.compiled_weighted_metrics:
            if m.name in taken:  # the same metric both ways: Keras names the weighted one weighted_<name>
                m.name = "weighted_" + m.name
        names = ["loss"] + [m.name for m in self.compiled_metrics + self.compiled_weighted_metrics]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"metric names must be unique, these repeat: {sorted(dup)}")
        self._loss_tracker = _metrics.Mean(name="loss") if self.loss is not None else None
        self.compiled = True
        self._compile_config = {"optimizer": optimizer if isinstance(optimizer, str) else None,
                                "loss": loss if isinstance(loss, str) else None,
                                "metrics": [m if isinstance(m, str) else None for m in metrics]}

    @property
    def metrics_names(self):
        return [m.name for m in self.metrics]

    @property
    def metrics(self):
        """The metrics fit resets at each epoch: the loss tracker and the compiled metrics, then every
        Metric held in a public attribute of the model (a custom train_step's trackers), as Keras."""
        out = ([self._loss_tracker] if self._loss_tracker is not None else []) + list(self.compiled_metrics) + \
            list(getattr(self, "compiled_weighted_metrics", ()))
        return out + [m for m in self.__dict__.get("_tracked_metrics", ()) if all(m is not o for o in out)]

    # ------------------------------------------------------------------ overridable steps (Keras)
    def _custom(self, step):
        return getattr(type(self), step) is not getattr(Trainer, step)

    def train_step(self, data):
        """One optimizer step on a batch, as Keras' ``Model.train_step``: ``data`` is what the batch
        source gives, ``(x, y)`` (or ``x`` when fit got no labels). Returns the logs, {name: value}.
        Override it (with GradientTape, ``compute_loss`` and ``optimizer.apply_gradients``) for a
        GAN, distillation or any loss that is not a function of (y_true, y_pred); fit then calls
        yours, with callbacks and the progress bar as usual."""
        x, y, w = _unpack(data)
        self._require_loss("train_step")
        value, pred = self._train_step(x, y, sample_weight=w)
        self._update_metrics(value, x.shape[0], y, pred, w)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """One evaluation step on a batch, as Keras' ``Model.test_step``; returns the logs."""
        x, y, w = _unpack(data)
        self._require_loss("test_step")
        value, pred = self._test_step(x, y, sample_weight=w)
        self._update_metrics(value, x.shape[0], y, pred, w)
        return {m.name: m.result() for m in self.metrics}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss of (y, y_pred) plus the weights' regularization penalties, as Keras 3's
        ``Model.compute_loss``: a 0-d Tensor that a GradientTape differentiates when y_pred is one."""
        self._require_loss("compute_loss")
        if y_pred is None:
            y_pred = self(x, training=training)
        if sample_weight is None:
            value = self.loss(y, y_pred)
        else:
            value = autodiff.weighted_loss_node(self.loss, y, y_pred, sample_weight)
        for v in self.weights:
            if v.regularizer is not None:
                value = value + autodiff.regularizer_node(v)
        return value

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Update the compiled metrics with (y, y_pred) (the weighted ones with sample_weight);
        returns every metric's result, as Keras."""
        for m in self.compiled_metrics:
            m.update_state(y, y_pred)
        for m in getattr(self, "compiled_weighted_metrics", ()):
            m.update_state(y, y_pred, sample_weight=sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def _check_class_weight_labels(self, class_weight, y):
        """Every class in the labels y must have a class weight (as Keras requires)."""
        table = _class_weight_table(class_weight)
        if y is None:
            raise ValueError("class_weight needs labels y")
        ids = np.unique(to_host(_class_ids(to_host(y), np)))
        missing = [int(c) for c in ids if c >= len(table) or int(c) not in class_weight]
        if missing:
            raise ValueError(f"class_weight has no weight for class(es) {missing[:20]} found in y; give every class "
                             "a weight")

    def _require_loss(self, what):
        if self.loss is None:
            raise ValueError(f"{what} needs a loss: compile(loss=...), or override train_step/test_step")

    def _read_step_logs(self, logs):
        """A custom step's logs as Python floats (one read of the device)."""
        if not isinstance(logs, dict):
            raise TypeError(f"train_step/test_step must return a dict of logs, received {type(logs).__name__}")
        keys = list(logs)
        values = [autodiff.unwrap(v) for v in logs.values()]
        return dict(zip(keys, _backend.read_scalars(values)))

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"call model.compile(optimizer=..., loss=...) before model.{what}()")

    # ------------------------------------------------------------------ data
    def _ensure_built_for(self, x):
        if not self._graph_ready:
            self._build_from_data_shape((None,) + tuple(x.shape[1:]))

    def _build_from_data_shape(self, shape):
        raise ValueError(f"model {self.name!r} has no input shape; add cnnkit.layers.Input(...) first")

    def _check_x(self, x, name="x"):
        """x as a NumPy array of the model's input shape; ValueError naming both shapes otherwise."""
        x = _to_numpy_input(x, name)
        if getattr(self, "_subclassed", False):
            return self._check_values(x, name)
        self._ensure_built_for(x)
        if len(self.inputs) != 1:
            raise ValueError(f"model {self.name!r} has {len(self.inputs)} inputs; training and prediction "
                             "support single-input models")
        expected = self.inputs[0].shape
        if x.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected[1:], x.shape[1:])):
            one = x.ndim == len(expected) - 1 and all(e is None or e == s for e, s in zip(expected[1:], x.shape))
            hint = (f"; that is the shape of one sample: models take a batch, so pass {name}[None] or "
                    f"np.expand_dims({name}, 0) for a batch of one") if one else ""
            raise ValueError(f"{name} has shape {x.shape} but model {self.name!r} expects input shape "
                             f"{format_shape(expected)}{hint}")
        return self._check_values(x, name)

    def _check_values(self, x, name):
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{name} must hold numbers, received dtype {x.dtype}")
        if x.dtype.kind == "f" and x.size and not _all_finite(x):
            bad = to_host(get_array_module(x).argwhere(~get_array_module(x).isfinite(x))[0])
            value = x[tuple(bad)] if get_array_module(x) is np else to_host(x[tuple(bad)])[()]
            raise ValueError(f"{name} contains NaN or infinity (first at index {tuple(int(i) for i in bad)}: "
                             f"{value!r}); clean the data before training")
        return x

    def _check_y(self, y, n, name="y"):
        y = _to_numpy_input(y, name)
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"{name} has {y.shape[0] if y.ndim else 'no'} samples (shape {y.shape}) but x has {n}")
        if y.dtype.kind == "f" and y.size and not _all_finite(y):
            raise ValueError(f"{name} contains NaN or infinity")
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{name} must hold numbers, received dtype {y.dtype}")
        self._validate_labels(to_host(y))  # labels on the GPU: one copy per fit, checked on the host
        return y

    def _validate_labels(self, y):
        """Run the loss on the labels against a uniform prediction of the output's shape, in chunks:
        the loss's own checks (class range, shapes) then fire before any weight changes."""
        if getattr(self, "_subclassed", False) or self.loss is None:
            return  # no declared output shape: the steps check their labels themselves
        if len(self.outputs) != 1:
            raise ValueError(f"model {self.name!r} has {len(self.outputs)} outputs; training supports "
                             "single-output models")
        out = self.outputs[0].shape
        if any(s is None for s in out[1:]):
            return
        k = out[-1]
        step = max(1, 2**20 // max(1, math.prod(out[1:])))
        # cnnkit's metrics' own label checks too, on copies: the steps skip them (labels_checked)
        probes = [copy.deepcopy(m) for m in self.compiled_metrics if type(m).__module__ == _metrics.__name__]
        with labels_checked(False):  # these are the checks, wherever they are called from
            self._run_label_checks(y, out, k, step, probes)

    def _run_label_checks(self, y, out, k, step, probes):
        for i in range(0, y.shape[0], step):
            yb = y[i:i + step]
            pred = np.full((yb.shape[0],) + tuple(out[1:]), 1.0 / k if k > 1 else 0.5, dtype=config.floatx)
            labels = self._labels_for(yb, np)
            self.loss.forward(labels, pred)
            for m in probes:
                m.update_state(labels, pred)

    def _checked_labels(self):
        """labels_checked() where every label array that reaches a step went through _check_y (its
        _validate_labels ran the loss and cnnkit's metrics on it); otherwise (an output shape with
        unknown sizes, where _validate_labels cannot run) the steps keep their own checks."""
        if getattr(self, "_subclassed", False) or self.loss is None:
            return labels_checked(False)
        out = self.outputs[0].shape if len(self.outputs) == 1 else (None,)
        return labels_checked(len(out) > 0 and all(s is not None for s in out[1:]))

    def _labels_for(self, y, xp):
        if xp is np and is_cupy(y):  # GPU-resident labels for a model on the CPU
            y = to_host(y)
        if y.dtype.kind == "f":
            return xp.asarray(y, dtype=config.floatx if self.dtype is None else self.dtype)
        if y.dtype.kind == "b":
            return xp.asarray(y, dtype=self.dtype)
        return xp.asarray(y)

    def _xp(self):
        return _device.array_module(self._model_device())

    def _inputs_on_device(self, xb, xp):
        if xp is np:
            return np.ascontiguousarray(to_host(xb) if is_cupy(xb) else xb, dtype=self.dtype)
        if is_cupy(xb):  # gathered on the GPU already: cast there, no host round trip
            return xp.ascontiguousarray(xb, dtype=self.dtype)
        return xp.asarray(np.ascontiguousarray(xb, dtype=self.dtype))

    def _device_batches(self, batches, shuffle, xp):
        """batches.epoch(shuffle); host arrays bound for the GPU come through pinned memory, one batch
        ahead (_PinnedUploads). Streams (Sequence, generator) are not read ahead: their batches
        arrive when the step asks, as before."""
        source = batches.epoch(shuffle)
        if xp is np or not isinstance(batches, _ArrayBatches) or is_cupy(batches.x) or is_cupy(batches.y) or \
                is_cupy(batches.w):
            return source
        return _PinnedUploads(xp).batches(source, self._host_batch)

    def _host_batch(self, xb, yb, wb=None):
        """What the GPU receives of a host batch: (array, dtype) of the inputs, the labels and the
        sample weights."""
        labels = None if yb is None else self._labels_for(yb, np)
        inputs = (xb, xb.dtype if self.dtype is None else self.dtype)
        return [inputs, None if labels is None else (labels, labels.dtype),
                None if wb is None else (wb, np.float64)]

    # ------------------------------------------------------------------ one step
    def _fuses(self):
        if getattr(self, "_subclassed", False):
            return False
        last = self._plan[-1] if self._plan else None
        return (getattr(self.loss, "fuses_softmax", False) and last is not None and len(self.outputs) == 1
                and last.output == id(self.outputs[0]) and len(self.outputs[0].shape) == 2
                and hasattr(last.layer, "ends_in_softmax") and last.layer.ends_in_softmax())

    def _train_step(self, xb, yb, check_finite=False, sample_weight=None):
        """One optimizer step on a device batch; returns (loss value, a 0-d array on the batch's
        device, and the predictions). A non-finite loss skips the update where that is known for
        free (a NumPy loss) or where check_finite asks to read the device for it."""
        # The step's learning rate (a schedule's value) is checked before the forward pass, which
        # already moves BatchNormalization's statistics: a refused rate leaves every weight as it was.
        self.optimizer.learning_rate
        for v in self.weights:
            v.grad = None
        fuse = self._fuses()
        # Overflow is not a warning here: a non-finite loss is detected below and stops training.
        with np.errstate(over="ignore", invalid="ignore"):
            outs, saved = self._run([xb], training=True, fuse_output=fuse)
            if fuse:
                value, dout = self.loss.forward_from_logits(yb, outs[0])
                pred = softmax(outs[0])
            else:
                pred = outs[0]
                value, lsaved = self.loss.forward(yb, pred)
                dout = self.loss.backward(lsaved)
            if sample_weight is not None:
                value, dout = _weighted(self.loss, yb, pred, sample_weight, dout)
            value = value + self._regularization_penalty()
        if _known_not_finite(value, read=check_finite):
            return value, pred  # the caller stops training; the weights stay as they were
        self._backward(saved, [dout], fuse_output=fuse)
        trainable = self.trainable_weights
        for v in trainable:
            if v.regularizer is not None and v.grad is not None:
                v.grad = v.grad + v.regularizer.gradient(v.value)
        pairs = [(v.grad, v) for v in trainable if v.grad is not None]
        if pairs:
            self.optimizer.apply_gradients(pairs)
        return value, pred

    def _regularization_penalty(self):
        """The sum of the weights' penalties, on their device (0.0 without regularizers)."""
        total = 0.0
        for v in self.weights:
            if v.regularizer is not None:
                total += v.regularizer(v.value)
        return total

    def _test_step(self, xb, yb, sample_weight=None):
        outs, _ = self._run([xb], training=False)
        if sample_weight is None:
            value, _ = self.loss.forward(yb, outs[0])
        else:
            value, _ = _weighted(self.loss, yb, outs[0], sample_weight)
        return value + self._regularization_penalty(), outs[0]

    def _update_metrics(self, value, n, yb, pred, sample_weight=None):
        self._loss_tracker.update_state(value, sample_weight=n)
        for m in self.compiled_metrics:
            m.update_state(yb, pred)
        for m in getattr(self, "compiled_weighted_metrics", ()):
            m.update_state(yb, pred, sample_weight=sample_weight)

    def _reset_metrics(self):
        for m in self.metrics:
            m.reset_state()

    def reset_metrics(self):
        self._require_compiled("reset_metrics")
        self._reset_metrics()

    def _logs(self, prefix=""):
        """The loss and metrics as Python floats: one read of the device."""
        metrics = self.metrics
        return {prefix + m.name: v for m, v in zip(metrics, _metrics._results(metrics))}

    # ------------------------------------------------------------------ fit
    def _batches(self, x, y, batch_size, steps, name="x", steps_name="steps", labels=True, sample_weight=None):
        """The batch source for x: arrays are checked whole here, streams batch by batch."""
        if _is_stream(x):
            if y is not None:
                raise ValueError(f"y must not be given when {name} is a Sequence or a generator: its batches "
                                 "carry the labels")
            if sample_weight is not None:
                raise ValueError(f"sample_weight must not be given when {name} is a Sequence or a generator: "
                                 "yield (x, y, sample_weight) batches instead")
            if batch_size is not None:
                raise ValueError(f"batch_size must not be given when {name} is a Sequence or a generator: it "
                                 f"makes the batches, received batch_size={batch_size!r}")
            return _StreamBatches(self, x, steps, name, steps_name, labels)
        x = self._check_x(x, name)
        if labels:
            y = self._check_y(y, x.shape[0], "y" if name == "x" else name.replace("[0]", "[1]"))
        if x.shape[0] == 0 and labels:
            raise ValueError(f"{name} has no samples")
        w = None if sample_weight is None else _check_sample_weight(sample_weight, x.shape[0],
                                                                    "sample_weight" if name == "x" else
                                                                    name.replace("[0]", "[2]"))
        return _ArrayBatches(x, y if labels else None, _batch_size(batch_size), steps, steps_name, w=w)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1, **kwargs):
        """Train for ``epochs`` epochs over (x, y); returns a History whose ``.history`` holds loss,
        each metric, and val_loss / val_<metric> when there is validation data.

        x may also be a Sequence (``cnnkit.utils.Sequence`` or anything with ``__len__`` and
        ``__getitem__`` returning (x, y) or (x, y, sample_weight) batches) or a generator of such
        batches, which needs ``steps_per_epoch``; validation_data likewise (a generator needs
        ``validation_steps``), or (x_val, y_val) / (x_val, y_val, val_sample_weight) arrays.
        ``sample_weight`` (one weight per sample) and ``class_weight`` ({class id: weight}, applied
        through each sample's label) weigh the loss and the weighted metrics, as in Keras: the batch
        loss is sum(weight * loss) / batch size."""
        _no_unexpected("fit", kwargs)
        self._require_compiled("fit")
        custom = self._custom("train_step")
        if not custom:
            self._require_loss("fit")
        int_at_least(epochs, "epochs", 0)
        int_at_least(initial_epoch, "initial_epoch", 0)
        int_at_least(validation_freq, "validation_freq", 1)
        fraction(validation_split, "validation_split")
        if shuffle not in (True, False):
            raise ValueError(f"shuffle must be True or False, received shuffle={shuffle!r}")
        verbose = _verbose(verbose)
        steps_per_epoch = _steps(steps_per_epoch, "steps_per_epoch")
        validation_steps = _steps(validation_steps, "validation_steps")
        val = None
        if _is_stream(x):
            if validation_split:
                raise ValueError("validation_split needs x as arrays; with a Sequence or a generator pass "
                                 "validation_data instead")
            train = self._batches(x, y, batch_size, steps_per_epoch, steps_name="steps_per_epoch",
                                  sample_weight=sample_weight)
        else:
            x = self._check_x(x)
            y = self._check_y(y, x.shape[0]) if y is not None or not custom else None
            w = None if sample_weight is None else _check_sample_weight(sample_weight, x.shape[0], "sample_weight")
            if class_weight is not None:
                self._check_class_weight_labels(class_weight, y)
            if validation_split and validation_data is None:
                split = int(x.shape[0] * (1 - validation_split))  # Keras: the last samples, before shuffling
                if split == 0 or split == x.shape[0]:
                    raise ValueError(f"validation_split={validation_split} leaves an empty training or validation "
                                     f"set for {x.shape[0]} samples")
                val = _ArrayBatches(x[split:], None if y is None else y[split:],
                                    _batch_size(validation_batch_size or batch_size), validation_steps,
                                    "validation_steps", w=None if w is None else w[split:])
                x, y, w = x[:split], None if y is None else y[:split], None if w is None else w[:split]
            if x.shape[0] == 0:
                raise ValueError("x has no samples")
            train = _ArrayBatches(x, y, _batch_size(batch_size), steps_per_epoch, "steps_per_epoch", w=w)
        classes = None if class_weight is None else _class_weight_table(class_weight)
        if validation_data is not None:
            if _is_stream(validation_data):
                val = self._batches(validation_data, None, None, validation_steps, "validation_data",
                                    "validation_steps")
            elif not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                                 "val_sample_weight), a Sequence or a generator")
            else:
                val = self._batches(validation_data[0], validation_data[1],
                                    _batch_size(validation_batch_size or batch_size), validation_steps,
                                    "validation_data[0]", "validation_steps",
                                    sample_weight=validation_data[2] if len(validation_data) == 3 else None)
        self.history = _callbacks.History()
        cbs = list(callbacks or [])
        if verbose:
            cbs.append(_callbacks.ProgbarLogger())
        cb = _callbacks.CallbackList(cbs + [self.history], model=self, epochs=epochs, steps=train.steps,
                                     verbose=verbose, batch_size=getattr(train, "batch_size", None),
                                     samples=train.samples)
        xp = self._xp()
        self.stop_training = False
        cb.on_train_begin()
        logs = {}
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            cb.on_epoch_begin(epoch)
            logs, seen = {}, 0
            # (the batches themselves are made, and a stream's checked, outside the trusted steps)
            for step, (xb, yb, wb) in enumerate(self._device_batches(train, shuffle, xp)):
                if cb.wants("on_train_batch_begin"):
                    cb.on_train_batch_begin(step)
                xb = self._inputs_on_device(xb, xp)
                yb = None if yb is None else self._labels_for(yb, xp)
                wb = _weights_on_device(wb, xp)
                if classes is not None and yb is not None:
                    cw = _class_weights_of(classes, yb, xp)
                    wb = cw if wb is None else wb * cw
                if custom:
                    step_logs = self.train_step(xb if yb is None else (xb, yb) if wb is None else (xb, yb, wb))
                    seen += 1
                    if cb.wants("on_train_batch_end"):
                        batch_logs = cb.on_batch_end_lazy("on_train_batch_end", step,
                                                          lambda: self._read_step_logs(step_logs))
                        if batch_logs is not None:
                            logs = batch_logs
                            if self._stop_if_not_finite(logs, f"Batch {step} of epoch {epoch + 1}"):
                                break
                    continue
                with self._checked_labels():
                    value, pred = self._train_step(xb, yb, sample_weight=wb)
                    seen += 1
                    if _known_not_finite(value):
                        print(f"Batch {step} of epoch {epoch + 1}: invalid loss {float(value)}, terminating "
                              "training (this batch's update was not applied)", file=sys.stderr, flush=True)
                        self.stop_training = True
                        self._loss_tracker.update_state(value, sample_weight=xb.shape[0])
                        break
                    self._update_metrics(value, xb.shape[0], yb, pred, wb)
                if cb.wants("on_train_batch_end"):
                    batch_logs = cb.on_batch_end_lazy("on_train_batch_end", step, self._logs)
                    if batch_logs is not None:
                        logs = batch_logs
                        if self._stop_if_not_finite(logs, f"Batch {step} of epoch {epoch + 1}"):
                            break
            if train.exhausted:
                self.stop_training = True
                if seen == 0:
                    break
            if custom:
                logs = self._read_step_logs(step_logs) if seen else {}
            else:
                logs = self._logs()
            self._stop_if_not_finite(logs, f"Epoch {epoch + 1}")
            if val is not None and not self.stop_training and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_batches(val, None)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            cb.on_epoch_end(epoch, logs)
            train.on_epoch_end()
            if self.stop_training:
                break
        cb.on_train_end(logs if epochs > initial_epoch else None)
        return self.history

    def _stop_if_not_finite(self, logs, when):
        """On a device, a non-finite loss is seen only when the logs are read: stop training then
        (the updates since were applied; on the host the step itself stops at the first one)."""
        value = logs.get("loss", 0.0)
        if self.stop_training or math.isfinite(value):
            return False
        print(f"{when}: invalid loss {value}, terminating training", file=sys.stderr, flush=True)
        self.stop_training = True
        return True

    # ------------------------------------------------------------------ evaluate / predict
    def _evaluate_batches(self, batches, cb):
        xp = self._xp()
        self._reset_metrics()
        seen = 0
        custom = self._custom("test_step")
        if not custom:
            self._require_loss("evaluate")
        step_logs = None
        for step, (xb, yb, wb) in enumerate(self._device_batches(batches, False, xp)):
            if cb is not None and cb.wants("on_test_batch_begin"):
                cb.on_test_batch_begin(step)
            xb = self._inputs_on_device(xb, xp)
            yb = None if yb is None else self._labels_for(yb, xp)
            wb = _weights_on_device(wb, xp)
            if custom:
                step_logs = self.test_step(xb if yb is None else (xb, yb) if wb is None else (xb, yb, wb))
                seen += 1
                if cb is not None and cb.wants("on_test_batch_end"):
                    cb.on_batch_end_lazy("on_test_batch_end", step, lambda: self._read_step_logs(step_logs))
                continue
            with self._checked_labels():
                value, pred = self._test_step(xb, yb, sample_weight=wb)
                self._update_metrics(value, xb.shape[0], yb, pred, wb)
            seen += 1
            if cb is not None and cb.wants("on_test_batch_end"):
                cb.on_batch_end_lazy("on_test_batch_end", step, self._logs)
        batches.on_epoch_end()
        if seen == 0:
            raise ValueError(f"{getattr(batches, 'name', 'the data')} produced no batches to evaluate")
        return self._read_step_logs(step_logs) if custom else self._logs()

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        """Loss and metrics over (x, y) in inference mode: a float when there are no metrics, else
        [loss, *metrics] (a dict with return_dict=True). x may be a Sequence or a generator of
        (x, y) batches (a generator needs ``steps``)."""
        _no_unexpected("evaluate", kwargs)
        self._require_compiled("evaluate")
        batches = self._batches(x, y, batch_size, _steps(steps, "steps"), sample_weight=sample_weight)
        cb = _callbacks.CallbackList(list(callbacks or []), model=self, verbose=_verbose(verbose),
                                     steps=batches.steps)
        cb.on_test_begin()
        logs = self._evaluate_batches(batches, cb)
        cb.on_test_end(logs)
        if _verbose(verbose):
            print(f"{batches.steps}/{batches.steps} - {_callbacks.format_logs(logs)}", flush=True)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None, **kwargs):
        """Model outputs for x in inference mode, as a NumPy array (a list for several outputs). x may
        be a Sequence or a generator of batches (x, or (x, y) whose y is ignored; a generator needs
        ``steps``)."""
        _no_unexpected("predict", kwargs)
        batches = self._batches(x, None, batch_size, _steps(steps, "steps"), labels=False)
        xp = self._xp()
        cb = _callbacks.CallbackList(list(callbacks or []), model=self)
        cb.on_predict_begin()
        subclassed = getattr(self, "_subclassed", False)
        chunks = [[]] if subclassed else [[] for _ in self.outputs]
        for step, (xb, _, _) in enumerate(self._device_batches(batches, False, xp)):
            if cb.wants("on_predict_batch_begin"):
                cb.on_predict_batch_begin(step)
            outs, _ = self._run([self._inputs_on_device(xb, xp)], training=False)
            for c, o in zip(chunks, outs):
                c.append(to_host(o))
            if cb.wants("on_predict_batch_end"):
                cb.on_predict_batch_end(step, {"outputs": outs})
        batches.on_epoch_end()
        cb.on_predict_end()
        if not chunks[0] and subclassed:
            results = [np.empty((0,), dtype=self.dtype)]
        elif not chunks[0]:
            results = [np.empty((0,) + tuple(t.shape[1:]), dtype=self.dtype) for t in self.outputs]
        else:
            results = [np.concatenate(c) for c in chunks]
        return results[0] if len(results) == 1 else results

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=max(1, len(x)), verbose=0)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False,
                       reset_metrics=True):
        """One optimizer step on (x, y) (weighted as fit weighs); returns the loss (and metrics) of
        this batch."""
        self._require_compiled("train_on_batch")
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        w = None if sample_weight is None else _check_sample_weight(sample_weight, x.shape[0], "sample_weight")
        if class_weight is not None:
            self._check_class_weight_labels(class_weight, y)
        if x.shape[0] == 0:
            raise ValueError("x has no samples")
        if reset_metrics:
            self._reset_metrics()
        xp = self._xp()
        xb, yb = self._inputs_on_device(x, xp), self._labels_for(y, xp)
        wb = _weights_on_device(w, xp)
        if class_weight is not None:
            cw = _class_weights_of(_class_weight_table(class_weight), yb, xp)
            wb = cw if wb is None else wb * cw
        with self._checked_labels():
            value, pred = self._train_step(xb, yb, check_finite=True, sample_weight=wb)  # reads the results anyway
            if _known_not_finite(value, read=True):
                raise FloatingPointError(f"the loss is {float(value)} on this batch; the update was not applied")
            self._update_metrics(value, xb.shape[0], yb, pred, wb)
        return self._result(return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False, reset_metrics=True):
        self._require_compiled("test_on_batch")
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        w = None if sample_weight is None else _check_sample_weight(sample_weight, x.shape[0], "sample_weight")
        if reset_metrics:
            self._reset_metrics()
        xp = self._xp()
        xb, yb = self._inputs_on_device(x, xp), self._labels_for(y, xp)
        wb = _weights_on_device(w, xp)
        with self._checked_labels():
            value, pred = self._test_step(xb, yb, sample_weight=wb)
            self._update_metrics(value, xb.shape[0], yb, pred, wb)
        return self._result(return_dict)

    def _result(self, return_dict):
        logs = self._logs()
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values


class _PrefetchError:
    """An exception raised on the prefetch thread, carried to the consumer."""

    def __init__(self, exc):
        self.exc = exc


_DONE = object()


def _prefetched(source, depth):
    """The items of the generator ``source``, read up to ``depth`` ahead on a background thread
    (source is not touched by the caller's thread meanwhile; the order is kept). An exception the
    source raises is raised here, at its place in the sequence. depth 0: source itself."""
    if depth <= 0:
        yield from source
        return
    import queue
    import threading

    items = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            items.put(_PrefetchError(exc))

    worker = threading.Thread(target=produce, name="cnnkit-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _PrefetchError):
                raise item.exc
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            try:
                items.get_nowait()
            except queue.Empty:
                worker.join(0.05)
        source.close()


def _unpack(data):
    """(x, y, sample_weight) of a batch as train_step receives it: (x, y), (x, y, sample_weight) or x
    alone (keras.utils.unpack_x_y_sample_weight)."""
    if isinstance(data, (list, tuple)):
        if len(data) in (1, 2, 3):
            return tuple(data) + (None,) * (3 - len(data))
        raise ValueError(f"a batch must be x, (x, y) or (x, y, sample_weight), received a sequence of {len(data)}")
    return data, None, None


def _no_unexpected(method, kwargs):
    if kwargs:
        raise TypeError(f"{method}() got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")


def _check_sample_weight(w, n, name):
    """Sample weights as a host float64 (n,) array: one finite, non-negative weight per sample
    ((n,) or (n, 1))."""
    try:
        w = to_host(w)
    except Exception as exc:  # anything np.asarray refuses
        raise TypeError(f"{name} must be an array of numbers, received {type(w).__name__}") from exc
    if w.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, received dtype {w.dtype}")
    if w.ndim == 2 and w.shape[1] == 1:
        w = w.reshape(-1)
    if w.shape != (n,):
        raise ValueError(f"{name} must hold one weight per sample, shape ({n},); received shape {w.shape}")
    w = w.astype(np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name} must hold finite, non-negative weights")
    return w


def _weights_on_device(w, xp):
    if w is None:
        return None
    return xp.asarray(w, dtype=xp.float64) if (xp is not np or not is_cupy(w)) else xp.asarray(to_host(w))


def _class_weight_table(class_weight):
    """{class id: weight} as a float64 table indexed by class id (classes not named weigh 1)."""
    if not isinstance(class_weight, dict) or not class_weight:
        raise TypeError(f"class_weight must be a non-empty dict {{class id: weight}}, received {class_weight!r:.200}")
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"class_weight keys must be class ids (ints >= 0), received {k!r:.100}")
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not \
                math.isfinite(v) or v < 0:
            raise ValueError(f"class_weight[{k}] must be a finite, non-negative number, received {v!r:.100}")
    table = np.ones(max(class_weight) + 1)
    for k, v in class_weight.items():
        table[k] = float(v)
    return table


def _class_ids(y, xp):
    """Each sample's class id: the label itself (ids (N,) or (N, 1), or 0/1 targets), or the argmax of
    a one-hot / probability row."""
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return xp.rint(y.reshape(y.shape[0], -1)[:, 0]).astype(xp.int64) if y.dtype.kind == "f" else \
        y.reshape(y.shape[0], -1)[:, 0].astype(xp.int64)


def _class_weights_of(table, y, xp):
    """The class weight of each sample of y (on y's device); ids past the table weigh 1."""
    ids = _class_ids(y, xp)
    t = xp.asarray(table)
    return xp.where(ids < t.shape[0], t[xp.minimum(ids, t.shape[0] - 1)], 1.0)


def _weighted(loss, y, pred, w, dout=None):
    """The loss weighted as Keras 3 weighs it, sum(w * per-sample loss) / number of per-sample
    losses, and (given the unweighted gradient dout) its gradient: each sample's rows scaled by w."""
    if type(loss).per_sample is _losses.Loss.per_sample:
        raise TypeError(f"sample and class weights need the loss's per-sample values: {type(loss).__name__} "
                        "does not define per_sample(y_true, y_pred)")
    per = loss.per_sample(y, pred)
    xp = get_array_module(per)
    w = xp.asarray(w, dtype=xp.float64)
    wp = w.reshape(w.shape + (1,) * (per.ndim - 1))
    total = (per * wp).sum() / per.size if per.size else xp.asarray(float("nan"))
    value = xp.asarray(total, dtype=pred.dtype)
    if dout is None:
        return value, None
    return value, dout * w.reshape(w.shape + (1,) * (dout.ndim - 1)).astype(dout.dtype)


def _all_finite(a):
    """Whether every element of a (NumPy or CuPy) is finite; on the GPU one read per call (fit
    checks its arrays once, not per step)."""
    xp = get_array_module(a)
    return bool(xp.isfinite(a).all())


def _known_not_finite(value, read=False):
    """Whether a step's loss is NaN or infinite, where that is known without waiting for a device
    (a NumPy value is host memory) or read=True; fit checks a CuPy one when it reads the logs."""
    if get_array_module(value) is np:
        return not math.isfinite(value)
    return read and not math.isfinite(_backend.read_scalars([value])[0])


def _verbose(verbose):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool) and verbose is not False:
        raise ValueError(f'verbose must be 0, 1, 2 or "auto", received verbose={verbose!r}')
    return int(verbose)


