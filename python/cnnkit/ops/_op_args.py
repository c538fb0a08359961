"""Argument checks shared by cnnkit.ops and cnnkit.ops.reference: one check, two callers.

Every public op validates its arguments by calling the ``check_<op>`` function here before it
computes anything, and so does its NumPy reference: both refuse the same calls with the same
ValueError/TypeError and message (the reference shares its validation with the native path, not
its arithmetic). The checks read shapes, dtypes and Python scalars only; nothing here imports the
native modules or CuPy (a CuPy array is recognised by its type's module). cnnkit.ops views GPU
DLPack exporters as CuPy arrays before calling a check (``_backend.as_array``) and makes the
arrays C-contiguous for its kernels after.
"""

import contextlib
import contextvars
import math
import numbers
from collections import namedtuple

import numpy as np

# Set by labels_checked(): the caller validated every label already (fit and evaluate check the whole
# label array once), so the per-call range checks that would read the device are skipped.
_labels_checked = contextvars.ContextVar("cnnkit_labels_checked", default=False)


@contextlib.contextmanager
def labels_checked(checked=True):
    """Within this block, class-id range checks on labels (softmax_cross_entropy, the losses, the
    metrics) are skipped: on the GPU each is a device-to-host read, a synchronization per step. Only
    for callers that validated the same labels beforehand; a direct call still checks.
    ``labels_checked(False)`` turns the checks back on inside (for the validation itself)."""
    token = _labels_checked.set(bool(checked))
    try:
        yield
    finally:
        _labels_checked.reset(token)


def labels_trusted():
    """Whether the labels were validated by the caller (inside ``labels_checked()``)."""
    return _labels_checked.get()


FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_in_place(a, name):
    """An array an op updates in place: C-contiguous, aligned and writable (ValueError naming it)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous: it is updated in place")
    if not getattr(a.flags, "aligned", True):
        raise ValueError(f"{name} must be aligned (its data address a multiple of {a.dtype.itemsize} "
                         "bytes): it is updated in place")
    if not getattr(a.flags, "writeable", True):  # CuPy arrays have no read-only flag
        raise ValueError(f"{name} must be writable: it is updated in place")


NHWC = "NHWC (N, H, W, C)"


# ----------------------------------------------------------------------------------------------
# arrays

def is_cupy(a):
    return type(a).__module__.split(".")[0] == "cupy"


# DLPack device types that hold CUDA memory (kDLCUDA, kDLCUDAHost is host memory, kDLCUDAManaged).
_DLPACK_CUDA = (2, 13)


def is_gpu_dlpack(a):
    """Whether a (not NumPy, not CuPy) exports DLPack on a CUDA device, e.g. a PyTorch CUDA tensor."""
    if isinstance(a, np.ndarray) or not hasattr(a, "__dlpack__") or not hasattr(a, "__dlpack_device__"):
        return False
    try:
        return int(a.__dlpack_device__()[0]) in _DLPACK_CUDA
    except Exception:
        return False


def array_kind(*arrays):
    """"numpy" or "cupy": the one array library of these arrays (None entries are skipped; "numpy"
    when there are none); TypeError for anything else and for a mixture."""
    kinds = set()
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, np.ndarray):
            kinds.add("numpy")
        elif is_cupy(a) or is_gpu_dlpack(a):
            kinds.add("cupy")
        else:
            raise TypeError(f"expected numpy.ndarray or cupy.ndarray arguments, got {type(a).__name__}")
    if len(kinds) > 1:
        raise TypeError("cannot mix NumPy and CuPy (GPU) arrays in one call; move them to one device "
                        "first (cupy.asarray(a) or a.get())")
    return kinds.pop() if kinds else "numpy"


def _xp(a):
    if is_cupy(a):
        import cupy

        return cupy
    return np


def float_array(a, name, ndim=None, layout=None, dtype=None):
    """a, checked to be a float32/float64 array (of rank ndim, of dtype when given).

    layout names the rank in the message, e.g. "NHWC (N, H, W, C)"; dtype is the dtype of the
    other operands, a mismatch is a TypeError (no silent casts)."""
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    if a.dtype not in FLOATS:
        raise TypeError(
            f"{name} must be float32 or float64, got dtype {a.dtype}; cast it explicitly, "
            f"for example {name}.astype('float32')")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but the other operands are {np.dtype(dtype)}; "
                        "mixing float32 and float64 is not supported")
    if ndim is not None and a.ndim != ndim:
        what = f" {layout}" if layout else ""
        raise ValueError(f"{name} must be {ndim}-D{what}, got shape {tuple(a.shape)}")
    return a


def _is_array(a):
    return hasattr(a, "dtype") and hasattr(a, "shape")


def _data_ptr(a):
    if isinstance(a, np.ndarray):
        return a.__array_interface__["data"][0]
    return a.data.ptr  # CuPy


def check_out(out, x, *others):
    """``out``, when given, can receive a result shaped like x: same library, shape and dtype,
    C-contiguous, aligned, writable, and not a shifted view of x or of the other operands."""
    if out is None:
        return None
    if not _is_array(out):
        raise TypeError(f"out must be an array, got {type(out).__name__}")
    array_kind(x, out)
    if out.shape != x.shape:
        raise ValueError(f"out must have the shape of x: got out.shape={tuple(out.shape)}, "
                         f"x.shape={tuple(x.shape)}")
    if out.dtype != x.dtype:
        raise TypeError(f"out has dtype {out.dtype} but x is {x.dtype}; they must match")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not getattr(out.flags, "aligned", True):
        raise ValueError(f"out must be aligned (its data address a multiple of {out.dtype.itemsize} bytes); "
                         "pass a fresh array")
    if not getattr(out.flags, "writeable", True):  # CuPy arrays have no read-only flag
        raise ValueError("out must be writable")
    # Elementwise kernels may write in place, element i over element i; a shifted overlap would
    # read values already overwritten.
    for a in (x, *others):
        shifted = out is not a and _xp(out).may_share_memory(out, a) and _data_ptr(out) != _data_ptr(a)
        if shifted and out.size:
            raise ValueError("out overlaps an input without being that input itself; "
                             "pass out=x or a separate array")
    return out


# ----------------------------------------------------------------------------------------------
# scalars and window geometry

def is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def seed_value(seed, name="seed"):
    """A seed as a Python int in [0, 2**64)."""
    if not is_int(seed):
        raise TypeError(f"{name} must be an int, received {name}={seed!r}")
    return int(seed) % 2**64


def pair(value, name, minimum=1):
    """An int or a pair of ints, each >= minimum, as a tuple of two Python ints."""
    vals = (value, value) if is_int(value) else value
    try:
        vals = tuple(vals)
    except TypeError:
        vals = None
    if vals is None or len(vals) != 2 or not all(is_int(v) for v in vals):
        raise ValueError(f"{name} must be an int or a tuple of 2 ints, received {name}={value!r}")
    if any(v < minimum for v in vals):
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, received {name}={value!r}")
    return int(vals[0]), int(vals[1])


def resolve_padding(padding, in_hw, window_hw, strides, dilation):
    """((top, bottom), (left, right)) for a padding spec: "valid", "same" (TensorFlow/Keras rule:
    output = ceil(input / stride), the odd pixel goes at the bottom/right), an int, a pair of ints
    (symmetric per axis) or ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode == "same":
            pads = []
            for n, k, s, d in zip(in_hw, window_hw, strides, dilation):
                out = -(-n // s)
                total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(f'padding must be "valid", "same", an int or ((top, bottom), (left, right)), '
                         f"received padding={padding!r}")
    if is_int(padding):
        p = pair(padding, "padding", minimum=0)
        return (p[0], p[0]), (p[1], p[1])
    try:
        items = tuple(padding)
    except TypeError:
        raise ValueError(f"padding must be a string, an int or a tuple, received padding={padding!r}") from None
    if len(items) == 2 and all(is_int(v) for v in items):
        ph, pw = pair(items, "padding", minimum=0)
        return (ph, ph), (pw, pw)
    if len(items) == 2:
        return pair(items[0], "padding", minimum=0), pair(items[1], "padding", minimum=0)
    raise ValueError(f"padding must be a string, an int or ((top, bottom), (left, right)), "
                     f"received padding={padding!r}")


# Window arguments and padded extents above this are refused: sums of two still fit in int64.
MAX_EXTENT = 2**62


class Geometry(namedtuple("Geometry", "N H W C KH KW SH SW DH DW PT PB PL PR")):
    """The window geometry the native kernels take (csrc/common.h ``ConvGeom``, read there as a
    14-tuple): input (N, H, W, C), window (KH, KW), strides (SH, SW), dilation (DH, DW) and padding
    top, bottom, left, right (PT, PB, PL, PR)."""

    __slots__ = ()

    @property
    def OH(self):
        """Output rows."""
        return (self.H + self.PT + self.PB - (self.KH - 1) * self.DH - 1) // self.SH + 1

    @property
    def OW(self):
        """Output columns."""
        return (self.W + self.PL + self.PR - (self.KW - 1) * self.DW - 1) // self.SW + 1

    @property
    def patch_size(self):
        """Values in one window, KH * KW * C: the columns of the im2col matrix."""
        return self.KH * self.KW * self.C

    @property
    def padded(self):
        """Whether any side is padded."""
        return bool(self.PT or self.PB or self.PL or self.PR)


def geometry(x_shape, window, strides=1, padding="valid", dilation=1, window_name="kernel_size"):
    """Validate window arguments against an NHWC shape.

    Returns (geom, (out_h, out_w)) where geom is the ``Geometry`` the native kernels take."""
    n, h, w, c = (int(s) for s in x_shape)
    if h < 1 or w < 1 or c < 1:
        raise ValueError(f"input must have positive height, width and channels, got shape {tuple(x_shape)}")
    kh, kw = pair(window, window_name)
    sh, sw = pair(strides, "strides")
    dh, dw = pair(dilation, "dilation" if window_name == "kernel_size" else "dilation_rate")
    (pt, pb), (pl, pr) = resolve_padding(padding, (h, w), (kh, kw), (sh, sw), (dh, dw))
    eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if eff_h > h + pt + pb or eff_w > w + pl + pr:
        raise ValueError(
            f"{window_name}=({kh}, {kw}) with dilation ({dh}, {dw}) covers ({eff_h}, {eff_w}) pixels, more "
            f"than the padded input ({h + pt + pb}, {w + pl + pr}) of input shape {tuple(x_shape)} with "
            f"padding={padding!r}: the output would be empty")
    oh = (h + pt + pb - eff_h) // sh + 1  # Geometry.OH, worked out here where eff_h is at hand
    ow = (w + pl + pr - eff_w) // sw + 1
    # The kernels index in 64 bits; a (padded) extent they cannot add up is refused here, not wrapped.
    extents = {"kernel_size/pool_size": (kh, kw), "strides": (sh, sw), "dilation": (dh, dw),
               "padding": (pt, pb, pl, pr), "padded input": (h + pt + pb, w + pl + pr)}
    for what, values in extents.items():
        if max(values) > MAX_EXTENT:
            raise ValueError(f"{what} {values} exceeds the largest extent the kernels index in 64 bits "
                             f"(2**62) for input shape {tuple(x_shape)}")
    return Geometry(n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr), (oh, ow)


def _bias(b, x, w):
    """b: None, or an array of x's dtype with one value per output of w (its last axis)."""
    if b is None:
        return
    float_array(b, "b", dtype=x.dtype)
    if tuple(b.shape) != (w.shape[-1],):
        raise ValueError(f"b must have shape ({w.shape[-1]},) to match w.shape={tuple(w.shape)}, "
                         f"got b.shape={tuple(b.shape)}")


def check_activation(activation):
    """The activation a convolution or dense op fuses into its output pass: None or "relu"."""
    if activation not in (None, "relu"):
        raise ValueError(f'activation must be None or "relu", received activation={activation!r}')
    return activation


def check_saved_state(wanted, name, training):
    """``return_index``/``return_stats``: only the training forms save anything for backward."""
    if wanted and not training:
        raise ValueError(f"{name}=True needs training=True: only training saves state for backward")


# ----------------------------------------------------------------------------------------------
# convolution

def _conv_operands(x, w, b):
    """x (NHWC), w (HWIO) and b (O,) or None."""
    float_array(x, "x", 4, NHWC)
    float_array(w, "w", 4, "HWIO (kernel_h, kernel_w, in_channels, out_channels)", dtype=x.dtype)
    if w.shape[2] != x.shape[3]:
        raise ValueError(f"w has {w.shape[2]} input channels (w.shape={tuple(w.shape)}) but x has "
                         f"{x.shape[3]} channels (x.shape={tuple(x.shape)})")
    _bias(b, x, w)


def check_conv2d(x, w, b=None, strides=1, padding="valid", dilation=1, activation=None):
    """conv2d's arguments; returns (geom, (out_h, out_w))."""
    check_activation(activation)
    _conv_operands(x, w, b)
    array_kind(x, w, b)
    return geometry(x.shape, w.shape[:2], strides, padding, dilation)


def check_conv2d_backward(dy, x, w, b=None, strides=1, padding="valid", dilation=1):
    """conv2d_backward's arguments; returns (geom, (out_h, out_w))."""
    _conv_operands(x, w, b)
    geom, out_hw = geometry(x.shape, w.shape[:2], strides, padding, dilation)
    float_array(dy, "dy", dtype=x.dtype)
    expected = (x.shape[0], *out_hw, w.shape[3])
    if tuple(dy.shape) != expected:
        raise ValueError(f"dy must have the output shape {expected} of conv2d for "
                         f"x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)}, got dy.shape={tuple(dy.shape)}")
    array_kind(dy, x, w, b)
    return geom, out_hw


def check_im2col(x, kernel_size, strides=1, padding="valid", dilation=1):
    """im2col's arguments; returns (geom, (out_h, out_w))."""
    float_array(x, "x", 4, NHWC)
    array_kind(x)
    return geometry(x.shape, kernel_size, strides, padding, dilation)


def check_col2im(col, x_shape, kernel_size, strides=1, padding="valid", dilation=1):
    """col2im's arguments; returns (x_shape as a tuple of ints, geom, (out_h, out_w))."""
    float_array(col, "col", 2, "(N*OH*OW, KH*KW*C)")
    array_kind(col)
    try:
        x_shape = tuple(int(s) for s in x_shape)
    except TypeError:
        raise TypeError(f"x_shape must be a tuple of 4 ints, received x_shape={x_shape!r}") from None
    if len(x_shape) != 4:
        raise ValueError(f"x_shape must be (N, H, W, C), received x_shape={x_shape}")
    if x_shape[0] < 0:
        raise ValueError(f"x_shape must have a batch size >= 0, received x_shape={x_shape}")
    geom, (oh, ow) = geometry(x_shape, kernel_size, strides, padding, dilation)
    rows, k = x_shape[0] * oh * ow, geom.patch_size
    if tuple(col.shape) != (rows, k):
        raise ValueError(f"col must have shape ({rows}, {k}) for x_shape={x_shape} with these window "
                         f"arguments, got col.shape={tuple(col.shape)}")
    return x_shape, geom, (oh, ow)


# ----------------------------------------------------------------------------------------------
# pooling

def pool_x(x):
    float_array(x, "x", 4, NHWC)
    if min(x.shape[1:]) < 1:
        raise ValueError(f"x must have positive height, width and channels, got shape {tuple(x.shape)}")


def pool_geometry(x_shape, pool_size, strides, padding):
    """(geom, output shape) for a pooling window, refusing windows that hold no input cell."""
    if strides is None:
        strides = pool_size
    geom, (oh, ow) = geometry(x_shape, pool_size, strides, padding, 1, window_name="pool_size")
    if (geom.PT >= geom.KH or geom.PL >= geom.KW or (oh - 1) * geom.SH - geom.PT >= geom.H
            or (ow - 1) * geom.SW - geom.PL >= geom.W):
        raise ValueError(
            f"padding={padding!r} with pool_size=({geom.KH}, {geom.KW}) and strides=({geom.SH}, {geom.SW}) on "
            f"input shape "
            f"{tuple(x_shape)} gives windows that hold only padding; use a padding smaller than pool_size")
    return geom, (x_shape[0], oh, ow, x_shape[3])


def pool_dy(dy, expected_shape, dtype, what):
    float_array(dy, "dy", len(expected_shape), dtype=dtype)
    if tuple(dy.shape) != tuple(expected_shape):
        raise ValueError(f"dy has shape {tuple(dy.shape)}, but the {what} output has shape "
                         f"{tuple(expected_shape)}")


def check_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """max/avg pooling's arguments; returns (geom, output shape)."""
    pool_x(x)
    array_kind(x)
    return pool_geometry(x.shape, pool_size, strides, padding)


def check_pool2d_backward(dy, x, pool_size, strides, padding, what):
    """The backward's arguments of the window pooling op ``what``; returns (geom, output shape)."""
    pool_x(x)
    array_kind(dy, x)
    geom, out_shape = pool_geometry(x.shape, pool_size, strides, padding)
    pool_dy(dy, out_shape, x.dtype, what)
    return geom, out_shape


def pool_x_shape(x_shape):
    """The input shape a saved-index backward is given, as a tuple of 4 ints."""
    try:
        shape = tuple(int(s) for s in x_shape)
    except TypeError:
        raise ValueError(f"x_shape must be a tuple of 4 ints, received x_shape={x_shape!r}") from None
    if len(shape) != 4 or min(shape) < 0 or min(shape[1:]) < 1:
        raise ValueError(f"x_shape must be (N, H, W, C) with positive H, W, C, received x_shape={x_shape!r}")
    return shape


def index_dtype(h, w):
    """The dtype of a saved flat in-image index h*W + w: int32 when it fits (half the traffic)."""
    return np.int32 if h * w <= 2**31 - 1 else np.int64


def pool_index(index, name, expected_shape):
    """A saved index (argmax, chosen cell): an int32/int64 array of the pooled output's shape."""
    if not hasattr(index, "dtype") or index.dtype not in (np.int32, np.int64):
        raise TypeError(f"{name} must be an int32 or int64 array, got "
                        f"{getattr(index, 'dtype', type(index).__name__)}")
    if tuple(index.shape) != tuple(expected_shape):
        raise ValueError(f"{name} has shape {tuple(index.shape)}, expected {tuple(expected_shape)}")


def check_pool2d_backward_from_index(dy, index, x_shape, pool_size, strides, padding, index_name, what):
    """The arguments of a window pooling's backward from its saved index; returns (x_shape, geom,
    output shape)."""
    x_shape = pool_x_shape(x_shape)
    geom, out_shape = pool_geometry(x_shape, pool_size, strides, padding)
    pool_dy(dy, out_shape, None, what)
    pool_index(index, index_name, out_shape)
    array_kind(dy, index)
    return x_shape, geom, out_shape


def check_global_max_pool2d_backward_from_argmax(dy, argmax, x_shape):
    """Returns x_shape as a tuple of ints."""
    x_shape = pool_x_shape(x_shape)
    pool_dy(dy, (x_shape[0], x_shape[3]), None, "global_max_pool2d")
    pool_index(argmax, "argmax", (x_shape[0], x_shape[3]))
    array_kind(dy, argmax)
    return x_shape


def check_global_pool2d(x):
    pool_x(x)
    array_kind(x)


def check_global_pool2d_backward(dy, x, what):
    pool_x(x)
    array_kind(dy, x)
    pool_dy(dy, (x.shape[0], x.shape[3]), x.dtype, what)


def check_stochastic_pool2d(x, pool_size=2, strides=None, padding="valid", seed=0, training=False,
                            return_index=False):
    """Returns (geom, output shape, seed as an int in [0, 2**64))."""
    pool_x(x)
    array_kind(x)
    seed = seed_value(seed)
    check_saved_state(return_index, "return_index", training)
    return (*pool_geometry(x.shape, pool_size, strides, padding), seed)


def check_stochastic_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid", seed=0):
    """Returns (geom, output shape, seed as an int in [0, 2**64))."""
    pool_x(x)
    array_kind(dy, x)
    seed = seed_value(seed)
    geom, out_shape = pool_geometry(x.shape, pool_size, strides, padding)
    pool_dy(dy, out_shape, x.dtype, "stochastic_pool2d")
    return geom, out_shape, seed


# ----------------------------------------------------------------------------------------------
# activations, softmax, dropout

def check_unary(x, out=None):
    """x of an elementwise op, and its ``out``."""
    float_array(x, "x")
    array_kind(x)
    check_out(out, x)


def check_grad_pair(dy, v, v_name="x"):
    """dy of v's shape and dtype."""
    float_array(v, v_name)
    float_array(dy, "dy", dtype=v.dtype)
    if dy.shape != v.shape:
        raise ValueError(f"dy must have the shape of {v_name}: got dy.shape={tuple(dy.shape)}, "
                         f"{v_name}.shape={tuple(v.shape)}")
    array_kind(dy, v)


def check_backward_from_output(dy, y, out=None):
    """dy of y's shape and dtype (y the forward's output), and ``out``."""
    check_grad_pair(dy, y, "y")
    check_out(out, dy, y)


def check_alpha(alpha, nonnegative):
    ok = isinstance(alpha, numbers.Real) and not isinstance(alpha, bool) and math.isfinite(alpha)
    if not ok or (nonnegative and alpha < 0):
        need = "a finite float >= 0" if nonnegative else "a finite float"
        raise ValueError(f"alpha must be {need}, received alpha={alpha!r}")
    return float(alpha)


def check_rate(rate):
    ok = isinstance(rate, numbers.Real) and not isinstance(rate, bool) and 0 <= rate < 1
    if not ok:
        raise ValueError(f"rate must be a float in [0, 1), received rate={rate!r}")
    return float(rate)


def check_axis(axis, ndim, name="x"):
    """axis as an index in [0, ndim)."""
    if ndim < 1:
        raise ValueError(f"{name} must have at least 1 dimension, got a 0-D array")
    if not isinstance(axis, numbers.Integral) or isinstance(axis, bool) or not -ndim <= axis < ndim:
        raise ValueError(f"axis must be an int in [-{ndim}, {ndim}) for a {ndim}-D {name}, "
                         f"received axis={axis!r}")
    return int(axis) % ndim


def check_softmax(x, axis=-1, out=None):
    """softmax/log_softmax's arguments; returns axis in [0, ndim)."""
    float_array(x, "x")
    array_kind(x)
    axis = check_axis(axis, x.ndim)
    check_out(out, x)
    return axis


def check_softmax_backward(dy, x, axis=-1):
    check_grad_pair(dy, x)
    return check_axis(axis, x.ndim)


def check_dropout(x, rate, seed):
    """dropout's arguments; returns (rate, seed)."""
    rate, seed = check_rate(rate), seed_value(seed)
    check_unary(x)
    return rate, seed


def check_dropout_backward(dy, x, rate, seed):
    """dropout_backward's arguments; returns (rate, seed)."""
    rate, seed = check_rate(rate), seed_value(seed)
    check_grad_pair(dy, x)
    return rate, seed


# ----------------------------------------------------------------------------------------------
# dense

def _dense_operands(x, w, b):
    float_array(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (batch, features), got shape {tuple(x.shape)}")
    float_array(w, "w", 2, "(in_features, out_features)", dtype=x.dtype)
    if w.shape[0] != x.shape[-1]:
        raise ValueError(f"w has {w.shape[0]} input features (w.shape={tuple(w.shape)}) but x has "
                         f"{x.shape[-1]} on its last axis (x.shape={tuple(x.shape)})")
    _bias(b, x, w)


def check_dense(x, w, b=None, activation=None):
    check_activation(activation)
    _dense_operands(x, w, b)
    array_kind(x, w, b)


def check_dense_backward(dy, x, w, b=None):
    _dense_operands(x, w, b)
    float_array(dy, "dy", dtype=x.dtype)
    expected = tuple(x.shape[:-1]) + (w.shape[1],)
    if tuple(dy.shape) != expected:
        raise ValueError(f"dy must have the output shape {expected} of dense for x.shape={tuple(x.shape)}, "
                         f"w.shape={tuple(w.shape)}, got dy.shape={tuple(dy.shape)}")
    array_kind(dy, x, w, b)


# ----------------------------------------------------------------------------------------------
# batch normalization

def check_arrays(**named):
    """TypeError naming the first argument that is neither None nor an array."""
    for name, a in named.items():
        if a is not None and not _is_array(a):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")


def norm_channels(x):
    """The channel count C of x (N, ..., C)."""
    float_array(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (N, ..., C), got shape {tuple(x.shape)}")
    c = int(x.shape[-1])
    if c < 1:
        raise ValueError(f"x must have at least one channel (last axis), got shape {tuple(x.shape)}")
    return c


def per_channel(a, name, x, c, dtype=None):
    """gamma/beta/statistics: None passes; otherwise a (C,) array of x's dtype (or dtype)."""
    if a is None:
        return
    float_array(a, name, dtype=x.dtype if dtype is None else dtype)
    if a.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},) to match the {c} channels of x "
                         f"{tuple(x.shape)}, got shape {tuple(a.shape)}")


