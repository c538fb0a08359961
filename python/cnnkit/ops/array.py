"""Array functions a custom layer needs, named as in ``keras.ops``, each with its vector-Jacobian
product: arithmetic and comparisons, ``matmul``, reductions, elementwise math, shape functions,
indexing, ``where``/``clip``/``maximum``/``minimum``, ``cast``, ``one_hot``, ``argmax``, composed
activations (``silu``, ``gelu``, ``softplus``, ``relu6``), and Keras' names for the convolution and
pooling ops (``conv``, ``depthwise_conv``, ``max_pool``, ``average_pool``).

They run on NumPy or CuPy arrays alike (the module of the arguments) and return plain arrays for
plain arrays; on :class:`~cnnkit.ops.autodiff.Tensor` arguments they record gradients. A broadcast
operand's gradient is summed back to its shape. Integer and boolean outputs (comparisons,
``argmax``, integer ``cast``) carry no gradient: ``GradientTape.gradient`` says so when a source is
reachable only through one of them.
"""

import math
import numbers

import numpy as np

from . import _op_args
from ._op_args import is_cupy
from .autodiff import _ops, register, stop_gradient, unwrap  # noqa: F401 (stop_gradient is public here)

__all__ = [
    "add", "subtract", "multiply", "divide", "true_divide", "negative", "power", "square", "sqrt", "exp",
    "log", "log1p", "expm1", "abs", "absolute", "sign", "maximum", "minimum", "where", "clip", "matmul",
    "sum", "mean", "max", "min", "var", "std", "reshape", "transpose", "expand_dims", "squeeze",
    "concatenate", "stack", "split", "getitem", "broadcast_to", "cast", "one_hot", "argmax", "argmin",
    "equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "relu6", "silu", "swish",
    "gelu", "softplus", "conv", "depthwise_conv", "max_pool", "average_pool", "stop_gradient",
    "zeros_like", "ones_like",
]


def _xp(*values):
    for v in values:
        if is_cupy(v):
            import cupy

            return cupy
        if type(v) in (list, tuple):
            for u in v:
                if is_cupy(u):
                    import cupy

                    return cupy
    return np


def _arr(xp, v):
    """v as an array of module xp; Python numbers stay numbers (so float32 * 0.5 stays float32)."""
    if isinstance(v, numbers.Number) or (hasattr(v, "shape") and hasattr(v, "dtype")):
        return v
    if not isinstance(v, (list, tuple)) and not hasattr(v, "__array__") and not hasattr(v, "__dlpack__"):
        raise TypeError(f"cnnkit.ops takes NumPy or CuPy arrays, Tensors, Variables, numbers or lists of numbers; "
                        f"received {type(v).__name__}")
    return xp.asarray(v)


