"""A model of two outputs as the functional API guide trains one: a class head and a value head,
losses and loss weights by output name, metrics per output, labels as a dict."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import classes

x, label = classes(600, features=12, k=3)
value = (x[:, :3].sum(axis=1, keepdims=True) * 0.5).astype("float32")

keras.utils.set_random_seed(8)
inputs = keras.Input(shape=(12,), name="features")
h = layers.Dense(32, activation="relu")(inputs)
h = layers.Dense(16, activation="relu")(h)
label_out = layers.Dense(3, activation="softmax", name="label")(h)
value_out = layers.Dense(1, name="value")(h)
model = keras.Model(inputs=inputs, outputs=[label_out, value_out])

model.compile(
    optimizer=keras.optimizers.Adam(1e-2),
    loss={"label": "sparse_categorical_crossentropy", "value": "mse"},
    loss_weights={"label": 1.0, "value": 0.2},
    metrics={"label": ["accuracy"], "value": ["mae"]},
)
history = model.fit(x, {"label": label, "value": value}, epochs=15, batch_size=32, validation_split=0.2, verbose=0)
scores = model.evaluate(x, {"label": label, "value": value}, verbose=0, return_dict=True)
pred_label, pred_value = model.predict(x[:5], verbose=0)

RESULT = {
    "params": model.count_params(),
    "output_names": list(model.output_names),
    "history_keys": sorted(history.history),
    "score_keys": sorted(scores),
    "approx_label_accuracy": scores["label_accuracy"],
    "value_mae_small": bool(scores["value_mae"] < 0.3),
    "pred_shapes": [list(pred_label.shape), list(pred_value.shape)],
    "loss_is_weighted_sum": bool(np.isclose(scores["loss"], scores["label_loss"] + 0.2 * scores["value_loss"], rtol=1e-4)),
}
