"""The reduced op suite tools/valgrind.sh runs under memcheck: every kernel family, forward and
backward, float32 and float64, on small odd shapes with padding, strides and dilation (both conv
paths: the direct kernel and im2col + GEMM), each result compared with ops.reference."""

import sys

import numpy as np

import cnnkit
from cnnkit import ops
from cnnkit.ops import reference as ref

np.seterr(all="ignore")  # the reference meets NaN and inf on purpose
rng = np.random.default_rng(0)
checks = 0


def close(a, b, dtype, what):
    global checks
    tol = 1e-4 if dtype == np.float32 else 1e-10
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(1.0, float(np.max(np.abs(b), initial=0)))
    if a.shape != b.shape or not np.allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True):
        sys.exit(f"{what} ({np.dtype(dtype).name}) differs from the reference")
    checks += 1


for dtype in (np.float32, np.float64):
    x = rng.standard_normal((2, 7, 6, 3)).astype(dtype)
    x64 = x.astype(np.float64)
    for w_shape, kw in (((3, 2, 3, 5), dict(strides=(2, 1), padding="same", dilation=(1, 2))),
                        ((3, 3, 3, 70), dict(padding=1)), ((1, 1, 3, 4), {})):
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[3]).astype(dtype)
        y = ops.conv2d(x, w, b, **kw)
        close(y, ref.conv2d(x64, w, b, **kw), dtype, "conv2d")
        dy = rng.standard_normal(y.shape).astype(dtype)
        for got, want, name in zip(ops.conv2d_backward(dy, x, w, b, **kw),
                                   ref.conv2d_backward(dy.astype(np.float64), x64, w, b, **kw), "dx dw db".split()):
            close(got, want, dtype, "conv2d_backward " + name)
        col = ops.im2col(x, w_shape[:2], **kw)
        close(col, ref.im2col(x64, w_shape[:2], **kw), dtype, "im2col")
        close(ops.col2im(col, x.shape, w_shape[:2], **kw), ref.col2im(col.astype(np.float64), x.shape, w_shape[:2], **kw),
              dtype, "col2im")
    for name in ("max_pool2d", "avg_pool2d"):
        for kw in (dict(pool_size=3, strides=2, padding="same"), dict(pool_size=(2, 3))):
            y = getattr(ops, name)(x, **kw)
            close(y, getattr(ref, name)(x64, **kw), dtype, name)
            dy = rng.standard_normal(y.shape).astype(dtype)
            close(getattr(ops, name + "_backward")(dy, x, **kw), getattr(ref, name + "_backward")(dy, x64, **kw),
                  dtype, name + "_backward")
    for training in (False, True):
        kw = dict(pool_size=2, strides=1, padding="same", training=training, seed=5)
        y = ops.stochastic_pool2d(x, **kw)
        close(y, ref.stochastic_pool2d(x64, **kw), dtype, "stochastic_pool2d")
        dy = rng.standard_normal(y.shape).astype(dtype)
        close(ops.stochastic_pool2d_backward(dy, x, **kw), ref.stochastic_pool2d_backward(dy, x64, **kw), dtype,
              "stochastic_pool2d_backward")
    for name in ("global_avg_pool2d", "global_max_pool2d"):
        y = getattr(ops, name)(x)
        close(y, getattr(ref, name)(x64), dtype, name)
        close(getattr(ops, name + "_backward")(y, x), getattr(ref, name + "_backward")(y.astype(np.float64), x64),
              dtype, name + "_backward")
    z = rng.standard_normal((5, 11)).astype(dtype) * 3
    z[0, 0], z[1, 1] = np.nan, np.inf
    dz = rng.standard_normal(z.shape).astype(dtype)
    for name in ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax", "log_softmax"):
        close(getattr(ops, name)(z), getattr(ref, name)(z.astype(np.float64)), dtype, name)
        close(getattr(ops, name + "_backward")(dz, z), getattr(ref, name + "_backward")(dz.astype(np.float64),
                                                                                    z.astype(np.float64)),
              dtype, name + "_backward")
    close(ops.dropout(z, 0.4, 9), ref.dropout(z.astype(np.float64), 0.4, 9), dtype, "dropout")
    gamma, beta = rng.random(3).astype(dtype) + 0.5, rng.random(3).astype(dtype)
    for training in (False, True):
        mm, mv = np.zeros(3, dtype), np.ones(3, dtype)
        rm, rv = np.zeros(3), np.ones(3)
        close(ops.batch_norm(x, gamma, beta, mm, mv, training=training),
              ref.batch_norm(x64, gamma, beta, rm, rv, training=training), dtype, "batch_norm")
        close(mm, rm, dtype, "moving_mean")
        dy = rng.standard_normal(x.shape).astype(dtype)
        for got, want in zip(ops.batch_norm_backward(dy, x, gamma, beta, mm, mv, training=training),
                             ref.batch_norm_backward(dy.astype(np.float64), x64, gamma, beta, mm, mv, training=training)):
            close(got, want, dtype, "batch_norm_backward")
    logits = rng.standard_normal((6, 7)).astype(dtype)
    for labels in (rng.integers(0, 7, 6), np.eye(7, dtype=dtype)[rng.integers(0, 7, 6)]):
        close(ops.softmax_cross_entropy(logits, labels), ref.softmax_cross_entropy(logits.astype(np.float64), labels),
              dtype, "softmax_cross_entropy")
        close(ops.softmax_cross_entropy_backward(logits, labels),
              ref.softmax_cross_entropy_backward(logits.astype(np.float64), labels), dtype,
              "softmax_cross_entropy_backward")
    xd, wd, bd = (rng.standard_normal(s).astype(dtype) for s in ((4, 3, 5), (5, 2), (2,)))
    close(ops.dense(xd, wd, bd), ref.dense(xd.astype(np.float64), wd, bd), dtype, "dense")
    for got, want in zip(ops.dense_backward(np.ones((4, 3, 2), dtype), xd, wd, bd),
                         ref.dense_backward(np.ones((4, 3, 2)), xd.astype(np.float64), wd, bd)):
        close(got, want, dtype, "dense_backward")

print(f"valgrind op suite: {checks} checks against ops.reference passed ({cnnkit.__file__})")
