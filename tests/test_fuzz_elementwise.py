"""Property-based fuzzing of the activations, softmax/log_softmax, dropout, batch normalization,
softmax cross-entropy and dense, forward and backward: arrays of any rank including 0-d and empty
ones, NaN and infinities, bad scalars (alpha, rate, seed, axis, momentum, epsilon), ``out=`` buffers
of every kind (inside guard bands, in place, overlapping, read-only), dtypes cnnkit takes and
refuses, and every memory layout. See fuzz_support.outcome for the rule each call obeys."""

import math
import numbers

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import ops
from cnnkit.ops import reference as ref
from fuzz_support import (GUARD, OK, TOL, Expect, assert_matches, dtypes, f64, float_check, is_int, layouts,
                          outcome, place, reference, seeds, values_of)

shapes = st.one_of(st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple),
                   st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple))


def _specials(rng, v, fraction):
    if v.dtype.kind == "f" and v.size and fraction:
        flat = v.reshape(-1)
        where = rng.random(flat.size) < fraction
        flat[where] = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=v.dtype),
                                 size=int(where.sum()))
    return v


@st.composite
def array_case(draw):
    return {"shape": draw(shapes), "dtype": draw(dtypes), "dy_dtype": draw(st.sampled_from(["same"] * 9 + ["other"])),
            "dy_shape": draw(st.sampled_from(["same"] * 9 + ["other"])), "specials": draw(st.sampled_from([0, 0, 0.2])),
            "scale": draw(st.sampled_from([1.0, 1.0, 30.0, 1e4])),
            "layouts": [draw(layouts) for _ in range(2)], "seed": draw(seeds),
            "out": draw(st.sampled_from(["none", "none", "none", "guarded", "inplace", "shifted", "readonly",
                                         "strided", "wrong_dtype", "wrong_shape", "list"]))}


def _pair(case):
    """x and dy Placed, and the expectation of dy against x."""
    rng = np.random.default_rng(case["seed"])
    x = place(_specials(rng, values_of(rng, case["shape"], case["dtype"], case["scale"]), case["specials"]),
              case["layouts"][0], rng)
    dt = x.values.dtype if x.values.dtype.kind == "f" else np.dtype(np.float32)
    if case["dy_dtype"] == "other":
        dt = np.dtype(np.float32 if dt == np.float64 else np.float64)
    dy_shape = case["shape"] if case["dy_shape"] == "same" else case["shape"] + (2,)
    dy = place(values_of(rng, dy_shape, dt), case["layouts"][1], rng)
    return rng, x, dy


def _out(rng, case, x):
    """(out argument, the buffer to check, whether out must be refused, whether out is x itself)."""
    kind = case["out"]
    shape, dtype = x.values.shape, x.values.dtype if x.values.dtype.kind == "f" else np.dtype(np.float32)
    if kind == "none":
        return None, None, False, False
    if kind == "inplace":
        # out must be C-contiguous, writable and aligned (an unaligned x is copied, an out cannot be)
        return x.arg, None, not (x.is_array and x.arg.flags.c_contiguous and x.arg.flags.writeable
                                 and x.arg.flags.aligned), True
    if kind == "list":
        return [0.0], None, True, False
    if kind == "wrong_dtype":
        return np.empty(shape, np.float64 if dtype == np.float32 else np.float32), None, True, False
    if kind == "wrong_shape":
        return np.empty(shape + (1,), dtype), None, True, False
    size = int(np.prod(shape, dtype=np.int64))
    buf = rng.standard_normal(size + 2 * GUARD).astype(dtype)
    if kind == "strided":
        buf = rng.standard_normal(2 * size + 2 * GUARD).astype(dtype)
        out = buf[GUARD: GUARD + 2 * size: 2].reshape(shape)
        return out, None, size > 1 or out.ndim > 1 and not out.flags.c_contiguous, False
    out = buf[GUARD: GUARD + size].reshape(shape)
    if kind == "readonly":
        out.flags.writeable = False
        return out, None, True, False
    if kind == "shifted":
        # overlapping x's buffer but shifted by one element: refused (unless it cannot overlap)
        if not (x.is_array and x.owner is not None and x.arg.flags.c_contiguous and x.arg.size > 1
                and x.arg.dtype == dtype and x.owner.dtype == dtype and x.owner.size >= size + 1
                and x.arg.flags.writeable):
            return None, None, False, False
        start = x.arg.__array_interface__["data"][0] - x.owner.__array_interface__["data"][0]
        start //= dtype.itemsize
        if start + 1 + size > x.owner.size:
            return None, None, False, False
        return x.owner.reshape(-1)[start + 1: start + 1 + size].reshape(shape), None, True, False
    return out, (buf, out, buf.copy()), False, False


