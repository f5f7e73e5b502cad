"""Callbacks for ``fit``, with Keras 3's class names, hooks, arguments and behaviour.

``core`` holds the base class, the list fit calls and the everyday callbacks (History,
EarlyStopping, ModelCheckpoint, ...); ``backup`` BackupAndRestore, ``tensorboard`` TensorBoard
(with ``event_file``, its event-file writer and reader), ``progbar`` ProgbarLogger.
"""
from __future__ import annotations

from .backup import BackupAndRestore
from .core import (
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from .progbar import ProgbarLogger
from .tensorboard import TensorBoard

__all__ = [
    "Callback",
    "CallbackList",
    "History",
    "EarlyStopping",
    "ModelCheckpoint",
    "TerminateOnNaN",
    "LearningRateScheduler",
    "ReduceLROnPlateau",
    "CSVLogger",
    "LambdaCallback",
    "BackupAndRestore",
    "TensorBoard",
    "ProgbarLogger",
]
