"""Automatic differentiation (cnnkit.ops.autodiff): every differentiable op's gradient against
float64 central finite differences (broadcasting, indexing, reductions over each axis, the native
ops and Keras' names for them), GradientTape's semantics (persistent tapes, watching, unconnected
and non-differentiable sources, stop_gradient, stop_recording, second order refused), and the fast
path: plain arrays in, plain arrays out."""

import numpy as np
import pytest

from cnnkit import GradientTape, ops
from cnnkit.ops import Tensor
from cnnkit.variables import Variable
from helpers import rel_error, to_numpy


def _grad_check(xp, f, arrays, tol=1e-6, h=1e-6, unconnected_ok=False):
    """f(*tensors) -> Tensor: the tape's gradient of sum(f * w), w random, w.r.t. every array
    against central differences of the same sum on plain arrays (with unconnected_ok, an input f
    does not read may get None, and then its finite differences must be 0)."""
    arrays = [xp.asarray(a) for a in arrays]
    out = f(*arrays)
    w = xp.asarray(np.random.default_rng(5).standard_normal(np.shape(to_numpy(out))))
    with GradientTape() as tape:
        ts = [tape.watch(a) for a in arrays]
        y = ops.sum(f(*ts) * w)
    assert isinstance(y, Tensor)
    grads = tape.gradient(y, arrays)
    for i, (a, g) in enumerate(zip(arrays, grads)):
        assert g is not None or unconnected_ok, f"input {i} got no gradient"
        if g is None:
            g = xp.zeros_like(a)
        assert g.shape == a.shape and g.dtype == a.dtype
        host = to_numpy(a).copy()
        num = np.zeros_like(host)
        for j in range(host.size):
            idx = np.unravel_index(j, host.shape)
            saved = host[idx]
            vals = []
            for step in (h, -h):
                host[idx] = saved + step
                args = list(arrays)
                args[i] = xp.asarray(host)
                vals.append(float(to_numpy(ops.sum(f(*args) * w))))
            host[idx] = saved
            num[idx] = (vals[0] - vals[1]) / (2 * h)
        err = rel_error(to_numpy(g), num)
        assert err <= tol, f"input {i}: relative error {err:.2e} > {tol:.0e}"


def _r(rng, *shape, low=None):
    a = rng.standard_normal(shape)
    if low is not None:
        a = np.abs(a) + low
    return a


# (name, function of tensors, input shapes, positive inputs)
ELEMENTWISE = [
    ("add_broadcast", lambda a, b: a + b, [(3, 1, 4), (5, 4)], False),
    ("sub_scalar", lambda a: 2.5 - a, [(4, 3)], False),
    ("mul_broadcast", lambda a, b: a * b, [(2, 3, 1), (1, 4)], False),
    ("rmul_array", lambda a, b: ops.multiply(a, b), [(6,), (3, 6)], False),
    ("div", lambda a, b: a / b, [(3, 4), (4,)], True),
    ("rdiv", lambda a: 1.5 / a, [(5,)], True),
    ("pow_const", lambda a: a ** 3.0, [(2, 5)], False),
    ("pow_both", lambda a, b: ops.power(a, b), [(3, 2), (3, 2)], True),
    ("neg_abs", lambda a: -abs(a), [(7,)], False),
    ("square_sqrt", lambda a: ops.sqrt(ops.square(a) + 1.0), [(4, 4)], False),
    ("exp_log", lambda a: ops.log(a) + ops.exp(a * 0.3), [(5, 2)], True),
    ("log1p_expm1", lambda a: ops.log1p(a) * ops.expm1(-a), [(6,)], True),
    ("maximum_minimum", lambda a, b: ops.maximum(a, b) * 2 + ops.minimum(a, b), [(4, 3), (3,)], False),
    ("where", lambda a, b: ops.where(a > 0, a * 3, b), [(5, 3), (5, 3)], False),
    ("clip", lambda a: ops.clip(a, -0.5, 0.7), [(12,)], False),
    ("sign_is_flat", lambda a: ops.sign(a) * a, [(6,)], False),
    ("var_std", lambda a: ops.var(a, axis=0) + ops.std(a, axis=1).sum(), [(4, 5)], False),
]


