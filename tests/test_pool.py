"""Pooling: every op forward and backward against the NumPy reference over awkward geometries, the
max-pooling NaN/tie/padding rules on hand-built inputs, finite-difference gradients, the stochastic
pooling draw (exact agreement with the reference, reproducibility, selection frequencies), bad
inputs, and a PyTorch cross-check when it is installed."""

import numpy as np
import pytest

from cnnkit import ops
from cnnkit.ops import _backend
from cnnkit.ops import pool as native_pool
from cnnkit.ops import reference as ref
from cnnkit.ops.reference import pool as ref_pool

from helpers import assert_close, assert_grad, assert_raises_naming, to_numpy

# (x shape, pool_size, strides, padding)
CASES = [
    ((1, 4, 4, 1), 2, None, "valid"),
    ((2, 7, 5, 3), 3, 2, 1),                      # 3x3 stride 2 pad 1, odd sizes
    ((1, 7, 11, 17), (2, 3), None, "same"),        # non-square pool, "same" with asymmetric padding
    ((3, 5, 5, 1), 2, 3, "valid"),                 # stride > pool
    ((2, 6, 7, 3), (3, 2), (1, 2), ((1, 0), (0, 1))),
    ((1, 13, 3, 3), (3, 1), (2, 1), "same"),
    ((2, 5, 8, 17), 3, 1, "same"),                 # overlapping windows, symmetric "same"
    ((1, 9, 9, 3), 3, (2, 3), (1, 2)),             # per-axis padding
    ((0, 6, 6, 3), 2, None, "valid"),              # empty batch
]
CASE_IDS = [f"{s}-k{k}-s{st}-p{p}" for s, k, st, p in CASES]

OPS = ["max", "avg", "stochastic_inference", "stochastic_training"]


def _call(module, op, name, *args, **geo):
    """module.<op>_pool2d[ _backward](*args, **geo) with the stochastic modes spelled out."""
    if op.startswith("stochastic"):
        geo = dict(geo, training=op.endswith("training"), seed=1234)
        fn = "stochastic_pool2d"
    else:
        fn = f"{op}_pool2d"
    return getattr(module, fn + ("_backward" if name == "backward" else ""))(*args, **geo)


def _geo(case):
    _, pool_size, strides, padding = case
    return dict(pool_size=pool_size, strides=strides, padding=padding)


