"""Keras 3 files both ways, checked against Keras itself (on PyTorch's CPU backend): .keras archives
that Keras wrote load in fcgpu, fcgpu's load (and train on) in Keras, .weights.h5 both ways, each
with the same predictions to float32 rounding."""
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

ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "leaky_relu", "elu", "selu", "silu",
               "softplus", "softsign"]
X = np.random.default_rng(0).standard_normal((7, 6)).astype(np.float32)


def keras_model(activation="relu", compile=True, **dense):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input(shape=(6,)),
        keras.layers.Dense(5, activation=activation, **dense),
        keras.layers.Dropout(0.25),
        keras.layers.Activation("tanh"),
        keras.layers.Dense(3, use_bias=False),
        keras.layers.Activation(activation),
    ])
    if compile:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=2e-3), loss="mse", metrics=["mae"])
    return model


def fcgpu_model(activation="softmax", compile=True, dtype=None):
    fc.set_seed(3)
    model = fc.Sequential([
        fc.Input(shape=(6,)),
        fc.Dense(5, activation=activation, dtype=dtype),
        fc.Dropout(0.25),
        fc.Activation("tanh"),
        fc.Dense(3, use_bias=False, dtype=dtype),
        fc.Activation(activation),
    ])
    if compile:
        loss = "categorical_crossentropy" if activation == "softmax" else "mse"
        model.compile(loss=loss, optimizer=fc.optimizers.RMSprop(learning_rate=3e-3),
                      metrics=["accuracy" if activation == "softmax" else "mae"])
    return model


def keras_predict(model, x=X):
    return np.asarray(model.predict(x, verbose=0))


# -- Keras wrote it, fcgpu reads it --------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS + ["swish"])
def test_a_keras_file_loads_with_the_same_predictions_and_parameters(tmp_path, activation):
    model = keras_model(activation)
    model.fit(X, np.random.default_rng(1).random((7, 3)), verbose=0)
    model.save(tmp_path / "k.keras")
    loaded = fc.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(loaded.predict(X), keras_predict(model), rtol=1e-5, atol=1e-6)
    assert loaded.count_params() == model.count_params()
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]
    config = loaded.get_compile_config()
    assert config["loss"]["class_name"] == "MeanSquaredError" and config["optimizer"]["class_name"] == "Adam"
    assert config["optimizer"]["learning_rate"] == pytest.approx(2e-3)
    loaded.fit(X, np.zeros((7, 3), np.float32), epochs=1, verbose=0)  # trains on in fcgpu


def test_a_keras_file_keeps_regularizers_input_batch_and_compile_settings(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(shape=(6,), batch_size=4),
        keras.layers.Dense(4, activation="elu", kernel_regularizer=keras.regularizers.L2(0.01), bias_regularizer="l1",
                           kernel_initializer="he_normal"),
        keras.layers.Dense(2, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
                  loss=keras.losses.BinaryCrossentropy(from_logits=False), metrics=["binary_accuracy"])
    model.save(tmp_path / "k.keras")
    loaded = fc.load_model(tmp_path / "k.keras")
    dense = loaded.layers[0].get_config()
    assert dense["kernel_regularizer"] == {"class_name": "L2", "config": {"l2": pytest.approx(0.01)}}
    assert dense["bias_regularizer"]["class_name"] == "L1" and dense["kernel_initializer"] == "he_normal"
    assert loaded.get_config()["input"]["batch_size"] == 4
    compiled = loaded.get_compile_config()
    assert compiled["optimizer"] == {"class_name": "SGD", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True,
                                     "weight_decay": 0.0}
    assert compiled["loss"]["class_name"] == "BinaryCrossentropy" and compiled["metrics"] == ["binary_accuracy"]
    np.testing.assert_allclose(loaded.predict(X[:4]), keras_predict(model, X[:4]), rtol=1e-5, atol=1e-6)


def test_keras_compile_settings_fcgpu_lacks_leave_the_model_uncompiled_with_a_warning(tmp_path):
    model = keras_model(compile=False)
    model.compile(optimizer=keras.optimizers.Adam(amsgrad=True), loss="mse")
    model.save(tmp_path / "k.keras")
    with pytest.warns(UserWarning, match="uncompiled.*amsgrad"):
        loaded = fc.load_model(tmp_path / "k.keras")
    assert loaded.get_compile_config() is None
    np.testing.assert_allclose(loaded.predict(X), keras_predict(model), rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fc.load_model(tmp_path / "k.keras", compile=False).get_compile_config() is None


def test_layers_fcgpu_lacks_are_refused_by_name(tmp_path):
    model = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(4, activation="relu6"),
                              keras.layers.UnitNormalization(), keras.layers.Dense(2)])
    model.save(tmp_path / "k.keras")
    with pytest.raises(fc.ModelFileError, match="relu6") as info:
        fc.load_model(tmp_path / "k.keras")
    assert "fcgpu has no UnitNormalization layer" in str(info.value)  # every unsupported part is named at once


