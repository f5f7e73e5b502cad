"""A residual MLP (Dense blocks with Add skip connections, a fan-out) from fixed float64 initial
weights: SGD gives the same weights, losses and predictions."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import regression

x, y = regression(120, features=6)
x, y = x.astype("float64"), y.astype("float64")

inputs = keras.Input(shape=(6,), dtype="float64")
h = layers.Dense(8, activation="relu", dtype="float64")(inputs)
for _ in range(2):
    branch = layers.Dense(8, activation="tanh", dtype="float64")(h)
    branch = layers.Dense(8, dtype="float64")(branch)
    h = layers.Add(dtype="float64")([h, branch])
    h = layers.Activation("relu", dtype="float64")(h)
outputs = layers.Dense(1, dtype="float64")(h)
model = keras.Model(inputs, outputs)

rng = np.random.default_rng(11)
model.set_weights([rng.normal(scale=0.4, size=w.shape) for w in model.get_weights()])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse", metrics=["mae"])
history = model.fit(x, y, epochs=4, batch_size=20, shuffle=False, verbose=0)

RESULT = {
    "params": model.count_params(),
    "layer_classes": [type(layer).__name__ for layer in model.layers],
    "close_weights": [w.ravel() for w in model.get_weights()],
    "close_losses": history.history["loss"],
    "close_mae": history.history["mae"],
    "close_predict": model.predict(x[:6], verbose=0),
}
