"""Every metric object against real Keras 3's on the same inputs: several batches, with and without
sample weights, from_logits, thresholds, top_k and class_id, on NumPy and the CuPy stand-in; the
standalone API (update_state / result / reset_state) and the state kept on the backend."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import metrics

keras = pytest.importorskip("keras")


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def data(kind, rng, rows):
    """(y_true, y_pred) of one batch, float32 as Keras computes them."""
    if kind == "binary":
        return rng.integers(0, 2, (rows, 1)).astype(np.float32), rng.random((rows, 1)).astype(np.float32)
    if kind == "binary_logits":
        return rng.integers(0, 2, (rows, 1)).astype(np.float32), rng.normal(0, 2, (rows, 1)).astype(np.float32)
    if kind == "multilabel":
        return rng.integers(0, 2, (rows, 3)).astype(np.float32), rng.random((rows, 3)).astype(np.float32)
    if kind in ("multi", "multi_logits", "soft"):
        z = rng.normal(0, 2, (rows, 5))
        y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, rows)]
        if kind == "soft":
            y = softmax(rng.normal(size=(rows, 5))).astype(np.float32)
        return y, (z if kind == "multi_logits" else softmax(z)).astype(np.float32)
    if kind in ("ids", "ids_logits"):
        z = rng.normal(0, 2, (rows, 5))
        return rng.integers(0, 5, rows).astype(np.float32), (z if kind == "ids_logits" else softmax(z)).astype(np.float32)
    if kind == "equal":
        return rng.integers(0, 3, (rows, 1)).astype(np.float32), rng.integers(0, 3, (rows, 1)).astype(np.float32)
    if kind == "regression":
        return rng.normal(size=(rows, 3)).astype(np.float32), rng.normal(size=(rows, 3)).astype(np.float32)
    if kind == "positive":
        return rng.uniform(0.5, 3, (rows, 3)).astype(np.float32), rng.uniform(0.1, 3, (rows, 3)).astype(np.float32)
    raise AssertionError(kind)


CASES = [
    ("Accuracy", {}, "equal"),
    ("BinaryAccuracy", {}, "binary"),
    ("BinaryAccuracy", {"threshold": 0.7}, "multilabel"),
    ("CategoricalAccuracy", {}, "multi"),
    ("SparseCategoricalAccuracy", {}, "ids"),
    ("TopKCategoricalAccuracy", {"k": 2}, "multi"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "ids"),
    ("AUC", {}, "binary"),
    ("AUC", {"curve": "PR"}, "binary"),
    ("AUC", {"num_thresholds": 37}, "multilabel"),
    ("AUC", {"from_logits": True}, "binary_logits"),
    ("AUC", {"summation_method": "minoring"}, "binary"),
    ("AUC", {"curve": "PR", "summation_method": "majoring"}, "binary"),
    ("Precision", {}, "binary"),
    ("Precision", {"thresholds": [0.3, 0.6]}, "multilabel"),
    ("Precision", {"top_k": 2}, "multi"),
    ("Precision", {"class_id": 1}, "multi"),
    ("Precision", {"class_id": 2, "thresholds": 0.1}, "multilabel"),
    ("Recall", {}, "binary"),
    ("Recall", {"thresholds": [0.2, 0.5, 0.9]}, "multilabel"),
    ("Recall", {"top_k": 1}, "multi"),
    ("Recall", {"class_id": 3}, "multi"),
    ("TruePositives", {}, "binary"),
    ("FalsePositives", {"thresholds": [0.2, 0.5, 0.8]}, "multilabel"),
    ("TrueNegatives", {}, "multilabel"),
    ("FalseNegatives", {"thresholds": 0.3}, "binary"),
    ("MeanSquaredError", {}, "regression"),
    ("MeanAbsoluteError", {}, "regression"),
    ("RootMeanSquaredError", {}, "regression"),
    ("MeanAbsolutePercentageError", {}, "positive"),
    ("MeanSquaredLogarithmicError", {}, "positive"),
    ("BinaryCrossentropy", {}, "binary"),
    ("BinaryCrossentropy", {"from_logits": True}, "binary_logits"),
    ("BinaryCrossentropy", {"label_smoothing": 0.1}, "multilabel"),
    ("CategoricalCrossentropy", {}, "multi"),
    ("CategoricalCrossentropy", {"from_logits": True}, "multi_logits"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.2}, "multi"),
    ("SparseCategoricalCrossentropy", {}, "ids"),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "ids_logits"),
    ("KLDivergence", {}, "soft"),
    ("R2Score", {}, "regression"),
    ("R2Score", {"class_aggregation": "variance_weighted_average"}, "regression"),
    ("R2Score", {"num_regressors": 2}, "regression"),
]


def keras_value(m):
    return np.asarray(keras.ops.convert_to_numpy(m.result()), np.float64)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name, kwargs, kind", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_metric_matches_keras(backend, rng, name, kwargs, kind, weighted):
    ours, theirs = getattr(metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)
    batches = [data(kind, rng, rows) for rows in (16, 7, 25)]
    for y_true, y_pred in batches:
        w = rng.uniform(0, 2, len(y_true)).astype(np.float32) if weighted else None
        ours.update_state(y_true, y_pred, sample_weight=w)
        theirs.update_state(y_true, y_pred, sample_weight=w)
        tol = 2e-4 if name in ("AUC", "R2Score") else 2e-5
        np.testing.assert_allclose(ours.result(), keras_value(theirs), rtol=tol, atol=1e-5)
    assert backend.owns(ours._state)  # the state lives on the active backend
    ours.reset_state()
    theirs.reset_state()
    np.testing.assert_allclose(ours.result(), keras_value(theirs), atol=1e-7)


def test_names_are_kerass(rng):
    """Default names, fixed or made unique the way Keras makes them."""
    for name in ("BinaryAccuracy", "MeanSquaredError", "BinaryCrossentropy", "KLDivergence", "R2Score",
                 "RootMeanSquaredError", "CategoricalCrossentropy", "Mean", "Sum"):
        assert getattr(metrics, name)().name == getattr(keras.metrics, name)().name, name
    first, second = metrics.AUC(), metrics.AUC()
    n = int(first.name[4:]) if first.name != "auc" else 0  # 'auc', then 'auc_1', 'auc_2', ... as Keras's auto_name
    assert second.name == f"auc_{n + 1}"
    assert metrics.Precision(name="prec").name == "prec"


@pytest.mark.parametrize("cls", ["Mean", "Sum"])
def test_mean_and_sum_of_values(backend, rng, cls):
    ours, theirs = getattr(metrics, cls)(), getattr(keras.metrics, cls)()
    for rows in (5, 9):
        v = rng.normal(size=(rows, 2)).astype(np.float32)
        w = rng.uniform(0, 1, rows).astype(np.float32)
        ours.update_state(v, sample_weight=w)
        theirs.update_state(v, sample_weight=w)
    ours.update_state(np.float32(3.0))
    theirs.update_state(np.float32(3.0))
    np.testing.assert_allclose(ours.result(), keras_value(theirs), rtol=1e-5)


def test_weights_of_zero_mask_rows(backend, rng):
    y, p = data("binary", rng, 20)
    w = np.ones(20, np.float32)
    w[10:] = 0
    masked, plain = metrics.AUC(), metrics.AUC()
    masked.update_state(y, p, sample_weight=w)
    plain.update_state(y[:10], p[:10])
    assert masked.result() == pytest.approx(plain.result(), abs=1e-12)
    prec = metrics.Precision()
    prec.update_state(y, p, sample_weight=w)
    assert prec.result() != metrics.Precision()(y, p) or np.all(w == 1)  # the weights changed something


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="curve"):
        metrics.AUC(curve="XYZ")
    with pytest.raises(ValueError, match="thresholds"):
        metrics.Precision(thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="top_k"):
        metrics.Recall(top_k=0)
    with pytest.raises(ValueError, match="multi_label"):
        metrics.AUC(multi_label=True)
    with pytest.raises(ValueError, match="weights"):
        metrics.Precision().update_state(np.ones((4, 1)), np.ones((4, 1)), sample_weight=np.ones(3))


@pytest.mark.parametrize("string, cls, key", [
    ("auc", metrics.AUC, "auc"), ("precision", metrics.Precision, "precision"), ("recall", metrics.Recall, "recall"),
    ("true_positives", metrics.TruePositives, "true_positives"), ("binary_crossentropy", metrics.BinaryCrossentropy,
    "binary_crossentropy"), ("bce", metrics.BinaryCrossentropy, "bce"), ("mape", metrics.MeanAbsolutePercentageError,
    "mape"), ("msle", metrics.MeanSquaredLogarithmicError, "msle"), ("r2_score", metrics.R2Score, "r2_score"),
    ("kl_divergence", metrics.KLDivergence, "kl_divergence"), ("root_mean_squared_error", metrics.RootMeanSquaredError,
    "root_mean_squared_error"), ("AUC", metrics.AUC, "auc"),
])
def test_strings_resolve_as_kerass_get(string, cls, key):
    metric = metrics.get(string)
    assert type(metric) is cls and metric.name == key
    assert type(keras.metrics.get(string)).__name__ == cls.__name__


def test_a_metric_moves_between_backends(backend_named, rng):
    """The same object, used on the stand-in and then on NumPy (as a model moved with ``to``)."""
    y, p = data("binary", rng, 30)
    m, ref = metrics.Precision(thresholds=[0.3, 0.6]), keras.metrics.Precision(thresholds=[0.3, 0.6])
    ref.update_state(y, p)
    for name in ("cupy-standin", "numpy"):
        with fc.use_backend(backend_named(name)) as b:
            state = b.zeros((m.state_size(1),), np.float64)
            m.bind(state, b, 1)  # as fit binds it after model.to(...)
            m.update_state(y, p)
            assert b.owns(m._state) and m._state is state
            np.testing.assert_allclose(m.result(), keras_value(ref), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        m.update_state(y, p, sample_weight=[1.0, 2.0, 3.0])
