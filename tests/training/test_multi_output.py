"""Models of several outputs trained as Keras 3 trains them: a loss per output, loss_weights, metrics
per output; the logs Keras writes; weights after training equal to Keras's; bad input named."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import layers

keras = pytest.importorskip("keras")


def two_heads(lib, dtype="float64"):
    inp = lib.Input(shape=(6,), name="features", **({"dtype": dtype} if lib is keras else {}))
    h = lib.layers.Dense(8, activation="tanh", dtype=dtype, name="hidden")(inp)
    cls = lib.layers.Dense(3, activation="softmax", dtype=dtype, name="label")(h)
    value = lib.layers.Dense(1, dtype=dtype, name="value")(h)
    return lib.Model(inp, [cls, value])


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32).astype(np.float64)  # values float32 holds (Keras casts)
    return x, rng.integers(0, 3, n), rng.normal(size=(n, 1)).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("form", ["list", "dict"])
def test_two_outputs_train_as_keras_trains_them(form):
    keras.config.set_dtype_policy("float64")
    try:
        theirs = two_heads(keras)
    finally:
        keras.config.set_dtype_policy("float32")
    ours = two_heads(fc)
    weights = [np.random.default_rng(1).normal(scale=0.5, size=w.shape) for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    x, y1, y2 = data()
    if form == "list":
        spec = dict(loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                    metrics=[["accuracy"], ["mae"]])
        y = [y1, y2]
    else:
        spec = dict(loss={"label": "sparse_categorical_crossentropy", "value": "mse"},
                    loss_weights={"label": 1.0, "value": 0.5}, metrics={"label": ["accuracy"], "value": ["mae"]})
        y = {"label": y1, "value": y2}
    theirs.compile(optimizer=keras.optimizers.SGD(0.125), **spec)
    ours.compile(optimizer=fc.optimizers.SGD(0.125), **spec)
    h_theirs = theirs.fit(x, y, batch_size=12, epochs=2, shuffle=False, verbose=0).history
    h_ours = ours.fit(x, y, batch_size=12, epochs=2, shuffle=False, verbose=0).history
    assert sorted(h_ours) == sorted(h_theirs)
    for key in h_theirs:
        np.testing.assert_allclose(h_ours[key], h_theirs[key], rtol=2e-6, atol=1e-6, err_msg=key)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-6, atol=1e-6)
    got = ours.evaluate(x, y, verbose=0, return_dict=True)
    want = theirs.evaluate(x, y, verbose=0, return_dict=True)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == pytest.approx(float(want[key]), rel=2e-6, abs=1e-6), key


def test_one_loss_for_every_output_and_the_outputs_predicted(backend):
    model = two_heads(fc, dtype="float32")
    model.compile(optimizer="adam", loss="mse")
    x, y1, y2 = data()
    history = model.fit(x, [np.eye(3)[y1], y2], epochs=2, verbose=0)
    assert sorted(history.history) == ["label_loss", "loss", "value_loss"]
    total = np.array(history.history["label_loss"]) + np.array(history.history["value_loss"])
    np.testing.assert_allclose(history.history["loss"], total, rtol=1e-6)
    out = model.predict(x)
    assert [o.shape for o in out] == [(48, 3), (48, 1)]


def test_sample_weights_weigh_every_output(backend):
    x, y1, y2 = data()
    w = np.random.default_rng(2).uniform(0.0, 2.0, len(x))
    results = []
    for weights in (None, w):
        fc.set_seed(4)
        model = two_heads(fc, dtype="float32")
        model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"])
        results.append(model.fit(x, [y1, y2], sample_weight=weights, epochs=1, verbose=0).history["loss"][0])
    assert abs(results[0] - results[1]) > 1e-4


def test_a_compiled_model_of_two_outputs_saves_and_loads(tmp_path):
    model = two_heads(fc, dtype="float32")
    model.compile(optimizer="adam", loss={"label": "sparse_categorical_crossentropy", "value": "mae"},
                  loss_weights=[2.0, 1.0], metrics={"label": ["accuracy"]})
    x, y1, y2 = data()
    model.fit(x, [y1, y2], epochs=1, verbose=0)
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    for a, b in zip(loaded.predict(x), model.predict(x)):
        np.testing.assert_array_equal(a, b)
    assert loaded.evaluate(x, [y1, y2], verbose=0, return_dict=True) == pytest.approx(
        model.evaluate(x, [y1, y2], verbose=0, return_dict=True))


@pytest.mark.parametrize("call, words", [
    (lambda m, x, y1, y2: m.compile(loss=["mse"]), "expected 2 entries"),
    (lambda m, x, y1, y2: m.compile(loss={"label": "mse", "other": "mse"}), "'other'"),
    (lambda m, x, y1, y2: m.compile(loss="mse", loss_weights=[1.0, -1.0]), "loss_weights"),
    (lambda m, x, y1, y2: m.compile(loss="mse", metrics=["mae"]), "metrics"),
    (lambda m, x, y1, y2: m.fit(x, y2, verbose=0), "expected a list of 2 label arrays"),
    (lambda m, x, y1, y2: m.fit(x, {"label": y1}, verbose=0), "got a dict with keys ['label']"),
    (lambda m, x, y1, y2: m.fit(x, [y1[:5], y2], verbose=0), "expected 48 samples"),
    (lambda m, x, y1, y2: m.fit(x, [y1, y2], class_weight={0: 1.0, 1: 2.0, 2: 1.0}, verbose=0), "class_weight"),
])  # fmt: skip
def test_bad_settings_and_labels_are_named(call, words):
    model = two_heads(fc, dtype="float32")
    model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"])
    x, y1, y2 = data()
    before = model.get_weights()
    with pytest.raises(ValueError) as info:
        call(model, x, y1, y2)
    assert words in str(info.value)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_evaluate_lists_losses_then_metrics_by_name_as_keras():
    inp = fc.Input(shape=(4,))
    h = layers.Dense(3)(inp)
    model = fc.Model(inp, [layers.Dense(2, activation="softmax", name="priority")(h),
                           layers.Dense(2, activation="softmax", name="department")(h)])
    model.compile("sgd", ["sparse_categorical_crossentropy"] * 2, metrics=[["accuracy"], ["accuracy"]])
    x, y = np.random.default_rng(0).normal(size=(8, 4)), np.zeros(8, int)
    logs = model.evaluate(x, [y, y], verbose=0, return_dict=True)
    assert list(logs) == ["loss", "priority_loss", "department_loss", "department_accuracy", "priority_accuracy"]
    assert model.evaluate(x, [y, y], verbose=0) == pytest.approx(list(logs.values()))


@pytest.mark.parametrize("loss, labels", [("softmax_ce", "ids"), ("softmax_ce", "rows"), ("categorical", "rows")])
def test_accuracy_of_one_output_of_several_follows_the_labels_as_keras_resolves_it(loss, labels):
    x, y1, y2 = data()
    model = two_heads(fc)
    if loss == "softmax_ce":  # fcgpu's own loss on the softmax's input: class ids or one-hot rows
        model.get_layer("label").activation = "linear"
    first = fc.losses.SoftmaxCrossEntropy() if loss == "softmax_ce" else "categorical_crossentropy"
    targets = y1 if labels == "ids" else np.eye(3)[y1]
    model.compile(optimizer=fc.optimizers.SGD(0.1), loss=[first, "mse"], metrics=[["accuracy"], ["mae"]])
    logs = model.evaluate(x, [targets, y2], return_dict=True)
    predicted = model.predict(x)[0]
    assert logs["label_accuracy"] == pytest.approx(np.mean(predicted.argmax(1) == y1))