def test_a_converter_registered_by_the_caller_maps_a_keras_layer(tmp_path):
    model = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(4), keras.layers.Identity(),
                              keras.layers.Dense(2)])
    model.save(tmp_path / "k.keras")
    with pytest.raises(fc.ModelFileError, match="Identity"):
        fc.load_model(tmp_path / "k.keras")
    loaded = fc.load_model(tmp_path / "k.keras", custom_objects={"Identity": lambda config: fc.Activation("linear",
                                                                                                         name=config["name"])})
    np.testing.assert_allclose(loaded.predict(X), keras_predict(model), rtol=1e-5, atol=1e-6)


def test_a_lambda_layer_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    model = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(2),
                              keras.layers.Lambda(lambda t: t * 2)])
    model.save(tmp_path / "k.keras")
    with pytest.raises(fc.ModelFileError, match="Lambda"):
        fc.load_model(tmp_path / "k.keras")
    assert not marker.exists()


def test_a_keras_model_of_several_outputs_loads_with_its_outputs(tmp_path):
    inputs = keras.Input(shape=(6,))
    model = keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(3)(inputs)])
    model.save(tmp_path / "k.keras")
    loaded = fc.load_model(tmp_path / "k.keras")
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    for ours, theirs in zip(loaded.predict(x), model.predict(x, verbose=0), strict=True):
        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-5, atol=1e-6)


# -- fcgpu wrote it, Keras reads it --------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_an_fcgpu_file_loads_in_keras_with_the_same_predictions_and_trains_on(tmp_path, activation):
    model = fcgpu_model(activation)
    y = np.eye(3, dtype=np.float32)[np.arange(7) % 3]
    model.fit(X, y, epochs=2, verbose=0)
    model.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_allclose(keras_predict(loaded), model.predict(X), rtol=1e-5, atol=1e-6)
    assert loaded.count_params() == model.count_params()
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert type(loaded.optimizer).__name__ == "RMSprop"
    assert float(loaded.optimizer.learning_rate) == pytest.approx(3e-3)
    loss = "categorical_crossentropy" if activation == "softmax" else "mean_squared_error"
    assert loaded.loss.get_config()["name"] == loss
    before = [w.copy() for w in loaded.get_weights()]
    history = loaded.fit(X, y, epochs=2, verbose=0)  # Keras goes on training it
    assert np.isfinite(history.history["loss"]).all() and ("accuracy" if activation == "softmax" else "mae") in history.history
    assert any(not np.array_equal(a, b) for a, b in zip(before, loaded.get_weights()))


