"""Freezing: ``layer.trainable = False`` and ``model.trainable = False`` as Keras programs use them
(transfer learning): frozen variables provably unchanged by fit, no optimizer state, counted as
non-trainable, frozen BatchNormalization in inference mode; checked against Keras 3 itself."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import layers
from helpers import summary_text


def mlp(dtype=None):
    return fc.Sequential([
        fc.Input(shape=(6,)),
        layers.Dense(8, activation="relu", dtype=dtype, name="base"),
        layers.Dense(5, activation="tanh", dtype=dtype, name="middle"),
        layers.Dense(3, activation="softmax", dtype=dtype, name="head"),
    ])


def data(rng, n=64):
    return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, size=n)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_a_frozen_layer_does_not_change_and_has_no_optimizer_state(backend, rng, optimizer):
    model = mlp()
    model.get_layer("base").trainable = False
    before = model.get_weights()
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])
    model.fit(*data(rng), batch_size=16, epochs=2, verbose=0)
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert all(not np.array_equal(a, b) for a, b in zip(after[2:], before[2:]))
    assert not any(name.startswith("base/") for name in model.optimizer.state)
    assert [n for n, _ in model.trainable_variables] == ["middle/kernel", "middle/bias", "head/kernel", "head/bias"]
    assert len(model.trainable_weights) == 4 and len(model.non_trainable_weights) == 2 and len(model.weights) == 6


def test_summary_counts_frozen_parameters_as_non_trainable():
    model = mlp()
    model.get_layer("base").trainable = False
    text = summary_text(model)
    assert "Total params: 119" in text
    assert "Trainable params: 63" in text
    assert "Non-trainable params: 56" in text


def test_freezing_a_nested_model_then_fine_tuning_as_the_transfer_learning_guide(backend, rng):
    fc.set_seed(3)
    base = fc.Sequential([fc.Input(shape=(6,)), layers.Dense(8, activation="relu"), layers.Dense(8, activation="relu")],
                         name="base_model")
    base.trainable = False
    inputs = fc.Input(shape=(6,))
    x = base(inputs, training=False)
    outputs = layers.Dense(3, activation="softmax")(x)
    model = fc.Model(inputs, outputs)
    assert [len(model.trainable_weights), len(model.non_trainable_weights)] == [2, 4]
    frozen = base.get_weights()
    model.compile(optimizer=fc.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x_train, y_train = data(rng)
    model.fit(x_train, y_train, epochs=2, verbose=0)
    for a, b in zip(base.get_weights(), frozen):
        np.testing.assert_array_equal(a, b)
    base.trainable = True  # fine-tuning: unfreeze, recompile with a low rate, train again
    assert len(model.trainable_weights) == 6
    model.compile(optimizer=fc.optimizers.Adam(1e-5), loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=1, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(base.get_weights(), frozen))


def test_freezing_between_fits_takes_effect_and_drops_optimizer_state(backend, rng, tmp_path):
    model = mlp()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    x, y = data(rng)
    model.fit(x, y, epochs=1, verbose=0)
    assert any(name.startswith("base/") for name in model.optimizer.state)
    model.get_layer("base").trainable = False
    kept = model.get_layer("base").get_weights()
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(model.get_layer("base").get_weights(), kept):
        np.testing.assert_array_equal(a, b)
    assert not any(name.startswith("base/") for name in model.optimizer.state)
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert loaded.get_layer("base").trainable is False and loaded.get_layer("head").trainable is True
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    loaded.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(loaded.get_layer("base").get_weights(), kept):
        np.testing.assert_array_equal(a, b)


def test_a_frozen_batch_normalization_runs_in_inference_mode(backend, rng):
    model = fc.Sequential([fc.Input(shape=(4,)), layers.Dense(6), layers.BatchNormalization(), layers.Dense(2)])
    bn = model.layers[1]
    x = rng.normal(size=(32, 4)).astype(np.float32)
    model.compile(loss="mse", optimizer="sgd")
    model.fit(x, rng.normal(size=(32, 2)), epochs=1, verbose=0)
    bn.trainable = False
    stats = [w.copy() for w in bn.get_weights()]
    assert len(bn.non_trainable_weights) == 4 and bn.trainable_weights == []
    np.testing.assert_allclose(fc.to_numpy(model(x, training=True)), model.predict(x), rtol=1e-5, atol=1e-6)
    model.fit(x, rng.normal(size=(32, 2)), epochs=1, verbose=0)
    for a, b in zip(bn.get_weights(), stats):
        np.testing.assert_array_equal(a, b)


def test_frozen_layers_under_mixed_precision_keep_their_weights(rng):
    model = mlp(dtype="mixed_float16")
    model.get_layer("middle").trainable = False
    before = model.get_layer("middle").get_weights()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    model.fit(*data(rng), epochs=2, verbose=0)
    for a, b in zip(model.get_layer("middle").get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(model.get_layer("head").get_weights()[0], mlp().get_layer("head").get_weights()[0])


def test_trainable_takes_only_a_bool_and_configs_keep_it():
    layer = layers.Dense(2)
    with pytest.raises(TypeError, match="trainable: expected True or False"):
        layer.trainable = "no"
    model = mlp()
    model.get_layer("middle").trainable = False
    again = fc.models.model_from_json(model.to_json())
    assert [l.trainable for l in again.layers] == [True, False, True]
    frozen = fc.Sequential([fc.Input(shape=(3,)), layers.Dense(2)])
    frozen.trainable = False
    assert fc.models.clone_model(frozen).layers[0].trainable is False


def test_a_frozen_first_layer_trains_as_keras_trains_it(rng):
    keras = pytest.importorskip("keras")
    keras.config.set_dtype_policy("float64")
    try:
        theirs = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(8, activation="relu"),
                                   keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(3, activation="softmax")])
    finally:
        keras.config.set_dtype_policy("float32")
    theirs.layers[0].trainable = False
    ours = mlp(dtype="float64")
    ours.layers[0].trainable = False
    weights = [rng.normal(scale=0.5, size=w.shape) for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    x = rng.normal(size=(48, 6)).astype(np.float32).astype(np.float64)
    y = rng.integers(0, 3, size=48)
    for model, sgd in ((theirs, keras.optimizers.SGD(0.1, momentum=0.9)), (ours, fc.optimizers.SGD(0.1, momentum=0.9))):
        model.compile(optimizer=sgd, loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=12, epochs=2, shuffle=False, verbose=0)
    assert [len(ours.trainable_weights), len(ours.non_trainable_weights)] == [
        len(theirs.trainable_weights), len(theirs.non_trainable_weights)]
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ours.get_weights()[0], weights[0])