def _moving(a, name, x, c, updated):
    """A moving statistic: a (C,) array of x's dtype; when it is updated in place it must also be
    C-contiguous, aligned and writable (a copy would silently lose the update)."""
    if a is None:
        raise TypeError(f"{name} is required: pass a ({c},) array of dtype {x.dtype}")
    if not updated:
        per_channel(a, name, x, c)
        return
    if not hasattr(a, "dtype") or not hasattr(a, "flags"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    if a.dtype != x.dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but x is {x.dtype}; the moving statistics are "
                        "updated in place and must have the dtype of x")
    if a.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},) to match the {c} channels of x "
                         f"{tuple(x.shape)}, got shape {tuple(a.shape)}")
    check_in_place(a, name)


def _norm_scalars(momentum, epsilon):
    for name, v in (("momentum", momentum), ("epsilon", epsilon)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must be a real number, received {name}={v!r}")
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], received momentum={momentum!r}")
    if not float(epsilon) > 0.0 or float(epsilon) == float("inf"):
        raise ValueError(f"epsilon must be positive and finite, received epsilon={epsilon!r}")
    return float(momentum), float(epsilon)


def norm_dy(dy, x):
    check_arrays(dy=dy)
    array_kind(dy, x)
    float_array(dy, "dy", dtype=x.dtype)
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x {tuple(x.shape)}, got {tuple(dy.shape)}")