def _unbroadcast(g, shape):
    """g summed over the axes broadcasting added or stretched, to ``shape``."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _shape(v):
    return tuple(getattr(v, "shape", ()))


def _is_float(v):
    return getattr(v, "dtype", np.dtype(float)).kind in "fc" or isinstance(v, float)


# ----------------------------------------------------------------------------------------------------
# elementwise arithmetic


def _binary(name, fn, grad1, grad2, keep=None):
    """A broadcasting binary op; grad1/grad2(g, out, x1, x2) give the unreduced gradients; ``keep``:
    the operands its VJP reads (None: both)."""

    def raw(x1, x2):
        xp = _xp(x1, x2)
        return fn(xp, _arr(xp, x1), _arr(xp, x2))

    def vjp(g, out, a, needs):
        xp = _xp(g)
        x1, x2 = _arr(xp, a["x1"]), _arr(xp, a["x2"])
        res = {}
        if needs["x1"]:
            res["x1"] = _unbroadcast(xp.broadcast_to(grad1(xp, g, out, x1, x2), g.shape), _shape(x1))
        if needs["x2"]:
            res["x2"] = _unbroadcast(xp.broadcast_to(grad2(xp, g, out, x1, x2), g.shape), _shape(x2))
        return res

    raw.__name__ = name
    raw.__doc__ = f"Elementwise {name} of x1 and x2 (broadcasting), as keras.ops.{name}."
    return register(name, raw, ("x1", "x2"), vjp, keep=keep)


add = _binary("add", lambda xp, a, b: a + b, lambda xp, g, y, a, b: g, lambda xp, g, y, a, b: g, keep=())
subtract = _binary("subtract", lambda xp, a, b: a - b, lambda xp, g, y, a, b: g, lambda xp, g, y, a, b: -g,
                   keep=())
multiply = _binary("multiply", lambda xp, a, b: a * b, lambda xp, g, y, a, b: g * b, lambda xp, g, y, a, b: g * a)
divide = _binary("divide", lambda xp, a, b: a / b, lambda xp, g, y, a, b: g / b,
                 lambda xp, g, y, a, b: -g * y / b)
true_divide = divide


def _pow_grad2(xp, g, y, a, b):
    a = xp.asarray(a, dtype=g.dtype)
    safe = xp.where(a > 0, a, xp.ones_like(a))
    return xp.where(a > 0, g * y * xp.log(safe), xp.zeros_like(g * y))


power = _binary("power", lambda xp, a, b: a ** b, lambda xp, g, y, a, b: g * b * a ** (b - 1), _pow_grad2)
maximum = _binary("maximum", lambda xp, a, b: xp.maximum(a, b),
                  lambda xp, g, y, a, b: g * ((a > b) + 0.5 * (a == b)).astype(g.dtype),
                  lambda xp, g, y, a, b: g * ((b > a) + 0.5 * (a == b)).astype(g.dtype))
minimum = _binary("minimum", lambda xp, a, b: xp.minimum(a, b),
                  lambda xp, g, y, a, b: g * ((a < b) + 0.5 * (a == b)).astype(g.dtype),
                  lambda xp, g, y, a, b: g * ((b < a) + 0.5 * (a == b)).astype(g.dtype))


def _unary(name, fn, grad, doc, keep=None):
    """An elementwise op; grad(xp, g, out, x) is its VJP (``keep=()``: it reads only the output)."""

    def raw(x):
        xp = _xp(x)
        return fn(xp, _arr(xp, x))

    def vjp(g, out, a, needs):
        xp = _xp(g)
        return {"x": grad(xp, g, out, _arr(xp, a["x"]))}

    raw.__name__ = name
    raw.__doc__ = doc
    return register(name, raw, ("x",), vjp, keep=keep)


negative = _unary("negative", lambda xp, x: -x, lambda xp, g, y, x: -g, "-x elementwise.", keep=())
square = _unary("square", lambda xp, x: x * x, lambda xp, g, y, x: 2 * g * x, "x * x elementwise.")
sqrt = _unary("sqrt", lambda xp, x: xp.sqrt(x), lambda xp, g, y, x: g / (2 * y), "Square root elementwise.",
              keep=())
exp = _unary("exp", lambda xp, x: xp.exp(x), lambda xp, g, y, x: g * y, "e ** x elementwise.", keep=())
log = _unary("log", lambda xp, x: xp.log(x), lambda xp, g, y, x: g / x, "Natural logarithm elementwise.")
log1p = _unary("log1p", lambda xp, x: xp.log1p(x), lambda xp, g, y, x: g / (1 + x), "log(1 + x) elementwise.")
expm1 = _unary("expm1", lambda xp, x: xp.expm1(x), lambda xp, g, y, x: g * (y + 1), "exp(x) - 1 elementwise.",
               keep=())
abs = _unary("abs", lambda xp, x: xp.abs(x), lambda xp, g, y, x: g * xp.sign(x),
             "|x| elementwise (gradient sign(x), 0 at 0).")
absolute = abs
sign = _unary("sign", lambda xp, x: xp.sign(x), lambda xp, g, y, x: xp.zeros_like(g),
              "sign(x) elementwise (gradient 0).", keep=())


def silu(x):
    """x * sigmoid(x) (Keras' silu / swish)."""
    return multiply(x, _ops().sigmoid(x))


swish = silu


def relu6(x):
    """min(max(x, 0), 6)."""
    return clip(x, 0.0, 6.0)


def softplus(x):
    """log(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|)) (no overflow)."""
    return add(maximum(x, 0.0), log1p(exp(negative(abs(x)))))


def gelu(x, approximate=True):
    """Gaussian error linear unit; ``approximate=True`` (Keras' default) is the tanh form."""
    if approximate:
        c = math.sqrt(2.0 / math.pi)
        inner = multiply(c, add(x, multiply(0.044715, power(x, 3.0))))
        return multiply(multiply(0.5, x), add(1.0, _ops().tanh(inner)))
    return _gelu_exact(x)


def _erf(xp):
    if xp is np:
        return np.vectorize(math.erf, otypes=[np.float64])
    import cupyx.scipy.special

    return cupyx.scipy.special.erf


def _gelu_exact_raw(x):
    erf = _erf(_xp(x))
    return (0.5 * x * (1 + erf(x / math.sqrt(2)))).astype(x.dtype)


def _gelu_exact_vjp(g, out, a, needs):
    x = a["x"]
    xp = _xp(x)
    erf = _erf(xp)
    cdf = 0.5 * (1 + erf(x / math.sqrt(2)))
    pdf = xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return {"x": (g * (cdf + x * pdf)).astype(x.dtype)}


_gelu_exact = register("gelu", _gelu_exact_raw, ("x",), _gelu_exact_vjp)




# ----------------------------------------------------------------------------------------------------
# where / clip / matmul


def _where_raw(condition, x1=None, x2=None):
    xp = _xp(condition, x1, x2)
    if x1 is None and x2 is None:
        return xp.nonzero(condition)
    if x1 is None or x2 is None:
        raise ValueError("where(condition, x1, x2) needs both x1 and x2 (or neither)")
    return xp.where(_arr(xp, condition), _arr(xp, x1), _arr(xp, x2))


def _where_vjp(g, out, a, needs):
    xp = _xp(g)
    c = _arr(xp, a["condition"]).astype(bool)
    zero = xp.zeros((), g.dtype)
    res = {}
    if needs["x1"]:
        res["x1"] = _unbroadcast(xp.where(c, g, zero), _shape(a["x1"]))
    if needs["x2"]:
        res["x2"] = _unbroadcast(xp.where(c, zero, g), _shape(a["x2"]))
    return res


where = register("where", _where_raw, ("x1", "x2"), _where_vjp)
where.__doc__ = "x1 where condition holds, else x2 (broadcasting); the condition carries no gradient."


def _clip_raw(x, x_min, x_max):
    xp = _xp(x)
    return xp.clip(_arr(xp, x), x_min, x_max)


def _clip_vjp(g, out, a, needs):
    xp = _xp(g)
    x = _arr(xp, a["x"])
    inside = xp.ones(x.shape, bool)
    if a["x_min"] is not None:
        inside &= x >= a["x_min"]
    if a["x_max"] is not None:
        inside &= x <= a["x_max"]
    return {"x": g * inside.astype(g.dtype)}


clip = register("clip", _clip_raw, ("x",), _clip_vjp)
clip.__doc__ = "x limited to [x_min, x_max]; the gradient passes where x is inside (bounds included)."


def _matmul_raw(x1, x2):
    xp = _xp(x1, x2)
    return xp.matmul(_arr(xp, x1), _arr(xp, x2))


def _matmul_vjp(g, out, a, needs):
    xp = _xp(g)
    x1, x2 = _arr(xp, a["x1"]), _arr(xp, a["x2"])
    a1 = x1.reshape(1, -1) if x1.ndim == 1 else x1  # 1-D operands as NumPy promotes them
    a2 = x2.reshape(-1, 1) if x2.ndim == 1 else x2
    batch = np.broadcast_shapes(a1.shape[:-2], a2.shape[:-2])
    gg = g.reshape(batch + (a1.shape[-2], a2.shape[-1]))
    res = {}
    if needs["x1"]:
        res["x1"] = _unbroadcast(xp.matmul(gg, xp.swapaxes(a2, -1, -2)), a1.shape).reshape(x1.shape)
    if needs["x2"]:
        res["x2"] = _unbroadcast(xp.matmul(xp.swapaxes(a1, -1, -2), gg), a2.shape).reshape(x2.shape)
    return res


matmul = register("matmul", _matmul_raw, ("x1", "x2"), _matmul_vjp)
matmul.__doc__ = "Matrix product with NumPy's rules (1-D operands, broadcast batch axes)."


# ----------------------------------------------------------------------------------------------------
# reductions


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axis) if ndim else ()


