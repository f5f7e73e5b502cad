"""Models of several outputs in Keras 3 files, as a user moves them: a two-head model written in
Keras loads in fcgpu with its outputs in order, the same predictions, parameters and compile
settings; one written in fcgpu loads in Keras, predicts the same and trains there; weights files go
both ways; a damaged list of outputs is a ModelFileError naming the entry. Checked against Keras
itself, and the ONNX export of such models against ONNX Runtime."""
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
from fcgpu.saving.archive import ModelFileError  # noqa: E402

K = keras.layers
RNG = np.random.default_rng(3)
X = RNG.standard_normal((9, 6)).astype(np.float32)
X1, X2 = X[:, :4].copy(), X[:, 4:].copy()
Y_LABEL = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 9)]
Y_VALUE = RNG.standard_normal((9, 1)).astype(np.float32)
LIST_SPEC = dict(loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5], metrics=[["accuracy"], ["mae"]])
DICT_SPEC = dict(loss={"label": "categorical_crossentropy", "value": "mse"}, loss_weights={"label": 1.0, "value": 0.5},
                 metrics={"label": ["accuracy"], "value": ["mae"]})


def labels(form):
    return [Y_LABEL, Y_VALUE] if form == "list" else {"label": Y_LABEL, "value": Y_VALUE}


def heads(lib, h, form):
    """A softmax head 'label' (3) and a linear head 'value' (1) on ``h``, as ``form`` structures them."""
    label = lib.layers.Dense(3, activation="softmax", name="label")(h)
    value = lib.layers.Dense(1, name="value")(h)
    return [label, value] if form == "list" else {"label": label, "value": value}


def two_heads(lib, form="list"):
    """A shared trunk and two heads, compiled with a loss per output, loss weights and metrics."""
    inp = lib.Input(shape=(6,), name="features")
    h = lib.layers.Dense(8, activation="tanh", name="trunk")(inp)
    model = lib.Model(inp, heads(lib, h, form))
    spec = LIST_SPEC if form == "list" else DICT_SPEC
    optimizer = keras.optimizers.Adam(learning_rate=1e-2) if lib is keras else fc.optimizers.Adam(learning_rate=1e-2)
    model.compile(optimizer=optimizer, **spec)
    model.fit(X, labels(form), epochs=2, batch_size=4, verbose=0)
    return model


def two_inputs(lib):
    a, b = lib.Input(shape=(4,), name="left"), lib.Input(shape=(2,), name="right")
    h = lib.layers.Concatenate(name="joined")([lib.layers.Dense(5, activation="relu", name="da")(a),
                                               lib.layers.Dense(3, activation="tanh", name="db")(b)])
    return lib.Model([a, b], heads(lib, h, "list"))


def nested_trunk(lib):
    """Two heads off a trunk that is a Sequential model used as a layer."""
    trunk = lib.Sequential([lib.Input(shape=(6,)), lib.layers.Dense(7, activation="relu", name="t1"),
                            lib.layers.Dense(5, activation="tanh", name="t2")], name="trunk_model")
    inp = lib.Input(shape=(6,), name="features")
    return lib.Model(inp, heads(lib, trunk(inp), "list"))


def chained_heads(lib):
    """An output that another output reads: the second head computes from the first."""
    inp = lib.Input(shape=(6,), name="features")
    first = lib.layers.Dense(4, activation="relu", name="first")(inp)
    second = lib.layers.Dense(2, activation="sigmoid", name="second")(first)
    return lib.Model(inp, [first, second])


def outputs_of(prediction):
    """A model's predictions as a list in output order (a dict by key, sorted as Keras flattens it)."""
    if isinstance(prediction, dict):
        return {k: np.asarray(v) for k, v in prediction.items()}
    return [np.asarray(p) for p in prediction]


def assert_same_outputs(got, want):
    got, want = outputs_of(got), outputs_of(want)
    assert type(got) is type(want)
    if isinstance(want, dict):
        assert sorted(got) == sorted(want)
        pairs = [(got[k], want[k]) for k in want]
    else:
        assert len(got) == len(want)
        pairs = list(zip(got, want))
    for a, b in pairs:
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def keras_config(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("config.json"))


