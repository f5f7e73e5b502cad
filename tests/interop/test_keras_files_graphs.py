"""Keras 3 files both ways for the normalization, activation, noise and reshaping layers and for
functional models (several inputs, fan-out, merges, nested models), checked against Keras itself:
what Keras wrote loads in fcgpu with the same predictions and parameters, what fcgpu wrote loads in
Keras with the same predictions and trains on there, and weights files go both ways."""
from __future__ import annotations

import json
import os
import warnings
import zipfile

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

import fcgpu as fc  # noqa: E402

L, K = fc.layers, keras.layers
RNG = np.random.default_rng(0)
X = RNG.standard_normal((7, 6)).astype(np.float32)
X1, X2 = X[:, :4].copy(), X[:, 4:].copy()
Y = RNG.standard_normal((7, 3)).astype(np.float32)

# name -> (its layers in Keras, the same in fcgpu); each sits between Dense(5) and Dense(3)
LAYERS = {
    "batch_normalization": (lambda: [K.BatchNormalization(momentum=0.5)], lambda: [L.BatchNormalization(momentum=0.5)]),
    "batch_normalization_plain": (lambda: [K.BatchNormalization(center=False, scale=False, epsilon=0.01)],
                                  lambda: [L.BatchNormalization(center=False, scale=False, epsilon=0.01)]),
    "layer_normalization": (lambda: [K.LayerNormalization(epsilon=1e-4)], lambda: [L.LayerNormalization(epsilon=1e-4)]),
    "normalization_given": (lambda: [K.Normalization(mean=[0.5] * 5, variance=[2.0] * 5)],
                            lambda: [L.Normalization(mean=[0.5] * 5, variance=[2.0] * 5)]),
    "normalization_inverted": (lambda: [K.Normalization(mean=0.25, variance=4.0, invert=True)],
                               lambda: [L.Normalization(mean=0.25, variance=4.0, invert=True)]),
    "relu": (lambda: [K.ReLU(max_value=0.6, negative_slope=0.1, threshold=0.05)],
             lambda: [L.ReLU(max_value=0.6, negative_slope=0.1, threshold=0.05)]),
    "leaky_relu": (lambda: [K.LeakyReLU(negative_slope=0.15)], lambda: [L.LeakyReLU(negative_slope=0.15)]),
    "elu": (lambda: [K.ELU(alpha=0.5)], lambda: [L.ELU(alpha=0.5)]),
    "prelu": (lambda: [K.PReLU(alpha_initializer="ones")], lambda: [L.PReLU(alpha_initializer="ones")]),
    "softmax": (lambda: [K.Softmax()], lambda: [L.Softmax()]),
    "gaussian_noise": (lambda: [K.GaussianNoise(0.2, seed=3)], lambda: [L.GaussianNoise(0.2, seed=3)]),
    "reshape_flatten": (lambda: [K.Reshape((5, 1)), K.Flatten()], lambda: [L.Reshape((5, 1)), L.Flatten()]),
}


def keras_sequential(name):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input(shape=(6,)), K.Dense(5, activation="tanh"), *LAYERS[name][0](),
                              K.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss="mse")
    model.fit(X, Y, epochs=3, batch_size=4, verbose=0)  # moving statistics and PReLU's alpha move
    return model


def fcgpu_sequential(name):
    fc.set_seed(2)
    model = fc.Sequential([fc.Input(shape=(6,)), fc.Dense(5, activation="tanh"), *LAYERS[name][1](), fc.Dense(3)])
    model.compile(optimizer=fc.optimizers.Adam(learning_rate=1e-2), loss="mse")
    model.fit(X, Y, epochs=3, batch_size=4, verbose=0)
    return model


def predict(model, x=X):
    return np.asarray(model.predict(x, verbose=0))


