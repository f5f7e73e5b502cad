"""BackupAndRestore as its docstring shows it: a fit interrupted by a callback's error goes on at
the epoch it stopped when fit is called again with the callback, and ends where an uninterrupted
fit ends (float64, same initial weights, no shuffling)."""
# imports
import keras
from keras import layers
# end imports
import os
import tempfile

import numpy as np
from _data import regression

x, y = regression(96)
x, y = x.astype("float64"), y.astype("float64")


def build():
    model = keras.Sequential([
        keras.Input(shape=(8,), dtype="float64"),
        layers.Dense(5, activation="tanh", dtype="float64"),
        layers.Dense(1, dtype="float64"),
    ])
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(scale=0.4, size=w.shape) for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.02), loss="mse", metrics=["mae"])
    return model


class InterruptingCallback(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 4:
            raise RuntimeError("Interrupting!")


backup_dir = os.path.join(tempfile.mkdtemp(), "backup")
callback = keras.callbacks.BackupAndRestore(backup_dir=backup_dir)
model = build()
try:
    model.fit(x, y, epochs=7, batch_size=16, shuffle=False, callbacks=[callback, InterruptingCallback()], verbose=0)
except RuntimeError:
    pass
left_after_interruption = os.path.isdir(backup_dir) and len(os.listdir(backup_dir)) > 0
model = build()
history = model.fit(x, y, epochs=7, batch_size=16, shuffle=False, callbacks=[callback], verbose=0)
whole = build()
whole_history = whole.fit(x, y, epochs=7, batch_size=16, shuffle=False, verbose=0)
RESULT = {
    "resumed_epochs": history.epoch,
    "len_history": len(history.history["loss"]),
    "backup_left_after_interruption": left_after_interruption,
    "backup_removed_at_the_end": not os.path.exists(backup_dir),
    "close_resumed_losses": history.history["loss"],
    "close_same_as_whole": [float(np.max(np.abs(a - b))) + 1.0 for a, b in zip(model.get_weights(), whole.get_weights())],
    "close_weights": [w.ravel() for w in model.get_weights()],
    "close_whole_tail": whole_history.history["loss"][4:],
}