# -- Keras writes, fcgpu reads ---------------------------------------------------------------------
@pytest.mark.parametrize("form", ["list", "dict"])
def test_a_keras_two_head_model_loads_in_fcgpu(tmp_path, form):
    keras.utils.set_random_seed(1)
    theirs = two_heads(keras, form)
    theirs.save(tmp_path / "m.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its compile settings translate: no warning
        ours = fc.load_model(tmp_path / "m.keras")
    assert ours.output_names == ["label", "value"]
    assert ours.count_params() == theirs.count_params()
    assert_same_outputs(ours.predict(X), theirs.predict(X, verbose=0))
    # the compile settings came back: the same loss weights, metrics per output, so evaluate agrees
    compiled = ours.get_compile_config()
    assert compiled["loss"]["loss_weights"] == [1.0, 0.5]
    assert {k: len(v) for k, v in compiled["metrics"].items()} == {"label": 1, "value": 1}
    got = ours.evaluate(X, labels(form), verbose=0, return_dict=True)
    want = theirs.evaluate(X, labels(form), verbose=0, return_dict=True)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == pytest.approx(float(want[key]), rel=1e-4, abs=1e-5), key
    ours.fit(X, labels(form), epochs=1, verbose=0)


def test_keras_two_inputs_and_two_outputs_load_in_fcgpu(tmp_path):
    keras.utils.set_random_seed(2)
    theirs = two_inputs(keras)
    theirs.save(tmp_path / "m.keras")
    ours = fc.load_model(tmp_path / "m.keras")
    assert len(ours.inputs) == 2 and ours.output_names == ["label", "value"]
    assert ours.count_params() == theirs.count_params()
    assert_same_outputs(ours.predict([X1, X2]), theirs.predict([X1, X2], verbose=0))


@pytest.mark.parametrize("build", [nested_trunk, chained_heads])
def test_keras_heads_off_a_nested_trunk_or_each_other_load_in_fcgpu(tmp_path, build):
    keras.utils.set_random_seed(3)
    theirs = build(keras)
    theirs.save(tmp_path / "m.keras")
    ours = fc.load_model(tmp_path / "m.keras")
    assert len(ours.outputs) == 2
    assert ours.count_params() == theirs.count_params()
    assert_same_outputs(ours.predict(X), theirs.predict(X, verbose=0))


def test_a_keras_model_of_one_output_in_a_list_loads_as_one_output(tmp_path):
    inp = keras.Input(shape=(6,))
    theirs = keras.Model(inp, [K.Dense(2, name="only")(inp)])
    theirs.save(tmp_path / "m.keras")
    ours = fc.load_model(tmp_path / "m.keras")
    assert len(ours.outputs) == 1
    np.testing.assert_allclose(np.asarray(ours.predict(X)).reshape(9, 2),
                               np.asarray(theirs.predict(X, verbose=0)).reshape(9, 2), rtol=1e-5, atol=1e-6)


def test_a_keras_model_of_two_outputs_nested_in_another_is_refused_by_name(tmp_path):
    inp = keras.Input(shape=(6,))
    inner = keras.Model(inp, heads(keras, K.Dense(8, name="trunk")(inp), "list"), name="two_heads_inside")
    outer_input = keras.Input(shape=(6,))
    label, value = inner(outer_input)
    outer = keras.Model(outer_input, [label, K.Dense(2, name="after")(value)])
    outer.save(tmp_path / "m.keras")
    with pytest.raises(ModelFileError, match="'two_heads_inside'.*2 outputs used as a layer"):
        fc.load_model(tmp_path / "m.keras")


# -- fcgpu writes, Keras reads ---------------------------------------------------------------------
@pytest.mark.parametrize("form", ["list", "dict"])
def test_an_fcgpu_two_head_model_loads_and_trains_in_keras(tmp_path, form):
    fc.set_seed(4)
    ours = two_heads(fc, form)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours.save(tmp_path / "m.keras")
    config = keras_config(tmp_path / "m.keras")
    written = config["config"]["output_layers"]
    if form == "list":
        assert written == [["label", 0, 0], ["value", 0, 0]]
    else:
        assert written == {"label": ["label", 0, 0], "value": ["value", 0, 0]}
    compiled = config["compile_config"]
    assert compiled["loss_weights"] == ([1.0, 0.5] if form == "list" else {"label": 1.0, "value": 0.5})
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert theirs.output_names == ["label", "value"]
    assert theirs.count_params() == ours.count_params()
    assert_same_outputs(theirs.predict(X, verbose=0), ours.predict(X))
    # Keras compiled it as fcgpu was compiled: evaluate agrees, and it trains on
    got = theirs.evaluate(X, labels(form), verbose=0, return_dict=True)
    want = ours.evaluate(X, labels(form), verbose=0, return_dict=True)
    assert sorted(got) == sorted(want)
    for key in want:
        assert float(got[key]) == pytest.approx(want[key], rel=1e-4, abs=1e-5), key
    before = [w.copy() for w in theirs.get_weights()]
    history = theirs.fit(X, labels(form), epochs=1, verbose=0).history
    assert {"loss", "label_loss", "value_loss"} <= set(history)
    assert any(not np.array_equal(a, b) for a, b in zip(before, theirs.get_weights()))


@pytest.mark.parametrize("build", [two_inputs, nested_trunk, chained_heads])
def test_fcgpu_graphs_of_two_outputs_load_and_train_in_keras(tmp_path, build):
    fc.set_seed(5)
    ours = build(fc)
    x = [X1, X2] if build is two_inputs else X
    ours.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert len(theirs.outputs) == 2
    assert theirs.count_params() == ours.count_params()
    assert_same_outputs(theirs.predict(x, verbose=0), ours.predict(x))
    theirs.compile(optimizer="adam", loss=["mse", "mse"])
    y = [np.zeros((9, t.shape[-1]), np.float32) for t in theirs.outputs]
    assert np.isfinite(theirs.fit(x, y, epochs=1, verbose=0).history["loss"]).all()
    back = fc.load_model(tmp_path / "m.keras")
    assert_same_outputs(back.predict(x), ours.predict(x))


def test_a_compile_setting_keras_lacks_is_left_out_with_a_warning(tmp_path):
    fc.set_seed(6)
    inp = fc.Input(shape=(6,), name="features")
    h = fc.Dense(8, activation="tanh", name="trunk")(inp)
    model = fc.Model(inp, heads(fc, h, "list"))
    model.compile(optimizer="adam", loss=["categorical_crossentropy", "mse"],
                  metrics=[["accuracy", fc.metrics.Precision(thresholds=0.3)], ["mae"]])
    with pytest.warns(UserWarning, match="Precision"):
        model.save(tmp_path / "m.keras")
    compiled = keras_config(tmp_path / "m.keras")["compile_config"]
    assert compiled["metrics"] == [["accuracy"], ["mae"]]
    assert compiled["loss"] is not None
    keras.models.load_model(tmp_path / "m.keras").fit(X, labels("list"), epochs=1, verbose=0)


def test_a_loss_keras_lacks_leaves_the_file_uncompiled_with_a_warning(tmp_path):
    fc.set_seed(6)
    inp = fc.Input(shape=(6,), name="features")
    model = fc.Model(inp, heads(fc, fc.Dense(8, name="trunk")(inp), "list"))
    model.compile(optimizer="adam", loss=["softmax_cross_entropy", "mse"])
    with pytest.warns(UserWarning, match="softmax_cross_entropy|SoftmaxCrossEntropy|loss"):
        model.save(tmp_path / "m.keras")
    assert "compile_config" not in keras_config(tmp_path / "m.keras")
    assert_same_outputs(keras.models.load_model(tmp_path / "m.keras").predict(X, verbose=0), model.predict(X))


# -- weights files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("build", [lambda lib: two_heads(lib), two_inputs, nested_trunk, chained_heads])
def test_weights_files_of_two_output_models_go_both_ways(tmp_path, build):
    keras.utils.set_random_seed(7)
    fc.set_seed(7)
    theirs, ours = build(keras), build(fc)
    x = [X1, X2] if build is two_inputs else X
    theirs.save_weights(tmp_path / "k.weights.h5")
    ours.load_weights(tmp_path / "k.weights.h5")
    assert_same_outputs(ours.predict(x), theirs.predict(x, verbose=0))
    fc.set_seed(8)
    other = build(fc)
    other.save_weights(tmp_path / "f.weights.h5")
    theirs.load_weights(tmp_path / "f.weights.h5")
    assert_same_outputs(theirs.predict(x, verbose=0), other.predict(x))


# -- damaged lists of outputs ----------------------------------------------------------------------
def edited(tmp_path, edit):
    fc.set_seed(9)
    inp = fc.Input(shape=(6,), name="features")
    fc.Model(inp, heads(fc, fc.Dense(8, name="trunk")(inp), "list")).save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    edit(config["config"])
    members["config.json"] = json.dumps(config).encode()
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("edit, words", [
    (lambda c: c.__setitem__("output_layers", [["label", 0, 0], ["nowhere", 0, 0]]), "'nowhere'"),
    (lambda c: c.__setitem__("output_layers", [["label", 0, 0], ["value", 0, 1]]), "'value'"),
    (lambda c: c.__setitem__("output_layers", [["label", 0, 0], ["value", 3, 0]]), "'value'"),
    (lambda c: c.__setitem__("output_layers", [["label", 0, 0], ["label", 0, 0]]), "'label'"),
    (lambda c: c.__setitem__("output_layers", {"a": ["label", 0, 0], "b": ["label", 0, 0]}), "'label'"),
    (lambda c: c.__setitem__("output_layers", [["label", 0, 0], "value"]), "output_layers"),
    (lambda c: c.__setitem__("output_layers", [["label", 0, 0], [["value", 0, 0]]]), "output_layers"),
    (lambda c: c.__setitem__("output_layers", {"a": ["label", 0, 0], "b": {"c": ["value", 0, 0]}}), "output_layers"),
    (lambda c: c.__setitem__("output_layers", []), "output_layers"),
    (lambda c: c.__setitem__("output_layers", [["label", 0, 0]]), "reads layer(s) ['value']"),
    (lambda c: c.__setitem__("output_layers", [["features", 0, 0], ["label", 0, 0]]), "reads layer(s) ['value']"),
    (lambda c: c.__setitem__("output_layers", {"": ["label", 0, 0], "b": ["value", 0, 0]}), "keys are not all names"),
])  # fmt: skip
def test_a_damaged_list_of_outputs_is_a_model_file_error_naming_the_entry(tmp_path, edit, words):
    path = edited(tmp_path, edit)
    before = path.read_bytes()
    with pytest.raises(ModelFileError) as info:
        fc.load_model(path)
    assert words in str(info.value)
    assert path.read_bytes() == before


def test_saved_outputs_stay_in_the_config_order(tmp_path):
    path = edited(tmp_path, lambda c: c.__setitem__("output_layers", [["value", 0, 0], ["label", 0, 0]]))
    model = fc.load_model(path)
    assert model.output_names == ["value", "label"]
    value, label = model.predict(X)
    assert value.shape == (9, 1) and label.shape == (9, 3)


# -- a dict of outputs keyed otherwise than its layers, in an order that is not sorted -------------
def keyed_heads(lib):
    """Keras orders a dict's outputs by sorted key ('alpha' before 'zeta'), and its layers and
    weights with them; the keys are not the layers' names."""
    inp = lib.Input(shape=(6,), name="features")
    h = lib.layers.Dense(8, activation="tanh", name="trunk")(inp)
    return lib.Model(inp, {"zeta": lib.layers.Dense(3, activation="softmax", name="label")(h),
                           "alpha": lib.layers.Dense(1, name="value")(h)})


KEYED_SPEC = dict(loss={"zeta": "categorical_crossentropy", "alpha": "mse"}, loss_weights={"zeta": 2.0, "alpha": 0.5},
                  metrics={"alpha": ["mae"]})
KEYED_Y = {"zeta": Y_LABEL, "alpha": Y_VALUE}


def same_weights(a, b, atol=1e-6):
    assert [np.shape(u) for u in a] == [np.shape(v) for v in b]
    for u, v in zip(a, b):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=atol)