def trains_in_keras(model, x=X, y=Y):
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def same_weights(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_allclose(np.asarray(u, np.float64), np.asarray(v, np.float64), rtol=1e-6, atol=1e-7)


# -- the new layers in a Sequential ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_keras_sequential_of_each_layer_loads_in_fcgpu(tmp_path, name):
    model = keras_sequential(name)
    model.save(tmp_path / "k.keras")
    loaded = fc.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(loaded.predict(X), predict(model), rtol=1e-5, atol=1e-5)
    assert loaded.count_params() == model.count_params()
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]
    same_weights(loaded.get_weights(), model.get_weights())  # moving statistics included
    loaded.fit(X, Y, epochs=1, verbose=0)  # trains on in fcgpu
    assert np.isfinite(loaded.predict(X)).all()


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_an_fcgpu_sequential_of_each_layer_loads_in_keras_and_trains_on(tmp_path, name):
    model = fcgpu_sequential(name)
    model.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_allclose(predict(loaded), model.predict(X), rtol=1e-5, atol=1e-5)
    assert loaded.count_params() == model.count_params()
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    same_weights(loaded.get_weights(), model.get_weights())
    trains_in_keras(loaded)


def test_an_adapted_normalization_keeps_its_mean_variance_and_count_both_ways(tmp_path):
    keras.utils.set_random_seed(0)
    norm = K.Normalization()
    data = RNG.standard_normal((50, 6)).astype(np.float32) * 3 + 1
    norm.adapt(data)
    model = keras.Sequential([keras.Input(shape=(6,)), norm, K.Dense(2)])
    model.save(tmp_path / "k.keras")
    loaded = fc.load_model(tmp_path / "k.keras")
    mean, variance, count = loaded.layers[0].get_weights()
    np.testing.assert_allclose(mean, data.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(variance, data.var(axis=0), rtol=1e-4)
    assert count == model.layers[0].get_weights()[2]
    np.testing.assert_allclose(loaded.predict(X), predict(model), rtol=1e-5, atol=1e-5)
    fc.set_seed(0)
    mine = fc.Sequential([fc.Input(shape=(6,)), L.Normalization(), fc.Dense(2)])
    mine.layers[0].adapt(data)
    mine.save(tmp_path / "f.keras")
    back = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_allclose(back.layers[0].get_weights()[0], data.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(predict(back), mine.predict(X), rtol=1e-5, atol=1e-5)


def test_images_meet_a_flatten_both_ways(tmp_path):
    images = RNG.standard_normal((7, 2, 3)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(2, 3)), K.Flatten(), K.Dense(4), K.Reshape((2, 2)), K.Flatten()])
    model.save(tmp_path / "k.keras")
    loaded = fc.load_model(tmp_path / "k.keras")
    assert loaded.layers[0].get_config()["class_name"] == "Flatten" and loaded.output_shape == (None, 4)
    np.testing.assert_allclose(loaded.predict(images), predict(model, images), rtol=1e-5, atol=1e-6)
    loaded.save(tmp_path / "f.keras")
    back = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_allclose(predict(back, images), predict(model, images), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["batch_normalization", "prelu", "normalization_given", "reshape_flatten"])
def test_weights_files_of_each_layer_go_both_ways(tmp_path, name):
    theirs, mine = keras_sequential(name), fcgpu_sequential(name)
    theirs.save_weights(tmp_path / "k.weights.h5")
    mine.load_weights(tmp_path / "k.weights.h5")
    same_weights(mine.get_weights(), theirs.get_weights())
    np.testing.assert_allclose(mine.predict(X), predict(theirs), rtol=1e-5, atol=1e-5)
    fcgpu_sequential(name).save_weights(tmp_path / "f.weights.h5")
    theirs.load_weights(tmp_path / "f.weights.h5")
    same_weights(theirs.get_weights(), fcgpu_sequential(name).get_weights())


# -- functional models ---------------------------------------------------------------------------------
def keras_two_inputs():
    keras.utils.set_random_seed(3)
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    h = K.Concatenate()([K.Dense(5, activation="relu")(a), K.Dense(5, activation="relu")(b)])
    out = K.Dense(3)(K.BatchNormalization()(h))
    return keras.Model([a, b], out, name="two_inputs")


def fcgpu_two_inputs():
    fc.set_seed(3)
    a, b = fc.Input((4,), name="a"), fc.Input((2,), name="b")
    h = L.Concatenate()([fc.Dense(5, activation="relu")(a), fc.Dense(5, activation="relu")(b)])
    out = fc.Dense(3)(L.BatchNormalization()(h))
    return fc.Model([a, b], out, name="two_inputs")