@pytest.mark.parametrize("name,f,shapes,positive", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
def test_elementwise_gradients(xp, rng, name, f, shapes, positive):
    _grad_check(xp, f, [_r(rng, *s, low=0.5 if positive else None) for s in shapes])


MATMUL = [((4, 3), (3, 5)), ((2, 4, 3), (3, 5)), ((3,), (3, 5)), ((4, 3), (3,)), ((3,), (3,)),
          ((2, 1, 4, 3), (3, 3, 2)), ((1,), (1, 1))]


@pytest.mark.parametrize("s1,s2", MATMUL)
def test_matmul_gradients(xp, rng, s1, s2):
    _grad_check(xp, lambda a, b: a @ b, [_r(rng, *s1), _r(rng, *s2)])


AXES = [None, 0, 1, -1, (0, 2)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_reduction_gradients(xp, rng, op, axis, keepdims):
    _grad_check(xp, lambda a: getattr(ops, op)(a, axis=axis, keepdims=keepdims), [_r(rng, 3, 4, 5)])


def test_tied_maximum_shares_the_gradient(xp):
    x = xp.asarray(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]))
    with GradientTape() as tape:
        t = tape.watch(x)
        y = ops.sum(ops.max(t, axis=1))
    assert np.array_equal(to_numpy(tape.gradient(y, x)), [[0, 0.5, 0.5], [0.5, 0, 0.5]])


SHAPES = [
    ("reshape", lambda a: ops.reshape(a, (4, -1)) * 2, (2, 3, 4)),
    ("transpose", lambda a: ops.transpose(a, (2, 0, 1)) ** 2.0, (2, 3, 4)),
    ("T", lambda a: a.T * ops.reshape(a, (4, 3)), (3, 4)),
    ("expand_squeeze", lambda a: ops.squeeze(ops.expand_dims(a, 1) * 3, 1), (3, 5)),
    ("broadcast_to", None, (3, 1)),
    ("concatenate", None, None),
    ("stack", None, None),
    ("split", lambda a: ops.split(a, 3, axis=1)[1] * ops.split(a, [1, 4], axis=1)[2], (2, 6)),
    ("getitem_basic", lambda a: a[1:, ::2, None] * a[0, 1], (3, 5)),
    ("getitem_repeated", lambda a: a[np.array([0, 2, 0, 0])] * 2.0, (3, 4)),
    ("getitem_mask", None, (4, 5)),
    ("getitem_ellipsis", lambda a: a[..., 1] + a[:, None, 0].sum(), (2, 3, 4)),
    ("cast_float", lambda a: ops.cast(ops.cast(a, "float64") * 2.0, "float64"), (5,)),
    ("iterate", lambda a: ops.stack([row * i for i, row in enumerate(a)]), (3, 2)),
]


