"""Binary classification with a sigmoid output, Adam and EarlyStopping on validation data."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import classes

x, y = classes(800, k=2)
x_val, y_val = classes(200, k=2, seed=1)
keras.utils.set_random_seed(2)
model = keras.Sequential([keras.Input(shape=(20,)), layers.Dense(16, activation="relu"), layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
history = model.fit(x, y.astype("float32"), epochs=200, batch_size=64, validation_data=(x_val, y_val.astype("float32")),
                    callbacks=[stop], verbose=0)
loss, acc = model.evaluate(x_val, y_val.astype("float32"), verbose=0)
RESULT = {
    "history_keys": sorted(history.history),
    "stopped_early": len(history.history["loss"]) < 200,
    "approx_val_accuracy": acc,
    "loss_is_float": isinstance(loss, float),
    "probabilities": bool(np.all((model.predict(x_val, verbose=0) >= 0) & (model.predict(x_val, verbose=0) <= 1))),
}
