"""The callback protocol of ``Model.fit`` (Keras' names), ``History`` and a per-epoch logger.

A callback overrides any of ``on_train_begin/end(logs)``, ``on_epoch_begin/end(epoch, logs)``,
``on_train_batch_begin/end(batch, logs)`` (``on_batch_begin/end`` are the same hooks under their
older names), ``on_test_begin/end``, ``on_test_batch_begin/end``, ``on_predict_begin/end``. ``self.model``
is the model being fitted (set ``self.model.stop_training = True`` to stop after this epoch) and
``self.params`` holds epochs, steps and verbose.
"""

import sys
import time

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger"]


class Callback:
    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass


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

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs)


def _overrides(cb, hook):
    """Whether cb does something in hook (its own method, or the on_batch_* alias behind it)."""
    cls = type(cb)
    if getattr(cls, hook) is not getattr(Callback, hook):
        return True
    alias = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}.get(hook)
    return alias is not None and getattr(cls, alias) is not getattr(Callback, alias)


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
    return " - ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in logs.items())


class ProgbarLogger(Callback):
    """Keras-style epoch lines: ``Epoch 1/5`` then ``1875/1875 - 12s - loss: 0.4 - accuracy: 0.9``.
    verbose=2 prints one line per epoch, as does verbose=1 for now (the progress bar comes later)."""

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream

    def _print(self, text):
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        if self.params.get("verbose", 1) == 1:
            self._print(f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}")

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self._t0
        steps = self.params.get("steps")
        head = f"Epoch {epoch + 1}/{self.params.get('epochs', '?')} - " if self.params.get("verbose") == 2 else ""
        per_step = f" {dt / steps * 1e3:.0f}ms/step" if steps else ""
        self._print(f"{head}{steps}/{steps} - {dt:.0f}s{per_step} - {format_logs(logs or {})}")
