"""Property-based fuzzing of the pooling family (max, average, stochastic, global max/average, and
their backward passes): random shapes including empty batches and 1x1 images, pool sizes up to the
padded input, strides from 1 to beyond 64 bits or None, every padding spec, NaN and infinities in
max/average pooling, dtypes cnnkit takes and refuses, and every memory layout. See
fuzz_support.outcome for the rule each call obeys."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import ops
from cnnkit.ops import reference as ref
from fuzz_support import (OK, TOL, Expect, Invalid, assert_matches, dtypes, exceeds_int64, f64, float_check,
                          int_or_pair, is_int, layouts, outcome, paddings, parse_pair, parse_padding,
                          place, reference, seeds, values_of)


@st.composite
def pool_case(draw, specials=True):
    n = draw(st.sampled_from([0, 1, 1, 2, 3]))
    h, w, c = draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 4))
    if not draw(st.integers(0, 24)):
        h, w, c = draw(st.sampled_from([(0, w, c), (h, 0, c), (h, w, 0)]))
    shape = (n, h, w, c) if draw(st.integers(0, 24)) else draw(st.sampled_from([(h, w, c), (n, h, w, c, 1)]))
    pool = draw(st.one_of(st.tuples(st.integers(1, h + 3), st.integers(1, w + 3)), int_or_pair(3)))
    return {
        "shape": shape,
        "pool_size": pool,
        "strides": draw(st.one_of(st.none(), st.none(), int_or_pair(3))),
        "padding": draw(paddings(allow_huge=(n == 0))),
        "dtype": draw(dtypes),
        "dy_dtype": draw(st.sampled_from(["same"] * 9 + ["other"])),
        "specials": specials and draw(st.booleans()),
        "layouts": [draw(layouts) for _ in range(2)],
        "seed": draw(seeds),
        "pool_seed": draw(st.one_of(st.integers(-2**70, 2**70), st.sampled_from([1.5, None, "1", np.uint64(7)]))),
        "training": draw(st.booleans()),
    }


def _values(rng, case):
    v = values_of(rng, case["shape"], case["dtype"])
    if case["specials"] and v.dtype.kind == "f" and v.size:
        flat = v.reshape(-1)
        where = rng.random(flat.size) < 0.15
        flat[where] = rng.choice(np.array([np.nan, np.inf, -np.inf], dtype=v.dtype), size=int(where.sum()))
    return v


def _pool_geometry(hw, pool_size, strides, padding):
    """((oh, ow), big) by the documented rules: padded cells never take part, and a window holding only
    padding is refused. Invalid(ValueError) otherwise."""
    kh, kw = parse_pair(pool_size, 1)
    sh, sw = parse_pair(pool_size if strides is None else strides, 1)
    pads = parse_padding(padding, hw, (kh, kw), (sh, sw), (1, 1))
    out = []
    for n, (a, b), k, s in zip(hw, pads, (kh, kw), (sh, sw)):
        span = n + a + b - k
        if span < 0:
            raise Invalid(ValueError)
        o = span // s + 1
        # first window [-a, k - a), last window [(o-1)s - a, ...): both must hold an input cell
        if k - a <= 0 or (o - 1) * s - a >= n:
            raise Invalid(ValueError)
        out.append(o)
    big = max(kh, kw, *pads[0], *pads[1]) > 64
    return tuple(out), big


def _x_expect(case, x):
    e = Expect()
    e.check(float_check, x)
    shape = x.values.shape
    e.require(len(shape) == 4 and min(shape[1:]) >= 1)
    return e


def _dy(rng, case, x, out_shape):
    dtype = x.values.dtype if x.values.dtype.kind == "f" else np.dtype(np.float32)
    if case["dy_dtype"] == "other":
        dtype = np.dtype(np.float32 if dtype == np.float64 else np.float64)
    shape = out_shape if out_shape is not None else (1, 1, 1, 1)
    return place(values_of(rng, shape, dtype), case["layouts"][1], rng)


def _expect_dy(e_forward, dy, x):
    """The backward's expectation: the forward's problems, plus dy's dtype."""
    if not e_forward.ok:
        return Invalid(ValueError, TypeError)
    e = Expect()
    e.check(float_check, dy, dtype=x.values.dtype)
    return e.result()


def _huge(case):
    return exceeds_int64(case["pool_size"], case["strides"], case["padding"])


