"""Hostile input on the model, layers, losses and optimizers: each class of problem a probe of
release 0.1 found, on every backend. Expected: a clear error raised before anything changes,
or the right result; never a silently wrong number."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import fcgpu as fc


def _mlp(**kw):
    return fc.Sequential([fc.Dense(6, activation="tanh"), fc.Dense(3)], **kw)


# -- inference never changes what the next backward uses -----------------------------------
@pytest.mark.parametrize("inference", ["predict", "evaluate", "call_infer"])
def test_inference_between_forward_and_backward_changes_no_gradient(backend, rng, inference):
    x, xv = rng.normal(size=(8, 4)), rng.normal(size=(5, 4))  # another batch size too
    dy = rng.normal(size=(8, 3))
    model = _mlp()
    model.compile(loss="softmax_cross_entropy", optimizer="sgd")
    model(x)
    reference = model.backward(dy)
    expected = [fc.to_numpy(layer.kernel_grad).copy() for layer in model.layers]
    model(x)
    if inference == "predict":
        model.predict(xv)
    elif inference == "evaluate":
        model.evaluate(xv, rng.integers(0, 3, size=5))
    else:
        model.infer(xv)
    dx = model.backward(dy)
    np.testing.assert_array_equal(fc.to_numpy(dx), fc.to_numpy(reference))
    for layer, grad in zip(model.layers, expected):
        np.testing.assert_array_equal(fc.to_numpy(layer.kernel_grad), grad)


# -- the caller's arrays may change after forward ---------------------------------------------
def test_changing_input_or_output_after_forward_does_not_change_the_gradient(backend, rng):
    layer = fc.Dense(3, activation="relu")
    x = rng.normal(size=(4, 5)).astype(np.float32)
    dy = rng.normal(size=(4, 3)).astype(np.float32)
    layer(x)
    layer.backward(dy)
    expected = fc.to_numpy(layer.kernel_grad).copy(), fc.to_numpy(layer.backward(dy)).copy()
    xd = backend.from_numpy(x)  # an array of the layer's own backend, kept by reference before
    y = layer(xd)
    xd[...] = backend.from_numpy(np.full_like(x, 7.0))
    y[...] = backend.from_numpy(np.full((4, 3), -1.0, np.float32))
    dx = layer.backward(dy)
    np.testing.assert_array_equal(fc.to_numpy(layer.kernel_grad), expected[0])
    np.testing.assert_array_equal(fc.to_numpy(dx), expected[1])


def test_a_layer_refuses_input_that_overflows_its_dtype(backend):
    layer = fc.Dense(3, dtype="float16")
    with pytest.raises(ValueError, match="x: expected finite values, got values that overflow float16"):
        layer(np.full((2, 4), 1e6))
    assert not layer.built  # refused before building
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(fc.to_numpy(layer(np.full((2, 4), 1.0)))).all()


# -- one optimizer, one model -------------------------------------------------------------
def test_one_optimizer_in_two_models_is_refused(backend, rng):
    opt = fc.optimizers.Adam(lr=0.01)
    a, b = _mlp(), _mlp()
    x, y = rng.normal(size=(8, 4)), rng.integers(0, 3, size=8)
    a.compile(loss="softmax_cross_entropy", optimizer=opt)
    a.train_step(x, y)
    b.build((None, 4))
    before = b.get_weights()
    with pytest.raises(ValueError, match="optimizer: this Adam already updates a parameter 'dense/kernel' of another model"):
        b.compile(loss="softmax_cross_entropy", optimizer=opt)
    # Stepping the second model's layers directly is refused too, before anything changes.
    b(x)
    b.backward(np.ones((8, 3)))
    with pytest.raises(ValueError, match="another model"):
        opt.step(b)
    for w0, w1 in zip(before, b.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    opt.reset()
    b.compile(loss="softmax_cross_entropy", optimizer=opt)  # a reset optimizer is free again


def test_learning_rate_setters_are_checked():
    opt = fc.optimizers.SGD(lr=0.1)
    for attribute in ("lr", "learning_rate"):
        with pytest.raises(ValueError, match=f"{attribute}: expected a value in"):
            setattr(opt, attribute, -5)
        with pytest.raises(TypeError, match=f"{attribute}: expected a number"):
            setattr(opt, attribute, "fast")
    assert opt.lr == 0.1 and opt.learning_rate == 0.1


# -- binary cross-entropy meets a sigmoid output -----------------------------------------------
@pytest.mark.parametrize("order", ["compile_then_add", "add_then_compile"])
def test_bce_on_a_saturated_sigmoid_still_learns(backend, order):
    """Keras computes this loss from the sigmoid layer's logits: a saturated output keeps a gradient."""
    model = fc.Sequential()
    if order == "compile_then_add":
        model.compile(loss="binary_crossentropy", optimizer=fc.optimizers.SGD(lr=0.1))
    model.add(fc.Dense(1, activation="sigmoid"))
    if order == "add_then_compile":
        model.compile(loss="binary_crossentropy", optimizer=fc.optimizers.SGD(lr=0.1))
    model.build((None, 1))
    model.set_weights([np.array([[40.0]]), np.array([0.0])])  # sigmoid(40) rounds to 1 in float32
    x, y = np.ones((4, 1), np.float32), np.zeros(4)
    first = model.evaluate(x, y, return_dict=True)["loss"]
    assert first == pytest.approx(40.0, rel=1e-5)  # softplus(40), not a clipped -log(1e-7) = 16.1
    history = model.fit(x, y, epochs=20, batch_size=4, verbose=0)
    # z = 40 falls by about 2 lr per step (dW and db are both ~1): the old clipped loss stayed at 16.1
    assert history.history["loss"][-1] < first - 3
    # predict still gives probabilities
    p = model.predict(x)
    assert ((p >= 0) & (p <= 1)).all()


