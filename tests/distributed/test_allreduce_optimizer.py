"""The all-reduce optimizer without MPI: a stand-in communicator of two ranks whose all-reduce adds
the other rank's weighted gradient. Its weighting (an uneven batch gives the full batch's mean
gradient), its composition with loss scaling (the overflow check reads the reduced gradients),
what it saves (the wrapped optimizer), and the trainer using it by composition on N ranks only."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import distributed
from fcgpu.distributed import AllReduceOptimizer
from fcgpu.distributed.communicator import LocalWorld


class _OtherRank(LocalWorld):
    """Two ranks, this one rank 0: ``allreduce_host`` adds what rank 1 contributes (set per test)."""

    size, rank, local_rank, local_size, kind = 2, 0, 0, 1, "stand-in"

    def __init__(self, contribution=None):
        super().__init__()
        self.contribution = contribution  # {dtype: host array}: rank 1's weighted gradient buffer

    def allreduce_host(self, buffer):
        buffer += self.contribution[buffer.dtype]
        return buffer


def _data(rows=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, 5)), rng.integers(0, 3, rows)


def _model(optimizer, dtype="float64", weights=None):
    fc.set_seed(3)
    model = fc.Sequential([fc.Dense(4, activation="tanh", dtype=dtype), fc.Dense(3, dtype=dtype)])
    model.build((None, 5))
    if weights is not None:
        model.set_weights(weights)
    model.compile(loss="softmax_cross_entropy", optimizer=optimizer)
    return model


def _gradients(model, x, y):
    """The model's flat gradient buffers (host copies) for rows (x, y), its parameters unchanged."""
    probe = _model(fc.optimizers.SGD(0.0), weights=model.get_weights())
    probe.accumulate_batch(*probe.prepare_data(x, y))
    return {dtype: fc.to_numpy(g).copy() for dtype, g in probe.flat_parameters().grads.items()}


@pytest.mark.parametrize("optimizer", [lambda: fc.optimizers.SGD(0.3, momentum=0.5), lambda: fc.optimizers.Adam(0.05)])
def test_an_uneven_batch_reduces_to_the_full_batch_mean_gradient(optimizer):
    """Rows 0..2 here, rows 3..6 on the other rank: shares 3/7 and 4/7 of a last batch of 7."""
    with fc.use_backend("numpy"):
        x, y = _data()
        reference = _model(optimizer())
        start = reference.get_weights()
        comm = _OtherRank()
        model = _model(AllReduceOptimizer(optimizer(), comm), weights=start)
        other = _gradients(model, x[3:], y[3:])
        comm.contribution = {np.dtype(d): g * (4 / 7) for d, g in other.items()}
        for _ in range(2):
            model.accumulate_batch(*model.prepare_data(x[:3], y[:3]), share=3 / 7)
            other = _gradients(model, x[3:], y[3:])
            reference.accumulate_batch(*reference.prepare_data(x, y))
            comm.contribution = {np.dtype(d): g * (4 / 7) for d, g in other.items()}
        for got, want in zip(model.get_weights(), reference.get_weights()):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
        assert model.optimizer.steps == reference.optimizer.steps and model.optimizer.iterations == 2


def test_an_empty_share_contributes_exact_zeros():
    with fc.use_backend("numpy"):
        x, y = _data()
        comm = _OtherRank()
        model = _model(AllReduceOptimizer(fc.optimizers.SGD(0.1), comm))
        comm.contribution = {d: np.zeros_like(fc.to_numpy(g)) for d, g in model.flat_parameters().grads.items()}
        before = model.get_weights()
        model.accumulate_batch(*model.prepare_data(x[:1], y[:1]), share=0.0)  # a borrowed row
        assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


