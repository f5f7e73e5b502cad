"""Regularizers: Keras's penalties, names and defaults; their gradient in Dense's backward checked by
float64 central differences of loss + penalty; the penalty in the reported loss (Keras itself where
installed); the kernels against the NumPy backend; configs and model files."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.backends.numpy.backend import NumpyBackend
from fcgpu.regularizers import L1, L1L2, L2
from support import kernel_checks as kc
from fcgpu.testing import stand_in_backend
from fcgpu.bench.launches import launches_per_step


def penalty(w, l1=0.0, l2=0.0):
    """Keras: l1 * sum|w| + l2 * sum w^2."""
    w = np.asarray(w, np.float64)
    return l1 * np.abs(w).sum() + l2 * np.square(w).sum()


def test_defaults_strings_and_configs():
    assert (L1().l1, L2().l2, L1L2().l1, L1L2().l2) == (0.01, 0.01, 0.0, 0.0)
    get = fc.regularizers.get
    assert get("l1") == L1(0.01) and get("l2") == L2(0.01) and get("L2") == L2()
    assert get("l1_l2") == L1L2(0.01, 0.01)  # the defaults Keras documents for the string
    assert get("l1l2") == L1L2() and get(None) is None
    for r in (L1(0.3), L2(0.2), L1L2(0.1, 0.4)):
        assert get(fc.regularizers.serialize(r)) == r and type(r).from_config(r.get_config()) == r
    assert L1L2(0.1, 0.4).get_config() == {"l1": 0.1, "l2": 0.4} and L2(0.5).get_config() == {"l2": 0.5}
    x = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert L1L2(0.1, 0.2)(x) == pytest.approx(penalty(x, 0.1, 0.2)) and L1(0.3)(x) == pytest.approx(1.05)


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: L1(-0.1), ValueError, "l1"),
        (lambda: L2(float("inf")), ValueError, "l2"),
        (lambda: L1L2(l2="big"), TypeError, "l2"),
        (lambda: fc.regularizers.get("l3"), ValueError, "regularizer"),
        (lambda: fc.regularizers.get(lambda w: 0.0), ValueError, "Regularizer"),
        (lambda: fc.Dense(2, kernel_regularizer="l3"), ValueError, "kernel_regularizer"),
        (lambda: fc.Dense(2, bias_regularizer={"class_name": "Orthogonal"}), ValueError, "bias_regularizer"),
    ],
)
def test_invalid_regularizers(make, error, words):
    with pytest.raises(error, match=words):
        make()


def _regularized_model(dtype="float64"):
    model = fc.Sequential([
        fc.Dense(4, activation="tanh", kernel_regularizer=L1L2(0.01, 0.02), bias_regularizer=L2(0.05), dtype=dtype),
        fc.Dense(2, kernel_regularizer="l1", dtype=dtype),
    ])  # fmt: skip
    model.build((None, 3))
    return model


FACTORS = [((0.01, 0.02), (0.0, 0.05)), ((0.01, 0.0), None)]  # (kernel, bias) of each layer, as above


def _objective(model, x, y):
    """MSE (mean over every element) + every penalty, on the host in float64."""
    pred = model.predict(x).astype(np.float64)
    total = np.mean(np.square(pred - y))
    for layer, factors in zip(model.layers, FACTORS):
        kernel, bias = layer.get_weights()
        total += penalty(kernel, *factors[0]) + (penalty(bias, *factors[1]) if factors[1] else 0.0)
    return total


def test_backward_adds_the_penalty_gradient(backend, rng):
    model = _regularized_model()
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    pred = fc.to_numpy(model.forward(x))
    model.backward(2 * (pred - y) / pred.size)
    weights = model.get_weights()
    grads = [fc.to_numpy(g) for _, _, g in model.parameters()]
    h = 1e-6
    for k, (w, g) in enumerate(zip(weights, grads)):
        for index in list(np.ndindex(w.shape))[:: max(1, w.size // 6)]:
            shifted = []
            for sign in (1, -1):
                trial = [a.copy() for a in weights]
                trial[k][index] += sign * h
                model.set_weights(trial)
                shifted.append(_objective(model, x, y))
            model.set_weights(weights)
            assert g[index] == pytest.approx((shifted[0] - shifted[1]) / (2 * h), rel=1e-6, abs=1e-8), (k, index)


def test_the_reported_loss_includes_the_penalty(backend, rng):
    model = _regularized_model()
    model.compile(loss="mse", optimizer=fc.optimizers.SGD(0.01))
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    before = _objective(model, x, y)
    assert model.evaluate(x, y, return_dict=True)["loss"] == pytest.approx(before, rel=1e-12)  # Keras's evaluate adds it too
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx(before, rel=1e-12)  # the weights before the step
    expected = _objective(model, x, y)
    assert model.train_step(x, y) == pytest.approx(expected, rel=1e-12)
    value = model.layers[0].regularization_loss()
    assert backend.owns(value) or isinstance(value, np.floating)
    assert fc.Dense(2).regularization_loss() is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside Keras
def test_matches_keras_when_installed(rng):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except Exception as e:
        pytest.skip(f"keras is not usable here: {e}")
    with fc.use_backend("numpy"):
        ours = _regularized_model("float32")
    theirs = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(4, activation="tanh", kernel_regularizer=keras.regularizers.L1L2(0.01, 0.02),
                           bias_regularizer=keras.regularizers.L2(0.05)),
        keras.layers.Dense(2, kernel_regularizer="l1"),
    ])  # fmt: skip
    theirs.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in ours.get_weights()])
    ours.set_weights(theirs.get_weights())
    x, y = rng.normal(size=(16, 3)).astype(np.float32), rng.normal(size=(16, 2)).astype(np.float32)
    for model in (ours, theirs):
        model.compile(loss="mse", optimizer="sgd")
    assert ours.evaluate(x, y, return_dict=True)["loss"] == pytest.approx(theirs.evaluate(x, y, verbose=0), rel=1e-5)
    w = rng.normal(size=(5, 4)).astype(np.float32)
    for mine, keras_one in [(L1L2(0.01, 0.02), keras.regularizers.L1L2(0.01, 0.02)), (L2(), keras.regularizers.L2())]:
        assert mine(w) == pytest.approx(float(keras.ops.convert_to_numpy(keras_one(w))), rel=1e-6)


def test_a_regularized_step_adds_two_operations_per_penalty_and_none_without():
    plain = launches_per_step((6, 4, 3), batch=8, loss="mse", optimizer="sgd", steps=4)
    with fc.use_backend(stand_in_backend()):
        model = fc.Sequential([fc.Dense(4, activation="relu", kernel_regularizer="l2", bias_regularizer="l1"),
                               fc.Dense(3, kernel_regularizer=L1L2(0.0, 0.0))])  # fmt: skip
        model.build((None, 6))
    model.compile(loss="mse", optimizer="sgd")
    report = launches_per_step(model, batch=8, steps=4)
    names = report.per_step.names
    assert names["fcgpu_l1l2_grad"] == 2 and names["fcgpu_l1l2_terms"] == 2  # a zero L1L2 costs nothing
    # + per penalty a gradient kernel, a terms kernel and its sum; the penalties' sum (scaled by the
    # rows on the host) added into the loss column: two adds
    assert report.per_step.total == plain.per_step.total + 2 * 3 + 2, report.format()


def test_configs_and_model_files_keep_the_regularizers(backend, rng, tmp_path):
    model = _regularized_model("float32")
    config = model.layers[0].get_config()
    assert config["kernel_regularizer"] == {"class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.02}}
    assert fc.Dense.from_config(config).bias_regularizer == L2(0.05)
    model.compile(loss="mse", optimizer="adam")
    model.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert [(l.kernel_regularizer, l.bias_regularizer) for l in loaded.layers] == [
        (L1L2(0.01, 0.02), L2(0.05)), (L1(0.01), None)
    ]  # fmt: skip


def test_half_parameters_train_with_a_regularizer(backend, rng):
    model = fc.Sequential([fc.Dense(3, kernel_regularizer="l2", dtype="float16")])
    model.compile(loss="mse", optimizer=fc.optimizers.RMSprop(0.01))
    history = model.fit(rng.normal(size=(32, 4)), rng.normal(size=(32, 3)), epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"])) and history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("l1, l2", [(0.01, 0.0), (0.0, 0.02), (0.01, 0.02)])
def test_the_kernels_are_the_numpy_backend(dtype, l1, l2, rng):
    """The gradient term to the bit (edge values included); the penalty within float64 summation order."""
    cp, host = stand_in_backend(), NumpyBackend()
    w = kc.sample(rng, dtype, (16, 12), scale=1.0)
    g = kc.sample(rng, dtype, (16, 12), scale=0.1)[::-1].copy()
    with np.errstate(all="ignore"):
        got = cp.to_numpy(cp.l1l2_grad(cp.from_numpy(g), cp.from_numpy(w), l1, l2))
        want = host.l1l2_grad(g.copy(), w, l1, l2)
    kc.assert_ulp(got, want, 0, f"l1l2 gradient ({np.dtype(dtype).name}, l1={l1}, l2={l2})")
    finite = w[np.isfinite(w) & (np.abs(w.astype(np.float64)) < 1e30)]
    have = float(cp.l1l2_penalty(cp.from_numpy(finite), l1, l2))
    assert have == pytest.approx(float(host.l1l2_penalty(finite, l1, l2)), rel=1e-13)
    assert have == pytest.approx(penalty(finite, l1, l2), rel=1e-13)