def _guard_ok(guard):
    if guard is None:
        return True
    buf, out, before = guard
    mask = np.ones(buf.size, bool)
    mask[GUARD: GUARD + out.size] = False
    return buf[mask].tobytes() == before[mask].tobytes()


ELEMENTWISE = {
    "relu": (ops.relu, ops.relu_backward, ref.relu, ref.relu_backward, {}),
    "leaky_relu": (ops.leaky_relu, ops.leaky_relu_backward, ref.leaky_relu, ref.leaky_relu_backward, "alpha>=0"),
    "elu": (ops.elu, ops.elu_backward, ref.elu, ref.elu_backward, "alpha"),
    "sigmoid": (ops.sigmoid, ops.sigmoid_backward, ref.sigmoid, ref.sigmoid_backward, {}),
    "tanh": (ops.tanh, ops.tanh_backward, ref.tanh, ref.tanh_backward, {}),
}
# Real parameters rounded to 3 decimals: a float32 result scaled by 1e-300 underflows, which says
# nothing about the kernels.
reals = st.floats(-3, 3).map(lambda v: round(v, 3))
alphas = st.one_of(reals, st.sampled_from([0.0, 0.2, 1.0, np.float32(0.5), 3, float("nan"),
                                                       float("inf"), -float("inf"), True, None, "0.1"]))


def _alpha_ok(alpha, nonnegative):
    ok = isinstance(alpha, numbers.Real) and not isinstance(alpha, bool) and math.isfinite(alpha)
    return ok and (not nonnegative or alpha >= 0)


def _common(x, kwargs, params):
    """The expectation from x and the op's parameters alone."""
    e = Expect()
    e.check(float_check, x)
    if "alpha" in kwargs:
        e.require(_alpha_ok(kwargs["alpha"], params == "alpha>=0"))
    if "axis" in kwargs:
        ndim = x.values.ndim
        axis = kwargs["axis"]
        e.require(ndim >= 1 and is_int(axis) and -ndim <= axis < ndim)
    return e


NO_AXIS = object()


def _elementwise(name, case, alpha, axis=NO_AXIS):
    op, op_backward, ref_op, ref_backward, params = ELEMENTWISE.get(name) or SOFTMAX[name]
    rng, x, dy = _pair(case)
    kwargs = {}
    if params in ("alpha", "alpha>=0"):
        kwargs["alpha"] = alpha
    if axis is not NO_AXIS:
        kwargs["axis"] = axis
    dtype = x.values.dtype

    e = _common(x, kwargs, params)
    out, guard, out_bad, inplace = _out(rng, case, x)
    if out_bad:
        e.require(False, ValueError, TypeError)

    def check_forward(y):
        # float32 subnormals (sigmoid(-100) = 3.8e-44) may be flushed to 0, as PyTorch does
        assert_matches(y, reference(ref_op, f64(x), **kwargs), dtype, name, atol=float(np.finfo(dtype).tiny))
        if out is not None:
            assert y is out, "the result must be the out array"
        assert _guard_ok(guard), "wrote outside out"

    outcome(e.result(), lambda: op(x.arg, out=out, **kwargs), check_forward, [] if inplace else [x])
    if inplace:
        return

    e = _common(x, kwargs, params)
    e.check(float_check, dy, dtype=dtype if dtype.kind == "f" else None)
    e.require(dy.values.shape == x.values.shape)

    def check_backward(dx):
        # gradients bounded by |dy| that may be a cancellation: checked absolutely against |dy|
        atol = TOL[dtype] * max(1.0, float(np.max(np.abs(dy.values), initial=0)))
        assert_matches(dx, reference(ref_backward, f64(dy), f64(x), **kwargs), dtype, name + "_backward", atol)

    outcome(e.result(), lambda: op_backward(dy.arg, x.arg, **kwargs), check_backward, [x, dy])


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@given(case=array_case(), alpha=alphas)
def test_fuzz_activation(name, case, alpha):
    _elementwise(name, case, alpha)


