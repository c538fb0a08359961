"""Keras-style streaming metrics, exact over a whole dataset.

Each update reduces the batch on its device (NumPy or CuPy) to a few counts. ``Mean``, the
accuracies and F1Score keep their totals there (correct counts as int64, sums of values, weights
and per-class counts as float64), so a training step never waits for the device; ``result()``
reads them back (``Mean`` and the accuracies through ``ops._backend.read_scalars``, which fit calls
once for all of them). Precision and recall add their counts on the host as float64 (exact for
integer counts below 2**53). So ``result()`` after any split of a dataset into batches equals the
value on the whole dataset at once: exactly for the counting metrics, up to float64 rounding for
``Mean``. ``sample_weight`` (one weight per sample) turns counts into weighted sums, as in Keras.
A metric with nothing counted yet reports 0.0 (Keras' divide-no-NaN).
"""

import functools
import math
import numbers

import numpy as np

from . import losses as _losses
from . import ops
from ._checks import fraction, int_at_least, number, positive_int, string
from ._registry import Configurable, Registry, snake_case
from .ops import to_host
from .ops import _backend, autodiff

__all__ = [
    "Metric", "Mean", "MeanMetricWrapper", "Accuracy", "SparseCategoricalAccuracy", "CategoricalAccuracy",
    "BinaryAccuracy", "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "Precision", "Recall",
    "F1Score", "confusion_matrix", "get", "serialize", "deserialize",
]


class Metric(Configurable):
    """Base class: ``update_state(y_true, y_pred, sample_weight=None)``, ``result()`` (a Python float),
    ``reset_state()``, ``get_config()``. Calling a metric updates it and returns the result."""

    def __init__(self, name=None):
        self.name = string(name, "name", allow_none=True) or snake_case(type(self).__name__)

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement update_state")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} must implement result")

    def _result_parts(self):
        """(values, finish): the device values result() reads, and the function of their Python
        floats that gives the result. fit reads every metric's values in one transfer this way."""
        return [], lambda: self.result()

    def reset_state(self):
        raise NotImplementedError(f"{type(self).__name__} must implement reset_state")

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Mean(Metric):
    """The (weighted) mean of every value passed to ``update_state(values, sample_weight=None)``;
    ``sample_weight`` broadcasts against ``values`` (a scalar weight counts a scalar value that many
    times, e.g. a batch's mean loss weighted by the batch size)."""

    def __init__(self, name="mean"):
        super().__init__(name=name)
        self.reset_state()

    def reset_state(self):
        self.total = 0.0  # a 0-d float64 array on the values' device after the first update
        self.count = 0.0  # a Python float while the weights are numbers, else like total

    def update_state(self, values, sample_weight=None):
        xp = _module(values, sample_weight)
        values = _to(xp, values).astype(xp.float64)
        if sample_weight is None:
            self.total = self.total + values.sum()
            self.count += values.size
            return
        if isinstance(sample_weight, numbers.Real) and not isinstance(sample_weight, bool):
            # a number (fit's batch size): the count needs no device
            self.total = self.total + (values * float(sample_weight)).sum()
            self.count += float(sample_weight) * values.size
            return
        w = _to(xp, sample_weight).astype(xp.float64)
        if w.ndim < values.ndim:  # (N,) weights for (N, ...) values: one weight per sample
            w = w.reshape(w.shape + (1,) * (values.ndim - w.ndim))
        try:
            values, w = xp.broadcast_arrays(values, w)
        except ValueError:
            raise ValueError(f"{self.name}: sample_weight of shape {tuple(w.shape)} does not broadcast to "
                             f"the values' shape {tuple(values.shape)}") from None
        self.total = self.total + (values * w).sum()
        self.count = self.count + w.sum()

    def result(self):
        return _finish(self._result_parts())

    def _result_parts(self):
        return [self.total, self.count], _ratio


