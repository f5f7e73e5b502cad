"""The training step bound once (issue 21, items 1, 2 and 4): the optimizer is bound to the model's
flat parameters, gradients, half copies and state at the first step, and bound again only when the
layout changes (a layer rebuilt, added, popped, moved or renamed) or a setting it read changes;
losses are stateless, the loss scale an argument."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.layers.context import TRAINING
from fcgpu.training.step import StepBinding


def _model(optimizer="adam"):
    fc.set_seed(0)
    model = fc.Sequential([fc.Dense(8, activation="relu"), fc.Dense(3)])
    model.compile(loss="softmax_cross_entropy", optimizer=optimizer, metrics=["accuracy"])
    return model


def _data(width=5, rows=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, width)).astype(np.float32), rng.integers(0, 3, rows)


@pytest.fixture
def bindings(monkeypatch):
    """Counts the bindings made."""
    made = []
    original = StepBinding.__init__

    def counting(self, model):
        made.append(model)
        original(self, model)

    monkeypatch.setattr(StepBinding, "__init__", counting)
    return made


def test_the_step_is_bound_once_for_a_layout(bindings):
    model = _model()
    x, y = _data()
    model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    model.train_step(x, y)
    assert len(bindings) == 1
    assert model.optimizer.bound_flat is model.flat_parameters()


def test_a_changed_layout_binds_again_and_trains_as_a_fresh_model(bindings):
    model = _model()
    x, y = _data()
    model.train_step(x, y)
    model.layers[1].build(9)
    model.layers[1].build(8)  # a layer rebuilt: new parameters, the flat buffers laid out again
    model.train_step(x, y)
    assert len(bindings) == 2
    flat = model.flat_parameters()
    assert model.optimizer.bound_flat is flat
    kernel = model.layers[1].kernel
    assert np.shares_memory(kernel, flat.params[np.dtype(np.float32)])  # the update writes what the layer reads
    model.pop()
    model.add(fc.Dense(4))
    model.train_step(x, y)
    assert len(bindings) == 3
    model.layers[0].name = "renamed"
    model.train_step(x, y)
    assert len(bindings) == 4
    assert "renamed/kernel" in model.optimizer.state


def test_compile_and_moving_bind_again(bindings):
    from fcgpu.testing import stand_in_backend

    model = _model()
    x, y = _data()
    model.train_step(x, y)
    model.compile(loss="softmax_cross_entropy", optimizer="sgd")
    model.train_step(x, y)
    model.to(stand_in_backend())
    model.train_step(x, y)
    assert len(bindings) == 3
    assert model.optimizer.bound_flat is model.flat_parameters()


def test_a_setting_changed_after_binding_takes_effect():
    """bind reads the betas once; set later, the next step binds again and updates with the new
    value: the same weights as a model whose optimizer had it from that step on (per parameter)."""
    x, y = _data()
    results = []
    for public in (False, True):
        model = _model(fc.optimizers.Adam(1e-2))
        model.train_step(x, y)
        model.optimizer.beta1 = 0.5
        assert model.optimizer.bound_flat is None
        if public:  # the checked path: each parameter on its own, the settings read at the call
            grad = model.loss.step(model.backend, model.forward(x, TRAINING), model.backend.from_numpy(y),
                                   model.backend.zeros((2,), np.float64), False)
            model.backward(grad, input_grad=False)
            layers = model.layers
            model.optimizer.step(layers)
        else:
            model.train_step(x, y)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "adagrad", "adamw"])
def test_the_bound_update_equals_the_checked_public_step(name):
    """apply (the trainer's, bound once) against Optimizer.step(model) (checks everything)."""
    x, y = _data()
    weights = []
    for via_public in (False, True):
        model = _model(name)
        for _ in range(4):
            if via_public:
                model.forward(x, TRAINING)
                grad = model.loss.step(model.backend, model.forward(x, TRAINING), model.backend.from_numpy(y),
                                       model.backend.zeros((2,), np.float64), False)
                model.backward(grad, input_grad=False)
                model.optimizer.step(model)
            else:
                model.train_step(x, y)
        weights.append(model.get_weights())
        assert model.optimizer.iterations == 4
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_a_loss_keeps_nothing_between_steps():
    model = _model()
    x, y = _data()
    model.train_step(x, y)
    assert model.loss.keeps_batch is False
    loss = fc.losses.SoftmaxCrossEntropy()
    loss.forward(np.zeros((2, 3), np.float32), np.array([0, 1]))  # the standalone pair keeps its batch
    assert loss.keeps_batch is True
    loss.backward()
    loss.release()
    assert loss.keeps_batch is False