SOFTMAX = {
    "softmax": (ops.softmax, ops.softmax_backward, ref.softmax, ref.softmax_backward, {}),
    "log_softmax": (ops.log_softmax, ops.log_softmax_backward, ref.log_softmax, ref.log_softmax_backward, {}),
}
axes = st.one_of(st.integers(-5, 4), st.sampled_from([-1, -1, 0, True, 1.0, None, np.int64(-1)]))


@pytest.mark.parametrize("name", list(SOFTMAX))
@given(case=array_case(), axis=axes)
def test_fuzz_softmax(name, case, axis):
    _elementwise(name, case, None, axis)


@given(case=array_case(), rate=st.one_of(st.floats(0, 0.99), st.sampled_from([0, 0.0, 0.5, 1.0, -0.1, 1.5, float("nan"),
                                                                               True, None, "0.5", np.float32(0.25)])),
       seed=st.one_of(st.integers(-2**70, 2**70), st.sampled_from([1.5, None, "3", np.uint64(2**64 - 1)])),
       training=st.booleans())
def test_fuzz_dropout(case, rate, seed, training):
    rng, x, dy = _pair(case)
    e = Expect()
    e.require(isinstance(rate, numbers.Real) and not isinstance(rate, bool) and 0 <= rate < 1)
    e.require(is_int(seed), TypeError)
    e.check(float_check, x)
    dtype = x.values.dtype
    identity = not training or (e.ok and rate == 0)

    def check_forward(y):
        if identity:
            assert y is x.arg, "dropout outside training (or rate 0) returns x itself"
        else:
            assert_matches(y, reference(ref.dropout, f64(x), float(rate), int(seed) % 2**64), dtype, "dropout")

    outcome(e.result(), lambda: ops.dropout(x.arg, rate, seed, training=training), check_forward, [x])
    e.check(float_check, dy, dtype=dtype if dtype.kind == "f" else None)
    e.require(dy.values.shape == x.values.shape)

    def check_backward(dx):
        if identity:
            assert dx is dy.arg
        else:
            assert_matches(dx, reference(ref.dropout_backward, f64(dy), f64(x), float(rate), int(seed) % 2**64),
                           dtype, "dropout_backward")

    outcome(e.result(), lambda: ops.dropout_backward(dy.arg, x.arg, rate, seed, training=training), check_backward,
            [x, dy])


# ---------------------------------------------------------------------------------------------- batch norm
@st.composite
def bn_case(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(0, 4)) for _ in range(ndim - 1)) + (draw(st.sampled_from([0, 1, 2, 3, 5])),)
    return {"shape": shape, "dtype": draw(dtypes), "layouts": [draw(layouts) for _ in range(6)],
            "gamma": draw(st.sampled_from(["ok", "ok", "none", "wrong_shape", "wrong_dtype"])),
            "beta": draw(st.sampled_from(["ok", "ok", "none", "wrong_shape"])),
            "stats": draw(st.sampled_from(["ok", "ok", "ok", "none", "wrong_shape", "wrong_dtype", "readonly",
                                           "strided"])),
            "momentum": draw(st.one_of(st.floats(0, 1), st.sampled_from([0.99, -0.1, 1.5, float("nan"), True, None]))),
            "epsilon": draw(st.one_of(st.sampled_from([1e-3, 1e-5, 0.1]), st.sampled_from([0, -1e-3, float("inf"),
                                                                                            float("nan"), None, True]))),
            "training": draw(st.booleans()), "constant": draw(st.sampled_from([False, False, True])),
            "seed": draw(seeds)}


