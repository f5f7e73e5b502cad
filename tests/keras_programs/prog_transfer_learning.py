"""Transfer learning as the Keras guide does it: a base model trained, frozen (base.trainable = False)
inside a new model with a new head, trained, then unfrozen and fine-tuned after a recompile."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import classes

x_a, y_a = classes(600, features=16, k=4)
x_b, y_b = x_a[:400], (y_a[:400] >= 2).astype("int64")  # a new task on the same kind of data

keras.utils.set_random_seed(5)
base_model = keras.Sequential([
    keras.Input(shape=(16,)),
    layers.Dense(32, activation="relu"),
    layers.Dense(16, activation="relu"),
], name="base")
pretrain = keras.Sequential([base_model, layers.Dense(4, activation="softmax")])
pretrain.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
pretrain.fit(x_a, y_a, epochs=20, verbose=0)

base_model.trainable = False
frozen_weights = [w.copy() for w in base_model.get_weights()]
inputs = keras.Input(shape=(16,))
x = base_model(inputs, training=False)
x = layers.Dropout(0.2)(x)
outputs = layers.Dense(1, activation="sigmoid")(x)
model = keras.Model(inputs, outputs)
counts_frozen = [len(model.trainable_weights), len(model.non_trainable_weights)]
model.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.BinaryCrossentropy(),
              metrics=[keras.metrics.BinaryAccuracy()])
history = model.fit(x_b, y_b, epochs=20, validation_split=0.25, verbose=0)
unchanged = all(np.array_equal(a, b) for a, b in zip(base_model.get_weights(), frozen_weights))

base_model.trainable = True
counts_unfrozen = [len(model.trainable_weights), len(model.non_trainable_weights)]
model.compile(optimizer=keras.optimizers.Adam(1e-5), loss=keras.losses.BinaryCrossentropy(),
              metrics=[keras.metrics.BinaryAccuracy()])
fine = model.fit(x_b, y_b, epochs=3, validation_split=0.25, verbose=0)
changed = not all(np.array_equal(a, b) for a, b in zip(base_model.get_weights(), frozen_weights))

RESULT = {
    "params": model.count_params(),
    "counts_frozen": counts_frozen,
    "counts_unfrozen": counts_unfrozen,
    "frozen_unchanged": unchanged,
    "fine_tuned_changed": changed,
    "history_keys": sorted(history.history),
    "fine_keys": sorted(fine.history),
    "approx_head_accuracy": history.history["binary_accuracy"][-1],
    "approx_fine_accuracy": fine.history["binary_accuracy"][-1],
}
