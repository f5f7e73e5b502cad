"""Every merge layer in one graph (Subtract, Multiply, Average, Maximum, Minimum, Concatenate) from
fixed float64 weights: SGD gives the same weights and losses."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import classes

x, y = classes(90, features=5, k=3)
x = x.astype("float64")
f64 = {"dtype": "float64"}

inputs = keras.Input(shape=(5,), **f64)
a = layers.Dense(6, activation="tanh", **f64)(inputs)
b = layers.Dense(6, activation="sigmoid", **f64)(inputs)
c = layers.Dense(6, **f64)(inputs)
merged = layers.Concatenate(**f64)([
    layers.Subtract(**f64)([a, b]),
    layers.Multiply(**f64)([a, b, c]),
    layers.Average(**f64)([a, c]),
    layers.Maximum(**f64)([a, b, c]),
    layers.Minimum(**f64)([b, c]),
])
outputs = layers.Dense(3, activation="softmax", **f64)(merged)
model = keras.Model(inputs, outputs)

rng = np.random.default_rng(5)
model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="sparse_categorical_crossentropy")
history = model.fit(x, y, epochs=3, batch_size=15, shuffle=False, verbose=0)

RESULT = {
    "params": model.count_params(),
    "output_shapes": [list(layer.output.shape) for layer in model.layers[-7:-1]],
    "close_weights": [w.ravel() for w in model.get_weights()],
    "close_losses": history.history["loss"],
}
