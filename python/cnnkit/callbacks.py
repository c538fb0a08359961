"""The callback protocol of ``Model.fit`` (Keras' names), ``History``, the progress bar and Keras'
catalogue: EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler, CSVLogger,
TerminateOnNaN and LambdaCallback, with Keras' arguments, defaults and decision rules.

A callback overrides any of ``on_train_begin/end(logs)``, ``on_epoch_begin/end(epoch, logs)``,
``on_train_batch_begin/end(batch, logs)`` (``on_batch_begin/end`` are the same hooks under their
older names), ``on_test_begin/end``, ``on_test_batch_begin/end``, ``on_predict_begin/end``. ``self.model``
is the model being fitted (set ``self.model.stop_training = True`` to stop after this epoch) and
``self.params`` holds epochs, steps and verbose.
"""

import csv
import math
import numbers
import os
import sys
import time
import warnings

from ._checks import int_at_least, number

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping", "ModelCheckpoint",
           "ReduceLROnPlateau", "LearningRateScheduler", "CSVLogger", "TerminateOnNaN", "LambdaCallback",
           "TensorBoard"]

HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end",
         "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin",
         "on_test_batch_end", "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
         "on_predict_batch_end")


def _hook(name, body):
    """A hook method called name, with the signature Keras gives it: ``(epoch, logs=None)``,
    ``(batch, logs=None)`` or ``(logs=None)``; it runs ``body(self, name, *arguments)``."""
    if "epoch" in name:
        def hook(self, epoch, logs=None):
            body(self, name, epoch, logs)
    elif "batch" in name:
        def hook(self, batch, logs=None):
            body(self, name, batch, logs)
    else:
        def hook(self, logs=None):
            body(self, name, logs)
    hook.__name__ = name
    return hook


class Callback:
    """Base class: every hook of HOOKS does nothing here; override the ones you need. The train-batch
    hooks call on_batch_begin/end, their older names."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)


def _nothing(self, name, *arguments):
    pass


for _name in HOOKS:
    if _name not in vars(Callback):
        setattr(Callback, _name, _hook(_name, _nothing))


class CallbackList(Callback):
    """Calls each callback's hook in order; skips per-batch hooks nobody overrides (they cost a
    Python call per step otherwise)."""

    _BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end",
                    "on_predict_batch_begin", "on_predict_batch_end")

    def __init__(self, callbacks=(), model=None, **params):
        super().__init__()
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be cnnkit.callbacks.Callback instances, received {cb!r}")
        if model is not None:
            self.set_model(model)
        self.set_params(params)
        self._active = {hook: [cb for cb in self.callbacks if _overrides(cb, hook)] for hook in self._BATCH_HOOKS}

    def set_model(self, model):
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def wants(self, hook):
        return bool(self._active[hook])

    def _call(self, hook, *args):
        for cb in self._active.get(hook, self.callbacks):
            getattr(cb, hook)(*args)

    def on_batch_end_lazy(self, hook, batch, make_logs):
        """Call a batch-end hook with logs = make_logs() computed at most once, and only when a
        callback takes them: fit's logs are device values, and computing them reads the device. The
        progress bar is given make_logs itself and calls it only when it redraws. Returns the logs,
        or None when no callback needed them."""
        memo = []

        def logs():
            if not memo:
                memo.append(make_logs())
            return memo[0]

        for cb in self._active[hook]:
            method = getattr(cb, hook)
            method(batch, logs if getattr(type(cb), hook, None) in _LAZY_LOG_HOOKS else logs())
        return memo[0] if memo else None


for _name in HOOKS:
    setattr(CallbackList, _name, _hook(_name, CallbackList._call))


def _overrides(cb, hook):
    """Whether cb does something in hook: its class's own method, a function stored on the instance
    (LambdaCallback), or the on_batch_* alias behind it."""
    alias = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}.get(hook)
    for name in (hook, alias):
        if name is None:
            continue
        if name in vars(cb) or getattr(type(cb), name) is not getattr(Callback, name):
            return True
    return False


class History(Callback):
    """``history.history``: a dict from log key (loss, accuracy, val_loss, ...) to one value per epoch;
    ``history.epoch`` the epoch numbers. ``fit`` returns it."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)



