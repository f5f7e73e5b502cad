"""An MLP with BatchNormalization between Dense and ReLU (the pattern of the Keras examples), LayerNormalization
and Dropout; fit with validation data, evaluate, and the moving statistics as non-trainable weights."""
# imports
import keras
from keras import layers
# end imports
from _data import classes

(x_train, y_train), (x_test, y_test) = classes(800, features=20, k=4), classes(200, features=20, k=4, seed=1)
x_train, x_test = 3.0 * x_train + 1.0, 3.0 * x_test + 1.0

keras.utils.set_random_seed(6)
model = keras.Sequential([
    keras.Input(shape=(20,)),
    layers.Dense(64, use_bias=False),
    layers.BatchNormalization(),
    layers.ReLU(),
    layers.Dropout(0.2),
    layers.Dense(32),
    layers.LayerNormalization(),
    layers.LeakyReLU(negative_slope=0.1),
    layers.Dense(4, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=32, epochs=10, validation_data=(x_test, y_test), verbose=0)
loss, acc = model.evaluate(x_test, y_test, verbose=0)
bn = model.layers[1]

RESULT = {
    "params": model.count_params(),
    "trainable": len(model.trainable_weights),
    "non_trainable": len(model.non_trainable_weights),
    "weight_shapes": [list(w.shape) for w in model.get_weights()],
    "layer_names": [layer.name for layer in model.layers],
    "history_keys": sorted(history.history),
    "approx_accuracy": acc,
    "moving_mean_moved": bool(abs(bn.get_weights()[2]).max() > 0.01),
}
