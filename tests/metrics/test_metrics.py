"""Metrics: each against a NumPy reference on every backend, Keras's names in the logs, label
checks, configs; Keras's 'accuracy' rule for every loss (``Loss.correct``)."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import metrics
from fcgpu.losses import (
    BinaryCrossEntropy,
    CategoricalCrossentropy,
    MeanSquaredError,
    SoftmaxCrossEntropy,
    SparseCategoricalCrossentropy,
)


def summed(backend, metric, pred, labels) -> float:
    """What ``update`` adds into the total of a metric's [total, count] state, bound to a view of a
    device array (whose total holds 0.25 first)."""
    acc = backend.from_numpy(np.array([1.0, 0.25, 0.0, 2.0]))
    metric.bind(acc[1:3], backend, pred.shape[1] if pred.ndim > 1 else 1)
    metric.update(backend, backend.from_numpy(pred), backend.from_numpy(labels), None)
    got = fc.to_numpy(acc)
    assert got[0] == 1.0 and got[3] == 2.0  # only its own state
    assert got[2] == pred.shape[0]  # the count: one per sample
    return float(got[1]) - 0.25


# -- NumPy references, from Keras 3's definitions -----------------------------------------------------
def in_top_k(pred, ids, k):
    """Keras's in_top_k: rank = 1 + classes scoring strictly higher; a NaN score at the label ranks last."""
    at_label = pred[np.arange(len(ids)), ids]
    at_label = np.where(np.isnan(at_label), -np.inf, at_label)
    return 1 + np.sum(pred > at_label[:, None], axis=1) <= k


def reference(name, pred, labels, **kw):
    """The sum over rows of the per-row metric."""
    p = pred.astype(np.float64)
    if name == "binary_accuracy":
        y = labels.reshape(p.shape)
        return np.sum(np.mean((p > kw.get("threshold", 0.5)) == (y > 0.5), axis=-1))
    if name == "categorical_accuracy":
        return np.sum(np.argmax(p, axis=1) == np.argmax(labels, axis=1))
    if name == "sparse_categorical_accuracy":
        return np.sum(np.argmax(p, axis=1) == labels.reshape(-1))
    if name == "top_k_categorical_accuracy":
        return np.sum(in_top_k(p, np.argmax(labels, axis=1), kw.get("k", 5)))
    if name == "sparse_top_k_categorical_accuracy":
        return np.sum(in_top_k(p, labels.reshape(-1), kw.get("k", 5)))
    y = labels.reshape(p.shape).astype(np.float64)
    if name == "mean_absolute_error":
        return np.sum(np.mean(np.abs(p - y), axis=-1))
    return np.sum(np.mean((p - y) ** 2, axis=-1))


def scores(rng, shape, dtype=np.float64):
    p = rng.normal(size=shape)
    p[0, :2] = p[0, 2]  # a tie with the third class
    p[1, 1] = np.nan if shape[1] > 2 else p[1, 1]  # a NaN score
    return p.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=["float64", "float32", "float16"])
@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (metrics.CategoricalAccuracy, {}),
        (metrics.SparseCategoricalAccuracy, {}),
        (metrics.TopKCategoricalAccuracy, {}),
        (metrics.TopKCategoricalAccuracy, {"k": 1}),
        (metrics.TopKCategoricalAccuracy, {"k": 2}),
        (metrics.SparseTopKCategoricalAccuracy, {"k": 3}),
        (metrics.SparseTopKCategoricalAccuracy, {"k": 9}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_class_metrics_match_keras_definitions(backend, rng, cls, kwargs, dtype):
    pred = scores(rng, (20, 6), dtype)
    ids = rng.integers(0, 6, 20)
    ids[0] = 1  # tied with the argmax (the first maximum wins), and in the top 1 by Keras's rank
    ids[1] = 1  # its own score is NaN: never in the top k unless k covers every class
    metric = cls(**kwargs)
    labels = ids if "Sparse" in cls.__name__ else np.eye(6)[ids]
    expected = reference(metric.name, pred, labels, **kwargs)
    assert summed(backend, metric, pred, labels) == expected
    if "Sparse" in cls.__name__:  # (B, 1) class ids too
        assert summed(backend, metric, pred, ids[:, None]) == expected


def test_top_k_counts_ties_at_the_boundary_as_in(backend):
    pred = np.array([[0.5, 0.5, 0.5, 0.1], [0.4, 0.3, 0.3, 0.0]])
    top1 = metrics.SparseTopKCategoricalAccuracy(k=1)
    assert summed(backend, top1, pred, np.array([2, 2])) == 1.0  # row 0: all three tied are in the top 1
    assert summed(backend, metrics.SparseTopKCategoricalAccuracy(k=2), pred, np.array([2, 2])) == 2.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=["float64", "float32", "float16"])
