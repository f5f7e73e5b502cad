"""fit's training step captured as a CUDA graph (``fcgpu.training.graph_step``) on the stand-in.

Once captured, a training step is one device launch (the graph) and the host reads the epoch's sums
every ten steps, as the step-by-step path does; the losses and weights are those of the step-by-step
path (``fcgpu.config.set_graphs(False)``) within float tolerance: only the GEMMs differ, summed in
order by the capture GEMM instead of by NumPy's BLAS (mixed_float16 included).
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.testing import count_device_ops, stand_in_backend


class SteadyState(fc.callbacks.Callback):
    """Counts the device operations of the epochs after the first (the first warms up and captures)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops, self._block = [], None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch >= 1:
            self._block = count_device_ops()
            self.ops.append(self._block.__enter__())

    def on_epoch_end(self, epoch, logs=None):
        if self._block is not None:
            self._block.__exit__(None, None, None)
            self._block = None


def _fit(graphs, widths, batch, optimizer, dropout=False, policy=None, rows=None, epochs=3, regularized=False):
    fc.config.set_graphs(graphs)
    fc.set_seed(0)
    rng = np.random.default_rng(1)
    n = rows or 10 * batch  # ten steps an epoch: one read of the sums an epoch
    x = rng.standard_normal((n, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], n)
    if policy:
        fc.mixed_precision.set_global_policy(policy)
    try:
        with fc.use_backend(stand_in_backend()):
            layers = []
            for w in widths[1:-1]:
                reg = {"kernel_regularizer": fc.regularizers.L2(1e-3)} if regularized else {}
                layers.append(fc.Dense(w, activation="relu", **reg))
                if dropout:
                    layers.append(fc.Dropout(0.25, seed=11))
            layers.append(fc.Dense(widths[-1], activation="softmax"))
            model = fc.Sequential(layers)
            model.build(widths[0])
        opt = {"sgd": lambda: fc.optimizers.SGD(0.05, momentum=0.9), "adam": lambda: fc.optimizers.Adam(1e-3)}[optimizer]()
        model.compile(loss="sparse_categorical_crossentropy", optimizer=opt, metrics=["accuracy"])
        steady = SteadyState()
        with count_device_ops() as ops:
            history = model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[steady])
    finally:
        fc.config.set_graphs("auto")
        if policy:
            fc.mixed_precision.set_global_policy("float32")
    return model, history.history, ops, steady.ops


CASES = [
    pytest.param((64, 256, 256, 10), 256, "adam", True, None, id="64-256-256-10-adam-dropout"),
    pytest.param((784, 512, 10), 128, "sgd", False, None, id="784-512-10-sgd"),
    pytest.param((784, 512, 10), 128, "adam", False, None, id="784-512-10-adam"),
    pytest.param((784, 512, 10), 128, "sgd", False, "mixed_float16", id="784-512-10-sgd-mixed_float16"),
    pytest.param((784, 512, 10), 128, "adam", True, "mixed_float16", id="784-512-10-adam-dropout-mixed_float16"),
]


@pytest.mark.parametrize("widths, batch, optimizer, dropout, policy", CASES)
def test_a_captured_step_is_one_launch_and_trains_as_the_step_by_step_path(widths, batch, optimizer, dropout, policy):
    eager, eager_logs, eager_ops, _ = _fit(False, widths, batch, optimizer, dropout, policy)
    graph, graph_logs, graph_ops, steady = _fit(True, widths, batch, optimizer, dropout, policy)
    assert eager_ops.by_kind["graph"] == 0 and eager_ops.by_kind["gemm"] > 0
    assert graph_ops.by_kind["gemm"] == 0  # no cuBLAS anywhere in the captured fit
    for epoch_ops in steady:  # 10 steps an epoch after the first
        assert epoch_ops.by_kind["graph"] == 10, epoch_ops.summary()
        assert epoch_ops.total / 10 <= 1.0, epoch_ops.summary()
        assert epoch_ops.transfers["to_host"] / 10 <= 0.1, epoch_ops.summary()
    assert graph_ops.by_kind["graph"] == 3 * 10 - 1  # every full step after the warm-up is a replay
    np.testing.assert_allclose(graph_logs["loss"], eager_logs["loss"], rtol=1e-5)
    np.testing.assert_allclose(graph_logs["accuracy"], eager_logs["accuracy"], atol=2 / (10 * batch))
    for a, b in zip(eager.get_weights(), graph.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=2e-4)
    assert graph.optimizer.iterations == eager.optimizer.iterations == 30
    for d_eager, d_graph in zip(eager.layers, graph.layers):
        if isinstance(d_eager, fc.Dropout):
            assert d_graph.step == d_eager.step == 30