def test_a_keras_dict_of_outputs_by_other_keys_loads_with_its_training_state(tmp_path):
    keras.utils.set_random_seed(10)
    theirs = keyed_heads(keras)
    theirs.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), **KEYED_SPEC)
    theirs.fit(X, KEYED_Y, epochs=2, batch_size=9, shuffle=False, verbose=0)
    theirs.save(tmp_path / "m.keras")
    ours = fc.load_model(tmp_path / "m.keras")
    assert ours.output_names == ["value", "label"]  # Keras's order: by sorted key
    assert_same_outputs(ours.predict(X), theirs.predict(X, verbose=0))
    same_weights(ours.get_weights(), theirs.get_weights())
    got = ours.evaluate(X, KEYED_Y, verbose=0, return_dict=True)  # by key, as Keras
    want = theirs.evaluate(X, KEYED_Y, verbose=0, return_dict=True)
    assert sorted(got) == sorted(want) == ["alpha_loss", "alpha_mae", "loss", "zeta_loss"]
    for key in want:
        assert got[key] == pytest.approx(float(want[key]), rel=1e-5), key
    # the optimizer's moments came back on the right variables: one more step agrees
    ours.fit(X, KEYED_Y, epochs=1, batch_size=9, shuffle=False, verbose=0)
    theirs.fit(X, KEYED_Y, epochs=1, batch_size=9, shuffle=False, verbose=0)
    same_weights(ours.get_weights(), theirs.get_weights(), atol=2e-5)  # Adam's epsilon: Keras's place