@given(bn_case())
def test_fuzz_batch_norm(case):
    rng = np.random.default_rng(case["seed"])
    dtype = np.dtype(case["dtype"])
    fdt = dtype if dtype.kind == "f" else np.dtype(np.float32)
    other = np.dtype(np.float64 if fdt == np.float32 else np.float32)
    shape = case["shape"]
    c = shape[-1]
    xv = values_of(rng, shape, dtype) if not case["constant"] else np.full(shape, 3.25, dtype)
    x = place(xv, case["layouts"][0], rng)
    e = Expect()
    e.check(float_check, x)
    e.require(len(shape) >= 2 and c >= 1)

    def per_channel(kind, scale, offset, name):
        if kind == "none":
            return None
        n = c + 1 if kind == "wrong_shape" else c
        dt = other if kind == "wrong_dtype" else fdt
        v = (rng.random(n) * scale + offset).astype(dt)
        e.require(kind not in ("wrong_shape", "wrong_dtype"), ValueError, TypeError)
        return v

    gamma_v = per_channel(case["gamma"], 1.0, 0.5, "gamma")
    beta_v = per_channel(case["beta"], 1.0, -0.5, "beta")
    gamma = None if gamma_v is None else place(gamma_v, case["layouts"][1], rng)
    beta = None if beta_v is None else place(beta_v, case["layouts"][2], rng)
    for p in (gamma, beta):
        if p is not None and not p.is_array:
            e.require(False, TypeError)
    stats = case["stats"]
    if stats == "none":
        mean = var = None
        e.require(False, TypeError)
    else:
        n = c + 1 if stats == "wrong_shape" else c
        dt = other if stats == "wrong_dtype" else fdt
        mean_v, var_v = rng.standard_normal(n).astype(dt), (rng.random(n) + 0.1).astype(dt)
        e.require(stats not in ("wrong_shape", "wrong_dtype"), ValueError, TypeError)
        if stats == "strided":
            mean_buf, var_buf = np.zeros(2 * n, dt), np.zeros(2 * n, dt)
            mean, var = mean_buf[::2], var_buf[::2]
            mean[...], var[...] = mean_v, var_v
            if case["training"] and n > 1:
                e.require(False)  # updated in place: must be contiguous (one element always is)
        else:
            # guard bands around the in-place statistics
            mean_buf = rng.standard_normal(n + 2 * GUARD).astype(dt)
            var_buf = rng.standard_normal(n + 2 * GUARD).astype(dt)
            mean, var = mean_buf[GUARD:GUARD + n], var_buf[GUARD:GUARD + n]
            mean[...], var[...] = mean_v, var_v
            if stats == "readonly":
                mean.flags.writeable = False
                var.flags.writeable = False
                if case["training"]:
                    e.require(False)
        guards = (mean_buf.copy(), var_buf.copy())
    momentum, epsilon = case["momentum"], case["epsilon"]
    for v, ok in ((momentum, lambda m: 0 <= m <= 1), (epsilon, lambda m: 0 < m < math.inf)):
        real = isinstance(v, numbers.Real) and not isinstance(v, bool)
        e.require(real, TypeError)
        if real:
            e.require(ok(float(v)))
    training = case["training"]
    kwargs = dict(training=training, momentum=momentum, epsilon=epsilon)
    g_arg = None if gamma is None else gamma.arg
    b_arg = None if beta is None else beta.arg
    placed = [p for p in (x, gamma, beta) if p is not None]
    m = x.values.size // max(c, 1)

    def check_forward(y):
        rm, rv = mean_v.astype(np.float64), var_v.astype(np.float64)
        expected = reference(ref.batch_norm, f64(x), f64(gamma), f64(beta), rm, rv, **kwargs)
        if y.size:
            assert np.isfinite(y).all(), "batch_norm of finite data must be finite"
        assert_matches(y, expected, fdt, "batch_norm")
        if training and m:
            # moving = old * momentum + batch * (1 - momentum): rounded relative to those two terms
            # (which may cancel), and a product like var * 5e-229 underflows in float32
            for got, new, old, name in ((mean, rm, mean_v, "moving_mean"), (var, rv, var_v, "moving_var")):
                kept = old.astype(np.float64) * float(momentum)
                terms = np.abs(kept) + np.abs(new - kept)
                assert_matches(got, new, fdt, name,
                               atol=TOL[fdt] * float(np.max(terms, initial=0)) + float(np.finfo(fdt).tiny))
        else:
            assert mean.tobytes() == mean_v.tobytes() and var.tobytes() == var_v.tobytes()
        if stats != "strided":
            for buf, before in zip((mean_buf, var_buf), guards):
                assert buf[:GUARD].tobytes() == before[:GUARD].tobytes()
                assert buf[GUARD + c:].tobytes() == before[GUARD + c:].tobytes()

    outcome(e.result(), lambda: ops.batch_norm(x.arg, g_arg, b_arg, mean, var, **kwargs), check_forward, placed)

    # backward: the moving statistics are only read (any contiguity, read-only is fine)
    e = _bn_backward_expect(case, x, c, gamma, beta)
    dy = place(values_of(rng, shape, fdt), case["layouts"][3], rng)
    e.check(float_check, dy, dtype=dtype if dtype.kind == "f" else None)
    if stats != "none" and mean.flags.writeable:  # undo the forward's update
        mean[...], var[...] = mean_v, var_v

    def check_backward(grads):
        dx, dgamma, dbeta = grads
        edx, edg, edb = reference(ref.batch_norm_backward, f64(dy), f64(x), f64(gamma), f64(beta),
                                  mean_v.astype(np.float64), var_v.astype(np.float64), **kwargs)
        # Absolute tolerances from the sizes of the terms each gradient sums: in training, dx is
        # gamma/std * (dy - mean(dy) - xhat * mean(dy * xhat)), which cancels to ~0 when dy is
        # constant over the batch (a broadcast layout); dgamma and dbeta are sums over the batch.
        xs, dys = x.values.astype(np.float64), dy.values.astype(np.float64)
        axes = tuple(range(xs.ndim - 1))
        batch = training and m  # an empty batch in training: every gradient is empty or zero
        mu, v = (xs.mean(axis=axes), xs.var(axis=axes)) if batch else (mean_v, var_v.astype(np.float64))
        inv = 1.0 / np.sqrt(v + float(epsilon))
        xhat = (xs - mu) * inv
        g = np.ones(c) if gamma is None else gamma.values.astype(np.float64)
        terms = np.abs(g) * inv * (np.abs(dys) + (np.abs(dys).mean(axis=axes)
                                                  + np.abs(xhat) * np.abs(dys * xhat).mean(axis=axes)
                                                  if batch else 0))
        tol = TOL[fdt]
        assert_matches(dx, edx, fdt, "dx", atol=tol * float(np.max(terms, initial=0)))
        assert (dgamma is None) == (gamma is None) and (dbeta is None) == (beta is None)
        if gamma is not None:
            assert_matches(dgamma, edg, fdt, "dgamma",
                           atol=tol * float(np.max(np.abs(dys * xhat).sum(axis=axes), initial=0)))
        if beta is not None:
            assert_matches(dbeta, edb, fdt, "dbeta", atol=tol * float(np.max(np.abs(dys).sum(axis=axes), initial=0)))

    outcome(e.result(), lambda: ops.batch_norm_backward(dy.arg, x.arg, g_arg, b_arg, mean, var, **kwargs),
            check_backward, placed + [dy])


