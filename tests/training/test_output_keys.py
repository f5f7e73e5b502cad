"""Models whose outputs are a dict keyed other than their layers' names, as Keras 3 takes them:
compile's loss, loss_weights and metrics, fit's labels and sample weights by the dict's keys; the
logs named by the keys, evaluate's list in Keras's order; the layers' names refused as Keras does."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc

keras = pytest.importorskip("keras")


def keyed_heads(lib, dtype="float64"):
    inp = lib.Input(shape=(5,), name="features", **({"dtype": dtype} if lib is keras else {}))
    h = lib.layers.Dense(4, activation="tanh", dtype=dtype, name="hidden")(inp)
    return lib.Model(inp, {"score": lib.layers.Dense(1, dtype=dtype, name="head_a")(h),
                           "klass": lib.layers.Dense(3, activation="softmax", dtype=dtype, name="head_b")(h)})


def both_models():
    keras.config.set_dtype_policy("float64")
    try:
        theirs = keyed_heads(keras)
    finally:
        keras.config.set_dtype_policy("float32")
    ours = keyed_heads(fc)
    weights = [np.random.default_rng(1).normal(scale=0.5, size=w.shape) for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32).astype(np.float64)
    return x, {"score": rng.normal(size=(n, 1)).astype(np.float32).astype(np.float64), "klass": rng.integers(0, 3, n)}


def close(got, want, what):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=2e-6, atol=1e-6,
                               err_msg=what)


LOSSES = {"score": "mse", "klass": "sparse_categorical_crossentropy"}


@pytest.mark.parametrize("loss", [LOSSES, dict(reversed(LOSSES.items())), ["sparse_categorical_crossentropy", "mse"]],
                         ids=["dict", "dict-reversed", "list"])
def test_dict_outputs_by_their_keys_train_as_keras(loss):
    ours, theirs = both_models()
    x, y = data()
    spec = dict(loss=loss, metrics={"klass": ["accuracy"], "score": ["mae"]})
    if isinstance(loss, dict):
        spec["loss_weights"] = {"score": 0.5, "klass": 1.0}
    theirs.compile(optimizer=keras.optimizers.SGD(0.125), **spec)
    ours.compile(optimizer=fc.optimizers.SGD(0.125), **spec)
    h_theirs = theirs.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    h_ours = ours.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    assert sorted(h_ours) == sorted(h_theirs) == ["klass_accuracy", "klass_loss", "loss", "score_loss", "score_mae"]
    for key in h_theirs:
        close(h_ours[key], h_theirs[key], key)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        close(a, b, "weights")
    want = theirs.evaluate(x, y, verbose=0, return_dict=True)
    got = ours.evaluate(x, y, verbose=0, return_dict=True)
    assert sorted(got) == sorted(want)
    for key in want:
        close(got[key], want[key], key)
    # the list: 'loss', each output's loss (in the loss dict's order), then the metrics by name
    close(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), "evaluate's list")
    close(ours.train_on_batch(x, y), theirs.train_on_batch(x, y), "train_on_batch's list")
    for key, part in ours.predict(x, verbose=0).items():
        close(part, theirs.predict(x, verbose=0)[key], key)


def test_one_loss_for_every_keyed_output_logs_by_key():
    ours, theirs = both_models()
    x, y = data()
    y = {"score": y["score"], "klass": np.eye(3)[y["klass"]]}
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss="mse")
    h_ours = ours.fit(x, y, epochs=1, shuffle=False, verbose=0).history
    h_theirs = theirs.fit(x, y, epochs=1, shuffle=False, verbose=0).history
    assert sorted(h_ours) == sorted(h_theirs) == ["klass_loss", "loss", "score_loss"]
    close(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), "evaluate's list")


def test_sample_weights_by_key():
    ours, theirs = both_models()
    x, y = data()
    w = np.random.default_rng(3).uniform(0.0, 2.0, len(x))
    for model, lib in ((ours, fc), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.125), loss=LOSSES)
    h_theirs = theirs.fit(x, y, sample_weight={"score": w, "klass": w}, batch_size=8, shuffle=False, verbose=0).history
    h_ours = ours.fit(x, y, sample_weight={"score": w, "klass": w}, batch_size=8, shuffle=False, verbose=0).history
    for key in h_theirs:
        close(h_ours[key], h_theirs[key], key)
    got = ours.evaluate(x, y, sample_weight={"klass": w, "score": w}, verbose=0)
    close(got, theirs.evaluate(x, y, sample_weight={"klass": w, "score": w}, verbose=0), "evaluate")
    before = ours.get_weights()
    with pytest.raises(ValueError, match="differ"):
        ours.fit(x, y, sample_weight={"score": w, "klass": np.ones(len(x))}, verbose=0)
    with pytest.raises(ValueError, match="'head_a'"):
        ours.fit(x, y, sample_weight={"head_a": w, "head_b": w}, verbose=0)
    for a, b in zip(before, ours.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("what", ["loss", "metrics", "y"])
def test_the_layers_names_are_refused_as_keras_refuses_them(what):
    x, y = data()
    by_layer = {"head_a": "mse", "head_b": "sparse_categorical_crossentropy"}
    spec = dict(loss=by_layer if what == "loss" else LOSSES, metrics={"head_b": ["accuracy"]} if what == "metrics" else None)
    labels = {"head_a": y["score"], "head_b": y["klass"]} if what == "y" else y
    for lib in (keras, fc):
        model = keyed_heads(lib, dtype="float32")
        with pytest.raises((ValueError, KeyError)) as info:
            model.compile(optimizer="sgd", **spec)
            model.fit(x, labels, epochs=1, verbose=0)
        if lib is fc:
            assert "'klass'" in str(info.value) and "'score'" in str(info.value)


def test_list_outputs_keep_the_layers_names():
    inp = fc.Input((5,))
    h = fc.layers.Dense(4)(inp)
    model = fc.Model(inp, [fc.layers.Dense(1, name="head_a")(h), fc.layers.Dense(3, activation="softmax", name="head_b")(h)])
    model.compile(optimizer="sgd", loss={"head_a": "mse", "head_b": "sparse_categorical_crossentropy"})
    x, y = data()
    history = model.fit(x, {"head_a": y["score"], "head_b": y["klass"]}, verbose=0).history
    assert sorted(history) == ["head_a_loss", "head_b_loss", "loss"]


def test_weighted_metrics_by_key_as_keras():
    ours, theirs = both_models()
    x, y = data()
    w = np.random.default_rng(5).uniform(0.0, 2.0, len(x))
    spec = dict(loss=LOSSES, metrics={"klass": ["accuracy"]}, weighted_metrics={"klass": ["accuracy"], "score": ["mae"]})
    theirs.compile(optimizer=keras.optimizers.SGD(0.125), **spec)
    ours.compile(optimizer=fc.optimizers.SGD(0.125), **spec)
    h_theirs = theirs.fit(x, y, sample_weight=w, batch_size=8, shuffle=False, verbose=0).history
    h_ours = ours.fit(x, y, sample_weight=w, batch_size=8, shuffle=False, verbose=0).history
    assert sorted(h_ours) == sorted(h_theirs)
    assert "klass_weighted_accuracy" in h_ours
    for key in h_theirs:
        close(h_ours[key], h_theirs[key], key)
    close(ours.evaluate(x, y, sample_weight=w, verbose=0), theirs.evaluate(x, y, sample_weight=w, verbose=0), "evaluate")
    # the weighted metrics stay weighted through the compile config
    again = keyed_heads(fc)
    again.set_weights(ours.get_weights())
    again.compile_from_config(ours.get_compile_config())
    assert again.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True) == pytest.approx(
        ours.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True))


def test_a_compile_config_by_layer_name_comes_back_by_key():
    ours, _ = both_models()
    ours.compile(optimizer="sgd", loss=LOSSES, metrics={"score": ["mae"]})
    config = ours.get_compile_config()
    assert config["metrics"] == {"klass": [], "score": ["mae"]}
    config["metrics"] = {"head_b": [], "head_a": ["mae"]}  # as files written before the keys named outputs
    again = keyed_heads(fc)
    again.compile_from_config(config)
    x, y = data()
    assert list(again.evaluate(x, y, verbose=0, return_dict=True)) == ["loss", "klass_loss", "score_loss", "score_mae"]
