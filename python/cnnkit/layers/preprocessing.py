"""Preprocessing and augmentation layers with Keras 3's names, arguments and defaults (NHWC images).

Rescaling and Normalization act in training and at inference. The Random* layers change their input
only when called with ``training=True`` (RandomCrop also crops at inference, to a center window).
Each draws its parameters, one set per image, from a NumPy generator of its own on the host (seeded
by ``seed=``, else from cnnkit's shared generator when the layer is made, so ``set_random_seed``
makes a run repeat) and applies them to the whole batch at once with array math on the input's
module, NumPy or CuPy: no Python loop over images, and the same code runs on the GPU.

The geometric layers build one affine map per image (output pixel -> input pixel) and sample all
images with one gather (nearest or bilinear interpolation; fill modes reflect, wrap, constant,
nearest, as Keras' affine_transform). Augmentation layers belong at the start of a model, where no
input gradient is ever needed. Where it is simple and exact the gradient is given anyway
(Rescaling, Normalization, RandomFlip, RandomContrast, RandomCrop's windows); the resampling layers
(RandomTranslation, RandomRotation, RandomZoom, and RandomCrop when it resizes) raise
NotImplementedError if a gradient through a training-mode call is ever requested.
"""

import math
import numbers

import numpy as np

from ..ops import get_array_module, to_host
from . import _args
from ._seeds import layer_generator
from .base import Layer, format_shape

__all__ = ["Rescaling", "Normalization", "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom",
           "RandomCrop", "RandomContrast"]

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("nearest", "bilinear")


# ---------------------------------------------------------------------- resampling
def _index_table(lo, hi, n, fill_mode):
    """For the integer source indices lo..hi along an axis of size n: the index each reads in [0, n)
    as the fill mode extends the image, and whether it lies inside (constant mode reads fill_value
    outside). Built on the host: a few dozen entries, so folding costs one gather per sample."""
    i = np.arange(lo, hi + 1)
    if fill_mode == "reflect":  # (d c b a | a b c d | d c b a): period 2n, mirrored about the edges
        i = i % (2 * n)
        folded = np.where(i < n, i, 2 * n - 1 - i)
    elif fill_mode == "wrap":   # (a b c d | a b c d | a b c d)
        folded = i % n
    else:                       # nearest: (a a | a b c d | d d); constant: the same, masked below
        folded = np.clip(i, 0, n - 1)
    return folded, (i >= 0) & (i < n)