def check_batch_norm(x, gamma, beta, moving_mean, moving_var, momentum, epsilon, updated):
    """batch_norm's arguments; updated: whether the moving statistics are written in place.
    Returns (C, momentum, epsilon)."""
    check_arrays(x=x, gamma=gamma, beta=beta, moving_mean=moving_mean, moving_var=moving_var)
    array_kind(x, gamma, beta, moving_mean, moving_var)
    c = norm_channels(x)
    per_channel(gamma, "gamma", x, c)
    per_channel(beta, "beta", x, c)
    _moving(moving_mean, "moving_mean", x, c, updated)
    _moving(moving_var, "moving_var", x, c, updated)
    momentum, epsilon = _norm_scalars(momentum, epsilon)
    return c, momentum, epsilon


def check_batch_norm_backward(dy, x, gamma, beta, moving_mean, moving_var, momentum, epsilon):
    """batch_norm_backward's arguments (the moving statistics are read only). Returns (C, momentum,
    epsilon)."""
    checked = check_batch_norm(x, gamma, beta, moving_mean, moving_var, momentum, epsilon, updated=False)
    norm_dy(dy, x)
    return checked


def check_batch_norm_backward_from_stats(dy, x, gamma, mean, invstd):
    """The arguments of the training backward from the statistics the training forward saved
    (float64 (C,) mean and invstd, whatever x's dtype). Returns C."""
    check_arrays(dy=dy, x=x, gamma=gamma, mean=mean, invstd=invstd)
    array_kind(dy, x, gamma, mean, invstd)
    c = norm_channels(x)
    norm_dy(dy, x)
    per_channel(gamma, "gamma", x, c)
    if mean is None or invstd is None:
        raise TypeError("mean and invstd are required: pass those that batch_norm(..., training=True, "
                        "return_stats=True) returned")
    per_channel(mean, "mean", x, c, dtype=np.float64)
    per_channel(invstd, "invstd", x, c, dtype=np.float64)
    return c


