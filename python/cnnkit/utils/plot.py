"""Figures of training and of what a CNN learned, written as PNG files.

``plot_history`` (accuracy and loss curves), ``plot_confusion_matrix``, ``plot_images`` (a labelled
grid), ``plot_filters`` (a Conv2D layer's kernels) and ``plot_feature_maps`` (one layer's activations
for one image). Each returns the path it wrote. Needs matplotlib (``pip install 'cnnkit[plot]'``).

The figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas and never through pyplot,
so they need no display, never open a window, and leave the user's pyplot backend alone.
"""

import math
import os

import numpy as np

from ..models import Model
from ..ops import to_host

__all__ = ["plot_history", "plot_confusion_matrix", "plot_images", "plot_filters", "plot_feature_maps"]


def _figure(width, height):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("cnnkit.utils.plot needs matplotlib: pip install 'cnnkit[plot]'") from None
    return Figure(figsize=(width, height), dpi=100)


def _save(fig, path):
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _history_dict(history):
    h = getattr(history, "history", history)
    if not isinstance(h, dict) or not h:
        raise ValueError("plot_history needs a History (what fit returns) or its non-empty .history dict, "
                         f"received {type(history).__name__}")
    return h


def plot_history(history, path="history.png", metrics=None):
    """Training curves: one panel per quantity (default: the first metric, e.g. accuracy, then loss),
    each with the training and, when present, the validation curve against the epoch (1-based)."""
    h = _history_dict(history)
    if metrics is None:
        train_keys = [k for k in h if not k.startswith("val_") and k != "learning_rate"]
        others = [k for k in train_keys if k != "loss"]
        metrics = others[:1] + (["loss"] if "loss" in h else [])
    elif isinstance(metrics, str):
        metrics = [metrics]
    missing = [m for m in metrics if m not in h]
    if missing or not metrics:
        raise ValueError(f"plot_history: {missing or 'no quantity'} not in the history; it has {sorted(h)}")
    fig = _figure(5.5 * len(metrics), 4)
    for i, name in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        epochs = np.arange(1, len(h[name]) + 1)
        ax.plot(epochs, h[name], "o-", label=f"training {name}")
        if "val_" + name in h:
            ax.plot(np.arange(1, len(h["val_" + name]) + 1), h["val_" + name], "s--", label=f"validation {name}")
        ax.set_title(name.replace("_", " ").capitalize())
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    return _save(fig, path)


def plot_confusion_matrix(cm, path="confusion_matrix.png", class_names=None, normalize=False, title=None):
    """A confusion matrix (rows: true class, columns: predicted; e.g. from
    ``cnnkit.metrics.confusion_matrix``) as a heat map with the count (or, with ``normalize=True``, the
    fraction of the true class) in each cell."""
    cm = to_host(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"plot_confusion_matrix needs a square (K, K) matrix, received shape {cm.shape}")
    k = cm.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names for a {k}x{k} matrix")
    values = cm.astype(np.float64)
    if normalize:
        rows = values.sum(axis=1, keepdims=True)
        values = np.divide(values, rows, out=np.zeros_like(values), where=rows > 0)
    size = max(4.0, 0.55 * k + 2)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(values, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("Confusion matrix (row-normalized)" if normalize else "Confusion matrix"))
    if k <= 30:
        top = values.max() if values.size else 0
        for i in range(k):
            for j in range(k):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if top and values[i, j] > top / 2 else "black")
    return _save(fig, path)