def format_logs(logs):
    return " - ".join(f"{k}: {_fmt(v)}" for k, v in logs.items())


def _fmt(v):
    if isinstance(v, numbers.Real) and not isinstance(v, (bool, numbers.Integral)):
        v = float(v)
        return f"{v:.4e}" if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5) else f"{v:.4f}"
    return str(v)


def _duration(seconds):
    """Keras' ETA/epoch-time style: 7s, 1:05, 1:02:03."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _per_step(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class ProgbarLogger(Callback):
    """Keras' progress output for ``fit``.

    verbose=1 on a terminal: ``Epoch 1/5`` then a bar redrawn in place at most every ``interval``
    seconds (``  469/1875 [=====>........................] - ETA: 9s - loss: 0.4132 - accuracy: 0.8521``),
    closed by the epoch line with its time, time per step and the validation metrics. verbose=1 when
    the stream is not a terminal (a log file, CI) and verbose=2: ``Epoch 1/5`` and the epoch line
    alone, so logs stay readable."""

    BAR_WIDTH = 30

    def __init__(self, stream=None, interval=0.05):
        super().__init__()
        self.stream = stream
        self.interval = interval
        self._dynamic = False

    def _out(self):
        return self.stream or sys.stdout

    def _write(self, text):
        out = self._out()
        out.write(text)
        out.flush()

    def on_train_begin(self, logs=None):
        isatty = getattr(self._out(), "isatty", None)
        self._dynamic = (self.params.get("verbose", 1) == 1 and callable(isatty) and isatty()
                         and os.environ.get("TERM") != "dumb")
        self._width = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = self._last = time.perf_counter()
        self._seen = 0
        self._write(f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}\n")

    def on_train_batch_end(self, batch, logs=None):
        # logs: a dict or, from fit, a function returning it: computing them reads the device, so
        # the bar calls it only when it redraws
        self._seen = batch + 1
        if not self._dynamic:
            return
        now = time.perf_counter()
        steps = self.params.get("steps")
        if now - self._last < self.interval and self._seen != steps:
            return
        self._last = now
        elapsed = now - self._t0
        if steps:
            done = min(1.0, self._seen / steps)
            filled = int(self.BAR_WIDTH * done)
            arrow = ">" if filled < self.BAR_WIDTH else ""
            bar = "[" + "=" * filled + arrow + "." * (self.BAR_WIDTH - filled - len(arrow)) + "]"
            count = f"{self._seen:{len(str(steps))}d}/{steps}"
            eta = f"ETA: {_duration(elapsed / self._seen * (steps - self._seen))}"
        else:  # a stream with no known length
            bar, count, eta = "", f"{self._seen}/Unknown", _duration(elapsed)
        if callable(logs):
            logs = logs()
        line = " - ".join(p for p in (f"{count} {bar}".rstrip(), eta, format_logs(logs or {})) if p)
        self._width = max(self._width, len(line))
        self._write("\r" + line.ljust(self._width))

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self._t0
        steps = self.params.get("steps") or self._seen
        parts = [f"{steps}/{steps}"]
        if self._dynamic:
            parts[0] += " [" + "=" * self.BAR_WIDTH + "]"
        parts.append(_duration(dt) + (f" {_per_step(dt / steps)}" if steps else ""))
        if logs:
            parts.append(format_logs(logs))
        line = " - ".join(parts)
        prefix = "\r" if self._dynamic else ""
        self._write(prefix + line.ljust(self._width if self._dynamic else 0) + "\n")
        self._width = 0


class TensorBoard(Callback):
    """Scalars for TensorBoard, as Keras' TensorBoard callback writes them: per epoch ``epoch_<name>``
    under ``log_dir/train`` and, for the validation logs (``val_<name>``), ``epoch_<name>`` under
    ``log_dir/validation``, at step = epoch; with ``update_freq="batch"`` or an int N, also
    ``batch_<name>`` every N training batches at step = the batch count since training began (each
    such write reads the logs off the device; the default "epoch" reads nothing per step).

    Written in TensorBoard's own event format by the ``tensorboard`` package's writer (an optional
    extra: ``pip install 'cnnkit[tensorboard]'``), so ``tensorboard --logdir log_dir`` shows them."""

    def __init__(self, log_dir="logs", update_freq="epoch"):
        super().__init__()
        try:
            from tensorboard.compat.proto import event_pb2, summary_pb2
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError as exc:
            raise ImportError("callbacks.TensorBoard writes with the tensorboard package: pip install "
                              "'cnnkit[tensorboard]' (or pip install tensorboard)") from exc
        self._event, self._summary, self._writer_class = event_pb2.Event, summary_pb2.Summary, EventFileWriter
        if update_freq in ("epoch", "batch"):
            self.update_freq = update_freq
        else:
            self.update_freq = int_at_least(update_freq, "update_freq", 1)
        self.log_dir = os.fspath(log_dir)
        self._writers = {}
        self._batches = 0

    def _every(self):
        return None if self.update_freq == "epoch" else 1 if self.update_freq == "batch" else self.update_freq

    def _writer(self, which):
        if which not in self._writers:
            self._writers[which] = self._writer_class(os.path.join(self.log_dir, which))
        return self._writers[which]

    def _write(self, which, prefix, logs, step):
        values = [self._summary.Value(tag=prefix + key, simple_value=float(value)) for key, value in logs.items()
                  if isinstance(value, numbers.Real) and not isinstance(value, bool)]
        if values:
            writer = self._writer(which)
            writer.add_event(self._event(wall_time=time.time(), step=int(step), summary=self._summary(value=values)))
            writer.flush()

    def on_train_begin(self, logs=None):
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        """Given a function returning the logs (CallbackList.on_batch_end_lazy): called only on the
        batches that are written."""
        self._batches += 1
        every = self._every()
        if every is None or self._batches % every:
            return
        self._write("train", "batch_", logs() if callable(logs) else dict(logs or {}), self._batches)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        self._write("train", "epoch_", {k: v for k, v in logs.items() if not k.startswith("val_")}, epoch)
        self._write("validation", "epoch_", {k[4:]: v for k, v in logs.items() if k.startswith("val_")}, epoch)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


# The hooks that CallbackList.on_batch_end_lazy hands a function returning the logs, not the logs.
_LAZY_LOG_HOOKS = (ProgbarLogger.on_train_batch_end, TensorBoard.on_train_batch_end)


# ---------------------------------------------------------------------- monitored quantities
_MAXIMIZE = ("acc", "auc", "precision", "recall", "f1", "iou", "top_k")
_MINIMIZE = ("loss", "error", "mse", "mae", "crossentropy", "hinge", "divergence")


def _mode_op(monitor, mode, owner):
    """np.greater-like "max" or "min" for a monitored quantity, with Keras' "auto" rule: losses and
    errors go down, accuracies, AUC, precision, recall and F-scores go up; anything else needs an
    explicit mode."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f'{owner} mode must be "auto", "min" or "max", received mode={mode!r}')
    if mode != "auto":
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    name = name.lower()
    if any(k in name for k in _MINIMIZE):
        return "min"
    if any(k in name for k in _MAXIMIZE):
        return "max"
    raise ValueError(f"{owner} cannot tell whether monitor={monitor!r} should be minimized or maximized; "
                     f'pass mode="min" or mode="max"')