def _expand_reduced(g, axis, ndim, keepdims):
    if keepdims:
        return g
    for a in sorted(_axes(axis, ndim)):
        g = _xp(g).expand_dims(g, a)
    return g


def _reduce(function, x, axis, keepdims):
    xp = _xp(x)
    return getattr(xp, function)(_arr(xp, x), axis=axis, keepdims=keepdims)


def _spread(g, a):
    """g (the gradient of a reduction of a["x"]) broadcast back over the reduced axes."""
    x = a["x"]
    return _xp(g).broadcast_to(_expand_reduced(g, a["axis"], x.ndim, a["keepdims"]), x.shape)


def _sum_raw(x, axis=None, keepdims=False):
    return _reduce("sum", x, axis, keepdims)


def _sum_vjp(g, out, a, needs):
    return {"x": _spread(g, a).copy()}


sum = register("sum", _sum_raw, ("x",), _sum_vjp, keep=())
sum.__doc__ = "Sum over axis (all axes by default)."


def _count(x, axis):
    n = 1
    for ax in _axes(axis, x.ndim):
        n *= x.shape[ax]
    return n


def _mean_raw(x, axis=None, keepdims=False):
    return _reduce("mean", x, axis, keepdims)


def _mean_vjp(g, out, a, needs):
    return {"x": (_spread(g, a) / _count(a["x"], a["axis"])).astype(a["x"].dtype)}