def _as_images(x):
    """(N, H, W) or (N, H, W, 1|3) -> list of images imshow can draw, scaled to [0, 1] per image when
    they are not already in [0, 1] (uint8 data is divided by 255)."""
    x = to_host(x)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (3, 4) or x.ndim == 4 and x.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W), (N, H, W, 1) or (N, H, W, 3), received shape {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    x = x.astype(np.float64)
    out = []
    for img in x:
        lo, hi = np.nanmin(img), np.nanmax(img)
        out.append(img if lo >= 0 and hi <= 1 else (img - lo) / (hi - lo if hi > lo else 1.0))
    return np.stack(out)


def _labels(y, n, what):
    if y is None:
        return None
    y = to_host(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot rows or scores
        y = y.argmax(axis=1)
    y = y.reshape(-1)
    if y.shape[0] < n:
        raise ValueError(f"{what} has {y.shape[0]} labels for {n} images")
    return y[:n]


def _grid(n, ncols):
    ncols = ncols or min(n, max(1, math.ceil(math.sqrt(n))))
    return math.ceil(n / ncols), ncols


def plot_images(x, y_true=None, y_pred=None, path="images.png", class_names=None, ncols=None, max_images=25):
    """A grid of the first ``max_images`` images, each titled with its true label and, when given,
    the prediction (class ids, one-hot rows or scores), in red where they differ."""
    images = _as_images(x)[:max_images]
    n = len(images)
    if n == 0:
        raise ValueError("plot_images needs at least one image")
    yt, yp = _labels(y_true, n, "y_true"), _labels(y_pred, n, "y_pred")

    def name(c):
        c = int(c)
        return str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c)

    rows, cols = _grid(n, ncols)
    fig = _figure(1.7 * cols, 1.9 * rows)
    for i, img in enumerate(images):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        parts, wrong = [], False
        if yt is not None:
            parts.append(name(yt[i]) if yp is None else f"true {name(yt[i])}")
        if yp is not None:
            parts.append(f"pred {name(yp[i])}")
            wrong = yt is not None and int(yt[i]) != int(yp[i])
        if parts:
            ax.set_title("\n".join(parts), fontsize=8, color="red" if wrong else "black")
    return _save(fig, path)


def plot_filters(layer, path="filters.png", channel=None, ncols=None, max_filters=64):
    """The kernels of a Conv2D layer, one tile per output filter (up to ``max_filters``): in colour when
    the layer reads 3 channels, else the input channel ``channel`` (default: the mean over input
    channels). Each tile is scaled on its own, so the pattern shows, not the magnitude."""
    kernel = getattr(layer, "kernel", None)
    value = getattr(kernel, "value", None)
    if value is None or getattr(value, "ndim", 0) != 4:
        raise ValueError(f"plot_filters needs a built Conv2D layer (a (kh, kw, in, out) kernel), received "
                         f"{layer!r}")
    w = to_host(value).astype(np.float64)
    kh, kw, cin, cout = w.shape
    if channel is not None:
        if not isinstance(channel, int) or not 0 <= channel < cin:
            raise ValueError(f"channel must be an int in [0, {cin}), received channel={channel!r}")
        tiles = w[:, :, channel, :]
    elif cin == 3:
        tiles = w
    else:
        tiles = w.mean(axis=2)
    n = min(cout, max_filters)
    rows, cols = _grid(n, ncols)
    fig = _figure(1.2 * cols + 0.5, 1.3 * rows + 0.6)
    for i in range(n):
        t = tiles[..., i]
        lo, hi = t.min(), t.max()
        t = (t - lo) / (hi - lo) if hi > lo else np.zeros_like(t)
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(t, cmap=None if t.ndim == 3 else "viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(i), fontsize=7)
    what = "RGB" if channel is None and cin == 3 else (f"input channel {channel}" if channel is not None
                                                          else "mean over input channels")
    fig.suptitle(f"{layer.name}: {cout} filters {kh}x{kw} ({what})", fontsize=9)
    return _save(fig, path)


def plot_feature_maps(model, x, layer_name, path="feature_maps.png", ncols=None, max_maps=32):
    """The activations of layer ``layer_name`` for one image x ((H, W, C) or a batch of one), one tile
    per channel (up to ``max_maps``), read through ``Model(model.inputs, layer.output)``."""
    layer = model.get_layer(layer_name)
    x = to_host(x)
    if x.ndim == len(model.inputs[0].shape) - 1:
        x = x[None]
    if x.shape[0] != 1:
        raise ValueError(f"plot_feature_maps takes one image (or a batch of one), received shape {x.shape}")
    maps = to_host(Model(model.inputs, layer.output).predict(x, verbose=0))[0]
    if maps.ndim != 3:
        raise ValueError(f"layer {layer_name!r} outputs shape {maps.shape} per image; feature maps need (H, W, C)")
    n = min(maps.shape[-1], max_maps)
    rows, cols = _grid(n, ncols)
    fig = _figure(1.3 * cols + 0.5, 1.4 * rows + 0.6)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(maps[..., i], cmap="viridis", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(i), fontsize=7)
    fig.suptitle(f"{layer_name}: {maps.shape[-1]} feature maps {maps.shape[0]}x{maps.shape[1]}", fontsize=9)
    return _save(fig, path)