@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (metrics.BinaryAccuracy, {}),
        (metrics.BinaryAccuracy, {"threshold": 0.0}),
        (metrics.BinaryAccuracy, {"threshold": 0.7}),
        (metrics.MeanAbsoluteError, {}),
        (metrics.MeanSquaredError, {}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_elementwise_metrics_match_keras_definitions(backend, rng, cls, kwargs, outputs, dtype):
    pred = rng.uniform(-0.5, 1.5, size=(17, outputs)).astype(dtype)
    labels = rng.integers(0, 2, size=(17, outputs)).astype(dtype)
    if cls is not metrics.BinaryAccuracy:
        labels = rng.normal(size=(17, outputs)).astype(dtype)
        labels[0] = pred[0]  # a zero error
    metric = cls(**kwargs)
    expected = reference(metric.name, pred, labels, **kwargs)
    rel = 1e-3 if dtype == np.float16 else 1e-6 if dtype == np.float32 else 1e-12
    assert summed(backend, metric, pred, labels) == pytest.approx(expected, rel=rel)
    if outputs == 1:  # (B,) labels serve one output
        assert summed(backend, metric, pred, labels[:, 0]) == pytest.approx(expected, rel=rel)


@pytest.mark.parametrize(
    "metric, pred_shape, labels_shape, words",
    [
        (metrics.MeanAbsoluteError(name="mae"), (4, 3), (4,), "'mae' expects labels of the predictions' shape (class ids: use 'sparse_categorical_accuracy')"),
        (metrics.BinaryAccuracy(), (4, 3), (4, 2), "'binary_accuracy' expects labels of the predictions' shape"),
        (metrics.CategoricalAccuracy(), (4, 3), (4,), "'categorical_accuracy' expects one-hot label rows of the predictions' shape (class ids: use the 'sparse_' metric)"),
        (metrics.TopKCategoricalAccuracy(), (4, 3), (4, 2), "one-hot label rows"),
        (metrics.SparseCategoricalAccuracy(), (4, 3), (4, 3), "expects class ids of shape (4,) (one-hot rows: use the metric without 'sparse_')"),
        (metrics.SparseTopKCategoricalAccuracy(), (4,), (4,), "expects predictions of shape (batch, classes)"),
    ],
)
def test_labels_a_metric_cannot_compare_are_refused_before_and_during_fit(backend, metric, pred_shape, labels_shape, words):
    with pytest.raises(ValueError, match="^metrics: ") as info:
        metric.check(pred_shape, labels_shape)
    assert words in str(info.value) and f"got labels of shape {labels_shape} for predictions of shape {pred_shape}" in str(info.value)
    with pytest.raises(ValueError, match="^metrics: "):
        summed(backend, metric, np.zeros(pred_shape), np.zeros(labels_shape))


# -- names, get, configs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, cls, key",
    [
        ("accuracy", metrics.CompileAccuracy, "accuracy"),
        ("acc", metrics.CompileAccuracy, "acc"),
        ("binary_accuracy", metrics.BinaryAccuracy, "binary_accuracy"),
        ("categorical_accuracy", metrics.CategoricalAccuracy, "categorical_accuracy"),
        ("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy, "sparse_categorical_accuracy"),
        ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy, "top_k_categorical_accuracy"),
        ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy, "sparse_top_k_categorical_accuracy"),
        ("mae", metrics.MeanAbsoluteError, "mae"),
        ("mean_absolute_error", metrics.MeanAbsoluteError, "mean_absolute_error"),
        ("mse", metrics.MeanSquaredError, "mse"),
        ("mean_squared_error", metrics.MeanSquaredError, "mean_squared_error"),
        ("MeanAbsoluteError", metrics.MeanAbsoluteError, "mean_absolute_error"),
    ],
)
def test_get_resolves_keras_names_and_reports_under_them(name, cls, key):
    metric = metrics.get(name)
    assert type(metric) is cls and metric.name == key


