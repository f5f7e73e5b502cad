"""Custom losses written with fcgpu.ops, as in Keras 3: functions passed to compile and
fcgpu.losses.Loss subclasses defining call(y_true, y_pred), on NumPy and the stand-in. Their
values against Keras 3's for the same functions; fit, evaluate and train_step against the built-in
loss of the same formula (the same weights, float64); reductions; the errors."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import ops


def mse_fn(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred), axis=-1)


class MeanSquared(fc.losses.Loss):
    def call(self, y_true, y_pred):
        return ops.mean(ops.square(y_pred - y_true), axis=-1)


class SparseCE(fc.losses.Loss):
    """Cross-entropy of probability rows against class ids, with an argument of its own."""

    def __init__(self, classes=3, name="sparse_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.classes = classes

    def call(self, y_true, y_pred):
        hot = ops.one_hot(ops.cast(y_true, "int32"), self.classes, dtype=y_pred.dtype)
        return -ops.sum(hot * ops.log(ops.clip(y_pred, 1e-7, 1.0)), axis=-1)


def bce_fn(y_true, y_pred):  # labels (B,) meet predictions (B, 1): the wrapper expands them, as Keras's
    p = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
    return -ops.mean(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p), axis=-1)


# -- values against Keras 3 ---------------------------------------------------------------------
def _keras_inputs():
    rng = np.random.default_rng(3)
    yt = rng.uniform(0, 1, (6, 3))
    yp = rng.uniform(0.05, 0.95, (6, 3))
    return yt, yp, np.array([0, 2, 1, 1, 0, 2.0]), rng.uniform(0, 1, (6,)), rng.uniform(0, 1, (6, 1))


# Keras 3.15.1 (torch backend), the same functions on the same float64 inputs, loss dtype float64;
# Keras's torch backend returns the reduced value in float32, hence rtol 1e-6.
KERAS = {"mse": 0.12389007955789566, "elementwise": 0.554703414440155, "sparse_ce": 1.1817643642425537,
         "rank": 0.1404365450143814, "sum": 1.6641101688146591, "mean": 0.2773517072200775,
         "none": [0.4725055694580078, 0.2229747325181961, 0.35026493668556213, 0.37190747261047363,
                  0.19740913808345795, 0.04904831945896149],
         "logcosh": 0.058929260820150375, "weighted": 0.20494034886360168}


class Spread(fc.losses.Loss):
    def call(self, y_true, y_pred):
        return ops.mean(ops.maximum(y_true, y_pred) - ops.minimum(y_true, y_pred), axis=-1)


class LogCosh(fc.losses.Loss):
    def call(self, y_true, y_pred):
        d = y_pred - y_true
        return ops.mean(d + ops.log1p(ops.exp(-2.0 * d)) - ops.log(2.0), axis=-1)


def test_values_match_keras(backend):
    yt, yp, ids, y1, p1 = (backend.from_numpy(a) for a in _keras_inputs())
    wrap = fc.losses.LossFunctionWrapper
    got = {
        "mse": wrap(mse_fn)(yt, yp),
        "elementwise": wrap(lambda t, p: ops.abs(t - p) * 2.0)(yt, yp),  # (B, K): the mean over every element
        "sparse_ce": wrap(lambda t, p: -ops.sum(ops.one_hot(ops.cast(t, "int32"), 3, dtype=p.dtype) * ops.log_softmax(p),
                                                axis=-1))(ids, yp),
        "rank": wrap(mse_fn)(y1, p1),  # y_true (6,) against y_pred (6, 1)
        "sum": Spread(reduction="sum")(yt, yp),
        "mean": Spread(reduction="mean")(yt, yp),
        "none": Spread(reduction="none")(yt, yp),
        "logcosh": LogCosh()(yt, yp),
        "weighted": Spread(reduction="mean_with_sample_weight")(yt, yp, sample_weight=backend.from_numpy(np.arange(6.0))),
    }
    for name, value in got.items():
        assert backend.owns(value) and value.dtype == np.float64, name
        np.testing.assert_allclose(backend.to_numpy(value), KERAS[name], rtol=1e-6, err_msg=name)
    assert got["none"].shape == (6,) and got["sum"].shape == ()


# -- training ----------------------------------------------------------------------------------
def _model(out=3, activation=None, dtype="float64"):
    fc.set_seed(11)
    model = fc.Sequential([fc.Dense(6, activation="tanh", dtype=dtype), fc.Dense(out, activation=activation, dtype=dtype)])
    model.build((None, 4))
    return model


def _train(loss, x, y, out=3, activation=None, metrics=None, lr=0.1, dtype="float64"):
    model = _model(out, activation, dtype)
    model.compile(loss=loss, optimizer=fc.optimizers.SGD(learning_rate=lr), metrics=metrics)
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    step = model.train_step(x[:8], y[:8])
    return model, history.history, model.evaluate(x, y, return_dict=True), step


def _same(a, b, rtol):
    model_a, hist_a, eval_a, step_a = a
    model_b, hist_b, eval_b, step_b = b
    for wa, wb in zip(model_a.get_weights(), model_b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=rtol, atol=rtol)
    for key in hist_a:
        np.testing.assert_allclose(hist_a[key], hist_b[key], rtol=rtol)
    for key in eval_a:
        np.testing.assert_allclose(eval_a[key], eval_b[key], rtol=rtol)
    np.testing.assert_allclose(step_a, step_b, rtol=rtol)


@pytest.fixture
def data():
    rng = np.random.default_rng(2)
    return rng.standard_normal((32, 4)), rng.standard_normal((32, 3)), rng.integers(0, 3, 32), rng.integers(0, 2, 32)


@pytest.mark.parametrize("custom", [mse_fn, MeanSquared(), MeanSquared], ids=["function", "subclass", "class"])
def test_custom_mse_trains_as_the_built_in(backend, data, custom):
    x, y, _, _ = data
    _same(_train(custom, x, y, metrics=["mae"]), _train("mse", x, y, metrics=["mae"]), rtol=1e-10)


def test_custom_sparse_crossentropy_trains_as_the_built_in(backend, data):
    x, _, ids, _ = data
    custom = _train(SparseCE(), x, ids, activation="softmax", metrics=["accuracy"])
    built_in = _train("sparse_categorical_crossentropy", x, ids, activation="softmax", metrics=["accuracy"])
    _same(custom, built_in, rtol=1e-9)  # the built-in runs fused on the logits: the same numbers to rounding
    assert custom[0].loss.name == "sparse_ce" and "accuracy" in custom[2]


def test_custom_binary_crossentropy_with_rank_1_labels(backend, data):
    x, _, _, bits = data
    custom = _train(bce_fn, x, bits, out=1, activation="sigmoid", metrics=["accuracy"])
    built_in = _train("binary_crossentropy", x, bits, out=1, activation="sigmoid", metrics=["accuracy"])
    _same(custom, built_in, rtol=1e-9)


def test_sum_reduction_is_the_batch_times_the_mean(backend, data):
    x, y, _, _ = data  # with equal batches, 'sum' at lr is 'sum_over_batch_size' at lr * batch
    summed = _train(MeanSquared(reduction="sum"), x, y, lr=0.1 / 8)
    mean = _train(MeanSquared(reduction="mean"), x, y, lr=0.1)
    for wa, wb in zip(summed[0].get_weights(), mean[0].get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(summed[1]["loss"], np.array(mean[1]["loss"]) * 8, rtol=1e-10)


def test_float32_model(backend, data):
    x, y, _, _ = data
    _same(_train(mse_fn, x, y, dtype="float32"), _train("mse", x, y, dtype="float32"), rtol=2e-5)


def test_loss_names_and_configs():
    assert fc.losses.get(mse_fn).name == "mse_fn"
    assert isinstance(fc.losses.get(MeanSquared), MeanSquared) and MeanSquared().name == "mean_squared"
    loss = SparseCE(reduction="sum")
    assert loss.get_config() == {"class_name": "SparseCE", "name": "sparse_ce", "reduction": "sum"}
    assert fc.losses.get(mse_fn).get_config()["fn"].endswith("mse_fn")
    assert loss.written_with_ops and not fc.losses.MeanSquaredError().written_with_ops
    with pytest.raises(ValueError, match="reduction: expected one of"):
        MeanSquared(reduction="average")
    with pytest.raises(ValueError, match="a loss computes in a float type"):
        MeanSquared(dtype="int32")


def test_forward_and_backward_protocol(backend, data):
    _, y, _, _ = data
    pred = backend.from_numpy(y[:8] * 0.5)
    loss = MeanSquared()
    value = loss.forward(pred, y[:8])
    np.testing.assert_allclose(value, np.mean((y[:8] * 0.5 - y[:8]) ** 2), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(loss.backward()), 2 * (y[:8] * 0.5 - y[:8]) / y[:8].size, rtol=1e-12)


def test_saved_model_loads_without_compile(tmp_path, data):
    x, y, _, _ = data
    model = _train(mse_fn, x, y)[0]
    path = tmp_path / "m.fcgpu"
    model.save(path)
    restored = fc.load_model(path, compile=False)
    np.testing.assert_allclose(restored.predict(x), model.predict(x))
    with pytest.raises(Exception, match="load the model with compile=False"):
        fc.load_model(path)


# -- errors -------------------------------------------------------------------------------------
def test_reduction_none_cannot_train(backend, data):
    x, y, _, _ = data
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    model.compile(loss=MeanSquared(reduction="none"), optimizer="sgd")
    with pytest.raises(ValueError, match="reduction='none' leaves per-sample values"):
        model.fit(x, y, verbose=0)
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)


def _numpy_loss(y_true, y_pred):
    return ops.mean(np.square(y_true - y_pred), axis=-1)


def _unknown_op_loss(y_true, y_pred):
    return ops.logsumexp(y_pred - y_true, axis=-1)


def _constant_loss(y_true, y_pred):
    return ops.convert_to_tensor(ops.convert_to_numpy(y_pred).sum(axis=-1))


@pytest.mark.parametrize("fn, error, match", [
    (_numpy_loss, TypeError, r"loss '_numpy_loss': a NumPy \(or CuPy\) function.*np\.square"),
    (_unknown_op_loss, AttributeError, "fcgpu.ops has no 'logsumexp'"),
    (_constant_loss, ValueError, "does not depend on the traced input"),
], ids=["numpy", "unknown-op", "constant"])
def test_unsupported_operations_are_named(backend, data, fn, error, match):
    x, y, _, _ = data
    model = _model()
    model.compile(loss=fn, optimizer="sgd")
    with pytest.raises(error, match=match):
        model.fit(x, y, verbose=0)
    with pytest.raises(error, match=match):
        model.evaluate(x, y)


def test_labels_are_checked(data):
    x, y, _, _ = data
    model = _model()
    model.compile(loss=mse_fn, optimizer="sgd")
    with pytest.raises(ValueError, match="expected finite labels"):
        model.train_step(x[:4], np.full((4, 3), np.nan))
    with pytest.raises(TypeError, match="expected numeric labels"):
        model.train_step(x[:4], np.array([["a"] * 3] * 4))


# -- against Keras itself, where it is installed ------------------------------------------------
def test_training_matches_keras_where_installed(data):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("the comparison runs on Keras's torch backend")
    pytest.importorskip("torch")
    x, y, _, _ = data
    keras.config.set_floatx("float64")
    try:
        km = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(3)])
        start = [w.copy() for w in km.get_weights()]
        km.compile(loss=lambda t, p: keras.ops.mean(keras.ops.square(t - p), axis=-1), optimizer=keras.optimizers.SGD(0.1))
        keras_loss = km.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
    finally:
        keras.config.set_floatx("float32")
    model = _model()
    model.set_weights(start)
    model.compile(loss=mse_fn, optimizer=fc.optimizers.SGD(learning_rate=0.1))
    ours = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(ours, keras_loss, rtol=1e-6)  # Keras's torch backend reports float32 losses
    for a, b in zip(model.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_loss_reused_on_another_backend(backend_named):
    """The gradient buffer a loss kept from one backend is not handed to another."""
    y = np.ones((4, 3))
    for loss in (fc.losses.MeanSquaredError(), MeanSquared()):
        for name in ("numpy", "cupy-standin"):
            b = backend_named(name)
            with fc.use_backend(b):
                loss.forward(b.from_numpy(y * 0.5), y)
                assert b.owns(loss.backward())


def test_mixed_float16_computes_the_loss_in_float32(data):
    """16-bit predictions: the loss in float32 (as Keras's floatx), its gradient back in float16 and
    scaled by the LossScaleOptimizer as the built-in's is."""
    x, y, _, _ = data
    runs = []
    for loss in (mse_fn, "mse"):
        fc.set_seed(0)
        model = fc.Sequential([fc.Dense(8, activation="relu", dtype="mixed_float16"), fc.Dense(3, dtype="mixed_float16")])
        model.compile(loss=loss, optimizer="adam")
        runs.append(model.fit(x.astype(np.float32), y.astype(np.float32), epochs=3, batch_size=8, verbose=0).history["loss"])
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5)