def affine_resample(x, transforms, out_size=None, interpolation="bilinear", fill_mode="constant", fill_value=0.0):
    """Sample NHWC images x on an out_size grid (default: their own size). transforms (B, 6) holds,
    per image, (a0, a1, a2, b0, b1, b2): the output pixel at column u, row v reads the input at
    column a0*u + a1*v + a2, row b0*u + b1*v + b2 (pixel centers at integers; Keras'
    affine_transform convention without its projective terms)."""
    xp = get_array_module(x)
    b, h, w, c = x.shape
    ho, wo = (h, w) if out_size is None else out_size
    if b == 0:
        return xp.zeros((0, ho, wo, c), x.dtype)
    t = np.asarray(transforms, dtype=np.float64).reshape(b, 6)
    # The range of source indices, from the corners of the output grid (an affine map is extreme
    # there) with a margin for float32 rounding, bounds the fold tables.
    cu, cv = np.array([0, wo - 1, 0, wo - 1]), np.array([0, 0, ho - 1, ho - 1])
    tables = []
    for k, n in ((0, w), (3, h)):
        src = t[:, k:k + 1] * cu + t[:, k + 1:k + 2] * cv + t[:, k + 2:k + 3]
        lo, hi = int(np.floor(src.min())) - 2, int(np.floor(src.max())) + 3
        tables.append((lo,) + _index_table(lo, hi, n, fill_mode))
    total = b * h * w
    flat = x.reshape(total, c)
    (lo_x, col, col_in), (lo_y, row, row_in) = tables
    row = row * w
    if fill_mode == "constant":
        # one extra pixel holding fill_value; an index outside the image points at it or beyond,
        # and xp.minimum brings it back: a gather, no masks over the batch
        flat = xp.concatenate([flat, xp.full((1, c), fill_value, x.dtype)])
        col, row = np.where(col_in, col, total), np.where(row_in, row, total)
    col, row = xp.asarray(col), xp.asarray(row)
    td = xp.asarray(t, dtype=x.dtype)[:, :, None, None]
    u = xp.arange(wo, dtype=x.dtype)[None, None, :]
    v = xp.arange(ho, dtype=x.dtype)[None, :, None]
    src_x = td[:, 0] * u + td[:, 1] * v + td[:, 2]  # (B, ho, wo)
    src_y = td[:, 3] * u + td[:, 4] * v + td[:, 5]
    first = (xp.arange(b, dtype=row.dtype) * (h * w))[:, None, None]

    def read(r, cc):
        idx = r + cc
        if fill_mode == "constant":
            idx = xp.minimum(idx, total)
        return xp.take(flat, idx, axis=0)  # one gather for the whole batch: (B, ho, wo, C)

    if interpolation == "nearest":
        iy = xp.floor(src_y + 0.5).astype(row.dtype) - lo_y
        ix = xp.floor(src_x + 0.5).astype(row.dtype) - lo_x
        return read(first + row[iy], col[ix])
    y0, x0 = xp.floor(src_y), xp.floor(src_x)
    fy, fx = (src_y - y0)[..., None], (src_x - x0)[..., None]
    iy, ix = y0.astype(row.dtype) - lo_y, x0.astype(row.dtype) - lo_x
    r0, r1 = first + row[iy], first + row[iy + 1]
    c0, c1 = col[ix], col[ix + 1]
    top, bottom = read(r0, c0), read(r1, c0)
    top += (read(r0, c1) - top) * fx
    bottom += (read(r1, c1) - bottom) * fx
    return top + (bottom - top) * fy


# ---------------------------------------------------------------------- argument checks
def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _factor_range(value, name, low=-1.0, high=1.0, symmetric=True):
    """Keras' factor arguments: a number f -> (-|f|, |f|) (or (f, f) when not symmetric), a pair ->
    (lower, upper) sorted; every number within [low, high]."""
    pair = isinstance(value, (tuple, list))
    items = list(value) if pair else [value]
    if (pair and len(items) != 2) or not all(_is_number(v) and low <= v <= high for v in items):
        raise ValueError(f"{name} must be a number or a pair of numbers in [{low:g}, {high:g}], "
                         f"received {name}={value!r}")
    if pair:
        return tuple(sorted(float(v) for v in items))
    f = abs(float(value))
    return (-f, f) if symmetric else (f, f)