def test_the_archive_has_exactly_what_keras_writes(tmp_path):
    fcgpu_model().save(tmp_path / "f.keras")
    with zipfile.ZipFile(tmp_path / "f.keras") as zf:
        assert zf.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
        config = json.loads(zf.read("config.json"))
        assert json.loads(zf.read("metadata.json"))["keras_version"].startswith("3.")
    assert config["class_name"] == "Sequential" and config["config"]["layers"][0]["class_name"] == "InputLayer"
    # Keras's own serializer reads it back to the same config it would write for the same model
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert rebuilt.get_config()["layers"][1]["config"]["units"] == 5


def test_mixed_precision_models_keep_their_policy_both_ways(tmp_path):
    model = fcgpu_model("relu", compile=False, dtype="mixed_float16")
    model.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    assert loaded.layers[0].dtype_policy.name == "mixed_float16"
    assert loaded.layers[0].kernel.dtype == "float32"
    np.testing.assert_allclose(keras_predict(loaded).astype(np.float32), model.predict(X).astype(np.float32),
                               rtol=1e-2, atol=1e-2)
    loaded.save(tmp_path / "k.keras")
    again = fc.load_model(tmp_path / "k.keras")
    assert again.layers[0].dtype_policy.name == "mixed_float16"
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


def test_a_round_trip_through_keras_gives_back_the_same_model(tmp_path):
    model = fcgpu_model("gelu")
    model.save(tmp_path / "a.keras")
    keras.models.load_model(tmp_path / "a.keras").save(tmp_path / "b.keras")
    again = fc.load_model(tmp_path / "b.keras")
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    def layers(m):  # a drawn Dropout seed (64 bits) is not written: Keras takes 32-bit seeds
        return [{k: v for k, v in c.items() if k != "seed"} for c in m.get_config()["layers"]]

    assert layers(again) == layers(model)
    assert again.get_compile_config()["optimizer"] == model.get_compile_config()["optimizer"]


def test_what_keras_cannot_compute_is_refused_or_left_out(tmp_path):
    target = tmp_path / "f.keras"
    target.write_bytes(b"the last good file")
    model = fc.Sequential([fc.Input(shape=(6,)), fc.Dense(3, activation="gelu_approximate")])
    with pytest.raises(ValueError, match="gelu_approximate.*fcgpu"):
        model.save(target)
    assert target.read_bytes() == b"the last good file"
    model = fcgpu_model(compile=False)
    model.compile(loss="softmax_cross_entropy", optimizer="adam")
    with pytest.warns(UserWarning, match="no compile settings"):
        model.save(target)
    assert not keras.models.load_model(target).compiled


def test_a_model_with_nan_never_replaces_a_good_file(tmp_path):
    model = fcgpu_model()
    model.save(tmp_path / "f.keras")
    good = (tmp_path / "f.keras").read_bytes()
    model.layers[0].kernel[0, 0] = np.nan  # as a diverged training run leaves it (NumPy backend)
    with pytest.raises(ValueError, match="NaN"):
        model.save(tmp_path / "f.keras")
    assert (tmp_path / "f.keras").read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["f.keras"]  # no temporary file left


def test_an_fcgpu_archive_under_the_keras_name_still_loads(tmp_path):
    model = fcgpu_model()
    model.save(tmp_path / "m.fcgpu")
    os.replace(tmp_path / "m.fcgpu", tmp_path / "old.keras")  # what 0.3 wrote for "best.keras"
    np.testing.assert_array_equal(fc.load_model(tmp_path / "old.keras").predict(X), model.predict(X))
    model.save(tmp_path / "k.keras")
    os.replace(tmp_path / "k.keras", tmp_path / "renamed.bin")  # a Keras archive under another name
    np.testing.assert_array_equal(fc.load_model(tmp_path / "renamed.bin").predict(X), model.predict(X))