def _bn_backward_expect(case, x, c, gamma, beta):
    """The backward's expectation: the forward's, except that the statistics are only read."""
    e = Expect()
    for p in (gamma, beta):
        if p is not None and not p.is_array:
            e.require(False, TypeError)
    e.check(float_check, x)
    shape = case["shape"]
    e.require(len(shape) >= 2 and c >= 1)
    for kind in (case["gamma"], case["beta"], case["stats"]):
        e.require(kind not in ("wrong_shape", "wrong_dtype"), ValueError, TypeError)
    e.require(case["stats"] != "none", TypeError)
    for v, ok in ((case["momentum"], lambda m: 0 <= m <= 1), (case["epsilon"], lambda m: 0 < m < math.inf)):
        real = isinstance(v, numbers.Real) and not isinstance(v, bool)
        e.require(real, TypeError)
        if real:
            e.require(ok(float(v)))
    return e


# ---------------------------------------------------------------------------------------------- loss
@given(n=st.integers(0, 6), k=st.integers(0, 6), dtype=dtypes, scale=st.sampled_from([1.0, 30.0, 1e4]),
       labels=st.sampled_from(["int", "int", "int32", "uint8", "prob", "onehot", "out_of_range", "negative",
                               "wrong_shape", "other_float", "bool", "list"]),
       layout=layouts, dloss=st.one_of(reals, st.sampled_from([1.0, 0, np.float32(2.0), True, None,
                                                                          "1"])), seed=seeds)