def keras_residual():
    keras.utils.set_random_seed(4)
    x = keras.Input((6,))
    h = K.Dense(6, activation="tanh")(x)
    h = K.Add()([x, K.LayerNormalization()(h)])  # fan-out: x feeds the Dense and the Add
    h = K.Dense(6)(h)
    merged = [K.Subtract()([h, x]), K.Multiply()([h, x]), K.Average()([h, x]), K.Maximum()([h, x]),
              K.Minimum()([h, x])]
    return keras.Model(x, K.Dense(3)(K.Concatenate()(merged)), name="residual")


def fcgpu_residual():
    fc.set_seed(4)
    x = fc.Input((6,))
    h = fc.Dense(6, activation="tanh")(x)
    h = L.Add()([x, L.LayerNormalization()(h)])
    h = fc.Dense(6)(h)
    merged = [L.Subtract()([h, x]), L.Multiply()([h, x]), L.Average()([h, x]), L.Maximum()([h, x]), L.Minimum()([h, x])]
    return fc.Model(x, fc.Dense(3)(L.Concatenate()(merged)), name="residual")


def keras_nested():
    keras.utils.set_random_seed(5)
    encoder = keras.Sequential([keras.Input((6,)), K.Dense(4, activation="relu"), K.BatchNormalization()], name="encoder")
    i = keras.Input((4,))
    head = keras.Model(i, K.Dense(3)(K.PReLU()(K.Dense(4)(i))), name="head")
    x = keras.Input((6,), name="x")
    e = encoder(x)
    return keras.Model(x, head(K.Add()([e, K.Dense(4)(x)])), name="nested")


def fcgpu_nested():
    fc.set_seed(5)
    encoder = fc.Sequential([fc.Input((6,)), fc.Dense(4, activation="relu"), L.BatchNormalization()], name="encoder")
    i = fc.Input((4,))
    head = fc.Model(i, fc.Dense(3)(L.PReLU()(fc.Dense(4)(i))), name="head")
    x = fc.Input((6,), name="x")
    e = encoder(x)
    return fc.Model(x, head(L.Add()([e, fc.Dense(4)(x)])), name="nested")


GRAPHS = {"two_inputs": (keras_two_inputs, fcgpu_two_inputs, [X1, X2]), "residual": (keras_residual, fcgpu_residual, X),
          "nested": (keras_nested, fcgpu_nested, X)}


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_a_keras_functional_model_loads_in_fcgpu(tmp_path, graph):
    build, _, x = GRAPHS[graph]
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss="mse")
    model.fit(x, Y, epochs=2, batch_size=4, verbose=0)
    model.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*optimizer state.*")  # Keras's Adam state goes across
        loaded = fc.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(loaded.predict(x), predict(model, x), rtol=1e-5, atol=1e-5)
    assert loaded.count_params() == model.count_params()
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    same_weights(loaded.get_weights(), model.get_weights())
    assert loaded.get_compile_config()["optimizer"]["class_name"] == "Adam"
    state = loaded.optimizer.state_dict()
    assert set(state["steps"].values()) == {int(model.optimizer.iterations)} == {4}
    assert len(state["state"]) == len(model.trainable_weights)
    history = loaded.fit(x, Y, epochs=1, verbose=0)  # trains on, from Keras's optimizer state
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_an_fcgpu_functional_model_loads_in_keras_and_trains_on(tmp_path, graph):
    _, build, x = GRAPHS[graph]
    model = build()
    model.compile(optimizer=fc.optimizers.Adam(learning_rate=1e-2), loss="mse")
    model.fit(x, Y, epochs=2, batch_size=4, verbose=0)
    model.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_allclose(predict(loaded, x), model.predict(x), rtol=1e-5, atol=1e-5)
    assert loaded.count_params() == model.count_params()
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    same_weights(loaded.get_weights(), model.get_weights())
    assert type(loaded.optimizer).__name__ == "Adam" and int(loaded.optimizer.iterations) == 4  # its state too
    trains_in_keras(loaded, x)
    loaded.save(tmp_path / "k.keras")  # and back: the same weights and architecture
    again = fc.load_model(tmp_path / "k.keras")
    same_weights(again.get_weights(), loaded.get_weights())
    np.testing.assert_allclose(again.predict(x), predict(loaded, x), rtol=1e-5, atol=1e-5)