mean = register("mean", _mean_raw, ("x",), _mean_vjp, keep=())
mean.__doc__ = "Mean over axis (all axes by default)."


def _extreme(name, reduce):
    def raw(x, axis=None, keepdims=False):
        return _reduce(reduce, x, axis, keepdims)

    def vjp(g, out, a, needs):
        x = a["x"]
        y = _expand_reduced(out, a["axis"], x.ndim, a["keepdims"])
        g = _expand_reduced(g, a["axis"], x.ndim, a["keepdims"])
        hit = (x == y).astype(x.dtype)
        # ties share the gradient equally, as in PyTorch's amax and TensorFlow's reduce_max
        return {"x": g * hit / hit.sum(axis=_axes(a["axis"], x.ndim), keepdims=True)}

    raw.__name__ = name
    raw.__doc__ = f"{reduce} over axis (all axes by default); tied extremes share the gradient."
    return register(name, raw, ("x",), vjp)


max = _extreme("max", "max")
min = _extreme("min", "min")


def var(x, axis=None, keepdims=False):
    """Population variance over axis (Keras' ops.var)."""
    m = mean(x, axis=axis, keepdims=True)
    return mean(square(subtract(x, m)), axis=axis, keepdims=keepdims)


def std(x, axis=None, keepdims=False):
    """Population standard deviation over axis."""
    return sqrt(var(x, axis=axis, keepdims=keepdims))


# ----------------------------------------------------------------------------------------------------
# shapes


def _via(function, x, *args):
    """xp.function(x, *args) in x's array module."""
    xp = _xp(x)
    return getattr(xp, function)(_arr(xp, x), *args)


def _reshape_vjp(g, out, a, needs):
    return {"x": g.reshape(a["x"].shape)}


def _reshape_raw(x, newshape):
    return _via("reshape", x, newshape)


reshape = register("reshape", _reshape_raw, ("x",), _reshape_vjp, keep=())
reshape.__doc__ = "x with a new shape (one axis may be -1)."


def _transpose_raw(x, axes=None):
    return _via("transpose", x, axes)


def _transpose_vjp(g, out, a, needs):
    xp = _xp(g)
    axes = a["axes"]
    if axes is None:
        return {"x": xp.transpose(g)}
    axes = [ax % g.ndim for ax in axes]
    return {"x": xp.transpose(g, np.argsort(axes))}


transpose = register("transpose", _transpose_raw, ("x",), _transpose_vjp, keep=())
transpose.__doc__ = "x with its axes permuted (reversed by default)."


def _expand_dims_raw(x, axis):
    return _via("expand_dims", x, axis)


expand_dims = register("expand_dims", _expand_dims_raw, ("x",), _reshape_vjp, keep=())
expand_dims.__doc__ = "x with a new axis of size 1 at ``axis``."


def _squeeze_raw(x, axis=None):
    return _via("squeeze", x, axis)


squeeze = register("squeeze", _squeeze_raw, ("x",), _reshape_vjp, keep=())
squeeze.__doc__ = "x without its axes of size 1 (or only ``axis``)."


def _broadcast_to_raw(x, shape):
    return _via("broadcast_to", x, shape)


def _broadcast_to_vjp(g, out, a, needs):
    return {"x": _unbroadcast(g, _shape(a["x"]))}


broadcast_to = register("broadcast_to", _broadcast_to_raw, ("x",), _broadcast_to_vjp, keep=())
broadcast_to.__doc__ = "x broadcast to ``shape`` (a read-only view)."


