"""Keras-style losses with hand-written gradients: ``forward`` -> (mean loss, saved), ``backward(saved)``.

Every built-in loss reduces Keras' way ("sum_over_batch_size"): the per-sample losses (``per_sample``
and the function forms; shape ``y_pred.shape[:-1]``, i.e. (N,) for (N, K) predictions, and (N,) for
1-D regression targets) are averaged over all of them. Probabilities follow Keras' backends exactly:
cross-entropies normalize each row of ``y_pred`` to sum 1, clip it to [1e-7, 1 - 1e-7] and take the
log, and ``backward`` is the exact derivative of that (a clipped probability passes no gradient, though
its entry of ``y_pred`` still does through the row sum). ``from_logits=True`` (sparse) categorical
cross-entropy runs the fused native ``ops.softmax_cross_entropy`` kernel, and so does
``forward_from_logits``, the hook a model whose last layer is a softmax calls instead of softmax +
``forward`` (``fuses_softmax``); that path never clips, like Keras' fused path. An empty batch gives
NaN, like the ops.

A loss of your own is either a plain function ``f(y_true, y_pred)`` written with cnnkit.ops (its
gradient is recorded, :class:`LossFunctionWrapper`), or a subclass of :class:`Loss` with hand-written
``forward`` and ``backward``.
"""

import math

import numpy as np

from . import ops
from ._checks import boolean, fraction, integer, string
from ._registry import Configurable, Registry, snake_case
from .ops import autodiff, to_host
from .ops._op_args import labels_trusted

__all__ = [
    "Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy",
    "MeanSquaredError", "MeanAbsoluteError", "sparse_categorical_crossentropy", "categorical_crossentropy",
    "binary_crossentropy", "mean_squared_error", "mean_absolute_error", "mse", "mae", "get", "serialize",
    "deserialize", "EPSILON", "LossFunctionWrapper",
]

EPSILON = 1e-7  # keras.backend.epsilon(): how far probabilities are kept from 0 and 1 before the log
REDUCTIONS = ("sum_over_batch_size",)


class Loss(Configurable):
    """Base class. Subclasses implement ``forward(y_true, y_pred) -> (value, saved)`` (value: a 0-d
    array, the mean loss over the batch) and ``backward(saved) -> d value / d y_pred``; built-in
    losses also give the unreduced losses with ``per_sample``."""

    fuses_softmax = False  # True where forward_from_logits(y_true, logits) replaces softmax + forward

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"cnnkit losses support only reduction='sum_over_batch_size' (the mean over "
                             f"the batch, Keras' default); received reduction={reduction!r}")
        self.name = string(name, "name", allow_none=True) or snake_case(type(self).__name__)
        self.reduction = reduction

    def __call__(self, y_true, y_pred):
        """The mean loss: a Python float for arrays; for a Tensor ``y_pred`` (inside a GradientTape
        or a layer's call) a 0-d Tensor whose gradient is this loss's ``backward``."""
        if autodiff.is_tensor(y_pred) or autodiff.is_tensor(y_true):
            return autodiff.loss_node(self, y_true, y_pred)
        value, _ = self.forward(y_true, y_pred)
        return float(to_host(value))

    def forward(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must implement forward(y_true, y_pred) -> "
                                  "(value, saved) and backward(saved) -> d value / d y_pred")

    def backward(self, saved):
        raise NotImplementedError(f"{type(self).__name__} must implement backward(saved) -> "
                                  "d value / d y_pred")

    def per_sample(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} does not define per_sample(y_true, y_pred)")

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


# ----------------------------------------------------------------------------------------------------
# Cross-entropies


