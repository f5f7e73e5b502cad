"""Training scenarios run twice: under mpiexec by ``dp_job.py`` (data parallel) and in one process by
the tests (the reference). Each returns plain results (weights, history, evaluate, predict) that the
tests compare; data and settings are fixed, and every rank seeds its generator differently
(``seed + rank``) so that only rank 0's parameters and generator can explain equal results."""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

import fcgpu as fc
from fcgpu.testing import count_device_ops

SEED = 1000


def _data(n: int, features: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = (x[:, :classes].argmax(axis=1) + rng.integers(0, 2, n)) % classes
    return x, y


def _model(widths: list[int], rank: int) -> Any:
    fc.set_seed(SEED + rank)
    model = fc.Sequential([fc.Dense(w, activation="relu", dtype="float64") for w in widths[:-1]]
                          + [fc.Dense(widths[-1], dtype="float64")])
    model.build((None, 7))
    fc.set_seed(SEED + rank)  # fit's shuffling starts from the same generator state as the reference
    return model


def _results(model: Any, history: Any, x_eval: np.ndarray, y_eval: np.ndarray) -> dict[str, Any]:
    return {
        "weights": [np.array(w) for w in model.get_weights()],
        "history": {k: list(v) for k, v in history.history.items()},
        "epochs": list(history.epoch),
        "evaluate": model.evaluate(x_eval, y_eval, batch_size=16, return_dict=True),
        "predict": model.predict(x_eval, batch_size=8),
        "steps": dict(model.optimizer.steps),
    }


def sgd_momentum(rank: int, out_dir: str) -> dict[str, Any]:
    """SGD with Nesterov momentum, shuffled, 103 samples in batches of 16 (a last batch of 7),
    validation data, a learning-rate schedule on val_loss, early stopping and a checkpoint."""
    x, y = _data(103, 7, 3)
    xv, yv = _data(29, 7, 3, seed=1)
    model = _model([6, 3], rank)
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.SGD(lr=0.2, momentum=0.9, nesterov=True),
                  metrics=["accuracy"])
    callbacks = [
        fc.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, verbose=1),
        fc.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True, verbose=1),
        fc.callbacks.ModelCheckpoint(os.path.join(out_dir, "best.fcgpu"), monitor="val_loss", save_best_only=True,
                                     verbose=1),
    ]
    history = model.fit(x, y, batch_size=16, epochs=20, validation_data=(xv, yv), callbacks=callbacks, verbose=2)
    result = _results(model, history, xv, yv)
    result["lr"] = model.optimizer.lr
    return result


def adam_split(rank: int, out_dir: str) -> dict[str, Any]:
    """Adam on a mean-squared error, validation_split, 53 samples in batches of 10 (a last batch of
    2 and uneven shares on three ranks), unshuffled."""
    x, y = _data(66, 7, 2)
    targets = np.eye(2)[y]
    model = _model([5, 2], rank)
    model.compile(loss=fc.losses.MeanSquaredError(), optimizer=fc.optimizers.Adam(lr=0.01))
    history = model.fit(x, targets, batch_size=10, epochs=4, validation_split=0.2, shuffle=False, verbose=0)
    return _results(model, history, x[:17], targets[:17])


def one_row_batches(rank: int, out_dir: str) -> dict[str, Any]:
    """Global batches of one row: every step leaves a rank with an empty share (Adam, shuffled)."""
    x, y = _data(9, 7, 3)
    model = _model([4, 3], rank)
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.Adam(lr=0.02), metrics=["accuracy"])
    history = model.fit(x, y, batch_size=1, epochs=2, verbose=0)
    return _results(model, history, x, y)


def train_steps(rank: int, out_dir: str) -> dict[str, Any]:
    """``train_step`` on a global batch of 7 rows (shares of 3 and 4), four times, outside fit."""
    x, y = _data(7, 7, 3)
    model = _model([4, 3], rank)
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.SGD(lr=0.1, momentum=0.5))
    losses = [model.train_step(x, y) for _ in range(4)]
    return {
        "weights": [np.array(w) for w in model.get_weights()],
        "history": {"loss": losses},
        "epochs": [],
        "evaluate": model.evaluate(x, y, return_dict=True),
        "predict": model.predict(x),
        "steps": dict(model.optimizer.steps),
    }


def dropout(rank: int, out_dir: str) -> dict[str, Any]:
    """Dropout between the layers (seed drawn at build, so from rank 0's generator): each rank's
    rows draw the masks one process draws for them (Philox keyed by the global row); 45 samples in
    batches of 8 (a last batch of 5), shuffled, SGD."""
    x, y = _data(45, 7, 3)
    fc.set_seed(SEED + rank)
    model = fc.Sequential([fc.Dense(6, activation="relu", dtype="float64"), fc.Dropout(0.4),
                           fc.Dense(3, dtype="float64")])
    model.build((None, 7))
    fc.set_seed(SEED + rank)
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.SGD(lr=0.1), metrics=["accuracy"])
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    return _results(model, history, x, y)


def mixed_float16(rank: int, out_dir: str) -> dict[str, Any]:
    """mixed_float16 (float32 masters, float16 copies that forward and backward read, loss scaling),
    ranks seeded differently: only rank 0's masters *and* half copies explain equal results."""
    x, y = _data(48, 7, 3)
    fc.set_seed(SEED + rank)
    model = fc.Sequential([fc.Dense(6, activation="relu", dtype="mixed_float16"),
                           fc.Dense(3, dtype="mixed_float16")])
    model.build((None, 7))
    fc.set_seed(SEED + rank)
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.SGD(lr=0.1), metrics=["accuracy"])
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    return _results(model, history, x, y)


