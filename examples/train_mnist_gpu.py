"""Train a 784-512-10 MLP on Fashion-MNIST with the best backend (CuPy on a GPU, else NumPy).

Runs as is on a machine without a GPU. Uses Fashion-MNIST when its IDX files are found
(``apt-get install dataset-fashion-mnist``, or pass a folder as the first argument), and
scikit-learn's digits otherwise.

    python examples/train_mnist_gpu.py [DATA_DIR]
"""
from __future__ import annotations

import sys
import time

import fcgpu as fc
from fcgpu.utils import datasets as data


def main(data_dir: str | None = None) -> None:
    backend = fc.set_backend("auto")
    print(f"backend: {backend.name} ({fc.backend_info()['reason']})")
    fc.set_seed(0)
    try:
        (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist(data_dir)
        name, hidden, epochs, batch_size = "Fashion-MNIST", 512, 5, 128
    except FileNotFoundError as e:
        print(f"{e}\nusing scikit-learn's digits instead")
        (x_train, y_train), (x_test, y_test) = data.load_digits(seed=0)
        name, hidden, epochs, batch_size = "digits", 64, 30, 32

    model = fc.Sequential([fc.Dense(hidden, activation="relu"), fc.Dense(10)])
    model.build((None, x_train.shape[1]))
    model.summary()
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.Adam(lr=1e-3), metrics=["accuracy"])

    start = time.perf_counter()
    history = model.fit(
        x_train, y_train, epochs=epochs, batch_size=batch_size, validation_data=(x_test, y_test), verbose=1
    )
    seconds = time.perf_counter() - start
    result = model.evaluate(x_test, y_test, return_dict=True)
    print(f"{name}: test accuracy {result['accuracy']:.4f}, {seconds / epochs:.2f} s per epoch on {backend.name}")
    print(f"best val_accuracy {max(history.history['val_accuracy']):.4f}")

    # The trained model runs on either backend: predictions on the host match the device's.
    logits = model.predict(x_test[:5])
    print("first predictions:", logits.argmax(axis=1).tolist(), "labels:", y_test[:5].tolist())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