def test_fuzz_softmax_cross_entropy(n, k, dtype, scale, labels, layout, dloss, seed):
    rng = np.random.default_rng(seed)
    logits = place(values_of(rng, (n, k), dtype, scale), layout, rng)
    fdt = logits.values.dtype if logits.values.dtype.kind == "f" else np.dtype(np.float32)
    e = Expect()
    e.check(float_check, logits)
    e.require(k >= 1)
    kk = max(k, 1)
    if labels in ("int", "int32", "uint8", "out_of_range", "negative"):
        lab = rng.integers(0, kk, n).astype({"int32": np.int32, "uint8": np.uint8}.get(labels, np.int64))
        if n and labels == "out_of_range":
            lab[rng.integers(0, n)] = kk
            e.require(False)
        if n and labels == "negative":
            lab[rng.integers(0, n)] = -1
            e.require(False)
    elif labels in ("prob", "onehot", "other_float"):
        p = rng.random((n, kk)) if labels != "onehot" else np.eye(kk)[rng.integers(0, kk, n)]
        p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
        lab = p.astype(fdt if labels != "other_float" else (np.float64 if fdt == np.float32 else np.float32))
        e.require(labels != "other_float", TypeError)
        if k == 0:
            lab = lab[:, :0]
    elif labels == "wrong_shape":
        lab = rng.integers(0, kk, n + 1)
        e.require(False)
    elif labels == "bool":
        lab = np.ones(n, bool)
        e.require(False, TypeError)
    else:
        lab = list(range(n))
        e.require(False, TypeError)
    dtype = logits.values.dtype
    lab_placed = place(np.asarray(lab), "c", rng) if not isinstance(lab, list) else None
    lab_arg = lab if lab_placed is None else lab_placed.arg
    placed = [logits] + ([lab_placed] if lab_placed is not None else [])
    lab64 = lab if isinstance(lab, list) or np.asarray(lab).dtype.kind in "iu" else np.asarray(lab, np.float64)

    def check_forward(loss):
        assert loss.shape == () and loss.dtype == dtype
        if n:
            assert np.isfinite(loss), "finite logits give a finite loss"
        # float32 rows are summed in float32 (as PyTorch's): the loss of a row whose target logit
        # dominates by 20 is log(1 + 5e-10), which rounds to 0; so an absolute error of the
        # tolerance is allowed too
        assert_matches(loss, reference(ref.softmax_cross_entropy, f64(logits), lab64), dtype, "loss",
                       atol=TOL[dtype])

    outcome(e.result(), lambda: ops.softmax_cross_entropy(logits.arg, lab_arg), check_forward, placed)
    e.require(isinstance(dloss, numbers.Real) and not isinstance(dloss, bool), TypeError)

    def check_backward(d):
        assert np.isfinite(d).all()
        assert_matches(d, reference(ref.softmax_cross_entropy_backward, f64(logits), lab64, float(dloss)), dtype,
                       "dlogits", atol=TOL[dtype] * max(1.0, abs(float(dloss))))

    outcome(e.result(), lambda: ops.softmax_cross_entropy_backward(logits.arg, lab_arg, dloss), check_backward, placed)


