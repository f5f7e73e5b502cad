"""Losses: values and gradients against float64 central differences and closed forms, label checks."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.losses import BinaryCrossEntropy, MeanSquaredError, SoftmaxCrossEntropy


def host(a):
    return np.array(fc.to_numpy(a), copy=True)


def central_differences(loss, pred: np.ndarray, labels, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(pred)
    for idx in np.ndindex(pred.shape):
        up, down = pred.copy(), pred.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (loss.forward(up, labels) - loss.forward(down, labels)) / (2 * h)
    return grad


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# -- softmax cross-entropy ------------------------------------------------------------------
@pytest.mark.parametrize("one_hot", [False, True])
def test_softmax_xent_matches_definition_and_central_differences(backend, rng, one_hot):
    z = rng.normal(size=(4, 5)) * 3
    ids = np.array([0, 4, 2, 2])
    labels = np.eye(5)[ids] if one_hot else ids
    loss = SoftmaxCrossEntropy()
    value = loss.forward(z, labels)
    expected = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(4), ids])
    assert value == pytest.approx(expected, rel=1e-12)
    grad = host(loss.backward())
    assert grad.shape == z.shape and grad.dtype == np.float64
    np.testing.assert_allclose(grad, (softmax(z) - np.eye(5)[ids]) / 4, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grad, central_differences(loss, z, labels), rtol=1e-6, atol=1e-9)


def test_softmax_xent_soft_targets_central_differences(backend, rng):
    z = rng.normal(size=(3, 4))
    targets = softmax(rng.normal(size=(3, 4)))
    loss = SoftmaxCrossEntropy()
    value = loss.forward(z, targets)
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    assert value == pytest.approx(-np.mean(np.sum(targets * log_softmax, axis=1)), rel=1e-12)
    np.testing.assert_allclose(host(loss.backward()), central_differences(loss, z, targets), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_xent_closed_form_at_1000(backend, dtype):
    z = np.array([[1000, -1000, 0], [-1000, 1000, 0], [1000, 1000, -1000]], dtype)
    ids = np.array([0, 0, 1])
    loss = SoftmaxCrossEntropy()
    # rows: log(1 + e^-1000 + e^-2000) = 0; 1000 - (-1000) = 2000; log(2) + 1000 - 1000 = log 2.
    expected = (0.0 + 2000.0 + np.log(2.0)) / 3
    for labels in (ids, np.eye(3, dtype=dtype)[ids]):
        value = loss.forward(z, labels)
        assert np.isfinite(value) and value == pytest.approx(expected, rel=1e-6)
        grad = host(loss.backward())
        assert grad.dtype == dtype and np.isfinite(grad).all()
        expected_grad = np.array([[0, 0, 0], [-1, 1, 0], [0.5, -0.5, 0]]) / 3
        # lse = 1000 + log 2 carries float32's spacing at 1000 (6e-5) into exp(z - lse).
        np.testing.assert_allclose(grad, expected_grad, atol=2e-5 if dtype == np.float32 else 1e-12)


# -- binary cross-entropy -----------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6,), (6, 1)])
def test_bce_logits_matches_definition_and_central_differences(backend, rng, shape):
    z = rng.normal(size=shape) * 4
    y = rng.uniform(size=6)  # labels (B,) serve either pred shape
    loss = BinaryCrossEntropy(from_logits=True)
    value = loss.forward(z, y)
    p = 1 / (1 + np.exp(-z.reshape(-1)))
    assert value == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), rel=1e-10)
    grad = host(loss.backward())
    assert grad.shape == shape
    np.testing.assert_allclose(grad.reshape(-1), (p - y) / 6, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(grad, central_differences(loss, z, y), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_logits_closed_form_at_100(backend, dtype):
    z = np.array([[100], [-100], [100], [-100]], dtype)
    y = np.array([1, 0, 0, 1], dtype)
    loss = BinaryCrossEntropy(from_logits=True)
    # softplus(z) - y z: ~0, ~0, 100, 100 -> mean 50; gradient (sigmoid(z) - y) / 4.
    value = loss.forward(z, y)
    assert np.isfinite(value) and value == pytest.approx(50.0, rel=1e-7)
    grad = host(loss.backward())
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, np.array([[0], [0], [1], [-1]]) / 4, atol=1e-7)


def test_bce_probabilities_matches_definition_and_central_differences(backend, rng):
    p = rng.uniform(0.05, 0.95, size=(5, 1))
    y = np.array([1.0, 0.0, 1.0, 0.3, 0.0])
    loss = BinaryCrossEntropy(from_logits=False)
    value = loss.forward(p, y)
    q = p[:, 0]
    assert value == pytest.approx(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)), rel=1e-10)
    grad = host(loss.backward())
    np.testing.assert_allclose(grad[:, 0], (q - y) / (q * (1 - q)) / 5, rtol=1e-10)
    np.testing.assert_allclose(grad, central_differences(loss, p, y), rtol=1e-6, atol=1e-9)


def test_bce_probabilities_clipped_at_0_and_1(backend):
    loss = BinaryCrossEntropy(from_logits=False)
    value = loss.forward(np.array([[0.0], [1.0]]), np.array([1.0, 0.0]))
    assert value == pytest.approx(-np.log(1e-7), rel=1e-6)
    assert np.isfinite(host(loss.backward())).all()


# -- mean squared error ----------------------------------------------------------------------------
def test_mse_matches_definition_and_central_differences(backend, rng):
    p = rng.normal(size=(4, 3))
    y = rng.normal(size=(4, 3))
    loss = MeanSquaredError()
    assert loss.forward(p, y) == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    grad = host(loss.backward())
    np.testing.assert_allclose(grad, 2 * (p - y) / 12, rtol=1e-12)
    np.testing.assert_allclose(grad, central_differences(loss, p, y), rtol=1e-6, atol=1e-9)


def test_mse_accepts_column_labels_for_one_output(backend):
    loss = MeanSquaredError()
    assert loss.forward(np.array([[1.0], [3.0]]), np.array([0.0, 1.0])) == pytest.approx((1 + 4) / 2)
    assert host(loss.backward()).shape == (2, 1)


# -- results on the active backend, buffers ---------------------------------------------------------
def test_backward_is_a_backend_array_and_its_buffer_is_reused(backend, rng):
    z = rng.normal(size=(8, 3)).astype(np.float32)
    loss = SoftmaxCrossEntropy()
    loss.forward(z, np.zeros(8, int))
    g = loss.backward()
    assert backend.owns(g) and g.dtype == np.float32
    first = id(g)
    del g
    loss.forward(z, np.ones(8, int))
    g = loss.backward()
    assert id(g) == first  # nobody held it: written in place
    kept = host(g)
    loss.forward(z, np.zeros(8, int))
    g2 = loss.backward()
    assert g2 is not g  # the caller still holds g: a new buffer, g untouched
    np.testing.assert_array_equal(host(g), kept)


# -- bad labels -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "labels, error, words",
    [
        (np.array([0, 1, 3]), ValueError, "in [0, 3)"),
        (np.array([0, -1, 2]), ValueError, "in [0, 3)"),
        (np.array([0, 1]), ValueError, "expected 3 class ids"),
        (np.zeros((3, 4)), ValueError, "one-hot targets of shape (3, 3)"),
        (np.zeros((3, 3, 1)), ValueError, "got shape (3, 3, 1)"),
        (np.array(["a", "b", "c"]), TypeError, "numeric"),
        (np.array([0.0, 1.5, 2.0]), ValueError, "whole numbers"),
        (np.array([[0, 1, 0], [0, 0, 2], [1, 0, 0]]), ValueError, "[0, 1]"),
    ],
)
def test_softmax_xent_rejects_bad_labels(labels, error, words):
    with pytest.raises(error, match="labels") as info:
        SoftmaxCrossEntropy().forward(np.zeros((3, 3)), labels)
    assert words in str(info.value)


def test_softmax_xent_accepts_integral_float_and_column_ids():
    loss = SoftmaxCrossEntropy()
    z = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    a = loss.forward(z, np.array([2, 0]))
    assert loss.forward(z, np.array([2.0, 0.0])) == a
    assert loss.forward(z, np.array([[2], [0]])) == a


@pytest.mark.parametrize(
    "labels, words",
    [(np.array([0.0, 2.0, 1.0]), "[0, 1]"), (np.array([0.0, 1.0]), "expected 3 labels"), (np.array([0, np.nan, 1]), "finite")],
)
def test_bce_rejects_bad_labels(labels, words):
    with pytest.raises(ValueError, match="labels") as info:
        BinaryCrossEntropy().forward(np.zeros((3, 1)), labels)
    assert words in str(info.value)


def test_mse_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"labels: expected shape \(4, 2\)"):
        MeanSquaredError().forward(np.zeros((4, 2)), np.zeros((4, 3)))


def test_backward_before_forward_and_bad_pred():
    with pytest.raises(RuntimeError, match="before forward"):
        MeanSquaredError().backward()
    with pytest.raises(ValueError, match="pred"):
        SoftmaxCrossEntropy().forward(np.zeros(3), np.array([0]))


def test_get_resolves_names_and_configs():
    assert isinstance(fc.losses.get("categorical_crossentropy"), SoftmaxCrossEntropy)
    assert isinstance(fc.losses.get("mse"), MeanSquaredError)
    # Keras's name takes probabilities whatever the model (fused with a sigmoid output by the model).
    assert fc.losses.get("binary_crossentropy").from_logits is False
    restored = fc.losses.get(BinaryCrossEntropy(from_logits=False).get_config())
    assert isinstance(restored, BinaryCrossEntropy) and restored.from_logits is False
    with pytest.raises(ValueError, match="loss"):
        fc.losses.get("hinge")


def test_soft_targets_must_be_distributions(backend):
    loss = fc.losses.SoftmaxCrossEntropy()
    logits = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], np.float32)
    with pytest.raises(ValueError, match=r"labels: each row of one-hot or probability targets must sum to 1, row 0 sums to 2"):
        loss.forward(logits, np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    soft = np.array([[0.2, 0.3, 0.5], [0.0, 0.5, 0.5]])
    value = loss.forward(logits, soft)
    lse = np.log(np.exp(logits.astype(np.float64)).sum(1, keepdims=True))
    assert value == pytest.approx(float(np.mean(np.sum(soft * (lse - logits), axis=1))), rel=1e-6)
    grad = fc.to_numpy(loss.backward())
    np.testing.assert_allclose(grad, (np.exp(logits - lse) - soft) / 2, rtol=1e-5, atol=1e-7)


def test_probability_bce_gradient_is_zero_where_clipped(backend):
    loss = fc.losses.BinaryCrossEntropy(from_logits=False)
    p = np.array([[0.0], [1.0], [0.3]], np.float32)
    y = np.array([[1.0], [0.0], [1.0]], np.float32)
    assert np.isfinite(loss.forward(p, y))
    grad = fc.to_numpy(loss.backward())[:, 0]
    assert grad[0] == 0 and grad[1] == 0
    assert grad[2] == pytest.approx((0.3 - 1.0) / (0.3 * 0.7) / 3, rel=1e-5)


def test_float16_losses_are_finite_and_agree_with_float32(backend):
    loss = fc.losses.BinaryCrossEntropy(from_logits=False)
    p = np.array([[1.0], [0.0], [0.25]], np.float16)
    y = np.array([[0.0], [1.0], [1.0]], np.float16)
    v16 = loss.forward(p, y)
    v32 = loss.forward(p.astype(np.float32), y.astype(np.float32))
    assert np.isfinite(v16) and v16 == pytest.approx(v32, rel=1e-3)


def test_float16_values_beyond_half_range_agree_on_every_backend(backend):
    """(p - y)**2 of 300 is 90000 > 65504: the sum must be formed in float, as the kernels do."""
    mse = fc.losses.MeanSquaredError()
    value = mse.forward(np.array([[300.0], [0.5]], np.float16), np.zeros((2, 1), np.float16))
    assert value == pytest.approx((300.0**2 + 0.25) / 2, rel=1e-3)
    ce = fc.losses.SoftmaxCrossEntropy()
    logits = np.array([[60000.0, -60000.0, 0.0]], np.float16)
    assert ce.forward(logits, np.array([1])) == pytest.approx(120000.0, rel=1e-3)


@pytest.mark.parametrize("case", ["ids", "one_hot", "bce_logits", "mse", "mse_two_outputs"])
def test_fused_training_steps_match_the_separate_passes(backend, rng, case):
    """Loss.step (one kernel per batch on CuPy) against the NumPy reference of its separate parts:
    the gradient, the summed loss and the correct count, edge logits included."""
    numpy_backend = fc.backends.resolve_backend("numpy")[0]
    z = rng.normal(size=(6, 4)).astype(np.float32) * 3
    z[0, :] = [1e4, -1e4, 0.0, 5.0]  # stable at huge logits
    z[1, :] = [2.0, 2.0, -1.0, 0.0]  # a tie: the first argmax counts
    if case == "ids":
        loss, labels = SoftmaxCrossEntropy(), rng.integers(0, 4, size=6)
        labels[1] = 1
    elif case == "one_hot":
        loss, labels = SoftmaxCrossEntropy(), np.eye(4)[rng.integers(0, 4, size=6)]
    elif case == "bce_logits":
        loss, z, labels = BinaryCrossEntropy(from_logits=True), z[:, :1], rng.integers(0, 2, size=(6, 1))
    elif case == "mse":
        loss, z, labels = MeanSquaredError(), z[:, :1].copy(), rng.normal(size=(6, 1))
    else:
        loss, z, labels = MeanSquaredError(), z[:, :2].copy(), rng.normal(size=(6, 2))
    host_labels = loss.prepare_labels(labels, z.shape, z.dtype, "labels")
    count = case != "mse_two_outputs"
    acc = backend.zeros((2,), np.float64)
    acc[...] = backend.from_numpy(np.array([0.5, 1.0]))  # adds to what is there
    grad = fc.to_numpy(loss.step(backend, backend.from_numpy(z), backend.from_numpy(host_labels), acc, count)).copy()
    got = fc.to_numpy(acc)
    reference = type(loss)(**{k: v for k, v in loss.get_config().items() if k != "class_name"})
    value = reference.compute(numpy_backend, z, host_labels)
    expected_grad = fc.to_numpy(reference.backward())
    expected_loss = 0.5 + value * z.shape[0]
    np.testing.assert_allclose(grad, expected_grad, rtol=2e-6, atol=1e-7)
    assert got[0] == pytest.approx(expected_loss, rel=1e-6)
    if count:
        assert got[1] == pytest.approx(1.0 + float(reference.correct(numpy_backend, z, host_labels)), rel=1e-12)
