"""train_step, evaluate and predict through their own captured graphs (``fcgpu.training.graph_calls``),
on the stand-in with ``fcgpu.config.set_graphs(True)``, against the step-by-step path
(``set_graphs(False)``) on the same programs: the same losses, metrics, outputs and weights within
float tolerance (only the GEMMs differ: the capture GEMM sums in order), and after the first call
(which captures) a train_step is one device launch and an evaluate or predict batch one launch
beside the copy of its rows."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.backends.buffers import Buffers, recording
from fcgpu.testing import count_device_ops, stand_in_backend
from fcgpu.training import graph_capture


@pytest.fixture(autouse=True)
def _graphs_auto_after():
    yield
    fc.config.set_graphs("auto")
    fc.mixed_precision.set_global_policy("float32")


def _data(n=300, features=12, classes=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)


def _model(graphs, features=12, classes=4, dropout=True, optimizer=None, policy=None):
    fc.config.set_graphs(graphs)
    if policy:
        fc.mixed_precision.set_global_policy(policy)
    fc.set_seed(0)
    with fc.use_backend(stand_in_backend()):
        layers = [fc.Dense(24, activation="relu")]
        if dropout:
            layers.append(fc.Dropout(0.25, seed=5))
        layers += [fc.Dense(16, activation="tanh"), fc.Dense(classes, activation="softmax")]
        model = fc.Sequential(layers)
        model.build(features)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizer() if optimizer else fc.optimizers.Adam(1e-2),
                  metrics=["accuracy"])
    return model


def _both(program, **kwargs):
    """program(model) run with graphs off and on: (results, models) of each."""
    out = []
    for graphs in (False, True):
        model = _model(graphs, **kwargs)
        out.append((program(model), model))
    return out


def _same_weights(a, b, rtol=1e-4, atol=1e-5):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=rtol, atol=atol)


@pytest.mark.parametrize("policy", [None, "mixed_float16"])
def test_train_step_replays_one_launch_and_trains_as_step_by_step(policy):
    x, y = _data()

    def program(model):
        losses, ops = [], []
        for i in range(6):
            with count_device_ops() as counted:
                losses.append(model.train_step(x[32 * i : 32 * i + 32], y[32 * i : 32 * i + 32]))
            ops.append(counted)
        return losses, ops

    ((eager, eager_ops), m_eager), ((graph, graph_ops), m_graph) = _both(program, policy=policy)
    np.testing.assert_allclose(graph, eager, rtol=2e-3 if policy else 1e-5)
    _same_weights(m_eager, m_graph, *((2e-3, 2e-3) if policy else ()))
    assert all(o.by_kind["graph"] == 0 for o in eager_ops)
    for o in graph_ops[1:]:  # the first call warms up and captures
        assert o.total == o.by_kind["graph"] == 1, o.summary()
        assert o.transfers["to_host"] == 1, o.summary()  # the loss
    assert m_graph.optimizer.iterations == m_eager.optimizer.iterations == 6
    assert m_graph.layers[1].step == m_eager.layers[1].step  # the dropout masks' counter


def test_train_step_between_other_steps_and_under_a_schedule_follows_the_host(monkeypatch):
    monkeypatch.setattr(graph_capture, "LR_WINDOW", 3)  # the rate's table refilled every 3 steps
    x, y = _data()
    schedule = fc.optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)

    def program(model):
        losses = []
        for i in range(4):
            losses.append(model.train_step(x[:32], y[:32]))
        model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0, shuffle=False)  # two steps elsewhere
        for i in range(3):
            losses.append(model.train_step(x[32:64], y[32:64]))
        losses.append(model.train_on_batch(x[:16], y[:16], return_dict=True)["loss"])  # another shape
        losses.append(model.train_step(x[32:64], y[32:64]))
        return losses

    (eager, m_eager), (graph, m_graph) = _both(program, optimizer=lambda: fc.optimizers.SGD(schedule, momentum=0.9))
    np.testing.assert_allclose(graph, eager, rtol=1e-5)
    _same_weights(m_eager, m_graph)
    assert m_graph.optimizer.iterations == m_eager.optimizer.iterations == 11


def test_train_step_sees_a_new_learning_rate_new_weights_and_new_settings():
    x, y = _data()

    def program(model):
        losses = [model.train_step(x[:32], y[:32]) for _ in range(3)]
        model.optimizer.learning_rate = 0.001
        with count_device_ops() as ops:  # a new constant rate: uploaded, no new capture
            losses.append(model.train_step(x[:32], y[:32]))
        if fc.config.graphs_enabled() is True:
            assert ops.by_kind["graph"] == 1 and ops.total == 1, ops.summary()
        losses += [model.train_step(x[:32], y[:32]) for _ in range(1)]
        model.set_weights([w * 0.5 for w in model.get_weights()])
        losses += [model.train_step(x[:32], y[:32]) for _ in range(2)]
        model.optimizer.beta2 = 0.9  # a constant the update kernel takes
        model.layers[1].rate = 0.5  # and the dropout kernels
        losses += [model.train_step(x[:32], y[:32]) for _ in range(2)]
        return losses

    (eager, m_eager), (graph, m_graph) = _both(program)
    np.testing.assert_allclose(graph, eager, rtol=1e-5)
    _same_weights(m_eager, m_graph)


def test_evaluate_and_predict_replay_a_batch_and_match_step_by_step():
    x, y = _data(n=300)

    def program(model):
        model.fit(x, y, batch_size=64, epochs=1, verbose=0, validation_split=0.2)
        first = model.evaluate(x, y, batch_size=64, return_dict=True)
        again = model.evaluate(x, y, batch_size=64, return_dict=True)
        with count_device_ops() as ev_ops:  # four full batches
            model.evaluate(x[:256], y[:256], batch_size=64)
        with count_device_ops() as pr_ops:
            pred = model.predict(x, batch_size=64)
        with count_device_ops() as pr_ops2:
            pred2 = model.predict(x[:50], batch_size=64)  # a batch of fewer rows than the graph's
        return first, again, pred, pred2, model.history.history, ev_ops, pr_ops2

    (e, m_eager), (g, m_graph) = _both(program)
    for a, b in ((e[0], g[0]), (e[1], g[1]), (g[0], g[1])):
        assert b.keys() == a.keys()
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
        np.testing.assert_allclose(b["accuracy"], a["accuracy"], atol=1 / 300)
    np.testing.assert_allclose(g[2], e[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g[3], e[3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g[4]["val_loss"], e[4]["val_loss"], rtol=1e-5)
    ev_ops = g[5]
    assert ev_ops.by_kind["graph"] == 4 and ev_ops.by_kind["gemm"] == 0, ev_ops.summary()
    assert ev_ops.total <= 4 * 3 + 4, ev_ops.summary()  # a batch: two copies, a launch; zeroing and the read
    assert e[5].by_kind["graph"] == 0
    assert g[6].by_kind["graph"] == 1 and g[6].by_kind["gemm"] == 0, g[6].summary()


def test_predict_of_an_uncompiled_model_under_mixed_precision():
    x, _ = _data()
    outs = []
    for graphs in (False, True):
        fc.config.set_graphs(graphs)
        fc.mixed_precision.set_global_policy("mixed_float16")
        fc.set_seed(3)
        with fc.use_backend(stand_in_backend()):
            model = fc.Sequential([fc.Dense(8, activation="relu"), fc.Dense(3)])
            model.build(12)
        outs.append((model.predict(x, batch_size=100), model))
    (eager, _), (graph, model) = outs
    assert graph.dtype == eager.dtype
    np.testing.assert_allclose(graph.astype(np.float32), eager.astype(np.float32), rtol=2e-3, atol=2e-3)
    assert any(key[0] == "predict" for key in model.graph_cache.graphs)


def test_a_changed_model_is_captured_again():
    x, y = _data()
    model = _model(True)
    before = model.predict(x, batch_size=50)
    model.set_weights([w + 0.1 for w in model.get_weights()])
    after = model.predict(x, batch_size=50)
    model.layers[2].activation = fc.activations.get("sigmoid")
    changed = model.predict(x, batch_size=50)
    fc.config.set_graphs(False)
    np.testing.assert_allclose(changed, model.predict(x, batch_size=50), rtol=1e-5, atol=1e-6)
    model.layers[2].activation = fc.activations.get("tanh")
    np.testing.assert_allclose(after, model.predict(x, batch_size=50), rtol=1e-5, atol=1e-6)
    assert not np.allclose(before, after)
    fc.config.set_graphs(True)
    model.compile(loss="categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])  # another loss
    onehot = np.eye(4, dtype=np.float32)[y]
    got = model.evaluate(x, onehot, batch_size=50, return_dict=True)
    fc.config.set_graphs(False)
    want = model.evaluate(x, onehot, batch_size=50, return_dict=True)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)


def test_ineligible_calls_run_step_by_step():
    x, y = _data()
    model = _model(True)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam",
                  metrics=["accuracy", fc.metrics.SparseTopKCategoricalAccuracy(k=2)])
    with count_device_ops() as ops:
        model.evaluate(x, y, batch_size=50)
        model.train_step(x[:32], y[:32], sample_weight=np.ones(32))
    assert ops.by_kind["graph"] == 0 and ops.by_kind["gemm"] > 0


def test_the_graph_cache_is_not_copied_and_keeps_a_few():
    x, y = _data()
    model = _model(True)
    for batch in (10, 20, 30, 40, 50, 60):
        model.train_step(x[:batch], y[:batch])
    assert len(model.graph_cache.graphs) == 4
    clone = copy.deepcopy(model.graph_cache)
    assert clone.graphs == {}


def test_a_capture_holds_every_buffer_it_was_handed():
    backend = stand_in_backend()
    buffers = Buffers()
    with recording() as held:
        a = buffers.get(backend, "y", (4, 3), np.float32)
        del a
    first = held[0]
    b = buffers.get(backend, "y", (4, 3), np.float32)
    assert b is not first  # held by the capture: never handed out again
    c = buffers.get(backend, "y", (2, 3), np.float32)  # another shape replaces it in the buffers
    assert held == [first] and first.shape == (4, 3)
    del b, c


@pytest.mark.parametrize("second", ["adam", "adamw", "sgd"])
def test_train_step_after_compiling_again_with_another_optimizer(second):
    x, y = _data()
    make = {"adam": lambda: fc.optimizers.Adam(1e-2), "adamw": lambda: fc.optimizers.AdamW(1e-2),
            "sgd": lambda: fc.optimizers.SGD(0.05, momentum=0.9)}[second]

    def program(model):
        losses = [model.train_step(x[:32], y[:32]) for _ in range(3)]  # captured with the first optimizer
        model.compile(loss="sparse_categorical_crossentropy", optimizer=make(), metrics=["accuracy"])
        losses += [model.train_step(x[:32], y[:32]) for _ in range(4)]
        return losses

    (eager, m_eager), (graph, m_graph) = _both(program, optimizer=lambda: fc.optimizers.SGD(0.1))
    np.testing.assert_allclose(graph, eager, rtol=1e-5)
    _same_weights(m_eager, m_graph)


def test_layer_settings_are_checked_and_taken_as_the_constructor_takes_them():
    x, y = _data()

    def program(model):
        with pytest.raises(ValueError, match="rate"):
            model.layers[1].rate = 1.0
        with pytest.raises(ValueError, match="rate"):
            model.layers[1].rate = float("nan")
        losses = [model.train_step(x[:32], y[:32]) for _ in range(2)]
        model.layers[2].activation = "sigmoid"  # a name, as Keras takes it
        losses += [model.train_step(x[:32], y[:32]) for _ in range(2)]
        return losses, model.predict(x[:20])

    (eager, _), (graph, _) = _both(program)
    np.testing.assert_allclose(graph[0], eager[0], rtol=1e-5)
    np.testing.assert_allclose(graph[1], eager[1], rtol=1e-5, atol=1e-6)


def test_a_model_on_the_stand_in_can_be_deep_copied():
    model = _model(True)
    x, y = _data()
    model.train_step(x[:32], y[:32])
    clone = copy.deepcopy(model)
    assert clone.backend is model.backend
    np.testing.assert_allclose(clone.predict(x[:10]), model.predict(x[:10]), rtol=1e-6)


def test_a_dropout_raised_from_rate_zero_draws_the_masks_of_the_step_by_step_path():
    x, y = _data()

    def program(model):
        model.layers[1].rate = 0.0  # the identity: its counter does not advance
        losses = [model.train_step(x[:32], y[:32]) for _ in range(3)]
        model.fit(x[:96], y[:96], batch_size=32, epochs=1, verbose=0, shuffle=False)
        model.layers[1].rate = 0.5
        losses += [model.train_step(x[:32], y[:32]) for _ in range(3)]
        model.fit(x[:96], y[:96], batch_size=32, epochs=1, verbose=0, shuffle=False)
        return losses, model.layers[1].step

    (eager, m_eager), (graph, m_graph) = _both(program)
    np.testing.assert_allclose(graph[0], eager[0], rtol=1e-5)
    assert graph[1] == eager[1]
    _same_weights(m_eager, m_graph)


class _FreezeFirst(fc.callbacks.Callback):
    """Freezes the first layer for batches 1 and 5 of each epoch (twice an epoch: the step layout
    changes back and forth, and full batches run step by step between captures)."""

    def on_train_batch_begin(self, batch, logs=None):
        self.model.layers[0].trainable = batch not in (1, 5)


def test_a_layer_frozen_for_single_batches_inside_fit():
    x, y = _data(n=200)

    def program(model):
        history = model.fit(x, y, batch_size=25, epochs=2, verbose=0, shuffle=True, callbacks=[_FreezeFirst()])
        return history.history["loss"]

    (eager, m_eager), (graph, m_graph) = _both(program, optimizer=lambda: fc.optimizers.SGD(0.1))
    np.testing.assert_allclose(graph, eager, rtol=1e-5)
    _same_weights(m_eager, m_graph)


def test_a_skipped_mixed_precision_step_is_not_counted_after_a_read_of_the_counts():
    x, y = _data()

    def program(model):
        out = []
        for scale in (1.0, 1.0, 1e6, 1.0, 1e6):  # x * 1e6 overflows float16: the step is skipped
            model.train_step(x[:32] * scale, y[:32])
            out.append((model.optimizer.iterations, model.optimizer.loss_scale))  # a read after each step
        return out

    (eager, _), (graph, _) = _both(program, policy="mixed_float16")
    assert graph == eager
    assert eager[-1][0] == 3  # two of five steps skipped