# ----------------------------------------------------------------------------------------------
# softmax cross-entropy

def check_softmax_cross_entropy(logits, labels):
    """Validated (logits, labels), integer labels in [0, K) of shape (N,), float ones of the logits'
    shape and dtype. On the GPU the range check of integer labels reads one flag back to the host (a
    small synchronization), so that a bad label is a ValueError here rather than a NaN later; it is
    skipped inside ``labels_checked()``, where the caller validated the labels already."""
    for name, a in (("logits", logits), ("labels", labels)):
        if not _is_array(a):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    array_kind(logits, labels)
    float_array(logits, "logits", ndim=2, layout="(N, K)")
    n, k = (int(s) for s in logits.shape)
    if k < 1:
        raise ValueError(f"logits must have at least one class, got shape {tuple(logits.shape)}")
    if labels.dtype.kind in "iu":
        if labels.shape != (n,):
            raise ValueError(f"integer labels must have shape ({n},) (one class id per row of logits "
                             f"{tuple(logits.shape)}), got shape {tuple(labels.shape)}")
        if n > 0 and not _labels_checked.get():
            bad = (labels < 0) | (labels >= k)
            if bool(bad.any()):
                i = int(_xp(labels).argmax(bad))
                raise ValueError(f"labels must be class ids in [0, {k}) for logits {tuple(logits.shape)}, "
                                 f"got labels[{i}] = {int(labels[i])}")
    elif labels.dtype.kind == "f":
        float_array(labels, "labels", dtype=logits.dtype)
        if labels.shape != logits.shape:
            raise ValueError(f"float labels (target probabilities) must have the shape of logits "
                             f"{tuple(logits.shape)}, got shape {tuple(labels.shape)}")
    else:
        raise TypeError(f"labels must be integer class ids (N,) or float probabilities (N, K), "
                        f"got dtype {labels.dtype}")