def test_under_mixed_float16_the_reduction_wraps_the_loss_scaling_and_every_rank_skips_alike():
    with fc.use_backend("numpy"):
        x, y = _data(8)
        comm = _OtherRank()
        model = _model(AllReduceOptimizer(fc.optimizers.SGD(0.1), comm), dtype="mixed_float16")
        comm.contribution = {d: np.zeros_like(fc.to_numpy(g)) for d, g in model.flat_parameters().grads.items()}
        model.train_step(x[:1], y[:1])  # binds: the loss scaling goes inside the all-reduce
        assert isinstance(model.optimizer, AllReduceOptimizer)
        assert isinstance(model.optimizer.inner, fc.optimizers.LossScaleOptimizer)
        assert model.optimizer.get_config()["class_name"] == "LossScaleOptimizer"
        grads = model.flat_parameters().grads
        scale, before = model.optimizer.loss_scale, model.get_weights()
        # This rank's gradients are finite; the other rank's overflowed: the reduced ones are not.
        comm.contribution = {d: np.zeros_like(fc.to_numpy(g)) for d, g in grads.items()}
        for value in comm.contribution.values():
            value[0] = np.inf  # the first kernel's first entry (not the alignment padding, which stays 0)
        model.accumulate_batch(*model.prepare_data(x[:4], y[:4]), share=0.5)
        assert model.optimizer.loss_scale == scale / 2 and model.optimizer.skipped_steps == 1
        assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))
        comm.contribution = {d: np.zeros_like(fc.to_numpy(g)) for d, g in grads.items()}
        model.accumulate_batch(*model.prepare_data(x[:4], y[:4]), share=0.5)
        assert model.optimizer.skipped_steps == 1 and not all(
            np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


def test_loss_scaling_around_the_reduction_is_refused():
    with pytest.raises(TypeError, match="goes around the LossScaleOptimizer"):
        fc.optimizers.LossScaleOptimizer(AllReduceOptimizer(fc.optimizers.SGD()))
    with pytest.raises(TypeError):
        AllReduceOptimizer(AllReduceOptimizer(fc.optimizers.SGD()))


def test_the_wrapped_optimizer_is_what_is_configured_and_saved(tmp_path):
    with fc.use_backend("numpy"):
        x, y = _data()
        inner = fc.optimizers.Adam(0.01)
        model = _model(distributed.create_multi_node_optimizer(inner))
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # a world of one: nothing to reduce
        opt = model.optimizer
        assert opt.get_config() == inner.get_config() and opt.state is inner.state and opt.steps is inner.steps
        assert opt.iterations == inner.iterations == 2
        opt.learning_rate = 0.002
        assert inner.learning_rate == 0.002
        with pytest.raises(AttributeError, match="set it on the optimizer it wraps"):
            opt.beta_1 = 0.5
        model.save(tmp_path / "m.fcgpu")
        loaded = fc.load_model(tmp_path / "m.fcgpu")
        assert type(loaded.optimizer) is fc.optimizers.Adam and loaded.optimizer.steps == inner.steps


def test_the_trainer_steps_through_the_wrapper_on_n_ranks_only():
    assert all(c.__name__ != "DataParallel" for c in type(fc.Sequential()).__mro__)
    assert not hasattr(distributed.data_parallel, "DataParallel")
    assert not hasattr(fc.Sequential, "_reduce_gradients") and not hasattr(fc.Sequential, "step_share")
    with fc.use_backend("numpy"):
        x, y = _data()
        model = _model(fc.optimizers.SGD(0.1))
        model.accumulate_batch(*model.prepare_data(x, y))
        assert model.bound_step().update is model.optimizer  # a world of one: no wrapper
        comm = _OtherRank({np.dtype("float64"): 0.0})
        previous = distributed.set_world(comm)
        try:
            model.accumulate_batch(*model.prepare_data(x[:3], y[:3]), share=3 / 7)
            update = model.bound_step().update
            assert isinstance(update, AllReduceOptimizer) and update.inner is model.optimizer
            assert update.share == 3 / 7 and type(model.optimizer) is fc.optimizers.SGD
        finally:
            distributed.set_world(previous)
        model.accumulate_batch(*model.prepare_data(x, y))
        assert model.bound_step().update is model.optimizer  # bound again for the world of one


def test_the_wrapper_and_the_helpers_check_their_arguments():
    with pytest.raises(TypeError, match="comm: expected a communicator"):
        AllReduceOptimizer(fc.optimizers.SGD(0.1), "x")
    with pytest.raises(TypeError, match="model: expected an fcgpu model"):
        distributed.start_from_rank0(None)
    for args, kind in [((10, 3, 3), ValueError), ((10, -1, 2), ValueError), ((-5, 0, 1), ValueError),
                       ((10.5, 0, 1), TypeError), ((10, 0, 0), ValueError)]:
        with pytest.raises(kind):
            distributed.shard_bounds(*args)
    assert distributed.shard_bounds(10, 1, 3) == (3, 6)
