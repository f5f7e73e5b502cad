"""Regression with a Normalization layer adapted to the training data (the TensorFlow regression tutorial's
pattern): adapt, then a small MLP trained with mean absolute error."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import regression

x, y = regression(500, features=8)
x = x * np.arange(1, 9, dtype="float32") + np.arange(8, dtype="float32")

normalizer = layers.Normalization(axis=-1)
normalizer.adapt(x)

keras.utils.set_random_seed(7)
model = keras.Sequential([
    keras.Input(shape=(8,)),
    normalizer,
    layers.Dense(32, activation="relu"),
    layers.Dense(32, activation="relu"),
    layers.Dense(1),
])
model.compile(loss="mean_absolute_error", optimizer=keras.optimizers.Adam(0.01))
history = model.fit(x, y, validation_split=0.2, epochs=20, verbose=0)
test_mae = model.evaluate(x[:100], y[:100], verbose=0)

RESULT = {
    "close_mean": np.asarray(normalizer.mean).ravel(),
    "close_variance": np.asarray(normalizer.variance).ravel(),
    "params": model.count_params(),
    "trainable": len(model.trainable_weights),
    "non_trainable": len(model.non_trainable_weights),
    "history_keys": sorted(history.history),
    "approx_mae_small": min(float(test_mae), 0.3),
    "normalized_mean_near_zero": bool(abs(np.asarray(normalizer(x)).mean()) < 1e-3),
}
