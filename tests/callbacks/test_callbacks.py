"""fit's Keras surface: callbacks and their hooks, validation_split, initial_epoch, stop_training,
evaluate(return_dict=...), predict(verbose=...), on every backend."""
from __future__ import annotations

import csv

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import callbacks as cb


def _data(rng, n=64):
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] - x[:, 1] > 0).astype(int)


def _model(lr=0.05):
    model = fc.Sequential([fc.Dense(8, activation="relu"), fc.Dense(2)])
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.Adam(lr=lr), metrics=["accuracy"])
    return model


class Recorder(cb.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, dict(logs or {})))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))


def test_hooks_run_in_keras_order_with_keras_logs(backend, rng):
    x, y = _data(rng)
    rec = Recorder()
    model = _model()
    history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, callbacks=[rec], verbose=0)
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "train_begin" and kinds[-1] == "train_end"
    assert kinds.count("epoch_begin") == 2 and kinds.count("batch_end") == 2 * 3  # 48 training rows / 16
    assert rec.model is model and rec.params["epochs"] == 2 and rec.params["samples"] == 48
    end = [e for e in rec.events if e[0] == "epoch_end"]
    assert set(end[0][2]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.history["val_loss"] == [e[2]["val_loss"] for e in end]
    # the last batch of an epoch carries the running figures (it is a read point)
    last_batch = [e for e in rec.events if e[0] == "batch_end"][2]
    assert last_batch[2]["loss"] == pytest.approx(end[0][2]["loss"])


def test_validation_split_takes_the_last_samples_before_shuffling(backend, rng):
    x, y = _data(rng, 40)
    split = fc.Sequential([fc.Dense(2)])
    split.compile(loss="softmax_cross_entropy", optimizer="sgd")
    split.build((None, 4))
    explicit = fc.Sequential([fc.Dense(2)])
    explicit.compile(loss="softmax_cross_entropy", optimizer="sgd")
    explicit.build((None, 4))
    explicit.set_weights(split.get_weights())
    fc.set_seed(3)
    a = split.fit(x, y, epochs=2, batch_size=8, validation_split=0.2, verbose=0)
    fc.set_seed(3)
    b = explicit.fit(x[:32], y[:32], epochs=2, batch_size=8, validation_data=(x[32:], y[32:]), verbose=0)
    np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], rtol=1e-6)
    with pytest.raises(ValueError, match="validation_split: expected a fraction in \\[0, 1\\)"):
        split.fit(x, y, validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="leaves no training samples"):
        split.fit(x[:1], y[:1], validation_split=0.5, verbose=0)


def test_early_stopping_restores_the_best_weights(backend, rng):
    x, y = _data(rng)
    model = _model()
    seen = []

    class Worsen(cb.Callback):
        """Reports a val_loss that is best at epoch 1 and worse afterwards, and keeps the weights."""

        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = [3.0, 1.0, 2.0, 2.5, 2.7, 2.9][epoch]
            seen.append(self.model.get_weights())

    stop = cb.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=6, batch_size=16, callbacks=[Worsen(), stop], verbose=0)
    assert len(history.epoch) == 4 and stop.stopped_epoch == 3 and stop.best_epoch == 1
    for w, best in zip(model.get_weights(), seen[1]):
        np.testing.assert_array_equal(w, best)


def test_early_stopping_mode_and_min_delta(rng):
    stop = cb.EarlyStopping(monitor="val_accuracy", min_delta=0.1, patience=0)
    assert stop.monitor_op is np.greater
    stop.on_train_begin()
    stop.model = type("M", (), {"stop_training": False})()
    stop.on_epoch_end(0, {"val_accuracy": 0.5})
    stop.on_epoch_end(1, {"val_accuracy": 0.55})  # not better by 0.1
    assert stop.model.stop_training
    with pytest.raises(ValueError, match="mode: expected 'auto', 'min' or 'max'"):
        cb.EarlyStopping(mode="up")


def test_model_checkpoint_formats_the_path_and_keeps_the_best(backend, rng, tmp_path):
    x, y = _data(rng)
    model = _model()
    every = cb.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.fcgpu"), save_best_only=False)
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[every], verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-01.fcgpu", "m-02.fcgpu"]
    best_path = tmp_path / "best.fcgpu"
    losses = iter([2.0, 1.0, 1.5])

    class Fake(cb.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(losses)

    best = cb.ModelCheckpoint(str(best_path), monitor="val_loss", save_best_only=True)
    model.fit(x, y, epochs=3, batch_size=16, callbacks=[Fake(), best], verbose=0)
    assert best.best == 1.0 and fc.load_model(best_path).built
    with pytest.raises(ValueError, match="does not exist"):
        cb.ModelCheckpoint(str(tmp_path / "missing" / "m.fcgpu"))


def test_schedulers_change_the_learning_rate(backend, rng):
    x, y = _data(rng)
    model = _model(lr=0.1)
    seen = []
    sched = cb.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    spy = cb.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(model.optimizer.learning_rate))
    model.fit(x, y, epochs=3, batch_size=32, callbacks=[sched, spy], verbose=0)
    assert seen == pytest.approx([0.05, 0.025, 0.0125])
    plateau = cb.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0, min_lr=0.01)
    model.fit(x, y, epochs=4, batch_size=32, callbacks=[plateau], verbose=0)
    assert model.optimizer.learning_rate == pytest.approx(0.01)  # halved each epoch, floored at min_lr


def test_csv_logger_and_terminate_on_nan(backend, rng, tmp_path):
    x, y = _data(rng)
    model = _model()
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[cb.CSVLogger(str(path))], verbose=0)
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "accuracy", "loss"] and [r[0] for r in rows[1:]] == ["0", "1"]
    stopper = cb.TerminateOnNaN()
    stopper.model = model
    stopper.on_train_batch_end(3, {"loss": float("nan")})
    assert model.stop_training


def test_stop_training_and_initial_epoch(backend, rng):
    x, y = _data(rng)
    model = _model()

    class StopAt(cb.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    history = model.fit(x, y, epochs=5, batch_size=16, callbacks=[StopAt()], verbose=0)
    assert len(history.epoch) == 1 and np.isfinite(history.history["loss"][0])
    history = model.fit(x, y, epochs=5, initial_epoch=3, batch_size=16, verbose=0)
    assert history.epoch == [3, 4]
    with pytest.raises(TypeError, match="callbacks: expected a list"):
        model.fit(x, y, callbacks=cb.TerminateOnNaN(), verbose=0)
    with pytest.raises(TypeError, match=r"callbacks\[0\]: expected a fcgpu.callbacks.Callback"):
        model.fit(x, y, callbacks=[print], verbose=0)


def test_evaluate_return_dict_and_predict_verbose(backend, rng, capsys):
    x, y = _data(rng)
    model = _model()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    logs = model.evaluate(x, y, return_dict=True)
    values = model.evaluate(x, y, return_dict=False)
    assert values == pytest.approx([logs["loss"], logs["accuracy"]])
    plain = fc.Sequential([fc.Dense(1)])
    plain.compile(loss="mse", optimizer="sgd")
    assert isinstance(plain.evaluate(x, y.astype(np.float32), return_dict=False), float)
    out = model.predict(x, verbose=1)
    assert out.shape == (64, 2)
    assert "Predict" in capsys.readouterr().err
    with pytest.raises(ValueError, match="verbose: expected 0, 1, 2 or 'auto'"):
        model.predict(x, verbose=5)
