"""Keras habits an independent reading of the docs found missing: compile's positional order and
weighted_metrics, steps on arrays, Model.from_config and Keras-written JSON, input_shape on any
layer, Normalization(axis=None) with a 1-D adapt; each checked against Keras 3 where it computes."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import layers

keras = pytest.importorskip("keras")


def small(lib):
    return lib.Sequential([lib.Input(shape=(4,)), lib.layers.Dense(1, activation="sigmoid")])


def test_compile_takes_keras_positional_order_and_refuses_unknown_options():
    model = small(fc)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"], run_eagerly=False, jit_compile=False)
    assert type(model.optimizer).__name__ == "Adam" and model.metrics == ["accuracy"]
    with pytest.raises(TypeError, match="unexpected argument 'bogus'"):
        model.compile("adam", "mse", bogus=1)
    with pytest.raises(ValueError, match="compiled first"):
        small(fc).fit(np.zeros((2, 4)), np.zeros(2), verbose=0)


def test_metrics_ignore_sample_weights_and_weighted_metrics_take_them_as_keras():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 2, 64)
    w = np.where(y == 1, 10.0, 1.0)
    results = []
    for lib in (keras, fc):
        model = small(lib)
        model.set_weights([np.full((4, 1), 0.3, np.float32), np.zeros(1, np.float32)])
        model.compile(optimizer="sgd", loss="binary_crossentropy",
                      metrics=[lib.metrics.TruePositives(name="tp")], weighted_metrics=[lib.metrics.TruePositives(name="wtp")])
        results.append(model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True))
    theirs, ours = results
    assert ours["tp"] == pytest.approx(float(theirs["tp"]))
    assert ours["wtp"] == pytest.approx(float(theirs["wtp"]))
    assert ours["wtp"] > ours["tp"]


def test_steps_on_arrays_take_the_first_batches():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(256, 4)).astype(np.float32), rng.integers(0, 2, 256)
    model = small(fc)
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    assert model.predict(x, batch_size=32, steps=2).shape == (64, 1)
    assert model.evaluate(x, y, batch_size=32, steps=2, verbose=0) == pytest.approx(
        model.evaluate(x[:64], y[:64], batch_size=32, verbose=0))


def test_model_from_config_and_keras_written_json():
    inp = fc.Input(shape=(3,))
    functional = fc.Model(inp, layers.Dense(2)(inp))
    assert type(fc.Model.from_config(functional.get_config())).__name__ == "Functional"
    k_in = keras.Input(shape=(3,))
    theirs = keras.Model(k_in, keras.layers.Dense(2, activation="relu")(keras.layers.Dense(4)(k_in)))
    ours = fc.models.model_from_json(theirs.to_json())
    assert ours.count_params() == theirs.count_params()
    with pytest.raises(ValueError, match="config"):
        fc.models.model_from_config({"class_name": "Sequential", "config": {"layers": [{"class_name": "Conv2D"}]}})


def test_every_layer_takes_input_shape_and_normalization_takes_axis_none():
    assert fc.Sequential([layers.Dropout(0.1, input_shape=(3,)), layers.Dense(2)]).count_params() == 8
    assert fc.Sequential([layers.BatchNormalization(input_shape=(4,)), layers.Dense(1)]).count_params() == 21
    with pytest.raises(ValueError, match="input_shape"):
        layers.Activation("relu", input_shape=(0,))
    values = np.linspace(0.0, 10.0, 50)
    ours = layers.Normalization(axis=None)
    ours.adapt(values)
    theirs = keras.layers.Normalization(axis=None)
    theirs.adapt(values)
    np.testing.assert_allclose(fc.to_numpy(ours(values.reshape(-1, 1))).ravel(), np.asarray(theirs(values)).ravel(),
                               rtol=1e-5, atol=1e-6)


def test_a_checkpoint_the_model_cannot_write_is_refused_before_training(tmp_path):
    class ClippedReLU(layers.ReLU):  # a user's own layer: Keras has no class of its name
        pass

    model = fc.Sequential([layers.Dense(3, input_shape=(4,)), ClippedReLU(max_value=1.0), layers.Dense(2)])
    model.compile("sgd", "mse")
    before = model.get_weights()
    with pytest.raises(ValueError, match="cannot be saved as .keras"):
        model.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0,
                  callbacks=[fc.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"))])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not (tmp_path / "best.keras").exists()
