"""The block- and warp-level kernels (kernels/blocks.cuh) run by the block emulator (issue 18, 5 and 6).

The stand-in runs their sequential equivalent; the emulator runs the block code itself, a block's
threads as fibers switched at every barrier and shuffle, every ``__syncthreads`` a phase boundary and shared-memory races and
divergent barriers failing the run. Each step is checked against the NumPy backend for rows of 1,
10, 1000 and 100,000 columns, and counted: one launch, launched as the backend launches it.
"""
from __future__ import annotations

import numpy as np
import pytest

from fcgpu.backends.cupy.backend import LOSS_BLOCK, loss_grid_blocks
from fcgpu.backends.cupy.kernel_specs import KERNEL_SPECS, KernelSpec
from fcgpu.backends.numpy.backend import NumpyBackend
from fcgpu.testing import fake_cupy as cp
from support.block_emulator import EmulatedKernel, EmulatorFailure, block_level, emulated_backend

COLUMNS = [1, 10, 1000, 100_000]
NP = NumpyBackend()


def _rows(cols, rng, dtype=np.float32):
    rows = 3 if cols <= 1000 else 2
    return (rng.standard_normal((rows, cols)) * 3).astype(dtype)


def _only_launch(be, name, size, block_size):
    [launch] = be.launches
    assert (launch.name, launch.size, launch.block_size) == (name, size, block_size)
    return launch


