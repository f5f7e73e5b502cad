"""The captured steps on a real GPU (``pytest -m gpu``; skipped without a device): fit, train_step,
evaluate and predict with CUDA graphs ("auto": captured on real CuPy, the own GEMMs inside) give
what the step-by-step path (cuBLAS, ``set_graphs(False)``) gives, within the tolerance of two GEMM
summation orders, and a capture that fails (logged as a warning to ``fcgpu.graphs``) fails the test.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

import fcgpu as fc

pytestmark = pytest.mark.gpu


def _program(gpu, graphs, policy=None):
    fc.config.set_graphs(graphs)
    if policy:
        fc.mixed_precision.set_global_policy(policy)
    try:
        fc.set_seed(0)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1000, 784)).astype(np.float32)
        y = rng.integers(0, 10, 1000)
        with fc.use_backend(gpu):
            model = fc.Sequential([fc.Dense(512, activation="relu"), fc.Dropout(0.2, seed=3),
                                   fc.Dense(10, activation="softmax")])
            model.build(784)
        model.compile(loss="sparse_categorical_crossentropy", optimizer=fc.optimizers.Adam(1e-3), metrics=["accuracy"])
        history = model.fit(x, y, batch_size=128, epochs=3, verbose=0)
        steps = [model.train_step(x[i : i + 64], y[i : i + 64]) for i in range(0, 640, 64)]
        return {"loss": history.history["loss"], "steps": steps, "weights": model.get_weights(),
                "evaluate": model.evaluate(x, y, batch_size=100, return_dict=True),
                "predict": model.predict(x, batch_size=100).astype(np.float32)}
    finally:
        fc.config.set_graphs("auto")
        fc.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", [None, "mixed_float16"])
def test_captured_calls_match_the_step_by_step_path(gpu, caplog, policy):
    tol = {"rtol": 2e-2, "atol": 2e-3} if policy else {"rtol": 1e-3, "atol": 1e-4}
    with caplog.at_level(logging.INFO, logger="fcgpu.graphs"):
        graph = _program(gpu, "auto", policy)
    assert "could not be captured" not in caplog.text, caplog.text
    eager = _program(gpu, False, policy)
    np.testing.assert_allclose(graph["loss"], eager["loss"], **tol)
    np.testing.assert_allclose(graph["steps"], eager["steps"], **tol)
    for a, b in zip(eager["weights"], graph["weights"]):
        np.testing.assert_allclose(b, a, **tol)
    np.testing.assert_allclose(graph["evaluate"]["loss"], eager["evaluate"]["loss"], **tol)
    np.testing.assert_allclose(graph["predict"], eager["predict"], **tol)