def _average_atol(op, x, dtype):
    """For averages: a mean of values that cancel (0.87 + 0.29 - 1.17) is rounded relative to the
    values, not to the result, so the error is bounded by the largest finite |x|."""
    if "avg" not in op.__name__ or dtype.kind != "f":
        return None
    finite = np.abs(x.values[np.isfinite(x.values)])
    return TOL[dtype] * float(np.max(finite, initial=0.0))


def _windowed(op, op_backward, ref_op, ref_backward, case, **extra):
    """Forward then backward of a windowed pooling op under the rule."""
    rng = np.random.default_rng(case["seed"])
    x = place(_values(rng, case), case["layouts"][0], rng)
    kwargs = dict(pool_size=case["pool_size"], strides=case["strides"], padding=case["padding"], **extra)
    e = _x_expect(case, x)
    out_shape, big = None, False
    if e.ok:
        geom = e.check(_pool_geometry, x.values.shape[1:3], case["pool_size"], case["strides"], case["padding"])
        if geom is not None:
            out_hw, big = geom
            out_shape = (x.values.shape[0], *out_hw, x.values.shape[3])
    if "seed" in extra:
        e.require(is_int(extra["seed"]), TypeError)
    n = x.values.shape[0] if x.values.ndim else 0
    # The reference lists every cell of every window; windows of billions of cells are only checked
    # for their shape (and, like every call, for not crashing or writing where they should not).
    compare = n and not big
    dtype = x.values.dtype

    def check_forward(y):
        assert y.shape == out_shape
        if compare:
            assert_matches(y, reference(ref_op, f64(x), **kwargs), dtype, op.__name__,
                           atol=_average_atol(op, x, dtype))
        else:
            assert y.dtype == dtype

    outcome(e.result(), lambda: op(x.arg, **kwargs), check_forward, [x], allow_refusal=_huge(case))

    if out_shape is not None and out_shape[1] * out_shape[2] > 2**40:
        return  # an empty batch with a window or padding of billions: no dy of that shape can be made
    dy = _dy(rng, case, x, out_shape)

    def check_backward(dx):
        if compare or not n:
            expected = reference(ref_backward, f64(dy), f64(x), **kwargs) if n else np.zeros(x.values.shape)
            assert_matches(dx, expected, dtype, op_backward.__name__)
        else:
            assert dx.shape == x.values.shape and dx.dtype == dtype

    outcome(_expect_dy(e, dy, x), lambda: op_backward(dy.arg, x.arg, **kwargs), check_backward, [x, dy],
            allow_refusal=_huge(case))


@given(pool_case())
def test_fuzz_max_pool2d(case):
    _windowed(ops.max_pool2d, ops.max_pool2d_backward, ref.max_pool2d, ref.max_pool2d_backward, case)


@given(pool_case())
def test_fuzz_avg_pool2d(case):
    _windowed(ops.avg_pool2d, ops.avg_pool2d_backward, ref.avg_pool2d, ref.avg_pool2d_backward, case)


@given(pool_case(specials=False))
def test_fuzz_stochastic_pool2d(case):
    _windowed(ops.stochastic_pool2d, ops.stochastic_pool2d_backward, ref.stochastic_pool2d,
              ref.stochastic_pool2d_backward, case, training=case["training"], seed=case["pool_seed"])


def _global(op, op_backward, ref_op, ref_backward, case):
    rng = np.random.default_rng(case["seed"])
    x = place(_values(rng, case), case["layouts"][0], rng)
    e = _x_expect(case, x)
    out_shape = (x.values.shape[0], x.values.shape[3]) if e.ok else None
    dtype = x.values.dtype

    def check_forward(y):
        assert_matches(y, reference(ref_op, f64(x)), dtype, op.__name__, atol=_average_atol(op, x, dtype))

    outcome(e.result(), lambda: op(x.arg), check_forward, [x])
    dy = _dy(rng, case, x, out_shape)
    if out_shape is None:
        dy = place(values_of(rng, (1, 1), dy.values.dtype), "c", rng)

    def check_backward(dx):
        assert_matches(dx, reference(ref_backward, f64(dy), f64(x)), dtype, op_backward.__name__)

    outcome(_expect_dy(e, dy, x), lambda: op_backward(dy.arg, x.arg), check_backward, [x, dy])


@given(pool_case())
def test_fuzz_global_max_pool2d(case):
    _global(ops.global_max_pool2d, ops.global_max_pool2d_backward, ref.global_max_pool2d,
            ref.global_max_pool2d_backward, case)


@given(pool_case())
def test_fuzz_global_avg_pool2d(case):
    _global(ops.global_avg_pool2d, ops.global_avg_pool2d_backward, ref.global_avg_pool2d,
            ref.global_avg_pool2d_backward, case)
