"""fcgpu's own GEMM kernels (kernels/gemm.cuh, launched by fcgpu.backends.cupy.gemm), without a GPU.

Three ways: the module the launcher builds compiles with NVRTC for sm_80 and sm_90 with CuPy's
options, every kernel present in the cubin; the launcher's RawModule runs on the host block emulator
(every CUDA thread a fiber, barriers as phases, shared-memory races and uninitialised shared reads
fail the launch) for sizes that are not multiples of the 64 x 64 tile, each activation in the
epilogues, against the NumPy backend, with every output surrounded by NaN guard cells (a stray
read poisons a result, a stray write spoils a guard); and mutated kernels (a barrier removed, a
bounds check widened) must fail those checks.
"""
from __future__ import annotations

import numpy as np
import pytest

from fcgpu.activations import ACTIVATIONS
from fcgpu.backends.cupy import gemm
from fcgpu.backends.cupy.backend import CupyBackend
from fcgpu.backends.numpy.backend import NumpyBackend
from fcgpu.testing import fake_cupy
from support.block_emulator import EmulatorFailure
from support.gemm_emulator import EmulatedRawModule, emulated_cupy

NP = NumpyBackend()
EPS = float(np.finfo(np.float32).eps)
SWEEP_WORK = 3_000_000  # multiply-adds a sweep case may take
GUARD = 64  # NaN cells before and after every array
FUSED = gemm.fused_activations()
SLOPE = {"selu": 1.76, "elu": 1.0, "gelu": 1.13, "gelu_approximate": 1.13, "silu": 1.1}  # max |act'| (else 1)
# (batch, in features, out features): odd sizes, none a multiple of 64, 1 to 1024.
SHAPES = [(1, 1, 1), (7, 3, 17), (33, 130, 65), (129, 65, 130), (1000, 17, 3), (7, 1024, 33), (33, 65, 1024),
          (130, 1, 129)]
# The whole grid of the brief's sizes whose product is small enough for the emulator.
ROWS, WIDTHS = (1, 7, 33, 129, 1000), (1, 3, 17, 65, 130, 1024)
SWEEP = [(r, m, n) for r in ROWS for m in WIDTHS for n in WIDTHS if r * m * n <= SWEEP_WORK]


@pytest.fixture(scope="module")
def cp():
    return emulated_cupy()


@pytest.fixture(scope="module")
def launcher(cp):
    return gemm.GemmLauncher(cp)


def guarded(cp, data):
    """A device copy of ``data`` inside NaN guard cells; the guards are checked by ``guards_intact``."""
    data = np.asarray(data, np.float32)
    buf = cp.full(data.size + 2 * GUARD, np.nan, np.float32)
    view = buf[GUARD:GUARD + data.size].reshape(data.shape)
    cp.copyto(view, cp.asarray(data))
    view.guarded_buffer = buf
    return view


def guards_intact(a) -> bool:
    buf = np.asarray(a.guarded_buffer)
    return bool(np.isnan(buf[:GUARD]).all() and np.isnan(buf[-GUARD:]).all())


def host(a) -> np.ndarray:
    return np.array(fake_cupy.asnumpy(a))


def kept_values(act, shape, rng):
    """What the forward pass of ``act`` keeps for its backward: y = act(z), or z itself."""
    z = (rng.standard_normal(shape) * 2).astype(np.float32)
    if ACTIVATIONS[act].backward_from == "z":
        return z
    return NP.bias_act_forward(z, None, act, np.empty_like(z))


def close(got, want, tol, what):
    bad = ~(np.abs(got - want) <= tol)
    assert not bad.any(), f"{what}: {bad.sum()} of {bad.size} differ, first at {np.argwhere(bad)[0]}: " \
                          f"{got[bad][0]} vs {want[bad][0]} (tol {tol[bad][0] if np.ndim(tol) else tol})"


