"""The functional API guide's first model: keras.Input, Dense layers called on tensors, keras.Model,
then compile/fit/evaluate as the guide does (the guide's MNIST replaced by a small fixed data set)."""
# imports
import keras
from keras import layers
# end imports
from _data import classes

(x_train, y_train), (x_test, y_test) = classes(800, features=64, k=10), classes(200, features=64, k=10, seed=1)

keras.utils.set_random_seed(1)
inputs = keras.Input(shape=(64,), name="digits")
x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
x = layers.Dense(64, activation="relu", name="dense_2")(x)
outputs = layers.Dense(10, name="predictions")(x)
model = keras.Model(inputs=inputs, outputs=outputs, name="mnist_model")

model.compile(
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    optimizer=keras.optimizers.RMSprop(),
    metrics=["accuracy"],
)
history = model.fit(x_train, y_train, batch_size=64, epochs=10, validation_split=0.2, verbose=0)
test_scores = model.evaluate(x_test, y_test, verbose=2)
print("Test loss:", test_scores[0])
print("Test accuracy:", test_scores[1])

RESULT = {
    "name": model.name,
    "params": model.count_params(),
    "layer_names": [layer.name for layer in model.layers],
    "layer_classes": [type(layer).__name__ for layer in model.layers],
    "weights": len(model.weights),
    "input_shape": list(model.input_shape),
    "output_shape": list(model.output_shape),
    "history_keys": sorted(history.history),
    "score_len": len(test_scores),
    "approx_test_accuracy": test_scores[1],
    "predict_shape": list(model.predict(x_test[:7], verbose=0).shape),
}
