"""The fused optimizer updates (cnnkit.ops.sgd_update, adam_update, rmsprop_update; csrc/cpu/optimizer.cpp
and csrc/cuda/optimizer.cu) against cnnkit.ops.reference run in float64 on the same inputs, over
several steps, every option, awkward sizes (1, primes, a size past the CPU's parallel split) and
both dtypes; the arguments they refuse. Tolerances: helpers.TOL (float32 1e-5, float64 1e-12): a
handful of elementwise operations per step, no sums. The optimizers themselves: test_optimizers.py."""

import math

import numpy as np
import pytest

from cnnkit import _core, ops, optimizers
from cnnkit.ops import reference as ref
from cnnkit.variables import Variable
from helpers import TOL, assert_close, assert_raises_naming, on_thread_counts, to_numpy

DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (7,), (13, 17), (3, 5, 7), (70001,)]  # the last: past the 2^15 parallel threshold
STEPS = 3

# (op, slots, keyword arguments): a slot absent from the list is passed as None (the plain form).
CASES = [
    ("sgd_update", (), {"learning_rate": 0.1}),
    ("sgd_update", (), {"learning_rate": 0.1, "weight_decay": 0.3}),
    ("sgd_update", ("momentum_buffer",), {"learning_rate": 0.1, "momentum": 0.9}),
    ("sgd_update", ("momentum_buffer",), {"learning_rate": 0.05, "momentum": 0.5, "nesterov": True,
                                          "weight_decay": 0.1}),
    ("adam_update", ("m", "v"), {"learning_rate": 0.01}),
    ("adam_update", ("m", "v", "v_hat"), {"learning_rate": 0.01}),
    ("adam_update", ("m", "v"), {"learning_rate": 0.1, "beta_1": 0.5, "beta_2": 0.8, "epsilon": 0.1}),
    ("adam_update", ("m", "v"), {"learning_rate": 0.01, "weight_decay": 0.004}),  # AdamW
    ("adam_update", ("m", "v", "v_hat"), {"learning_rate": 0.01, "weight_decay": 0.1}),  # AdamW + AMSGrad
    ("rmsprop_update", ("velocity",), {"learning_rate": 0.01}),
    ("rmsprop_update", ("velocity", "momentum_buffer"), {"learning_rate": 0.01, "momentum": 0.5}),
    ("rmsprop_update", ("velocity", "average_gradient"), {"learning_rate": 0.01, "rho": 0.7}),
    ("rmsprop_update", ("velocity", "momentum_buffer", "average_gradient"),
     {"learning_rate": 0.01, "momentum": 0.9, "epsilon": 0.1, "weight_decay": 0.05}),
]
IDS = [f"{op.split('_')[0]}-{'-'.join(slots) or 'plain'}-{'-'.join(k for k in kw if k != 'learning_rate')}"
       for op, slots, kw in CASES]
ORDER = {"sgd_update": ("momentum_buffer",), "adam_update": ("m", "v", "v_hat"),
         "rmsprop_update": ("velocity", "momentum_buffer", "average_gradient")}


def initial_state(rng, op, slots, shape, dtype):
    """variable and its slots (mid-training values: second moments positive, the centered RMSprop's
    velocity above the squared average, so no root sees a negative number)."""
    state = {"variable": rng.uniform(-1, 1, shape)}
    for name in slots:
        if name in ("v", "v_hat", "velocity"):
            state[name] = rng.uniform(0.5, 1.0, shape) if op == "rmsprop_update" else rng.uniform(0, 0.01, shape)
        elif name == "average_gradient":
            state[name] = rng.uniform(-0.1, 0.1, shape)
        else:
            state[name] = rng.normal(size=shape) * 0.1
    return {k: a.astype(dtype) for k, a in state.items()}


def assert_update_close(actual, expected, dtype, what, start):
    """An updated variable or slot agrees with its float64 expectation within the dtype's relative
    tolerance, measured against the larger of its final and its starting size: a momentum buffer
    that starts near 0.1 can cancel to 1e-5 in one element and carries the rounding of the terms it
    was summed from (seen with a (1,) buffer: 1.0e-5 relative to its own size)."""
    tol = TOL[np.dtype(dtype)]
    a = to_numpy(actual).astype(np.float64)
    assert a.shape == expected.shape and np.array_equal(np.isnan(a), np.isnan(expected))
    scale = max(np.max(np.abs(expected), initial=0.0), np.max(np.abs(start), initial=0.0))
    err = np.max(np.abs(a - expected), initial=0.0) / (scale or 1.0)
    assert err <= tol, f"{what} error {err:.3e} > {tol:.0e} (relative to the larger of its start and end size)"


def run(module, op, state, grads, kwargs):
    """STEPS updates through module.<op> (cnnkit.ops or the reference), in place on state."""
    fn = getattr(module, op)
    for t, g in enumerate(grads, start=1):
        slots = [state.get(name) for name in ORDER[op]]
        extra = {"step": t} if op == "adam_update" else {}
        fn(state["variable"], g, *slots, **kwargs, **extra)
    return state


