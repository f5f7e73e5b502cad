"""``BackupAndRestore``: Keras 3's callback that lets an interrupted ``fit`` go on where it stopped.

At each epoch's end (or every ``save_freq`` batches) the training state goes to one file in
``backup_dir``, written atomically (a crash while writing leaves the previous backup): the
weights, the optimizer's state and iteration count (so a schedule goes on), the loss scale, the
seeded generator that shuffles (so later epochs draw the same orders), the dropout layers'
seeds and step counters, and the epoch to start from. When fit starts with the callback and a
backup exists, all of it is put back and training starts at that epoch: an interrupted run
resumed this way ends with the weights an uninterrupted run has (a backup taken mid-epoch,
``save_freq=N``, restarts that epoch from the mid-epoch weights, as Keras does). When fit ends
normally the folder is removed (``delete_checkpoint``). A generator's position is not saved.
Data parallel: rank 0 writes and removes; every rank reads (``backup_dir`` must be shared).
"""
from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np

from ..saving.archive import read_archive, write_archive
from ..initializers import get_rng
from .core import Callback

__all__ = ["BackupAndRestore"]

FILE = "latest.fcgpu-backup"
_RANDOMNESS = ("seed", "step")  # what keys a layer's in-step randomness (Dropout)


class BackupAndRestore(Callback):
    """Back up the training state each epoch (or every ``save_freq`` batches) and restore it at the
    next fit's start; Keras 3's arguments (``double_checkpoint`` keeps the previous file too)."""

    def __init__(self, backup_dir: str | os.PathLike, save_freq: Any = "epoch", double_checkpoint: bool = False,
                 delete_checkpoint: bool = True) -> None:
        super().__init__()
        if not backup_dir:
            raise ValueError("backup_dir: expected a folder name, got an empty one")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"save_freq: expected 'epoch' or a positive int, got {save_freq!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq, self.double_checkpoint, self.delete_checkpoint = save_freq, bool(double_checkpoint), bool(delete_checkpoint)
        self._path = os.path.join(self.backup_dir, FILE)
        self._current_epoch = 0
        self._batches_since_save = 0
        if save_freq != "epoch":  # batch hooks only where they save: otherwise fit need not read every batch
            self.on_train_batch_end = self._batch_end

    # -- saving ----------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        model = self.model
        arrays = {f"weight_{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
        config: dict[str, Any] = {"epoch": self._current_epoch, "rng": get_rng().bit_generator.state}
        config["layers"] = [{a: getattr(layer, a) for a in _RANDOMNESS if isinstance(getattr(layer, a, None), int)}
                            for layer in model.layers]
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            state = optimizer.state_dict()
            slots = []
            for name, values in state.pop("state", {}).items():
                for slot, value in values.items():
                    slots.append([name, slot, f"optimizer_{len(slots)}"])
                    arrays[slots[-1][2]] = np.asarray(value)
            state.pop("config", None)
            config["optimizer"], config["optimizer_slots"] = state, slots
        return config, arrays

    def _save(self) -> None:
        from ..distributed.communicator import world

        def write() -> None:
            os.makedirs(self.backup_dir, exist_ok=True)
            if self.double_checkpoint and os.path.exists(self._path):
                shutil.copyfile(self._path, self._path + ".bkp")
            write_archive(self._path, *self._state())

        world().run_on_root(write, "BackupAndRestore")

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1  # batches keep counting across epochs, as Keras's
        if self.save_freq == "epoch":
            self._save()

    def _batch_end(self, batch, logs=None):
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save()

    # -- restoring ---------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._current_epoch, self._batches_since_save = 0, 0
        if not os.path.exists(self._path):
            return
        try:
            config, arrays = read_archive(self._path)
        except Exception:
            previous = self._path + ".bkp"
            if not os.path.exists(previous):
                raise
            config, arrays = read_archive(previous)
        self._restore(config, arrays)

    def _restore(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        model = self.model
        count = sum(1 for key in arrays if key.startswith("weight_"))
        try:
            model.set_weights([arrays[f"weight_{i}"] for i in range(count)])
        except (ValueError, TypeError) as e:
            raise ValueError(f"BackupAndRestore: the backup in {self.backup_dir!r} does not fit this model ({e})") from None
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and "optimizer" in config:
            state = dict(config["optimizer"])
            state["state"] = {}
            for name, slot, key in config.get("optimizer_slots", []):
                state["state"].setdefault(name, {})[slot] = arrays[key]
            optimizer.load_state_dict(state, model.backend)
        get_rng().bit_generator.state = config["rng"]
        for layer, values in zip(model.layers, config.get("layers", [])):
            for attribute, value in values.items():
                setattr(layer, attribute, value)
        self._current_epoch = int(config["epoch"])
        model._initial_epoch = self._current_epoch  # fit starts there (Keras's attribute)

    def on_train_end(self, logs=None):
        from ..distributed.communicator import world

        if self.delete_checkpoint:
            world().run_on_root(lambda: shutil.rmtree(self.backup_dir, ignore_errors=True), "BackupAndRestore")
