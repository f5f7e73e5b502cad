"""The *_on_batch methods from the same float64 start: what they return and the weights after."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import classes

x, y = classes(32, features=6, k=3)
x = x.astype("float64")
model = keras.Sequential([
    keras.Input(shape=(6,), dtype="float64"),
    layers.Dense(5, activation="relu", dtype="float64"),
    layers.Dense(3, activation="softmax", dtype="float64"),
])
rng = np.random.default_rng(3)
model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
first = model.train_on_batch(x, y)
second = model.train_on_batch(x, y, return_dict=True)
tested = model.test_on_batch(x, y)
RESULT = {
    "first_types": [type(v).__name__ for v in first],
    "second_keys": sorted(second),
    "close_first": [float(v) for v in first],
    "close_second": [float(second["loss"]), float(second["accuracy"])],
    "close_tested": [float(v) for v in tested],
    "close_weights": [w.ravel() for w in model.get_weights()],
    "close_predicted": model.predict_on_batch(x[:4]),
}
