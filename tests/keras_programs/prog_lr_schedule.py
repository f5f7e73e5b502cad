"""Learning-rate control from callbacks: LearningRateScheduler (reaching 0) and ReduceLROnPlateau."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import regression

x, y = regression(128)


def schedule(epoch, lr):
    return lr * 0.5 if epoch < 3 else 0.0


rates = []
record = keras.callbacks.LambdaCallback(
    on_epoch_end=lambda epoch, logs: rates.append(float(np.array(model.optimizer.learning_rate))))
model = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(4, activation="relu"), layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.08), loss="mse")
history = model.fit(x, y, epochs=5, batch_size=32, callbacks=[keras.callbacks.LearningRateScheduler(schedule), record],
                    verbose=0)
before = [w.copy() for w in model.get_weights()]
model.fit(x, y, epochs=1, batch_size=32, callbacks=[keras.callbacks.LearningRateScheduler(lambda e: 0.0)], verbose=0)
RESULT = {
    "history_keys": sorted(history.history),
    "close_logged_rates": history.history["learning_rate"],
    "close_rates": rates,
    "unchanged_at_zero": all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())),
}
