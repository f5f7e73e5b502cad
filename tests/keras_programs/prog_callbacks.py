"""Writing your own callbacks (the Keras guide): which hooks run, in which order, with which logs."""
# imports
import keras
from keras import layers
# end imports
from _data import classes

x, y = classes(64, features=5, k=3)


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_batch_end(self, batch, logs=None):
        self.calls.append(f"batch_end {batch} {sorted(logs)}")

    def on_test_begin(self, logs=None):
        self.calls.append("test_begin")

    def on_test_end(self, logs=None):
        self.calls.append(f"test_end {sorted(logs)}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


seen = []
printer = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(round(logs["loss"], 3) > 0))
model = keras.Sequential([keras.Input(shape=(5,)), layers.Dense(8, activation="relu"), layers.Dense(3, activation="softmax")])
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["acc"])
recorder = Recorder()
model.fit(x, y, batch_size=32, epochs=2, validation_data=(x[:16], y[:16]), callbacks=[recorder, printer], verbose=0)
RESULT = {"calls": recorder.calls, "batch_losses_seen": seen}
