"""Metric objects in fit and evaluate: Keras's history keys, values equal to Keras's metrics on the
same predictions, custom Metric subclasses and metric functions, dicts in compile, EarlyStopping on
a metric, and no host read per step more with more metrics (counted on the CuPy stand-in)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import metrics, ops
from fcgpu.bench.launches import launches_per_step

keras = pytest.importorskip("keras")


def binary_data(rng, n=240):
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, :2].sum(axis=1) + 0.5 * rng.normal(size=n) > 0).astype(np.float32)
    return x, y[:, None]


def my_mae(y_true, y_pred):
    return ops.mean(ops.abs(y_true - y_pred), axis=-1)


def keras_mae(y_true, y_pred):
    return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)


keras_mae.__name__ = "my_mae"  # the same function, logged under the same name


def metric_list(lib, fn):
    m = lib.metrics
    return ["accuracy", "auc", "precision", "recall", "binary_crossentropy", "mse", "true_positives", "mape",
            m.AUC(name="prc", curve="PR"), m.FalseNegatives(name="fn"), m.Recall(name="recall_at_7", thresholds=0.7), fn]


def test_history_keys_are_kerass(rng):
    x, y = binary_data(rng)
    ours = fc.Sequential([fc.Input(shape=(8,)), fc.layers.Dense(8, activation="relu"), fc.layers.Dense(1, activation="sigmoid")])
    ours.compile(optimizer="adam", loss="binary_crossentropy", metrics=metric_list(fc, my_mae))
    theirs = keras.Sequential([keras.Input(shape=(8,)), keras.layers.Dense(8, activation="relu"),
                               keras.layers.Dense(1, activation="sigmoid")])
    theirs.compile(optimizer="adam", loss="binary_crossentropy", metrics=metric_list(keras, keras_mae))
    fit = dict(epochs=2, batch_size=32, validation_split=0.25, verbose=0)
    got, want = ours.fit(x, y, **fit).history, theirs.fit(x, y, **fit).history
    assert sorted(got) == sorted(want)
    assert sorted(ours.evaluate(x, y, return_dict=True)) == sorted(theirs.evaluate(x, y, return_dict=True, verbose=0))


def test_evaluate_and_validation_figures_equal_kerass_metrics_on_the_predictions(backend, rng):
    x, y = binary_data(rng)
    x_val, y_val = binary_data(rng, 100)
    model = fc.Sequential([fc.Input(shape=(8,)), fc.layers.Dense(8, activation="relu"), fc.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=metric_list(fc, my_mae))
    history = model.fit(x, y, epochs=2, batch_size=32, validation_data=(x_val, y_val), verbose=0)
    logs = model.evaluate(x_val, y_val, batch_size=32, return_dict=True)  # several batches into one state
    p = model.predict(x_val)
    for key, metric in zip(list(logs)[1:], metric_list(keras, keras_mae)):
        k = keras.metrics.get(metric) if isinstance(metric, str) and metric != "accuracy" else metric
        k = keras.metrics.BinaryAccuracy() if metric == "accuracy" else k
        k = keras.metrics.MeanMetricWrapper(k) if callable(k) and not isinstance(k, keras.metrics.Metric) else k
        k.reset_state()
        k.update_state(y_val, p)
        assert logs[key] == pytest.approx(float(keras.ops.convert_to_numpy(k.result())), rel=1e-4, abs=1e-5), key
        assert history.history[f"val_{key}"][-1] == pytest.approx(logs[key], rel=1e-12, abs=1e-12), key


class CategoricalTruePositives(metrics.Metric):
    """The Keras guide's example ("Writing your own metrics"), with fcgpu.ops."""

    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.reshape(ops.argmax(y_pred, axis=1), (-1, 1))
        values = ops.cast(ops.reshape(y_true, (-1, 1)), "int32") == ops.cast(y_pred, "int32")
        values = ops.cast(values, "float32")
        if sample_weight is not None:
            values = ops.multiply(values, ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1)))
        self.true_positives.assign_add(ops.sum(values))

    def result(self):
        return self.true_positives

    def reset_state(self):
        self.true_positives.assign(0.0)


class MeanOfMax(metrics.Metric):
    """Two variables and a result computed from them."""

    def __init__(self, name="mean_of_max"):
        super().__init__(name=name)
        self.total = self.add_weight(name="total", initializer="zeros")
        self.count = self.add_weight(name="count", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total.assign_add(ops.sum(ops.max(y_pred, axis=-1)))
        self.count.assign_add(ops.cast(ops.shape(y_pred)[0], "float32"))

    def result(self):
        return self.total / self.count


def test_custom_metric_subclass_and_function_in_fit(backend, rng):
    x = rng.normal(size=(150, 6)).astype(np.float32)
    ids = rng.integers(0, 3, 150)
    model = fc.Sequential([fc.Input(shape=(6,)), fc.layers.Dense(3, activation="softmax")])

    def top_probability(y_true, y_pred):
        return ops.max(y_pred, axis=-1)

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=[CategoricalTruePositives(), MeanOfMax(), top_probability, "accuracy"])
    history = model.fit(x, ids, epochs=2, batch_size=40, verbose=0)
    assert set(history.history) == {"loss", "categorical_true_positives", "mean_of_max", "top_probability", "accuracy"}
    logs = model.evaluate(x, ids, batch_size=64, return_dict=True)
    p = model.predict(x)
    assert logs["categorical_true_positives"] == float(np.sum(np.argmax(p, axis=1) == ids))
    assert logs["mean_of_max"] == pytest.approx(float(np.mean(p.max(axis=1))), rel=1e-6)
    assert logs["top_probability"] == pytest.approx(logs["mean_of_max"], rel=1e-6)
    assert logs["accuracy"] == pytest.approx(logs["categorical_true_positives"] / 150, rel=1e-12)
    # the training figure: the epoch's count, reset at its start (not two epochs' sum)
    assert 0 < history.history["categorical_true_positives"][-1] <= 150