def expected(op, state, grads, kwargs):
    """The reference's result in float64 on the same inputs."""
    return run(ref, op, {k: a.astype(np.float64) for k, a in state.items()},
               [g.astype(np.float64) for g in grads], kwargs)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, slots, kwargs", CASES, ids=IDS)
def test_update_matches_reference(xp, rng, op, slots, kwargs, dtype, shape):
    state = initial_state(rng, op, slots, shape, dtype)
    grads = [rng.normal(size=shape).astype(dtype) for _ in range(STEPS)]
    want = expected(op, state, grads, kwargs)
    start = {k: a.astype(np.float64) for k, a in state.items()}
    got = run(ops, op, {k: xp.asarray(a) for k, a in state.items()}, [xp.asarray(g) for g in grads], kwargs)
    for name, a in got.items():
        assert a.dtype == dtype
        assert_update_close(a, want[name], dtype, f"{op} {name}", start[name])


@pytest.mark.parametrize("op, slots, kwargs", CASES, ids=IDS)
def test_update_same_on_one_and_two_threads(rng, op, slots, kwargs):
    state = initial_state(rng, op, slots, (100003,), np.float32)
    grads = [rng.normal(size=(100003,)).astype(np.float32) for _ in range(STEPS)]

    def compute():
        return run(ops, op, {k: a.copy() for k, a in state.items()}, grads, kwargs)

    one, two = on_thread_counts(compute)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)


def test_updates_equal_the_unfused_numpy_step_bit_for_bit(rng):
    """The CPU kernel rounds as NumPy does (same order of operations, no FMA): Adam's step written
    with NumPy array operations, as cnnkit.optimizers did before the fused kernel, gives the same bits."""
    for dtype in DTYPES:
        state = initial_state(rng, "adam_update", ("m", "v", "v_hat"), (1001,), dtype)
        g = rng.normal(size=1001).astype(dtype)
        w, m, v, vh = (state[k].copy() for k in ("variable", "m", "v", "v_hat"))
        lr, t = 0.01, 3
        alpha = lr * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        w *= 1.0 - 0.1 * lr
        m += (g - m) * (1 - 0.9)
        v += (g * g - v) * (1 - 0.999)
        np.maximum(vh, v, out=vh)
        w -= np.divide(m, np.sqrt(vh) + 1e-7) * alpha
        ops.adam_update(state["variable"], g, state["m"], state["v"], state["v_hat"], learning_rate=lr, step=t,
                        weight_decay=0.1)
        for name, a in (("variable", w), ("m", m), ("v", v), ("v_hat", vh)):
            np.testing.assert_array_equal(state[name], a, err_msg=name)


def test_nan_in_v_hat_or_v_propagates_like_numpy_maximum():
    w, g = np.ones(4, np.float32), np.ones(4, np.float32)
    m, v = np.zeros(4, np.float32), np.array([0, np.nan, 0, 0], np.float32)
    v_hat = np.array([np.nan, 0, 0, 0], np.float32)
    ops.adam_update(w, g, m, v, v_hat, learning_rate=0.1, step=1)
    assert np.isnan(v_hat[:2]).all() and np.isfinite(v_hat[2:]).all()
    assert np.isnan(w[:2]).all() and np.isfinite(w[2:]).all()


# ----------------------------------------------------------------------------------------------
# refused arguments: ops and the reference refuse the same calls (one check, two callers)

def _adam_args(xp, dtype=np.float32, n=5):
    return [xp.zeros(n, dtype) for _ in range(4)]


@pytest.mark.parametrize("module", [ops, ref], ids=["ops", "reference"])
def test_bad_arguments_are_refused_naming_them(module, xp):
    w, g, m, v = _adam_args(xp)
    adam = module.adam_update
    assert_raises_naming(ValueError, "gradient", adam, w, xp.zeros(6, np.float32), m, v, learning_rate=0.1, step=1)
    assert_raises_naming(ValueError, "v", adam, w, g, m, xp.zeros((5, 1), np.float32), learning_rate=0.1, step=1)
    assert_raises_naming(TypeError, "gradient", adam, w, g.astype(np.float64), m, v, learning_rate=0.1, step=1)
    assert_raises_naming(TypeError, "m", adam, w, g, m.astype(np.float64), v, learning_rate=0.1, step=1)
    assert_raises_naming(TypeError, "variable", adam, w.astype(np.int32), g, m, v, learning_rate=0.1, step=1)
    assert_raises_naming(TypeError, "m", adam, w, g, None, v, learning_rate=0.1, step=1)
    for lr in (math.nan, math.inf, -1.0):
        assert_raises_naming(ValueError, "learning_rate", adam, w, g, m, v, learning_rate=lr, step=1)
    assert_raises_naming(ValueError, "step", adam, w, g, m, v, learning_rate=0.1, step=0)
    assert_raises_naming(ValueError, "beta_1", adam, w, g, m, v, learning_rate=0.1, step=1, beta_1=1.0)
    assert_raises_naming(ValueError, "weight_decay", adam, w, g, m, v, learning_rate=0.1, step=1,
                         weight_decay=math.nan)
    assert_raises_naming(ValueError, "m shares memory with variable", adam, w, g, w, v, learning_rate=0.1,
                         step=1)
    wide = xp.zeros(10, np.float32)
    assert_raises_naming(ValueError, "v_hat", adam, w, g, m, v, wide[::2], learning_rate=0.1, step=1)
    assert_raises_naming(TypeError, "momentum_buffer", module.sgd_update, w, g, learning_rate=0.1, momentum=0.9)
    assert_raises_naming(ValueError, "momentum", module.sgd_update, w, g, m, learning_rate=0.1, momentum=1.5)
    assert_raises_naming(TypeError, "velocity", module.rmsprop_update, w, g, None, learning_rate=0.1)
    assert_raises_naming(TypeError, "momentum_buffer", module.rmsprop_update, w, g, v, learning_rate=0.1,
                         momentum=0.5)
    assert_raises_naming(ValueError, "rho", module.rmsprop_update, w, g, v, learning_rate=0.1, rho=2.0)
    assert_raises_naming(ValueError, "average_gradient shares memory", module.rmsprop_update, w, g, v, None,
                         g, learning_rate=0.1)


