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
from fcgpu.testing import fake_cupy
from support.block_emulator import EmulatorFailure
from support.gemm_checks import check_forward, check_input_grad, check_weight_grad, host
from support.gemm_emulator import EmulatedRawModule, emulated_cupy

FUSED = gemm.fused_activations()
# (batch, in features, out features): odd sizes, none a multiple of 64, 1 to 1024.
SHAPES = [(1, 1, 1), (7, 3, 17), (33, 130, 65), (129, 65, 130), (1000, 17, 3), (7, 1024, 33), (33, 65, 1024),
          (130, 1, 129)]
# The whole grid of the brief's sizes whose product is small enough for the emulator.
SWEEP_WORK = 3_000_000  # multiply-adds a sweep case may take
ROWS, WIDTHS = (1, 7, 33, 129, 1000), (1, 3, 17, 65, 130, 1024)
SWEEP = [(r, m, n) for r in ROWS for m in WIDTHS for n in WIDTHS if r * m * n <= SWEEP_WORK]


@pytest.fixture(scope="module")
def cp():
    return emulated_cupy()


@pytest.fixture(scope="module")
def launcher(cp):
    return gemm.GemmLauncher(cp)


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


def test_the_input_grad_may_overwrite_what_the_previous_layer_kept(launcher, cp):
    rng = np.random.default_rng(9)
    dz = cp.asarray(rng.standard_normal((33, 65)).astype(np.float32))
    w = cp.asarray(rng.standard_normal((17, 65)).astype(np.float32))
    y_prev = cp.asarray(rng.random((33, 17)).astype(np.float32))  # a sigmoid's outputs
    want = (host(dz) @ host(w).T) * host(y_prev) * (1 - host(y_prev))
    launcher.input_grad(dz, w, y_prev, "sigmoid", y_prev)
    np.testing.assert_allclose(host(y_prev), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="overlap"):  # a partial overlap stays refused
        buf = cp.zeros(34 * 17, np.float32)
        launcher.input_grad(dz, w, buf[17:].reshape(33, 17), "sigmoid", buf[:-17].reshape(33, 17))


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
    with pytest.raises(TypeError, match="float32, float16 or bfloat16, got float64"):
        launcher.dense_forward(x.astype(np.float64), w, None, "relu", y)
    with pytest.raises(TypeError, match="W must be float32, got float16"):
        launcher.dense_forward(x, w.astype(np.float16), None, "relu", y)
    with pytest.raises(TypeError, match="dW must be float16 or float32, got float64"):
        launcher.weight_grad(x.astype(np.float16), y.astype(np.float16), cp.zeros((3, 5), np.float64))
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


def test_the_launcher_builds_real_cupy_raw_modules_as_the_emulator_takes_them():
    """On the real CuPy 14.2 (no device needed until a kernel is fetched): one RawModule a dtype,
    with the source and options the emulator and the compile gate see, and RawKernel's call
    convention (grid, block, args, shared_mem=) the launcher uses."""
    cupy = pytest.importorskip("cupy")
    launcher = gemm.GemmLauncher(cupy)
    for dtype in gemm.DTYPES:
        module = launcher.module(dtype)
        assert isinstance(module, cupy.RawModule) and module is launcher.module(dtype)
        assert module.code == gemm.module_code(dtype) and module.options == gemm.COMPILE_OPTIONS
        assert hasattr(module, "get_function")
    assert "shared_mem" in cupy.RawKernel.__call__.__doc__ and "grid, block, args" in cupy.RawKernel.__call__.__doc__


def test_the_cost_model_counts_padded_tiles_and_repeated_operand_reads():
    from fcgpu.bench.cost import gemm_cost, own_gemm_cost

    exact = own_gemm_cost(128, 64, 128)  # whole tiles: the flops of the GEMM itself
    assert exact.flops == gemm_cost(128, 64, 128).flops
    assert exact.bytes == 4 * (128 * 64 * 2 + 64 * 128 * 2 + 128 * 128)  # each operand read twice
    odd = own_gemm_cost(65, 17, 1)  # two row tiles, one column tile, two k steps of 16
    assert odd.flops == 2 * 128 * 64 * 32 and odd.bytes == 4 * (65 * 17 + 17 * 2 + 65)
    assert own_gemm_cost(64, 17, 64, "float16").flops == 2 * 64 * 64 * 32  # k steps of 32
