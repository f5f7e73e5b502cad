"""The classic Sequential image MLP: Flatten(input_shape=(8, 8)) on (N, 8, 8) images, Dense layers,
Dropout; fit with validation_data, evaluate, predict."""
# imports
import keras
from keras import layers
# end imports
from _data import classes

(x_train, y_train), (x_test, y_test) = classes(700, features=64, k=10), classes(200, features=64, k=10, seed=1)
x_train, x_test = x_train.reshape(-1, 8, 8), x_test.reshape(-1, 8, 8)

keras.utils.set_random_seed(3)
model = keras.Sequential([
    layers.Flatten(input_shape=(8, 8)),
    layers.Dense(128, activation="relu"),
    layers.Dropout(0.2),
    layers.Dense(10),
])
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=8, validation_data=(x_test, y_test), verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=2)
probability_model = keras.Sequential([model, layers.Softmax()]) if hasattr(layers, "Softmax") else model
predictions = probability_model.predict(x_test[:4], verbose=0)

RESULT = {
    "params": model.count_params(),
    "layer_classes": [type(layer).__name__ for layer in model.layers],
    "output_shape": list(model.output_shape),
    "history_keys": sorted(history.history),
    "approx_test_accuracy": test_acc,
    "predictions_shape": list(predictions.shape),
}
