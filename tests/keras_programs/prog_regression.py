"""Regression: mse with an mae metric (the TensorFlow regression tutorial's shape of program)."""
# imports
import keras
from keras import layers
# end imports
from _data import regression

x, y = regression(500)
keras.utils.set_random_seed(3)
model = keras.Sequential([layers.Dense(32, activation="relu", input_shape=(8,)), layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
history = model.fit(x, y, epochs=40, batch_size=32, validation_split=0.2, verbose=0)
test = model.evaluate(x, y, verbose=0, return_dict=True)
RESULT = {
    "history_keys": sorted(history.history),
    "evaluate_keys": sorted(test),
    "learned": test["mae"] < 0.3,
    "params": model.count_params(),
}
