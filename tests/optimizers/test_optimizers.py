"""Optimizers against update rules written out here independently, in float64: torch.optim's for
SGD/Adam/AdamW, Keras 3's for RMSprop/Adagrad (and the libraries themselves where installed);
their kernels against the NumPy backend; state, iterations and configs through save and load."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.backends.numpy.backend import NumpyBackend
from fcgpu.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop, state_dtype
from fcgpu.testing import count_device_ops, stand_in_backend
from support import kernel_checks as kc


# -- references (torch.optim's documented algorithms, dampening 0, maximize False) ----------------
def sgd_reference(p, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    p = p.astype(np.float64).copy()
    buf = None
    for g in grads:
        d = g + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


def adam_reference(p, grads, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    p = p.astype(np.float64).copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


CASES = {
    "sgd": (lambda: SGD(lr=0.1), lambda p, gs: sgd_reference(p, gs, 0.1)),
    "sgd_wd": (lambda: SGD(lr=0.1, weight_decay=0.05), lambda p, gs: sgd_reference(p, gs, 0.1, weight_decay=0.05)),
    "momentum": (lambda: SGD(lr=0.1, momentum=0.9), lambda p, gs: sgd_reference(p, gs, 0.1, 0.9)),
    "nesterov": (
        lambda: SGD(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
        lambda p, gs: sgd_reference(p, gs, 0.05, 0.8, True, 0.01),
    ),
    "adam": (lambda: Adam(lr=0.01), lambda p, gs: adam_reference(p, gs, 0.01)),
    "adam_l2": (
        lambda: Adam(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
        lambda p, gs: adam_reference(p, gs, 0.02, 0.8, 0.99, 1e-6, 0.1),
    ),
    "adamw": (lambda: AdamW(lr=0.01), lambda p, gs: adam_reference(p, gs, 0.01, weight_decay=0.01, decoupled=True)),
    "adamw_strong": (
        lambda: AdamW(lr=0.05, weight_decay=0.5),
        lambda p, gs: adam_reference(p, gs, 0.05, weight_decay=0.5, decoupled=True),
    ),
}


def run_steps(make_opt, dtype, steps, seed=0):
    """A Dense layer's parameters after ``steps`` updates from fixed gradients; also the inputs."""
    rng = np.random.default_rng(seed)
    layer = fc.Dense(4, dtype=dtype)
    layer.build(3)
    start = [w.astype(np.float64) for w in layer.get_weights()]
    grads = [(rng.normal(size=(3, 4)), rng.normal(size=4)) for _ in range(steps)]
    opt = make_opt()
    b = layer.backend
    for gk, gb in grads:
        layer.kernel_grad = b.from_numpy(gk.astype(dtype))
        layer.bias_grad = b.from_numpy(gb.astype(dtype))
        opt.step([layer])
    return layer, opt, start, grads


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_updates_match_the_reference(backend, case, steps, dtype):
    make_opt, reference = CASES[case]
    layer, opt, start, grads = run_steps(make_opt, dtype, steps)
    # float32 gradients are what the float32 run saw: feed the reference the same rounded values.
    gs = [(gk.astype(dtype).astype(np.float64), gb.astype(dtype).astype(np.float64)) for gk, gb in grads]
    want_kernel = reference(start[0], [g[0] for g in gs])
    want_bias = reference(start[1], [g[1] for g in gs])
    got_kernel, got_bias = layer.get_weights()
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == "float64" else dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(got_kernel, want_kernel, **tol)
    np.testing.assert_allclose(got_bias, want_bias, **tol)
    assert not np.allclose(got_kernel, start[0])  # it moved
    assert opt.steps == {"dense/kernel": steps, "dense/bias": steps}