def test_custom_metric_standalone(backend):
    m = CategoricalTruePositives()
    m.update_state(np.array([0, 1, 2]), np.eye(3)[[0, 2, 2]])
    m.update_state(np.array([1]), np.eye(3)[[1]], sample_weight=np.array([0.5]))
    assert float(m.result()) == 2.5
    assert backend.owns(m.true_positives.value)
    m.reset_state()
    assert float(m.result()) == 0.0


def test_metrics_dict_for_the_output_and_refusals(rng):
    x, y = binary_data(rng, 64)
    model = fc.Sequential([fc.Input(shape=(8,)), fc.layers.Dense(1, activation="sigmoid")], name="m")
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics={"dense": ["auc", metrics.Precision(name="p")]})
    assert model.compiled_metrics_spec == {"dense": ["auc", model.metric_objects[1]]}
    assert set(model.fit(x, y, epochs=1, verbose=0).history) == {"loss", "auc", "p"}
    with pytest.raises(ValueError, match="one output"):
        model.compile(optimizer="sgd", loss="binary_crossentropy", metrics={"a": ["auc"], "b": ["mse"]})


def test_early_stopping_on_val_binary_crossentropy_stops(rng):
    x, y = binary_data(rng)
    model = fc.Sequential([fc.Input(shape=(8,)), fc.layers.Dense(4, activation="relu"), fc.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["binary_crossentropy"])
    stop = fc.callbacks.EarlyStopping(monitor="val_binary_crossentropy", patience=1, min_delta=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a monitor that is not in the logs only warns: fail here
        history = model.fit(x, y, epochs=20, batch_size=32, validation_split=0.2, verbose=0, callbacks=[stop])
    assert len(history.history["loss"]) == 2
    assert history.history["val_binary_crossentropy"][0] > 0


def test_batch_logs_carry_running_metric_values(rng):
    x, y = binary_data(rng, 128)
    seen = []
    model = fc.Sequential([fc.Input(shape=(8,)), fc.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["auc", "precision"])
    cb = fc.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(dict(logs)))
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[cb], shuffle=False)
    assert [sorted(s) for s in seen] == [["auc", "loss", "precision"]] * 4
    assert seen[-1]["auc"] == history.history["auc"][0]
    assert len({s["auc"] for s in seen}) > 1  # running values, batch by batch


@pytest.mark.parametrize("extra", [["auc", "precision", "recall", "binary_crossentropy", "true_positives", "mse"]])
def test_host_reads_per_step_do_not_grow_with_metrics(extra):
    plain = launches_per_step((20, 16, 1), batch=32, loss=fc.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"], steps=12)
    more = launches_per_step((20, 16, 1), batch=32, loss=fc.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy", *extra], steps=12)
    assert more.per_step.transfers == plain.per_step.transfers
    assert more.per_epoch.transfers == plain.per_epoch.transfers
    assert more.per_step.total > plain.per_step.total  # the metrics did run on the device


def test_saved_models_keep_the_metrics_they_can(tmp_path, rng):
    x, y = binary_data(rng, 64)
    model = fc.Sequential([fc.Input(shape=(8,)), fc.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy",
                  metrics=["auc", metrics.AUC(name="prc", curve="PR"), my_mae, CategoricalTruePositives()])
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.fcgpu")
    with pytest.warns(UserWarning, match="'my_mae', 'categorical_true_positives'"):
        loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert loaded.metrics == ["auc", "prc"]
    assert loaded.metric_objects[1].curve == "PR"
    plain = fc.Sequential([fc.Input(shape=(8,)), fc.layers.Dense(1, activation="sigmoid")])
    plain.compile(optimizer="adam", loss="binary_crossentropy", metrics=["auc", "precision", "binary_crossentropy"])
    plain.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").get_compile_config()["metrics"] == ["auc", "precision", "binary_crossentropy"]
    assert fc.load_model(tmp_path / "m.keras").metrics == ["auc", "precision", "binary_crossentropy"]


def test_labels_a_confusion_metric_cannot_compare_are_refused_before_fit_starts(rng):
    x = rng.normal(size=(32, 8)).astype(np.float32)
    model = fc.Sequential([fc.Input(shape=(8,)), fc.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["auc"])
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="'auc' expects labels of the predictions' shape"):
        model.fit(x, rng.integers(0, 3, 32), epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