def _monitored(logs, monitor, owner):
    """The monitored value as a float, or None (with a warning naming what is available)."""
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{owner} is conditioned on {monitor!r}, which is not in the logs; available: "
                      f"{', '.join(sorted(logs or {})) or 'none'}", RuntimeWarning, stacklevel=3)
        return None
    return float(value)


def monitor_op(mode, min_delta=0.0):
    """The "did it improve" test of EarlyStopping, ModelCheckpoint and ReduceLROnPlateau:
    ``improves(value, reference)`` is True when value beats reference by more than min_delta,
    downwards for mode "min" and upwards for "max"; anything beats no reference (None)."""
    if mode == "min":
        return lambda value, reference: reference is None or value < reference - min_delta
    return lambda value, reference: reference is None or value > reference + min_delta


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (Keras' rules).

    An epoch improves when its value beats the best so far by more than ``min_delta``; with a
    ``baseline`` the patience counter only resets once the value also beats the baseline. With
    ``restore_best_weights`` the model ends with the weights of its best epoch (or those of the
    first monitored epoch when none improved). Epochs before ``start_from_epoch`` are ignored."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(number(min_delta, "min_delta", owner="EarlyStopping"))
        self.patience = int_at_least(patience, "patience", 0, owner="EarlyStopping")
        self.start_from_epoch = int_at_least(start_from_epoch, "start_from_epoch", 0, owner="EarlyStopping")
        self.verbose = verbose
        self.mode = _mode_op(monitor, mode, "EarlyStopping")
        self._improves = monitor_op(self.mode, self.min_delta)
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", flush=True)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.", flush=True)
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (or its weights) during training.

    ``filepath`` may hold ``str.format`` fields filled from the epoch (1-based, as printed) and the
    logs: ``"ckpt-{epoch:02d}-{val_loss:.3f}.cnnkit"``. ``save_best_only`` writes only when
    ``monitor`` improves on the best value so far (or on ``initial_value_threshold``).
    ``save_freq="epoch"`` saves at each epoch end; an int saves every that many batches. Files are
    written to a temporary name and renamed into place, so an interrupted save never leaves a
    truncated checkpoint."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _mode_op(monitor, mode, "ModelCheckpoint") if save_best_only else mode
        if save_freq != "epoch" and (isinstance(save_freq, (str, bool)) or not isinstance(save_freq, numbers.Integral)
                                     or save_freq < 1):
            raise ValueError('ModelCheckpoint save_freq must be "epoch" or a positive int (a number of batches), '
                             f"received save_freq={save_freq!r}")
        self.save_freq = save_freq
        self.best = None if initial_value_threshold is None else float(initial_value_threshold)
        self._epoch = 0
        self._batches_seen = 0
        if save_freq != "epoch":
            self.on_train_batch_end = self._on_train_batch_end

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _on_train_batch_end(self, batch, logs=None):
        self._batches_seen += 1
        if self._batches_seen % self.save_freq == 0:
            self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _path(self, epoch, batch, logs):
        fields = dict(logs or {})
        fields["epoch"] = epoch + 1
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as exc:
            raise KeyError(f"ModelCheckpoint filepath {self.filepath!r} names {exc}, which is not in the logs; "
                           f"available: epoch, {', '.join(sorted(logs or {}))}") from None

    def _save(self, epoch, batch, logs):
        path = self._path(epoch, batch, logs)
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if current is None:
                return
            if not monitor_op(self.mode)(current, self.best):
                if self.verbose > 0:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}", flush=True)
                return
            if self.verbose > 0:
                old = "inf" if self.best is None else f"{self.best:.5f}"
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {old} to {current:.5f}, saving model to "
                      f"{path}", flush=True)
            self.best = current
        elif self.verbose > 0:
            print(f"Epoch {epoch + 1}: saving model to {path}", flush=True)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path, overwrite=True)
        else:
            self.model.save(path, overwrite=True)


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's learning rate by ``factor`` when ``monitor`` has not improved (by more
    than ``min_delta``) for ``patience`` epochs; then wait ``cooldown`` epochs before counting again,
    and never go below ``min_lr``. Adds ``learning_rate`` to the epoch logs, as Keras does."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if "epsilon" in kwargs:  # Keras 1's name for min_delta
            min_delta = kwargs.pop("epsilon")
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        self.monitor = monitor
        self.factor = number(factor, "factor", 0, 1, low_open=True, high_open=True, owner="ReduceLROnPlateau")
        self.patience = int_at_least(patience, "patience", 0, owner="ReduceLROnPlateau")
        self.cooldown = int_at_least(cooldown, "cooldown", 0, owner="ReduceLROnPlateau")
        self.min_delta = abs(number(min_delta, "min_delta", owner="ReduceLROnPlateau"))
        self.min_lr = number(min_lr, "min_lr", low=0, owner="ReduceLROnPlateau")
        self.verbose = verbose
        self.mode = _mode_op(monitor, mode, "ReduceLROnPlateau")
        self._improves = monitor_op(self.mode, self.min_delta)
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        opt = self.model.optimizer
        if logs is not None:
            logs["learning_rate"] = float(opt.learning_rate)
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improves(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(opt.learning_rate)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    opt.learning_rate = new
                    if logs is not None:
                        logs["learning_rate"] = new
                    if self.verbose > 0:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.", flush=True)
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)`` (or
    ``schedule(epoch)``), epochs counted from 0; adds ``learning_rate`` to the epoch logs."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler schedule must be callable, received schedule={schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        lr = float(opt.learning_rate)
        try:
            new = self.schedule(epoch, lr)
        except TypeError:  # a schedule of the epoch alone (Keras accepts both)
            new = self.schedule(epoch)
        if isinstance(new, bool) or not isinstance(new, numbers.Real) or not math.isfinite(new) or new < 0:
            raise ValueError(f"LearningRateScheduler: the schedule must return a finite float >= 0, returned {new!r} "
                             f"for epoch {epoch}")
        opt.learning_rate = float(new)
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(new)}.", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class CSVLogger(Callback):
    """Stream the epoch logs to a CSV file: a header ``epoch,<keys in sorted order>`` and one row per
    epoch, flushed as it is written. ``append=True`` continues an existing file (no second header)."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self._file = None
        self._writer = None

    def on_train_begin(self, logs=None):
        has_rows = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._header_written = has_rows
        self.keys = None
        if has_rows:  # continue with the columns already in the file
            self.keys = _csv_header(self.filename, self.sep)
        self._file = open(self.filename, "a" if self.append else "w", newline="")

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.keys is None:
            self.keys = sorted(logs)
        if self._writer is None:
            self._writer = csv.writer(self._file, delimiter=self.sep, lineterminator="\n")
        if not self._header_written:
            self._writer.writerow(["epoch"] + self.keys)
            self._header_written = True
        self._writer.writerow([epoch] + [_csv_value(logs.get(k, "NA")) for k in self.keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
        self._file, self._writer = None, None


def _csv_header(filename, sep, limit=1 << 16):
    """The column names after "epoch" in the first line of an existing log (None when it has none),
    reading at most ``limit`` characters; ValueError naming the file when that line is not CSV text
    (binary data, another encoding, NUL bytes, no line end within the limit)."""
    try:
        with open(filename, newline="") as f:
            line = f.readline(limit + 1)
        if len(line) > limit:
            raise csv.Error(f"no line end in its first {limit} characters")
        if "\0" in line:  # binary data; the csv module itself accepts NUL since Python 3.11
            raise csv.Error("line contains NUL")
        header = next(csv.reader([line], delimiter=sep), None)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"CSVLogger(append=True) cannot continue {filename}: its first line is not a CSV "
                         f"header ({type(e).__name__}: {str(e)[:200]}); pass append=False to overwrite it or "
                         "choose another file") from None
    return header[1:] if header else None


def _csv_value(v):
    if isinstance(v, (list, tuple)):
        return '"[' + ", ".join(map(str, v)) + ']"'
    return v


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or infinite. (``fit`` already refuses to
    apply a non-finite step and stops; this callback is the explicit Keras spelling.)"""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            print(f"Batch {batch}: Invalid loss, terminating training", flush=True)
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``.
    Accepts every hook name (on_train_begin/end, on_epoch_begin/end, on_train_batch_begin/end and
    their older names on_batch_begin/end, on_test_*, on_predict_*)."""

    def __init__(self, **hooks):
        super().__init__()
        for name, fn in hooks.items():
            if name not in HOOKS:
                raise TypeError(f"LambdaCallback got an unknown hook {name!r}; hooks: {', '.join(HOOKS)}")
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback {name} must be callable, received {fn!r}")
            setattr(self, name, fn)