@pytest.mark.parametrize("cols", COLUMNS)
@pytest.mark.parametrize("targets", ["ids", "probs"])
def test_softmax_cross_entropy_one_warp_a_row_matches_numpy(cols, targets):
    rng = np.random.default_rng(cols)
    z = _rows(cols, rng)
    z[0, cols // 2] = z.max() + 1  # a clear argmax, so the correct count is exact
    if targets == "ids":
        labels = np.array([cols // 2, cols - 1, 0][: z.shape[0]])
    else:
        labels = rng.random(z.shape).astype(np.float32)
        labels /= labels.sum(axis=1, keepdims=True)
        labels[0, :] = 0
        labels[0, cols // 2] = 1
    want, want_acc = np.zeros_like(z), np.zeros(2)
    NP.softmax_xent_step(z, labels, 1 / z.shape[0], 2.0, True, want, want_acc)
    be = emulated_backend()
    out, acc = cp.zeros(z.shape, np.float32), cp.zeros(2, np.float64)
    be.softmax_xent_step(cp.asarray(z), cp.asarray(labels), 1 / z.shape[0], 2.0, True, out, acc)
    np.testing.assert_allclose(out.get(), want, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(acc.get(), want_acc, rtol=2e-6)
    launch = _only_launch(be, f"fcgpu_softmax_xent_rows_{targets}", 32 * z.shape[0], 128)
    assert launch.figure("warp_syncs") > 0


@pytest.mark.parametrize("cols", COLUMNS)
@pytest.mark.parametrize("bias", [False, True])
def test_softmax_activation_one_warp_a_row_matches_numpy(cols, bias):
    rng = np.random.default_rng(cols + 7)
    z = _rows(cols, rng)
    b = rng.standard_normal(cols).astype(np.float32) if bias else None
    dy = rng.standard_normal(z.shape).astype(np.float32)
    want_y = NP.bias_act_forward(z.copy(), b, "softmax", np.zeros_like(z))
    want_dz = NP.act_backward(want_y, dy, "softmax", np.zeros_like(z))
    be = emulated_backend()
    y = be.bias_act_forward(cp.asarray(z), None if b is None else cp.asarray(b), "softmax", cp.zeros(z.shape, np.float32))
    dz = be.act_backward(y, cp.asarray(dy), "softmax", cp.zeros(z.shape, np.float32))
    np.testing.assert_allclose(y.get(), want_y, rtol=2e-5, atol=1e-9)
    np.testing.assert_allclose(dz.get(), want_dz, rtol=1e-4, atol=1e-7)
    assert [x.size for x in be.launches] == [32 * z.shape[0]] * 2


def test_softmax_rows_keep_nan_and_infinity_as_the_row_version_does():
    z = np.array([[1.0, np.nan, 2.0, np.nan], [-np.inf] * 4, [np.inf, 1.0, np.inf, 0.0]], np.float32)
    z = np.tile(z, (1, 20))  # 80 columns: several per lane
    labels = np.array([2, 0, 1])
    want, want_acc = np.zeros_like(z), np.zeros(2)
    with np.errstate(all="ignore"):
        NP.softmax_xent_step(z, labels, 1.0, 1.0, True, want, want_acc)
    be = emulated_backend()
    out, acc = cp.zeros(z.shape, np.float32), cp.zeros(2, np.float64)
    be.softmax_xent_step(cp.asarray(z), cp.asarray(labels), 1.0, 1.0, True, out, acc)
    np.testing.assert_array_equal(np.isnan(out.get()), np.isnan(want))
    assert np.isnan(acc.get()[0]) == np.isnan(want_acc[0]) and acc.get()[1] == want_acc[1]


LOSSES = {
    "mse_step": lambda be, p, y, o, a: be.mse_step(p, y, 0.5, 2.0, o, a),
    "mae_step": lambda be, p, y, o, a: be.mae_step(p, y, 0.5, 2.0, o, a),
    "huber_step": lambda be, p, y, o, a: be.huber_step(p, y, 1.5, 0.5, 2.0, o, a),
    "bce_logits_step": lambda be, p, y, o, a: be.bce_logits_step(p, y, 0.5, 2.0, True, o, a),
}


@pytest.mark.parametrize("cols", COLUMNS)
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_loss_steps_reduce_per_block_race_free_and_match_numpy(loss, cols):
    rng = np.random.default_rng(cols + 11)
    p = _rows(cols, rng)
    y = (rng.random(p.shape) > 0.5).astype(np.float32) if loss == "bce_logits_step" else _rows(cols, rng)
    want, want_acc = np.zeros_like(p), np.zeros(2)
    LOSSES[loss](NP, p, y, want, want_acc)
    be = emulated_backend()
    out, acc = cp.zeros(p.shape, np.float32), cp.zeros(2, np.float64)
    LOSSES[loss](be, cp.asarray(p), cp.asarray(y), out, acc)
    np.testing.assert_allclose(out.get(), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(acc.get(), want_acc, rtol=1e-5)
    blocks = loss_grid_blocks(p.size)
    launch = _only_launch(be, f"fcgpu_{loss}", blocks * LOSS_BLOCK, LOSS_BLOCK)
    assert launch.figure("shared_accesses") > 0
    assert launch.figure("blocks") == blocks and launch.figure("barriers") == 2 * blocks
    assert be._grid_work[blocks][1].get()[0] == 0  # the ticket is left at zero for the next step
    if cols <= 1000:
        again = cp.zeros(2, np.float64)
        LOSSES[loss](be, cp.asarray(p), cp.asarray(y), out, again)
        assert again.get().tobytes() == acc.get().tobytes()  # the same order of additions every time


def test_every_block_level_kernel_is_covered_here():
    names = {n for n in KERNEL_SPECS if block_level(n)}
    assert {"fcgpu_softmax_xent_rows_ids", "fcgpu_softmax_xent_rows_probs", "fcgpu_softmax_fwd", "fcgpu_bias_softmax_fwd",
            "fcgpu_softmax_bwd", "fcgpu_mse_step", "fcgpu_mae_step", "fcgpu_huber_step",
            "fcgpu_bce_logits_step", "fcgpu_all_finite", "fcgpu_loss_scale_check", "fcgpu_bn_stats", "fcgpu_bn_param_grads",
            "fcgpu_ln_param_grads", "fcgpu_ln_forward", "fcgpu_ln_dx",
            "fcgpu_clip_norms"} == names  # the layers' in test_kernels_layers, the clipping's in test_clipping
    for name in names:  # no per-element atomic left in a step kernel
        assert "fc_atomic_add" not in KERNEL_SPECS[name].operation


@pytest.mark.parametrize("n", [1, 10, 1000, 100_000, 300_000])
def test_the_overflow_check_is_one_race_free_launch(n):
    """Loss scaling's check of the flat gradient buffer: one kernel instead of isfinite and all
    (300,000 elements: more than 1024 blocks' worth, so threads take several)."""
    rng = np.random.default_rng(n)
    g = rng.standard_normal(n).astype(np.float32)  # the float32 master gradients
    be = emulated_backend()
    assert bool(be.all_finite(cp.asarray(g)).get()) is True
    for bad in (np.inf, -np.inf, np.nan):
        spoiled = g.copy()
        spoiled[rng.integers(0, n)] = bad
        assert bool(be.all_finite(cp.asarray(spoiled)).get()) is False
    assert bool(be.all_finite(cp.asarray(g)).get()) is True  # the flag is rewritten, not kept
    blocks = loss_grid_blocks(n)
    assert all((x.size, x.figure("blocks")) == (blocks * LOSS_BLOCK, blocks) for x in be.launches)
    assert len(be.launches) == 5


# -- the emulator itself: it must see what host execution cannot -------------------------------
def _probe(operation):
    return EmulatedKernel(KernelSpec("fcgpu_probe", "raw float32 x", "raw float32 y", operation))


SHIFT = "FC_SHARED(float, s, 64); s[threadIdx.x] = x[i]; {barrier} y[i] = s[(threadIdx.x + 1) % blockDim.x]"


def test_the_emulator_finds_a_missing_barrier_and_passes_the_fixed_kernel():
    x = np.arange(64, dtype=np.float32)
    y = np.zeros(64, np.float32)
    with pytest.raises(EmulatorFailure, match=r"shared-memory race on s\[\d+\].*write.*read|read.*write"):
        _probe(SHIFT.format(barrier=""))(x, y, size=64, block_size=64)
    _probe(SHIFT.format(barrier="__syncthreads();"))(x, y, size=64, block_size=64)
    np.testing.assert_array_equal(y, np.roll(x, -1))


def test_the_emulator_finds_a_barrier_that_not_every_thread_reaches():
    x, y = np.zeros(64, np.float32), np.zeros(64, np.float32)
    with pytest.raises(EmulatorFailure, match="divergence"):
        _probe("if (threadIdx.x < 32) { __syncthreads(); } y[i] = x[i]")(x, y, size=64, block_size=64)


def test_the_emulator_runs_warp_shuffles_lane_by_lane():
    x = np.arange(64, dtype=np.float32)
    y = np.zeros(64, np.float32)
    _probe("y[i] = __shfl_xor_sync(0xffffffffu, x[i], 1) + fc_warp_sum(x[i])")(x, y, size=64, block_size=64)
    sums = np.repeat([x[:32].sum(), x[32:].sum()], 32)
    np.testing.assert_array_equal(y, x.reshape(-1, 2)[:, ::-1].ravel() + sums)