def check_forward(launcher, cp, shape, act, bias=True, keep=False, seed=0):
    batch, m, n = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, m)).astype(np.float32)
    w = (rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    z_ref = NP.matmul(x, w, np.empty((batch, n), np.float32))
    keep_ref = np.empty_like(z_ref) if keep else None
    y_ref = NP.bias_act_forward(z_ref.copy(), b, act, np.empty_like(z_ref), keep=keep_ref)
    y, z = guarded(cp, np.zeros((batch, n))), guarded(cp, np.zeros((batch, n)))
    launcher.dense_forward(guarded(cp, x), guarded(cp, w), None if b is None else guarded(cp, b), act, y,
                           z if keep else None)
    scale = np.abs(x).astype(np.float64) @ np.abs(w) + (0 if b is None else np.abs(b))
    tol_z = 2 * (m + 2) * EPS * scale + 1e-30
    if keep:
        close(host(z), keep_ref, tol_z, f"z ({act}, {shape})")
    close(host(y), y_ref, SLOPE.get(act, 1.0) * 2 * tol_z + 8 * EPS * np.abs(y_ref) + 1e-30, f"y ({act}, {shape})")
    assert guards_intact(y) and guards_intact(z), "a write outside the output"


def check_input_grad(launcher, cp, shape, act, seed=0):
    batch, m, n = shape
    rng = np.random.default_rng(seed + 1)
    dz = rng.standard_normal((batch, n)).astype(np.float32)
    w = (rng.standard_normal((m, n)) / np.sqrt(n)).astype(np.float32)
    g_ref = NP.matmul_a_bt(dz, w, np.empty((batch, m), np.float32))
    tol = 2 * (n + 2) * EPS * (np.abs(dz).astype(np.float64) @ np.abs(w).T) + 1e-30
    dx = guarded(cp, np.zeros((batch, m)))
    if act is None:
        launcher.input_grad(guarded(cp, dz), guarded(cp, w), dx)
        want = g_ref
    else:
        kept = kept_values(act, (batch, m), rng)
        launcher.input_grad(guarded(cp, dz), guarded(cp, w), dx, act, guarded(cp, kept))
        want = NP.act_backward(kept, g_ref.copy(), act, np.empty_like(g_ref))
        tol = SLOPE.get(act, 1.0) * 2 * tol + 8 * EPS * np.abs(want)
    close(host(dx), want, tol, f"dx ({act}, {shape})")
    assert guards_intact(dx), "a write outside dx"


def check_weight_grad(launcher, cp, shape, bias=True, seed=0):
    batch, m, n = shape
    rng = np.random.default_rng(seed + 2)
    x = rng.standard_normal((batch, m)).astype(np.float32)
    dz = rng.standard_normal((batch, n)).astype(np.float32)
    dw_ref = NP.matmul_at_b(x, dz, np.empty((m, n), np.float32))
    db_ref = NP.sum_rows(dz, np.empty(n, np.float32))
    dw, db = guarded(cp, np.zeros((m, n))), guarded(cp, np.zeros(n))
    launcher.weight_grad(guarded(cp, x), guarded(cp, dz), dw, db if bias else None)
    close(host(dw), dw_ref, 2 * (batch + 2) * EPS * (np.abs(x).T.astype(np.float64) @ np.abs(dz)) + 1e-30,
          f"dW {shape}")
    if bias:
        close(host(db), db_ref, 2 * (batch + 2) * EPS * np.abs(dz).sum(0) + 1e-30, f"db {shape}")
    else:
        assert (host(db) == 0).all(), "db written without a bias"
    assert guards_intact(dw) and guards_intact(db), "a write outside dW or db"


# -- host execution under the block emulator ------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_numpy_for_odd_sizes(launcher, cp, shape):
    check_forward(launcher, cp, shape, "relu", keep=True)
    check_forward(launcher, cp, shape, "linear", bias=False)


@pytest.mark.parametrize("shape", SWEEP, ids=lambda s: "x".join(map(str, s)))
def test_all_three_kernels_over_the_size_grid(launcher, cp, shape):
    check_forward(launcher, cp, shape, "sigmoid", keep=True, seed=sum(shape))
    check_input_grad(launcher, cp, shape, "relu", seed=sum(shape))
    check_weight_grad(launcher, cp, shape, seed=sum(shape))


@pytest.mark.parametrize("act", FUSED)
def test_forward_epilogue_applies_every_activation(launcher, cp, act):
    keep = ACTIVATIONS[act].backward_from == "z"
    check_forward(launcher, cp, (33, 17, 65), act, keep=keep, seed=len(act))


@pytest.mark.parametrize("shape", SHAPES)
def test_input_grad_matches_numpy_for_odd_sizes(launcher, cp, shape):
    check_input_grad(launcher, cp, shape, None)
    check_input_grad(launcher, cp, shape, "tanh")


@pytest.mark.parametrize("act", FUSED)
def test_input_grad_epilogue_applies_every_activation_derivative(launcher, cp, act):
    check_input_grad(launcher, cp, (7, 65, 17), act, seed=len(act))


@pytest.mark.parametrize("shape", SHAPES + [(4096, 3, 17)])
def test_weight_and_bias_grad_match_numpy_for_odd_sizes(launcher, cp, shape):
    check_weight_grad(launcher, cp, shape)


def test_weight_grad_without_bias_leaves_db_alone(launcher, cp):
    check_weight_grad(launcher, cp, (33, 17, 65), bias=False)


def test_each_call_is_one_kernel_launch_with_the_tile_grid(launcher, cp):
    rng = np.random.default_rng(5)
    x = cp.asarray(rng.standard_normal((129, 65)).astype(np.float32))
    w = cp.asarray(rng.standard_normal((65, 130)).astype(np.float32))
    b = cp.zeros(130, np.float32)
    y, z, dx = cp.empty((129, 130), np.float32), cp.empty((129, 130), np.float32), cp.empty((129, 65), np.float32)
    dw = cp.empty((65, 130), np.float32)
    before = len(cp.emulated.launches)
    with fake_cupy.count_device_ops() as ops:
        launcher.dense_forward(x, w, b, "silu", y, z)
        launcher.input_grad(y, w, dx, "relu", x)
        launcher.weight_grad(x, y, dw, b)
    assert ops.total == 3 and ops.by_kind == {"kernel": 3}
    assert list(ops.names) == ["fcgpu_gemm_fwd_silu", "fcgpu_gemm_dx_relu", "fcgpu_gemm_dw"]
    launches = cp.emulated.launches[before:]
    assert [(x.grid, x.block) for x in launches] == [(3 * 3, 256), (3 * 2, 256), (2 * 3, 256)]
    k_steps = [-(-65 // 16), -(-130 // 16), -(-129 // 16)]
    for launch, steps, blocks in zip(launches, k_steps, (9, 6, 6)):
        assert launch.figure("barriers") >= 2 * steps * blocks  # two barriers a k step
        assert launch.figure("shared_accesses") > 0


# -- the launcher's checks ------------------------------------------------------------------------
def test_the_launcher_refuses_bad_arguments_with_clear_errors(launcher):
    cp = fake_cupy
    x, w = cp.zeros((4, 3), np.float32), cp.zeros((3, 5), np.float32)
    y = cp.zeros((4, 5), np.float32)
    with pytest.raises(TypeError, match="x must be float32"):
        launcher.dense_forward(x.astype(np.float64), w, None, "relu", y)
    with pytest.raises(ValueError, match="inner dimensions"):
        launcher.dense_forward(x, cp.zeros((4, 5), np.float32), None, "relu", y)
    with pytest.raises(ValueError, match="out must have shape"):
        launcher.dense_forward(x, w, None, "relu", cp.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        launcher.dense_forward(cp.zeros((3, 4), np.float32).T, w, None, "relu", y)
    with pytest.raises(ValueError, match="row activation"):
        launcher.dense_forward(x, w, None, "softmax", y)
    with pytest.raises(ValueError, match="b must have shape"):
        launcher.dense_forward(x, w, cp.zeros(4, np.float32), "relu", y)
    with pytest.raises(ValueError, match="overlap"):
        launcher.dense_forward(x, w, None, "relu", y, y)
    with pytest.raises(ValueError, match="overlap"):
        buf = cp.zeros(40, np.float32)
        launcher.input_grad(buf[:20].reshape(4, 5), cp.zeros((3, 5), np.float32), buf[8:20].reshape(4, 3))
    with pytest.raises(TypeError, match="needs kept_prev"):
        launcher.input_grad(y, w, x, "relu")
    with pytest.raises(ValueError, match="different batches"):
        launcher.weight_grad(x, cp.zeros((5, 5), np.float32), cp.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="db must have shape"):
        launcher.weight_grad(x, y, cp.zeros((3, 5), np.float32), cp.zeros(3, np.float32))


def test_the_backend_offers_the_launcher_and_keeps_cublas_by_default():
    backend = CupyBackend(fake_cupy)
    assert isinstance(backend.own_gemm, gemm.GemmLauncher) and backend.own_gemm is backend.own_gemm
    assert backend.own_gemm.cp is fake_cupy
    a, b = fake_cupy.ones((3, 2), np.float32), fake_cupy.ones((2, 4), np.float32)
    with fake_cupy.count_device_ops() as ops:
        backend.matmul(a, b, fake_cupy.empty((3, 4), np.float32))
    assert ops.by_kind == {"gemm": 1}


def test_the_module_defines_every_kernel_the_launcher_names():
    found = set(EmulatedRawModule(gemm.module_code()).kernels)
    assert found == set(gemm.kernel_names())
    assert {f"fcgpu_gemm_fwd_{a}" for a in ACTIVATIONS if not ACTIVATIONS[a].rows} <= found


# -- the checks must be able to fail ---------------------------------------------------------------
def _mutated(old: str, new: str) -> gemm.GemmLauncher:
    code = gemm.module_code()
    assert code.count(old) == 1, old
    cp = emulated_cupy()
    cp.RawModule = lambda code, options=(), **kw: EmulatedRawModule(code.replace(old, new), options)
    return gemm.GemmLauncher(cp)


@pytest.mark.parametrize("barrier", ["__syncthreads();\n#pragma unroll", "__syncthreads();  // the next step"])
def test_a_missing_barrier_is_a_race(barrier):
    broken = _mutated(barrier, barrier.replace("__syncthreads();", ";"))
    # The first barrier missing: a thread reads a tile element before its owner has staged it (the
    # emulator runs threads in order, so thread 0 meets the unwritten element first).
    with pytest.raises(EmulatorFailure, match="(race on|uninitialised shared read of) fc_gemm_[ab]s"):
        check_forward(broken, broken.cp, (33, 40, 17), "linear")


def test_a_widened_bounds_check_is_caught():
    broken = _mutated("if (m < M && n < N) {\n                float s", "if (m <= M && n < N) {\n                float s")
    with pytest.raises(AssertionError, match="a write outside the output|differ"):
        check_forward(broken, broken.cp, (33, 17, 17), "linear")


def test_a_dropped_tail_guard_reads_past_the_operand():
    broken = _mutated("if (go < outer_n && gk < K)", "if (go < outer_n)")
    with pytest.raises(AssertionError, match="differ"):
        check_forward(broken, broken.cp, (7, 20, 17), "linear")


# -- the compile gate: the launcher's module, as CuPy's RawModule compiles it ----------------------
@pytest.fixture(scope="module")
def cubins():
    from support import cuda_compile as cc
    from support.compile_gate.compilers import require_cupy

    try:
        require_cupy()
        cc.choose_backend()
    except cc.CompileGateUnavailable as e:
        pytest.skip(str(e))
    # RawModule compiles with assemble_cupy_compiler_options(options) + -ftz=true: the gate's options.
    from cupy._core import core

    assert set(core.assemble_cupy_compiler_options(gemm.COMPILE_OPTIONS)) | {"-ftz=true"} == set(cc.cupy_options())
    return {arch: cc.compile_source(gemm.module_code(), arch, cc.choose_backend()) for arch in cc.ARCHS}


def test_every_gemm_kernel_compiles_for_sm80_and_sm90(cubins):
    assert sorted(cubins) == ["80", "90"]
    for arch, cubin in cubins.items():
        missing = [n for n in gemm.kernel_names() if n.encode() not in cubin]
        assert not missing, f"sm_{arch}: {missing}"


def test_the_compile_gate_rejects_a_broken_gemm_kernel(cubins):
    from support import cuda_compile as cc
    from cupy.cuda.compiler import CompileException

    broken = gemm.module_code().replace("fmaf(av[i], bv[j], acc[i][j])", "fmaf(av[i], bv[j])")
    with pytest.raises(CompileException):
        cc.compile_source(broken, "80", cc.choose_backend())
