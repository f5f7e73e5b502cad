"""The own GEMMs' float16 and bfloat16 variants on tensor cores (kernels/gemm_wmma.cuh), without a GPU.

The modules compile with NVRTC for sm_80 and sm_90 (WMMA needs ``crt/mma.h``: the toolkit or the
``nvidia-cuda-crt`` wheel of the verify extra); on the host block emulator each WMMA fragment
operation is warp-collective (every lane must reach it with the same pointer and ldm; the tile is
computed once) and the kernels are checked against the NumPy backend on the same 16-bit operand
values, for odd sizes and every activation, dW/db into the operands' type and into float32.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from fcgpu.activations import ACTIVATIONS
from fcgpu.backends.cupy import gemm
from fcgpu.testing import fake_cupy
from support.block_emulator import EmulatorFailure
from support.gemm_checks import check_forward, check_input_grad, check_weight_grad
from support.gemm_emulator import EmulatedRawModule, emulated_cupy

ml_dtypes = pytest.importorskip("ml_dtypes")
HALVES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
IDS = ["float16", "bfloat16"]
SHAPES = [(1, 1, 1), (7, 3, 17), (33, 130, 65), (129, 65, 130), (1000, 17, 3), (7, 1024, 33), (33, 65, 130)]


@pytest.fixture(scope="module")
def cp():
    return emulated_cupy()


@pytest.fixture(scope="module")
def launcher(cp):
    return gemm.GemmLauncher(cp)


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_the_three_kernels_match_numpy_for_odd_sizes(launcher, cp, dtype, shape):
    check_forward(launcher, cp, shape, "relu", keep=True, dtype=dtype)
    check_forward(launcher, cp, shape, "linear", bias=False, dtype=dtype)
    check_input_grad(launcher, cp, shape, None, dtype=dtype)
    check_input_grad(launcher, cp, shape, "sigmoid", dtype=dtype)
    check_weight_grad(launcher, cp, shape, dtype=dtype)
    check_weight_grad(launcher, cp, shape, dtype=dtype, out_dtype=np.float32)


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
@pytest.mark.parametrize("act", gemm.fused_activations())
def test_every_activation_in_both_epilogues(launcher, cp, dtype, act):
    keep = ACTIVATIONS[act].backward_from == "z"
    check_forward(launcher, cp, (33, 40, 65), act, keep=keep, seed=len(act), dtype=dtype)
    check_input_grad(launcher, cp, (7, 65, 40), act, seed=len(act), dtype=dtype)


def test_weight_grad_with_a_large_batch_and_no_bias(launcher, cp):
    check_weight_grad(launcher, cp, (4096, 3, 17), dtype=np.float16, out_dtype=np.float32)
    check_weight_grad(launcher, cp, (33, 17, 65), bias=False, dtype=np.float16, out_dtype=np.float32)


def test_launches_are_one_kernel_each_of_four_warps(launcher, cp):
    x = fake_cupy.zeros((129, 65), np.float16)
    w = fake_cupy.zeros((65, 130), np.float16)
    y = fake_cupy.empty((129, 130), np.float16)
    dw, db = fake_cupy.empty((65, 130), np.float32), fake_cupy.empty(130, np.float32)
    before = len(cp.emulated.launches)
    with fake_cupy.count_device_ops() as ops:
        launcher.dense_forward(x, w, None, "gelu", y)
        launcher.weight_grad(x, y, dw, db)
    assert list(ops.names) == ["fcgpu_gemm_fwd_gelu_f16", "fcgpu_gemm_dw_f16_f32"] and ops.total == 2
    launches = cp.emulated.launches[before:]
    assert [(x.grid, x.block) for x in launches] == [(9, 128), (6, 128)]
    assert all(x.figure("warp_syncs") > 0 for x in launches)  # the fragment operations' warp barriers


# -- the checks must be able to fail ---------------------------------------------------------------
def _mutated(old: str, new: str, dtype=np.float16) -> gemm.GemmLauncher:
    code = gemm.module_code(dtype)
    assert code.count(old) == 1, old
    cp = emulated_cupy()
    cp.RawModule = lambda code, options=(), **kw: EmulatedRawModule(code.replace(old, new), options)
    return gemm.GemmLauncher(cp)


def test_a_missing_barrier_before_the_fragment_loads_is_caught():
    old = "fc_wmma_stage<T, !B_KC, SUM_B>(fc_wmma_bs, 1, FC_WMMA_LDB, b, ldb, n0, N, k0, K, t, colsum);\n        __syncthreads();"
    broken = _mutated(old, old.replace("__syncthreads();", ""))
    with pytest.raises(EmulatorFailure, match="(race on|uninitialised shared read of) fc_wmma_[ab]s"):
        check_forward(broken, broken.cp, (33, 40, 17), "linear", dtype=np.float16)


def test_a_missing_barrier_after_the_accumulator_store_is_caught():
    old = "wmma::mem_row_major);\n        }\n    }\n    __syncthreads();"
    broken = _mutated(old, old.replace("__syncthreads();", ""))
    with pytest.raises(EmulatorFailure, match="fc_wmma_cs"):
        check_forward(broken, broken.cp, (33, 40, 17), "linear", dtype=np.float16)


@pytest.mark.parametrize("old", ["wmma::load_matrix_sync(af[i], ", "wmma::mma_sync("])
def test_a_fragment_operation_that_half_a_warp_skips_is_caught(old):
    # The skipping lanes meet the warp's next collective early: a mismatch, or a stall at the end.
    broken = _mutated(old, "if (threadIdx.x % 32 < 16) " + old)
    with pytest.raises(EmulatorFailure, match="divergence|different pointers"):
        check_forward(broken, broken.cp, (7, 20, 17), "linear", dtype=np.float16)


def test_lanes_passing_different_fragment_pointers_are_caught():
    old = "fc_wmma_as + ((wm + 16 * i) * FC_WMMA_LDA + kk)"
    broken = _mutated(old, "fc_wmma_as + ((wm + 16 * i) * FC_WMMA_LDA + kk + 8 * (threadIdx.x % 2))")
    with pytest.raises(EmulatorFailure, match="different pointers"):
        check_forward(broken, broken.cp, (7, 20, 17), "linear", dtype=np.float16)


# -- the compile gate ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compile_gate():
    from support import cuda_compile as cc
    from support.compile_gate.compilers import require_cupy

    try:
        require_cupy()
        backend = cc.choose_backend()
    except cc.CompileGateUnavailable as e:
        pytest.skip(str(e))
    includes = [o[2:] for o in cc.cupy_options() if o.startswith("-I")]
    if backend == "nvrtc" and not any(os.path.exists(os.path.join(d, "crt", "mma.h")) for d in includes):
        pytest.skip("crt/mma.h is not on CuPy's include path: install nvidia-cuda-crt==13.0.* (the verify extra)")
    return cc, backend


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
def test_every_tensor_core_kernel_compiles_for_sm80_and_sm90(compile_gate, dtype):
    cc, backend = compile_gate
    for arch in cc.ARCHS:
        cubin = cc.compile_source(gemm.module_code(dtype), arch, backend)
        missing = [n for n in gemm.kernel_names(dtype) if n.encode() not in cubin]
        assert not missing, f"sm_{arch}: {missing}"


def _ptx(dtype) -> str:
    """The module's PTX for compute_80 (NVRTC asked for PTX instead of a cubin)."""
    from cupy.cuda import compiler
    from support import cuda_compile as cc

    original = compiler._get_arch_for_options_for_nvrtc
    compiler._get_arch_for_options_for_nvrtc = lambda arch=None: ("-arch=compute_80", "ptx")
    try:
        ptx, _ = compiler.compile_using_nvrtc(gemm.module_code(dtype), cc.cupy_options(), arch="80")
    finally:
        compiler._get_arch_for_options_for_nvrtc = original
    return ptx.decode() if isinstance(ptx, bytes) else ptx


def test_the_16_bit_kernels_run_on_tensor_cores_with_float32_sums(compile_gate):
    cc, backend = compile_gate
    if backend != "nvrtc":
        pytest.skip("the PTX check uses NVRTC")
    for dtype, kind in ((np.float16, "f16"), (ml_dtypes.bfloat16, "bf16")):
        ptx = _ptx(dtype)
        assert re.search(rf"wmma\.load\.a\.sync\.aligned\.row\.m16n16k16(\.shared)?\.{kind}\b", ptx)
        assert "wmma.mma.sync.aligned.row.row.m16n16k16.f32." in ptx  # float32 accumulators
        assert "wmma.store.d.sync.aligned.row.m16n16k16.shared.f32" in ptx
    f32 = _ptx(np.float32)
    assert "wmma" not in f32 and re.search(r"fma\.rn(\.ftz)?\.f32", f32)  # CuPy compiles with -ftz=true


def test_the_float32_module_does_not_need_mma_h():
    assert "mma.h" not in gemm.module_code(np.float32)
    assert "#include <mma.h>" in gemm.module_code(np.float16)