def _concatenate_raw(xs, axis=0):
    xp = _xp(xs)
    return xp.concatenate([_arr(xp, v) for v in xs], axis=axis)


def _concatenate_vjp(g, out, a, needs):
    xs, axis = a["xs"], a["axis"]
    grads, start = [], 0
    axis = axis % g.ndim
    for v, want in zip(xs, needs["xs"]):
        n = v.shape[axis]
        if want:
            index = [slice(None)] * g.ndim
            index[axis] = slice(start, start + n)
            grads.append(g[tuple(index)])
        else:
            grads.append(None)
        start += n
    return {"xs": grads}


concatenate = register("concatenate", _concatenate_raw, ("xs",), _concatenate_vjp, keep=("axis",))
concatenate.__doc__ = "The arrays of ``xs`` joined along ``axis``."


def _stack_raw(x, axis=0):
    xp = _xp(x)
    return xp.stack([_arr(xp, v) for v in x], axis=axis)


def _stack_vjp(g, out, a, needs):
    xp = _xp(g)
    axis = a["axis"] % g.ndim
    return {"x": [xp.take(g, i, axis=axis) if want else None for i, want in enumerate(needs["x"])]}


stack = register("stack", _stack_raw, ("x",), _stack_vjp, keep=())
stack.__doc__ = "The arrays of ``x`` stacked along a new axis."


def split(x, indices_or_sections, axis=0):
    """x cut into pieces along ``axis`` (a number of equal sections, or the indices to cut at); each
    piece is a slice of x, so gradients flow back to x."""
    n = x.shape[axis]
    if isinstance(indices_or_sections, int):
        if indices_or_sections < 1 or n % indices_or_sections:
            raise ValueError(f"split: axis {axis} of size {n} does not divide into {indices_or_sections} equal "
                             "sections")
        step = n // indices_or_sections
        cuts = list(range(step, n, step))
    else:
        cuts = list(indices_or_sections)
    bounds = [0] + cuts + [n]
    ndim = len(x.shape)
    axis = axis % ndim
    pieces = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        index = [slice(None)] * ndim
        index[axis] = slice(lo, hi)
        pieces.append(getitem(x, tuple(index)))
    return pieces


def _basic_index(key):
    items = key if isinstance(key, tuple) else (key,)
    return all(isinstance(k, (int, np.integer, slice)) or k is None or k is Ellipsis for k in items)


def _raw_key(key):
    if isinstance(key, tuple):
        return tuple(_raw_key(k) for k in key)
    return unwrap(key)


def _getitem_raw(x, key):
    return x[_raw_key(key)]


def _getitem_vjp(g, out, a, needs):
    x, key = a["x"], _raw_key(a["key"])
    xp = _xp(g)
    gx = xp.zeros(x.shape, g.dtype)
    if _basic_index(key):
        gx[key] = g
    elif xp is np:
        np.add.at(gx, key, g)
    else:
        import cupyx

        cupyx.scatter_add(gx, key, g)
    return {"x": gx}


getitem = register("getitem", _getitem_raw, ("x",), _getitem_vjp, keep=("key",))
getitem.__doc__ = "x[key] (``tensor[key]``): basic and advanced indexing; repeated indices sum their gradients."


def _cast_raw(x, dtype):
    xp = _xp(x)
    return _arr(xp, x).astype(dtype)


def _cast_vjp(g, out, a, needs):
    return {"x": g.astype(a["x"].dtype)}


_cast_float = register("cast", _cast_raw, ("x",), _cast_vjp, keep=())
_cast_int = register("cast", _cast_raw, ("x",), None)


def cast(x, dtype):
    """x converted to dtype; a cast to an integer or boolean dtype is not differentiable."""
    return (_cast_float if np.dtype(dtype).kind == "f" else _cast_int)(x, dtype)


# ----------------------------------------------------------------------------------------------------
# non-differentiable: comparisons, argmax, one_hot


def _nondiff(name, fn, doc, params=("x",)):
    fn.__name__ = name
    fn.__doc__ = doc
    return register(name, fn, params, None)


def _compare(name, ufunc):
    def raw(x1, x2):
        xp = _xp(x1, x2)
        return getattr(xp, ufunc)(_arr(xp, x1), _arr(xp, x2))

    return _nondiff(name, raw, f"x1 {ufunc} x2 elementwise, as booleans (no gradient).", ("x1", "x2"))


