"""Weight constraints (fcgpu.constraints) with Keras 3's formulas: against Keras itself on the
same weights and gradients, applied after each optimizer update (flat buffers and per parameter,
NumPy and the stand-in), in Dense and the normalization layers, under mixed precision and loss
scaling, through configs and saved files."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import constraints
from fcgpu.constraints import MaxNorm, MinMaxNorm, NonNeg, UnitNorm
from fcgpu.optimizers import SGD, Adam
from fcgpu.testing import count_device_ops, stand_in_backend


def keras_module():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except Exception as e:  # not installed, or no usable backend
        pytest.skip(f"keras is not usable here: {e}")
    return keras


CASES = {
    "max_norm": ("max_norm", None),
    "non_neg": ("non_neg", "non_neg"),
    "unit_norm": ("unit_norm", UnitNorm()),
    "min_max_norm": (MinMaxNorm(0.5, 0.8, rate=0.7), MaxNorm(0.3)),
    "max_norm_axes": (MaxNorm(1.5, axis=[0, 1]), None),
    "unit_norm_rows": (UnitNorm(axis=1), None),
}


def model_of(kernel_constraint=None, bias_constraint=None, dtype="float64"):
    model = fc.Sequential([fc.Dense(4, dtype=dtype, kernel_constraint=kernel_constraint, bias_constraint=bias_constraint),
                           fc.Dense(2, dtype=dtype)])
    model.build((None, 3))
    weights = model.get_weights()
    weights[0] = weights[0] * 3  # norms above the bounds, some weights negative
    model.set_weights(weights)
    return model


def train(model, opt, steps, path):
    backend = model.layers[0].backend
    for grads in steps:
        if path == "model":
            model(np.ones((2, 3)))
            model.backward(np.ones((2, 2)), input_grad=False)
        for (layer, attr), g in zip([(l, a) for l in model.layers for a in ("kernel_grad", "bias_grad")], grads):
            if path == "model":
                getattr(layer, attr)[...] = backend.from_numpy(g)
            else:
                setattr(layer, attr, backend.from_numpy(g))
        opt.step(model if path == "model" else model.layers)
    return model.get_weights()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside Keras
@pytest.mark.parametrize("path", ["model", "layers"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_keras_after_a_few_steps(backend, case, path):
    """Keras 3 (torch backend), float64 variables with the same constraints, SGD on the same
    gradients. Keras's torch backend computes maximum(w, 0) and the clips in float32 (a Python
    number there is a float32 tensor): rtol 1e-6."""
    keras = keras_module()
    kernel_c, bias_c = CASES[case]
    model = model_of(kernel_c, bias_c)
    start = model.get_weights()
    rng = np.random.default_rng(0)
    steps = [[rng.normal(size=w.shape) for w in start] for _ in range(3)]
    variables = [keras.Variable(w, dtype="float64") for w in start]
    for v, c in zip(variables, (kernel_c, bias_c)):
        ours = constraints.get(c)
        v.constraint = None if ours is None else keras.constraints.get(constraints.serialize(ours))
    kopt = keras.optimizers.SGD(0.125)
    for grads in steps:
        kopt.apply([keras.ops.convert_to_tensor(g, dtype="float64") for g in grads], variables)
    got = train(model, SGD(0.125), steps, path)
    for w, v in zip(got, variables):
        np.testing.assert_allclose(w, keras.ops.convert_to_numpy(v), rtol=1e-6, atol=1e-8)
    free = model_of()
    free.set_weights(start)
    unconstrained = train(free, SGD(0.125), steps, path)
    assert np.abs(got[0] - unconstrained[0]).max() > 1e-2  # the constraint acted: the check above could fail


def test_the_formulas_and_names():
    w = np.array([[3.0, 0.1], [4.0, -0.2]])
    np.testing.assert_allclose(MaxNorm(2)(w)[:, 0], np.array([3.0, 4.0]) * (2 / (5 + 1e-7)))
    np.testing.assert_allclose(MaxNorm(2)(w)[:, 1], w[:, 1] / (1 + 1e-7 / np.hypot(0.1, 0.2)))
    np.testing.assert_array_equal(NonNeg()(w), [[3.0, 0.1], [4.0, 0.0]])
    np.testing.assert_allclose(np.linalg.norm(UnitNorm()(w), axis=0), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(MinMaxNorm(0.5, 1.0)(w), axis=0), [1.0, 0.5], rtol=1e-6)
    for name, cls in (("max_norm", MaxNorm), ("non_neg", NonNeg), ("unit_norm", UnitNorm), ("min_max_norm", MinMaxNorm)):
        assert type(constraints.get(name)) is cls and type(constraints.get(cls.__name__)) is cls
    assert MaxNorm().get_config() == {"max_value": 2.0, "axis": 0}
    assert MinMaxNorm().get_config() == {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}
    assert constraints.Constraint().get_config() == {} and NonNeg().get_config() == {}
    with pytest.raises(ValueError, match="kernel_constraint"):
        fc.Dense(3, kernel_constraint="max_nrom")
    with pytest.raises(ValueError, match="max_value"):
        MinMaxNorm(1.0, 0.5)
    with pytest.raises(TypeError, match="axis"):
        MaxNorm(axis="0")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_configs_are_keras_configs():
    keras = keras_module()
    for ours in (MaxNorm(3.0, axis=1), NonNeg(), UnitNorm(axis=[0, 1]), MinMaxNorm(0.1, 2.0, 0.5)):
        theirs = keras.constraints.get(constraints.serialize(ours))
        assert type(theirs).__name__ == type(ours).__name__ and theirs.get_config() == ours.get_config()


@pytest.mark.parametrize("layer", ["BatchNormalization", "LayerNormalization"])
def test_normalization_layers_apply_gamma_and_beta_constraints(backend, layer, rng):
    x, y = rng.normal(size=(32, 4)).astype(np.float32), rng.normal(size=(32, 3)).astype(np.float32) * 5

    def fitted(**kw):
        model = fc.Sequential([fc.Dense(3), getattr(fc, layer)(**kw)])
        model.compile(loss="mse", optimizer=SGD(0.5))
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        return model.layers[1].get_weights()[:2]  # gamma, beta (then the moving statistics)

    gamma, beta = fitted(gamma_constraint="non_neg", beta_constraint=MaxNorm(0.01))
    assert (gamma >= 0).all() and np.linalg.norm(beta) <= 0.01 * (1 + 1e-6)
    free_gamma, free_beta = fitted()
    assert np.linalg.norm(free_beta) > 0.01 and not np.array_equal(gamma, free_gamma)
    config = getattr(fc, layer)(gamma_constraint="non_neg").get_config()
    assert config["gamma_constraint"] == {"class_name": "NonNeg", "config": {}} and "beta_constraint" not in config


def test_the_half_copy_follows_and_a_skipped_step_leaves_the_weights(rng):
    """mixed_float16 on the stand-in: the projection writes the float16 copy again, and a step
    that loss scaling skips (an overflow) changes nothing, as Keras applies no constraint then."""
    try:
        with fc.use_backend(stand_in_backend()):
            model = fc.Sequential([fc.Dense(8, dtype="mixed_float16", kernel_constraint=MaxNorm(0.5),
                                            bias_constraint="non_neg"), fc.Dense(3, activation="softmax", dtype="mixed_float16")])
            model.build(4)
        model.compile(loss="sparse_categorical_crossentropy", optimizer=Adam(0.01))
        weights = model.get_weights()
        weights[0] = weights[0] * 4
        model.set_weights(weights)
        before = model.get_weights()
        x = rng.normal(size=(8, 4)).astype(np.float32)
        x[0] = 6e4  # inf in float16: the step is skipped
        model.train_step(x, rng.integers(0, 3, 8))
        for a, b in zip(model.get_weights(), before):
            np.testing.assert_array_equal(a, b)
        model.train_step(x[1:], rng.integers(0, 3, 7))
        kernel, bias = model.layers[0].get_weights()
        assert np.linalg.norm(kernel, axis=0).max() <= 0.5 * (1 + 1e-6) and (bias >= 0).all()
        halves = {k: v.get() for k, v in model.layers[0].half_copies().items()}
        np.testing.assert_array_equal(halves[f"{model.layers[0].name}/kernel"], kernel.astype(np.float16))
        np.testing.assert_array_equal(halves[f"{model.layers[0].name}/bias"], bias.astype(np.float16))
    finally:
        fc.mixed_precision.set_global_policy("float32")


def test_device_operations_and_no_host_read():
    """No constraint: the step as before; each constraint adds a few elementwise operations after
    the fused update, and nothing moves to the host."""
    counts = {}
    for c in (None, "non_neg", "max_norm"):
        with fc.use_backend(stand_in_backend()):
            model = model_of(c, None, "float32")
        opt = Adam(0.01)
        steps = [[np.ones(w.shape, np.float32) for w in model.get_weights()]]
        train(model, opt, steps, "model")
        with count_device_ops() as ops:
            opt.step(model)
        assert not ops.transfers, ops.summary()
        counts[c] = ops.total
    assert counts[None] == 1 and counts[None] < counts["non_neg"] < counts["max_norm"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_saved_files_keep_the_constraints(rng, tmp_path):
    keras = keras_module()
    model = fc.Sequential([fc.Input((4,)), fc.Dense(3, kernel_constraint=MaxNorm(1.5), bias_constraint="non_neg")])
    model.compile(loss="mse", optimizer="sgd")
    x, y = rng.normal(size=(16, 4)).astype(np.float32), rng.normal(size=(16, 3)).astype(np.float32)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert loaded.layers[0].kernel_constraint == MaxNorm(1.5) and loaded.layers[0].bias_constraint == NonNeg()
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(theirs.layers[0].kernel_constraint, keras.constraints.MaxNorm)
    assert theirs.layers[0].kernel_constraint.max_value == 1.5
    assert isinstance(theirs.layers[0].bias_constraint, keras.constraints.NonNeg)
    back = fc.load_model(tmp_path / "m.keras")
    assert back.layers[0].kernel_constraint == MaxNorm(1.5) and back.layers[0].bias_constraint == NonNeg()