@pytest.mark.parametrize("name,f,shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_shape_and_indexing_gradients(xp, rng, name, f, shape):
    if name == "concatenate":
        _grad_check(xp, lambda a, b: ops.concatenate([a, b * 2, a], axis=1), [_r(rng, 2, 3), _r(rng, 2, 1)])
    elif name == "stack":
        _grad_check(xp, lambda a, b: ops.stack([a, b], axis=1) ** 2.0, [_r(rng, 3, 2), _r(rng, 3, 2)])
    else:
        if name == "broadcast_to":
            f = lambda a: ops.broadcast_to(a, (4, 3, 2)) * xp.arange(24.0).reshape(4, 3, 2)  # noqa: E731
        elif name == "getitem_mask":
            mask = rng.standard_normal(shape) > 0
            f = lambda a: a[xp.asarray(mask)] * 3.0  # noqa: E731
        _grad_check(xp, f, [_r(rng, *shape)])


ACTIVATIONS = ["relu", "sigmoid", "tanh", "elu", "leaky_relu", "silu", "softplus", "relu6", "gelu", "gelu_exact",
               "softmax", "softmax0", "log_softmax"]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradients(xp, rng, name):
    if name == "gelu_exact" and xp is not np:
        pytest.importorskip("cupyx.scipy.special")
    fns = {"softmax0": lambda a: ops.softmax(a, axis=0), "gelu_exact": lambda a: ops.gelu(a, approximate=False),
           "relu6": lambda a: ops.relu6(a * 4)}
    f = fns[name] if name in fns else getattr(ops, name)
    _grad_check(xp, f, [_r(rng, 4, 7) * 2])


@pytest.mark.parametrize("padding,strides,dilation", [("valid", 1, 1), ("same", 2, 1), ("same", 1, 2),
                                                      ("valid", (2, 1), 1)])
def test_convolution_gradients(xp, rng, padding, strides, dilation):
    def f(x, w, b):
        return ops.conv2d(x, w, b, strides=strides, padding=padding, dilation=dilation, activation="relu")

    _grad_check(xp, f, [_r(rng, 2, 7, 5, 3), _r(rng, 3, 2, 3, 4), _r(rng, 4)])
    _grad_check(xp, lambda x, w: ops.conv(x, w, strides, padding, dilation_rate=dilation),
                [_r(rng, 1, 6, 5, 2), _r(rng, 3, 3, 2, 3)])


@pytest.mark.parametrize("padding,strides,multiplier", [("valid", 1, 1), ("same", 2, 2), ("same", 1, 3)])
def test_depthwise_conv_matches_per_channel_convolutions_and_its_gradient(xp, rng, padding, strides, multiplier):
    x, w = _r(rng, 2, 7, 6, 3), _r(rng, 3, 3, 3, multiplier)
    y = to_numpy(ops.depthwise_conv(xp.asarray(x), xp.asarray(w), strides, padding))
    for c in range(3):
        ref = ops.reference.conv2d(x[..., c:c + 1], w[:, :, c:c + 1, :], None, strides, padding)
        assert rel_error(y[..., c * multiplier:(c + 1) * multiplier], ref) < 1e-12
    _grad_check(xp, lambda a, k: ops.depthwise_conv(a, k, strides, padding), [x, w])


def test_dense_pool_norm_loss_im2col_gradients(xp, rng):
    _grad_check(xp, lambda x, w, b: ops.dense(x, w, b, activation="relu"), [_r(rng, 5, 4), _r(rng, 4, 3), _r(rng, 3)])
    _grad_check(xp, lambda x: ops.max_pool(x, 2, padding="same"), [_r(rng, 2, 5, 5, 3)])
    _grad_check(xp, lambda x: ops.average_pool(x, 3, strides=2), [_r(rng, 2, 7, 6, 2)])
    _grad_check(xp, lambda x: ops.global_max_pool2d(x) + ops.global_avg_pool2d(x), [_r(rng, 2, 3, 4, 5)])
    mm, mv = xp.zeros(3), xp.ones(3)
    _grad_check(xp, lambda x, g, b: ops.batch_norm(x, g, b, mm, mv, training=True), [_r(rng, 6, 2, 3), _r(rng, 3),
                                                                                     _r(rng, 3)])
    _grad_check(xp, lambda x, g, b: ops.batch_norm(x, g, b, mm + 0.1, mv + 0.5), [_r(rng, 4, 3), _r(rng, 3),
                                                                                   _r(rng, 3)])
    labels = xp.asarray(rng.integers(0, 5, 6))
    _grad_check(xp, lambda z: ops.softmax_cross_entropy(z, labels), [_r(rng, 6, 5)])
    _grad_check(xp, lambda x: ops.im2col(x, (2, 3), 1, "same") ** 2.0, [_r(rng, 1, 4, 5, 2)])
    _grad_check(xp, lambda x: ops.dropout(x, 0.4, seed=7) * x, [_r(rng, 4, 6)])
    _grad_check(xp, lambda x: ops.stochastic_pool2d(ops.relu(x) + 0.1, 2, training=True, seed=3),
                [_r(rng, 2, 4, 4, 2)])


def test_variables_are_sources_and_operands(xp, rng):
    w = Variable(xp.asarray(_r(rng, 3, 2)), "w")
    frozen = Variable(xp.asarray(_r(rng, 2)), "frozen", trainable=False)
    x = xp.asarray(_r(rng, 4, 3))
    with GradientTape() as tape:
        y = ops.sum((x @ w) * frozen + 2 * w[0])
    gw, gf = tape.gradient(y, [w, frozen])
    expect = to_numpy(x).T @ np.tile(to_numpy(frozen.value), (4, 1))
    expect[0] += 8  # w[0] broadcast over the 4 rows
    assert rel_error(to_numpy(gw), expect) < 1e-12
    assert gf is None  # not trainable and not watched
    with GradientTape() as tape:
        tape.watch(frozen)
        y = ops.sum(x @ w * frozen)
    assert tape.gradient(y, frozen) is not None
    assert tape.watched_variables() == [frozen]


def test_plain_arrays_take_the_fast_path_and_stay_plain(xp, rng):
    a = xp.asarray(_r(rng, 3, 4))
    for out in (ops.add(a, 1.0), ops.sum(a, axis=0), ops.relu(a), ops.conv2d(a[None, :, :, None], a[:2, :2, None, None])):
        assert type(out) is type(a)
    assert ops.multiply(np.float32(2), np.ones(3, np.float32)).dtype == np.float32
    assert ops.multiply(np.ones(3, np.float32), 0.5).dtype == np.float32  # Python numbers keep float32


def test_tape_semantics(xp, rng):
    x = xp.asarray(_r(rng, 5))
    with GradientTape(persistent=True) as tape:
        t = tape.watch(x)
        y = ops.sum(t * t)
        z = ops.sum(ops.exp(t))
    assert rel_error(to_numpy(tape.gradient(y, x)), 2 * to_numpy(x)) < 1e-12
    assert rel_error(to_numpy(tape.gradient(z, x)), np.exp(to_numpy(x))) < 1e-12
    assert rel_error(to_numpy(tape.gradient([y, z], x)), 2 * to_numpy(x) + np.exp(to_numpy(x))) < 1e-12
    d = tape.gradient(y, {"x": x, "t": t})
    assert set(d) == {"x", "t"} and rel_error(to_numpy(d["t"]), 2 * to_numpy(x)) < 1e-12

    with GradientTape() as tape:
        t = tape.watch(x)
        y = ops.sum(t ** 3.0)
    tape.gradient(y, x)
    with pytest.raises(RuntimeError, match="persistent"):
        tape.gradient(y, x)

    # output_gradients weighs a non-scalar target; an intermediate tensor is a source too
    with GradientTape() as tape:
        t = tape.watch(x)
        mid = t * 2.0
        y = ops.square(mid)
    og = xp.asarray(_r(rng, 5))
    gx, gmid = tape.gradient(y, [x, mid], output_gradients=og)
    assert rel_error(to_numpy(gmid), 2 * to_numpy(mid.value) * to_numpy(og)) < 1e-12
    assert rel_error(to_numpy(gx), 8 * to_numpy(x) * to_numpy(og)) < 1e-12


def test_unconnected_and_non_differentiable_sources(xp, rng):
    x, other = xp.asarray(_r(rng, 4, 3)), xp.asarray(_r(rng, 3))
    with GradientTape(persistent=True) as tape:
        t, u = tape.watch(x), tape.watch(other)
        y = ops.sum(t * 2)
        picked = ops.cast(ops.argmax(u), "float64") * 1.0
    assert tape.gradient(y, other) is None  # not on the path: None, as TensorFlow
    assert np.array_equal(to_numpy(tape.gradient(y, other, unconnected_gradients="zero")), np.zeros(3))
    with pytest.raises(ValueError, match="argmax"):
        tape.gradient(picked, other)  # only path crosses argmax: said so
    with pytest.raises(ValueError, match="unconnected_gradients"):
        tape.gradient(y, x, unconnected_gradients="nan")
    assert tape.gradient(3.0, x) is None  # a constant target


def test_stop_gradient_and_stop_recording(xp, rng):
    x = xp.asarray(_r(rng, 4))
    with GradientTape(persistent=True) as tape:
        t = tape.watch(x)
        y = ops.sum(t * ops.stop_gradient(t))
        with tape.stop_recording():
            z = ops.sum(t * t)
    assert rel_error(to_numpy(tape.gradient(y, x)), to_numpy(x)) < 1e-12
    assert isinstance(z, Tensor) and not z.requires_grad
    assert tape.gradient(z, x) is None


def test_second_order_is_refused(xp, rng):
    x = xp.asarray(_r(rng, 3))
    with GradientTape() as outer:
        outer.watch(x)
        with GradientTape() as inner:
            t = inner.watch(x)
            y = ops.sum(t ** 3.0)
        with pytest.raises(NotImplementedError, match="second-order"):
            inner.gradient(y, x)
        with outer.stop_recording():
            g = inner.gradient(y, x)
    assert rel_error(to_numpy(g), 3 * to_numpy(x) ** 2) < 1e-12


def test_errors_name_the_problem(xp, rng):
    x = xp.asarray(_r(rng, 3))
    with GradientTape() as tape:
        t = tape.watch(x)
        with pytest.raises(TypeError, match="immutable"):
            t[0] = 1.0
        with pytest.raises(ValueError, match="out="):
            ops.relu(t, out=xp.empty(3))
    with pytest.raises(TypeError, match="sources"):
        tape.gradient(ops.sum(t), "x")
    with pytest.raises(ValueError, match="floating"):
        GradientTape().watch(np.arange(3))
    with pytest.raises(TypeError, match="add"):
        ops.add(Tensor(x), 1.0, 2.0)


def test_graph_is_freed_after_a_gradient(xp, rng):
    x = xp.asarray(_r(rng, 3))
    with GradientTape() as t1:
        t = t1.watch(x)
        y = ops.sum(ops.exp(t))
    t1.gradient(y, x)
    assert y.node.vjp is not None and y.node.vjp.__name__ == "_freed"
    with GradientTape() as t2:
        t2.watch(x)
        z = y * 2.0
    with pytest.raises(RuntimeError, match="freed"):
        t2.gradient(z, x)


def test_a_foreign_argument_is_named():
    with pytest.raises(TypeError, match="received str"):
        ops.add(np.ones(2), "x")
    with pytest.raises(TypeError, match="received dict"):
        ops.sum({"a": 1})


UNARY = [ops.tanh, ops.sigmoid, lambda a: ops.square(a) * 0.5, lambda a: ops.exp(-ops.abs(a)), ops.softplus,
         lambda a: ops.log1p(ops.square(a)), lambda a: -a, ops.silu]
BINARY = [ops.add, ops.subtract, ops.multiply, ops.maximum, lambda a, b: a / (1.5 + ops.square(b))]


def _random_program(prng, n_steps):
    """A random composition of ops on three broadcast-compatible inputs (4, 3), (1, 3), (4, 1):
    elementwise ops, broadcasting binary ops, reductions over a random axis (kept, so shapes stay
    compatible), slicing and transposition round trips; returns f(*tensors)."""
    steps = []
    for _ in range(n_steps):
        kind = prng.choice(["unary", "binary", "reduce", "slice", "transpose"])
        steps.append((kind, int(prng.integers(0, 1 << 30))))

    def f(a, b, c):
        pool = [a, b, c]
        for kind, r in steps:
            pick = np.random.default_rng(r)
            x = pool[pick.integers(len(pool))]
            if kind == "unary":
                y = UNARY[pick.integers(len(UNARY))](x)
            elif kind == "binary":
                y = BINARY[pick.integers(len(BINARY))](x, pool[pick.integers(len(pool))])
            elif kind == "reduce":
                op = [ops.sum, ops.mean, ops.max][pick.integers(3)]
                y = op(x, axis=int(pick.integers(2)), keepdims=True)
            elif kind == "slice":
                y = ops.concatenate([x[:1], x[1:] * 2.0], axis=0) if x.shape[0] > 1 else x * 2.0
            else:
                y = ops.transpose(ops.transpose(x) * 1.5)
            pool.append(y)
        return ops.sum(ops.stack([ops.sum(ops.tanh(t)) for t in pool[3:]] or [ops.sum(a)]))

    return f


@pytest.mark.parametrize("program", range(12))
def test_random_compositions(xp, rng, program):
    prng = np.random.default_rng([program, int(rng.integers(1 << 30))])
    f = _random_program(prng, n_steps=int(prng.integers(3, 9)))
    _grad_check(xp, f, [_r(rng, 4, 3), _r(rng, 1, 3), _r(rng, 4, 1)], tol=1e-6, unconnected_ok=True)