def test_state_is_keyed_by_name_and_lives_on_the_parameters_backend(backend):
    layer, opt, _, _ = run_steps(lambda: Adam(), "float32", 2)
    assert set(opt.state) == {"dense/kernel", "dense/bias"}
    for name, slots in opt.state.items():
        assert set(slots) == {"exp_avg", "exp_avg_sq"}
        for value in slots.values():
            assert backend.owns(value)
    layer, sgd, _, _ = run_steps(lambda: SGD(momentum=0.9), "float32", 1)
    assert backend.owns(sgd.state["dense/kernel"]["momentum_buffer"])
    _, plain, _, _ = run_steps(lambda: SGD(), "float32", 1)
    assert plain.state == {"dense/kernel": {}, "dense/bias": {}}


def test_state_moves_with_to_and_training_continues_identically(rng, backend_named):
    stand_in = backend_named("cupy-standin")

    def run(move_after):
        fc.set_seed(7)
        with fc.use_backend("numpy"):
            layer = fc.Dense(3, dtype="float64")
            layer.build(2)
        opt = Adam(lr=0.05)
        grads = np.random.default_rng(3).normal(size=(4, 2, 3))
        for i, g in enumerate(grads):
            if i == move_after:
                layer.to(stand_in)
                opt.to(stand_in)
                assert all(stand_in.owns(v) for s in opt.state.values() for v in s.values())
            layer.kernel_grad = layer.backend.from_numpy(g)
            layer.bias_grad = layer.backend.from_numpy(g.sum(axis=0))
            opt.step(layer)
        return layer.get_weights()

    for a, b in zip(run(move_after=2), run(move_after=99)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_state_follows_a_layer_moved_without_its_optimizer(backend_named):
    stand_in = backend_named("cupy-standin")
    with fc.use_backend("numpy"):
        layer = fc.Dense(2)
        layer(np.ones((3, 2)))
        layer.backward(np.ones((3, 2)))
    opt = SGD(lr=0.1, momentum=0.5)
    opt.step(layer)
    layer.to(stand_in)
    opt.step(layer)
    assert stand_in.owns(opt.state["dense/kernel"]["momentum_buffer"])


def test_step_checks_everything_before_changing_anything():
    with fc.use_backend("numpy"):
        a, b = fc.Dense(2, name="a"), fc.Dense(3, name="b")
        for layer in (a, b):
            layer(np.ones((1, 2)))
            layer.backward(np.ones((1, layer.units)))
    opt = SGD(lr=1.0, momentum=0.9)
    opt.step([a, b])
    # b is rebuilt with another shape: its state no longer fits, so nothing may move, not even a.
    b.build(4)
    b(np.ones((1, 4)))
    b.backward(np.ones((1, 3)))
    a.kernel_grad[...] = 1.0
    before = a.get_weights()
    with pytest.raises(ValueError, match="b/kernel"):
        opt.step([a, b])
    np.testing.assert_array_equal(a.get_weights()[0], before[0])
    c = fc.Dense(2, name="a")
    c.build(2)
    with pytest.raises(ValueError, match="two parameters are named 'a/kernel'"):
        opt.step([a, c])


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: SGD(lr=0.1, nesterov=True), ValueError, "momentum > 0"),
        (lambda: SGD(lr=-0.1), ValueError, "lr"),
        (lambda: SGD(lr=True), TypeError, "lr"),
        (lambda: SGD(momentum=-0.5), ValueError, "momentum"),
        (lambda: SGD(weight_decay=-1e-4), ValueError, "weight_decay"),
        (lambda: SGD(nesterov="yes", momentum=0.9), TypeError, "nesterov"),
        (lambda: Adam(beta1=1.0), ValueError, "beta1"),
        (lambda: Adam(beta2=-0.1), ValueError, "beta2"),
        (lambda: Adam(eps=-1e-8), ValueError, "eps"),
        (lambda: Adam(lr=float("nan")), ValueError, "lr"),
        (lambda: AdamW(weight_decay=-0.01), ValueError, "weight_decay"),
    ],
)
def test_invalid_hyperparameters(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_defaults_follow_pytorch():
    w = AdamW()
    assert (w.lr, w.beta1, w.beta2, w.eps, w.weight_decay) == (1e-3, 0.9, 0.999, 1e-8, 0.01)
    a = Adam()
    assert a.weight_decay == 0.0 and isinstance(fc.optimizers.get("adam"), Adam)
    assert fc.optimizers.get("sgd").lr == 0.01
    restored = fc.optimizers.get(SGD(lr=0.3, momentum=0.7, nesterov=True).get_config())
    assert (restored.lr, restored.momentum, restored.nesterov) == (0.3, 0.7, True)
    with pytest.raises(ValueError, match="optimizer"):
        fc.optimizers.get("adadelta")


def test_matches_torch_optim_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    p0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(5)]
    configs = [
        (lambda: SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
         lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
        (lambda: Adam(lr=0.01, weight_decay=0.1), lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1)),
        (lambda: AdamW(lr=0.01), lambda ps: torch.optim.AdamW(ps, lr=0.01)),
    ]  # fmt: skip
    for ours, theirs in configs:
        assert_same_as_torch(torch, ours(), theirs, p0, grads)


