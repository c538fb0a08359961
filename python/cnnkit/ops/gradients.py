"""The vector-Jacobian product of every native op of cnnkit.ops, registered once.

Each entry names the op's differentiable parameters and its VJP, written with the op's own
``<op>_backward`` kernels (from the saved state where the forward can return it: the max-pool
argmax, the drawn stochastic-pool cells, the batch-norm statistics, the fused cross-entropy
gradient). ``wrap(namespace)`` replaces each function of the ``cnnkit.ops`` namespace by its
registered form (:func:`cnnkit.ops.autodiff.register`), which on plain arrays is the function itself
after one scan of the arguments. The ``_backward`` kernels and the in-place optimizer updates are
registered as not differentiable (their gradients, second order, are not provided).
"""

import inspect

from . import convolution as conv, cross_entropy, linear, nonlinear, norm, optimizer, pool
from .autodiff import register


def _elementwise(name, fn, backward, from_output):
    """An activation: its VJP from the output (``*_backward_from_output``) or from x."""

    def vjp(g, y, a, needs):
        if from_output:
            return {"x": backward(g, y, **({"axis": a["axis"]} if "axis" in a else {}))}
        extra = {k: a[k] for k in ("alpha",) if k in a}
        return {"x": backward(g, a["x"], **extra)}

    def forward(a):
        if a.get("out") is not None:
            raise ValueError(f"ops.{name}: out= overwrites an array a recorded computation may need; call it "
                             "without out= inside GradientTape or a layer's call")
        y = fn(**a)
        return y, y

    return register(name, fn, ("x",), vjp, forward, keep=() if from_output else None)


def _conv2d_vjp(g, y, a, needs):
    if a["activation"] == "relu":
        g = nonlinear.relu_backward_from_output(g, y)
    dx, dw, db = conv.conv2d_backward(g, a["x"], a["w"], a["b"], a["strides"], a["padding"], a["dilation"],
                                      need_dx=needs["x"])
    return {"x": dx, "w": dw, "b": db}


def _dense_vjp(g, y, a, needs):
    if a["activation"] == "relu":
        g = nonlinear.relu_backward_from_output(g, y)
    dx, dw, db = linear.dense_backward(g, a["x"], a["w"], a["b"], need_dx=needs["x"])
    return {"x": dx, "w": dw, "b": db}


def _im2col_vjp(g, col, a, needs):
    return {"x": conv.col2im(g, a["x"].shape, a["kernel_size"], a["strides"], a["padding"], a["dilation"])}


def _col2im_vjp(g, x, a, needs):
    return {"col": conv.im2col(g, a["kernel_size"], a["strides"], a["padding"], a["dilation"])}


def _dropout_vjp(g, y, a, needs):
    return {"x": nonlinear.dropout_backward(g, a["x"], a["rate"], a["seed"], a["training"])}


def _batch_norm_forward(a):
    if not a["training"]:
        y = norm.batch_norm(**a)
        return y, None
    user_stats = a["return_stats"]
    y, mean, invstd = norm.batch_norm(**dict(a, return_stats=True))
    return ((y, mean, invstd) if user_stats else y), (mean, invstd)


def _batch_norm_vjp(g, stats, a, needs):
    if stats is not None:
        dx, dgamma, dbeta = norm.batch_norm_backward_from_stats(g, a["x"], a["gamma"], *stats)
    else:
        dx, dgamma, dbeta = norm.batch_norm_backward(g, a["x"], a["gamma"], a["beta"], a["moving_mean"],
                                                     a["moving_var"], False, a["momentum"], a["epsilon"])
    return {"x": dx, "gamma": dgamma if a["gamma"] is not None else None,
            "beta": dbeta if a["beta"] is not None else None}


def _with_saved(fn, flag):
    """A forward that asks ``fn`` for its saved state (``flag=True``) and returns what the caller
    asked for, keeping the state for the VJP."""

    def forward(a):
        user = a[flag]
        y, state = fn(**dict(a, **{flag: True}))
        return ((y, state) if user else y), (state, a["x"].shape)

    return forward


def _max_pool2d_vjp(g, ctx, a, needs):
    argmax, shape = ctx
    return {"x": pool.max_pool2d_backward_from_argmax(g, argmax, shape, a["pool_size"], a["strides"],
                                                       a["padding"])}