def test_probabilities_outside_the_unit_interval_are_refused(backend):
    loss = fc.losses.BinaryCrossEntropy(from_logits=False)
    with pytest.raises(ValueError, match=r"pred: BinaryCrossEntropy\(from_logits=False\) takes probabilities in \[0, 1\]"):
        loss.forward(np.array([[1.5], [0.2]], np.float32), np.array([1.0, 0.0]))
    model = fc.Sequential([fc.Dense(1)])  # linear output: not probabilities
    model.compile(loss="binary_crossentropy", optimizer="sgd")
    model.build((None, 2))
    before = model.get_weights()
    with pytest.raises(ValueError, match="loss: .* takes probabilities in \\[0, 1\\], but the last layer 'dense' has activation 'linear'"):
        model.fit(np.ones((4, 2)), np.ones(4), verbose=0)
    np.testing.assert_array_equal(before[0], model.get_weights()[0])


# -- a diverging fit stops --------------------------------------------------------------
def test_fit_stops_at_the_first_non_finite_loss(backend, rng):
    model = fc.Sequential([fc.Dense(1)])
    model.compile(loss="mse", optimizer=fc.optimizers.SGD(lr=1e3))  # diverges within a few steps
    x = rng.normal(size=(64, 3)).astype(np.float32) * 100
    y = rng.normal(size=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=50, batch_size=4, verbose=0)
    messages = [str(w.message) for w in caught if "training stopped" in str(w.message)]
    assert len(messages) == 1 and "epoch 1, batch " in messages[0]
    assert history.stopped is not None and history.stopped["epoch"] == 0
    assert len(history.history["loss"]) == 1 and not np.isfinite(history.history["loss"][0])
    assert 1 <= history.stopped["batch"] <= 16


def test_fit_names_the_first_non_finite_batch(backend, rng):
    """One poisoned weight after a few steps: the warning names the batch where the loss went."""
    model = fc.Sequential([fc.Dense(1)])
    model.compile(loss="mse", optimizer=fc.optimizers.SGD(lr=0.01))
    x, y = rng.normal(size=(400, 3)).astype(np.float32), rng.normal(size=400)  # 100 batches: read every 5th
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    seen = []

    class Poison(fc.optimizers.SGD):
        def step(self, target):
            seen.append(1)
            super().step(target)
            if len(seen) == 3:  # after the 3rd update the 4th batch's loss is NaN
                target.layers[0].kernel[...] = np.nan

    model.compile(loss="mse", optimizer=Poison(lr=0.01))
    with pytest.warns(RuntimeWarning, match="epoch 1, batch 4: training stopped"):
        history = model.fit(x, y, epochs=3, batch_size=4, verbose=0, shuffle=False)
    assert history.stopped == {"epoch": 0, "batch": 4} and len(history.history["loss"]) == 1