class MeanMetricWrapper(Mean):
    """The mean of ``fn(y_true, y_pred, **kwargs)``, a function returning one value per sample."""

    def __init__(self, fn, name=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"fn must be a callable f(y_true, y_pred) -> per-sample values, "
                            f"received fn={fn!r}")
        super().__init__(name=name if name is not None else getattr(fn, "__name__", "mean_metric_wrapper"))
        self.fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(self.fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def get_config(self):
        return {"name": self.name, "fn": getattr(self.fn, "__name__", repr(self.fn)), **self._fn_kwargs}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        fn = config.pop("fn")
        if isinstance(fn, str):
            if fn not in _FUNCTIONS:
                raise ValueError(f"cannot rebuild MeanMetricWrapper around the unknown function {fn!r}; "
                                 f"known: {', '.join(sorted(_FUNCTIONS))}")
            fn = _FUNCTIONS[fn]
        return cls(fn, **config)


# ----------------------------------------------------------------------------------------------------
# Accuracies: correct / total, counted exactly


class _Counting(Metric):
    """Accumulates matches: subclasses return a boolean array (N, ...) from ``_matches``; a sample's
    value is the fraction of its elements that match (Keras' mean over the last axis)."""

    def __init__(self, name):
        super().__init__(name=name)
        self.reset_state()

    def reset_state(self):
        self.correct = 0  # an int64 (float64 when weighted) 0-d array on the device after an update
        self.total = 0  # a Python int while unweighted

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _align(y_true, y_pred, self.name)
        matches = self._matches(y_true, y_pred)
        if sample_weight is None:
            self.correct = self.correct + matches.sum()
            self.total += matches.size
            return
        xp = ops.get_array_module(matches)
        n = matches.shape[0] if matches.ndim else 1
        w = _sample_weight(xp, sample_weight, n, self.name)
        per_sample = matches.reshape(n, -1).mean(axis=1) if matches.size else xp.zeros(n)
        self.correct = self.correct + (per_sample * w).sum()
        self.total = self.total + w.sum()

    def result(self):
        return _finish(self._result_parts())

    def _result_parts(self):
        return [self.correct, self.total], _ratio


class Accuracy(_Counting):
    """How often y_pred equals y_true exactly, element by element."""

    def __init__(self, name="accuracy"):
        super().__init__(name)

    def _matches(self, y_true, y_pred):
        y_true = _same_shape(y_true, y_pred, self.name)
        return y_true == y_pred


class SparseCategoricalAccuracy(_Counting):
    """How often argmax(y_pred) equals the integer class id y_true ((N,) or (N, 1))."""

    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(name)

    def _matches(self, y_true, y_pred):
        return _class_ids(y_true, y_pred, self.name) == y_pred.argmax(axis=-1)


class CategoricalAccuracy(_Counting):
    """How often argmax(y_pred) equals argmax(y_true) (one-hot labels)."""

    def __init__(self, name="categorical_accuracy"):
        super().__init__(name)

    def _matches(self, y_true, y_pred):
        _check_categorical(y_true, y_pred, self.name)
        return y_true.argmax(axis=-1) == y_pred.argmax(axis=-1)


class BinaryAccuracy(_Counting):
    """How often (y_pred > threshold) equals y_true, element by element."""

    def __init__(self, name="binary_accuracy", threshold=0.5):
        super().__init__(name)
        self.threshold = fraction(threshold, "threshold", upper_open=False)

    def _matches(self, y_true, y_pred):
        y_true = _same_shape(y_true, y_pred, self.name)
        return (y_pred > self.threshold).astype(y_true.dtype) == y_true

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class SparseTopKCategoricalAccuracy(_Counting):
    """How often the class id y_true is among the k highest scores of y_pred. Ties at the boundary
    count as hits (the label is in the top k when fewer than k classes score strictly higher)."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy"):
        super().__init__(name)
        self.k = positive_int(k, "k")

    def _targets(self, y_true, y_pred):
        return _class_ids(y_true, y_pred, self.name)

    def _matches(self, y_true, y_pred):
        xp = ops.get_array_module(y_pred)
        ids = self._targets(y_true, y_pred)
        if ids.size == 0:
            return xp.zeros(ids.shape, bool)
        target = xp.take_along_axis(y_pred, ids[..., None], axis=-1)
        return (y_pred > target).sum(axis=-1) < self.k

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class TopKCategoricalAccuracy(SparseTopKCategoricalAccuracy):
    """How often argmax(y_true) (one-hot labels) is among the k highest scores of y_pred."""

    def __init__(self, k=5, name="top_k_categorical_accuracy"):
        super().__init__(k, name)

    def _targets(self, y_true, y_pred):
        _check_categorical(y_true, y_pred, self.name)
        return y_true.argmax(axis=-1)


# ----------------------------------------------------------------------------------------------------
# Precision, recall, F1


class Precision(Metric):
    """Precision tp / (tp + fp), 0 when nothing is predicted positive.

    Default (``average=None``), as Keras: binary or multi-label. ``y_pred`` holds probabilities in
    [0, 1]; an element is predicted positive when ``y_pred > threshold`` (``thresholds`` defaults to
    0.5; a list gives a list of results) and is a positive label when ``y_true != 0``; every element
    counts (all labels pooled) unless ``class_id`` picks one column of the last axis.

    ``average="macro"``: multi-class. ``y_pred`` (N, K), K > 1, holds class scores; the predicted class
    is argmax(y_pred) (first of ties); ``y_true`` holds class ids (N,) / (N, 1) or one-hot rows (N, K).
    The result is the unweighted mean over all K classes of the per-class value, a class that no sample
    was predicted as (precision) or belongs to (recall) contributing 0. This equals scikit-learn's
    ``precision_score(y, pred, labels=range(K), average="macro", zero_division=0)``.
    ``thresholds`` and ``class_id`` must be None then."""

    _recall = False

    def __init__(self, thresholds=None, *, class_id=None, average=None, name="precision"):
        super().__init__(name=name)
        if average not in (None, "macro"):
            raise ValueError(f"average must be None (binary / multi-label) or 'macro' (multi-class), "
                             f"received average={average!r}")
        int_at_least(class_id, "class_id", 0, allow_none=True)
        if average == "macro" and (thresholds is not None or class_id is not None):
            raise ValueError(f"average='macro' predicts the argmax class and counts every class; it takes "
                             f"no thresholds or class_id, received thresholds={thresholds!r}, "
                             f"class_id={class_id!r}")
        self._single = thresholds is None or isinstance(thresholds, numbers.Real)
        if thresholds is None:
            thr = [0.5]
        else:
            thr = [thresholds] if self._single else list(thresholds)
        if not thr:
            raise ValueError(f"thresholds must not be empty, received thresholds={thresholds!r}")
        for t in thr:
            fraction(t, "thresholds", upper_open=False)
        self.init_thresholds = thresholds
        self.thresholds = [float(t) for t in thr]
        self.class_id = class_id
        self.average = average
        self.reset_state()

    def reset_state(self):
        # tp, fp, fn per threshold as a (3, T) float64 array on the predictions' device, and for
        # average="macro" the (K, K) confusion counts (rows = true class): both stay there between
        # steps and are read by result(), so a GPU step does not wait for the device
        self._counts = None
        self.confusion = None
        self._out_of_range = None  # on the GPU: how many predictions were outside [0, 1], checked in result()

    @property
    def true_positives(self):
        return self._host(0)

    @property
    def false_positives(self):
        return self._host(1)

    @property
    def false_negatives(self):
        return self._host(2)

    def _host(self, row):
        if self._counts is None:
            return np.zeros(len(self.thresholds))
        return to_host(self._counts[row]).astype(np.float64)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _align(y_true, y_pred, self.name)
        if self.average == "macro":
            cm = _confusion(y_true, y_pred, None, self.name, sample_weight, scores_only=True, on_host=False)
            if self.confusion is not None and self.confusion.shape != cm.shape:
                raise ValueError(f"{self.name} was updated with {self.confusion.shape[0]} classes before; "
                                 f"received y_pred of shape {tuple(y_pred.shape)}")
            self.confusion = cm if self.confusion is None else self.confusion + cm
            return
        ids_shapes = (y_pred.shape[:-1], y_pred.shape[:-1] + (1,))
        if y_pred.ndim > 1 and y_pred.shape[-1] > 1 and y_true.shape in ids_shapes:
            raise ValueError(f"{self.name} pools every element of y_pred as a binary prediction and needs "
                             f"y_true of its shape {tuple(y_pred.shape)}; received class ids of shape "
                             f"{tuple(y_true.shape)}: for multi-class scores pass average='macro'")
        y_true = _same_shape(y_true, y_pred, self.name)
        if self.class_id is not None:
            if y_pred.ndim == 0 or self.class_id >= y_pred.shape[-1]:
                raise ValueError(f"{self.name}: class_id={self.class_id} is out of range for y_pred of "
                                 f"shape {tuple(y_pred.shape)}")
            y_true, y_pred = y_true[..., self.class_id], y_pred[..., self.class_id]
        xp = ops.get_array_module(y_pred)
        outside = (y_pred < 0) | (y_pred > 1)
        if type(y_pred) is np.ndarray:  # host memory: checked now, at no cost
            if y_pred.size and bool(outside.any()):
                raise ValueError(_range_message(self.name, float(y_pred.min()), float(y_pred.max())))
        else:  # counted on the device; result() raises (reading it here would wait for the GPU)
            bad = outside.sum()
            self._out_of_range = bad if self._out_of_range is None else self._out_of_range + bad
        positive = (y_true != 0).astype(xp.float64)
        w = 1.0
        if sample_weight is not None:
            n = y_pred.shape[0] if y_pred.ndim else 1
            w = _sample_weight(xp, sample_weight, n, self.name).reshape((n,) + (1,) * max(y_pred.ndim - 1, 0))
        thresholds = xp.asarray(self.thresholds, dtype=y_pred.dtype).reshape((-1,) + (1,) * y_pred.ndim)
        predicted = (y_pred[None] > thresholds).astype(xp.float64)  # (T, ...)
        axes = tuple(range(1, predicted.ndim))
        counts = xp.stack([(predicted * positive * w).sum(axis=axes), (predicted * (1 - positive) * w).sum(axis=axes),
                           ((1 - predicted) * positive * w).sum(axis=axes)])  # (3, T), on the device
        self._counts = counts if self._counts is None else self._counts + counts

    def result(self):
        return _finish(self._result_parts())

    def _result_parts(self):
        """The device values result() reads: the out-of-range count (GPU), then the macro average
        (0-d, computed on the device) or tp and tp + wrong per threshold."""
        head = [] if self._out_of_range is None else [self._out_of_range]
        if self.average == "macro":
            if self.confusion is None:
                return head, lambda *bad: self._checked(bad) or 0.0
            xp = ops.get_array_module(self.confusion)
            hits = xp.diagonal(self.confusion)
            den = self.confusion.sum(axis=1 if self._recall else 0)
            macro = xp.where(den != 0, hits / xp.where(den != 0, den, 1), 0.0).mean()
            return head + [macro], lambda *v: self._checked(v[:len(head)]) or v[len(head)]
        t = len(self.thresholds)
        if self._counts is None:
            zeros = [0.0] * t
            return head, lambda *bad: self._checked(bad) or (0.0 if self._single else zeros)
        wrong = self._counts[2] if self._recall else self._counts[1]
        parts = [self._counts[0][i] for i in range(t)] + [(self._counts[0] + wrong)[i] for i in range(t)]

        def finish(*v):
            self._checked(v[:len(head)])
            tp, den = v[len(head):len(head) + t], v[len(head) + t:]
            values = [a / d if d else 0.0 for a, d in zip(tp, den)]
            return values[0] if self._single else values

        return head + parts, finish

    def _checked(self, bad):
        if bad and bad[0]:
            raise ValueError(_range_message(self.name, None, None, count=int(bad[0])))

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "class_id": self.class_id,
                "average": self.average}


class Recall(Precision):
    """Recall tp / (tp + fn), 0 when there is no positive label; arguments as for :class:`Precision`
    (``average="macro"``: scikit-learn's ``recall_score(..., labels=range(K), average="macro",
    zero_division=0)``)."""

    _recall = True

    def __init__(self, thresholds=None, *, class_id=None, average=None, name="recall"):
        super().__init__(thresholds, class_id=class_id, average=average, name=name)


class F1Score(Metric):
    """F1 = 2 tp / (2 tp + fp + fn) per class (the harmonic mean of precision and recall; 0 when the
    class has neither labels nor predictions), as Keras 3's F1Score but without its 1e-7 terms.

    ``y_pred`` (N, K). ``y_true``: (N, K) one-hot / multi-hot labels, or class ids (N,) / (N, 1) when
    K > 1. ``threshold=None``: the largest score(s) of each row are the predicted classes (Keras'
    argmax; a row of zeros predicts nothing); else ``y_pred > threshold``. ``average``: None gives the
    per-class scores (a float64 NumPy array); "micro" pools the counts of all classes; "macro" is the
    unweighted mean over classes; "weighted" weights each class by its number of true labels."""

    def __init__(self, average=None, threshold=None, name="f1_score"):
        super().__init__(name=name)
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(f"average must be one of None, 'micro', 'macro', 'weighted', "
                             f"received average={average!r}")
        self.average = average
        self.threshold = number(threshold, "threshold", 0, 1, low_open=True, allow_none=True)
        self.reset_state()

    def reset_state(self):
        self.true_positives = self.false_positives = self.false_negatives = self.support = None
        self._counts = None  # (4, K): tp, fp, fn, support, on the device; read by result()

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _align(y_true, y_pred, self.name)
        xp = ops.get_array_module(y_pred)
        if y_pred.ndim != 2:
            raise ValueError(f"{self.name} expects y_pred of shape (batch, classes), received shape "
                             f"{tuple(y_pred.shape)}")
        n, k = y_pred.shape
        if self._counts is not None and self._counts.shape[1] != k:
            raise ValueError(f"{self.name} was updated with {self._counts.shape[1]} classes before; "
                             f"received y_pred of shape {tuple(y_pred.shape)}")
        if y_true.shape != y_pred.shape and k > 1:
            ids = _class_ids(y_true, y_pred, self.name)
            y_true = ids[:, None] == xp.arange(k)
        elif y_true.shape != y_pred.shape:
            raise ValueError(f"{self.name} expects y_true of the shape of y_pred {tuple(y_pred.shape)}, "
                             f"received shape {tuple(y_true.shape)}")
        if self.threshold is None:  # the row maxima, but a row of zeros predicts nothing (Keras)
            row_max = y_pred.max(axis=-1, keepdims=True) if n else y_pred[:, :1]
            predicted = (y_pred >= row_max) & (xp.abs(y_pred) > 1e-9)
        else:
            predicted = y_pred > self.threshold
        predicted = predicted.astype(xp.float64)
        truth = y_true.astype(xp.float64)
        w = 1.0 if sample_weight is None else _sample_weight(xp, sample_weight, n, self.name)[:, None]
        counts = (predicted * truth * w, predicted * (1 - truth) * w, (1 - predicted) * truth * w, truth * w)
        sums = xp.stack([c.sum(axis=0) for c in counts])  # (4, K) float64, kept on the device
        self._counts = sums if self._counts is None else self._counts + sums
        self.true_positives = self.false_positives = self.false_negatives = self.support = None

    def _host_counts(self):
        """tp, fp, fn, support as host float64 arrays (one read of the device)."""
        if self.true_positives is None and self._counts is not None:
            counts = to_host(self._counts).astype(np.float64)
            self.true_positives, self.false_positives, self.false_negatives, self.support = counts
        return self.true_positives

    def result(self):
        if self._host_counts() is None:
            return 0.0 if self.average is not None else np.zeros(0)
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        if self.average == "micro":
            return float(_divide(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()))
        f1 = _divide(2 * tp, 2 * tp + fp + fn)
        if self.average is None:
            return f1
        if self.average == "macro":
            return float(f1.mean())
        return float(_divide((f1 * self.support).sum(), self.support.sum()))

    def get_config(self):
        return {**super().get_config(), "average": self.average, "threshold": self.threshold}


def confusion_matrix(y_true, y_pred, num_classes=None):
    """(K, K) int64 counts, row = true class, column = predicted class.

    ``y_true``: class ids (N,) / (N, 1) or one-hot rows (N, K). ``y_pred``: class ids, or scores
    (N, K) with K > 1 whose argmax is the prediction. ``num_classes`` defaults to K of the scores or
    one-hot labels, else to the largest id + 1; ids outside [0, num_classes) raise ValueError."""
    int_at_least(num_classes, "num_classes", 1, allow_none=True)
    y_true, y_pred = _align(y_true, y_pred, "confusion_matrix")
    return _confusion(y_true, y_pred, num_classes, "confusion_matrix").astype(np.int64)


# ----------------------------------------------------------------------------------------------------
# get / serialize


class _AutoAccuracy(Metric):
    """"accuracy" before the kind of labels is known: at the first update it becomes binary accuracy
    when y_pred's last axis is 1, sparse categorical when y_true has one class id per sample (a rank
    below y_pred's or a last axis of 1), categorical otherwise (Keras' rule)."""

    def __init__(self, name="accuracy"):
        super().__init__(name=name)
        self.resolved = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.resolved is None:
            y_true, y_pred = _align(y_true, y_pred, self.name)
            self.resolved = _accuracy_for_shapes(y_true.shape, y_pred.shape, self.name)
        self.resolved.update_state(y_true, y_pred, sample_weight)

    def result(self):
        return self.resolved.result() if self.resolved is not None else 0.0

    def _result_parts(self):
        return self.resolved._result_parts() if self.resolved is not None else ([], lambda: 0.0)

    def reset_state(self):
        if self.resolved is not None:
            self.resolved.reset_state()


def _accuracy_for_shapes(true_shape, pred_shape, name):
    if len(pred_shape) == 0 or pred_shape[-1] == 1:
        return BinaryAccuracy(name=name)
    if len(true_shape) < len(pred_shape) or (len(true_shape) and true_shape[-1] == 1):
        return SparseCategoricalAccuracy(name=name)
    return CategoricalAccuracy(name=name)


_FUNCTIONS = {
    "mean_squared_error": _losses.mean_squared_error, "mse": _losses.mean_squared_error,
    "mean_absolute_error": _losses.mean_absolute_error, "mae": _losses.mean_absolute_error,
}
_LOSS_ACCURACY = {
    _losses.SparseCategoricalCrossentropy: SparseCategoricalAccuracy,
    _losses.CategoricalCrossentropy: CategoricalAccuracy,
    _losses.BinaryCrossentropy: BinaryAccuracy,
}
_NAMED = (SparseCategoricalAccuracy, CategoricalAccuracy, BinaryAccuracy, TopKCategoricalAccuracy,
          SparseTopKCategoricalAccuracy, Precision, Recall, F1Score)
_REGISTRY = Registry(
    "metric", Metric,
    (Mean, MeanMetricWrapper, Accuracy, *_NAMED, _AutoAccuracy),
    names={snake_case(cls.__name__): cls for cls in _NAMED},
    aliases={**{name: functools.partial(MeanMetricWrapper, fn, name=name) for name, fn in _FUNCTIONS.items()},
             "accuracy": _AutoAccuracy, "acc": _AutoAccuracy})
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier, loss=None, output_shape=None):
    """A Metric for a name, a Metric instance, class or config, or a function f(y_true, y_pred) ->
    per-sample values (wrapped in a MeanMetricWrapper named after it).

    "accuracy" / "acc" (the metric keeps that name, so History keys read as in Keras) picks its kind
    from ``loss`` (sparse / categorical / binary cross-entropy); for another loss, from
    ``output_shape`` (a last axis of 1 means binary) and, failing that, from the labels' shape at the
    first update."""
    if isinstance(identifier, str) and identifier in ("accuracy", "acc"):
        return _accuracy(identifier, loss, output_shape)
    return _REGISTRY.get(identifier, _wrap_function)


def _wrap_function(fn):
    if callable(fn):
        return MeanMetricWrapper(fn)
    raise TypeError(f"could not interpret metric {fn!r:.200}: pass a name, a cnnkit.metrics.Metric or a function "
                    "f(y_true, y_pred) -> per-sample values")


def _accuracy(name, loss, output_shape):
    try:
        loss = _losses.get(loss)
    except (TypeError, ValueError):  # a loss cnnkit cannot name tells nothing about the labels
        loss = None
    for loss_class, metric_class in _LOSS_ACCURACY.items():
        if isinstance(loss, loss_class):
            return metric_class(name=name)
    if output_shape is not None and len(output_shape) and output_shape[-1] == 1:
        return BinaryAccuracy(name=name)
    return _AutoAccuracy(name=name)


# ----------------------------------------------------------------------------------------------------
# Helpers




def _float(a):
    return float(to_host(a))


def _ratio(num, den):
    """num / den, 0.0 when nothing was counted (Keras' divide-no-NaN)."""
    return num / den if den else 0.0


def _finish(parts):
    values, finish = parts
    return finish(*_backend.read_scalars(values))


def _results(metrics):
    """[m.result() for m in metrics], with every device value read in one transfer."""
    parts = [m._result_parts() for m in metrics]
    flat = _backend.read_scalars([v for values, _ in parts for v in values])
    out, i = [], 0
    for values, finish in parts:
        out.append(finish(*flat[i:i + len(values)]))
        i += len(values)
    return out


def _module(*arrays):
    return ops.get_array_module(*(a for a in arrays if hasattr(a, "dtype")))


def _to(xp, a):
    """a (array, list, number or Tensor) as an array of module xp."""
    a = autodiff.unwrap(a)
    return to_host(a) if xp is np else xp.asarray(a)


def _align(y_true, y_pred, who):
    """Both as arrays of y_pred's module (labels follow predictions onto the GPU); numeric only."""
    y_pred = autodiff.unwrap(y_pred)
    if not hasattr(y_pred, "dtype"):
        y_pred = np.asarray(y_pred)
    xp = ops.get_array_module(y_pred)
    y_true, y_pred = _to(xp, y_true), _to(xp, y_pred)
    for arg, a in (("y_true", y_true), ("y_pred", y_pred)):
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{who} expects numeric {arg}, received dtype {a.dtype}")
    return y_true, y_pred


def _same_shape(y_true, y_pred, who):
    """y_true shaped like y_pred: equal shapes, or (N,) labels for (N, 1) predictions and the reverse."""
    if y_true.shape != y_pred.shape and (y_true.shape + (1,) == y_pred.shape or
                                         y_true.shape == y_pred.shape + (1,)):
        y_true = y_true.reshape(y_pred.shape)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{who} expects y_true of the shape of y_pred {tuple(y_pred.shape)}, received "
                         f"y_true of shape {tuple(y_true.shape)}")
    return y_true