class _SoftmaxCrossentropy(Loss):
    """What the two categorical cross-entropies share: the probability path, the fused logits path
    and a model's softmax fused into the loss. Subclasses turn y_true into label rows
    (``_label_rows(y_true, y_pred) -> (rows like y_pred, samples the mean runs over)``)."""

    @property
    def fuses_softmax(self):
        return not self.from_logits

    def per_sample(self, y_true, y_pred):
        t, _ = self._label_rows(y_true, y_pred)
        if self.from_logits:
            return _logits_ce_per_sample(t, y_pred)
        return _probs_ce_forward(t, y_pred)[0]

    def forward(self, y_true, y_pred):
        if self.from_logits:
            value, dlogits = self.forward_from_logits(y_true, y_pred)
            return value, ("grad", dlogits)
        t, count = self._label_rows(y_true, y_pred)
        per, saved = _probs_ce_forward(t, y_pred)
        return _mean(per, count), ("probs", saved, count)

    def backward(self, saved):
        return _ce_backward(saved)


class _ElementwiseLoss(Loss):
    """A loss of each element of y_pred, averaged over the last axis and then the batch. Every sample
    has as many elements, so that is the mean over all elements. Subclasses implement
    ``_elementwise(y_true, y_pred) -> (losses, d loss / d y_pred)``, both shaped like y_pred."""

    def per_sample(self, y_true, y_pred):
        return _last_axis_mean(self._elementwise(y_true, y_pred)[0])

    def forward(self, y_true, y_pred):
        loss, grad = self._elementwise(y_true, y_pred)
        return _mean(loss, loss.size), ("grad", _scaled(grad, loss.size))

    def backward(self, saved):
        return saved[1]


class _SmoothedCrossentropy(Loss):
    """A cross-entropy with Keras' ``from_logits`` and ``label_smoothing`` arguments (categorical,
    binary)."""

    def __init__(self, from_logits, label_smoothing, reduction, name):
        super().__init__(name=name, reduction=reduction)
        self.from_logits = boolean(from_logits, "from_logits")
        self.label_smoothing = fraction(label_smoothing, "label_smoothing", upper_open=False)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


class SparseCategoricalCrossentropy(_SoftmaxCrossentropy):
    """Cross-entropy between integer class ids ``y_true`` (shape ``y_pred.shape[:-1]``, or with a
    trailing 1) and predicted class probabilities (or logits) ``y_pred`` (..., K).

    ``ignore_class``: a label value whose samples are left out (zero loss and gradient, and the mean
    is over the other samples only, as in Keras); when every sample is ignored the loss is 0."""

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy"):
        super().__init__(name=name, reduction=reduction)
        self.from_logits = boolean(from_logits, "from_logits")
        self.ignore_class = integer(ignore_class, "ignore_class", allow_none=True)

    def _targets(self, y_true, y_pred):
        """(labels, valid, count): int64 class ids, the mask of samples kept (None without
        ignore_class) and how many samples the mean runs over (with ignore_class a 0-d array on the
        labels' device, so that the step need not wait for it)."""
        labels = _sparse_labels(y_true, y_pred, type(self).__name__, self.ignore_class)
        if self.ignore_class is None:
            return labels, None, labels.size
        valid = labels != self.ignore_class
        return labels, valid, valid.sum()

    def _onehot(self, labels, valid, y_pred):
        xp = ops.get_array_module(y_pred)
        t = (labels[..., None] == xp.arange(y_pred.shape[-1])).astype(y_pred.dtype)
        if valid is not None:
            t *= valid[..., None]
        return t

    def _label_rows(self, y_true, y_pred):
        labels, valid, count = self._targets(y_true, y_pred)
        return self._onehot(labels, valid, y_pred), count

    def forward_from_logits(self, y_true, logits):
        """(value, dlogits) of this loss on softmax(logits) by the fused native kernel, which does not
        clip the probabilities (Keras' fused from_logits path does not either)."""
        labels, valid, count = self._targets(y_true, logits)
        if valid is None:
            return _fused(labels.reshape(-1), logits, count)
        return _fused(self._onehot(labels, valid, logits), logits, count)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": self.ignore_class}