def _distinct(rng, shape, dtype=np.float64):
    """Random values with no ties (a permutation, scaled), so the max/argmax is unambiguous."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) / max(size, 1) * 4 - 2 + 0.01).astype(dtype)


# ----------------------------------------------------------------------------------------------
# Native against the reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_reference(xp, rng, case, op, dtype):
    geo = _geo(case)
    x = _distinct(rng, case[0], dtype) if op == "max" else rng.standard_normal(case[0]).astype(dtype)
    x64 = x.astype(np.float64)
    expected = _call(ref, op, "forward", x64, **geo)
    y = _call(ops, op, "forward", xp.asarray(x), **geo)
    assert y.dtype == dtype and y.shape == expected.shape
    assert_close(y, expected, dtype=dtype, what=f"{op} forward")
    dy = rng.standard_normal(expected.shape).astype(dtype)
    expected_dx = _call(ref, op, "backward", dy.astype(np.float64), x64, **geo)
    dx = _call(ops, op, "backward", xp.asarray(dy), xp.asarray(x), **geo)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, expected_dx, dtype=dtype, what=f"{op} backward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 7, 5, 3), (3, 4, 9, 17), (0, 3, 3, 2), (2, 40, 31, 5)])
def test_global_pools_match_reference(xp, rng, shape, dtype):
    x = _distinct(rng, shape, dtype)
    dy = rng.standard_normal((shape[0], shape[3])).astype(dtype)
    for name in ("global_avg_pool2d", "global_max_pool2d"):
        y = getattr(ops, name)(xp.asarray(x))
        assert y.shape == (shape[0], shape[3]) and y.dtype == dtype
        assert_close(y, getattr(ref, name)(x.astype(np.float64)), dtype=dtype, what=name)
        dx = getattr(ops, name + "_backward")(xp.asarray(dy), xp.asarray(x))
        expected = getattr(ref, name + "_backward")(dy.astype(np.float64), x.astype(np.float64))
        assert_close(dx, expected, dtype=dtype, what=name + " backward")


def test_global_avg_float32_keeps_accuracy_on_a_large_image(xp, rng):
    """float32 partial sums feed a float64 total: a 224x224 mean of values near 1e3 stays accurate."""
    x = (1000 + rng.standard_normal((2, 224, 224, 3))).astype(np.float32)
    assert_close(ops.global_avg_pool2d(xp.asarray(x)), x.astype(np.float64).mean(axis=(1, 2)), dtype=np.float32)


@pytest.mark.parametrize("case", CASES[:6], ids=CASE_IDS[:6])
def test_saved_variants_agree_with_reference_indices(xp, rng, case):
    geo = _geo(case)
    x = _distinct(rng, case[0])
    y, argmax = ops.max_pool2d(xp.asarray(x), **geo, return_argmax=True)
    y_ref, argmax_ref = ref.max_pool2d(x, **geo, return_argmax=True)
    assert_close(y, y_ref)
    np.testing.assert_array_equal(to_numpy(argmax), argmax_ref)
    dy = rng.standard_normal(y.shape)
    dx = ops.max_pool2d_backward_from_argmax(xp.asarray(dy), argmax, x.shape, **geo)
    assert_close(dx, ref.max_pool2d_backward(dy, x, **geo))

    y, index = ops.stochastic_pool2d(xp.asarray(x), **geo, training=True, seed=7, return_index=True)
    y_ref, index_ref = ref.stochastic_pool2d(x, **geo, training=True, seed=7, return_index=True)
    np.testing.assert_array_equal(to_numpy(y), y_ref)
    np.testing.assert_array_equal(to_numpy(index), index_ref)
    dx = ops.stochastic_pool2d_backward_from_index(xp.asarray(dy), index, x.shape, **geo)
    assert_close(dx, ref.stochastic_pool2d_backward(dy, x, training=True, seed=7, **geo))

    y, argmax = ops.global_max_pool2d(xp.asarray(x), return_argmax=True)
    np.testing.assert_array_equal(to_numpy(argmax), ref.global_max_pool2d(x, return_argmax=True)[1])
    dyg = rng.standard_normal(y.shape)
    dx = ops.global_max_pool2d_backward_from_argmax(xp.asarray(dyg), argmax, x.shape)
    assert_close(dx, ref.global_max_pool2d_backward(dyg, x))


def test_non_contiguous_input_is_accepted(xp, rng):
    x = rng.standard_normal((2, 3, 6, 6))
    xd = xp.asarray(x).transpose(0, 2, 3, 1)  # an NCHW array viewed as NHWC
    x = x.transpose(0, 2, 3, 1)
    assert_close(ops.max_pool2d(xd, 2), ref.max_pool2d(np.ascontiguousarray(x), 2))
    assert_close(ops.avg_pool2d(xd, 3, 1, "same"), ref.avg_pool2d(np.ascontiguousarray(x), 3, 1, "same"))


# ----------------------------------------------------------------------------------------------
# Hand-computed cases and the max-pooling rules


HAND = np.array([[1, 3, 2, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]], dtype=np.float64)


@pytest.mark.parametrize("module", [ops, ref], ids=["native", "reference"])
def test_hand_computed_2x2(xp, module):
    xp_ = xp if module is ops else np
    x = xp_.asarray(HAND.reshape(1, 4, 4, 1))
    np.testing.assert_array_equal(to_numpy(module.max_pool2d(x, 2))[0, :, :, 0], [[6, 8], [14, 16]])
    np.testing.assert_array_equal(to_numpy(module.avg_pool2d(x, 2))[0, :, :, 0], [[3.75, 5.25], [11.5, 13.5]])
    dx = to_numpy(module.max_pool2d_backward(xp_.ones((1, 2, 2, 1)), x, 2))[0, :, :, 0]
    np.testing.assert_array_equal(dx, [[0, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0], [0, 1, 0, 1]])
    dx = to_numpy(module.avg_pool2d_backward(xp_.ones((1, 2, 2, 1)), x, 2))[0, :, :, 0]
    np.testing.assert_array_equal(dx, np.full((4, 4), 0.25))
    # "same" 3x3 stride 1 in a corner: the padded cells are not counted (mean of 1, 3, 5, 6).
    assert to_numpy(module.avg_pool2d(x, 3, 1, "same"))[0, 0, 0, 0] == 3.75
    np.testing.assert_array_equal(to_numpy(module.global_max_pool2d(x)), [[16]])
    np.testing.assert_array_equal(to_numpy(module.global_avg_pool2d(x)), [[8.5]])


@pytest.mark.parametrize("module", [native_pool, ref_pool], ids=["native", "reference"])
def test_max_rules_nan_ties_and_padding(xp, module):
    xp_ = xp if module is native_pool else np
    nan, inf = np.nan, np.inf
    # One 2x3 window per channel: c0 ties (the first 5 wins), c1 two NaNs (the first NaN wins),
    # c2 all -inf (the first cell wins), c3 NaN after the maximum.
    chans = [[[1, 5, 2], [5, 0, 3]], [[1, nan, 9], [nan, 2, 3]], [[-inf] * 3] * 2, [[7, 1, 2], [3, nan, 4]]]
    x = np.stack([np.array(c, dtype=np.float64) for c in chans], axis=-1)[None]
    y, argmax = module.max_pool2d(xp_.asarray(x), (2, 3), return_argmax=True)
    y, argmax = to_numpy(y)[0, 0, 0], to_numpy(argmax)[0, 0, 0]
    np.testing.assert_array_equal(y, [5, nan, -inf, nan])
    np.testing.assert_array_equal(argmax, [1, 1, 0, 4])
    # With padding: an all -inf 3x3 window at the corner picks its first input cell, never padding.
    x = np.full((1, 3, 3, 1), -inf)
    y, argmax = module.max_pool2d(xp_.asarray(x), 3, 2, 1, return_argmax=True)
    np.testing.assert_array_equal(to_numpy(y)[0, :, :, 0], np.full((2, 2), -inf))
    np.testing.assert_array_equal(to_numpy(argmax)[0, :, :, 0], [[0, 1], [3, 4]])
    # Global max: the same rules over the whole image.
    g = np.array([[[[3.0], [7.0]], [[7.0], [nan]]]])
    y, argmax = module.global_max_pool2d(xp_.asarray(g), return_argmax=True)
    assert np.isnan(to_numpy(y)[0, 0]) and to_numpy(argmax)[0, 0] == 3
    y, argmax = module.global_max_pool2d(xp_.asarray(np.nan_to_num(g, nan=1.0)), return_argmax=True)
    assert to_numpy(y)[0, 0] == 7 and to_numpy(argmax)[0, 0] == 1


@pytest.mark.parametrize("module", [ops, ref], ids=["native", "reference"])
def test_max_backward_routes_to_first_nan_and_first_tie(xp, module):
    xp_ = xp if module is ops else np
    x = np.array([[2.0, 2.0, 1.0], [np.nan, 0.0, np.nan]]).reshape(1, 2, 3, 1)
    dx = to_numpy(module.max_pool2d_backward(xp_.full((1, 1, 2, 1), 3.0), xp_.asarray(x), 2, 1))
    # window 0 = cols 0-1: NaN at (1, 0) wins; window 1 = cols 1-2: NaN at (1, 2) wins
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 0], [3, 0, 3]])
    x = np.array([[2.0, 2.0, 1.0], [0.0, 2.0, 1.0]]).reshape(1, 2, 3, 1)
    dx = to_numpy(module.max_pool2d_backward(xp_.full((1, 1, 2, 1), 3.0), xp_.asarray(x), 2, 1))
    # both windows tie on 2: the first in scan order is (0, 0), then (0, 1)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[3, 3, 0], [0, 0, 0]])


def test_overlapping_windows_sum_their_gradients(xp):
    """An input pixel that is the max of several windows receives the sum of their dy."""
    x = np.zeros((1, 3, 3, 1))
    x[0, 1, 1, 0] = 5.0
    dy = np.array([1.0, 2.0, 4.0, 8.0]).reshape(1, 2, 2, 1)
    dx = to_numpy(ops.max_pool2d_backward(xp.asarray(dy), xp.asarray(x), 2, 1))
    assert dx[0, 1, 1, 0] == 15.0 and np.count_nonzero(dx) == 1


# ----------------------------------------------------------------------------------------------
# Finite-difference gradients (float64)

GRAD_CASES = [((2, 5, 4, 3), 2, None, "valid"), ((1, 5, 6, 2), 3, 2, "same"), ((1, 6, 5, 2), (2, 3), (1, 2), 1)]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", GRAD_CASES, ids=[str(c) for c in GRAD_CASES])
def test_gradients_match_finite_differences(xp, rng, case, op):
    geo = _geo(case)
    x = _distinct(rng, case[0])
    if op == "stochastic_training":
        x = np.abs(x) + 0.1  # strictly positive: the draw is locally constant around x
    elif op == "stochastic_inference":
        x = np.where(np.abs(x) < 0.05, 0.3, x)  # keep away from the kink at 0
    def forward(v):
        return to_numpy(_call(ops, op, "forward", xp.asarray(v), **geo))

    dy = rng.standard_normal(forward(x).shape)
    dx = _call(ops, op, "backward", xp.asarray(dy), xp.asarray(x), **geo)
    assert_grad(dx, forward, x, dy, what=op)


@pytest.mark.parametrize("name", ["global_avg_pool2d", "global_max_pool2d"])
def test_global_gradients_match_finite_differences(xp, rng, name):
    x = _distinct(rng, (2, 3, 4, 3))
    dy = rng.standard_normal((2, 3))
    dx = getattr(ops, name + "_backward")(xp.asarray(dy), xp.asarray(x))
    assert_grad(dx, lambda v: to_numpy(getattr(ops, name)(xp.asarray(v))), x, dy, what=name)


# ----------------------------------------------------------------------------------------------
# Stochastic pooling


def test_stochastic_training_is_seeded_and_picks_window_values(xp, rng):
    x = rng.standard_normal((2, 8, 8, 5))
    xd = xp.asarray(x)

    def pool(seed):
        return to_numpy(ops.stochastic_pool2d(xd, 2, training=True, seed=seed))

    a = pool(3)
    np.testing.assert_array_equal(a, pool(3))
    assert not np.array_equal(a, pool(4))
    np.testing.assert_array_equal(a, ref.stochastic_pool2d(x, 2, training=True, seed=3))
    # Every output is one of its window's values, and a positive one unless the window has none.
    windows = x.reshape(2, 4, 2, 4, 2, 5).transpose(0, 1, 3, 5, 2, 4).reshape(2, 4, 4, 5, 4)
    assert np.all((windows == a[..., None]).any(axis=-1) | ((a == 0) & (windows <= 0).all(axis=-1)))
    assert np.all(a >= 0)
    # Large seeds (any int) are accepted and reduced mod 2**64, as in the reference.
    np.testing.assert_array_equal(pool(-1), ref.stochastic_pool2d(x, 2, training=True, seed=2**64 - 1))


def test_stochastic_selection_frequencies_follow_weights(xp):
    """A window [1, 2, 3, 4] (plus a negative cell, weight 0) over 40,000 draws: chi-square bound."""
    window = np.array([[1.0, -2.0, 2.0], [3.0, 4.0, -1.0]])  # weights 1, 0, 2, 3, 4, 0
    x = xp.asarray(np.broadcast_to(window[None, :, :, None], (40, 2, 3, 250)).copy())
    counts = np.zeros(5)
    for seed in range(4):
        y = to_numpy(ops.stochastic_pool2d(x, (2, 3), training=True, seed=seed))
        counts += [np.sum(y == v) for v in (1, 2, 3, 4, -2)]
    assert counts[4] == 0  # non-positive cells are never drawn
    expected = np.array([1, 2, 3, 4]) / 10 * counts.sum()
    chi2 = np.sum((counts[:4] - expected) ** 2 / expected)
    assert chi2 < 25, f"chi-square {chi2:.1f} with 3 degrees of freedom (counts {counts})"


def test_stochastic_inference_and_zero_windows(xp):
    x = np.array([[1.0, -2.0], [2.0, 3.0], [-1.0, -5.0], [0.0, -0.5]]).reshape(1, 4, 2, 1)
    y = to_numpy(ops.stochastic_pool2d(xp.asarray(x), 2))[0, :, 0, 0]
    np.testing.assert_allclose(y, [(1 + 4 + 9) / 6, 0.0], rtol=1e-15)
    # training: the all-non-positive window outputs the constant 0, so it passes no gradient back
    y = to_numpy(ops.stochastic_pool2d(xp.asarray(x), 2, training=True, seed=9))[0, :, 0, 0]
    assert y[0] in (1.0, 2.0, 3.0) and y[1] == 0.0
    dx = to_numpy(ops.stochastic_pool2d_backward(xp.ones((1, 2, 1, 1)), xp.asarray(x), 2, training=True, seed=9))
    assert dx[0, 2:, :, 0].sum() == 0.0 and dx[0, :2, :, 0].sum() == 1.0
    # inference backward is zero where x <= 0 and in windows with S == 0
    dx = to_numpy(ops.stochastic_pool2d_backward(xp.ones((1, 2, 1, 1)), xp.asarray(x), 2))
    np.testing.assert_array_equal(dx[0, :, 1, 0] == 0, [True, False, True, True])
    np.testing.assert_array_equal(dx[0, 2:], 0)


# ----------------------------------------------------------------------------------------------
# Bad inputs


def _x(shape=(2, 6, 6, 3), dtype=np.float32, xp=np):
    return xp.ones(shape, dtype=dtype)


@pytest.mark.parametrize("fn", ["max_pool2d", "avg_pool2d", "stochastic_pool2d"])
def test_bad_window_arguments(xp, fn):
    f = getattr(ops, fn)

    def _x(shape=(2, 6, 6, 3), dtype=np.float32):
        return xp.ones(shape, dtype=dtype)

    assert_raises_naming(ValueError, "x", f, _x((6, 6, 3)))
    assert_raises_naming(ValueError, "pool_size", f, _x(), 0)
    assert_raises_naming(ValueError, "pool_size", f, _x(), (2, -1))
    assert_raises_naming(ValueError, "strides", f, _x(), 2, 0)
    assert_raises_naming(ValueError, "strides", f, _x(), 2, (1, 2, 3))
    assert_raises_naming(ValueError, "pool_size", f, _x(), 7)  # empty output
    assert_raises_naming(ValueError, "padding", f, _x(), 2, 2, "full")
    assert_raises_naming(ValueError, "padding", f, _x(), 2, 2, -1)
    assert_raises_naming(ValueError, "padding", f, _x(), 2, 2, 2)  # windows of padding only
    assert_raises_naming(ValueError, "padding", f, _x(), 2, 2, ((0, 0), (3, 0)))
    assert_raises_naming(TypeError, "x", f, _x(dtype=np.float16))
    assert_raises_naming(TypeError, "x", f, xp.ones((2, 6, 6, 3), dtype=np.int32))
    assert_raises_naming(TypeError, "x", f, [[1.0]])


@pytest.mark.parametrize("fn", ["max_pool2d", "avg_pool2d", "stochastic_pool2d", "global_avg_pool2d",
                                "global_max_pool2d"])
def test_bad_dy(xp, fn):
    f = getattr(ops, fn + "_backward")
    x = _x(xp=xp)
    out_shape = getattr(ops, fn)(x).shape
    assert_raises_naming(ValueError, "dy", f, xp.ones((2, 3, 3, 4), np.float32), x)
    assert_raises_naming(ValueError, "dy", f, xp.ones(out_shape[:-1], np.float32), x)
    assert_raises_naming(TypeError, "dy", f, xp.ones(out_shape, np.float64), x)  # mixture
    assert_raises_naming(TypeError, "dy", f, xp.ones(out_shape, np.float16), x)


@pytest.mark.parametrize("fn", ["global_avg_pool2d", "global_max_pool2d", "max_pool2d", "avg_pool2d"])
def test_empty_images_are_refused(xp, fn):
    assert_raises_naming(ValueError, "x", getattr(ops, fn), _x((2, 0, 3, 4), xp=xp))
    assert_raises_naming(ValueError, "x", getattr(ops, fn), _x((2, 3, 3, 0), xp=xp))
    assert_raises_naming(ValueError, "x", getattr(ops, fn), _x((2, 6, 6), xp=xp))


def test_bad_seed_and_saved_index(xp):
    assert_raises_naming(TypeError, "seed", ops.stochastic_pool2d, _x(xp=xp), training=True, seed=1.5)
    y, argmax = ops.max_pool2d(_x(xp=xp), return_argmax=True)
    assert_raises_naming(TypeError, "argmax", ops.max_pool2d_backward_from_argmax, y,
                         argmax.astype(np.float32), (2, 6, 6, 3))
    assert_raises_naming(ValueError, "argmax", ops.max_pool2d_backward_from_argmax, y,
                         argmax[:, :2], (2, 6, 6, 3))
    assert_raises_naming(ValueError, "x_shape", ops.max_pool2d_backward_from_argmax, y, argmax, (6, 6, 3))


def test_native_bindings_check_buffers(xp):
    """The kernels' entry points (cnnkit._core, cnnkit._cuda) refuse mismatched buffers even when
    called directly."""
    np = xp  # the same calls on either array module
    x = _x(xp=xp)
    _core = _backend.backend(x).lib
    geom = (2, 6, 6, 3, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="y"):
        _core.max_pool2d_forward(x, np.empty((2, 3, 3, 4), np.float32), None, geom)
    with pytest.raises(TypeError, match="y"):
        _core.avg_pool2d_forward(x, np.empty((2, 3, 3, 3), np.float64), geom)
    with pytest.raises(TypeError, match="argmax"):
        _core.max_pool2d_backward(np.empty((2, 3, 3, 3), np.float32), np.empty((2, 3, 3, 3), np.float32),
                                  x.copy(), geom)
    with pytest.raises(ValueError, match="argmax"):
        _core.max_pool2d_forward(x, None, None, geom)
    with pytest.raises(ValueError, match="strides"):
        _core.avg_pool2d_forward(x, np.empty((2, 3, 3, 3), np.float32), geom[:6] + (0, 2) + geom[8:])


# ----------------------------------------------------------------------------------------------
# PyTorch cross-check


@pytest.mark.parametrize("pool_size,strides,padding", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1)), (3, 1, 0)])
def test_against_pytorch(rng, pool_size, strides, padding):
    torch = pytest.importorskip("torch")
    x = _distinct(rng, (2, 9, 8, 5))
    dy_shape = ops.max_pool2d(x, pool_size, strides, padding).shape
    dy = rng.standard_normal(dy_shape)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    dyt = torch.tensor(dy.transpose(0, 3, 1, 2))
    kernel = pool_size
    stride = pool_size if strides is None else strides
    for name, fn in [("max", lambda t: torch.nn.functional.max_pool2d(t, kernel, stride, padding)),
                     ("avg", lambda t: torch.nn.functional.avg_pool2d(t, kernel, stride, padding,
                                                                     count_include_pad=False))]:
        xt.grad = None
        yt = fn(xt)
        yt.backward(dyt)
        y = getattr(ops, f"{name}_pool2d")(x, pool_size, strides, padding)
        dx = getattr(ops, f"{name}_pool2d_backward")(dy, x, pool_size, strides, padding)
        assert_close(y, yt.detach().numpy().transpose(0, 2, 3, 1), what=f"{name} vs torch")
        assert_close(dx, xt.grad.numpy().transpose(0, 2, 3, 1), what=f"{name} backward vs torch")


def test_global_pools_against_pytorch(rng):
    torch = pytest.importorskip("torch")
    x = _distinct(rng, (3, 7, 6, 4))
    dy = rng.standard_normal((3, 4))
    for name, fn in [("global_avg_pool2d", lambda t: t.mean(dim=(2, 3))),
                     ("global_max_pool2d", lambda t: t.amax(dim=(2, 3)))]:
        xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        fn(xt).backward(torch.tensor(dy))
        assert_close(getattr(ops, name)(x), fn(xt).detach().numpy(), what=name)
        assert_close(getattr(ops, name + "_backward")(dy, x), xt.grad.numpy().transpose(0, 2, 3, 1),
                     what=name + " backward")



def test_kernels_define_windows_of_padding_only(xp):
    """cnnkit.ops refuses such paddings, but the kernels accept any geometry make_geom accepts and
    must stay in bounds: a window with no input cell gives -inf/index -1 (max), 0 (average)."""
    np = xp  # the same calls on either array module
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    _core = _backend.backend(x).lib
    geom = (1, 3, 3, 1, 2, 2, 2, 2, 1, 1, 3, 2, 2, 3)  # 4x4 outputs, the border ones all padding
    y, argmax = np.empty((1, 4, 4, 1), np.float32), np.empty((1, 4, 4, 1), np.int32)
    _core.max_pool2d_forward(x, y, argmax, geom)
    np.testing.assert_array_equal(y[0, 1:3, 1:3, 0], [[2, 3], [8, 9]])
    assert np.all(y[0, [0, 3], :, 0] == -np.inf) and np.all(argmax[0, :, [0, 3], 0] == -1)
    dx = np.empty_like(x)
    _core.max_pool2d_backward(np.ones_like(y), argmax, dx, geom)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 1, 1], [0, 0, 0], [0, 1, 1]])
    _core.avg_pool2d_forward(x, y, geom)
    np.testing.assert_array_equal(y[0, 1:3, 1:3, 0], [[1.5, 3], [6, 7.5]])
    assert np.all(y[0, [0, 3], :, 0] == 0) and np.all(y[0, :, [0, 3], 0] == 0)
    _core.stochastic_pool2d_forward(x, y, argmax, geom, True, 3)
    assert np.all(argmax[0, [0, 3], :, 0] == -1) and np.all(y[0, [0, 3], :, 0] == 0)