def _config_factor(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def _choice(value, name, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, received {name}={value!r}")
    return value


def _number_or_array(value, name):
    """A finite number or a nested list of them (a per-channel value), as stored in the config."""
    try:
        arr = np.asarray(value, dtype=np.float64)
        ok = value is not None and not isinstance(value, (bool, str)) and bool(np.all(np.isfinite(arr)))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number or an array of them, received {name}={value!r}")
    return float(arr) if arr.ndim == 0 else arr.tolist()


# ---------------------------------------------------------------------- layers
class _ImageLayer(Layer):
    """The NHWC input check shared by the image layers."""

    def _check_input_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{type(self).__name__} {self.name!r} needs NHWC images (batch, height, width, "
                             f"channels), received input shape {format_shape(input_shape)}")


class _RandomImageLayer(_ImageLayer):
    """An augmentation: the identity at inference, random per image in training. Subclasses
    implement ``_augment(x) -> (y, saved)`` and, where exact, ``_augment_backward(saved, dy)``."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        _args.data_format(data_format)
        seed = _args.seed(seed)
        super().__init__(**kwargs)
        self.seed = seed
        self._rng = layer_generator(seed)

    def forward(self, x, training=False):
        x = x.astype(self.dtype, copy=False)
        if not training:
            return x, None
        return self._augment(x)

    def backward(self, saved, dy, need_dx=True):
        if not need_dx:
            return None
        if saved is None:
            return dy
        return self._augment_backward(saved, dy)

    def _augment_backward(self, saved, dy):
        raise NotImplementedError(
            f"{type(self).__name__} {self.name!r} resamples its input and has no input gradient; put "
            "augmentation layers at the start of the model, where none is needed")

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


class Rescaling(Layer):
    """``x * scale + offset`` in training and at inference (scale and offset may be per-channel
    arrays): ``Rescaling(1 / 255)`` maps [0, 255] to [0, 1]."""

    def __init__(self, scale, offset=0.0, **kwargs):
        scale, offset = _number_or_array(scale, "scale"), _number_or_array(offset, "offset")
        super().__init__(**kwargs)
        self.scale, self.offset = scale, offset

    def forward(self, x, training=False):
        xp = get_array_module(x)
        scale = xp.asarray(self.scale, dtype=self.dtype)
        return x.astype(self.dtype, copy=False) * scale + xp.asarray(self.offset, dtype=self.dtype), scale

    def backward(self, scale, dy, need_dx=True):
        return dy * scale if need_dx else None

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class Normalization(Layer):
    """``(x - mean) / sqrt(variance)`` with a mean and variance per index of ``axis`` (default -1:
    per channel), given as ``mean=``/``variance=`` or learned from data with ``adapt(data)``
    (then stored as the non-trainable weights ``mean`` and ``variance``, which save and load with
    the model). ``invert=True`` maps normalized values back. The divisor is floored at 1e-7, as
    Keras does, so a constant feature stays finite."""

    epsilon = 1e-7  # Keras' backend.epsilon()

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        if axis is None:
            axes = ()
        elif isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
            axes = (int(axis),)
        elif isinstance(axis, (tuple, list)) and all(isinstance(a, numbers.Integral) and not isinstance(a, bool)
                                                     for a in axis):
            axes = tuple(int(a) for a in axis)
        else:
            raise TypeError(f"axis must be an int, a tuple of ints or None, received axis={axis!r}")
        if (mean is None) != (variance is None):
            raise ValueError(f"mean and variance must be given together, received mean={mean!r} and "
                             f"variance={variance!r}")
        if mean is not None:
            mean, variance = _number_or_array(mean, "mean"), _number_or_array(variance, "variance")
            if np.shape(mean) != np.shape(variance):
                raise ValueError(f"mean and variance must have the same shape, received mean={mean!r} and "
                                 f"variance={variance!r}")
            if np.ndim(mean) > len(axes):
                raise ValueError(f"mean has rank {np.ndim(mean)}, more than the {len(axes)} axes kept by "
                                 f"axis={axis!r}; received mean={mean!r}")
            if np.any(np.asarray(variance) < 0):
                raise ValueError(f"variance must be >= 0, received variance={variance!r}")
        invert = _args.boolean(invert, "invert")
        super().__init__(**kwargs)
        self.axis, self.input_mean, self.input_variance, self.invert = axes, mean, variance, invert
        self.mean = self.variance = None  # the weights, once built (adapt mode)

    def build(self, input_shape):
        ndim = len(input_shape)
        if any(not -ndim <= a < ndim for a in self.axis):
            raise ValueError(f"Normalization {self.name!r}: axis={self.axis} is out of range for inputs of rank "
                             f"{ndim} (input shape {format_shape(input_shape)})")
        keep = tuple(sorted({a % ndim for a in self.axis}))
        if any(input_shape[a] is None for a in keep):
            raise ValueError(f"Normalization {self.name!r}: the kept axes axis={self.axis} must have known sizes, "
                             f"received input shape {format_shape(input_shape)}")
        self._keep, self._reduce = keep, tuple(d for d in range(ndim) if d not in keep)
        self._broadcast = tuple(input_shape[d] if d in keep else 1 for d in range(ndim))
        shape = tuple(input_shape[d] for d in keep)
        if self.input_mean is None:
            self.mean = self.add_weight("mean", shape, "zeros", trainable=False)
            self.variance = self.add_weight("variance", shape, "ones", trainable=False)
        else:
            self._given = [self._broadcast_given(v, n) for v, n in ((self.input_mean, "mean"),
                                                                    (self.input_variance, "variance"))]

    def _broadcast_given(self, value, name):
        """Keras' rule: a given mean/variance lines up with the kept axes from the right."""
        arr = np.asarray(value, dtype=np.float64)
        shape = [1] * len(self._broadcast)
        for i in range(1, arr.ndim + 1):
            shape[self._keep[-i]] = arr.shape[-i]
        try:
            return np.broadcast_to(arr.reshape(shape), self._broadcast)
        except ValueError:
            raise ValueError(f"Normalization {self.name!r}: {name} of shape {arr.shape} does not broadcast to the "
                             f"kept axes {tuple(self._broadcast)}, received {name}={value!r}") from None

    def _check_input_shape(self, input_shape):
        if len(input_shape) != len(self._broadcast) or any(input_shape[d] != self._broadcast[d] for d in self._keep):
            raise ValueError(f"Normalization {self.name!r} was built for inputs of rank {len(self._broadcast)} with "
                             f"sizes {self._broadcast} on the kept axes, received input shape "
                             f"{format_shape(input_shape)}")

    def _std_and_mean(self, xp):
        if self.input_mean is None:
            mean = self.mean.value.reshape(self._broadcast).astype(self.dtype, copy=False)
            var = self.variance.value.reshape(self._broadcast).astype(self.dtype, copy=False)
        else:
            mean, var = (xp.asarray(a, dtype=self.dtype) for a in self._given)
        return xp.maximum(xp.sqrt(var), xp.asarray(self.epsilon, dtype=self.dtype)), mean

    def forward(self, x, training=False):
        xp = get_array_module(x)
        std, mean = self._std_and_mean(xp)
        x = x.astype(self.dtype, copy=False)
        return (mean + x * std if self.invert else (x - mean) / std), std

    def backward(self, std, dy, need_dx=True):
        if not need_dx:
            return None
        return dy * std if self.invert else dy / std

    def adapt(self, data, batch_size=1024):
        """Set mean and variance to the per-index statistics of data (biased variance, as Keras):
        an array of samples (NumPy or CuPy), or an iterable of batches (arrays or (x, y) tuples).
        Accumulated in float64 on the host, batch_size samples at a time."""
        if self.input_mean is not None:
            raise ValueError(f"Normalization {self.name!r} was given mean and variance; adapt() computes them "
                             "from data instead, so build the layer without mean= and variance=")
        if hasattr(data, "shape"):
            n = int(data.shape[0]) if len(data.shape) else 0
            batches = (data[i:i + batch_size] for i in range(0, n, batch_size))
        elif hasattr(data, "__len__") and hasattr(data, "__getitem__"):  # a Sequence of batches
            batches = (data[i] for i in range(len(data)))
        elif hasattr(data, "__iter__"):
            batches = iter(data)
        else:
            raise TypeError(f"adapt() takes an array or an iterable of batches, received {type(data).__name__}")
        count, mean, m2 = 0, 0.0, 0.0
        for batch in batches:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            batch = to_host(batch)
            if batch.ndim == 0 or batch.dtype.kind not in "fiub":
                raise TypeError(f"adapt() needs batches of numbers with a batch axis, received an array of shape "
                                f"{batch.shape} and dtype {batch.dtype}")
            self._maybe_build((None,) + batch.shape[1:])
            k = math.prod(batch.shape[d] for d in self._reduce)
            if k == 0:
                continue
            b_mean = batch.mean(axis=self._reduce, dtype=np.float64)
            b_m2 = ((batch - b_mean.reshape(self._broadcast)) ** 2).sum(axis=self._reduce)
            # Chan et al.'s pairwise update: exact merging of two (count, mean, M2) summaries
            delta, total = b_mean - mean, count + k
            mean, m2 = mean + delta * (k / total), m2 + b_m2 + delta ** 2 * (count * k / total)
            count = total
        if count == 0:
            raise ValueError(f"Normalization {self.name!r}: adapt() received no samples")
        self.mean.assign(np.asarray(mean).reshape(self.mean.shape))
        self.variance.assign(np.asarray(m2 / count).reshape(self.variance.shape))

    def get_config(self):
        return {**super().get_config(), "axis": list(self.axis), "mean": self.input_mean,
                "variance": self.input_variance, "invert": self.invert}


class RandomFlip(_RandomImageLayer):
    """Flips each image with probability 1/2: ``mode`` "horizontal" (left-right), "vertical"
    (top-bottom) or "horizontal_and_vertical". As in Keras 3, the last flips an image on both axes
    or on neither (one draw per image)."""

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        _choice(mode, "mode", ("horizontal", "vertical", "horizontal_and_vertical"))
        super().__init__(seed, data_format, **kwargs)
        self.mode = mode

    def _flip(self, x, flips):
        xp = get_array_module(x)
        f = xp.asarray(flips)[:, None, None, None]
        if self.mode != "vertical":
            x = xp.where(f, x[:, :, ::-1], x)
        if self.mode != "horizontal":
            x = xp.where(f, x[:, ::-1], x)
        return x

    def _augment(self, x):
        flips = self._rng.uniform(size=x.shape[0]) <= 0.5
        return self._flip(x, flips), flips

    def _augment_backward(self, flips, dy):
        return self._flip(dy, flips)  # a flip is its own inverse and its own transpose

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class _RandomAffine(_RandomImageLayer):
    """Shared by the layers that resample through one affine map per image."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        _choice(fill_mode, "fill_mode", FILL_MODES)
        _choice(interpolation, "interpolation", INTERPOLATIONS)
        fill_value = _args.finite_float(fill_value, "fill_value")
        super().__init__(seed, data_format, **kwargs)
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, fill_value

    def _augment(self, x):
        b, h, w, _ = x.shape
        rows = self._transforms(b, h, w)
        return affine_resample(x, rows, None, self.interpolation, self.fill_mode, self.fill_value), True

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value}


class RandomTranslation(_RandomAffine):
    """Shifts each image by a random fraction of its size: ``height_factor`` and ``width_factor``
    are a number f (a shift in [-f, f]) or a pair (lower, upper), in [-1, 1]; positive moves the
    image down / right. Pixels shifted in come from ``fill_mode``."""

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        self._height = _factor_range(height_factor, "height_factor")
        self._width = _factor_range(width_factor, "width_factor")
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor

    def _transforms(self, b, h, w):
        dy = self._rng.uniform(*self._height, size=b) * h
        dx = self._rng.uniform(*self._width, size=b) * w
        one, zero = np.ones(b), np.zeros(b)
        return np.stack([one, zero, -dx, zero, one, -dy], axis=1)

    def get_config(self):
        return {**super().get_config(), "height_factor": _config_factor(self.height_factor),
                "width_factor": _config_factor(self.width_factor)}


class RandomRotation(_RandomAffine):
    """Rotates each image about its center by a random angle: ``factor`` is a fraction of a full
    turn, a number f (an angle in [-f, f] * 360 degrees) or a pair (lower, upper), in [-1, 1];
    positive turns counter-clockwise."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        self._range = _factor_range(factor, "factor")
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.factor = factor

    def _transforms(self, b, h, w):
        angle = self._rng.uniform(self._range[0] * 2 * np.pi, self._range[1] * 2 * np.pi, size=b)
        cos, sin = np.cos(angle), np.sin(angle)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        # the output pixel p reads the input at R(angle) (p - c) + c
        return np.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy], axis=1)

    def get_config(self):
        return {**super().get_config(), "factor": _config_factor(self.factor)}


