"""Optimizers against update rules written out here independently, in float64."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.optimizers import SGD, Adam, AdamW


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
        fc.optimizers.get("rmsprop")


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
        tp = torch.nn.Parameter(torch.tensor(p0))
        topt = theirs([tp])
        with fc.use_backend("numpy"):
            layer = fc.Dense(4, use_bias=False, dtype="float64")
            layer.set_weights([p0])
        opt = ours()
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