class CategoricalCrossentropy(_SoftmaxCrossentropy, _SmoothedCrossentropy):
    """Cross-entropy between one-hot (or probability) labels ``y_true`` and predicted probabilities
    (or logits) ``y_pred``, both (..., K). ``label_smoothing`` s turns the labels into
    ``y_true * (1 - s) + s / K`` first."""

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size",
                 name="categorical_crossentropy"):
        super().__init__(from_logits, label_smoothing, reduction, name)

    def _label_rows(self, y_true, y_pred):
        t = _dense_labels(y_true, y_pred, type(self).__name__, categorical=True)
        if self.label_smoothing:
            s = self.label_smoothing
            t = t * (1 - s) + s / y_pred.shape[-1]
        return t, math.prod(t.shape[:-1])

    def forward_from_logits(self, y_true, logits):
        """(value, dlogits) of this loss on softmax(logits) by the fused native kernel, which does not
        clip the probabilities (Keras' fused from_logits path does not either)."""
        t, count = self._label_rows(y_true, logits)
        return _fused(t, logits, count)


class BinaryCrossentropy(_ElementwiseLoss, _SmoothedCrossentropy):
    """Binary cross-entropy per element, averaged over the last axis (one or more independent labels
    per sample). Probabilities are clipped to [1e-7, 1 - 1e-7] like Keras; ``from_logits=True`` uses
    the overflow-free form max(x, 0) - x * y + log(1 + exp(-|x|)) without a clip (as Keras' TensorFlow,
    JAX and PyTorch backends do). ``label_smoothing`` s: labels become ``y_true * (1 - s) + s / 2``."""

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size",
                 name="binary_crossentropy"):
        super().__init__(from_logits, label_smoothing, reduction, name)

    def _elementwise(self, y_true, y_pred):
        """(losses per element, d loss / d y_pred per element)."""
        t = _dense_labels(y_true, y_pred, type(self).__name__)
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        xp = ops.get_array_module(y_pred)
        if self.from_logits:
            e = xp.exp(-xp.abs(y_pred))
            loss = xp.maximum(y_pred, 0) - y_pred * t + xp.log1p(e)
            sigmoid = xp.where(y_pred >= 0, 1 / (1 + e), e / (1 + e))
            return loss, sigmoid - t
        lo, hi = _clip_bounds(y_pred.dtype)
        q = xp.clip(y_pred, lo, hi)
        loss = -(t * xp.log(q) + (1 - t) * xp.log(1 - q))
        grad = ((1 - t) / (1 - q) - t / q) * ((y_pred >= lo) & (y_pred <= hi))
        return loss, grad


# ----------------------------------------------------------------------------------------------------
# Regression


class MeanSquaredError(_ElementwiseLoss):
    """mean((y_true - y_pred) ** 2) over the last axis, then over the batch."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(name=name, reduction=reduction)

    def _elementwise(self, y_true, y_pred):
        d = y_pred - _dense_labels(y_true, y_pred, type(self).__name__)
        return d * d, 2 * d


class MeanAbsoluteError(_ElementwiseLoss):
    """mean(|y_true - y_pred|) over the last axis, then over the batch (gradient sign(0) = 0)."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        super().__init__(name=name, reduction=reduction)

    def _elementwise(self, y_true, y_pred):
        d = y_pred - _dense_labels(y_true, y_pred, type(self).__name__)
        xp = ops.get_array_module(d)
        return xp.abs(d), xp.sign(d)