@pytest.mark.parametrize("module", [ops, ref], ids=["ops", "reference"])
def test_read_only_variable_or_slot_is_refused(module):
    w, g, m, v = _adam_args(np)
    for name, a in (("variable", w), ("v", v)):
        a.flags.writeable = False
        assert_raises_naming(ValueError, name, module.adam_update, w, g, m, v, learning_rate=0.1, step=1)
        a.flags.writeable = True


def test_native_bindings_check_for_themselves():
    """Whoever calls cnnkit._core directly: no overlapping buffers, no non-finite scalars."""
    w, g, m, v = _adam_args(np)
    assert_raises_naming(ValueError, "m shares memory with variable", _core.adam_update, w, g, w, v, None,
                         0.1, 0.1, 0.001, 1e-7, 1.0)
    assert_raises_naming(ValueError, "alpha", _core.adam_update, w, g, m, v, None, math.nan, 0.1, 0.001, 1e-7, 1.0)
    assert_raises_naming(ValueError, "keep", _core.sgd_update, w, g, None, 0.1, 0.0, False, math.inf)
    assert_raises_naming(ValueError, "momentum_buffer", _core.sgd_update, w, g, np.zeros(4, np.float32), 0.1, 0.9,
                         False, 1.0)
    assert_raises_naming(TypeError, "velocity", _core.rmsprop_update, w, g, v.astype(np.float64), None, None,
                         0.1, 0.9, 0.1, 0.0, 1e-7, 1.0)


def test_empty_variable_is_a_no_op(xp):
    w = xp.zeros((0, 3), np.float32)
    ops.adam_update(w, w.copy(), w.copy(), w.copy(), learning_rate=0.1, step=1)
    ops.sgd_update(w, w.copy(), learning_rate=0.1)


# ----------------------------------------------------------------------------------------------
# the optimizers on the fused path

def test_optimizer_updates_a_strided_variable_in_place(rng):
    """A value that is a view the kernel cannot take (Fortran order) still updates in place, with
    the same result as a C-ordered one."""
    data = rng.normal(size=(6, 4))
    g = rng.normal(size=(6, 4))
    results = []
    for value in (np.array(data), np.asfortranarray(data)):
        var = Variable(value, name="w")
        opt = optimizers.Adam(learning_rate=0.1, amsgrad=True, weight_decay=0.01)
        for _ in range(2):
            opt.apply([g], [var])
        assert var.value is value
        results.append(np.array(value))
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("kwargs", [{"clipnorm": 1.0}, {"global_clipnorm": 1.0}])
def test_clipping_keeps_the_norm_an_array(xp, rng, kwargs):
    """The gradient norms stay on the gradients' device (no float(norm): a GPU sync per gradient)
    and scale the gradients as the reference formula does; a non-finite global norm gives NaN."""
    grads = [xp.asarray(rng.normal(size=s) * 3) for s in [(4, 3), (5,)]]
    opt = optimizers.SGD(learning_rate=1.0, **kwargs)
    clipped = opt._clip(grads)
    host = [to_numpy(g) for g in grads]
    if "clipnorm" in kwargs:
        want = [g / max(np.linalg.norm(g), 1.0) for g in host]
    else:
        total = math.sqrt(sum(np.sum(g * g) for g in host))
        want = [g / max(total, 1.0) for g in host]
    for c, w in zip(clipped, want):
        assert c.dtype == np.float64
        assert_close(c, w)
    assert hasattr(optimizers._norm(grads[0]), "dtype")  # an array (a NumPy scalar on the CPU), not a float
    if "global_clipnorm" in kwargs:
        bad = opt._clip([grads[0], grads[1] * xp.inf])
        assert all(np.isnan(to_numpy(c)).all() for c in bad)