def _check_categorical(y_true, y_pred, who):
    if y_pred.ndim < 1 or y_true.shape != y_pred.shape:
        hint = ""
        if y_pred.ndim and y_true.shape in (y_pred.shape[:-1], y_pred.shape[:-1] + (1,)):
            hint = "; for integer class ids use the sparse_* version of this metric"
        raise ValueError(f"{who} expects one-hot y_true of the shape of y_pred {tuple(y_pred.shape)}, "
                         f"received y_true of shape {tuple(y_true.shape)}{hint}")


def _class_ids(y_true, y_pred, who):
    """Class ids of shape y_pred.shape[:-1] (a trailing axis of 1 dropped); integral floats accepted."""
    if y_pred.ndim < 1:
        raise ValueError(f"{who} expects y_pred of shape (batch, classes), received shape "
                         f"{tuple(y_pred.shape)}")
    want = tuple(y_pred.shape[:-1])
    if y_true.shape == want + (1,):
        y_true = y_true.reshape(want)
    if y_true.shape != want:
        hint = "; for one-hot labels use the non-sparse version" if y_true.shape == y_pred.shape else ""
        raise ValueError(f"{who} expects y_true of shape {want} or {want + (1,)} (one class id per sample) "
                         f"for y_pred of shape {tuple(y_pred.shape)}, received shape "
                         f"{tuple(y_true.shape)}{hint}")
    return _losses._check_class_ids(y_true, y_pred.shape[-1], who, f"y_pred of shape {tuple(y_pred.shape)}")