def check_dloss(dloss):
    """The upstream gradient of a scalar loss as a float."""
    if isinstance(dloss, bool):
        raise TypeError(f"dloss must be a real number, received dloss={dloss!r}")
    if isinstance(dloss, numbers.Real):
        return float(dloss)
    if hasattr(dloss, "dtype") and hasattr(dloss, "size"):
        if dloss.size != 1 or dloss.dtype.kind not in "fiu":
            raise ValueError(f"dloss must be a scalar (the gradient of the scalar loss), got an array of "
                             f"shape {tuple(dloss.shape)} and dtype {dloss.dtype}")
        return float(np.asarray(dloss.get() if hasattr(dloss, "get") else dloss).reshape(()))
    raise TypeError(f"dloss must be a real number, received dloss={dloss!r}")


# ----------------------------------------------------------------------------------------------
# optimizer updates

def _real(v, name, low, high, high_open=False):
    """A finite real scalar in [low, high] ([low, high) when high_open), as a float."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, received {name}={v!r}")
    v = float(v)
    if not (math.isfinite(v) and low <= v and (v < high if high_open else v <= high)):
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name} must be a finite number in {bound}, received {name}={v!r}")
    return v


def _in_place(a, name, variable):
    """A slot (or the variable itself): an array of the variable's library, dtype and shape that can
    be updated in place: C-contiguous, aligned, writable (a copy would silently lose the update)."""
    if not _is_array(a) or not hasattr(a, "flags"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    array_kind(variable, a)
    float_array(a, name, dtype=variable.dtype)
    if a.shape != variable.shape:
        raise ValueError(f"{name} has shape {tuple(a.shape)} but variable has shape {tuple(variable.shape)}")
    check_in_place(a, name)


def check_update(variable, gradient, **slots):
    """An optimizer update's arrays: ``variable`` and the slots given (None: absent) updated in place
    (``_in_place``), ``gradient`` read (any layout), all of one library, dtype and shape, none sharing
    memory with another."""
    if not _is_array(variable):
        raise TypeError(f"variable must be an array, got {type(variable).__name__}")
    float_array(variable, "variable")
    _in_place(variable, "variable", variable)
    if not _is_array(gradient):
        raise TypeError(f"gradient must be an array, got {type(gradient).__name__}")
    array_kind(variable, gradient)
    float_array(gradient, "gradient", dtype=variable.dtype)
    if gradient.shape != variable.shape:
        raise ValueError(f"gradient has shape {tuple(gradient.shape)} but variable has shape "
                         f"{tuple(variable.shape)}")
    named = [("variable", variable), ("gradient", gradient)]
    for name, a in slots.items():
        if a is not None:
            _in_place(a, name, variable)
            named.append((name, a))
    for i, (name_a, a) in enumerate(named):
        for name_b, b in named[:i]:
            if a.size and _xp(a).may_share_memory(a, b):
                raise ValueError(f"{name_a} shares memory with {name_b}; pass separate arrays")


def _decay(weight_decay):
    return _real(weight_decay, "weight_decay", 0.0, math.inf, high_open=True)


def check_sgd_update(variable, gradient, momentum_buffer, learning_rate, momentum, nesterov, weight_decay):
    """sgd_update's arguments. Returns (learning_rate, momentum, weight_decay) as floats."""
    check_update(variable, gradient, momentum_buffer=momentum_buffer)
    lr = _real(learning_rate, "learning_rate", 0.0, math.inf, high_open=True)
    momentum = _real(momentum, "momentum", 0.0, 1.0)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"nesterov must be a bool, received nesterov={nesterov!r}")
    if momentum_buffer is None and momentum != 0:
        raise TypeError(f"momentum_buffer is required with momentum={momentum!r}: "
                        "pass an array of the variable's shape and dtype (zeros before the first step)")
    return lr, momentum, _decay(weight_decay)


