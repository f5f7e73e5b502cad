"""The TensorFlow "Basic regression" tutorial's single-input model: Normalization(input_shape=[1,],
axis=None) adapted to a 1-D feature, one Dense unit, mean absolute error."""
# imports
import keras
from keras import layers
# end imports
import numpy as np

rng = np.random.default_rng(0)
horsepower = rng.uniform(50, 200, size=300).astype("float32")
mpg = (50 - 0.15 * horsepower + rng.normal(0, 2, 300)).astype("float32")

horsepower_normalizer = layers.Normalization(input_shape=[1,], axis=None)
horsepower_normalizer.adapt(horsepower)
horsepower_model = keras.Sequential([horsepower_normalizer, layers.Dense(units=1)])
horsepower_model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.1), loss="mean_absolute_error")
history = horsepower_model.fit(horsepower, mpg, epochs=30, verbose=0, validation_split=0.2)
x = np.linspace(50, 200, 5)
y = horsepower_model.predict(x, verbose=0)

RESULT = {
    "params": horsepower_model.count_params(),
    "history_keys": sorted(history.history),
    "approx_val_mae_tenths": min(history.history["val_loss"][-1] / 10, 1.0),
    "close_mean": [float(np.asarray(horsepower_normalizer.mean).ravel()[0])],
    "predict_shape": list(y.shape),
}