def _global_max_pool2d_vjp(g, ctx, a, needs):
    argmax, shape = ctx
    return {"x": pool.global_max_pool2d_backward_from_argmax(g, argmax, shape)}


def _avg_pool2d_vjp(g, y, a, needs):
    return {"x": pool.avg_pool2d_backward(g, a["x"], a["pool_size"], a["strides"], a["padding"])}


def _global_avg_pool2d_vjp(g, y, a, needs):
    return {"x": pool.global_avg_pool2d_backward(g, a["x"])}


def _stochastic_forward(a):
    if not a["training"]:
        return pool.stochastic_pool2d(**a), None
    user = a["return_index"]
    y, index = pool.stochastic_pool2d(**dict(a, return_index=True))
    return ((y, index) if user else y), index


def _stochastic_vjp(g, index, a, needs):
    if index is not None:
        return {"x": pool.stochastic_pool2d_backward_from_index(g, index, a["x"].shape, a["pool_size"],
                                                                 a["strides"], a["padding"])}
    return {"x": pool.stochastic_pool2d_backward(g, a["x"], a["pool_size"], a["strides"], a["padding"], False,
                                                 a["seed"])}


def _xent_forward(a):
    loss, d = cross_entropy.softmax_cross_entropy(a["logits"], a["labels"], return_grad=True)
    return ((loss, d) if a["return_grad"] else loss), d


def _xent_vjp(g, d, a, needs):
    return {"logits": d * g}


def _table():
    t = {
        "im2col": (conv.im2col, ("x",), _im2col_vjp, None),
        "col2im": (conv.col2im, ("col",), _col2im_vjp, None),
        "conv2d": (conv.conv2d, ("x", "w", "b"), _conv2d_vjp, None),
        "dense": (linear.dense, ("x", "w", "b"), _dense_vjp, None),
        "dropout": (nonlinear.dropout, ("x",), _dropout_vjp, None),
        "batch_norm": (norm.batch_norm, ("x", "gamma", "beta"), _batch_norm_vjp, _batch_norm_forward),
        "max_pool2d": (pool.max_pool2d, ("x",), _max_pool2d_vjp, _with_saved(pool.max_pool2d, "return_argmax")),
        "global_max_pool2d": (pool.global_max_pool2d, ("x",), _global_max_pool2d_vjp,
                              _with_saved(pool.global_max_pool2d, "return_argmax")),
        "avg_pool2d": (pool.avg_pool2d, ("x",), _avg_pool2d_vjp, None),
        "global_avg_pool2d": (pool.global_avg_pool2d, ("x",), _global_avg_pool2d_vjp, None),
        "stochastic_pool2d": (pool.stochastic_pool2d, ("x",), _stochastic_vjp, _stochastic_forward),
        "softmax_cross_entropy": (cross_entropy.softmax_cross_entropy, ("logits",), _xent_vjp, _xent_forward),
    }
    return t


_ACTIVATIONS = {  # name: (backward, from its output)
    "relu": ("relu_backward_from_output", True),
    "sigmoid": ("sigmoid_backward_from_output", True),
    "tanh": ("tanh_backward_from_output", True),
    "softmax": ("softmax_backward_from_output", True),
    "log_softmax": ("log_softmax_backward_from_output", True),
    "leaky_relu": ("leaky_relu_backward", False),
    "elu": ("elu_backward", False),
}


def wrap(namespace):
    """Replace the ops of ``namespace`` (cnnkit.ops' globals) by their registered forms."""
    for name, (fn, diff, vjp, forward) in _table().items():
        namespace[name] = register(name, fn, diff, vjp, forward)
    for name, (backward, from_output) in _ACTIVATIONS.items():
        namespace[name] = _elementwise(name, getattr(nonlinear, name), getattr(nonlinear, backward), from_output)
    # second-order kernels and in-place updates: callable on tensors, not differentiable
    for module in (conv, cross_entropy, linear, nonlinear, norm, pool):
        for name in module.__all__:
            if "_backward" in name:
                fn = getattr(module, name)
                first = next(iter(inspect.signature(fn).parameters))
                namespace[name] = register(name, fn, (first,), None)
    for name in optimizer.__all__:
        namespace[name] = register(name, getattr(optimizer, name), (), None)
