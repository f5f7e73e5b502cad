"""The captured steps as they run on real CuPy, with their RawModule kernels on the block emulator.

On real CuPy (a module with ``RawModule``) the captured graphs run fcgpu's own kernels: the tiled
GEMMs (``kernels/gemm.cuh``: bias, activation and Dropout in the forward's epilogue, Dense layers
of widths <= 128 in a row as one fused forward (``kernels/mlp_fused.cuh``), the previous
layer's Dropout mask and act' in the input gradient's, a Dense's weight and bias gradients in one
launch, split over the batch where it is large) in fit's and train_step's step, the fused MLP forward (``kernels/mlp_fused.cuh``) in predict's and evaluate's.
Here the CuPy backend runs on the stand-in with ``RawModule`` served by the block emulator
(``tests/support/gemm_emulator.py``, whose launches are recorded while a stream captures, as
CUDA's are), with ``set_graphs("auto")``: the same decisions as on a GPU. Against the stand-in's
step-by-step path (cuBLAS's stand-in and CuPy's reductions): the same losses, weights and outputs
within float tolerance, no cuBLAS and no reduction inside the captured steps, no emulator report.
"""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.backends.cupy.backend import CupyBackend
from fcgpu.testing import count_device_ops, stand_in_backend
from support.gemm_emulator import emulated_cupy


@pytest.fixture(autouse=True)
def _graphs_auto():
    fc.config.set_graphs("auto")
    yield
    fc.config.set_graphs("auto")


def _program(backend, rows=70, batch=16):
    fc.set_seed(0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((rows, 9)).astype(np.float32)
    y = rng.integers(0, 4, rows)
    with fc.use_backend(backend):
        model = fc.Sequential([fc.Dense(20, activation="relu"), fc.Dropout(0.25, seed=4),
                               fc.Dense(13, activation="tanh"), fc.Dense(4, activation="softmax")])
        model.build(9)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=fc.optimizers.Adam(1e-2), metrics=["accuracy"])
    launches = getattr(backend.cp, "emulated", None)
    before = len(launches.launches) if launches is not None else 0
    with count_device_ops() as fit_ops:
        history = model.fit(x, y, batch_size=batch, epochs=3, verbose=0)
    fit_ops.kernel_names = {launch.name for launch in launches.launches[before:]} if launches is not None else set()
    steps = [model.train_step(x[:16], y[:16]) for _ in range(3)]
    with count_device_ops() as inference_ops:
        evaluated = model.evaluate(x[:64], y[:64], batch_size=16, return_dict=True)
        predicted = model.predict(x, batch_size=32)
    return history.history, steps, model.get_weights(), evaluated, predicted, fit_ops, inference_ops


def test_the_real_cupy_path_on_the_emulator_matches_the_step_by_step_path():
    cp = emulated_cupy()
    emulated = CupyBackend(cp)
    assert emulated.own_capture_gemms and emulated.fuses_chain([9, 20, 13, 4], ["relu", "tanh", "softmax"], np.float32)
    got = _program(emulated)
    fc.config.set_graphs(False)
    want = _program(stand_in_backend())
    np.testing.assert_allclose(got[0]["loss"], want[0]["loss"], rtol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5)
    for a, b in zip(want[2], got[2]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[3]["loss"], want[3]["loss"], rtol=1e-5)
    np.testing.assert_allclose(got[4], want[4], rtol=1e-5, atol=1e-6)
    fit_ops, inference_ops = got[5], got[6]
    assert fit_ops.by_kind["graph"] == 3 * 4 - 1, fit_ops.summary()  # every full batch after the warm-up
    # cuBLAS only in the three last partial batches (step by step): 3 forward, 3 weight, 2 input GEMMs each
    assert fit_ops.by_kind["gemm"] == 3 * 8, fit_ops.summary()
    assert inference_ops.by_kind["gemm"] == 0 and inference_ops.by_kind["reduction"] == 0, inference_ops.summary()
    names = {launch.name for launch in cp.emulated.launches}
    assert "fcgpu_mlp_fwd" in names  # predict's and evaluate's graphs: the fused forward
    # The training step's own kernels: the first Dense and its Dropout in one GEMM epilogue, the
    # last two Dense (widths <= 128, no Dropout between) as one fused forward keeping y and z for
    # backward; each input gradient applies the layer before's act' (and its Dropout's mask).
    step_names = fit_ops.kernel_names
    assert {"fcgpu_gemm_fwd_drop_relu", "fcgpu_mlp_fwd", "fcgpu_gemm_dx_tanh", "fcgpu_gemm_dx_drop_relu",
            "fcgpu_gemm_dw"} <= step_names, step_names
    assert not any(name.startswith("fcgpu_gemm_fwd_") and "drop" not in name for name in step_names), step_names
    assert all(not launch.report.split("|")[0] for launch in cp.emulated.launches)  # no race or fault reported


@pytest.mark.parametrize("policy", [None, "mixed_float16"])
def test_a_large_batch_splits_the_weight_gradients_and_half_types_run_on_tensor_cores(policy):
    """Batch 256 of 9-20-13-4: the weight gradients have one output tile over 256 rows, so they are
    split over the batch (two slices, reduced in order); mixed_float16 runs the WMMA kernels."""
    tol = {"rtol": 2e-2, "atol": 2e-3} if policy else {"rtol": 1e-4, "atol": 1e-5}
    if policy:
        fc.mixed_precision.set_global_policy(policy)
    try:
        cp = emulated_cupy()
        got = _program(CupyBackend(cp), rows=600, batch=256)
        fc.config.set_graphs(False)
        want = _program(stand_in_backend(), rows=600, batch=256)
    finally:
        fc.mixed_precision.set_global_policy("float32")
    np.testing.assert_allclose(got[0]["loss"], want[0]["loss"], **tol)
    for a, b in zip(want[2], got[2]):
        np.testing.assert_allclose(b, a, **tol)
    np.testing.assert_allclose(got[4].astype(np.float32), want[4].astype(np.float32), **tol)
    assert got[5].by_kind["graph"] == 3 * 2 - 1, got[5].summary()
    names = {launch.name for launch in cp.emulated.launches}
    assert any("splitk" in name or "reduce" in name for name in names), names
    if policy:
        assert any(name.endswith(("_f16", "_f16_f32")) for name in names), names
    assert all(not launch.report.split("|")[0] for launch in cp.emulated.launches)


def test_with_graphs_off_the_real_cupy_backend_runs_as_the_step_by_step_path():
    """Graphs off, the plan's fused-chain ('mlp') group runs its layers one by one: bit for bit the
    stand-in's step-by-step path."""
    fc.config.set_graphs(False)
    got = _program(CupyBackend(emulated_cupy()))
    want = _program(stand_in_backend())
    assert got[0]["loss"] == want[0]["loss"]
    for a, b in zip(want[2], got[2]):
        np.testing.assert_array_equal(b, a)
    np.testing.assert_array_equal(got[4], want[4])
