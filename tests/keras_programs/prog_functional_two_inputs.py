"""A model with two inputs (a dict by input name in fit, a list in predict) joined by Concatenate,
as the functional API guide's multi-input example, on flat features."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import classes

x, y = classes(600, features=12, k=3)
numeric, flags = x[:, :8], (x[:, 8:] > 0).astype("float32")

keras.utils.set_random_seed(2)
numeric_input = keras.Input(shape=(8,), name="numeric")
flags_input = keras.Input(shape=(4,), name="flags")
a = layers.Dense(16, activation="relu")(numeric_input)
b = layers.Dense(4, activation="relu")(flags_input)
merged = layers.concatenate([a, b])
hidden = layers.Dense(16, activation="relu")(merged)
output = layers.Dense(3, activation="softmax", name="label")(hidden)
model = keras.Model(inputs=[numeric_input, flags_input], outputs=output)

model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit({"numeric": numeric, "flags": flags}, y, epochs=40, batch_size=32, verbose=0)
scores = model.evaluate([numeric, flags], y, verbose=0)
pred = model.predict([numeric[:5], flags[:5]], verbose=0)

RESULT = {
    "params": model.count_params(),
    "layer_classes": [type(layer).__name__ for layer in model.layers],
    "inputs": [t.name for t in model.inputs] if hasattr(model.inputs[0], "name") else None,
    "history_keys": sorted(history.history),
    "approx_accuracy": scores[1],
    "predict_shape": list(pred.shape),
    "rows_sum_to_one": bool(np.allclose(pred.sum(axis=1), 1.0, atol=1e-5)),
}