def check_adam_update(variable, gradient, m, v, v_hat, learning_rate, beta_1, beta_2, epsilon, step,
                      weight_decay):
    """adam_update's arguments. Returns (learning_rate, beta_1, beta_2, epsilon, step, weight_decay)."""
    for name, a in (("m", m), ("v", v)):
        if a is None:
            raise TypeError(f"{name} is required: pass an array of the variable's shape and dtype "
                            "(zeros before the first step)")
    check_update(variable, gradient, m=m, v=v, v_hat=v_hat)
    lr = _real(learning_rate, "learning_rate", 0.0, math.inf, high_open=True)
    beta_1 = _real(beta_1, "beta_1", 0.0, 1.0, high_open=True)
    beta_2 = _real(beta_2, "beta_2", 0.0, 1.0, high_open=True)
    epsilon = _real(epsilon, "epsilon", 0.0, math.inf, high_open=True)
    if not is_int(step) or step < 1:
        raise ValueError(f"step must be an int >= 1 (the 1-based count of updates, for the bias correction), "
                         f"received step={step!r}")
    return lr, beta_1, beta_2, epsilon, int(step), _decay(weight_decay)


def check_rmsprop_update(variable, gradient, velocity, momentum_buffer, average_gradient, learning_rate, rho,
                         momentum, epsilon, weight_decay):
    """rmsprop_update's arguments. Returns (learning_rate, rho, momentum, epsilon, weight_decay)."""
    if velocity is None:
        raise TypeError("velocity is required: pass an array of the variable's shape and dtype "
                        "(zeros before the first step)")
    check_update(variable, gradient, velocity=velocity, momentum_buffer=momentum_buffer,
                 average_gradient=average_gradient)
    lr = _real(learning_rate, "learning_rate", 0.0, math.inf, high_open=True)
    rho = _real(rho, "rho", 0.0, 1.0)
    momentum = _real(momentum, "momentum", 0.0, 1.0)
    epsilon = _real(epsilon, "epsilon", 0.0, math.inf, high_open=True)
    if momentum_buffer is None and momentum != 0:
        raise TypeError(f"momentum_buffer is required with momentum={momentum!r}: pass an array of the "
                        "variable's shape and dtype (zeros before the first step)")
    return lr, rho, momentum, epsilon, _decay(weight_decay)
