"""A Metric subclass as the Keras guide "Training & evaluation with the built-in methods" writes it,
a metric function with keras.ops, and built-in metric objects beside them."""
# imports
import keras
from keras import layers
from keras import ops
# end imports
import numpy as np
from _data import classes


class CategoricalTruePositives(keras.metrics.Metric):
    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.reshape(ops.argmax(y_pred, axis=1), (-1, 1))
        values = ops.cast(ops.reshape(y_true, (-1, 1)), "int32") == ops.cast(y_pred, "int32")
        values = ops.cast(values, "float32")
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            values = ops.multiply(values, sample_weight)
        self.true_positives.assign_add(ops.sum(values))

    def result(self):
        return self.true_positives

    def reset_state(self):
        self.true_positives.assign(0.0)


def mean_max_probability(y_true, y_pred):
    return ops.max(y_pred, axis=-1)


x, y = classes(160, features=8, k=3)
x = x.astype("float64")
model = keras.Sequential([
    keras.Input(shape=(8,), dtype="float64"),
    layers.Dense(12, activation="relu", dtype="float64"),
    layers.Dense(3, activation="softmax", dtype="float64"),
])
model.set_weights([np.random.default_rng(11).normal(scale=0.5, size=w.shape) for w in model.get_weights()])
model.compile(
    optimizer=keras.optimizers.SGD(learning_rate=0.1),
    loss=keras.losses.SparseCategoricalCrossentropy(),
    metrics=[CategoricalTruePositives(), mean_max_probability, keras.metrics.SparseCategoricalAccuracy(name="acc"),
             keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")],
)
history = model.fit(x[:128], y[:128], batch_size=32, epochs=3, validation_data=(x[128:], y[128:]), shuffle=False,
                    verbose=0)
standalone = CategoricalTruePositives(name="standalone")
standalone.update_state(y[:10], model.predict(x[:10], verbose=0))
RESULT = {
    "history_keys": sorted(history.history),
    # the validation figure only: Keras 3 on torch logs it for training too (result() is the variable)
    "close_true_positives": history.history["val_categorical_true_positives"],
    "close_mean_max": history.history["mean_max_probability"] + history.history["val_mean_max_probability"],
    "close_accuracy": history.history["acc"] + history.history["top2"],
    "close_evaluate": model.evaluate(x, y, batch_size=50, verbose=0),
    "close_standalone": [float(standalone.result())],
}