# -- build and add change nothing when they fail ---------------------------------------------
def test_set_weights_then_build_keeps_the_weights(backend):
    layer = fc.Dense(2)
    w = [np.arange(6, dtype=np.float32).reshape(3, 2), np.array([1.0, -1.0], np.float32)]
    layer.set_weights(w)
    layer.build(3)
    layer.build((None, 3))
    np.testing.assert_array_equal(layer.get_weights()[0], w[0])
    model = fc.Sequential([layer])
    model.build((None, 3))
    np.testing.assert_array_equal(model.get_weights()[0], w[0])


def test_add_of_an_incompatible_layer_changes_nothing(backend):
    model = fc.Sequential([fc.Dense(4)])
    model.build((None, 3))
    bad = fc.Dense(2)
    bad.build(5)
    with pytest.raises(ValueError, match="takes 5 features but 'dense' gives 4"):
        model.add(bad)
    assert not bad.name_is_set and bad.name == "dense" and len(model.layers) == 1


def test_layers_of_two_backends_are_refused_when_added(backend_named):
    first, second = fc.Dense(4), fc.Dense(2)
    with fc.use_backend(backend_named("numpy")):
        first.build(3)
    with fc.use_backend(backend_named("cupy-standin")):
        second.build(4)
    model = fc.Sequential([first])
    with pytest.raises(ValueError, match="lives on the cupy backend but 'dense' on the numpy backend"):
        model.add(second)
    assert len(model.layers) == 1


def test_import_torch_state_dict_with_a_bad_array_leaves_the_model_unbuilt(backend):
    model = fc.Sequential([fc.Dense(4, activation="relu"), fc.Dense(2)])
    sd = {"0.weight": np.ones((4, 3)), "0.bias": np.zeros(4), "2.weight": np.full((2, 4), np.nan), "2.bias": np.zeros(2)}
    rng_before = fc.initializers.get_rng().bit_generator.state
    with pytest.raises(ValueError, match="expected finite values"):
        fc.interop.import_torch_state_dict(model, sd)
    assert not model.built
    assert fc.initializers.get_rng().bit_generator.state == rng_before


def test_torch_keys_are_taken_in_module_order(backend, rng):
    widths = [3] + [4] * 10 + [2]
    layers = [fc.Dense(w, activation="relu" if i < 10 else None) for i, w in enumerate(widths[1:])]
    source = fc.Sequential(layers)
    source.build((None, 3))
    sd = fc.interop.export_torch_state_dict(source)
    assert "20.weight" in sd
    shuffled = dict(sorted(sd.items()))  # as a format that sorts its keys as strings lists them
    target = fc.Sequential([fc.Dense(w, activation="relu" if i < 10 else None) for i, w in enumerate(widths[1:])])
    fc.interop.import_torch_state_dict(target, shuffled)
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- flags and setters are checked like constructors ----------------------------------------
def test_flags_are_checked(backend, rng):
    model = _mlp()
    model.compile(loss="softmax_cross_entropy", optimizer="sgd")
    x, y = rng.normal(size=(8, 4)), rng.integers(0, 3, size=8)
    with pytest.raises(TypeError, match="shuffle: expected True or False, got 'no'"):
        model.fit(x, y, shuffle="no", verbose=0)
    assert not model.built
    model.build((None, 4))
    with pytest.raises(ValueError, match="line_length: expected a positive int, got -5"):
        model.summary(line_length=-5)
    with pytest.raises(ValueError, match="verbose"):
        model.fit(x, y, verbose=True)


# -- half parameters keep float32 optimizer state ---------------------------------------------
@pytest.mark.parametrize("through", ["layer", "model"])
def test_adam_on_float16_parameters_keeps_float32_moments(backend, through):
    """A constant gradient of 1e-3: Adam moves by lr a step (200 steps: -0.2). With float16 moments
    the second moment underflows and the steps grow like lr*sqrt(t) (0.1 gave -1.83)."""
    layer = fc.Dense(1, use_bias=False, dtype="float16")
    layer.build(1)
    layer.set_weights([np.zeros((1, 1), np.float16)])
    opt = fc.optimizers.Adam(lr=1e-3)
    target = fc.Sequential([layer]) if through == "model" else layer
    x, dy = np.ones((1, 1), np.float16), np.full((1, 1), 1e-3, np.float16)
    for _ in range(200):
        target.forward(x)
        target.backward(dy)
        opt.step(target)
    state = opt.state["dense/kernel"]
    assert all(v.dtype == np.float32 for v in state.values())
    assert float(fc.to_numpy(layer.kernel)[0, 0]) == pytest.approx(-0.2, rel=0.02)
