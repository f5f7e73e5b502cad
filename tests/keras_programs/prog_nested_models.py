"""Models used as layers, as the functional API guide shows: an encoder model and a decoder model
called on tensors inside an autoencoder, and a Sequential inside another Sequential."""
# imports
import keras
from keras import layers
# end imports
import numpy as np
from _data import regression

x, _ = regression(300, features=16)

keras.utils.set_random_seed(4)
encoder_input = keras.Input(shape=(16,), name="original")
h = layers.Dense(12, activation="relu")(encoder_input)
encoder_output = layers.Dense(4, activation="relu")(h)
encoder = keras.Model(encoder_input, encoder_output, name="encoder")

decoder_input = keras.Input(shape=(4,), name="encoded")
h = layers.Dense(12, activation="relu")(decoder_input)
decoder_output = layers.Dense(16)(h)
decoder = keras.Model(decoder_input, decoder_output, name="decoder")

autoencoder_input = keras.Input(shape=(16,), name="data")
encoded = encoder(autoencoder_input)
decoded = decoder(encoded)
autoencoder = keras.Model(autoencoder_input, decoded, name="autoencoder")
autoencoder.compile(optimizer="adam", loss="mse")
history = autoencoder.fit(x, x, epochs=15, batch_size=32, verbose=0)

stacked = keras.Sequential([keras.Input(shape=(16,)), encoder, layers.Dense(2, activation="softmax")])

RESULT = {
    "encoder_params": encoder.count_params(),
    "decoder_params": decoder.count_params(),
    "autoencoder_params": autoencoder.count_params(),
    "autoencoder_layers": [layer.name for layer in autoencoder.layers],
    "autoencoder_weights": len(autoencoder.weights),
    "stacked_params": stacked.count_params(),
    "stacked_layers": [type(layer).__name__ for layer in stacked.layers],
    "history_keys": sorted(history.history),
    "loss_went_down": bool(history.history["loss"][-1] < history.history["loss"][0]),
    "encoded_shape": list(encoder.predict(x[:3], verbose=0).shape),
    "stacked_predict_shape": list(stacked.predict(x[:3], verbose=0).shape),
    "same_encoding": bool(np.allclose(encoder.predict(x[:3], verbose=0),
                                      keras.Model(autoencoder_input, encoded).predict(x[:3], verbose=0), atol=1e-6)),
}
