"""Losses: values and gradients against float64 central differences and closed forms, label checks."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from helpers import host
from fcgpu.losses import (
    BinaryCrossEntropy,
    CategoricalCrossentropy,
    MeanSquaredError,
    SoftmaxCrossEntropy,
    SparseCategoricalCrossentropy,
)


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


@pytest.mark.parametrize(
    "name, cls, from_logits",
    [
        ("softmax_cross_entropy", SoftmaxCrossEntropy, None),
        ("categorical_crossentropy", fc.losses.CategoricalCrossentropy, False),
        ("sparse_categorical_crossentropy", fc.losses.SparseCategoricalCrossentropy, False),
        ("binary_crossentropy", fc.losses.BinaryCrossentropy, False),
        ("bce", fc.losses.BinaryCrossentropy, False),
        ("mse", MeanSquaredError, None),
        ("mean_squared_error", MeanSquaredError, None),
        ("MSE", MeanSquaredError, None),
        ("mae", fc.losses.MeanAbsoluteError, None),
        ("mean_absolute_error", fc.losses.MeanAbsoluteError, None),
        ("huber", fc.losses.Huber, None),
        ("Huber", fc.losses.Huber, None),
    ],
)
def test_get_resolves_keras_names_with_keras_semantics(name, cls, from_logits):
    """Keras's cross-entropy names take probabilities; fcgpu's 'softmax_cross_entropy' takes logits."""
    loss = fc.losses.get(name)
    assert type(loss) is cls
    if from_logits is not None:
        assert loss.from_logits is from_logits and loss.takes_probabilities
    assert fc.losses.get(name) is not loss  # a fresh object each time


@pytest.mark.parametrize(
    "loss",
    [
        SoftmaxCrossEntropy(),
        fc.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        fc.losses.CategoricalCrossentropy(),
        fc.losses.SparseCategoricalCrossentropy(from_logits=True),
        fc.losses.BinaryCrossentropy(label_smoothing=0.2),
        BinaryCrossEntropy(from_logits=False, eps=1e-6),
        BinaryCrossEntropy(),
        MeanSquaredError(),
        fc.losses.MeanAbsoluteError(),
        fc.losses.Huber(delta=0.5),
    ],
    ids=repr,
)
def test_get_config_round_trips(loss):
    restored = fc.losses.get(loss.get_config())
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    assert fc.losses.get(loss) is loss


def test_get_refuses_unknown_names_and_configs():
    with pytest.raises(ValueError, match="loss: expected a Loss instance or one of"):
        fc.losses.get("hinge")
    with pytest.raises(ValueError, match="loss: unknown config"):
        fc.losses.get({"class_name": "Hinge"})
    with pytest.raises(ValueError, match="does not fit Huber"):
        fc.losses.get({"class_name": "Huber", "delta": 1.0, "gamma": 2})
    # 0.1's configs still load
    old = fc.losses.get({"class_name": "BinaryCrossEntropy", "from_logits": False, "eps": 1e-7})
    assert type(old) is BinaryCrossEntropy and old.from_logits is False


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


@pytest.mark.parametrize("case", ["ids", "one_hot", "bce_logits", "mse", "mse_two_outputs", "mae", "huber", "huber_two_outputs"])
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
    elif case == "mse_two_outputs":
        loss, z, labels = MeanSquaredError(), z[:, :2].copy(), rng.normal(size=(6, 2))
    elif case == "mae":
        loss, z, labels = fc.losses.MeanAbsoluteError(), z[:, :3].copy(), rng.normal(size=(6, 3))
        labels[2, 0] = z[2, 0]  # a zero error: sign(0) = 0
    else:
        loss, z = fc.losses.Huber(delta=0.7), z[:, :2].copy() if case == "huber_two_outputs" else z[:, :1].copy()
        labels = rng.normal(size=z.shape) * 2
    host_labels = loss.prepare_labels(labels, z.shape, z.dtype, "labels")
    count = not case.endswith("two_outputs") and case != "mae"  # the fused regression steps count nothing
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


# -- Keras 3's losses: gradients by float64 central differences -------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "CategoricalCrossentropy"},
        {"class_name": "CategoricalCrossentropy", "label_smoothing": 0.2},
        {"class_name": "CategoricalCrossentropy", "from_logits": True, "label_smoothing": 0.3},
        {"class_name": "SparseCategoricalCrossentropy"},
        {"class_name": "SparseCategoricalCrossentropy", "from_logits": True},
        {"class_name": "BinaryCrossentropy", "label_smoothing": 0.1},
        {"class_name": "BinaryCrossentropy", "from_logits": True},
        {"class_name": "MeanAbsoluteError"},
        {"class_name": "Huber"},
        {"class_name": "Huber", "delta": 0.3},
    ],
    ids=str,
)
def test_keras_loss_gradients_are_central_differences(backend, rng, config):
    """Away from kinks and clipping: probabilities in [0.2, 0.9] (rows not summing to 1), errors
    at least 0.05 from 0 and from +-delta."""
    loss = fc.losses.get(config)
    ids = np.array([2, 0, 1, 1])
    if "Categorical" in config["class_name"]:
        pred = rng.uniform(0.2, 0.9, size=(4, 3))
        labels = ids if "Sparse" in config["class_name"] else np.eye(3)[ids]
    elif "Binary" in config["class_name"]:
        pred, labels = rng.uniform(0.2, 0.9, size=(4, 2)), rng.integers(0, 2, size=(4, 2))
    else:
        labels = rng.normal(size=(4, 3))
        delta = config.get("delta", 1.0)
        error = rng.uniform(0.05, 3.0, size=(4, 3)) * rng.choice([-1, 1], size=(4, 3))
        error[np.abs(np.abs(error) - delta) < 0.05] += 0.1
        pred = labels + error
    loss.forward(pred, labels)
    np.testing.assert_allclose(host(loss.backward()), central_differences(loss, pred, labels), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "loss, labels, words",
    [
        (SparseCategoricalCrossentropy(), np.eye(3)[[0, 1, 2]], "takes class ids of shape (3,) or (3, 1), got rows of shape (3, 3) (one-hot?); use CategoricalCrossentropy"),
        (SparseCategoricalCrossentropy(), np.zeros((3, 2)), "expected class ids of shape (3,) or (3, 1), got shape (3, 2)"),
        (SparseCategoricalCrossentropy(), np.array([0, 1, 3]), "class ids must be in [0, 3), got 3"),
        (SparseCategoricalCrossentropy(), np.array([0.5, 1, 2]), "whole numbers"),
        (CategoricalCrossentropy(), np.array([0, 1, 2]), "takes one-hot or probability rows of shape (3, 3), got class ids of shape (3,); use SparseCategoricalCrossentropy"),
        (CategoricalCrossentropy(), np.array([[0], [1], [2]]), "got class ids of shape (3, 1)"),
        (CategoricalCrossentropy(), np.zeros((3, 4)), "expected one-hot or probability rows of shape (3, 3), got shape (3, 4)"),
        (CategoricalCrossentropy(), np.full((3, 3), 0.5), "row 0 sums to 1.5"),
    ],
)
def test_keras_categorical_losses_say_which_labels_they_take(loss, labels, words):
    with pytest.raises(ValueError, match="^labels: ") as info:
        loss.forward(np.full((3, 3), 1 / 3), labels)
    assert words in str(info.value)


def test_constructor_arguments_are_checked():
    with pytest.raises(TypeError, match="from_logits: expected a bool"):
        CategoricalCrossentropy(from_logits="yes")
    for bad in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match="label_smoothing: expected a number in \\[0, 1\\]"):
            fc.losses.BinaryCrossentropy(label_smoothing=bad)
    for bad in (0, -1.0, float("inf"), float("nan"), "1"):
        with pytest.raises(ValueError, match="delta: expected a positive finite number"):
            fc.losses.Huber(delta=bad)


# -- the new kernels: host execution, the compile gate ----------------------------------------------
@pytest.fixture(params=["stand-in", pytest.param("gpu", marks=pytest.mark.gpu)])
def kernel_target(request):
    from fcgpu.testing import stand_in_backend
    from support import kernel_checks as kc

    if request.param == "stand-in":
        return stand_in_backend(), kc.HOST
    try:
        return fc.backends.resolve_backend("cupy")[0], kc.GPU
    except fc.BackendUnavailable as e:
        pytest.skip(f"needs a usable CUDA device: {e}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=["float32", "float64", "float16"])
def test_mae_and_huber_kernels_match_the_numpy_backend(kernel_target, dtype, rng):
    from support import kernel_checks as kc

    backend, tol = kernel_target
    kc.check_mae(backend, dtype, rng, tol)
    for delta in (1.0, 0.3, 4.0):
        kc.check_huber(backend, dtype, delta, rng, tol)


def test_an_mae_kernel_with_sign_0_of_1_fails_its_check(rng):
    from fcgpu.backends.cupy import kernel_sources
    from fcgpu.backends.cupy.backend import CupyBackend
    from fcgpu.testing import fake_cupy
    from support import kernel_checks as kc

    broken = CupyBackend(fake_cupy)
    broken._kernels["fcgpu_mae_grad"] = fake_cupy.ElementwiseKernel(
        "T p, T y, float64 scale", "T dp", "dp = (p - y >= T(0) ? T(1) : T(-1)) * T(scale)", "fcgpu_mae_grad_wrong",
        preamble=kernel_sources.preamble(),
    )
    with pytest.raises(AssertionError, match="mae grad"):
        kc.check_mae(broken, np.float32, rng)


def test_the_loss_kernels_compile_for_every_dtype_and_layout():
    """The compile gate (NVRTC, CuPy's exact source) for the MAE and Huber kernels, on the layouts
    the backend's recorded calls use."""
    from fcgpu.backends.cupy.backend import KERNEL_SPECS
    from support import cuda_compile as cc

    specs = {k: v for k, v in KERNEL_SPECS.items() if k.startswith(("fcgpu_mae_", "fcgpu_huber_"))}
    assert set(specs) == {"fcgpu_mae_grad", "fcgpu_mae_step", "fcgpu_huber_grad", "fcgpu_huber_step"}
    calls = [c for c in cc.trace_backend_calls() if c.name in specs]
    assert {c.name for c in calls} == set(specs)
    try:
        report = cc.run_sweep(cc.sweep_variants(specs, calls=calls), specs=specs)
    except cc.CompileGateUnavailable as e:
        pytest.skip(f"the compile gate cannot run here: {e}")
    assert report.ok, report.summary()
    assert {v.dtype for v in report.variants} == set(cc.DTYPES)
