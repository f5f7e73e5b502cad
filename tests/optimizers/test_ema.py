"""Keras 3's moving average of the weights (use_ema, ema_momentum, ema_overwrite_frequency,
finalize_variable_values) for every optimizer: against Keras itself, per flat buffer and per
parameter, NumPy and the stand-in; at the end of fit; under loss scaling's device decision;
configs, saved files and the device operations a step costs."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.interop.keras_config import compile_to_keras
from fcgpu.optimizers import SGD, Adagrad, Adam, RMSprop
from fcgpu.testing import count_device_ops, stand_in_backend


def keras_module():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except Exception as e:  # not installed, or no usable backend
        pytest.skip(f"keras is not usable here: {e}")
    return keras


def model_of(dtype="float64"):
    model = fc.Sequential([fc.Dense(4, dtype=dtype), fc.Dense(2, dtype=dtype)])
    model.build((None, 3))
    return model


def train(model, opt, steps, path):
    backend = model.layers[0].backend
    for grads in steps:
        if path == "model":
            model(np.ones((2, 3)))
            model.backward(np.ones((2, 2)), input_grad=False)
        for (layer, attr), g in zip([(l, a) for l in model.layers for a in ("kernel_grad", "bias_grad")], grads):
            if path == "model":
                getattr(layer, attr)[...] = backend.from_numpy(g.astype(layer.dtype))
            else:
                setattr(layer, attr, backend.from_numpy(g.astype(layer.dtype)))
        opt.step(model if path == "model" else model.layers)
    return model.get_weights()


# Momenta a float32 holds exactly match Keras to the last bit (its torch backend rounds the
# momentum to float32: 0.99 differs by 1e-8 relative, the average up to 1e-6).
EMAS = {
    "every_step": (dict(use_ema=True, ema_momentum=0.5), dict(rtol=0, atol=1e-15)),
    "overwrite_every_3": (dict(use_ema=True, ema_momentum=0.75, ema_overwrite_frequency=3), dict(rtol=0, atol=1e-15)),
    "default_momentum": (dict(use_ema=True), dict(rtol=1e-6, atol=1e-7)),
}
PAIRS = {
    "sgd": (lambda kw: SGD(0.125, **kw), lambda k, kw: k.optimizers.SGD(0.125, **kw)),
    "rmsprop": (lambda kw: RMSprop(0.0078125, momentum=0.5, **kw), lambda k, kw: k.optimizers.RMSprop(0.0078125, momentum=0.5, **kw)),
    "adagrad": (lambda kw: Adagrad(0.125, **kw), lambda k, kw: k.optimizers.Adagrad(0.125, **kw)),
}  # fmt: skip


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside Keras
@pytest.mark.parametrize("path", ["model", "layers"])
@pytest.mark.parametrize("ema", sorted(EMAS))
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_matches_keras_before_and_after_finalizing(backend, pair, ema, path):
    keras = keras_module()
    kwargs, tolerance = EMAS[ema]
    ours, theirs = PAIRS[pair]
    model = model_of()
    start = model.get_weights()
    rng = np.random.default_rng(0)
    steps = [[rng.normal(size=w.shape) for w in start] for _ in range(7)]
    variables = [keras.Variable(w, dtype="float64") for w in start]
    kopt = theirs(keras, kwargs)
    for grads in steps:
        kopt.apply([keras.ops.convert_to_tensor(g, dtype="float64") for g in grads], variables)
    opt = ours(kwargs)
    got = train(model, opt, steps, path)
    for w, v in zip(got, variables):
        np.testing.assert_allclose(w, keras.ops.convert_to_numpy(v), **tolerance)
    kopt.finalize_variable_values(variables)
    opt.finalize_variable_values(model)
    final = model.get_weights()
    for w, v in zip(final, variables):
        np.testing.assert_allclose(w, keras.ops.convert_to_numpy(v), **tolerance)
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(final, got))  # the averages are not the weights


def test_fit_ends_with_the_averages_and_without_use_ema_nothing_changes(backend, rng):
    x, y = rng.normal(size=(32, 4)).astype(np.float32), rng.integers(0, 3, 32)

    def fitted(**kw):
        fc.set_seed(3)
        model = fc.Sequential([fc.Dense(8, activation="relu"), fc.Dense(3)])
        model.compile(loss="softmax_cross_entropy", optimizer=Adam(0.05, **kw))
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return model

    model = fitted(use_ema=True, ema_momentum=0.9)
    averages = model.optimizer.state_dict()["state"]
    for layer in model.layers:
        for name, param, _ in layer.parameters():
            np.testing.assert_array_equal(fc.backends.to_numpy(param), averages[name]["average"])
    plain = fitted()
    assert "average" not in next(iter(plain.optimizer.state_dict()["state"].values()))
    weights = plain.get_weights()
    plain.optimizer.finalize_variable_values(plain)
    for a, b in zip(plain.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(model.get_weights(), plain.get_weights()))


def test_loss_scaling_keeps_the_average_on_the_device():
    """mixed_float16 on the stand-in with a skipped step: the device-decided path (the average,
    the first-step rule and the overwrite from the scaler's state) ends where the host path ends."""
    rng = np.random.default_rng(5)
    batches = []
    for k in range(8):
        x = rng.standard_normal((8, 8)).astype(np.float32)
        if k in (0, 4):
            x[0, :] = 6e4  # an inf forward: a skipped step (the first one among them)
        batches.append((x, rng.integers(0, 3, 8)))

    def run(host_path):
        with fc.use_backend(stand_in_backend()):
            fc.set_seed(1)
            model = fc.Sequential([fc.Dense(16, activation="relu", dtype="mixed_float16"),
                                   fc.Dense(3, activation="softmax", dtype="mixed_float16")])
            model.build(8)
        inner = Adam(0.01, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=4)
        model.compile(loss="sparse_categorical_crossentropy",
                      optimizer=fc.optimizers.LossScaleOptimizer(inner, dynamic_growth_steps=3))
        if host_path:
            model.optimizer.inner.flat_step_ready = lambda flat: False
        for x, y in batches:
            model.train_step(x, y)
        assert model.optimizer.iterations == 6
        weights = model.get_weights()
        model.optimizer.finalize_variable_values(model)
        return weights, model.get_weights()

    try:
        (device, device_final), (host, host_final) = run(False), run(True)
    finally:
        fc.mixed_precision.set_global_policy("float32")
    for a, b in zip(device + device_final, host + host_final):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(device, device_final))