def assert_same_as_torch(torch, opt, make_torch_opt, p0, grads):
    """``opt`` on a float64 NumPy layer and torch.optim's ``make_torch_opt([p])`` take the same steps."""
    tp = torch.nn.Parameter(torch.tensor(p0))
    topt = make_torch_opt([tp])
    with fc.use_backend("numpy"):
        layer = fc.Dense(p0.shape[1], use_bias=False, dtype="float64")
        layer.set_weights([p0])
    for g in grads:
        tp.grad = torch.tensor(g)
        topt.step()
        layer.kernel_grad = g.copy()
        opt.step(layer)
    np.testing.assert_allclose(layer.get_weights()[0], tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_reference_sanity():
    # One plain SGD step by hand, and Adam's first step of size lr in every coordinate.
    assert sgd_reference(np.array([1.0]), [np.array([2.0])], 0.1)[0] == pytest.approx(0.8)
    got = adam_reference(np.array([1.0, -1.0]), [np.array([0.5, -3.0])], 0.01)
    np.testing.assert_allclose(got, [1.0 - 0.01, -1.0 + 0.01], rtol=1e-6)
    assert math.isclose(sgd_reference(np.array([0.0]), [np.array([1.0])] * 2, 1.0, 0.5)[0], -2.5)


def test_a_step_before_any_backward_is_an_error_not_an_update():
    layer = fc.Dense(2)
    layer.build(3)
    before = layer.get_weights()
    with pytest.raises(RuntimeError, match=r"dense/kernel: no gradient of shape \(3, 2\); run backward first"):
        SGD(lr=0.1, weight_decay=0.5).step(layer)
    np.testing.assert_array_equal(layer.get_weights()[0], before[0])


# -- RMSprop and Adagrad: Keras 3's update rules, written out here in float64 ----------------------
def rmsprop_reference(p, grads, lr, rho=0.9, momentum=0.0, eps=1e-7, centered=False, weight_decay=None, round_to=None):
    """keras/src/optimizers/rmsprop.py's update_step (and the base class's decoupled weight decay)."""
    p = p.astype(np.float64).copy()
    v, mg, m = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        if weight_decay:
            p = p - p * weight_decay * lr
        v = rho * v + (1 - rho) * np.square(g)
        if centered:
            mg = rho * mg + (1 - rho) * g
            denominator = v - np.square(mg) + eps
        else:
            denominator = v + eps
        increment = lr * g / np.sqrt(denominator)
        if momentum > 0:
            m = momentum * m + increment
            p = p - m
        else:
            p = p - increment
        if round_to is not None:  # the parameter is stored in round_to after every step
            p = p.astype(round_to).astype(np.float64)
    return p


def adagrad_reference(p, grads, lr, initial_accumulator_value=0.1, eps=1e-7, weight_decay=None, round_to=None):
    """keras/src/optimizers/adagrad.py's update_step."""
    p = p.astype(np.float64).copy()
    acc = np.full_like(p, initial_accumulator_value)
    for g in grads:
        if weight_decay:
            p = p - p * weight_decay * lr
        acc = acc + np.square(g)
        p = p - lr * g / np.sqrt(acc + eps)
        if round_to is not None:
            p = p.astype(round_to).astype(np.float64)
    return p


KERAS_CASES = {  # name: (optimizer, reference arguments, reference)
    "rmsprop": (lambda: RMSprop(0.01), dict(lr=0.01), rmsprop_reference),
    "rmsprop_momentum": (lambda: RMSprop(0.005, rho=0.8, momentum=0.9), dict(lr=0.005, rho=0.8, momentum=0.9), rmsprop_reference),
    "rmsprop_centered": (lambda: RMSprop(0.01, centered=True, epsilon=1e-6), dict(lr=0.01, centered=True, eps=1e-6), rmsprop_reference),
    "rmsprop_centered_momentum_decay": (lambda: RMSprop(0.01, momentum=0.5, centered=True, weight_decay=0.1),
                                        dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1), rmsprop_reference),
    "adagrad": (lambda: Adagrad(learning_rate=0.1), dict(lr=0.1), adagrad_reference),
    "adagrad_options": (lambda: Adagrad(0.05, initial_accumulator_value=0.5, epsilon=1e-5, weight_decay=0.2),
                        dict(lr=0.05, initial_accumulator_value=0.5, eps=1e-5, weight_decay=0.2), adagrad_reference),
}  # fmt: skip
KERAS_TOLERANCE = {
    "float64": dict(rtol=1e-12, atol=1e-13),
    "float32": dict(rtol=2e-5, atol=2e-6),
    "float16": dict(rtol=3e-3, atol=3e-3),  # a float32 update can round the float16 weight the other way
}


