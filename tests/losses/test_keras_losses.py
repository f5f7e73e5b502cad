"""Keras 3's losses against PyTorch (torch.nn.functional, autograd gradients) and against Keras's
own formulas (clipping and row normalisation included); the fused softmax path of a model."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from helpers import host
from fcgpu.losses import MeanSquaredError


EPS = 1e-7
CategoricalCrossentropy = fc.losses.CategoricalCrossentropy
SparseCategoricalCrossentropy = fc.losses.SparseCategoricalCrossentropy


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def torch_value_and_grad(torch, fn, pred: np.ndarray) -> tuple[float, np.ndarray]:
    """fn's value at pred and its gradient by PyTorch's autograd, in float64."""
    t = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    value = fn(t)
    value.backward()
    return float(value.detach()), t.grad.numpy()


def check_loss(loss, pred, labels, value, grad, rtol=1e-10, atol=1e-13):
    assert loss.forward(pred, labels) == pytest.approx(value, rel=rtol, abs=atol)
    np.testing.assert_allclose(host(loss.backward()), grad, rtol=rtol, atol=atol)


def probability_rows(rng, shape):
    """Rows in (0, 1) that do not sum to 1 (sigmoid outputs), one exact 0 and one exact 1 (clipped)."""
    p = 1 / (1 + np.exp(-rng.normal(size=shape) * 2))
    p[0, 0], p[1, 1] = 0.0, 1.0
    return p


def keras_categorical(p, t, eps=EPS):
    """Keras 3's categorical_crossentropy on probabilities, written from its source: rows divided
    by their sum, clipped to [eps, 1 - eps], -sum(t log), mean over the batch."""
    q = np.clip(p / p.sum(axis=-1, keepdims=True), eps, 1 - eps)
    return float(np.mean(-np.sum(t * np.log(q), axis=-1)))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_categorical_from_logits_is_torch_cross_entropy(backend, rng, torch, smoothing):
    z = rng.normal(size=(5, 4)) * 3
    t = np.eye(4)[[0, 3, 1, 1, 2]]
    t[4] = [0.1, 0.2, 0.3, 0.4]  # a probability row
    F = torch.nn.functional
    value, grad = torch_value_and_grad(
        torch, lambda x: F.cross_entropy(x, torch.tensor(t), label_smoothing=smoothing), z
    )
    check_loss(CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing), z, t, value, grad)


def test_sparse_from_logits_is_torch_cross_entropy(backend, rng, torch):
    z = rng.normal(size=(6, 5)) * 3
    ids = np.array([0, 4, 2, 2, 1, 3])
    value, grad = torch_value_and_grad(torch, lambda x: torch.nn.functional.cross_entropy(x, torch.tensor(ids)), z)
    check_loss(SparseCategoricalCrossentropy(from_logits=True), z, ids, value, grad)
    check_loss(SparseCategoricalCrossentropy(from_logits=True), z, ids[:, None].astype(np.float32), value, grad)


def test_sparse_on_probabilities_is_torch_nll_of_keras_log_probabilities(backend, rng, torch):
    """Keras: p / sum(p) clipped to [1e-7, 1 - 1e-7], then the log; F.nll_loss on that log, autograd
    through the normalisation and the clamp (whose gradient is zero where it clipped)."""
    p = probability_rows(rng, (6, 4))
    ids = np.array([0, 1, 2, 3, 1, 0])  # rows 0 and 1 take a clipped value (0 and, normalised, < 1)
    p[2] = [0.0, 0.0, 0.7, 0.0]  # normalised to exactly 1 at the label: clipped to 1 - 1e-7
    F = torch.nn.functional

    def nll(x):
        return F.nll_loss(torch.log(torch.clamp(x / x.sum(1, keepdim=True), EPS, 1 - EPS)), torch.tensor(ids))

    value, grad = torch_value_and_grad(torch, nll, p)
    loss = SparseCategoricalCrossentropy()
    check_loss(loss, p, ids, value, grad)
    assert loss.forward(p, ids) == pytest.approx(keras_categorical(p, np.eye(4)[ids]), rel=1e-12)
    assert np.all(host(loss.backward())[2] == 0)  # clipped at the label: the clipped loss is flat


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_categorical_on_probabilities_is_keras_formula_with_torch_gradient(backend, rng, torch, smoothing):
    p = probability_rows(rng, (5, 3))
    t = np.eye(3)[[0, 2, 1, 1, 0]]
    smoothed = t * (1 - smoothing) + smoothing / 3
    tt = torch.tensor(smoothed)

    def keras(x):
        return -(tt * torch.log(torch.clamp(x / x.sum(1, keepdim=True), EPS, 1 - EPS))).sum(1).mean()

    value, grad = torch_value_and_grad(torch, keras, p)
    loss = CategoricalCrossentropy(label_smoothing=smoothing)
    check_loss(loss, p, t, value, grad)
    assert value == pytest.approx(keras_categorical(p, smoothed), rel=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.25])
@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_crossentropy_is_torch_bce(backend, rng, torch, from_logits, smoothing):
    F = torch.nn.functional
    y = rng.integers(0, 2, size=(6, 2)).astype(np.float64)
    y[0, 0] = 0.3
    ty = torch.tensor(y * (1 - smoothing) + 0.5 * smoothing)  # Keras's smoothing of binary labels
    if from_logits:
        pred = rng.normal(size=(6, 2)) * 4
        value, grad = torch_value_and_grad(torch, lambda x: F.binary_cross_entropy_with_logits(x, ty), pred)
    else:
        pred = rng.uniform(0.01, 0.99, size=(6, 2))
        pred[1, 0], pred[2, 1] = 0.0, 1.0  # clipped to [1e-7, 1 - 1e-7] as Keras: finite loss, no gradient
        value, grad = torch_value_and_grad(torch, lambda x: F.binary_cross_entropy(torch.clamp(x, EPS, 1 - EPS), ty), pred)
    loss = fc.losses.BinaryCrossentropy(from_logits=from_logits, label_smoothing=smoothing)
    check_loss(loss, pred, y, value, grad, rtol=1e-9)


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "huber_small_delta"])
def test_regression_losses_are_torchs(backend, rng, torch, name):
    F = torch.nn.functional
    p = rng.normal(size=(5, 3)) * 2
    y = rng.normal(size=(5, 3))
    delta = 0.4 if name == "huber_small_delta" else 1.0
    y[0, :3] = p[0, :3] - np.array([0.0, delta, -delta])  # a zero error and both ends of Huber's bend
    tt = torch.tensor(y)
    loss, fn = {
        "mse": (MeanSquaredError(), lambda x: F.mse_loss(x, tt)),
        "mae": (fc.losses.MeanAbsoluteError(), lambda x: F.l1_loss(x, tt)),
        "huber": (fc.losses.Huber(), lambda x: F.huber_loss(x, tt, delta=1.0)),
        "huber_small_delta": (fc.losses.Huber(delta), lambda x: F.huber_loss(x, tt, delta=delta)),
    }[name]
    value, grad = torch_value_and_grad(torch, fn, p)
    check_loss(loss, p, y, value, grad, rtol=1e-12, atol=1e-15)
    if name == "mae":
        assert host(loss.backward())[0, 0] == 0  # sign(0) = 0, as PyTorch's l1_loss


def test_huber_is_kerass_formula(backend, rng):
    p, y = rng.normal(size=(8, 2)) * 3, rng.normal(size=(8, 2))
    d = p - y
    for delta in (0.5, 1.0, 2.5):
        keras = np.mean(np.mean(np.where(np.abs(d) <= delta, 0.5 * d**2, delta * np.abs(d) - 0.5 * delta**2), axis=-1))
        assert fc.losses.Huber(delta).forward(p, y) == pytest.approx(keras, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_mae_and_huber_in_low_precision_agree_with_float64(backend, rng, dtype):
    p, y = (rng.normal(size=(16, 3)) * 3).astype(dtype), rng.normal(size=(16, 3)).astype(dtype)
    p[0, 0] = 300  # (p - y) formed in float for half, as the kernels do
    for loss in (fc.losses.MeanAbsoluteError(), fc.losses.Huber(0.5)):
        want = loss.forward(p.astype(np.float64), y.astype(np.float64))
        assert loss.forward(p, y) == pytest.approx(want, rel=1e-3 if dtype == np.float16 else 1e-6)
        grad = host(loss.backward())
        assert grad.dtype == dtype and np.isfinite(grad).all()


# -- the fused softmax path: logits of a softmax layer ----------------------------------------------
def softmax_model(loss, weights, dtype="float64"):
    model = fc.Sequential([fc.Dense(3, activation="softmax", dtype=dtype)])
    model.compile(loss=loss, optimizer=fc.optimizers.SGD(lr=0.1))
    model.build((None, 2))
    model.set_weights([np.asarray(weights, dtype), np.zeros(3, dtype)])
    return model


@pytest.mark.parametrize("name, labels", [("categorical_crossentropy", np.eye(3)[[0, 2, 1, 1]]), ("sparse_categorical_crossentropy", np.array([0, 2, 1, 1]))])
def test_a_softmax_output_runs_the_fused_loss_and_matches_the_unfused_one(backend, rng, name, labels):
    x = rng.normal(size=(4, 2))
    weights = rng.normal(size=(2, 3))
    model = softmax_model(name, weights)
    fused, on_logits = model.output_loss()
    assert on_logits and fused.from_logits and type(fused) is type(model.loss)
    assert model.output_loss()[0] is fused  # built once
    probabilities = model.predict(x)
    unfused = fc.losses.get(name)
    expected = unfused.forward(probabilities, labels)
    assert model.evaluate(x, labels, return_dict=True)["loss"] == pytest.approx(expected, rel=1e-10)
    # d/dlogits: the fused gradient is the probability gradient through the softmax Jacobian
    logits = x @ weights
    fused.forward(logits, labels)
    g_logits = host(fused.backward())
    g_p = host(unfused.backward())
    through = probabilities * (g_p - np.sum(g_p * probabilities, axis=1, keepdims=True))
    np.testing.assert_allclose(g_logits, through, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_fused_softmax_loss_is_finite_at_logits_of_1e4(backend, dtype):
    """Logits +-1e4: the softmax saturates to exact 0 and 1, the probability loss would clip to
    -log(1e-7) = 16.1 with no gradient; the fused one is the exact 2e4 and still learns."""
    model = softmax_model("categorical_crossentropy", [[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], dtype)
    x = np.array([[1.0, 0.0], [1.0, 0.0]], dtype)
    y = np.eye(3)[[1, 0]]  # row 0 wrong by 2e4, row 1 right
    first = model.evaluate(x, y, return_dict=True)["loss"]
    assert first == pytest.approx(1e4, rel=1e-6)
    history = model.fit(x, y, epochs=3, batch_size=2, verbose=0, shuffle=False)
    assert all(np.isfinite(v) for v in history.history["loss"]) and history.history["loss"][-1] < first
    assert all(np.isfinite(w).all() for w in model.get_weights())
    p = model.predict(x)
    assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1)


def test_categorical_after_a_sigmoid_layer_is_kerass_normalised_loss(backend, rng):
    """No softmax at the output: Keras's probability formula, on rows that do not sum to 1."""
    model = fc.Sequential([fc.Dense(3, activation="sigmoid", dtype="float64")])
    model.compile(loss="categorical_crossentropy", optimizer="sgd")
    x, y = rng.normal(size=(5, 2)), np.eye(3)[[0, 1, 2, 0, 1]]
    value = model.evaluate(x, y, return_dict=True)["loss"]
    assert model.output_loss() == (model.loss, False)
    assert value == pytest.approx(keras_categorical(model.predict(x), y), rel=1e-10)


def test_probability_cross_entropies_refuse_values_outside_the_unit_interval(backend):
    for loss, labels in ((CategoricalCrossentropy(), np.eye(2)), (SparseCategoricalCrossentropy(), np.array([0, 1]))):
        with pytest.raises(ValueError, match=rf"pred: {type(loss).__name__}\(from_logits=False\) takes probabilities in \[0, 1\]"):
            loss.forward(np.array([[1.5, -0.5], [0.2, 0.8]]), labels)
    model = fc.Sequential([fc.Dense(3)])  # linear: logits, not probabilities
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    with pytest.raises(ValueError, match="loss: .* takes probabilities in \\[0, 1\\], but the last layer 'dense' has activation 'linear'"):
        model.fit(np.ones((4, 2)), np.zeros(4, int), verbose=0)