# -- .weights.h5 -----------------------------------------------------------------------------------
def test_weights_files_both_ways(tmp_path):
    ours = fcgpu_model("silu", compile=False)
    theirs = keras_model("silu", compile=False)
    ours.save_weights(tmp_path / "f.weights.h5")
    theirs.load_weights(tmp_path / "f.weights.h5")
    np.testing.assert_allclose(keras_predict(theirs), ours.predict(X), rtol=1e-5, atol=1e-6)
    keras.utils.set_random_seed(7)
    other = keras_model("silu", compile=True)
    other.fit(X, np.zeros((7, 3)), verbose=0)  # its file then holds optimizer state too, which fcgpu skips
    other.save_weights(tmp_path / "k.weights.h5")
    ours.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(ours.predict(X), keras_predict(other), rtol=1e-5, atol=1e-6)


def test_load_weights_takes_a_keras_archive_too(tmp_path):
    other = keras_model("relu", compile=False)
    other.save(tmp_path / "k.keras")
    ours = fcgpu_model("relu", compile=False)
    ours.load_weights(tmp_path / "k.keras")  # as Keras's load_weights does
    np.testing.assert_allclose(ours.predict(X), keras_predict(other), rtol=1e-5, atol=1e-6)
    before = ours.get_weights()
    wrong = fc.Sequential([fc.Input(shape=(6,)), fc.Dense(5), fc.Dense(2)])
    wrong.save(tmp_path / "w.keras")
    with pytest.raises(fc.ModelFileError, match="activation"):
        ours.load_weights(tmp_path / "w.keras")
    for a, b in zip(before, ours.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_an_unbuilt_model_is_built_from_a_weights_file(tmp_path):
    fcgpu_model("relu").save_weights(tmp_path / "f.weights.h5")
    fresh = fc.Sequential([fc.Dense(5, activation="relu"), fc.Dropout(0.25), fc.Activation("tanh"),
                           fc.Dense(3, use_bias=False), fc.Activation("relu")])
    fresh.load_weights(tmp_path / "f.weights.h5")
    np.testing.assert_array_equal(fresh.predict(X), fcgpu_model("relu").predict(X))


def test_weights_files_must_be_named_as_keras_names_them(tmp_path):
    model = fcgpu_model()
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        model.save_weights(tmp_path / "w.h5")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        model.load_weights(tmp_path / "w.npz")
    with pytest.raises(FileNotFoundError):
        model.load_weights(tmp_path / "missing.weights.h5")


def test_without_h5py_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "h5py", None)
    model = fcgpu_model()
    with pytest.raises(ImportError, match=r"fcgpu\[keras\]"):
        model.save(tmp_path / "f.keras")
    with pytest.raises(ImportError, match=r"fcgpu\[keras\]"):
        model.save_weights(tmp_path / "f.weights.h5")
    model.save(tmp_path / "f.fcgpu")  # fcgpu's own files need nothing more
    assert not (tmp_path / "f.keras").exists()


# -- optimizer state -------------------------------------------------------------------------------
OPTIMIZERS = {
    "adam": lambda: fc.optimizers.Adam(learning_rate=0.01),
    "adamw": lambda: fc.optimizers.AdamW(learning_rate=0.01, weight_decay=0.05),
    "rmsprop": lambda: fc.optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
    "adagrad": lambda: fc.optimizers.Adagrad(learning_rate=0.05),
    "sgd_nesterov": lambda: fc.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_training_goes_on_where_it_stopped_in_keras_and_back(tmp_path, optimizer):
    x = np.random.default_rng(2).standard_normal((16, 6)).astype(np.float32)
    y = np.random.default_rng(3).random((16, 3)).astype(np.float32)
    fc.set_seed(0)
    ours = fc.Sequential([fc.Input(shape=(6,)), fc.Dense(5, activation="tanh"), fc.Dense(3)])
    ours.compile(loss="mse", optimizer=OPTIMIZERS[optimizer]())
    ours.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    ours.save(tmp_path / "f.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Skipping variable loading for optimizer"
        theirs = keras.models.load_model(tmp_path / "f.keras")
    assert int(theirs.optimizer.iterations) == 3
    for model in (ours, theirs):
        model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):  # Adam's epsilon sits elsewhere in Keras: 1e-8 apart
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)
    theirs.save(tmp_path / "k.keras")
    again = fc.load_model(tmp_path / "k.keras")
    assert again.optimizer.iterations == 5
    for model in (again, theirs):
        model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(again.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)


