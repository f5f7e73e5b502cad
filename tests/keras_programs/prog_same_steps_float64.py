"""From the same initial weights, SGD with momentum in float64 gives the same weights and losses."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import classes

x, y = classes(96, features=8, k=3)
x = x.astype("float64")
model = keras.Sequential([
    keras.Input(shape=(8,), dtype="float64"),
    layers.Dense(6, activation="tanh", dtype="float64"),
    layers.Dense(3, activation="softmax", dtype="float64"),
])
rng = np.random.default_rng(7)
model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(x, y, epochs=5, batch_size=16, shuffle=False, verbose=0)
RESULT = {
    "close_weights": [w.ravel() for w in model.get_weights()],
    "close_losses": history.history["loss"],
    "close_accuracy": history.history["accuracy"],
    "close_predict": model.predict(x[:5], verbose=0),
}