def _sample_weight(xp, sample_weight, n, who):
    w = _to(xp, sample_weight).astype(xp.float64)
    if w.shape == (n, 1):
        w = w.reshape(n)
    if w.shape == ():
        w = xp.broadcast_to(w, (n,))
    if w.shape != (n,):
        raise ValueError(f"{who} expects one sample_weight per sample, shape ({n},); received shape "
                         f"{tuple(w.shape)}")
    return w


def _range_message(name, low, high, count=None):
    seen = (f"received values from {low} to {high}" if count is None else
            f"received {count} value(s) outside that range since the last reset")
    return (f"{name} expects probabilities in [0, 1] in y_pred; {seen} (pass probabilities, e.g. apply a sigmoid "
            "to logits)")


def _divide(num, den):
    """num / den, 0 where den is 0 (divide-no-NaN), in float64."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def _confusion(y_true, y_pred, num_classes, who, sample_weight=None, scores_only=False, on_host=True):
    """float64 (K, K) confusion counts (weighted when sample_weight is given), on the host, or on
    the predictions' device with ``on_host=False``."""
    xp = ops.get_array_module(y_pred)
    scores = y_pred.ndim == 2 and y_pred.shape[-1] > 1
    if scores_only and not scores:
        raise ValueError(f"{who} with average='macro' expects class scores y_pred of shape (batch, classes) "
                         f"with classes > 1, received shape {tuple(y_pred.shape)}")
    k = y_pred.shape[-1] if scores else None
    one_hot = y_true.ndim == 2 and y_true.shape[-1] > 1
    if one_hot:
        if k is not None and y_true.shape != y_pred.shape:
            raise ValueError(f"{who} expects one-hot y_true of shape {tuple(y_pred.shape)}, received shape "
                             f"{tuple(y_true.shape)}")
        k = k if k is not None else y_true.shape[-1]
        true_ids = y_true.argmax(axis=-1)
    else:
        true_ids = _ids_1d(y_true, who, "y_true")
    pred_ids = y_pred.argmax(axis=-1) if scores else _ids_1d(y_pred, who, "y_pred")
    if true_ids.shape != pred_ids.shape:
        raise ValueError(f"{who}: y_true of shape {tuple(y_true.shape)} and y_pred of shape "
                         f"{tuple(y_pred.shape)} hold different numbers of samples")
    if num_classes is not None:
        if k is not None and k != num_classes:
            raise ValueError(f"{who}: num_classes={num_classes} but the scores or one-hot labels have {k} "
                             "classes")
        k = num_classes
    if k is None:  # one more than the largest id; non-integral or negative ids fail the check below
        tops = [_float(ids.max()) for ids in (true_ids, pred_ids) if ids.size]
        k = int(max(tops)) + 1 if tops and all(map(math.isfinite, tops)) else 1
    true_ids, pred_ids = (_losses._check_class_ids(ids, k, who, f"{arg} with {k} classes")
                          for arg, ids in (("y_true", true_ids), ("y_pred", pred_ids)))
    w = None if sample_weight is None else _sample_weight(xp, sample_weight, true_ids.shape[0], who)
    flat = true_ids * k + pred_ids
    counts = xp.bincount(flat, weights=w, minlength=k * k) if flat.size else xp.zeros(k * k)
    counts = counts.astype(xp.float64).reshape(k, k)
    return to_host(counts) if on_host else counts


def _ids_1d(a, who, arg):
    if a.ndim == 2 and a.shape[-1] == 1:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise ValueError(f"{who} expects {arg} as class ids (N,) / (N, 1) or rows (N, K), received shape "
                         f"{tuple(a.shape)}")
    return a
