"""compile / fit / evaluate / predict / train_on_batch / test_on_batch for Model.

A training step is: forward (training=True) -> loss -> backward -> regularizer gradients ->
optimizer update in place. When the output layer ends in a softmax and the loss is (sparse)
categorical cross-entropy on probabilities, the step runs the output layer up to its logits and
uses the fused, stable softmax-cross-entropy kernel instead (as Keras/TensorFlow do). Data arrives
as NumPy arrays; each batch is cast to the model's dtype and moved to the model's device here.
Everything that can be wrong with the data (shapes, label values, NaN) is checked before the first
weight changes.
"""

import math
import numbers
import sys

import numpy as np

from .. import _random
from .. import callbacks as _callbacks
from .. import device as _device
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from ..config import config
from ..layers.base import format_shape
from ..ops import softmax

__all__ = ["Trainer"]


def _host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _to_numpy_input(a, name):
    if a is None:
        raise ValueError(f"{name} is required")
    if hasattr(a, "__array__") or isinstance(a, (list, tuple)):
        arr = _host(a) if hasattr(a, "get") else np.asarray(a)
        if arr.dtype == object:
            raise TypeError(f"{name} must be a numeric array, received an object array")
        return arr
    raise TypeError(f"{name} must be a NumPy array (or array-like), received {type(a).__name__}")


