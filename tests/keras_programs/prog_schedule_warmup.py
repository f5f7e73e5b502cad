"""Learning-rate schedules as Keras programs use them: CosineDecay with a linear warmup,
PolynomialDecay with power and cycle, InverseTimeDecay and CosineDecayRestarts; the rate each
epoch starts with, and the losses of float64 training from the same initial weights."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import regression

x, y = regression(64)
x, y = x.astype("float64"), y.astype("float64")
schedules = {
    "cosine_warmup": keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=20, alpha=0.1, warmup_target=0.05, warmup_steps=6),
    "polynomial": keras.optimizers.schedules.PolynomialDecay(
        initial_learning_rate=0.05, decay_steps=7, end_learning_rate=0.005, power=2.0, cycle=True),
    "inverse_time": keras.optimizers.schedules.InverseTimeDecay(
        initial_learning_rate=0.05, decay_steps=4, decay_rate=0.5, staircase=True),
    "restarts": keras.optimizers.schedules.CosineDecayRestarts(
        initial_learning_rate=0.05, first_decay_steps=5, t_mul=1.5, m_mul=0.8, alpha=0.05),
}
RESULT = {}
for name, schedule in schedules.items():
    model = keras.Sequential([
        keras.Input(shape=(8,), dtype="float64"),
        layers.Dense(4, activation="relu", dtype="float64"),
        layers.Dense(1, dtype="float64"),
    ])
    rng = np.random.default_rng(2)
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    rates = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: rates.append(float(np.array(model.optimizer.learning_rate))))
    history = model.fit(x, y, epochs=6, batch_size=16, shuffle=False, callbacks=[record], verbose=0)
    RESULT[f"close_{name}_rates"] = rates
    RESULT[f"close_{name}_losses"] = history.history["loss"]
    RESULT[f"{name}_config_keys"] = sorted(schedule.get_config())
    RESULT[f"{name}_iterations"] = int(np.array(model.optimizer.iterations))