def test_optimizer_state_that_does_not_fit_starts_afresh_with_a_warning(tmp_path):
    model = keras_model("relu")
    model.fit(X, np.zeros((7, 3)), verbose=0)
    model.save(tmp_path / "k.keras")
    import h5py

    with zipfile.ZipFile(tmp_path / "k.keras") as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    import io

    buffer = io.BytesIO(entries["model.weights.h5"])
    with h5py.File(buffer, "a") as f:
        del f["optimizer/vars/3"]
        f["optimizer/vars"].create_dataset("3", data=np.zeros((2, 2), np.float32))
    entries["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    with pytest.warns(UserWarning, match="optimizer state does not translate"):
        loaded = fc.load_model(tmp_path / "bad.keras")
    assert loaded.optimizer.iterations == 0
    np.testing.assert_allclose(loaded.predict(X), keras_predict(model), rtol=1e-5, atol=1e-6)


def test_a_mixed_model_keeps_its_optimizer_state_both_ways(tmp_path):
    x = np.random.default_rng(4).standard_normal((16, 6)).astype(np.float32)
    y = np.random.default_rng(5).random((16, 2)).astype(np.float32)
    fc.set_seed(0)
    ours = fc.Sequential([fc.Input(shape=(6,)), fc.Dense(4, activation="relu", dtype="mixed_float16"),
                          fc.Dense(2, dtype="mixed_float16")])
    ours.compile(loss="mse", optimizer=fc.optimizers.Adam(learning_rate=0.01))  # wrapped in a LossScaleOptimizer
    ours.fit(x, y, epochs=3, batch_size=16, verbose=0)
    ours.save(tmp_path / "f.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        theirs = keras.models.load_model(tmp_path / "f.keras")  # Keras wraps it only under a global policy
    assert int(theirs.optimizer.iterations) == 3
    m_ours = ours.optimizer.state_dict()["state"]["dense/kernel"]["exp_avg"]
    np.testing.assert_array_equal(np.asarray(theirs.optimizer.variables[2]), m_ours)
    theirs.fit(x, y, epochs=1, batch_size=16, verbose=0)
    theirs.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = fc.load_model(tmp_path / "k.keras")
    assert again.optimizer.iterations == 4 and type(again.optimizer).__name__ == "LossScaleOptimizer"


def test_frozen_layers_stay_frozen_both_ways(tmp_path):
    model = keras_model(compile=False)
    model.layers[0].trainable = False
    model.save(tmp_path / "k.keras")
    loaded = fc.load_model(tmp_path / "k.keras")
    assert [layer.trainable for layer in loaded.layers] == [layer.trainable for layer in model.layers]
    assert loaded.layers[0].trainable is False
    np.testing.assert_allclose(loaded.predict(X), keras_predict(model), rtol=1e-5, atol=1e-6)
    loaded.save(tmp_path / "f.keras")
    back = keras.models.load_model(tmp_path / "f.keras")
    assert back.layers[0].trainable is False and back.layers[3].trainable is True
    assert len(back.trainable_weights) == len(model.trainable_weights)


def test_h5py_onnx_and_torch_are_imported_only_when_their_files_are_used(tmp_path):
    import subprocess
    import sys

    program = (
        "import sys, numpy as np, fcgpu as fc, fcgpu.interop, fcgpu.cli\n"
        "m = fc.Sequential([fc.Input(shape=(3,)), fc.Dense(2)])\n"
        f"m.save({str(tmp_path / 'm.fcgpu')!r}); fc.load_model({str(tmp_path / 'm.fcgpu')!r})\n"
        "fc.cli.build_parser()\n"
        "print(sorted(n for n in ('h5py', 'onnx', 'onnxruntime', 'torch', 'keras') if n in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
