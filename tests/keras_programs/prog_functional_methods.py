"""What programs do with a functional model besides fit: get_layer, a feature extractor from a
layer's output, to_json/model_from_json, clone_model, save_weights/load_weights."""
# imports
import keras
from keras import layers
# end imports
import os
import tempfile

import numpy as np
from _data import classes

x, y = classes(200, features=10, k=3)

keras.utils.set_random_seed(9)
inputs = keras.Input(shape=(10,))
h = layers.Dense(16, activation="relu", name="hidden")(inputs)
h = layers.Dropout(0.1)(h)
outputs = layers.Dense(3, activation="softmax", name="out")(h)
model = keras.Model(inputs, outputs, name="classifier")
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=3, verbose=0)

extractor = keras.Model(inputs=model.inputs, outputs=model.get_layer("hidden").output)
features = extractor.predict(x[:4], verbose=0)
clone = keras.models.clone_model(model)
again = keras.models.model_from_json(model.to_json())
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "classifier.weights.h5")
    model.save_weights(path)
    again.load_weights(path)
same = bool(np.allclose(again.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), atol=1e-6))

RESULT = {
    "hidden_units": model.get_layer("hidden").units,
    "hidden_output_shape": list(model.get_layer("hidden").output.shape),
    "features_shape": list(features.shape),
    "features_nonnegative": bool((features >= 0).all()),
    "extractor_params": extractor.count_params(),
    "clone_params": clone.count_params(),
    "clone_layers": [type(layer).__name__ for layer in clone.layers],
    "json_names": [layer.name for layer in again.layers],
    "loaded_weights_same_predictions": same,
    "trainable": len(model.trainable_weights),
}
