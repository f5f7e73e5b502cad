"""Regression with the metrics the "Overfit and underfit" and regression tutorials print, and
early stopping on a metric's validation figure."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import regression

x, y = regression(300, features=6)
x, y = x.astype("float64"), y.astype("float64")
model = keras.Sequential([
    keras.Input(shape=(6,), dtype="float64"),
    layers.Dense(10, activation="tanh", dtype="float64"),
    layers.Dense(1, dtype="float64"),
])
model.set_weights([np.random.default_rng(4).normal(scale=0.3, size=w.shape) for w in model.get_weights()])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.02), loss="mse",
              metrics=["mae", keras.metrics.RootMeanSquaredError(), keras.metrics.R2Score(), "msle",
                       keras.metrics.MeanAbsolutePercentageError(name="mape")])
stop = keras.callbacks.EarlyStopping(monitor="val_root_mean_squared_error", patience=1, min_delta=0.5)
history = model.fit(x, y, batch_size=30, epochs=30, validation_split=0.2, callbacks=[stop], shuffle=False, verbose=0)
RESULT = {
    "history_keys": sorted(history.history),
    "epochs_run": len(history.history["loss"]),
    "close_rmse": history.history["root_mean_squared_error"] + history.history["val_root_mean_squared_error"],
    "close_mae": history.history["mae"],
    "approx_r2": history.history["r2_score"] + history.history["val_r2_score"],
    "close_msle": history.history["msle"],
    "approx_mape": history.history["val_mape"],
    "close_evaluate": [model.evaluate(x, y, verbose=0, return_dict=True)["root_mean_squared_error"]],
}
