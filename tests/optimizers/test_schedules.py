"""Learning rates: the ``learning_rate`` argument and its aliases, the checked setter, and the
schedules (Keras 3's formulas, written out here; Keras itself where installed) driving training,
through configs and model files."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop
from fcgpu.optimizers.schedules import (
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
)

STEPS = [0, 1, 2, 5, 9, 10, 11, 50, 99, 100, 101, 150, 1000]


# -- Keras's formulas (keras/src/optimizers/schedules/learning_rate_schedule.py) --------------------
def exponential(step, lr0, decay_steps, rate, staircase=False):
    p = step / decay_steps
    return lr0 * rate ** (math.floor(p) if staircase else p)


def cosine(step, lr0, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    def decayed(s, start):
        return start * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * (s / decay_steps))) + alpha)

    if warmup_target is None:
        return decayed(min(step, decay_steps), lr0)
    step = min(step, decay_steps + warmup_steps)
    if step < warmup_steps:
        return (warmup_target - lr0) * (step / warmup_steps) + lr0
    return decayed(step - warmup_steps, warmup_target)


def polynomial(step, lr0, decay_steps, end=0.0001, power=1.0, cycle=False):
    if cycle:
        decay_steps = decay_steps * (1.0 if step == 0 else math.ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    return (lr0 - end) * (1 - step / decay_steps) ** power + end


def inverse_time(step, lr0, decay_steps, rate, staircase=False):
    p = step / decay_steps
    return lr0 / (1 + rate * (math.floor(p) if staircase else p))


def restarts(step, lr0, first, t_mul=2.0, m_mul=1.0, alpha=0.0):
    """Walks the periods one by one (Keras computes the period in closed form)."""
    start, length, i = 0.0, float(first), 0
    while step >= start + length:
        start, length, i = start + length, length * t_mul, i + 1
    fraction = (step - start) / length
    return lr0 * ((1 - alpha) * m_mul**i * 0.5 * (1 + math.cos(math.pi * fraction)) + alpha)


def piecewise(step, boundaries, values):
    return next((v for b, v in zip(boundaries, values) if step <= b), values[-1])


SCHEDULES = {  # name: (ours, reference, Keras's constructor name and arguments)
    "exponential": (ExponentialDecay(0.1, 10, 0.5), lambda s: exponential(s, 0.1, 10, 0.5),
                    ("ExponentialDecay", (0.1, 10, 0.5), {})),
    "exponential_staircase": (ExponentialDecay(0.2, 7, 0.9, staircase=True),
                              lambda s: exponential(s, 0.2, 7, 0.9, True),
                              ("ExponentialDecay", (0.2, 7, 0.9), {"staircase": True})),
    "cosine": (CosineDecay(0.1, 100), lambda s: cosine(s, 0.1, 100), ("CosineDecay", (0.1, 100), {})),
    "cosine_alpha": (CosineDecay(0.1, 100, alpha=0.1), lambda s: cosine(s, 0.1, 100, 0.1),
                     ("CosineDecay", (0.1, 100), {"alpha": 0.1})),
    "cosine_warmup": (CosineDecay(0.0, 100, warmup_target=0.2, warmup_steps=10),
                      lambda s: cosine(s, 0.0, 100, 0.0, 0.2, 10),
                      ("CosineDecay", (0.0, 100), {"warmup_target": 0.2, "warmup_steps": 10})),
    "polynomial": (PolynomialDecay(0.1, 100), lambda s: polynomial(s, 0.1, 100), ("PolynomialDecay", (0.1, 100), {})),
    "polynomial_power_cycle": (PolynomialDecay(0.1, 40, end_learning_rate=0.01, power=2.0, cycle=True),
                               lambda s: polynomial(s, 0.1, 40, 0.01, 2.0, True),
                               ("PolynomialDecay", (0.1, 40), {"end_learning_rate": 0.01, "power": 2.0, "cycle": True})),
    "polynomial_sqrt": (PolynomialDecay(0.5, 30, end_learning_rate=0.0, power=0.5),
                        lambda s: polynomial(s, 0.5, 30, 0.0, 0.5),
                        ("PolynomialDecay", (0.5, 30), {"end_learning_rate": 0.0, "power": 0.5})),
    "inverse_time": (InverseTimeDecay(0.1, 10, 0.5), lambda s: inverse_time(s, 0.1, 10, 0.5),
                     ("InverseTimeDecay", (0.1, 10, 0.5), {})),
    "inverse_time_staircase": (InverseTimeDecay(0.2, 7, 2.0, staircase=True),
                               lambda s: inverse_time(s, 0.2, 7, 2.0, True),
                               ("InverseTimeDecay", (0.2, 7, 2.0), {"staircase": True})),
    "restarts": (CosineDecayRestarts(0.1, 10), lambda s: restarts(s, 0.1, 10),
                 ("CosineDecayRestarts", (0.1, 10), {})),
    "restarts_mul_alpha": (CosineDecayRestarts(0.1, 12, t_mul=1.5, m_mul=0.5, alpha=0.1),
                           lambda s: restarts(s, 0.1, 12, 1.5, 0.5, 0.1),
                           ("CosineDecayRestarts", (0.1, 12), {"t_mul": 1.5, "m_mul": 0.5, "alpha": 0.1})),
    "restarts_t1": (CosineDecayRestarts(0.1, 25, t_mul=1.0, m_mul=0.9), lambda s: restarts(s, 0.1, 25, 1.0, 0.9),
                    ("CosineDecayRestarts", (0.1, 25), {"t_mul": 1.0, "m_mul": 0.9})),
    "cosine_warmup_from_lr": (CosineDecay(0.01, 50, alpha=0.2, warmup_target=0.1, warmup_steps=20),
                              lambda s: cosine(s, 0.01, 50, 0.2, 0.1, 20),
                              ("CosineDecay", (0.01, 50), {"alpha": 0.2, "warmup_target": 0.1, "warmup_steps": 20})),
    "piecewise": (PiecewiseConstantDecay([10, 100], [0.1, 0.05, 0.01]), lambda s: piecewise(s, [10, 100], [0.1, 0.05, 0.01]),
                  ("PiecewiseConstantDecay", ([10, 100], [0.1, 0.05, 0.01]), {})),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_follow_keras_formulas(name):
    schedule, reference, _ = SCHEDULES[name]
    for step in STEPS:
        assert schedule(step) == pytest.approx(reference(step), rel=1e-14, abs=1e-18), step
    again = fc.optimizers.schedules.deserialize(fc.optimizers.schedules.serialize(schedule))
    assert again == schedule and type(again) is type(schedule) and again.get_config() == schedule.get_config()


def test_known_values_of_the_newer_schedules():
    assert PolynomialDecay(0.1, 100, end_learning_rate=0.0)(50) == pytest.approx(0.05)
    assert PolynomialDecay(0.1, 100)(250) == pytest.approx(0.0001)  # held at the end rate
    cyc = PolynomialDecay(1.0, 10, end_learning_rate=0.0, cycle=True)
    assert cyc(0) == 1.0 and cyc(10) == 0.0 and cyc(15) == pytest.approx(0.25)  # over 20 steps: 1 - 15/20
    assert InverseTimeDecay(1.0, 10, 1.0)(10) == pytest.approx(0.5)
    assert InverseTimeDecay(1.0, 10, 1.0, staircase=True)(19) == pytest.approx(0.5)
    sgdr = CosineDecayRestarts(1.0, 10)  # periods [0, 10), [10, 30), [30, 70)
    assert sgdr(0) == 1.0 and sgdr(5) == pytest.approx(0.5) and sgdr(10) == pytest.approx(1.0)
    assert sgdr(20) == pytest.approx(0.5) and sgdr(30) == pytest.approx(1.0)
    assert CosineDecayRestarts(1.0, 10, m_mul=0.5)(10) == pytest.approx(0.5)
    assert CosineDecayRestarts(1.0, 10, t_mul=1.0)(25) == pytest.approx(0.5)


@pytest.mark.parametrize("schedule", [PolynomialDecay(0.1, 5, power=2.0, cycle=True), InverseTimeDecay(0.1, 2, 0.3),
                                      CosineDecayRestarts(0.1, 3, t_mul=1.5, m_mul=0.8, alpha=0.05)])
def test_the_newer_schedules_travel_with_the_optimizer_in_a_model_file(schedule, tmp_path, rng):
    model = fc.Sequential([fc.Dense(4, activation="relu"), fc.Dense(2)])
    model.compile(loss="softmax_cross_entropy", optimizer=Adam(learning_rate=schedule))
    x, y = rng.normal(size=(24, 3)).astype(np.float32), rng.integers(0, 2, 24)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert type(loaded.optimizer.schedule) is type(schedule) and loaded.optimizer.schedule == schedule
    assert loaded.optimizer.learning_rate == pytest.approx(schedule(3))


def test_known_values():
    assert ExponentialDecay(0.1, 10, 0.5)(20) == pytest.approx(0.025)
    assert ExponentialDecay(0.1, 10, 0.5, staircase=True)(19) == pytest.approx(0.05)
    assert CosineDecay(0.1, 100)(50) == pytest.approx(0.05) and CosineDecay(0.1, 100)(500) == 0.0
    assert CosineDecay(0.0, 100, warmup_target=0.2, warmup_steps=10)(5) == pytest.approx(0.1)
    p = PiecewiseConstantDecay([10, 100], [1.0, 0.5, 0.1])
    assert [p(s) for s in (0, 10, 11, 100, 101)] == [1.0, 1.0, 0.5, 0.5, 0.1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside Keras
def test_schedules_match_keras_when_installed():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except Exception as e:
        pytest.skip(f"keras is not usable here: {e}")
    for name, (schedule, _, (cls, args, kwargs)) in SCHEDULES.items():
        theirs = getattr(keras.optimizers.schedules, cls)(*args, **kwargs)
        for step in STEPS:
            want = float(keras.ops.convert_to_numpy(theirs(step)))  # computed in float32
            assert schedule(step) == pytest.approx(want, rel=2e-6, abs=1e-8), (name, step)  # float32 cancels near 0


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: ExponentialDecay(0.1, 0, 0.5), ValueError, "decay_steps"),
        (lambda: ExponentialDecay(0.1, 10, -0.5), ValueError, "decay_rate"),
        (lambda: ExponentialDecay(0.1, 10, 0.5, staircase="no"), TypeError, "staircase"),
        (lambda: CosineDecay(float("nan"), 10), ValueError, "initial_learning_rate"),
        (lambda: CosineDecay(0.1, -1), ValueError, "decay_steps"),
        (lambda: CosineDecay(0.1, 10, warmup_target="x"), TypeError, "warmup_target"),
        (lambda: PiecewiseConstantDecay([10, 5], [1.0, 0.5, 0.1]), ValueError, "strictly increasing"),
        (lambda: PiecewiseConstantDecay([10], [1.0]), ValueError, "one more value than boundaries"),
        (lambda: PiecewiseConstantDecay([], [1.0]), ValueError, "at least one boundary"),
        (lambda: PiecewiseConstantDecay(10, [1.0, 0.5]), TypeError, "lists of numbers"),
        (lambda: fc.optimizers.schedules.deserialize({"class_name": "Polynomial"}), ValueError, "unknown schedule"),
        (lambda: PolynomialDecay(0.1, 0), ValueError, "decay_steps"),
        (lambda: PolynomialDecay(0.1, 10, power=-1.0), ValueError, "power"),
        (lambda: PolynomialDecay(0.1, 10, cycle=1), TypeError, "cycle"),
        (lambda: InverseTimeDecay(0.1, -3, 0.5), ValueError, "decay_steps"),
        (lambda: InverseTimeDecay(0.1, 3, 0.5, staircase="yes"), TypeError, "staircase"),
        (lambda: CosineDecayRestarts(0.1, 0), ValueError, "first_decay_steps"),
        (lambda: CosineDecayRestarts(0.1, 10, t_mul=0.0), ValueError, "t_mul"),
        (lambda: CosineDecayRestarts(0.1, 10, m_mul=float("inf")), ValueError, "m_mul"),
    ],
)
def test_invalid_schedules(make, error, words):
    with pytest.raises(error, match=words):
        make()


# -- the learning_rate argument ----------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, RMSprop, Adagrad])
def test_learning_rate_and_its_alias(cls):
    assert cls(learning_rate=0.25).learning_rate == 0.25 and cls(lr=0.25).learning_rate == 0.25
    assert cls(0.25).lr == 0.25 and cls().learning_rate == cls.default_learning_rate
    with pytest.raises(TypeError, match="learning_rate and lr: lr is another name for learning_rate"):
        cls(learning_rate=0.1, lr=0.1)
    with pytest.raises(ValueError, match="lr: expected a value in"):
        cls(lr=-0.5)
    with pytest.raises(ValueError, match="learning_rate: expected a value in"):
        cls(learning_rate=float("inf"))
    opt = cls(learning_rate=0.1)
    for attribute in ("lr", "learning_rate"):
        with pytest.raises(ValueError, match=f"{attribute}: expected a value in"):
            setattr(opt, attribute, -1)
        with pytest.raises(TypeError, match=f"{attribute}: expected a number or a schedule"):
            setattr(opt, attribute, "fast")
    opt.lr = 0.5
    assert opt.learning_rate == 0.5 and opt.get_config()["learning_rate"] == 0.5
    assert fc.optimizers.get(opt.get_config()).get_config() == opt.get_config()
    scheduled = cls(learning_rate=ExponentialDecay(0.1, 10, 0.5))
    restored = fc.optimizers.get(scheduled.get_config())
    assert restored.schedule == scheduled.schedule and restored.get_config() == scheduled.get_config()


def test_adam_takes_keras_spellings_with_pytorch_defaults():
    a = Adam(beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    assert (a.beta1, a.beta2, a.eps) == (0.8, 0.99, 1e-6)
    assert Adam(beta_1=None).eps == 1e-8 and AdamW(learning_rate=0.01).weight_decay == 0.01
    for kwargs, words in [
        (dict(beta1=0.8, beta_1=0.8), "beta1 and beta_1"),
        (dict(beta2=0.9, beta_2=0.9), "beta2 and beta_2"),
        (dict(eps=1e-7, epsilon=1e-7), "eps and epsilon"),
    ]:
        with pytest.raises(TypeError, match=words):
            Adam(**kwargs)
    with pytest.raises(ValueError, match="beta_1"):
        Adam(beta_1=1.5)


def test_configs_of_release_0_1_still_load():
    old = {"class_name": "Adam", "lr": 0.02, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.0}
    assert fc.optimizers.get(old).learning_rate == 0.02
    assert fc.optimizers.get({"class_name": "SGD", "lr": 0.3, "momentum": 0.5, "nesterov": False}).momentum == 0.5


def test_a_schedule_is_not_replaced_by_a_number_but_by_a_schedule():
    opt = SGD(learning_rate=ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="learning_rate: this optimizer's learning rate is the schedule"):
        opt.learning_rate = 0.01
    opt.learning_rate = PiecewiseConstantDecay([1], [0.3, 0.2])
    assert opt.learning_rate == 0.3
    constant = SGD(learning_rate=0.1)
    constant.learning_rate = CosineDecay(0.05, 10)
    assert constant.learning_rate == 0.05 and constant.schedule == CosineDecay(0.05, 10)


# -- schedules driving training ----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_each_update_uses_the_schedule_at_the_iteration_count(backend, name):
    """A constant gradient g: update k (counted from 0) moves the weights by schedule(k) * g."""
    schedule, reference, _ = SCHEDULES[name]
    layer = fc.Dense(3, dtype="float64")
    layer.build(2)
    g = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]])
    opt = SGD(learning_rate=schedule)
    for k in range(12):
        assert opt.iterations == k and opt.learning_rate == pytest.approx(reference(k), rel=1e-15)
        before = layer.get_weights()[0]
        layer.kernel_grad = backend.from_numpy(g)
        layer.bias_grad = backend.from_numpy(np.zeros(3))
        opt.step(layer)
        np.testing.assert_allclose(before - layer.get_weights()[0], reference(k) * g, rtol=1e-12, atol=1e-16)
    opt.reset()
    assert opt.iterations == 0 and opt.learning_rate == reference(0)


def test_fit_steps_the_schedule_and_a_model_file_keeps_it(backend, rng, tmp_path):
    schedule = ExponentialDecay(0.1, 3, 0.5)
    model = fc.Sequential([fc.Dense(5, activation="relu"), fc.Dense(3)])
    model.compile(loss="softmax_cross_entropy", optimizer=RMSprop(learning_rate=schedule, momentum=0.5))
    x, y = rng.normal(size=(32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert model.optimizer.iterations == 8
    assert model.optimizer.learning_rate == pytest.approx(exponential(8, 0.1, 3, 0.5))
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert loaded.optimizer.schedule == schedule and loaded.optimizer.iterations == 8
    assert loaded.optimizer.learning_rate == model.optimizer.learning_rate
    for m in (model, loaded):
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 12
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_state_dict_keeps_the_iteration_count():
    opt = Adagrad(learning_rate=PiecewiseConstantDecay([2], [0.1, 0.01]))
    layer = fc.Dense(2)
    layer.build(2)
    for _ in range(3):
        layer.kernel_grad, layer.bias_grad = np.ones((2, 2), np.float32), np.ones(2, np.float32)
        opt.step(layer)
    state = opt.state_dict()
    assert state["iterations"] == 3 and opt.learning_rate == 0.01
    fresh = fc.optimizers.get(state["config"])
    fresh.load_state_dict(state, layer.backend)
    assert fresh.iterations == 3 and fresh.learning_rate == 0.01
    del state["iterations"]  # a model file has the step counts only: the count is their largest
    fresh.load_state_dict(state, layer.backend)
    assert fresh.iterations == 3
    with pytest.raises(ValueError, match="iterations"):
        fresh.load_state_dict({**state, "iterations": -1}, layer.backend)