def _model_of(dtype):
    model = fc.Sequential([fc.Dense(4, dtype=dtype), fc.Dense(2, dtype=dtype)])
    model.build((None, 3))
    return model


@pytest.mark.parametrize("path", ["layer", "model"])
@pytest.mark.parametrize("case", sorted(KERAS_CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_keras_optimizers_follow_the_reference_over_50_steps(backend, case, dtype, path):
    """Per parameter (a layer) and per flat buffer (a model: one fused call per dtype)."""
    make_opt, kwargs, reference = KERAS_CASES[case]
    rng = np.random.default_rng(1)
    model = _model_of(dtype)
    layers = model.layers if path == "model" else [model.layers[0]]
    start = [w.astype(np.float64) for layer in layers for w in layer.get_weights()]
    shapes = [w.shape for w in start]
    grads = [[rng.normal(size=s).astype(dtype) for s in shapes] for _ in range(50)]
    opt = make_opt()
    for step in grads:
        if path == "model":
            model(np.ones((2, 3), dtype))
            model.backward(np.ones((2, 2), dtype), input_grad=False)
        for (layer, attr), g in zip([(l, a) for l in layers for a in ("kernel_grad", "bias_grad")], step):
            if path == "model":
                getattr(layer, attr)[...] = backend.from_numpy(g)  # the flat buffer's views
            else:
                setattr(layer, attr, backend.from_numpy(g))
        opt.step(model if path == "model" else layers)
    got = [w for layer in layers for w in layer.get_weights()]
    round_to = np.float16 if dtype == "float16" else None
    for k, (w0, w) in enumerate(zip(start, got)):
        want = reference(w0, [step[k].astype(np.float64) for step in grads], round_to=round_to, **kwargs)
        np.testing.assert_allclose(w.astype(np.float64), want, **KERAS_TOLERANCE[dtype])
    assert opt.iterations == 50 and set(opt.steps.values()) == {50}
    for slots in opt.state.values():
        assert set(slots) == set(opt._slots)
        assert all(v.dtype == (np.float32 if dtype == "float16" else np.dtype(dtype)) for v in slots.values())


@pytest.mark.parametrize("make", [lambda: RMSprop(momentum=0.9, centered=True), lambda: Adagrad(), lambda: SGD()])
def test_each_flat_buffer_is_one_kernel_on_the_stand_in(backend_named, make):
    with fc.use_backend(backend_named("cupy-standin")):
        model = _model_of("float32")
    opt = make()
    model(np.ones((2, 3), np.float32))
    model.backward(np.ones((2, 2), np.float32), input_grad=False)
    opt.step(model)  # lays the state out beside the flat buffer
    with count_device_ops() as ops:
        opt.step(model)
    assert ops.total == 1 and ops.by_kind["kernel"] == 1, ops.calls


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside Keras
def test_matches_keras_when_installed():
    """Keras 3 itself (on its torch backend), float64 variables; its learning rate is a float32 variable."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except Exception as e:  # not installed, or no usable backend
        pytest.skip(f"keras is not usable here: {e}")
    rng = np.random.default_rng(5)
    p0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(20)]
    configs = [
        (lambda: RMSprop(0.01, momentum=0.9, centered=True), lambda: keras.optimizers.RMSprop(0.01, momentum=0.9, centered=True)),
        (lambda: RMSprop(0.01, rho=0.8), lambda: keras.optimizers.RMSprop(0.01, rho=0.8)),
        (lambda: Adagrad(0.1, initial_accumulator_value=0.2), lambda: keras.optimizers.Adagrad(0.1, initial_accumulator_value=0.2)),
    ]  # fmt: skip
    for ours, theirs in configs:
        variable = keras.Variable(p0, dtype="float64")
        kopt = theirs()
        with fc.use_backend("numpy"):
            layer = fc.Dense(4, use_bias=False, dtype="float64")
            layer.set_weights([p0])
        opt = ours()
        for g in grads:
            kopt.apply([keras.ops.convert_to_tensor(g, dtype="float64")], [variable])
            layer.kernel_grad = g.copy()
            opt.step(layer)
        np.testing.assert_allclose(layer.get_weights()[0], keras.ops.convert_to_numpy(variable), rtol=1e-6, atol=1e-9)


def test_rmsprop_is_not_torchs_but_matches_it_where_the_formulas_meet():
    """torch.optim.RMSprop adds eps outside the root; with eps = 0 both are v = rho v + (1-rho) g^2,
    p -= lr g / sqrt(v) (centered and momentum alike)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    p0, grads = rng.normal(size=(3, 4)), [rng.normal(size=(3, 4)) for _ in range(10)]
    for centered, momentum in [(False, 0.0), (True, 0.0), (False, 0.9), (True, 0.5)]:
        assert_same_as_torch(
            torch,
            RMSprop(0.01, rho=0.9, momentum=momentum, epsilon=0.0, centered=centered),
            lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=0.0, momentum=momentum, centered=centered),
            p0,
            grads,
        )


def test_keras_optimizer_defaults_and_names():
    r, a = RMSprop(), Adagrad()
    assert (r.learning_rate, r.rho, r.momentum, r.epsilon, r.centered, r.weight_decay) == (0.001, 0.9, 0.0, 1e-7, False, None)
    assert (a.learning_rate, a.initial_accumulator_value, a.epsilon) == (0.001, 0.1, 1e-7)
    assert isinstance(fc.optimizers.get("rmsprop"), RMSprop) and isinstance(fc.optimizers.get("Adagrad"), Adagrad)
    assert RMSprop(momentum=0.5, centered=True)._slots == ("velocity", "average_gradient", "momentum")
    assert Adagrad()._slots == ("accumulator",)


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: RMSprop(rho=1.0), ValueError, "rho"),
        (lambda: RMSprop(momentum=-0.1), ValueError, "momentum"),
        (lambda: RMSprop(epsilon=-1.0), ValueError, "epsilon"),
        (lambda: RMSprop(centered="yes"), TypeError, "centered"),
        (lambda: RMSprop(weight_decay=-1.0), ValueError, "weight_decay"),
        (lambda: Adagrad(initial_accumulator_value=-0.1), ValueError, "initial_accumulator_value"),
        (lambda: Adagrad(epsilon="small"), TypeError, "epsilon"),
    ],
)
def test_invalid_keras_hyperparameters(make, error, words):
    with pytest.raises(error, match=words):
        make()