# ---------------------------------------------------------------------------------------------- dense
@given(lead=st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple), fin=st.integers(0, 6),
       fout=st.integers(0, 6), dtype=dtypes, w_dtype=st.sampled_from(["same"] * 9 + ["other"]),
       bias=st.sampled_from(["none", "ok", "ok", "wrong"]), w_rows=st.sampled_from(["ok"] * 9 + ["wrong"]),
       lay=st.lists(layouts, min_size=4, max_size=4), seed=seeds)
def test_fuzz_dense(lead, fin, fout, dtype, w_dtype, bias, w_rows, lay, seed):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    fdt = dtype if dtype.kind == "f" else np.dtype(np.float32)
    wdt = fdt if w_dtype == "same" else np.dtype(np.float64 if fdt == np.float32 else np.float32)
    x = place(values_of(rng, lead + (fin,), dtype), lay[0], rng)
    w = place(values_of(rng, (fin + (w_rows == "wrong"), fout), wdt), lay[1], rng)
    b = None if bias == "none" else place(values_of(rng, (fout + (bias == "wrong"),), wdt), lay[2], rng)
    e = Expect()
    e.check(float_check, x)
    e.check(float_check, w, dtype=dtype if dtype.kind == "f" else None)
    if b is not None:
        e.check(float_check, b, dtype=dtype if dtype.kind == "f" else None)
    e.require(len(lead) >= 1)
    e.require(w_rows == "ok" and bias != "wrong")
    barg = None if b is None else b.arg
    placed = [p for p in (x, w, b) if p is not None]

    # Absolute tolerances from the sums of |terms| (a dot product of a few random terms can cancel
    # to far below its terms, and float32 rounds each term, not the result)
    def bound(a, bmat):
        return TOL[fdt] * float(np.max(np.abs(a.astype(np.float64)) @ np.abs(bmat.astype(np.float64)), initial=0))

    def check_forward(y):
        x2d = x.values.reshape(math.prod(lead), fin)
        assert_matches(y, reference(ref.dense, f64(x), f64(w), f64(b)), fdt, "dense",
                       atol=bound(x2d, w.values) + (0 if b is None else TOL[fdt] * float(np.max(np.abs(b.values), initial=0))))

    outcome(e.result(), lambda: ops.dense(x.arg, w.arg, barg), check_forward, placed)
    dy = place(values_of(rng, lead + (fout,), fdt), lay[3], rng)
    e.check(float_check, dy, dtype=dtype if dtype.kind == "f" else None)

    def check_backward(grads):
        edx, edw, edb = reference(ref.dense_backward, f64(dy), f64(x), f64(w), f64(b))
        dx, dw, db = grads
        x2d, dy2d = x.values.reshape(math.prod(lead), fin), dy.values.reshape(math.prod(lead), fout)
        assert_matches(dx, edx, fdt, "dx", atol=bound(dy2d, w.values.T))
        assert_matches(dw, edw, fdt, "dw", atol=bound(x2d.T, dy2d))
        assert (db is None) == (b is None)
        if b is not None:
            assert_matches(db, edb, fdt, "db", atol=bound(np.ones((1, dy2d.shape[0])), dy2d))

    outcome(e.result(), lambda: ops.dense_backward(dy.arg, x.arg, w.arg, barg), check_backward, placed + [dy])
