"""Training from a keras.utils.PyDataset and an endless generator (steps_per_epoch), validating on a
PyDataset; evaluate and predict on a PyDataset. Same initial weights in float64: the same numbers."""
# imports
import keras
from keras import layers
# end imports
import math

import numpy as np
from _data import classes

x, y = classes(120, features=8, k=3)
x = x.astype("float64")
x_val, y_val = classes(40, features=8, k=3, seed=1)
x_val = x_val.astype("float64")


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, idx):
        low = idx * self.batch_size
        high = min(low + self.batch_size, len(self.x))
        return self.x[low:high], self.y[low:high]


def endless(batch_size):
    while True:
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]


def build():
    model = keras.Sequential([
        keras.Input(shape=(8,), dtype="float64"),
        layers.Dense(6, activation="relu", dtype="float64"),
        layers.Dense(3, activation="softmax", dtype="float64"),
    ])
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


model = build()
history = model.fit(Batches(x, y, 16, workers=1, use_multiprocessing=False), validation_data=Batches(x_val, y_val, 10), epochs=4,
                    shuffle=False, verbose=0)
streamed = build()
streamed_history = streamed.fit(endless(24), steps_per_epoch=5, epochs=3, verbose=0)
RESULT = {
    "history_keys": sorted(history.history),
    "epochs": history.epoch,
    "close_losses": history.history["loss"],
    "close_val_losses": history.history["val_loss"],
    "close_val_accuracy": history.history["val_accuracy"],
    "close_weights": [w.ravel() for w in model.get_weights()],
    "close_evaluate": model.evaluate(Batches(x_val, y_val, 10), verbose=0),
    "close_predict": model.predict(Batches(x_val[:7], y_val[:7], 3), verbose=0),
    "close_streamed_losses": streamed_history.history["loss"],
    "close_streamed_weights": [w.ravel() for w in streamed.get_weights()],
}