@pytest.mark.parametrize(
    "metric",
    [metrics.BinaryAccuracy(threshold=0.3), metrics.TopKCategoricalAccuracy(k=3, name="top3"), metrics.get("mae"),
     metrics.SparseTopKCategoricalAccuracy(), metrics.Accuracy(), metrics.MeanSquaredError()],
    ids=repr,
)
def test_configs_round_trip(metric):
    restored = metrics.get(metric.get_config())
    assert type(restored) is type(metric) and restored.get_config() == metric.get_config()
    assert restored.name == metric.name


def test_bad_names_configs_and_arguments_are_refused():
    with pytest.raises(ValueError, match="metrics: expected names from"):
        metrics.get("f1")
    with pytest.raises(ValueError, match="metrics: unknown config"):
        metrics.get({"class_name": "F1Score"})
    with pytest.raises(ValueError, match="does not fit TopKCategoricalAccuracy"):
        metrics.get({"class_name": "TopKCategoricalAccuracy", "kk": 2})
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k: expected a positive integer"):
            metrics.TopKCategoricalAccuracy(k=bad)
    with pytest.raises(ValueError, match="threshold: expected a finite number"):
        metrics.BinaryAccuracy(threshold=float("nan"))
    with pytest.raises(ValueError, match="name: expected a non-empty string"):
        metrics.MeanAbsoluteError(name="")


# -- in a model: logs under Keras's names, values against NumPy ---------------------------------------
def test_fit_and_evaluate_report_every_metric_under_its_keras_name(backend, rng):
    x = rng.normal(size=(40, 4)).astype(np.float32)
    ids = rng.integers(0, 5, 40)
    y = np.eye(5)[ids]
    model = fc.Sequential([fc.Dense(8, activation="tanh"), fc.Dense(5, activation="softmax")])
    asked = ["accuracy", "categorical_accuracy", "top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy(k=2, name="top2"),
             "mae", "mean_squared_error", "binary_accuracy"]
    model.compile(loss="categorical_crossentropy", optimizer=fc.optimizers.Adam(lr=1e-2), metrics=asked)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    keys = ["loss", "accuracy", "categorical_accuracy", "top_k_categorical_accuracy", "top2", "mae", "mean_squared_error",
            "binary_accuracy"]
    assert list(history.history) == keys and all(len(v) == 2 for v in history.history.values())
    logs = model.evaluate(x, y, batch_size=16, return_dict=True)
    assert list(logs) == keys
    p = model.predict(x)
    n = len(x)
    assert logs["accuracy"] == pytest.approx(reference("categorical_accuracy", p, y) / n)
    assert logs["categorical_accuracy"] == pytest.approx(logs["accuracy"])
    assert logs["top_k_categorical_accuracy"] == pytest.approx(reference("top_k_categorical_accuracy", p, y) / n)
    assert logs["top2"] == pytest.approx(reference("top_k_categorical_accuracy", p, y, k=2) / n)
    assert logs["mae"] == pytest.approx(reference("mean_absolute_error", p, y) / n, rel=1e-5)
    assert logs["mean_squared_error"] == pytest.approx(reference("mean_squared_error", p, y) / n, rel=1e-5)
    assert logs["binary_accuracy"] == pytest.approx(reference("binary_accuracy", p, y) / n)


