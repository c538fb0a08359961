"""Optimizers and learning-rate schedules against Keras 3's update rules, written out again here in
float64 NumPy (textbook form: m = b1 m + (1 - b1) g rather than Keras' m += (g - m)(1 - b1)).
Tolerances: helpers.TOL (float32 1e-5, float64 1e-12); a few elementwise ops per step, no long sums."""

import json
import math
import re

import numpy as np
import pytest

from cnnkit import optimizers
from cnnkit.optimizers import SGD, Adam, AdamW, RMSprop
from cnnkit.optimizers.schedules import CosineDecay, ExponentialDecay
from cnnkit.variables import Variable
from helpers import assert_close, assert_raises_naming, to_numpy


def host_copy(a):
    return np.array(to_numpy(a))  # to_numpy returns NumPy arrays as they are: snapshots need a copy

SHAPES = [(3, 5), (7,), (2, 3, 1, 4)]
STEPS = 4


# -- float64 references ------------------------------------------------------------------------------
def ref_sgd(momentum=0.0, nesterov=False):
    def step(w, g, s, t, lr):
        if momentum == 0:
            return w - lr * g
        s["v"] = momentum * s.get("v", 0.0) - lr * g
        return w + (momentum * s["v"] - lr * g if nesterov else s["v"])
    return step