def test_an_fcgpu_dict_of_outputs_by_other_keys_loads_in_keras_with_its_training_state(tmp_path):
    fc.set_seed(11)
    ours = keyed_heads(fc)
    assert ours.output_names == ["value", "label"]
    ours.compile(optimizer=fc.optimizers.Adam(learning_rate=1e-2), loss={"zeta": "categorical_crossentropy",
                 "alpha": "mse"}, loss_weights=[0.5, 2.0], metrics=[["mae"], []])  # by key, as Keras
    ours.fit(X, KEYED_Y, epochs=2, batch_size=9, shuffle=False, verbose=0)
    ours.save(tmp_path / "m.keras")
    compiled = keras_config(tmp_path / "m.keras")["compile_config"]
    assert compiled["loss_weights"] == {"alpha": 0.5, "zeta": 2.0}
    assert compiled["metrics"] == {"alpha": ["mae"], "zeta": []}
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert_same_outputs(theirs.predict(X, verbose=0), ours.predict(X))
    same_weights(theirs.get_weights(), ours.get_weights())
    want = ours.evaluate(X, KEYED_Y, verbose=0, return_dict=True)
    got = theirs.evaluate(X, KEYED_Y, verbose=0, return_dict=True)
    assert sorted(got) == sorted(want) == ["alpha_loss", "alpha_mae", "loss", "zeta_loss"]
    for key in want:
        assert float(got[key]) == pytest.approx(want[key], rel=1e-5), key
    # and back: the file fcgpu loads is compiled by the same keys
    again = fc.load_model(tmp_path / "m.keras")
    assert again.evaluate(X, KEYED_Y, verbose=0, return_dict=True) == pytest.approx(want, rel=1e-6)
    ours.fit(X, KEYED_Y, epochs=1, batch_size=9, shuffle=False, verbose=0)
    theirs.fit(X, KEYED_Y, epochs=1, batch_size=9, shuffle=False, verbose=0)
    same_weights(theirs.get_weights(), ours.get_weights(), atol=2e-5)
    # and the weights file Keras writes for it fits the fcgpu model, and the reverse
    theirs.save_weights(tmp_path / "k.weights.h5")
    fc.set_seed(12)
    other = keyed_heads(fc)
    other.load_weights(tmp_path / "k.weights.h5")
    assert_same_outputs(other.predict(X), theirs.predict(X, verbose=0))
    ours.save_weights(tmp_path / "f.weights.h5")
    theirs.load_weights(tmp_path / "f.weights.h5")
    assert_same_outputs(theirs.predict(X, verbose=0), ours.predict(X))


