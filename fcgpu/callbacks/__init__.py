"""Callbacks for ``fit``, with Keras 3's class names, hooks, arguments and behaviour.

``core`` holds the base class, the list fit calls and the everyday callbacks (History,
EarlyStopping, ModelCheckpoint, ...); ``backup`` BackupAndRestore, ``tensorboard`` TensorBoard
(with ``event_file``, its event-file writer and reader), ``progbar`` ProgbarLogger.
"""
from __future__ import annotations

from . import core
from .backup import BackupAndRestore
from .core import *  # noqa: F403 - the everyday callbacks, as core's __all__ lists them
from .progbar import ProgbarLogger
from .tensorboard import TensorBoard

__all__ = [*core.__all__, "BackupAndRestore", "TensorBoard", "ProgbarLogger"]