def test_regression_metrics_in_a_model(backend, rng):
    x = rng.normal(size=(30, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -1.0, 0.5]))[:, None].astype(np.float32)
    model = fc.Sequential([fc.Dense(1)])
    model.compile(loss="huber", optimizer="sgd", metrics=["mae", "mse", "mean_absolute_error"])
    logs = model.evaluate(x, y, return_dict=True)
    p = model.predict(x)
    assert list(logs) == ["loss", "mae", "mse", "mean_absolute_error"]
    assert logs["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-5) and logs["mean_absolute_error"] == logs["mae"]
    assert logs["mse"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-5)


def test_metrics_survive_save_and_load(tmp_path, rng):
    model = fc.Sequential([fc.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam",
                  metrics=["sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy(k=1, name="top1"), "acc"])
    model.build((None, 2))
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert loaded.metrics == ["sparse_top_k_categorical_accuracy", "top1", "acc"]
    assert [m.get_config() for m in loaded.metric_objects] == [m.get_config() for m in model.metric_objects]
    assert loaded.loss.get_config() == {"class_name": "SparseCategoricalCrossentropy", "from_logits": False}


# -- Keras's 'accuracy' for each loss (Loss.correct) ------------------------------------------------
def keras_accuracy(pred, labels, binary_threshold):
    """Keras's rule: binary accuracy for a binary cross-entropy or one output, sparse categorical
    for class ids, categorical otherwise; summed over rows (binary: the per-row mean)."""
    if binary_threshold is not None:
        return np.sum(np.mean((pred > binary_threshold) == (labels.reshape(pred.shape) > 0.5), axis=1))
    truth = labels if labels.ndim == 1 else np.argmax(labels, axis=1)
    return np.sum(np.argmax(pred, axis=1) == truth)


@pytest.mark.parametrize(
    "loss, outputs, kind",
    [
        (SoftmaxCrossEntropy(), 4, "ids"),
        (SoftmaxCrossEntropy(), 4, "rows"),
        (CategoricalCrossentropy(), 4, "rows"),
        (CategoricalCrossentropy(from_logits=True), 4, "rows"),
        (SparseCategoricalCrossentropy(), 4, "ids"),
        (SparseCategoricalCrossentropy(from_logits=True), 4, "ids"),
        (fc.losses.BinaryCrossentropy(), 1, "binary"),
        (fc.losses.BinaryCrossentropy(), 3, "binary"),  # multi-label: binary accuracy per output
        (fc.losses.BinaryCrossentropy(from_logits=True), 3, "binary_logits"),
        (BinaryCrossEntropy(), 1, "binary_logits"),
        (MeanSquaredError(), 1, "binary"),
        (MeanSquaredError(), 3, "rows"),
        (fc.losses.MeanAbsoluteError(), 1, "binary"),
        (fc.losses.Huber(), 3, "rows"),
    ],
    ids=lambda v: repr(v) if isinstance(v, fc.losses.Loss) else str(v),
)
def test_correct_is_kerass_accuracy_rule_for_every_loss(backend, rng, loss, outputs, kind):
    if kind.startswith("binary") and kind != "binary_logits":
        pred = rng.uniform(size=(12, outputs))
    else:
        pred = rng.normal(size=(12, outputs))
    if kind == "ids":
        labels = rng.integers(0, outputs, 12)
    elif kind == "rows":
        labels = np.eye(outputs)[rng.integers(0, outputs, 12)]
    else:
        labels = rng.integers(0, 2, (12, outputs)).astype(float)
    prepared = loss.prepare_labels(labels, pred.shape, pred.dtype, "labels")
    threshold = {"binary": 0.5, "binary_logits": 0.0}.get(kind)  # logits: sigmoid(z) > 0.5
    got = float(loss.correct(backend, backend.from_numpy(pred), backend.from_numpy(prepared)))
    assert got == pytest.approx(keras_accuracy(pred, prepared, threshold), rel=1e-12)

