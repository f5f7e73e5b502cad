"""Steady state on the NumPy backend allocates nothing per step (tracemalloc).

Sizes are chosen so that every array a step could allocate (an output buffer, a gradient, a
(batch, units) temporary, or NumPy's 8192-element ufunc buffer) is 32 KiB or more, while the
Python objects a call creates and frees (views, scalars) stay far below the 16 KiB bound.
"""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.activations import ACTIVATIONS

SMALL = 16 * 1024  # bytes: well below any array the steps below could allocate


def transient_and_growth(step, warm: int = 3, steps: int = 5) -> tuple[int, int]:
    """(peak bytes above the starting point, bytes still held afterwards) over ``steps`` calls."""
    for _ in range(warm):
        step()
    gc.collect()
    tracemalloc.start()
    try:
        step()  # tracemalloc's own first-use allocations
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(steps):
            step()
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start, end - start


@pytest.fixture
def numpy_backend():
    with fc.use_backend("numpy") as b:
        yield b


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch,m,n", [(64, 256, 256), (1, 256, 8192)], ids=["b64", "b1"])
def test_dense_forward_backward_allocates_nothing(numpy_backend, rng, activation, use_bias, dtype, batch, m, n):
    layer = fc.Dense(n, activation=activation, use_bias=use_bias, dtype=dtype)
    layer.build(m)
    x = rng.standard_normal((batch, m)).astype(dtype)
    dy = rng.standard_normal((batch, n)).astype(dtype)

    def step():
        layer.forward(x)
        layer.backward(dy)

    transient, growth = transient_and_growth(step)
    assert transient < SMALL, f"a step allocated {transient} bytes at once"
    assert growth < SMALL


def test_the_check_sees_a_reallocated_buffer(numpy_backend, rng):
    """The measurement itself: keeping each output forces a new buffer per step, and that shows."""
    layer = fc.Dense(256, activation="relu")
    x = rng.standard_normal((64, 256)).astype(np.float32)
    kept = []

    def step():
        kept[:] = [layer.forward(x)]

    transient, _ = transient_and_growth(step)
    assert transient >= 64 * 256 * 4


def test_training_step_allocates_nothing_of_batch_or_parameter_size(numpy_backend, rng):
    """forward, softmax cross-entropy, backward and SGD through the public API.

    What remains per step is O(batch): the labels' host checks and the loss's (batch, 1)
    log-sum-exp, a few hundred bytes here; no (batch, classes), activation or parameter-sized array.
    """
    model = fc.Sequential([fc.Dense(256, activation="relu"), fc.Dense(256)])
    model.compile(loss=fc.losses.SoftmaxCrossEntropy(), optimizer=fc.optimizers.SGD(lr=1e-3))
    model.build((None, 256))
    x = rng.standard_normal((64, 256)).astype(np.float32)
    labels = rng.integers(0, 256, size=64)

    def step():
        logits = model.forward(x)
        model.loss.forward(logits, labels)
        del logits
        grad = model.loss.backward()
        model.backward(grad)
        del grad
        model.optimizer.step(model)

    transient, growth = transient_and_growth(step)
    # NumPy before 2.3 also allocates a fixed 8192-element buffer (~33 KB) for a reduction along
    # rows (the log-sum-exp's max and sum): constant, and below every array this step must not
    # allocate (activations and logits 64 KB, parameters 256 KB).
    fixed_reduction_buffer = 40 * 1024 if np.lib.NumpyVersion(np.__version__) < "2.3.0" else 0
    assert transient < SMALL + fixed_reduction_buffer, f"a training step allocated {transient} bytes at once"
    assert growth < SMALL