# ----------------------------------------------------------------------------------------------------
# Function forms: unreduced losses, shape y_pred.shape[:-1] ((N,) for (N, K) predictions), like Keras.


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None):
    return SparseCategoricalCrossentropy(from_logits, ignore_class).per_sample(y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    return CategoricalCrossentropy(from_logits, label_smoothing).per_sample(y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    return BinaryCrossentropy(from_logits, label_smoothing).per_sample(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    return MeanSquaredError().per_sample(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return MeanAbsoluteError().per_sample(y_true, y_pred)


mse = mean_squared_error
mae = mean_absolute_error

_FUNCTIONS = {
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    categorical_crossentropy: CategoricalCrossentropy,
    binary_crossentropy: BinaryCrossentropy,
    mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError,
}
# Names: each class's snake-case name, which is its function's ("categorical_crossentropy"), and Keras' aliases.
_REGISTRY = Registry("loss", Loss, _FUNCTIONS.values(), aliases={
    "mse": MeanSquaredError, "MSE": MeanSquaredError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy})
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier):
    """A Loss for a name ("sparse_categorical_crossentropy", "mse", ...), a Loss instance or subclass,
    one of this module's functions, or a serialized config; None stays None."""
    return None if identifier is None else _REGISTRY.get(identifier, _from_function)


def _from_function(fn):
    if fn in _FUNCTIONS:
        return _FUNCTIONS[fn]()
    if callable(fn):
        return LossFunctionWrapper(fn)
    raise TypeError(f"could not interpret loss {fn!r:.200}: pass a name, a cnnkit.losses.Loss or a config")


class LossFunctionWrapper(Loss):
    """A loss given as a function ``fn(y_true, y_pred)`` written with cnnkit.ops (per-sample losses,
    or a scalar), as Keras takes one: the mean of what it returns, differentiated by recording it
    (cnnkit.ops.autodiff). Saved models name the function; loading one needs it in custom_objects."""

    def __init__(self, fn, name=None, reduction="sum_over_batch_size"):
        super().__init__(name=name or getattr(fn, "__name__", "loss"), reduction=reduction)
        self.fn = fn

    def per_sample(self, y_true, y_pred):
        with autodiff.recording_off():
            return _as_value(self.fn(y_true, autodiff.Tensor(y_pred)))

    def forward(self, y_true, y_pred):
        pred = autodiff.Tensor(y_pred, requires_grad=True)
        with autodiff.recording_on():
            value = ops.mean(self.fn(y_true, pred))
        if not autodiff.is_tensor(value):
            raise TypeError(f"loss function {self.name!r} must return an array computed from y_pred with "
                            f"cnnkit.ops, received {type(value).__name__}")
        return value.value, (pred, value)

    def backward(self, saved):
        pred, value = saved
        if value.node is None:
            return ops.zeros_like(pred.value)
        xp = ops.get_array_module(value.value)
        grads, _, blocked = autodiff.backward([value], [xp.ones((), value.value.dtype)])
        g = grads.get(id(pred))
        if g is None:
            if blocked:
                raise ValueError(f"loss function {self.name!r} is not differentiable: its value depends on y_pred "
                                 f"only through ops.{blocked[0][1]}")
            return xp.zeros_like(pred.value)
        return g

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}


def from_saved(identifier, custom_objects=None):
    """The loss a model file names (``get``), where a loss function saved by name
    (LossFunctionWrapper) is looked up in custom_objects, as Keras does; ValueError when absent."""
    if isinstance(identifier, dict) and identifier.get("class_name") == "LossFunctionWrapper":
        name = (identifier.get("config") or {}).get("name")
        fn = (custom_objects or {}).get(name)
        if not callable(fn):
            raise ValueError(f"the model was compiled with the loss function {name!r:.100}, which a file cannot "
                             f"hold: pass custom_objects={{{name!r:.100}: your_function}}, or compile=False")
        return LossFunctionWrapper(fn, name=name)
    return get(identifier)


def _as_value(v):
    return v.value if autodiff.is_tensor(v) else v


# ----------------------------------------------------------------------------------------------------
# Helpers


def _check_pred(y_pred, who, min_ndim):
    if not hasattr(y_pred, "dtype") or not hasattr(y_pred, "shape"):
        raise TypeError(f"{who} expects y_pred to be a NumPy or CuPy array, received {type(y_pred).__name__}")
    if y_pred.dtype not in (np.float32, np.float64):
        raise TypeError(f"{who} expects y_pred of dtype float32 or float64, received dtype {y_pred.dtype}")
    if y_pred.ndim < min_ndim:
        want = "(batch, classes)" if min_ndim == 2 else "(batch, ...)"
        raise ValueError(f"{who} expects y_pred of shape {want}, received shape {tuple(y_pred.shape)}")


def _as_labels(y_true, y_pred, who):
    """y_true as an array, numeric only. It stays where it is (checks on NumPy labels run on the host,
    with no device round trip) unless y_pred is on the host; _on_device moves it after the checks."""
    if ops.get_array_module(y_pred) is np or not hasattr(y_true, "dtype"):
        y_true = to_host(y_true)
    if y_true.dtype.kind not in "biuf":
        raise TypeError(f"{who} expects numeric labels y_true, received dtype {y_true.dtype}")
    return y_true


def _on_device(labels, y_pred):
    return ops.get_array_module(y_pred).asarray(labels)


def _index(flat, shape):
    idx = np.unravel_index(flat, shape)
    return int(idx[0]) if len(shape) == 1 else tuple(int(i) for i in idx)


def _sparse_labels(y_true, y_pred, who, ignore_class=None):
    """Validated int64 class ids of shape y_pred.shape[:-1] (a trailing axis of 1 is dropped)."""
    _check_pred(y_pred, who, 2)
    labels = _as_labels(y_true, y_pred, who)
    pred_shape, k = tuple(y_pred.shape), y_pred.shape[-1]
    if labels.shape == pred_shape[:-1] + (1,):
        labels = labels.reshape(pred_shape[:-1])
    if labels.shape != pred_shape[:-1]:
        hint = ""
        if labels.shape == pred_shape:
            hint = ("; these look like one-hot labels: use CategoricalCrossentropy "
                    "(loss='categorical_crossentropy') for them")
        raise ValueError(f"{who} expects y_true of shape {pred_shape[:-1]} or {pred_shape[:-1] + (1,)} (one "
                         f"class id per sample) for y_pred of shape {pred_shape}; received y_true of shape "
                         f"{tuple(labels.shape)}{hint}")
    labels = _check_class_ids(labels, k, who, f"predictions of shape {pred_shape}", ignore_class)
    return _on_device(labels, y_pred)


def _check_class_ids(labels, k, who, context, ignore_class=None):
    """labels (an array) as int64 after checking that they are integers in [0, k), ignore_class
    excepted; the message names the first offender and ``context`` (what k comes from)."""
    xp = ops.get_array_module(labels)
    if labels.dtype.kind == "b":
        raise TypeError(f"{who} expects integer class ids, received boolean labels")
    if labels_trusted():  # validated by the caller (fit, evaluate): reading the checks back would sync
        return labels.astype(xp.int64)
    if labels.dtype.kind == "f":
        bad = ~xp.isfinite(labels) | (labels != xp.floor(labels))
        if bool(bad.any()):
            i = int(xp.argmax(bad.reshape(-1)))
            raise ValueError(f"{who} expects integer class ids; received float label "
                             f"{float(labels.reshape(-1)[i])} at index {_index(i, labels.shape)}")
    if labels.size:
        bad = (labels < 0) | (labels >= k)
        if ignore_class is not None:
            bad &= labels != ignore_class
        if bool(bad.any()):
            i = int(xp.argmax(bad.reshape(-1)))
            v = labels.reshape(-1)[i].item()
            v = float(v) if labels.dtype.kind == "f" else v
            raise ValueError(f"{who} expects class ids in [0, {k}) for {context}; received label {v} at "
                             f"index {_index(i, labels.shape)}")
    return labels.astype(xp.int64)


def _dense_labels(y_true, y_pred, who, categorical=False):
    """y_true cast to y_pred's dtype and device, shaped like y_pred. Categorical labels must match
    exactly; otherwise (N,) labels for (N, 1) predictions (and the reverse) are aligned, like Keras."""
    _check_pred(y_pred, who, 2 if categorical else 1)
    labels = _as_labels(y_true, y_pred, who)
    shape, pshape = tuple(labels.shape), tuple(y_pred.shape)
    if not categorical and shape != pshape:
        if shape + (1,) == pshape or shape == pshape + (1,):
            labels = labels.reshape(pshape)
    if labels.shape != pshape:
        hint = ""
        if categorical and shape in (pshape[:-1], pshape[:-1] + (1,)):
            hint = ("; these look like integer class ids: use SparseCategoricalCrossentropy "
                    "(loss='sparse_categorical_crossentropy') for them")
        raise ValueError(f"{who} expects y_true of the shape of y_pred {pshape}; received y_true of shape "
                         f"{shape}{hint}")
    return _on_device(labels.astype(y_pred.dtype, copy=False), y_pred)


def _clip_bounds(dtype):
    return dtype.type(EPSILON), dtype.type(1 - EPSILON)


def _probs_ce_forward(t, y):
    """Keras' probability path: per-sample -sum t log clip(y / sum(y)), and what backward needs."""
    xp = ops.get_array_module(y)
    s = y.sum(axis=-1, keepdims=True)
    p = y / s
    lo, hi = _clip_bounds(y.dtype)
    q = xp.clip(p, lo, hi)
    return (t * -xp.log(q)).sum(axis=-1), (t, p, q, s)


def _ce_backward(saved):
    if saved[0] == "grad":
        return saved[1]
    _, (t, p, q, s), count = saved
    lo, hi = _clip_bounds(p.dtype)
    # g = d loss / d q where the clip passed p through, else 0; p = y / s has Jacobian (I - p 1^T) / s
    g = -t / q * ((p >= lo) & (p <= hi))
    dy = (g - (g * p).sum(axis=-1, keepdims=True)) / s
    return _scaled(dy, count)


def _logits_ce_per_sample(t, x):
    xp = ops.get_array_module(x)
    z = x - x.max(axis=-1, keepdims=True)
    log_probs = z - xp.log(xp.exp(z).sum(axis=-1, keepdims=True))
    return (t * -log_probs).sum(axis=-1)


def _fused(labels, logits, count):
    """The native softmax cross-entropy over rows of logits (..., K), rescaled to a mean over ``count``
    samples (fewer than the rows when some are ignored)."""
    k = logits.shape[-1]
    rows = logits.size // max(k, 1)
    x = logits.reshape(rows, k)
    value, dlogits = ops.softmax_cross_entropy(x, labels.reshape(rows, k) if labels.ndim > 1 else labels,
                                               return_grad=True)
    if _is_count_array(count):  # ignore_class: the count stays on the device
        xp = ops.get_array_module(logits)
        scale = (rows / xp.maximum(count, 1)).astype(logits.dtype)
        # every sample ignored: zero label rows, so dlogits is 0, and Keras' masked mean is 0
        value = xp.where(count == 0, xp.zeros((), logits.dtype), value * scale).astype(logits.dtype)
        dlogits = dlogits * scale
    return value, dlogits.reshape(logits.shape)


def _mean(per, count):
    """sum(per) / count as a 0-d array of per's dtype: NaN for an empty batch, 0 when count is 0 but
    there are samples (all of them ignored)."""
    xp = ops.get_array_module(per)
    if per.size == 0:
        return xp.full((), xp.nan, per.dtype)
    if _is_count_array(count):
        total = per.sum() / xp.maximum(count, 1).astype(per.dtype)
        return xp.where(count == 0, xp.zeros((), per.dtype), total).astype(per.dtype)
    if count == 0:
        return xp.zeros((), per.dtype)
    return xp.asarray(per.sum() / per.dtype.type(count), per.dtype)


def _scaled(grad, count):
    if _is_count_array(count):
        xp = ops.get_array_module(grad)
        return xp.where(count == 0, grad * 0, grad / xp.maximum(count, 1).astype(grad.dtype))
    return grad / grad.dtype.type(count) if count else grad * 0


def _is_count_array(count):
    """Whether a sample count is a device value (0-d array, from ignore_class) rather than a shape."""
    return hasattr(count, "dtype")


def _last_axis_mean(a):
    return a.mean(axis=-1) if a.ndim > 1 else a
