"""``ProgbarLogger``: Keras 3's progress callback as a class a program can pass to ``fit``.

fit draws its progress itself (``verbose``); a ProgbarLogger among the callbacks draws it instead
(fit then draws none): verbose=1 a bar per epoch with the running figures, verbose=2 one line per
epoch, 0 nothing, from ``params['verbose']`` as Keras's does.
"""
from __future__ import annotations

import sys
import time

from .core import Callback

__all__ = ["ProgbarLogger"]


class ProgbarLogger(Callback):
    """Prints fit's progress to standard output (see the module)."""

    draws_progress = True

    def __init__(self) -> None:
        super().__init__()
        self._bar = None
        self._start = 0.0

    @property
    def verbose(self) -> int:
        return int(self.params.get("verbose", 1) or 0)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        epochs = self.params.get("epochs", 1)
        if self.verbose == 1:
            from tqdm import tqdm

            self._bar = tqdm(total=self.params.get("steps"), desc=f"Epoch {epoch + 1}/{epochs}", unit="batch",
                             leave=True, dynamic_ncols=True, file=sys.stdout)
        elif self.verbose == 2:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None:
            self._bar.update(1)
            if logs:
                self._bar.set_postfix(logs, refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        text = " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items() if isinstance(v, (int, float)))
        if self._bar is not None:
            self._bar.set_postfix(logs or {}, refresh=False)
            self._bar.close()
            self._bar = None
        elif self.verbose == 2:
            print(f"{time.perf_counter() - self._start:.2f}s - {text}", flush=True)

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