def test_a_last_partial_batch_runs_step_by_step_between_replays():
    args = ((32, 64, 10), 64, "adam", True, None, 5 * 64 + 23)
    eager, eager_logs, _, _ = _fit(False, *args, epochs=2)
    graph, graph_logs, ops, _ = _fit(True, *args, epochs=2)
    assert ops.by_kind["graph"] == 2 * 5 - 1
    np.testing.assert_allclose(graph_logs["loss"], eager_logs["loss"], rtol=1e-5)
    for a, b in zip(eager.get_weights(), graph.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    assert graph.optimizer.iterations == eager.optimizer.iterations == 12


def test_an_ineligible_model_runs_step_by_step_and_says_why(caplog):
    with caplog.at_level(logging.INFO, logger="fcgpu.graphs"):
        model, logs, ops, _ = _fit(True, (16, 32, 4), 32, "sgd", regularized=True, epochs=1)
    assert ops.by_kind["graph"] == 0 and ops.by_kind["gemm"] > 0
    assert "weight penalties" in caplog.text
    _, eager_logs, _, _ = _fit(False, (16, 32, 4), 32, "sgd", regularized=True, epochs=1)
    assert logs == eager_logs


def test_set_graphs_takes_a_bool_or_auto():
    with pytest.raises(TypeError):
        fc.config.set_graphs(1)
    assert fc.config.graphs_enabled() == "auto"
    fc.config.set_graphs(False)
    try:
        assert not fc.config.graphs_enabled()
    finally:
        fc.config.set_graphs("auto")


def test_auto_captures_on_real_cupy_only():
    """'auto' (the default): the stand-in, whose capture GEMM is a loop, runs step by step; True captures it."""
    from fcgpu.training.graph_step import why_not

    with fc.use_backend(stand_in_backend()):
        model = fc.Sequential([fc.Dense(8, activation="relu"), fc.Dense(3, activation="softmax")])
        model.build(4)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    assert not stand_in_backend().own_capture_gemms
    assert "stand-in" in why_not(model, 8, 32)
    fc.config.set_graphs(True)
    try:
        assert why_not(model, 8, 32) is None
    finally:
        fc.config.set_graphs("auto")


def test_a_learning_rate_set_by_a_callback_is_uploaded_without_a_new_capture():
    results = []
    for graphs in (False, True):
        fc.config.set_graphs(graphs)
        fc.set_seed(0)
        rng = np.random.default_rng(1)
        x, y = rng.standard_normal((128, 16)).astype(np.float32), rng.integers(0, 4, 128)
        try:
            with fc.use_backend(stand_in_backend()):
                model = fc.Sequential([fc.Dense(32, activation="relu"), fc.Dense(4, activation="softmax")])
                model.build(16)
            model.compile(loss="sparse_categorical_crossentropy", optimizer=fc.optimizers.SGD(0.1))
            halve = fc.callbacks.LearningRateScheduler(lambda epoch, lr: lr / 2 if epoch else lr)
            with count_device_ops() as ops:
                logs = model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[halve]).history
        finally:
            fc.config.set_graphs("auto")
        results.append((model, logs, ops))
    (eager, eager_logs, _), (graph, graph_logs, ops) = results
    assert ops.by_kind["graph"] == 3 * 4 - 1  # each epoch's new rate: one upload, no warm-up step again
    np.testing.assert_allclose(graph_logs["loss"], eager_logs["loss"], rtol=1e-6)
    for a, b in zip(eager.get_weights(), graph.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert graph.optimizer.learning_rate == eager.optimizer.learning_rate == 0.025