def ref_adam(beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
    def step(w, g, s, t, lr):
        s["m"] = beta_1 * s.get("m", 0.0) + (1 - beta_1) * g
        s["v"] = beta_2 * s.get("v", 0.0) + (1 - beta_2) * g * g
        v = s["vmax"] = np.maximum(s.get("vmax", 0.0), s["v"]) if amsgrad else s["v"]
        alpha = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        return w - alpha * s["m"] / (np.sqrt(v) + epsilon)
    return step


def ref_rmsprop(rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    def step(w, g, s, t, lr):
        s["v"] = rho * s.get("v", 0.0) + (1 - rho) * g * g
        denominator = s["v"] + epsilon
        if centered:
            s["a"] = rho * s.get("a", 0.0) + (1 - rho) * g
            denominator = s["v"] - s["a"] ** 2 + epsilon
        increment = lr * g / np.sqrt(denominator)
        if momentum == 0:
            return w - increment
        s["mom"] = momentum * s.get("mom", 0.0) + increment
        return w - s["mom"]
    return step


REFS = {"SGD": ref_sgd, "Adam": ref_adam, "AdamW": ref_adam, "RMSprop": ref_rmsprop}


def ref_run(name, kwargs, ws, grads, lrs):
    """Apply len(grads) steps of optimizer `name` to float64 copies of ws."""
    kw = dict(kwargs)
    kw.pop("learning_rate", None)
    wd = kw.pop("weight_decay", 0.004 if name == "AdamW" else None)
    clipnorm, clipvalue = kw.pop("clipnorm", None), kw.pop("clipvalue", None)
    gclip = kw.pop("global_clipnorm", None)
    update = REFS[name](**kw)
    ws = [np.array(w, dtype=np.float64) for w in ws]
    states = [{} for _ in ws]
    for t, (gs, lr) in enumerate(zip(grads, lrs), start=1):
        gs = [np.array(g, dtype=np.float64) for g in gs]
        if clipnorm:
            gs = [g * clipnorm / max(np.sqrt(np.sum(g * g)), clipnorm) for g in gs]
        if gclip:
            norm = np.sqrt(sum(np.sum(g * g) for g in gs))
            gs = [g * gclip / max(norm, gclip) for g in gs]
        if clipvalue:
            gs = [np.clip(g, -clipvalue, clipvalue) for g in gs]
        if wd:
            ws = [w - w * wd * lr for w in ws]
        ws = [update(w, g, s, t, lr) for w, g, s in zip(ws, gs, states)]
    return ws


def make(xp, rng, dtype, steps=STEPS):
    """Variables of SHAPES and `steps` lists of gradients; the second variable's gradients are small
    so that norm clipping leaves it alone while clipping the others."""
    ws = [Variable(xp.asarray(rng.uniform(-1, 1, s).astype(dtype)), name=f"w{i}")
          for i, s in enumerate(SHAPES)]
    grads = [[xp.asarray((rng.normal(size=s) * (0.01 if i == 1 else 2.0)).astype(dtype))
              for i, s in enumerate(SHAPES)] for _ in range(steps)]
    return ws, grads


CASES = [
    ("SGD", {}), ("SGD", {"momentum": 0.9}), ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("SGD", {"momentum": 0.5, "weight_decay": 0.1}), ("SGD", {"global_clipnorm": 1.0}),
    ("Adam", {}), ("Adam", {"amsgrad": True}), ("Adam", {"beta_1": 0.5, "beta_2": 0.8, "epsilon": 0.1}),
    ("Adam", {"clipnorm": 1.0}), ("Adam", {"weight_decay": 0.05, "clipvalue": 0.5}),
    ("AdamW", {}), ("AdamW", {"weight_decay": 0.1, "amsgrad": True}),
    ("RMSprop", {}), ("RMSprop", {"momentum": 0.5}), ("RMSprop", {"centered": True}),
    ("RMSprop", {"centered": True, "momentum": 0.9, "epsilon": 0.1, "rho": 0.7}),
    ("RMSprop", {"clipvalue": 0.5, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs", CASES, ids=[f"{n}-{'-'.join(k) or 'default'}" for n, k in CASES])
def test_matches_reference(xp, rng, dtype, name, kwargs):
    ws, grads = make(xp, rng, dtype)
    w0 = [host_copy(w.value) for w in ws]
    opt = getattr(optimizers, name)(learning_rate=0.1, **kwargs)
    for gs in grads:
        opt.apply(gs, ws)
    expected = ref_run(name, kwargs, w0, [[to_numpy(g) for g in gs] for gs in grads], [0.1] * STEPS)
    for w, e in zip(ws, expected):
        assert_close(w.value, e, what=f"{name} {w.name}")
    assert opt.iterations == STEPS


@pytest.mark.parametrize("schedule, lrs", [
    (ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5), [0.1 * 0.5 ** (t / 2) for t in range(STEPS)]),
    (ExponentialDecay(0.1, 2, 0.5, staircase=True), [0.1, 0.1, 0.05, 0.05]),
    (CosineDecay(0.2, decay_steps=3, alpha=0.1),  # cos(pi/3) = 0.5, cos(2 pi/3) = -0.5
     [0.2, 0.2 * (0.9 * 0.75 + 0.1), 0.2 * (0.9 * 0.25 + 0.1), 0.02]),
    (lambda step: 0.1 / (step + 1), [0.1, 0.05, 0.1 / 3, 0.025]),
])
def test_schedules_drive_the_step(xp, rng, schedule, lrs):
    ws, grads = make(xp, rng, np.float64)
    w0 = [host_copy(w.value) for w in ws]
    opt = SGD(learning_rate=schedule, momentum=0.9, weight_decay=0.1)
    for t, gs in enumerate(grads):
        assert opt.learning_rate == pytest.approx(lrs[t], rel=1e-12)
        opt.apply_gradients(zip(gs, ws))
    host_grads = [[to_numpy(g) for g in gs] for gs in grads]
    expected = ref_run("SGD", {"momentum": 0.9, "weight_decay": 0.1}, w0, host_grads, lrs)
    for w, e in zip(ws, expected):
        assert_close(w.value, e)


def test_schedule_values():
    cos = CosineDecay(0.0, decay_steps=4, alpha=0.1, warmup_target=0.2, warmup_steps=2)
    # warmup 0 -> 0.2 over 2 steps, then 0.2 * ((1 - 0.1) * 0.5 * (1 + cos(pi * s / 4)) + 0.1),
    # held at its final value once the 4 decay steps are over
    for step, lr in [(0, 0.0), (1, 0.1), (2, 0.2), (4, 0.2 * (0.9 * 0.5 + 0.1)), (6, 0.02), (100, 0.02)]:
        assert cos(step) == pytest.approx(lr, rel=1e-12, abs=1e-15)
    assert ExponentialDecay(1.0, 10, 0.1)(25) == pytest.approx(0.1**2.5, rel=1e-12)
    assert ExponentialDecay(1.0, 10, 0.1, staircase=True)(25) == pytest.approx(0.01, rel=1e-12)
    assert SGD(learning_rate=lambda: 0.3).learning_rate == 0.3  # Keras 3's no-argument callable


def test_in_place_lazy_build_and_skips(xp, rng):
    ws, grads = make(xp, rng, np.float32, steps=2)
    frozen = Variable(xp.asarray(rng.normal(size=(4,)).astype(np.float32)), name="frozen", trainable=False)
    ids, before = [id(w.value) for w in ws], [host_copy(w.value) for w in ws + [frozen]]
    opt = Adam()
    assert not opt.built and opt.iterations == 0
    opt.apply([grads[0][0], None, grads[0][2], xp.ones(4, np.float32)], ws + [frozen])
    assert [id(w.value) for w in ws] == ids
    assert np.array_equal(to_numpy(ws[1].value), before[1])  # no gradient
    assert np.array_equal(to_numpy(frozen.value), before[3])  # trainable=False
    assert not np.array_equal(to_numpy(ws[0].value), before[0])
    assert opt.iterations == 1 and id(frozen) not in opt._index
    for w in ws:  # slots built for every trainable variable, even one without a gradient yet
        m = opt._slot(w, "momentum")
        assert type(m) is type(w.value) and m.dtype == w.dtype and m.shape == w.shape
    opt.apply_gradients(zip(grads[1], ws))
    assert opt.iterations == 2 and [id(w.value) for w in ws] == ids


def test_zero_gradients_leave_adam_weights_unchanged(xp, rng):
    ws, _ = make(xp, rng, np.float32)
    before = [host_copy(w.value) for w in ws]
    opt = Adam(learning_rate=0.5, amsgrad=True)
    for _ in range(3):
        opt.apply([xp.zeros_like(w.value) for w in ws], ws)
    for w, b in zip(ws, before):
        assert np.array_equal(to_numpy(w.value), b)


def test_exclude_from_weight_decay(xp, rng):
    kernel, bias = Variable(xp.ones((2, 2)), name="dense/kernel"), Variable(xp.ones(2), name="dense/bias")
    opt = SGD(learning_rate=0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.apply([xp.zeros((2, 2)), xp.zeros(2)], [kernel, bias])
    assert_close(kernel.value, np.full((2, 2), 1 - 0.1 * 0.5))
    assert np.array_equal(to_numpy(bias.value), np.ones(2))
    with pytest.raises(ValueError, match="before"):
        opt.exclude_from_weight_decay(var_names=["kernel"])


@pytest.mark.parametrize("opt_fn", [lambda: SGD(momentum=0.9, nesterov=True), lambda: Adam(amsgrad=True),
                                    lambda: RMSprop(momentum=0.5, centered=True), lambda: AdamW()])
def test_state_round_trip_continues_bit_identically(xp, rng, opt_fn):
    ws, grads = make(xp, rng, np.float32, steps=4)
    a = opt_fn()
    for gs in grads[:2]:
        a.apply(gs, ws)
    state, arrays = a.get_state()
    state = json.loads(json.dumps(state))
    copies = [Variable(w.value.copy(), name=w.name) for w in ws]
    b = opt_fn()
    b.build(copies)
    b.set_state(state, arrays)
    assert b.iterations == 2
    for gs in grads[2:]:
        a.apply(gs, ws)
        b.apply(gs, copies)
    for w, c in zip(ws, copies):
        assert np.array_equal(to_numpy(w.value), to_numpy(c.value))
    with pytest.raises(ValueError, match="slot arrays"):
        b.set_state(state, arrays[:-1])
    with pytest.raises(ValueError, match="shape"):
        b.set_state(state, [np.zeros((1,), np.float32)] + arrays[1:])


def test_move_slots(rng):
    ws, grads = make(np, rng, np.float64, steps=1)
    opt = Adam()
    opt.apply(grads[0], ws)
    moved = []
    opt._move_slots(lambda a: moved.append(a) or a * 2)
    assert len(moved) == 2 * len(ws)
    assert np.array_equal(opt._slot(ws[0], "momentum"), 2 * moved[0])


@pytest.mark.parametrize("opt", [
    SGD(learning_rate=ExponentialDecay(0.1, 10, 0.9, staircase=True), momentum=0.9, nesterov=True,
        clipnorm=1.0),
    Adam(learning_rate=CosineDecay(0.0, 100, warmup_target=0.1, warmup_steps=10), amsgrad=True,
         global_clipnorm=2.0),
    RMSprop(learning_rate=0.01, rho=0.8, momentum=0.1, centered=True, clipvalue=0.5, name="r"),
    AdamW(weight_decay=0.1, epsilon=1e-6),
])
def test_config_round_trip(opt):
    config = json.loads(json.dumps(optimizers.serialize(opt)))
    again = optimizers.deserialize(config)
    assert type(again) is type(opt) and again.get_config() == opt.get_config()
    assert optimizers.get(config).get_config() == opt.get_config()


def test_get_by_name_and_errors():
    assert type(optimizers.get("Adam")) is Adam and type(optimizers.get("rmsprop")) is RMSprop
    assert type(optimizers.get("SGD")) is SGD and type(optimizers.get("adamw")) is AdamW
    opt = SGD()
    assert optimizers.get(opt) is opt
    assert opt.learning_rate == 0.01 and Adam().get_config()["epsilon"] == 1e-7
    err = assert_raises_naming(ValueError, "'adamx'", optimizers.get, "adamx")
    assert "rmsprop" in str(err)
    assert_raises_naming(ValueError, "learning_rate=-1", SGD, learning_rate=-1)
    assert_raises_naming(ValueError, "learning_rate='fast'", Adam, learning_rate="fast")
    assert_raises_naming(ValueError, "momentum=1.5", SGD, momentum=1.5)
    assert_raises_naming(ValueError, "beta_1=1.0", Adam, beta_1=1.0)
    assert_raises_naming(ValueError, "clipvalue=0.5", SGD, clipnorm=1.0, clipvalue=0.5)
    assert_raises_naming(ValueError, "weight_decay=None", AdamW, weight_decay=None)
    assert_raises_naming(ValueError, "decay_steps=0", ExponentialDecay, 0.1, 0, 0.9)
    assert_raises_naming(TypeError, "nesterov='yes'", SGD, nesterov="yes")


def test_learning_rate_setter_and_apply_errors(rng):
    w = Variable(np.ones(3), name="w")
    opt = SGD(learning_rate=0.1)
    opt.learning_rate = 0.5  # what ReduceLROnPlateau does
    opt.apply([np.ones(3)], [w])
    assert_close(w.value, np.full(3, 0.5))
    assert_raises_naming(ValueError, "learning_rate=-0.1", setattr, opt, "learning_rate", -0.1)
    scheduled = SGD(learning_rate=ExponentialDecay(0.1, 10, 0.5))
    assert_raises_naming(TypeError, "learning_rate=0.5", setattr, scheduled, "learning_rate", 0.5)
    assert_raises_naming(ValueError, "(2,)", opt.apply, [np.ones(2)], [w])
    with pytest.raises(ValueError, match="No gradients"):
        opt.apply([None], [w])
    with pytest.raises(ValueError, match="build"):
        Adam().apply([np.ones(3)])


@pytest.mark.parametrize("kind", ["sgd", "nesterov", "adam"])
def test_against_pytorch(rng, kind):
    torch = pytest.importorskip("torch")
    w0 = rng.normal(size=(4, 6))
    grads = [rng.normal(size=(4, 6)) for _ in range(5)]
    w, tw = Variable(w0.copy(), name="w"), torch.tensor(w0.copy(), requires_grad=True)
    if kind == "adam":  # Keras' epsilon is torch's times sqrt(1 - b2^t): with 0 the two rules agree
        opt, topt = Adam(learning_rate=0.1, epsilon=0.0), torch.optim.Adam([tw], lr=0.1, eps=0.0)
    else:
        nesterov = kind == "nesterov"
        opt = SGD(learning_rate=0.1, momentum=0.9, nesterov=nesterov)
        topt = torch.optim.SGD([tw], lr=0.1, momentum=0.9, nesterov=nesterov)
    for g in grads:
        opt.apply([g], [w])
        tw.grad = torch.tensor(g)
        topt.step()
    assert_close(w.value, tw.detach().numpy(), what=f"{kind} vs torch")


class _NaNAt(optimizers.schedules.LearningRateSchedule):
    def __init__(self, bad_step, value=math.nan):
        self.bad_step, self.value = bad_step, value

    def __call__(self, step):
        return self.value if step >= self.bad_step else 0.01


@pytest.mark.parametrize("lr, step, shown", [
    (lambda step: float("nan"), 0, "nan"),
    (lambda: -0.5, 0, "-0.5"),
    (lambda step: "fast", 0, "'fast'"),
    (_NaNAt(2), 2, "nan"),
    (_NaNAt(0, math.inf), 0, "inf"),
])
def test_bad_scheduled_learning_rate_is_refused_before_any_update(rng, lr, step, shown):
    """A callable or schedule whose value is NaN, infinite, negative or not a number is a ValueError
    naming the step and the value, raised before the step changes a weight (it used to be multiplied
    into every weight); steps before it are applied as usual. A model with BatchNormalization: its
    moving statistics, which the forward pass moves, stay as they were too."""
    from cnnkit import layers, models

    model = models.Sequential([layers.Input((4, 4, 2)), layers.Conv2D(3, 3), layers.BatchNormalization(),
                               layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile(optimizer=Adam(learning_rate=lr), loss="sparse_categorical_crossentropy")
    x, y = rng.random((4, 4, 4, 2)).astype("float32"), rng.integers(0, 2, 4)
    for _ in range(step):
        model.train_on_batch(x, y)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=rf"returned {re.escape(shown)} at step {step}\b") as err:
        model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert "finite float >= 0" in str(err.value)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(new, old)
    assert model.optimizer.iterations == step


def test_error_messages_quote_at_most_200_characters_of_a_config():
    """A config read from a file can hold megabytes; the error quotes a bounded prefix of it."""
    big = "x" * 10**6
    configs = [{"class_name": "Adam", "config": {big: 1}}, {"class_name": "Adam", "config": {"learning_rate": big}},
               {"class_name": "Adam", "config": big}, {"class_name": big}, {"class_name": ["Adam"]},
               {"class_name": "SGD", "config": {"learning_rate": {"class_name": "CosineDecay", "config": {big: 2}}}},
               {"class_name": "SGD", "config": {"learning_rate": {"class_name": big}}}]
    for config in configs:
        with pytest.raises(ValueError) as err:
            optimizers.deserialize(config)
        assert len(str(err.value)) < 1000, str(err.value)[:300]
    with pytest.raises(ValueError) as err:
        Adam().set_state({"iterations": -1, "slots": [big]}, [])
    assert len(str(err.value)) < 1000