def graph(rank: int, out_dir: str) -> dict[str, Any]:
    """A functional graph: two inputs, a frozen layer (its weights, drawn from each rank's own seed,
    come from rank 0 although they are outside the flat buffers), a fan-out into Add and
    Concatenate, Dropout; 50 samples in batches of 8, shuffled, Adam."""
    x, y = _data(50, 7, 3)
    fc.set_seed(SEED + rank)
    left, right = fc.Input(shape=(4,), dtype="float64"), fc.Input(shape=(3,), dtype="float64")
    h = fc.Dense(5, activation="tanh", dtype="float64", name="frozen")(left)
    a = fc.Dense(5, activation="relu", dtype="float64")(h)
    b = fc.Dropout(0.3)(fc.Dense(5, dtype="float64")(right))
    merged = fc.layers.Concatenate()([fc.layers.Add()([a, b]), h])
    model = fc.Model([left, right], fc.Dense(3, dtype="float64")(merged))
    model.get_layer("frozen").trainable = False
    fc.set_seed(SEED + rank)
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.Adam(lr=0.05), metrics=["accuracy"])
    history = model.fit([x[:, :4], x[:, 4:]], y, batch_size=8, epochs=3, verbose=0)
    result = _results(model, history, [x[:, :4], x[:, 4:]], y)
    result["frozen"] = [np.array(w) for w in model.get_layer("frozen").get_weights()]
    result["flat_weights"] = [fc.to_numpy(w) for w in model.trainable_weights]  # what the flat buffer holds
    return result


def sample_weights(rank: int, out_dir: str) -> dict[str, Any]:
    """Sample weights shuffled and sharded with their rows (43 samples in batches of 8, a last
    batch of 3), validation data with its own weights, and a weighted evaluate."""
    x, y = _data(43, 7, 3)
    xv, yv = _data(13, 7, 3, seed=1)
    rng = np.random.default_rng(7)
    w, wv = rng.uniform(0.0, 3.0, 43), rng.uniform(0.0, 2.0, 13)
    model = _model([6, 3], rank)
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.SGD(lr=0.1, momentum=0.5))
    history = model.fit(x, y, batch_size=8, epochs=3, sample_weight=w, validation_data=(xv, yv, wv), verbose=0)
    result = _results(model, history, xv, yv)
    result["weighted_evaluate"] = model.evaluate(xv, yv, sample_weight=wv, batch_size=4)
    return result


def explicit_wrapper(rank: int, out_dir: str) -> dict[str, Any]:
    """A loop of one's own through the public API: compiled with ``AllReduceOptimizer``, started
    from rank 0 by ``start_from_rank0``, each rank's share of each global batch stepped by
    ``accumulate_batch`` with its share; 29 samples in batches of 8 (a last batch of 5), Adam."""
    x, y = _data(29, 7, 3)
    model = _model([5, 3], rank)
    comm = fc.distributed.world()
    model.compile(loss="softmax_cross_entropy", optimizer=fc.distributed.AllReduceOptimizer(fc.optimizers.Adam(0.02), comm))
    fc.distributed.start_from_rank0(model)
    losses = []
    for epoch in range(2):
        for start in range(0, len(x), 8):
            xb, yb = x[start : start + 8], y[start : start + 8]
            lo, hi = fc.distributed.shard_bounds(len(xb), comm.rank, comm.size)
            acc = model.accumulate_batch(*model.prepare_data(xb[lo:hi], yb[lo:hi]), share=(hi - lo) / len(xb))
            losses.append(float(comm.sum_host(model.backend.to_numpy(acc))[0]) / len(xb))
    return {
        "weights": [np.array(w) for w in model.get_weights()],
        "history": {"loss": losses},
        "epochs": [],
        "evaluate": model.evaluate(x, y, return_dict=True),
        "predict": model.predict(x),
        "steps": dict(model.optimizer.steps),
        "config": model.optimizer.get_config(),
    }


def captured(rank: int, out_dir: str) -> dict[str, Any]:
    """fit with its step captured as a CUDA graph where the backend can (the stand-in, asked with
    set_graphs(True); NumPy has no graph mode): Dense, Dropout, Dense, Adam, shuffled, 70 samples
    in batches of 16 (a last batch of 6), then evaluate and predict through their own graphs."""
    x, y = _data(70, 7, 3)
    fc.set_seed(SEED + rank)
    model = fc.Sequential([fc.Dense(6, activation="relu", dtype="float64"), fc.Dropout(0.3, seed=7),
                           fc.Dense(3, dtype="float64")])
    model.build((None, 7))
    fc.set_seed(SEED + rank)
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.Adam(lr=0.02), metrics=["accuracy"])
    fc.config.set_graphs(True)
    try:
        with count_device_ops() as ops:
            history = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
        return {**_results(model, history, x, y), "fit_replays": ops.by_kind["graph"]}
    finally:
        fc.config.set_graphs("auto")


SCENARIOS: dict[str, Callable[[int, str], dict[str, Any]]] = {
    "captured": captured,
    "graph": graph,
    "sample_weights": sample_weights,
    "mixed_float16": mixed_float16,
    "dropout": dropout,
    "sgd_momentum": sgd_momentum,
    "adam_split": adam_split,
    "one_row_batches": one_row_batches,
    "train_steps": train_steps,
    "explicit_wrapper": explicit_wrapper,
}
