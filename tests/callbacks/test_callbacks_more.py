"""BackupAndRestore (an interrupted fit resumed ends where an uninterrupted one does), TensorBoard
(event files that TensorBoard's own reader parses, Keras's tags and steps), ProgbarLogger and
History passed by the program."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.callbacks.event_file import crc32c, read_events, read_records

X = np.random.default_rng(0).normal(size=(72, 5)).astype(np.float32)
Y = (X.sum(1) > 0).astype(np.int64)
VX, VY = X[:20] + 0.1, Y[:20]


def model():
    fc.set_seed(11)
    m = fc.Sequential([fc.Dense(10, activation="relu"), fc.Dropout(0.25, seed=4), fc.Dense(2)])
    schedule = fc.optimizers.schedules.CosineDecay(0.0, 30, warmup_target=0.05, warmup_steps=5)
    m.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.Adam(learning_rate=schedule), metrics=["accuracy"])
    return m


class Interrupt(fc.callbacks.Callback):
    def __init__(self, epoch, batch=None, error=RuntimeError):
        super().__init__()
        self.epoch, self.batch, self.error, self.current = epoch, batch, error, None
        if batch is not None:
            self.on_train_batch_begin = self._batch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch
        if epoch == self.epoch and self.batch is None:
            raise self.error("interrupted")

    def _batch(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise self.error("interrupted")


@pytest.mark.parametrize("how", ["callback error", "keyboard interrupt mid-epoch"])
def test_resumed_fit_ends_with_the_weights_of_an_uninterrupted_one(backend, tmp_path, how):
    whole = model()
    history = whole.fit(X, Y, batch_size=16, epochs=6, validation_data=(VX, VY), verbose=0)
    backup = fc.callbacks.BackupAndRestore(tmp_path / "backup")
    stop = Interrupt(3) if how == "callback error" else Interrupt(3, batch=2, error=KeyboardInterrupt)
    m = model()
    with pytest.raises(RuntimeError if how == "callback error" else KeyboardInterrupt, match="interrupted"):
        m.fit(X, Y, batch_size=16, epochs=6, validation_data=(VX, VY), verbose=0, callbacks=[backup, stop])
    assert os.listdir(tmp_path / "backup") == ["latest.fcgpu-backup"]  # one file, no temporary left behind
    fc.set_seed(999)  # the backup brings back the generator that shuffles
    again = model()  # a fresh process would start from a fresh model
    resumed = again.fit(X, Y, batch_size=16, epochs=6, validation_data=(VX, VY), verbose=0, callbacks=[backup])
    assert resumed.epoch == [3, 4, 5]
    assert resumed.history["loss"] == pytest.approx(history.history["loss"][3:], rel=1e-12)
    for a, b in zip(again.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert again.optimizer.iterations == whole.optimizer.iterations
    assert not (tmp_path / "backup").exists()  # removed when fit ended normally


def test_backup_every_n_batches_restarts_the_epoch_from_mid_epoch_weights(tmp_path):
    backup = fc.callbacks.BackupAndRestore(tmp_path / "b", save_freq=3, delete_checkpoint=False)
    assert backup.on_train_batch_end is not None
    seen = []
    m = model()
    grab = fc.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(m.get_weights()))
    with pytest.raises(RuntimeError):
        m.fit(X, Y, batch_size=16, epochs=4, verbose=0, callbacks=[backup, grab, Interrupt(1, batch=4)])
    # 5 batches an epoch, counted across epochs: saves after the 3rd, 6th and 9th (epoch 1's 4th), then stops
    again = model()
    restored = []
    probe = fc.callbacks.LambdaCallback(on_train_begin=lambda logs: restored.append(again.get_weights()))
    h = again.fit(X, Y, batch_size=16, epochs=2, verbose=0, callbacks=[backup, probe])
    assert h.epoch == [1]
    assert len(seen) == 9
    for a, b in zip(restored[0], seen[8]):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "b" / "latest.fcgpu-backup").exists()  # delete_checkpoint=False keeps it


def test_a_damaged_backup_falls_back_to_the_previous_one_with_double_checkpoint(tmp_path):
    backup = fc.callbacks.BackupAndRestore(tmp_path / "b", double_checkpoint=True)
    m = model()
    with pytest.raises(RuntimeError):
        m.fit(X, Y, batch_size=16, epochs=5, verbose=0, callbacks=[backup, Interrupt(3)])
    assert (tmp_path / "b" / "latest.fcgpu-backup.bkp").exists()
    (tmp_path / "b" / "latest.fcgpu-backup").write_bytes(b"not an archive")
    h = model().fit(X, Y, batch_size=16, epochs=5, verbose=0, callbacks=[backup])
    assert h.epoch == [2, 3, 4]  # the previous backup: the end of epoch 2 (index 1)


def test_a_backup_of_another_model_is_refused(tmp_path):
    backup = fc.callbacks.BackupAndRestore(tmp_path / "b")
    with pytest.raises(RuntimeError):
        model().fit(X, Y, epochs=3, verbose=0, callbacks=[backup, Interrupt(2)])
    other = fc.Sequential([fc.Dense(3, activation="relu"), fc.Dense(2)])
    other.compile(loss="softmax_cross_entropy", optimizer="adam")
    with pytest.raises(ValueError, match="BackupAndRestore: the backup in .* does not fit this model"):
        other.fit(X, Y, epochs=3, verbose=0, callbacks=[backup])
    for bad in ("", None):
        with pytest.raises(ValueError, match="backup_dir"):
            fc.callbacks.BackupAndRestore(bad)
    with pytest.raises(ValueError, match="save_freq"):
        fc.callbacks.BackupAndRestore(tmp_path, save_freq="batch")


# -- TensorBoard ------------------------------------------------------------------------------------
def events(folder):
    files = sorted(os.listdir(folder))
    assert len(files) == 1 and ".tfevents." in files[0]
    return os.path.join(folder, files[0])


def scalars(path):
    out = {}
    for event in read_events(path):
        for tag, value in event["scalars"].items():
            out.setdefault(tag, []).append((event["step"], value))
    return out


def test_crc32c_and_records():
    assert crc32c(b"123456789") == 0xE3069283 and crc32c(b"") == 0


def test_tensorboard_writes_keras_tags_per_epoch(backend, tmp_path):
    m = model()
    board = fc.callbacks.TensorBoard(log_dir=tmp_path / "logs")
    assert not fc.callbacks.CallbackList([board], m, {}).wants_batches  # epoch figures: no read per batch
    h = m.fit(X, Y, batch_size=16, epochs=3, validation_data=(VX, VY), verbose=0, callbacks=[board])
    train, val = scalars(events(tmp_path / "logs" / "train")), scalars(events(tmp_path / "logs" / "validation"))
    assert sorted(train) == ["epoch_accuracy", "epoch_learning_rate", "epoch_loss"]
    assert sorted(val) == ["epoch_accuracy", "epoch_loss", "evaluation_accuracy_vs_iterations",
                           "evaluation_loss_vs_iterations"]
    assert [s for s, _ in train["epoch_loss"]] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in train["epoch_loss"]], h.history["loss"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in val["epoch_loss"]], h.history["val_loss"], rtol=1e-6)
    assert [s for s, _ in val["evaluation_loss_vs_iterations"]] == [5, 10, 15]
    assert train["epoch_learning_rate"][-1][1] == pytest.approx(m.optimizer.learning_rate, rel=1e-6)
    first = read_events(events(tmp_path / "logs" / "train"))[0]
    assert first["file_version"] == "brain.Event:2"


def test_tensorboard_batch_figures_every_n_batches(tmp_path):
    board = fc.callbacks.TensorBoard(log_dir=tmp_path, update_freq=2, write_steps_per_second=True)
    logged = []
    m = model()
    m.fit(X, Y, batch_size=16, epochs=2, verbose=0,
          callbacks=[board, fc.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: logged.append(logs["loss"]))])
    train = scalars(events(tmp_path / "train"))
    assert [s for s, _ in train["batch_loss"]] == [2, 4, 6, 8, 10]  # counted over the fit, from 1
    np.testing.assert_allclose([v for _, v in train["batch_loss"]], logged[1::2], rtol=1e-6)
    assert [s for s, _ in train["batch_steps_per_second"]] == list(range(1, 11))
    assert len(train["epoch_steps_per_second"]) == 2 and all(v > 0 for _, v in train["epoch_steps_per_second"])
    assert not (tmp_path / "validation").exists()
    fc.callbacks.TensorBoard(log_dir=tmp_path, update_freq="batch")


def test_tensorboards_own_reader_parses_the_files(tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    h = model().fit(X, Y, batch_size=16, epochs=3, validation_data=(VX, VY), verbose=0,
                    callbacks=[fc.callbacks.TensorBoard(tmp_path, update_freq="batch")])
    for folder, key in (("train", "loss"), ("validation", "val_loss")):
        acc = accumulator.EventAccumulator(str(tmp_path / folder))
        acc.Reload()
        got = acc.Scalars("epoch_loss")
        assert [e.step for e in got] == [0, 1, 2]
        np.testing.assert_allclose([e.value for e in got], h.history[key], rtol=1e-6)
    acc = accumulator.EventAccumulator(str(tmp_path / "train"))
    acc.Reload()
    assert len(acc.Scalars("batch_loss")) == 15 and "epoch_learning_rate" in acc.Tags()["scalars"]


def test_a_damaged_event_file_is_detected(tmp_path):
    fc.Sequential  # noqa: B018
    m = model()
    m.fit(X, Y, epochs=1, verbose=0, callbacks=[fc.callbacks.TensorBoard(tmp_path)])
    path = events(tmp_path / "train")
    data = bytearray(open(path, "rb").read())
    assert len(list(read_records(path))) == 2
    data[-6] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="CRC-32C"):
        list(read_records(path))


@pytest.mark.parametrize("kwargs, words", [
    (dict(histogram_freq=1), "histogram_freq"), (dict(embeddings_freq=2), "embeddings_freq"),
    (dict(profile_batch=3), "profile_batch"), (dict(update_freq=0), "update_freq"), (dict(update_freq="step"), "update_freq"),
])  # fmt: skip
def test_tensorboard_refuses_what_it_does_not_write(kwargs, words, tmp_path):
    with pytest.raises(ValueError, match=words):
        fc.callbacks.TensorBoard(tmp_path, **kwargs)


# -- ProgbarLogger, History ---------------------------------------------------------------------------
def test_a_given_progbar_logger_draws_instead_of_fit(capsys):
    model().fit(X, Y, epochs=2, verbose=2, callbacks=[fc.callbacks.ProgbarLogger()])
    out = capsys.readouterr().out
    assert out.count("Epoch 1/2") == 1 and out.count("Epoch 2/2") == 1 and out.count("loss: ") == 2
    model().fit(X, Y, epochs=2, verbose=0, callbacks=[fc.callbacks.ProgbarLogger()])
    assert capsys.readouterr().out == ""
    model().fit(X, Y, epochs=1, verbose=1, callbacks=[fc.callbacks.ProgbarLogger()])
    assert "Epoch 1/1" in capsys.readouterr().out


def test_a_history_passed_in_is_what_fit_returns():
    history = fc.callbacks.History()
    got = model().fit(X, Y, epochs=2, verbose=0, callbacks=[history])
    assert got is history and history.epoch == [0, 1] and len(history.history["loss"]) == 2
    assert fc.History is fc.callbacks.History