def test_the_functional_config_is_keras_s_own(tmp_path):
    fcgpu_two_inputs().save(tmp_path / "f.keras")
    with zipfile.ZipFile(tmp_path / "f.keras") as zf:
        config = json.loads(zf.read("config.json"))
    assert config["class_name"] == "Functional" and config["config"]["input_layers"] == [["a", 0, 0], ["b", 0, 0]]
    concat = next(e for e in config["config"]["layers"] if e["class_name"] == "Concatenate")
    args = concat["inbound_nodes"][0]["args"][0]
    assert [a["class_name"] for a in args] == ["__keras_tensor__"] * 2
    assert [a["config"]["keras_history"][0] for a in args] == ["dense", "dense_1"]
    names = [e["name"] for e in config["config"]["layers"]]
    rebuilt = keras.saving.deserialize_keras_object(config)  # Keras's serializer reads it as it is
    assert [layer.name for layer in rebuilt.layers] == names


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_functional_weights_files_go_both_ways(tmp_path, graph):
    build_keras, build_fcgpu, x = GRAPHS[graph]
    theirs, mine = build_keras(), build_fcgpu()
    theirs.save_weights(tmp_path / "k.weights.h5")
    mine.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(mine.predict(x), predict(theirs, x), rtol=1e-5, atol=1e-5)
    other = build_fcgpu()
    other.set_weights([w * 0.5 for w in other.get_weights()])
    other.save_weights(tmp_path / "f.weights.h5")
    theirs.load_weights(tmp_path / "f.weights.h5")
    np.testing.assert_allclose(predict(theirs, x), other.predict(x), rtol=1e-5, atol=1e-5)
    mine.load_weights(tmp_path / "f.weights.h5")
    same_weights(mine.get_weights(), other.get_weights())


def test_a_functional_model_with_a_layer_fcgpu_lacks_is_refused_by_name(tmp_path):
    x = keras.Input((6,))
    model = keras.Model(x, K.Dense(2)(K.UnitNormalization()(K.Dense(3, activation="relu6")(x))))
    model.save(tmp_path / "k.keras")
    with pytest.raises(fc.ModelFileError, match="fcgpu has no UnitNormalization layer") as info:
        fc.load_model(tmp_path / "k.keras")
    assert "relu6" in str(info.value)


def test_a_shared_layer_is_refused(tmp_path):
    x = keras.Input((6,))
    dense = K.Dense(6)
    model = keras.Model(x, dense(dense(x)))
    model.save(tmp_path / "k.keras")
    with pytest.raises(fc.ModelFileError, match="called 2 times"):
        fc.load_model(tmp_path / "k.keras")


def test_a_frozen_nested_model_and_layer_stay_frozen_both_ways(tmp_path):
    model = keras_nested()
    model.get_layer("encoder").trainable = False
    model.save(tmp_path / "k.keras")
    loaded = fc.load_model(tmp_path / "k.keras")
    assert loaded.get_layer("encoder").trainable is False
    assert len(loaded.trainable_weights) == len(model.trainable_weights) < len(loaded.weights)
    np.testing.assert_allclose(loaded.predict(X), predict(model), rtol=1e-5, atol=1e-5)
    loaded.save(tmp_path / "f.keras")
    back = keras.models.load_model(tmp_path / "f.keras")
    # Keras restores a nested Sequential's layers frozen (its own flag it leaves True, also from its own files)
    assert [layer.trainable for layer in back.get_layer("encoder").layers] == [False, False]
    assert len(back.trainable_weights) == len(model.trainable_weights)


def test_a_model_of_several_outputs_keras_cannot_read_leaves_the_file_as_it_was(tmp_path):
    fc.set_seed(0)
    x = fc.Input((6,))
    h = fc.Dense(4, activation="gelu_approximate")(x)  # Keras's config cannot say it
    model = fc.Model(x, [fc.Dense(2)(h), fc.Dense(3)(h)])
    (tmp_path / "m.keras").write_bytes(b"a good file")
    with pytest.raises(ValueError, match="gelu_approximate"):
        model.save(tmp_path / "m.keras")
    assert (tmp_path / "m.keras").read_bytes() == b"a good file"
