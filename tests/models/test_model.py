"""Sequential: structure, summary, forward/backward, training on digits, bad input, moving backends."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from helpers import summary_text
from fcgpu.losses import SoftmaxCrossEntropy

SEED_003_SUMMARY = """\
Model: "sequential"
_________________________________________________________________
Layer (type)                 Output Shape              Param #   
=================================================================
dense (Dense)                (None, 2)                 8         
_________________________________________________________________
dense_1 (Dense)              (None, 2)                 6         
_________________________________________________________________
dense_2 (Dense)              (None, 2)                 6         
=================================================================
Total params: 20
Trainable params: 20
Non-trainable params: 0
_________________________________________________________________"""


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    from fcgpu.utils.datasets import load_digits

    return load_digits(seed=0)


def small_model(**compile_kwargs):
    model = fc.Sequential([fc.Dense(8, activation="relu"), fc.Dense(3)])
    model.compile(**({"loss": "softmax_cross_entropy", "optimizer": "adam", "metrics": ["accuracy"]} | compile_kwargs))
    return model


# -- structure and summary --------------------------------------------------------------------
def test_seed_003_summary_in_keras_layout(backend, capsys):
    model = fc.Sequential([fc.Dense(2, "relu"), fc.Dense(2, "relu"), fc.Dense(2)])
    model.build(3)
    assert [layer.count_params() for layer in model.layers] == [8, 6, 6]
    assert model.count_params() == 20
    assert summary_text(model) == SEED_003_SUMMARY
    assert model.summary() is None
    assert capsys.readouterr().out == SEED_003_SUMMARY + "\n"


def test_784_512_10_model_has_407050_params():
    model = fc.Sequential([fc.Dense(512, activation="relu"), fc.Dense(10)], name="mlp")
    model.build((None, 784))
    assert model.count_params() == 407_050
    text = summary_text(model)
    assert 'Model: "mlp"' in text
    assert "dense (Dense)                (None, 512)               401920" in text
    assert "dense_1 (Dense)              (None, 10)                5130" in text
    assert "Total params: 407,050\nTrainable params: 407,050\nNon-trainable params: 0" in text
    assert all(len(line) <= 65 for line in text.splitlines())


def test_summary_and_count_params_need_a_built_model():
    model = fc.Sequential([fc.Dense(4)])
    with pytest.raises(ValueError, match="not built"):
        model.summary()
    with pytest.raises(ValueError, match="not built"):
        model.count_params()


def test_names_are_assigned_and_unique_within_the_model():
    model = fc.Sequential([fc.Dense(2, name="dense"), fc.Dense(2), fc.Dense(2, name="head")])
    model.add(fc.Dense(2))
    assert [layer.name for layer in model.layers] == ["dense", "dense_1", "head", "dense_2"]
    with pytest.raises(ValueError, match="'head' is already used"):
        model.add(fc.Dense(2, name="head"))
    with pytest.raises(TypeError, match="layer"):
        model.add("dense")
    other = fc.Sequential([fc.Dense(3)])  # names are per model, not global
    assert other.layers[0].name == "dense"
    model.build(5)
    assert [name for name, _ in model.trainable_variables] == [
        "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias",
        "head/kernel", "head/bias", "dense_2/kernel", "dense_2/bias",
    ]  # fmt: skip


def test_lazy_build_add_after_build_and_layer_property(backend, rng):
    model = fc.Sequential()
    model.add(fc.Dense(4, activation="tanh"))
    assert not model.built
    y = model(rng.normal(size=(3, 6)).astype(np.float32))
    assert model.built and y.shape == (3, 4) and backend.owns(y)
    model.add(fc.Dense(2))
    assert model.layers[1].built and model.layers[1].in_features == 4
    assert model.predict(rng.normal(size=(5, 6))).shape == (5, 2)
    model.layers.clear()  # a copy: the model keeps its layers
    assert len(model.layers) == 2


def test_get_and_set_weights_check_everything_first(backend):
    model = fc.Sequential([fc.Dense(3, activation="relu"), fc.Dense(2)])
    model.build(4)
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(4, 3), (3,), (3, 2), (2,)]
    new = [w + 1 for w in weights]
    bad = new[:-1] + [np.zeros(5, np.float32)]
    with pytest.raises(ValueError, match=r"weights\[3\]"):
        model.set_weights(bad)
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)  # untouched, also the first three
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="4 arrays"):
        model.set_weights(new[:2])


# -- forward / backward -----------------------------------------------------------------------------
def test_forward_backward_compose_the_layers(backend, rng):
    model = fc.Sequential([fc.Dense(5, activation="tanh", dtype="float64"), fc.Dense(3, dtype="float64")])
    x = rng.normal(size=(4, 6))
    y = fc.to_numpy(model(x)).copy()
    k0, b0, k1, b1 = model.get_weights()
    h = np.tanh(x @ k0 + b0)
    np.testing.assert_allclose(y, h @ k1 + b1, rtol=1e-12)
    dy = rng.normal(size=(4, 3))
    dx = fc.to_numpy(model.backward(dy))
    dh = (dy @ k1.T) * (1 - h * h)
    np.testing.assert_allclose(dx, dh @ k0.T, rtol=1e-12)
    np.testing.assert_allclose(fc.to_numpy(model.layers[1].kernel_grad), h.T @ dy, rtol=1e-12)


def test_whole_model_gradient_against_central_differences(backend, rng):
    model = fc.Sequential(
        [fc.Dense(5, activation="tanh", dtype="float64"), fc.Dense(4, activation="sigmoid", dtype="float64"),
         fc.Dense(3, dtype="float64")]
    )  # fmt: skip
    x = rng.normal(size=(6, 4))
    labels = np.array([0, 2, 1, 1, 0, 2])
    loss = SoftmaxCrossEntropy()

    def value() -> float:
        return loss.forward(model(x), labels)

    value()
    model.backward(loss.backward())
    analytic = [fc.to_numpy(g).copy() for _, _, g in model.parameters()]
    h = 1e-6
    for (name, param, _), grad in zip(model.parameters(), analytic):
        flat_index = rng.choice(int(np.prod(param.shape)), size=min(5, int(np.prod(param.shape))), replace=False)
        for flat in flat_index:
            idx = np.unravel_index(flat, param.shape)
            original = float(fc.to_numpy(param)[idx])
            param[idx] = original + h
            up = value()
            param[idx] = original - h
            down = value()
            param[idx] = original
            assert (up - down) / (2 * h) == pytest.approx(grad[idx], rel=1e-6, abs=1e-9), name


def test_steady_state_training_reuses_every_layer_buffer(backend, rng):
    model = small_model()
    x = rng.normal(size=(16, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=16)
    model.train_step(x, y)
    ids = [{k: id(v) for k, v in layer._buffers._arrays.items()} for layer in model.layers]
    grad_buffer = id(model.loss._buffers._arrays["grad"])
    for _ in range(3):
        model.train_step(x, y)
    assert ids == [{k: id(v) for k, v in layer._buffers._arrays.items()} for layer in model.layers]
    assert id(model.loss._buffers._arrays["grad"]) == grad_buffer
    # training skips the first layer's input gradient: no dx buffer there; a linear layer's dz is
    # its dy, so it has no dz buffer either
    assert set(ids[0]) == {"y", "dz"} and all(set(b) >= {"y", "dx"} for b in ids[1:])
    assert model.layers[-1].activation.name == "linear" and "dz" not in ids[-1]


# -- compile, fit, evaluate, predict -------------------------------------------------------------
def test_fit_on_digits_reaches_095_test_accuracy(digits):
    (x_train, y_train), (x_test, y_test) = digits
    with fc.use_backend("numpy"):
        fc.set_seed(0)
        model = fc.Sequential([fc.Dense(64, activation="relu"), fc.Dense(10)])
        model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.Adam(lr=1e-3), metrics=["accuracy"])
        history = model.fit(x_train, y_train, epochs=30, batch_size=32, validation_data=(x_test, y_test), verbose=0)
        result = model.evaluate(x_test, y_test, return_dict=True)
    assert result["accuracy"] >= 0.95
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 30 for v in history.history.values()) and history.epoch == list(range(30))
    assert history.history["val_accuracy"][-1] == pytest.approx(result["accuracy"])
    assert history.history["loss"][-1] < history.history["loss"][0] / 5
    assert len(history.epoch_times) == 30 and all(t > 0 for t in history.epoch_times)


def test_fit_learns_on_every_backend(backend, digits):
    (x_train, y_train), (x_test, y_test) = digits
    # Keras's sparse_categorical_crossentropy takes probabilities: a softmax output (fused with it)
    model = fc.Sequential([fc.Dense(32, activation="relu"), fc.Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=fc.optimizers.Adam(lr=3e-3), metrics=["acc"])
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    assert model.evaluate(x_test, y_test, return_dict=True)["acc"] >= 0.85
    assert all(backend.owns(p) for _, p in model.trainable_variables)


def test_fit_is_reproducible_from_the_seed(rng):
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)

    def run():
        fc.set_seed(42)
        model = small_model(optimizer=fc.optimizers.SGD(lr=0.1, momentum=0.9))
        return model.fit(x, y, epochs=3, batch_size=8, verbose=0).history["loss"]

    assert run() == run()


def test_one_hot_mse_and_binary_losses_train(backend, rng):
    x = rng.normal(size=(64, 3)).astype(np.float32)
    ids = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = fc.Sequential([fc.Dense(8, activation="tanh"), fc.Dense(2, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=fc.optimizers.Adam(lr=0.05), metrics=["accuracy"])
    h = model.fit(x, np.eye(2)[ids], epochs=20, batch_size=16, verbose=0)
    assert h.history["accuracy"][-1] > 0.9
    binary = fc.Sequential([fc.Dense(8, activation="tanh"), fc.Dense(1, activation="sigmoid")])
    binary.compile(loss="binary_crossentropy", optimizer=fc.optimizers.Adam(lr=0.05), metrics=["accuracy"])
    assert binary.loss.from_logits is False
    assert binary.fit(x, ids, epochs=20, batch_size=16, verbose=0).history["accuracy"][-1] > 0.9
    regression = fc.Sequential([fc.Dense(1)])
    regression.compile(loss="mse", optimizer=fc.optimizers.SGD(lr=0.1))
    target = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    h = regression.fit(x, target, epochs=30, batch_size=16, verbose=0)
    assert set(h.history) == {"loss"} and h.history["loss"][-1] < 1e-3


def test_predict_and_evaluate_are_batch_size_independent(backend, rng):
    model = small_model()
    x = rng.normal(size=(37, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=37)
    full = model.predict(x)
    assert isinstance(full, np.ndarray) and type(full) is np.ndarray and full.shape == (37, 3)
    np.testing.assert_allclose(model.predict(x, batch_size=5), full, rtol=1e-6)
    a, b = model.evaluate(x, y, return_dict=True), model.evaluate(x, y, batch_size=4, return_dict=True)
    assert set(a) == {"loss", "accuracy"}
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["accuracy"] == b["accuracy"]
    assert a["accuracy"] == pytest.approx(np.mean(full.argmax(axis=1) == y))


def test_train_step_returns_the_loss_and_updates(backend, rng):
    model = small_model(optimizer=fc.optimizers.SGD(lr=0.5))
    x = rng.normal(size=(8, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=8)
    model.build(5)
    before = model.get_weights()
    expected = SoftmaxCrossEntropy().forward(fc.to_numpy(model(x)).copy(), y)
    assert model.train_step(x, y) == pytest.approx(expected, rel=1e-6)
    assert not np.allclose(model.get_weights()[0], before[0])


def test_progress_bar_and_epoch_lines(capsys, rng):
    model = small_model()
    x = rng.normal(size=(20, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=20)
    model.fit(x, y, epochs=2, batch_size=8, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 2/2" in err and "loss=" in err and "accuracy=" in err and "3/3" in err
    model.fit(x, y, epochs=1, verbose=2, validation_data=(x, y))
    out = capsys.readouterr().out
    assert out.startswith("Epoch 1/1 - ") and "val_accuracy:" in out


def test_compile_arguments():
    model = fc.Sequential([fc.Dense(2)])
    model.compile(loss="mse", optimizer="sgd")
    assert isinstance(model.optimizer, fc.optimizers.SGD) and model.metrics == []
    with pytest.raises(ValueError, match="loss"):
        model.compile(loss="nope", optimizer="adam")
    with pytest.raises(ValueError, match="optimizer"):
        model.compile(loss="mse", optimizer="nope")
    with pytest.raises(ValueError, match="metrics"):
        model.compile(loss="mse", optimizer="adam", metrics=["f1"])
    with pytest.raises(ValueError, match="compile needs a loss"):
        model.compile(optimizer="adam")


# -- bad input: clear errors, nothing changed --------------------------------------------------------
def snapshot(model):
    weights = model.get_weights()
    state = {n: {s: fc.to_numpy(v).copy() for s, v in st.items()} for n, st in model.optimizer.state.items()}
    return weights, state, dict(model.optimizer.steps)


def assert_unchanged(model, snap):
    weights, state, steps = snapshot(model)
    for a, b in zip(weights, snap[0]):
        np.testing.assert_array_equal(a, b)
    assert steps == snap[2] and state.keys() == snap[1].keys()


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda m, x, y: m.fit(x, y[:-1], verbose=0), ValueError, "x and y: expected the same number of samples, got 10 and 9"),
        (lambda m, x, y: m.train_step(x[:, :4], y), ValueError, "x: model 'sequential' takes 5 features"),
        (lambda m, x, y: m.fit(np.where(x > 1, np.nan, x), y, verbose=0), ValueError, "x: expected finite values"),
        (lambda m, x, y: m.fit(x, y + 3, verbose=0), ValueError, "y: class ids must be in [0, 3)"),
        (lambda m, x, y: m.fit(x, np.zeros((10, 4)), verbose=0), ValueError, "y: expected class ids of shape (10,)"),
        (lambda m, x, y: m.fit(x, y.astype(str), verbose=0), TypeError, "y: expected numeric labels"),
        (lambda m, x, y: m.fit(x.reshape(-1), y, verbose=0), ValueError, "a 1-D x is one feature per sample"),
        (lambda m, x, y: m.fit(x, y, validation_data=(x[:, :3], y), verbose=0), ValueError, "validation_data[0]"),
        (lambda m, x, y: m.fit(x, y, validation_data=(x, y + 5), verbose=0), ValueError, "validation_data[1]"),
        (lambda m, x, y: m.fit(x, y, batch_size=0, verbose=0), ValueError, "batch_size"),
        (lambda m, x, y: m.evaluate(x, y[:3]), ValueError, "x and y"),
        (lambda m, x, y: m.predict(x[:, :2]), ValueError, "takes 5 features"),
    ],
)
def test_bad_input_gives_clear_errors_and_changes_nothing(backend, rng, call, error, words):
    model = small_model()
    x = rng.normal(size=(10, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=10)
    model.train_step(x, y)  # built, with optimizer state
    snap = snapshot(model)
    with pytest.raises(error) as info:
        call(model, x, y)
    assert words in str(info.value)
    assert_unchanged(model, snap)


def test_fit_before_compile():
    model = fc.Sequential([fc.Dense(2)])
    with pytest.raises(RuntimeError, match="compiled first"):
        model.fit(np.zeros((2, 3)), np.zeros(2, int))
    with pytest.raises(RuntimeError, match="compiled first"):
        model.train_step(np.zeros((2, 3)), np.zeros(2, int))
    assert not model.built


def test_wrong_width_in_forward_names_the_layer():
    model = fc.Sequential([fc.Dense(2)])
    model.build(3)
    with pytest.raises(ValueError, match="x: expected 3 features"):
        model(np.zeros((1, 4)))


# -- moving between backends ---------------------------------------------------------------------
def test_to_moves_parameters_and_optimizer_state(rng, backend_named):
    x = rng.normal(size=(12, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=12)
    stand_in = backend_named("cupy-standin")

    def trained(move_at):
        fc.set_seed(3)
        with fc.use_backend("numpy"):
            model = small_model(optimizer=fc.optimizers.Adam(lr=0.01))
            for step in range(4):
                if step == move_at:
                    assert model.to(stand_in) is model
                    assert all(stand_in.owns(p) for _, p in model.trainable_variables)
                    assert all(stand_in.owns(v) for s in model.optimizer.state.values() for v in s.values())
                model.train_step(x, y)
            out = model.predict(x)
            model.to("numpy")
            assert all(type(p) is np.ndarray for _, p in model.trainable_variables)
            return out, model.get_weights()

    moved, stayed = trained(2), trained(None)
    np.testing.assert_allclose(moved[0], stayed[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(moved[1], stayed[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_to_before_build_sets_where_the_model_is_built(rng, backend_named):
    stand_in = backend_named("cupy-standin")
    with fc.use_backend("numpy"):
        model = fc.Sequential([fc.Dense(3), fc.Dense(2)]).to(stand_in)
        model(rng.normal(size=(2, 4)))
    assert all(stand_in.owns(p) for _, p in model.trainable_variables)


def test_build_refuses_a_width_that_built_layers_cannot_take():
    model = fc.Sequential([fc.Dense(3), fc.Dense(2)])
    model.build(4)
    before = model.get_weights()
    with pytest.raises(ValueError, match="'dense' is built for 4 features, but the input has 6"):
        model.build(6)
    np.testing.assert_array_equal(model.get_weights()[0], before[0])
    first = fc.Dense(5)
    first.build(2)
    with pytest.raises(ValueError, match="'dense_1' is built for 2 features, but the layer before it gives 3"):
        fc.Sequential([fc.Dense(3), first]).build(4)


@pytest.mark.parametrize("other", ["cupy-standin", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_mixed_dtype_layers_train_the_same_on_every_backend(rng, other, backend_named):

    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    results = []
    for name in ("numpy", other):
        with fc.use_backend(backend_named(name)):
            fc.set_seed(5)
            model = fc.Sequential([fc.Dense(4, activation="tanh", dtype="float64"), fc.Dense(1, dtype="float32")])
            model.compile(loss="mse", optimizer="sgd", metrics="accuracy")
            assert model.metrics == ["accuracy"]
            losses = [model.train_step(x, y) for _ in range(3)]
            results.append((losses, model.get_weights(), model.predict(x)))
    (l0, w0, p0), (l1, w1, p1) = results
    assert p0.dtype == p1.dtype == np.float32 and l0[2] < l0[0]
    np.testing.assert_allclose(l0, l1, rtol=1e-5)
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p0, p1, rtol=1e-5, atol=1e-6)


def test_fit_reads_loss_and_accuracy_from_the_device_about_20_times_an_epoch(monkeypatch, rng, backend_named):
    """Reading a device scalar waits for the GPU: fit must not do it for every batch."""
    from fcgpu.testing import fake_cupy

    reads = []
    for name in ("__float__", "__int__"):
        original = getattr(np.ndarray, name)

        def counting(self, _original=original):
            reads.append(self.shape)
            return _original(self)

        monkeypatch.setattr(fake_cupy.ndarray, name, counting, raising=False)
    original_asnumpy = fake_cupy.asnumpy

    def asnumpy(a, *args, **kwargs):
        reads.append(getattr(a, "shape", ()))
        return original_asnumpy(a, *args, **kwargs)

    monkeypatch.setattr(fake_cupy, "asnumpy", asnumpy)
    with fc.use_backend(backend_named("cupy-standin")):
        model = fc.Sequential([fc.Dense(8, activation="relu"), fc.Dense(3)])
        model.compile(loss="softmax_cross_entropy", optimizer="sgd", metrics=["accuracy"])
        x, y = rng.normal(size=(400, 5)), rng.integers(0, 3, size=400)
        reads.clear()
        model.fit(x, y, epochs=1, batch_size=2, verbose=1)  # 200 batches
    assert 0 < len(reads) <= 2 * 21


def test_inputs_that_overflow_a_float16_model_are_named():
    model = fc.Sequential([fc.Dense(2, dtype="float16")])
    model.compile(loss="mse", optimizer="sgd")
    with pytest.raises(ValueError, match=r"x: expected finite values, got values that overflow float16 \(first in row 1\)"):
        model.train_step(np.array([[1.0], [1e5]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"x: expected finite values, got NaN or inf \(first in row 0\)"):
        model.predict(np.array([[np.nan]]))


def test_multi_label_binary_accuracy_counts_each_output(backend):
    """Keras's binary accuracy: with a binary loss every output of a row counts on its own."""
    model = fc.Sequential([fc.Dense(2, use_bias=False)])
    model.build(2)
    model.set_weights([np.eye(2)])
    model.compile(loss=fc.losses.BinaryCrossEntropy(from_logits=True), optimizer="sgd", metrics=["accuracy"])
    x = np.array([[1.0, -1.0], [1.0, 1.0]])  # logits = x: predictions [[1, 0], [1, 1]]
    y = np.array([[1.0, 1.0], [1.0, 1.0]])  # 3 of 4 outputs right
    assert model.evaluate(x, y, return_dict=True)["accuracy"] == pytest.approx(0.75)