OPTIMIZERS_TO_SAVE = {
    "sgd_momentum": lambda: SGD(learning_rate=0.05, momentum=0.9),
    "adam": lambda: Adam(learning_rate=0.01),
    "adamw": lambda: AdamW(learning_rate=0.01),
    "rmsprop": lambda: RMSprop(learning_rate=0.01),
    "rmsprop_centered_momentum": lambda: RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
    "adagrad": lambda: Adagrad(learning_rate=0.05, initial_accumulator_value=0.2),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS_TO_SAVE))
def test_save_and_load_keep_the_optimizer_its_state_and_iterations(backend, name, rng, tmp_path):
    model = fc.Sequential([fc.Dense(5, activation="tanh"), fc.Dense(3)])
    model.compile(loss="softmax_cross_entropy", optimizer=OPTIMIZERS_TO_SAVE[name]())
    x, y = rng.normal(size=(24, 4)).astype(np.float32), rng.integers(0, 3, 24)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 6
    assert loaded.optimizer.steps == model.optimizer.steps
    ours, theirs = model.optimizer.state_dict()["state"], loaded.optimizer.state_dict()["state"]
    assert ours.keys() == theirs.keys() and all(ours[n].keys() == theirs[n].keys() for n in ours)
    for n in ours:
        for slot in ours[n]:
            np.testing.assert_array_equal(theirs[n][slot], ours[n][slot])
    for m in (model, loaded):
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- the kernels, compiled for the host, against the NumPy backend: the same roundings, 0 ulp ---------
KERNEL_DTYPES = [np.float32, np.float64, np.float16]


