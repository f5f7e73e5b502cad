"""A Keras 3 MLP program, unchanged but for its two import lines, training on fcgpu.

The same file runs on Keras itself with the original imports::

    import keras
    from keras import layers

and on fcgpu with::

    import fcgpu as keras
    from fcgpu import layers

Usage: python examples/keras_mlp.py [digits|fashion-mnist] (Fashion-MNIST needs its IDX files,
e.g. Debian's dataset-fashion-mnist package). Prints the epochs run, the seconds fit took and
the test scores.
"""
import sys
import time

import numpy as np

import fcgpu as keras  # the Keras program's `import keras`
from fcgpu import layers  # the Keras program's `from keras import layers`


def load(name):
    """(x_train, y_train), (x_test, y_test) as float32 features in [0, 1] and integer labels."""
    if name == "fashion-mnist":
        from fcgpu.utils import datasets as data

        return data.load_fashion_mnist()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.25, random_state=0,
                                                        stratify=digits.target)
    return (x_train, y_train), (x_test, y_test)


# ---- from here on: the Keras program, as written for Keras 3 ----------------------------------
dataset = sys.argv[1] if len(sys.argv) > 1 else "digits"
(x_train, y_train), (x_test, y_test) = load(dataset)
num_classes = 10
features = x_train.shape[1]
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

model = keras.Sequential(
    [
        keras.Input(shape=(features,)),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(num_classes, activation="softmax"),
    ]
)
model.summary()
model.compile(
    loss="categorical_crossentropy",
    optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
    metrics=["accuracy"],
)
callbacks = [
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True),
    keras.callbacks.ModelCheckpoint("best_mlp.keras", monitor="val_loss", save_best_only=True),
]
start = time.perf_counter()
history = model.fit(x_train, y_train, batch_size=32, epochs=40 if dataset == "digits" else 10,
                    validation_split=0.1, callbacks=callbacks, verbose=0)
seconds = time.perf_counter() - start
score = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
print("epochs", len(history.history["loss"]), "seconds", round(seconds, 2), "test", score)