def test_device_operations_a_step():
    """The average: a few whole-buffer operations a flat buffer; no transfer."""
    counts = {}
    for kwargs in ({}, {"use_ema": True}, {"use_ema": True, "ema_overwrite_frequency": 5}):
        with fc.use_backend(stand_in_backend()):
            model = model_of("float32")
        opt = SGD(0.1, **kwargs)
        steps = [[np.ones(w.shape, np.float32) for w in model.get_weights()]] * 2
        train(model, opt, steps, "model")
        with count_device_ops() as ops:
            opt.step(model)  # the third update: no overwrite due
        assert not ops.transfers, ops.summary()
        counts[len(kwargs)] = ops.total
    assert counts[0] == 1 and counts[1] > 1 and counts[2] == counts[1]


def test_arguments_config_and_saved_files(rng, tmp_path):
    with pytest.raises(ValueError, match="ema_momentum"):
        SGD(use_ema=True, ema_momentum=1.5)
    with pytest.raises(ValueError, match="ema_overwrite_frequency"):
        Adam(use_ema=True, ema_overwrite_frequency=0)
    with pytest.raises(TypeError, match="use_ema"):
        Adam(use_ema="yes")
    assert "use_ema" not in Adam().get_config()
    opt = RMSprop(0.01, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=2, clipnorm=1.0)
    config = opt.get_config()
    assert (config["use_ema"], config["ema_momentum"], config["ema_overwrite_frequency"]) == (True, 0.9, 2)
    assert fc.optimizers.get(config).get_config() == config
    model = fc.Sequential([fc.Dense(5, activation="tanh"), fc.Dense(3)])
    model.compile(loss="softmax_cross_entropy", optimizer=opt)
    x, y = rng.normal(size=(24, 4)).astype(np.float32), rng.integers(0, 3, 24)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert loaded.optimizer.get_config() == config
    ours, theirs = model.optimizer.state_dict()["state"], loaded.optimizer.state_dict()["state"]
    for name in ours:
        np.testing.assert_array_equal(theirs[name]["average"], ours[name]["average"])
    for m in (model, loaded):
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    keras_compile, why = compile_to_keras({"loss": {"class_name": "MeanSquaredError"}, "optimizer": config})
    assert keras_compile is None and "use_ema" in why