class RandomZoom(_RandomAffine):
    """Zooms each image about its center: ``height_factor`` is a number f (a zoom in [-f, f]) or a
    pair (lower, upper), in [-1, 1]; positive zooms out (the image shrinks), negative zooms in.
    ``width_factor`` likewise, or None to keep the aspect ratio (the height's draw for both)."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        self._height = _factor_range(height_factor, "height_factor")
        self._width = None if width_factor is None else _factor_range(width_factor, "width_factor")
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor

    def _transforms(self, b, h, w):
        zy = 1 + self._rng.uniform(*self._height, size=b)
        zx = zy if self._width is None else 1 + self._rng.uniform(*self._width, size=b)
        zero = np.zeros(b)
        return np.stack([zx, zero, (w - 1) / 2 * (1 - zx), zero, zy, (h - 1) / 2 * (1 - zy)], axis=1)

    def get_config(self):
        return {**super().get_config(), "height_factor": _config_factor(self.height_factor),
                "width_factor": _config_factor(self.width_factor)}


class RandomCrop(_RandomImageLayer):
    """Crops images to ``height`` x ``width``. In training, when the images are at least that large,
    a random window (one location for the whole batch, as Keras). Otherwise, and at inference, the
    largest centered window with the target aspect ratio, resized (bilinear) to the target size
    when it is not already that size, as Keras documents."""

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        height, width = _args.positive_int(height, "height"), _args.positive_int(width, "width")
        super().__init__(seed, data_format, **kwargs)
        self.height, self.width = height, width

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[3])

    def forward(self, x, training=False):
        x = x.astype(self.dtype, copy=False)
        b, h, w, _ = x.shape
        if training and h >= self.height and w >= self.width:
            top = int(self._rng.integers(0, h - self.height + 1))
            left = int(self._rng.integers(0, w - self.width + 1))
            return x[:, top:top + self.height, left:left + self.width], (x.shape, top, left)
        ch = max(min(h, int(w * self.height / self.width)), 1)
        cw = max(min(w, int(h * self.width / self.height)), 1)
        top, left = (h - ch) // 2, (w - cw) // 2
        window = x[:, top:top + ch, left:left + cw]
        if (ch, cw) == (self.height, self.width):
            return window, (x.shape, top, left)
        # resize with half-pixel centers and clamped edges (tf.image.resize / jax.image.resize bilinear)
        sy, sx = ch / self.height, cw / self.width
        rows = np.tile([sx, 0.0, 0.5 * sx - 0.5, 0.0, sy, 0.5 * sy - 0.5], (b, 1))
        return affine_resample(window, rows, (self.height, self.width), "bilinear", "nearest"), True

    def backward(self, saved, dy, need_dx=True):
        if not need_dx:
            return None
        if saved is True:
            return self._augment_backward(saved, dy)
        shape, top, left = saved
        dx = get_array_module(dy).zeros(shape, dy.dtype)
        dx[:, top:top + self.height, left:left + self.width] = dy
        return dx

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


class RandomContrast(_RandomImageLayer):
    """Scales each image's deviation from its per-channel mean by a random factor and clips to
    ``value_range``: ``(x - mean) * f + mean``, one f per image drawn from [1 - lower, 1 + upper].
    ``factor`` is a number (lower = upper = factor, as Keras documents) or a pair, in [0, 1]."""

    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        self._range = _factor_range(factor, "factor", 0.0, 1.0, symmetric=False)
        if not (isinstance(value_range, (tuple, list)) and len(value_range) == 2
                and all(_is_number(v) for v in value_range) and value_range[0] < value_range[1]):
            raise ValueError(f"value_range must be a pair of numbers (low, high) with low < high, received "
                             f"value_range={value_range!r}")
        super().__init__(seed, data_format, **kwargs)
        self.factor, self.value_range = factor, tuple(float(v) for v in value_range)

    def _augment(self, x):
        xp = get_array_module(x)
        lower, upper = self._range
        f = xp.asarray(self._rng.uniform(1 - lower, 1 + upper, size=x.shape[0]), dtype=x.dtype)[:, None, None, None]
        mean = x.mean(axis=(1, 2), keepdims=True)
        z = (x - mean) * f + mean
        low, high = self.value_range
        return xp.clip(z, low, high), (f, (z >= low) & (z <= high))

    def _augment_backward(self, saved, dy):
        f, inside = saved
        g = dy * inside
        return f * g + (1 - f) * g.mean(axis=(1, 2), keepdims=True)

    def get_config(self):
        return {**super().get_config(), "factor": _config_factor(self.factor), "value_range": list(self.value_range)}
