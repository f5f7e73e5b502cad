"""Model methods a program reaches for: get_layer, regularizers.l2, to_json/model_from_json, pop."""
# imports
import keras
from keras import layers
# end imports

model = keras.Sequential(name="mlp")
model.add(keras.Input(shape=(10,)))
model.add(layers.Dense(32, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-3), name="hidden"))
model.add(layers.Dense(8, activation="relu", name="extra"))
model.add(layers.Dense(2, activation="softmax", name="out"))
params = model.count_params()
hidden = model.get_layer("hidden")
clone = keras.models.model_from_json(model.to_json())
popped = model.pop()
model.add(layers.Dense(3, activation="softmax", name="out3"))
RESULT = {
    "params": params,
    "hidden_params": hidden.count_params(),
    "clone_params": clone.count_params(),
    "clone_names": [layer.name for layer in clone.layers],
    "popped": popped.name,
    "names_after": [layer.name for layer in model.layers],
    "params_after": model.count_params(),
}
