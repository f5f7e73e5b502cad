"""The Sequential guide's MLP: Input, Dense, Dropout, softmax; RMSprop, validation_split, evaluate."""
# imports
import keras
from keras import layers
# end imports
from _data import classes

(x_train, y_train), (x_test, y_test) = classes(600), classes(200, seed=1)
y_train = keras.utils.to_categorical(y_train, 4)
y_test = keras.utils.to_categorical(y_test, 4)

keras.utils.set_random_seed(1)
model = keras.Sequential(
    [
        keras.Input(shape=(20,)),
        layers.Dense(64, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(4, activation="softmax"),
    ]
)
model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.RMSprop(learning_rate=1e-3), metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=32, epochs=15, validation_split=0.1, verbose=0)
score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
RESULT = {
    "params": model.count_params(),
    "history_keys": sorted(history.history),
    "epochs": len(history.history["loss"]),
    "score_len": len(score),
    "approx_test_accuracy": score[1],
    "predict_shape": list(model.predict(x_test, verbose=0).shape),
}
