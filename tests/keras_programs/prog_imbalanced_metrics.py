"""Imbalanced binary classification as keras-io's fraud example and TensorFlow's imbalanced-data
tutorial write it: confusion counts, precision, recall, ROC and PR AUC, early stopping on 'val_prc'."""
# imports
import keras
from keras import layers
# end imports
import numpy as np

rng = np.random.default_rng(5)
x = rng.normal(size=(600, 10))
y = ((x[:, 0] + 0.5 * x[:, 1] + 0.8 * rng.normal(size=600)) > 1.6).astype("float64")[:, None]  # about 8% positive
x_train, y_train, x_val, y_val = x[:450], y[:450], x[450:], y[450:]

model = keras.Sequential([
    keras.Input(shape=(10,), dtype="float64"),
    layers.Dense(16, activation="relu", dtype="float64"),
    layers.Dense(1, activation="sigmoid", dtype="float64"),
])
model.set_weights([np.random.default_rng(3).normal(scale=0.4, size=w.shape) for w in model.get_weights()])
metrics = [
    keras.metrics.FalseNegatives(name="fn"),
    keras.metrics.FalsePositives(name="fp"),
    keras.metrics.TrueNegatives(name="tn"),
    keras.metrics.TruePositives(name="tp"),
    keras.metrics.Precision(name="precision"),
    keras.metrics.Recall(name="recall"),
    keras.metrics.AUC(name="auc"),
    keras.metrics.AUC(name="prc", curve="PR"),
]
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss=keras.losses.BinaryCrossentropy(), metrics=metrics)
early_stopping = keras.callbacks.EarlyStopping(monitor="val_prc", verbose=0, patience=3, mode="max",
                                               restore_best_weights=True)
history = model.fit(x_train, y_train, batch_size=64, epochs=6, callbacks=[early_stopping],
                    validation_data=(x_val, y_val), shuffle=False, verbose=0)
results = model.evaluate(x_val, y_val, batch_size=64, verbose=0, return_dict=True)
RESULT = {
    "history_keys": sorted(history.history),
    "evaluate_keys": sorted(results),
    "approx_loss": history.history["loss"],  # a saturated sigmoid: Keras clips the probability, fcgpu uses the logit
    # (the training epoch's counts are left out: Keras 3 on torch logs the validation counts under them,
    # as a count's result is its variable, which validation resets and refills)
    "close_counts": [history.history[k] for k in ("val_fn", "val_fp", "val_tn", "val_tp")],
    "close_precision_recall": [history.history[k] for k in ("precision", "recall", "val_precision", "val_recall")],
    "approx_auc": history.history["val_auc"],
    "approx_prc": history.history["val_prc"],
    "close_evaluate": [float(results[k]) for k in ("fn", "fp", "tn", "tp", "precision", "recall")],
    "approx_evaluate_loss": results["loss"],
}
