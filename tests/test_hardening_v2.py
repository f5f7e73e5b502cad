"""Hostile and everyday cases at the edges of 0.2 (mixed precision, callbacks, pop/add with flat
buffers, half inputs, Keras habits), on NumPy and the CuPy stand-in. Each test is a class of
problem: the right result, or a clear error naming the argument raised before anything changes."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import callbacks as cbs


@pytest.fixture
def data(rng):
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    return x, y


def _model(dtype=None, **compile_kw):
    kw = {} if dtype is None else {"dtype": dtype}
    model = fc.Sequential([fc.Input(shape=(5,)), fc.Dense(8, activation="relu", **kw), fc.Dense(3, activation="softmax", **kw)])
    model.compile(**{"loss": "sparse_categorical_crossentropy", "optimizer": "sgd", **compile_kw})
    return model


# -- 1: every hook Keras calls, at the same points ------------------------------------------
def test_lambda_callback_batch_hooks_are_called_with_the_loss(backend, data):
    seen = []
    cb = cbs.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: seen.append(("begin", batch)),
        on_train_batch_end=lambda batch, logs: seen.append(("end", batch, sorted(logs))),
    )
    _model(metrics=["accuracy"]).fit(*data, batch_size=16, epochs=1, verbose=0, callbacks=[cb])
    assert [s[:2] for s in seen] == [(k, b) for b in range(4) for k in ("begin", "end")]
    assert all(s[2] == ["accuracy", "loss"] for s in seen if s[0] == "end")


def test_keras_batch_aliases_and_test_hooks_are_called(backend, data):
    class Recorder(cbs.Callback):
        def __init__(self):
            super().__init__()
            self.calls = []

        def on_batch_begin(self, batch, logs=None):
            self.calls.append("batch_begin")

        def on_batch_end(self, batch, logs=None):
            self.calls.append(("batch_end", sorted(logs)))

        def on_test_begin(self, logs=None):
            self.calls.append("test_begin")

        def on_test_end(self, logs=None):
            self.calls.append(("test_end", sorted(logs)))

        def on_test_batch_end(self, batch, logs=None):
            self.calls.append("test_batch_end")

    r = Recorder()
    x, y = data
    _model().fit(x, y, batch_size=32, epochs=1, verbose=0, validation_data=(x[:8], y[:8]), callbacks=[r])
    assert r.calls[:4] == ["batch_begin", ("batch_end", ["loss"]), "batch_begin", ("batch_end", ["loss"])]
    assert r.calls[4:] == ["test_begin", "test_batch_end", ("test_end", ["loss"])]


def test_evaluate_and_predict_call_their_hooks(backend, data):
    calls = []
    cb = cbs.LambdaCallback(
        on_test_begin=lambda logs: calls.append("test_begin"),
        on_test_batch_end=lambda batch, logs: calls.append(("test_batch", batch, sorted(logs))),
        on_test_end=lambda logs: calls.append(("test_end", sorted(logs))),
        on_predict_begin=lambda logs: calls.append("predict_begin"),
        on_predict_batch_end=lambda batch, logs: calls.append(("predict_batch", batch, logs["outputs"].shape)),
        on_predict_end=lambda logs: calls.append("predict_end"),
    )
    x, y = data
    model = _model(metrics=["acc"])
    model.evaluate(x, y, batch_size=40, callbacks=[cb])
    model.predict(x, batch_size=40, callbacks=[cb])
    assert calls == [
        "test_begin", ("test_batch", 0, ["acc", "loss"]), ("test_batch", 1, ["acc", "loss"]), ("test_end", ["acc", "loss"]),
        "predict_begin", ("predict_batch", 0, (40, 3)), ("predict_batch", 1, (24, 3)), "predict_end",
    ]


def test_batch_logs_hold_the_loss_of_every_batch(backend, data):
    losses = []
    cb = cbs.LambdaCallback(on_train_batch_end=lambda batch, logs: losses.append(logs["loss"]))
    model = _model()
    history = model.fit(*data, batch_size=4, epochs=1, verbose=0, callbacks=[cb], shuffle=False)
    assert len(losses) == 16 and all(np.isfinite(losses))
    assert losses[-1] == pytest.approx(history.history["loss"][0], rel=1e-6)  # running mean, as Keras


# -- 2: to() the backend it is already on keeps half copies and masters as one -------------
@pytest.mark.parametrize("target", ["same", "auto"])
def test_mixed_model_moved_to_its_own_backend_still_trains(backend, data, target):
    model = _model(dtype="mixed_float16", optimizer=fc.optimizers.SGD(0.1))
    x, y = data
    model.fit(x, y, epochs=1, verbose=0)
    model.to(backend if target == "same" else backend.name if backend.name == "numpy" else backend)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=3, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before
    w = model.get_weights()
    ref = np.maximum(x.astype(np.float16) @ w[0].astype(np.float16) + w[1].astype(np.float16), 0)
    ref = (ref @ w[2].astype(np.float16) + w[3].astype(np.float16)).astype(np.float32)
    ref = np.exp(ref - ref.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(x).astype(np.float32), ref.astype(np.float32), atol=2e-2, rtol=2e-2)


# -- 3: the wrapper's aliases -----------------------------------------------------------------
def test_loss_scale_optimizer_learning_rate_aliases_reach_the_inner_optimizer():
    opt = fc.optimizers.LossScaleOptimizer(fc.optimizers.SGD(0.1))
    opt.lr = 0.25
    assert opt.learning_rate == 0.25 and opt.inner.learning_rate == 0.25
    opt.learning_rate = 0.5
    assert opt.lr == 0.5 and opt.inner.lr == 0.5
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0
    assert opt.learning_rate == 0.5
    with pytest.raises(AttributeError, match="momentum"):
        opt.momentum = 0.9  # a setting of the inner optimizer: set it there, not silently here


def test_loss_scale_optimizer_refuses_unknown_attributes():
    opt = fc.optimizers.LossScaleOptimizer(fc.optimizers.Adam())
    with pytest.raises(AttributeError):
        opt.no_such_setting = 1


# -- 4: loss scaling decided when training starts, whatever the order of calls -------------
def test_global_mixed_policy_compile_before_add_scales_the_loss(backend, data):
    fc.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = fc.Sequential()
        model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
        model.add(fc.Input(shape=(5,)))
        model.add(fc.Dense(8, activation="relu"))
        model.add(fc.Dense(3, activation="softmax"))
        model.fit(*data, epochs=1, verbose=0)
    finally:
        fc.mixed_precision.set_global_policy("float32")
    assert isinstance(model.optimizer, fc.optimizers.LossScaleOptimizer)
    assert model.optimizer.iterations == 2


# -- 5: one input check for every entry point ----------------------------------------------
@pytest.mark.parametrize("call", ["layer", "model", "predict"])
def test_half_layers_refuse_integer_input_beyond_their_range(backend, call):
    x = np.full((2, 5), 100000, dtype=np.int64)
    model = fc.Sequential([fc.Dense(3, dtype="float16", input_shape=(5,))])
    fn = {"layer": model.layers[0], "model": model, "predict": model.predict}[call]
    with pytest.raises(ValueError, match="x: .*overflow float16"):
        fn(x)


def test_half_layers_refuse_dlpack_input_beyond_their_range(backend):
    torch = pytest.importorskip("torch")
    if backend.name != "numpy":
        pytest.skip("a CPU torch tensor is DLPack input of the NumPy backend only")
    layer = fc.Dense(3, dtype="float16")
    with pytest.raises(ValueError, match="x: .*overflow float16"):
        layer(torch.full((2, 5), 1e6, dtype=torch.float32))


# -- 7: losses read targets in float32 --------------------------------------------------------
def test_mixed_precision_regression_targets_are_not_rounded_to_half(backend):
    model = fc.Sequential([fc.Dense(1, dtype="mixed_float16", use_bias=False, kernel_initializer="zeros", input_shape=(1,))])
    model.compile(loss="mse", optimizer="sgd")
    loss = model.evaluate(np.zeros((1, 1)), np.array([[1000.3]]), verbose=0)
    assert loss == pytest.approx(1000.3**2, rel=1e-6)


# -- 8 and 13: pop, add, fit, save, load -------------------------------------------------------
@pytest.mark.parametrize("dtype", [None, "mixed_float16"])
def test_pop_then_add_then_fit_then_save_loads(backend, data, tmp_path, dtype):
    x, y = data
    model = _model(dtype=dtype, optimizer="adam")
    model.fit(x, y, epochs=1, verbose=0)
    model.pop()
    kw = {} if dtype is None else {"dtype": dtype}
    model.add(fc.Dense(3, activation="softmax", **kw))  # reuses the popped layer's name
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.fcgpu"
    model.save(path)
    loaded = fc.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    loaded.fit(x, y, epochs=1, verbose=0, shuffle=False)
    model.fit(x, y, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_pop_then_save_writes_no_state_of_the_removed_layer(backend, data, tmp_path):
    model = _model(optimizer="adam")
    model.fit(*data, epochs=1, verbose=0)
    model.pop()
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert set(loaded.optimizer.state) == {"dense/kernel", "dense/bias"}


# -- 9: the dynamic loss scale is saved --------------------------------------------------------
def test_loss_scale_and_good_steps_survive_save_and_load(backend, data, tmp_path):
    model = _model(dtype="mixed_float16")
    model.optimizer.inner.learning_rate = 0.05
    model.fit(*data, batch_size=16, epochs=1, verbose=0)
    model.optimizer.load_state_dict({**model.optimizer.state_dict(), "loss_scale": 512.0, "good_steps": 7}, model.backend)
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert loaded.optimizer.loss_scale == 512.0
    assert loaded.optimizer.state_dict()["good_steps"] == 7


# -- 10: mixing half policies ----------------------------------------------------------------
def test_mixing_float16_and_bfloat16_policies_is_refused_before_anything_runs(backend, data, tmp_path):
    pytest.importorskip("ml_dtypes")
    layers = [fc.Dense(8, dtype="mixed_float16", input_shape=(5,)), fc.Dense(3, activation="softmax", dtype="mixed_bfloat16")]
    with pytest.raises(ValueError, match="compile: .* mixes the policies"):
        fc.Sequential(layers).compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    model = fc.Sequential()  # compiled before the layers come: refused when training starts
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    for layer in [fc.Dense(8, dtype="mixed_float16", input_shape=(5,)), fc.Dense(3, activation="softmax", dtype="mixed_bfloat16")]:
        model.add(layer)
    before = model.get_weights()
    log = tmp_path / "log.csv"
    log.write_text("keep me\n")
    with pytest.raises(ValueError, match="fit: .* mixes the policies"):
        model.fit(*data, epochs=1, verbose=0, callbacks=[cbs.CSVLogger(log)])
    assert log.read_text() == "keep me\n"  # no callback ran
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- 11: a target a half output cannot hold -------------------------------------------------
def test_targets_beyond_a_half_output_are_named_as_overflow(backend):
    model = fc.Sequential([fc.Dense(1, dtype="float16", input_shape=(2,))])
    model.compile(loss="mse", optimizer="sgd")
    with pytest.raises(ValueError, match="y: .*overflow float16"):
        model.fit(np.zeros((2, 2)), np.array([[7e4], [1.0]]), verbose=0)


# -- 12: the stop warning says what happened ----------------------------------------------------
def test_mixed_precision_stop_warning_does_not_blame_finite_weights(backend):
    model = fc.Sequential([fc.Dense(1, dtype="mixed_float16", input_shape=(1,), kernel_initializer="ones")])
    model.compile(loss="mse", optimizer=fc.optimizers.SGD(1e-30))
    x = np.full((4, 1), 1e5)  # beyond float16: the half forward overflows, the float32 weights do not
    y = np.zeros((4, 1))
    with pytest.warns(RuntimeWarning) as record:
        model.fit(x, y, epochs=1, verbose=0)
    text = " ".join(str(w.message) for w in record)
    assert "no longer finite" not in text
    assert all(np.isfinite(w).all() for w in model.get_weights())


# -- 14: a torch bfloat16 tensor ----------------------------------------------------------------
def test_torch_bfloat16_tensor_is_refused_for_what_it_is(backend):
    torch = pytest.importorskip("torch")
    layer = fc.Dense(3)
    with pytest.raises((TypeError, ValueError)) as info:
        layer(torch.ones((2, 4), dtype=torch.bfloat16))
    assert "requires_grad" not in str(info.value) and "bfloat16" in str(info.value)


# -- 17: a metric is logged under the name it was asked by -------------------------------------
@pytest.mark.parametrize("name", ["acc", "accuracy"])
def test_metric_logged_under_its_own_name(backend, data, name):
    x, y = data
    model = _model(metrics=[name])
    history = model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y))
    assert set(history.history) == {"loss", name, "val_loss", f"val_{name}"}
    assert set(model.evaluate(x, y, return_dict=True)) == {"loss", name}


# -- 18: evaluate returns what Keras returns -----------------------------------------------------
def test_evaluate_returns_keras_values_by_default(backend, data):
    x, y = data
    loss, acc = _model(metrics=["accuracy"]).evaluate(x, y, verbose=0)
    assert isinstance(loss, float) and 0 <= acc <= 1
    alone = _model().evaluate(x, y, verbose=0)
    assert isinstance(alone, float)
    assert set(_model(metrics=["accuracy"]).evaluate(x, y, return_dict=True)) == {"loss", "accuracy"}


# -- 19: a learning rate of 0 -------------------------------------------------------------------------
def test_a_learning_rate_of_zero_is_accepted_and_changes_nothing(backend, data):
    model = _model(optimizer=fc.optimizers.SGD(learning_rate=0.0))
    before = model.get_weights()
    model.fit(*data, epochs=1, verbose=0, callbacks=[cbs.LearningRateScheduler(lambda epoch: 0.0)])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="learning_rate"):
        fc.optimizers.Adam(learning_rate=-0.1)


# -- 20: accuracy with binary cross-entropy and several outputs --------------------------------
def test_accuracy_with_binary_crossentropy_on_several_outputs_is_binary(backend, rng):
    x = rng.normal(size=(32, 4))
    y = (rng.random((32, 3)) > 0.5).astype(np.float32)
    model = fc.Sequential([fc.Dense(3, activation="sigmoid", input_shape=(4,))])
    model.compile(loss="binary_crossentropy", optimizer="sgd", metrics=["accuracy"])
    acc = model.evaluate(x, y, return_dict=True)["accuracy"]
    expected = np.mean((model.predict(x) > 0.5) == y)
    assert acc == pytest.approx(expected, abs=1e-6)


# -- 21: the names a Keras MLP program reaches for ----------------------------------------------
def test_keras_names_are_there(tmp_path):
    assert fc.models.Sequential is fc.Sequential
    assert callable(fc.models.load_model) and callable(fc.models.model_from_json)
    assert isinstance(fc.regularizers.l2(0.01), fc.regularizers.L2)
    assert isinstance(fc.regularizers.l1(0.01), fc.regularizers.L1)
    assert isinstance(fc.regularizers.l1_l2(l1=0.01, l2=0.01), fc.regularizers.L1L2)
    assert fc.mixed_precision.LossScaleOptimizer is fc.optimizers.LossScaleOptimizer
    assert issubclass(fc.callbacks.History, fc.callbacks.Callback)
    fc.utils.set_random_seed(3)
    a = fc.Dense(2)
    a.build(3)
    fc.utils.set_random_seed(3)
    b = fc.Dense(2)
    b.build(3)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])


def test_input_layer_get_layer_and_json(backend, data):
    x, y = data
    model = fc.Sequential([fc.layers.InputLayer(shape=(5,)), fc.Dense(8, name="hidden"), fc.Dense(3)])
    assert model.get_layer("hidden") is model.layers[0]
    assert model.get_layer(index=1) is model.layers[1]
    with pytest.raises(ValueError, match="no_such"):
        model.get_layer("no_such")
    clone = fc.models.model_from_json(model.to_json())
    assert [type(layer) for layer in clone.layers] == [type(layer) for layer in model.layers]
    assert clone.count_params() == model.count_params()


def test_fit_returns_a_history_callback(backend, data):
    history = _model().fit(*data, epochs=2, verbose=0)
    assert isinstance(history, fc.callbacks.History)
    assert history.epoch == [0, 1] and len(history.history["loss"]) == 2


# -- 22: one version -------------------------------------------------------------------------------
def test_version_is_single_sourced():
    from importlib.metadata import version

    assert fc.__version__ == version("fcgpu")
    assert fc.__version__.startswith("0.3")


def test_model_checkpoint_to_keras_files_checks_h5py_before_training(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(ImportError, match="h5py"):
        cbs.ModelCheckpoint(str(tmp_path / "best.keras"))
    with pytest.raises(ValueError, match="weights.h5"):
        cbs.ModelCheckpoint(str(tmp_path / "w.fcgpu"), save_weights_only=True)


def test_model_checkpoint_saves_weights_only(backend, data, tmp_path):
    pytest.importorskip("h5py")
    model = _model()
    path = tmp_path / "w-{epoch}.weights.h5"
    model.fit(*data, epochs=2, verbose=0, callbacks=[cbs.ModelCheckpoint(str(path), save_weights_only=True, monitor="loss")])
    other = _model()
    other.load_weights(str(tmp_path / "w-2.weights.h5"))
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_history_among_the_callbacks_is_the_one_fit_fills(backend, data):
    given = cbs.History()
    model = _model()
    returned = model.fit(*data, epochs=2, verbose=0, callbacks=[given])
    assert returned is given and model.history is given and given.epoch == [0, 1]
    assert len(given.history["loss"]) == 2


def test_learning_rate_scheduler_logs_the_learning_rate(backend, data):
    history = _model().fit(*data, epochs=2, verbose=0,
                           callbacks=[cbs.LearningRateScheduler(lambda epoch, lr: lr * 0.5)])
    assert history.history["learning_rate"] == pytest.approx([0.005, 0.0025])


def test_model_checkpoint_refuses_a_folder_before_training(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        cbs.ModelCheckpoint(str(tmp_path))


def test_calling_a_model_with_training_applies_dropout(backend):
    model = fc.Sequential([fc.Input(shape=(50,)), fc.Dropout(0.5)])
    x = np.ones((4, 50), np.float32)
    np.testing.assert_array_equal(fc.to_numpy(model(x, training=False)), x)
    dropped = fc.to_numpy(model(x, training=True))
    assert (dropped == 0).any() and set(np.unique(dropped)) <= {0.0, 2.0}
    assert fc.to_numpy(model.layers[0](x, training=False)).sum() == x.sum()


def test_mixed_precision_predict_gives_the_compute_dtype_as_keras(backend, data):
    x, _ = data
    assert _model(dtype="mixed_float16").predict(x).dtype == np.float16


def test_a_torch_bfloat16_tensor_given_to_fit_is_named(backend, data):
    torch = pytest.importorskip("torch")
    x, y = data
    with pytest.raises(TypeError, match="bfloat16"):
        _model().fit(torch.tensor(x).to(torch.bfloat16), y, verbose=0)


def test_keras_weight_attributes(backend, data):
    model = fc.Sequential([fc.Input(shape=(5,)), fc.Dense(4, kernel_regularizer=fc.regularizers.l2(0.1), dtype="mixed_float16"),
                           fc.Dropout(0.1), fc.Dense(3, activation="softmax")])
    assert [w.shape for w in model.weights] == [(5, 4), (4,), (4, 3), (3,)]
    assert len(model.trainable_weights) == 4 and model.non_trainable_weights == []
    assert model.layers[1].weights == [] and model.layers[0].variable_dtype == np.float32
    kernel = fc.to_numpy(model.layers[0].kernel)
    assert model.losses == [pytest.approx(0.1 * float((kernel.astype(np.float64) ** 2).sum()))]


def test_keras_batch_methods_and_clone_model(backend, data):
    x, y = data
    model = _model(metrics=["acc"])
    loss, acc = model.train_on_batch(x[:16], y[:16])
    assert isinstance(loss, float) and 0 <= acc <= 1
    assert set(model.train_on_batch(x[:16], y[:16], return_dict=True)) == {"loss", "acc"}
    assert model.test_on_batch(x[:16], y[:16]) == pytest.approx(model.evaluate(x[:16], y[:16]))
    np.testing.assert_array_equal(model.predict_on_batch(x[:5]), model.predict(x[:5]))
    alone = _model()
    first = alone.train_on_batch(x, y)
    assert isinstance(first, float) and alone.train_step(x, y) < first  # the step updated the weights
    clone = fc.models.clone_model(model)
    assert clone.count_params() == model.count_params() and clone is not model
    assert not all(np.array_equal(a, b) for a, b in zip(clone.get_weights(), model.get_weights()))