equal = _compare("equal", "equal")
not_equal = _compare("not_equal", "not_equal")
greater = _compare("greater", "greater")
greater_equal = _compare("greater_equal", "greater_equal")
less = _compare("less", "less")
less_equal = _compare("less_equal", "less_equal")


def _argmax_raw(x, axis=None, keepdims=False):
    xp = _xp(x)
    return xp.argmax(_arr(xp, x), axis=axis, keepdims=keepdims)


def _argmin_raw(x, axis=None, keepdims=False):
    xp = _xp(x)
    return xp.argmin(_arr(xp, x), axis=axis, keepdims=keepdims)


argmax = _nondiff("argmax", _argmax_raw, "Index of the largest value along axis (no gradient).")
argmin = _nondiff("argmin", _argmin_raw, "Index of the smallest value along axis (no gradient).")


def _one_hot_raw(x, num_classes, axis=-1, dtype="float32"):
    xp = _xp(x)
    x = _arr(xp, x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"one_hot: x must hold integer class ids, received dtype {x.dtype}")
    out = (xp.expand_dims(x, -1) == xp.arange(num_classes)).astype(dtype)
    return xp.moveaxis(out, -1, axis) if axis != -1 else out


one_hot = _nondiff("one_hot", _one_hot_raw, "x's integer class ids as one-hot rows (no gradient to x).")


def zeros_like(x, dtype=None):
    """Zeros of x's shape (and dtype), a constant."""
    x = getattr(x, "value", x)
    return _xp(x).zeros_like(x, dtype=dtype)


def ones_like(x, dtype=None):
    """Ones of x's shape (and dtype), a constant."""
    x = getattr(x, "value", x)
    return _xp(x).ones_like(x, dtype=dtype)


# ----------------------------------------------------------------------------------------------------
# Keras' names for convolution and pooling


def _channels_last(data_format, who):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{who}: cnnkit is channels_last (NHWC) only, received data_format={data_format!r}")


def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """keras.ops.conv for 2-D inputs: NHWC inputs, HWIO kernel (cnnkit.ops.conv2d)."""
    _channels_last(data_format, "conv")
    return _ops().conv2d(inputs, kernel, None, strides, padding, dilation_rate)


def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """keras.ops.depthwise_conv: each input channel convolved with its own ``depth_multiplier``
    filters; kernel (kh, kw, C, M), output channels C * M (channel c's filters at c*M..c*M+M-1).
    Built from ``im2col``, a batched ``matmul`` and reshapes, all differentiable."""
    _channels_last(data_format, "depthwise_conv")
    ops = _ops()
    if len(kernel.shape) != 4 or len(inputs.shape) != 4:
        raise ValueError(f"depthwise_conv: inputs must be (N, H, W, C) and kernel (kh, kw, C, M), received "
                         f"{tuple(inputs.shape)} and {tuple(kernel.shape)}")
    kh, kw, c, m = kernel.shape
    if inputs.shape[-1] != c:
        raise ValueError(f"depthwise_conv: inputs have {inputs.shape[-1]} channels, kernel {tuple(kernel.shape)} "
                         f"expects {c}")
    raw = getattr(inputs, "value", inputs)
    _, (oh, ow) = _op_args.check_im2col(raw, (kh, kw), strides, padding, dilation_rate)
    n = inputs.shape[0]
    cols = ops.im2col(inputs, (kh, kw), strides, padding, dilation_rate)  # (N*OH*OW, kh*kw*C)
    patches = transpose(reshape(cols, (n * oh * ow, kh * kw, c)), (2, 0, 1))  # (C, P, kh*kw)
    filters = transpose(reshape(kernel, (kh * kw, c, m)), (1, 0, 2))  # (C, kh*kw, M)
    out = matmul(patches, filters)  # (C, P, M)
    return reshape(transpose(out, (1, 0, 2)), (n, oh, ow, c * m))


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """keras.ops.max_pool for 2-D NHWC inputs (cnnkit.ops.max_pool2d)."""
    _channels_last(data_format, "max_pool")
    return _ops().max_pool2d(inputs, pool_size, strides, padding)


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """keras.ops.average_pool for 2-D NHWC inputs (cnnkit.ops.avg_pool2d)."""
    _channels_last(data_format, "average_pool")
    return _ops().avg_pool2d(inputs, pool_size, strides, padding)