def _batch_size(value, name="batch_size"):
    if value is None:
        return 32
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, received {name}={value!r}")
    return int(value)


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
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Set the optimizer, the loss and the metrics to report (names or objects, as in Keras)."""
        ignored = {"run_eagerly", "jit_compile", "steps_per_execution"}
        unknown = set(kwargs) - ignored
        if unknown:
            raise TypeError(f"compile got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        if loss is None:
            raise ValueError("compile needs a loss, e.g. loss='sparse_categorical_crossentropy'")
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
        names = ["loss"] + [m.name for m in self.compiled_metrics]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"metric names must be unique, these repeat: {sorted(dup)}")
        self._loss_tracker = _metrics.Mean(name="loss")
        self.compiled = True
        self._compile_config = {"optimizer": optimizer if isinstance(optimizer, str) else None,
                                "loss": loss if isinstance(loss, str) else None,
                                "metrics": [m if isinstance(m, str) else None for m in metrics]}

    @property
    def metrics_names(self):
        return ["loss"] + [m.name for m in self.compiled_metrics]

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
        self._ensure_built_for(x)
        if len(self.inputs) != 1:
            raise ValueError(f"model {self.name!r} has {len(self.inputs)} inputs; training and prediction "
                             "support single-input models")
        expected = self.inputs[0].shape
        if x.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected[1:], x.shape[1:])):
            raise ValueError(f"{name} has shape {x.shape} but model {self.name!r} expects input shape "
                             f"{format_shape(expected)}")
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{name} must hold numbers, received dtype {x.dtype}")
        if x.dtype.kind == "f" and x.size and not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x))[0]
            raise ValueError(f"{name} contains NaN or infinity (first at index {tuple(int(i) for i in bad)}: "
                             f"{x[tuple(bad)]!r}); clean the data before training")
        return x

    def _check_y(self, y, n, name="y"):
        y = _to_numpy_input(y, name)
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"{name} has {y.shape[0] if y.ndim else 'no'} samples (shape {y.shape}) but x has {n}")
        if y.dtype.kind == "f" and y.size and not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or infinity")
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{name} must hold numbers, received dtype {y.dtype}")
        self._validate_labels(y)
        return y

    def _validate_labels(self, y):
        """Run the loss on the labels against a uniform prediction of the output's shape, in chunks:
        the loss's own checks (class range, shapes) then fire before any weight changes."""
        if len(self.outputs) != 1:
            raise ValueError(f"model {self.name!r} has {len(self.outputs)} outputs; training supports "
                             "single-output models")
        out = self.outputs[0].shape
        if any(s is None for s in out[1:]):
            return
        k = out[-1]
        step = max(1, 2**20 // max(1, math.prod(out[1:])))
        for i in range(0, y.shape[0], step):
            yb = y[i:i + step]
            pred = np.full((yb.shape[0],) + tuple(out[1:]), 1.0 / k if k > 1 else 0.5, dtype=config.floatx)
            self.loss.forward(self._labels_for(yb, np), pred)

    def _labels_for(self, y, xp):
        if y.dtype.kind == "f":
            return xp.asarray(y, dtype=config.floatx if self.dtype is None else self.dtype)
        if y.dtype.kind == "b":
            return xp.asarray(y, dtype=self.dtype)
        return xp.asarray(y)

    def _xp(self):
        return _device.array_module(self._model_device())

    def _inputs_on_device(self, xb, xp):
        return xp.asarray(np.ascontiguousarray(xb, dtype=self.dtype)) if xp is not np else \
            np.ascontiguousarray(xb, dtype=self.dtype)

    # ------------------------------------------------------------------ one step
    def _fuses(self):
        last = self._plan[-1] if self._plan else None
        return (getattr(self.loss, "fuses_softmax", False) and last is not None and len(self.outputs) == 1
                and last.output == id(self.outputs[0]) and len(self.outputs[0].shape) == 2
                and hasattr(last.layer, "ends_in_softmax") and last.layer.ends_in_softmax())

    def _train_step(self, xb, yb):
        """One optimizer step on a device batch; returns (loss value as float, predictions)."""
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
            value = float(value) + self._regularization_penalty()
        if not math.isfinite(value):
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
        total = 0.0
        for v in self.weights:
            if v.regularizer is not None:
                total += v.regularizer(v.value)
        return total

    def _test_step(self, xb, yb):
        outs, _ = self._run([xb], training=False)
        value, _ = self.loss.forward(yb, outs[0])
        return float(value) + self._regularization_penalty(), outs[0]

    def _update_metrics(self, value, n, yb, pred):
        self._loss_tracker.update_state(value, sample_weight=n)
        for m in self.compiled_metrics:
            m.update_state(yb, pred)

    def _reset_metrics(self):
        self._loss_tracker.reset_state()
        for m in self.compiled_metrics:
            m.reset_state()

    def reset_metrics(self):
        self._require_compiled("reset_metrics")
        self._reset_metrics()

    def _logs(self, prefix=""):
        logs = {prefix + "loss": self._loss_tracker.result()}
        for m in self.compiled_metrics:
            logs[prefix + m.name] = m.result()
        return logs

    # ------------------------------------------------------------------ fit
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
            validation_batch_size=None, validation_freq=1):
        """Train for ``epochs`` epochs over (x, y); returns a History whose ``.history`` holds loss,
        each metric, and val_loss / val_<metric> when there is validation data."""
        self._require_compiled("fit")
        batch_size = _batch_size(batch_size)
        for name, v, lo in (("epochs", epochs, 0), ("initial_epoch", initial_epoch, 0), ("validation_freq", validation_freq, 1)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, received {name}={v!r}")
        if not isinstance(validation_split, numbers.Real) or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be a number in [0, 1), received validation_split={validation_split!r}")
        if shuffle not in (True, False):
            raise ValueError(f"shuffle must be True or False, received shuffle={shuffle!r}")
        verbose = _verbose(verbose)
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            vx = self._check_x(validation_data[0], "validation_data[0]")
            val = (vx, self._check_y(validation_data[1], vx.shape[0], "validation_data[1]"))
        elif validation_split:
            split = int(x.shape[0] * (1 - validation_split))  # Keras: the last samples, before shuffling
            if split == 0 or split == x.shape[0]:
                raise ValueError(f"validation_split={validation_split} leaves an empty training or validation "
                                 f"set for {x.shape[0]} samples")
            val = (x[split:], y[split:])
            x, y = x[:split], y[:split]
        n = x.shape[0]
        if n == 0:
            raise ValueError("x has no samples")
        steps = -(-n // batch_size)
        self.history = _callbacks.History()
        cbs = list(callbacks or [])
        if verbose:
            cbs.append(_callbacks.ProgbarLogger())
        cb = _callbacks.CallbackList(cbs + [self.history], model=self, epochs=epochs, steps=steps,
                                     verbose=verbose, batch_size=batch_size, samples=n)
        xp = self._xp()
        self.stop_training = False
        cb.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            cb.on_epoch_begin(epoch)
            order = _random.generator().permutation(n) if shuffle else None
            logs = {}
            for step in range(steps):
                sl = slice(step * batch_size, min(n, (step + 1) * batch_size))
                idx = order[sl] if order is not None else sl
                if cb.wants("on_train_batch_begin"):
                    cb.on_train_batch_begin(step)
                xb = self._inputs_on_device(x[idx], xp)
                yb = self._labels_for(y[idx], xp)
                value, pred = self._train_step(xb, yb)
                if not math.isfinite(value):
                    print(f"Batch {step} of epoch {epoch + 1}: invalid loss {value}, terminating training "
                          "(this batch's update was not applied)", file=sys.stderr, flush=True)
                    self.stop_training = True
                    self._loss_tracker.update_state(value, sample_weight=xb.shape[0])
                    break
                self._update_metrics(value, xb.shape[0], yb, pred)
                if cb.wants("on_train_batch_end"):
                    logs = self._logs()
                    cb.on_train_batch_end(step, logs)
            logs = self._logs()
            if val is not None and not self.stop_training and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_arrays(val[0], val[1], _batch_size(validation_batch_size or batch_size),
                                                 None)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cb.on_train_end(logs if epochs > initial_epoch else None)
        return self.history

    # ------------------------------------------------------------------ evaluate / predict
    def _evaluate_arrays(self, x, y, batch_size, cb):
        xp = self._xp()
        self._reset_metrics()
        n = x.shape[0]
        for step, start in enumerate(range(0, n, batch_size)):
            if cb is not None and cb.wants("on_test_batch_begin"):
                cb.on_test_batch_begin(step)
            xb = self._inputs_on_device(x[start:start + batch_size], xp)
            yb = self._labels_for(y[start:start + batch_size], xp)
            value, pred = self._test_step(xb, yb)
            self._update_metrics(value, xb.shape[0], yb, pred)
            if cb is not None and cb.wants("on_test_batch_end"):
                cb.on_test_batch_end(step, self._logs())
        return self._logs()

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", callbacks=None, return_dict=False):
        """Loss and metrics over (x, y) in inference mode: a float when there are no metrics, else
        [loss, *metrics] (a dict with return_dict=True)."""
        self._require_compiled("evaluate")
        batch_size = _batch_size(batch_size)
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        if x.shape[0] == 0:
            raise ValueError("x has no samples")
        cb = _callbacks.CallbackList(list(callbacks or []), model=self, verbose=_verbose(verbose),
                                     steps=-(-x.shape[0] // batch_size))
        cb.on_test_begin()
        logs = self._evaluate_arrays(x, y, batch_size, cb)
        cb.on_test_end(logs)
        if _verbose(verbose):
            print(f"{-(-x.shape[0] // batch_size)}/{-(-x.shape[0] // batch_size)} - "
                  f"{_callbacks.format_logs(logs)}", flush=True)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", callbacks=None):
        """Model outputs for x in inference mode, as a NumPy array (a list for several outputs)."""
        batch_size = _batch_size(batch_size)
        x = self._check_x(x)
        xp = self._xp()
        cb = _callbacks.CallbackList(list(callbacks or []), model=self)
        cb.on_predict_begin()
        chunks = [[] for _ in self.outputs]
        for step, start in enumerate(range(0, x.shape[0], batch_size)):
            if cb.wants("on_predict_batch_begin"):
                cb.on_predict_batch_begin(step)
            outs, _ = self._run([self._inputs_on_device(x[start:start + batch_size], xp)], training=False)
            for c, o in zip(chunks, outs):
                c.append(_host(o))
            if cb.wants("on_predict_batch_end"):
                cb.on_predict_batch_end(step, {"outputs": outs})
        cb.on_predict_end()
        if x.shape[0] == 0:
            results = [np.empty((0,) + tuple(t.shape[1:]), dtype=self.dtype) for t in self.outputs]
        else:
            results = [np.concatenate(c) for c in chunks]
        return results[0] if len(results) == 1 else results

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=max(1, len(x)), verbose=0)

    def train_on_batch(self, x, y, return_dict=False, reset_metrics=True):
        """One optimizer step on (x, y); returns the loss (and metrics) of this batch."""
        self._require_compiled("train_on_batch")
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        if x.shape[0] == 0:
            raise ValueError("x has no samples")
        if reset_metrics:
            self._reset_metrics()
        xp = self._xp()
        xb, yb = self._inputs_on_device(x, xp), self._labels_for(y, xp)
        value, pred = self._train_step(xb, yb)
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss is {value} on this batch; the update was not applied")
        self._update_metrics(value, xb.shape[0], yb, pred)
        return self._result(return_dict)

    def test_on_batch(self, x, y, return_dict=False, reset_metrics=True):
        self._require_compiled("test_on_batch")
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        if reset_metrics:
            self._reset_metrics()
        xp = self._xp()
        xb, yb = self._inputs_on_device(x, xp), self._labels_for(y, xp)
        value, pred = self._test_step(xb, yb)
        self._update_metrics(value, xb.shape[0], yb, pred)
        return self._result(return_dict)

    def _result(self, return_dict):
        logs = self._logs()
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values


def _verbose(verbose):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool) and verbose is not False:
        raise ValueError(f'verbose must be 0, 1, 2 or "auto", received verbose={verbose!r}')
    return int(verbose)