@pytest.mark.parametrize("spec", [
    dict(loss="mse"),
    dict(loss=["mse", keras.losses.MeanAbsoluteError()], metrics=["mae", ["mse", "mae"]]),
    dict(loss={"label": keras.losses.CategoricalCrossentropy(label_smoothing=0.1), "value": keras.losses.Huber()},
         loss_weights={"label": 3.0, "value": 0.25}, metrics={"value": keras.metrics.MeanAbsoluteError()}),
    dict(loss={"label": keras.losses.CategoricalCrossentropy(label_smoothing=0.1), "value": None},
         loss_weights={"label": 3.0, "value": 1.0}),
])  # fmt: skip
def test_the_other_forms_of_keras_compile_settings_come_back(tmp_path, spec):
    keras.utils.set_random_seed(13)
    inp = keras.Input(shape=(6,), name="features")
    theirs = keras.Model(inp, heads(keras, K.Dense(8, activation="tanh", name="trunk")(inp), "list"))
    theirs.compile(optimizer="adam", **spec)
    theirs.fit(X, labels("list"), epochs=1, verbose=0)
    theirs.save(tmp_path / "m.keras")
    if isinstance(spec["loss"], dict) and None in spec["loss"].values():  # Keras trains 'value' without a loss, fcgpu trains every output
        with pytest.warns(UserWarning, match="'value' has no loss"):
            ours = fc.load_model(tmp_path / "m.keras")
        assert not ours.compiled
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = fc.load_model(tmp_path / "m.keras")
    got = ours.evaluate(X, labels("list"), verbose=0, return_dict=True)
    want = theirs.evaluate(X, labels("list"), verbose=0, return_dict=True)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == pytest.approx(float(want[key]), rel=1e-4, abs=1e-5), key
