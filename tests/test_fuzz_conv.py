"""Property-based fuzzing of the convolution ops (conv2d, im2col, col2im and the backward pass):
random shapes (empty batches, 1x1 images, kernels as large as the padded input), strides and
dilations from 1 to beyond 64 bits, every padding spec (and wrong ones), dtypes cnnkit takes and
refuses, and every memory layout. See fuzz_support.outcome for the rule each call obeys."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import ops
from cnnkit.ops import reference as ref
from fuzz_support import (OK, Expect, Invalid, assert_matches, dtypes, exceeds_int64, f64, float_check,
                          int_or_pair, layouts, outcome, paddings, place, reference, seeds,
                          values_of, window_geometry)


@st.composite
def conv_case(draw):
    n = draw(st.sampled_from([0, 1, 1, 2, 3]))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    c, o = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh = draw(st.integers(1, h + 3))
    kw = draw(st.integers(1, w + 3))
    case = {
        "x_shape": (n, h, w, c) if draw(st.integers(0, 19)) else (h, w, c),
        "w_shape": (kh, kw, c if draw(st.integers(0, 19)) else c + 1, o),
        "bias": draw(st.sampled_from(["none", "ok", "ok", "wrong"])),
        "dtype": draw(dtypes),
        "w_dtype": draw(st.sampled_from(["same"] * 9 + ["other"])),
        "strides": draw(int_or_pair(3)),
        "dilation": draw(int_or_pair(3)),
        # huge paddings only with an empty batch: with N >= 1 the output would need terabytes
        "padding": draw(paddings(allow_huge=(n == 0))),
        "layouts": [draw(layouts) for _ in range(4)],
        "seed": draw(seeds),
    }
    return case


def _setup(case):
    rng = np.random.default_rng(case["seed"])
    dtype = np.dtype(case["dtype"])
    other = np.float64 if dtype == np.float32 else np.float32
    w_dtype = dtype if case["w_dtype"] == "same" else np.dtype(other)
    o = case["w_shape"][3]
    x = place(values_of(rng, case["x_shape"], dtype), case["layouts"][0], rng)
    w = place(values_of(rng, case["w_shape"], w_dtype), case["layouts"][1], rng)
    b = None
    if case["bias"] != "none":
        b = place(values_of(rng, (o + (case["bias"] == "wrong"),), w_dtype), case["layouts"][2], rng)
    return rng, x, w, b


def _expect(case, x, w, b):
    """(OK or the Invalid the call must raise, the output spatial size when known)."""
    e = Expect()
    e.check(float_check, x)
    if x.is_array:
        e.check(float_check, w, dtype=x.arg.dtype if x.arg.dtype.kind == "f" else None)
        if b is not None:
            e.check(float_check, b, dtype=x.arg.dtype if x.arg.dtype.kind == "f" else None)
    x4 = e.require(x.values.ndim == 4)
    e.require(w.values.ndim == 4 and (not x4 or w.values.shape[2] == x.values.shape[3]))
    if b is not None:
        e.require(b.values.shape == (w.values.shape[3],))
    out_hw = None
    if x4:
        geom = e.check(window_geometry, x.values.shape[1:3], w.values.shape[:2], case["strides"],
                       case["dilation"], case["padding"])
        out_hw = None if geom is None else geom[1]
    return e.result(), out_hw


def _big_padding(x, kernel, strides, padding, dilation):
    pads, _ = window_geometry(x.shape[1:3], kernel, strides, dilation, padding)
    return max(*pads[0], *pads[1]) > 64


def _ref_conv2d(x, w, b, **kwargs):
    """ops.reference.conv2d, or for paddings of billions of pixels (which it would materialize) the
    product of the reference im2col (a loop over windows) with the kernel."""
    if not _big_padding(x, w.shape[:2], kwargs["strides"], kwargs["padding"], kwargs["dilation"]):
        return ref.conv2d(x, w, b, **kwargs)
    n, o = x.shape[0], w.shape[3]
    col = ref.im2col(x, w.shape[:2], **kwargs)
    y = col @ w.reshape(-1, o) + (0 if b is None else b)
    _, out_hw = window_geometry(x.shape[1:3], w.shape[:2], kwargs["strides"], kwargs["dilation"],
                                kwargs["padding"])
    return y.reshape(n, *out_hw, o)


def _ref_conv2d_backward(dy, x, w, b, **kwargs):
    if not _big_padding(x, w.shape[:2], kwargs["strides"], kwargs["padding"], kwargs["dilation"]):
        return ref.conv2d_backward(dy, x, w, b, **kwargs)
    o = w.shape[3]
    dy2d = dy.reshape(-1, o)
    col = ref.im2col(x, w.shape[:2], **kwargs)
    dx = ref.col2im(dy2d @ w.reshape(-1, o).T, x.shape, w.shape[:2], **kwargs)
    return dx, (col.T @ dy2d).reshape(w.shape), (dy2d.sum(axis=0) if b is not None else None)


def _huge(case):
    return exceeds_int64(case["strides"], case["dilation"], case["padding"])


@given(conv_case())
def test_fuzz_conv2d(case):
    rng, x, w, b = _setup(case)
    expect, out_hw = _expect(case, x, w, b)
    kwargs = dict(strides=case["strides"], padding=case["padding"], dilation=case["dilation"])
    barg = None if b is None else b.arg
    placed = [p for p in (x, w, b) if p is not None]
    n = x.values.shape[0] if x.values.ndim == 4 else 0
    o = w.values.shape[-1]
    dtype = x.values.dtype

    def check_forward(y):
        assert y.shape == (n, *out_hw, o)
        if n:
            expected = reference(_ref_conv2d, f64(x), f64(w), f64(b), **kwargs)
            assert_matches(y, expected, dtype, "conv2d")
        else:
            assert y.dtype == dtype

    outcome(expect, lambda: ops.conv2d(x.arg, w.arg, barg, **kwargs), check_forward, placed,
            allow_refusal=_huge(case))

    # the backward pass: dy of the forward's output shape (or of a wrong one when the forward is invalid)
    if out_hw is not None and out_hw[0] * out_hw[1] > 2**40:
        return  # an empty batch with a padding of billions: no dy of that shape can be made
    dy_shape = (n, *out_hw, o) if expect is OK else (max(n, 1), 1, 1, o)
    dy = place(values_of(rng, dy_shape, dtype if dtype.kind == "f" else np.float32), case["layouts"][3], rng)
    e = Expect()
    e.check(float_check, dy, dtype=dtype if dtype.kind == "f" else None)
    expect_b = expect if expect is not OK or e.ok else e.result()
    if expect is not OK:  # a refused forward: the backward is refused too, for one of these reasons
        expect_b = Invalid(ValueError, TypeError)

    def check_backward(grads):
        dx, dw, db = grads
        assert (db is None) == (b is None)
        if n:
            edx, edw, edb = reference(_ref_conv2d_backward, f64(dy), f64(x), f64(w), f64(b), **kwargs)
        else:  # sums over an empty batch
            edx, edw, edb = np.zeros(x.values.shape), np.zeros(w.values.shape), np.zeros((o,))
        assert_matches(dx, edx, dtype, "dx")
        assert_matches(dw, edw, dtype, "dw")
        if b is not None:
            assert_matches(db, edb, dtype, "db")

    outcome(expect_b, lambda: ops.conv2d_backward(dy.arg, x.arg, w.arg, barg, **kwargs), check_backward,
            placed + [dy], allow_refusal=_huge(case))


@given(conv_case())
def test_fuzz_im2col_col2im(case):
    rng, x, w, _ = _setup(case)
    kernel = w.values.shape[:2]
    kwargs = dict(strides=case["strides"], padding=case["padding"], dilation=case["dilation"])
    dtype = x.values.dtype
    e = Expect()
    e.check(float_check, x)
    out_hw = None
    if e.require(x.values.ndim == 4):
        geom = e.check(window_geometry, x.values.shape[1:3], kernel, case["strides"], case["dilation"],
                       case["padding"])
        out_hw = None if geom is None else geom[1]
    expect = e.result()
    n = x.values.shape[0] if x.values.ndim == 4 else 0
    c = x.values.shape[-1]

    def check_im2col(col):
        assert col.shape == (n * out_hw[0] * out_hw[1], kernel[0] * kernel[1] * c)
        if n:
            assert_matches(col, reference(ref.im2col, f64(x), kernel, **kwargs), dtype, "im2col")

    outcome(expect, lambda: ops.im2col(x.arg, kernel, **kwargs), check_im2col, [x], allow_refusal=_huge(case))

    # col2im: x_shape from the case (x's layout, even a list, does not matter here), col of the
    # matching shape when the geometry is valid, and sometimes of a wrong one
    x_shape = x.values.shape
    e = Expect()
    rows = None
    if e.require(len(x_shape) == 4):
        geom_c = e.check(window_geometry, x_shape[1:3], kernel, case["strides"], case["dilation"], case["padding"])
        if geom_c is not None:
            rows = x_shape[0] * geom_c[1][0] * geom_c[1][1]
    k = kernel[0] * kernel[1] * c
    col_shape = (3 if rows is None else rows, k)
    if case["bias"] == "wrong":  # reuse the draw: sometimes a col of the wrong shape
        col_shape = (col_shape[0] + 1, k)
    col = place(values_of(rng, col_shape, dtype), case["layouts"][2], rng)
    e.check(float_check, col)
    if rows is not None:
        e.require(col_shape == (rows, k))
    expect_c = e.result()

    def check_col2im(dx):
        assert dx.shape == x_shape
        expected = reference(ref.col2im, f64(col), x_shape, kernel, **kwargs) if n else np.zeros(x_shape)
        assert_matches(dx, expected, dtype, "col2im")

    outcome(expect_c, lambda: ops.col2im(col.arg, x_shape, kernel, **kwargs), check_col2im, [col],
            allow_refusal=_huge(case))