def _kernel_inputs(rng, dtype, n_states, offset=0.0):
    p = kc.sample(rng, dtype, (16, 12), scale=1.0)  # edge values first: +-0, +-inf, NaN, denormals, +-max
    g = kc.sample(rng, dtype, (16, 12), scale=0.1)[::-1].copy()
    states = [(np.abs(rng.standard_normal((16, 12))) * 0.01 + offset).astype(state_dtype(dtype)) for _ in range(n_states)]
    return p, g, states


def _on_both(run):
    with np.errstate(all="ignore"):
        return run(stand_in_backend()), run(NumpyBackend())


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_rmsprop_kernel_is_the_numpy_backend_to_the_bit(dtype, centered, momentum, weight_decay, rng):
    p, g, (v, mg, mom) = _kernel_inputs(rng, dtype, 3)

    def run(b):
        d = b.from_numpy
        arrays = [d(p), d(v), d(mg) if centered else None, d(mom) if momentum else None]
        b.rmsprop_update(arrays[0], d(g), *arrays[1:], 1e-3, 0.9, momentum, 1e-7, weight_decay)
        return [b.to_numpy(a) for a in arrays if a is not None]

    for name, got, want in zip(["param", "velocity", "state"], *_on_both(run)):
        kc.assert_ulp(got, want, 0, f"rmsprop {name} ({np.dtype(dtype).name})")


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adagrad_kernel_is_the_numpy_backend_to_the_bit(dtype, weight_decay, rng):
    p, g, (acc,) = _kernel_inputs(rng, dtype, 1, offset=0.1)

    def run(b):
        arrays = [b.from_numpy(p), b.from_numpy(acc)]
        b.adagrad_update(arrays[0], b.from_numpy(g), arrays[1], 1e-2, 1e-7, weight_decay)
        return [b.to_numpy(a) for a in arrays]

    for name, got, want in zip(["param", "accumulator"], *_on_both(run)):
        kc.assert_ulp(got, want, 0, f"adagrad {name} ({np.dtype(dtype).name})")
