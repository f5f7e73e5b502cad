"""The fused MLP forward (kernels/mlp_fused.cuh, launched by fcgpu.backends.cupy.fused_mlp), without a GPU.

The generated kernels run on the host block emulator (every CUDA thread a fiber, barriers as
phases, shared-memory races and uninitialised shared reads fail the launch) for batches that are not
multiples of the 32-row block and widths 1..128 that are not multiples of anything, every output
and kept array inside NaN guard cells (a stray read poisons a result, a stray write spoils a guard).
Each layer is compared with the NumPy backend's Dense forward (matmul, then bias_act_forward) on the
layer input the kernel kept, within the own GEMM checks' float32 bound; the whole forward equals the
chain of own-GEMM forwards (same k order, same fmaf rounding) bit for bit. Each forward is one launch.
float16 and bfloat16 (WMMA fragments, warp-collective on the emulator) get the same layer checks on
the 16-bit values. Mutated kernels (a barrier removed, padding left unwritten, a row check dropped)
must fail those checks. The compile gate builds the generated modules with NVRTC for sm_80 and sm_90
as CuPy's RawModule would, and reads the PTX: FMA for float32, WMMA with float32 sums for the halves.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from fcgpu.activations import ACTIVATIONS
from fcgpu.backends.cupy import fused_mlp
from fcgpu.backends.cupy.backend import CupyBackend
from fcgpu.backends.cupy.gemm import fused_activations
from fcgpu.testing import fake_cupy
from support.block_emulator import EmulatorFailure
from support.gemm_checks import EPS, close, host
from support.mlp_checks import Guarded, check_layers, draw, own_gemm_chain, run_fused
from support.gemm_emulator import EmulatedRawModule, emulated_cupy

try:
    import ml_dtypes

    HALVES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
except ImportError:  # pragma: no cover - ml_dtypes is a dependency of the verify extra
    HALVES = [np.dtype(np.float16)]
HALF_IDS = [d.name for d in HALVES]
ELEMENTWISE = fused_activations()
# (batch, widths, activations): batches 1..1000 across the 32-row block, widths 1..128.
CHAINS = [
    (1, (1, 1), ("linear",)),
    (7, (7, 33, 5), ("relu", "tanh")),
    (33, (7, 33, 5), ("sigmoid", "gelu")),
    (129, (128, 128, 128, 10), ("relu", "tanh", "sigmoid")),
    (1000, (128, 128, 128, 10), ("gelu", "relu", "linear")),
    (33, (64, 100, 3), ("tanh", "softmax")),
    (129, (64, 100, 3), ("gelu", "softmax")),
    (7, (3, 1, 17, 2), ("relu", "linear", "softmax")),
    (1000, (17, 65, 1), ("silu", "sigmoid")),
    (33, (128, 1, 128), ("linear", "relu")),
]
# Every elementwise activation in one chain (one module to build), one layer each.
ALL_WIDTHS = (9, 40, 17, 128, 33, 1, 64, 20, 100, 5, 7, 31, 12, 3)
ALL_ACTS = (*ELEMENTWISE, "softmax")


@pytest.fixture(scope="module")
def cp():
    return emulated_cupy()


@pytest.fixture(scope="module")
def launcher(cp):
    return fused_mlp.FusedMlpLauncher(cp)


# -- the generated kernels on the block emulator ----------------------------------------------------
@pytest.mark.parametrize("batch,widths,acts", CHAINS, ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_each_layer_matches_the_numpy_dense_forward(launcher, cp, batch, widths, acts):
    check_layers(launcher, cp, batch, widths, acts, seed=batch + sum(widths))


def test_every_activation_in_one_chain(launcher, cp):
    assert set(ALL_ACTS) == set(ACTIVATIONS)  # the table's every entry, softmax last
    check_layers(launcher, cp, 33, ALL_WIDTHS, ALL_ACTS, seed=3)


@pytest.mark.parametrize("batch,widths,acts", [CHAINS[1], CHAINS[4], CHAINS[6], CHAINS[8]],
                         ids=["7-relu-tanh", "1000-128x3", "129-softmax", "1000-17-65-1"])
def test_the_forward_equals_the_own_gemm_chain_bit_for_bit(launcher, cp, batch, widths, acts):
    """Same k order and fmaf rounding as kernels/gemm.cuh: the fused result is the same floats,
    kept or not (the kept arrays do not change what is computed)."""
    out, _, _, (x, ws, bs), _ = run_fused(launcher, cp, batch, widths, acts, seed=1, keep=False)
    kept, _, _, _, _ = run_fused(launcher, cp, batch, widths, acts, seed=1, keep=True)
    want = own_gemm_chain(cp, x, ws, bs, acts)
    if ACTIVATIONS[acts[-1]].rows:  # the NumPy backend's softmax is not the kernel's row loop
        close(host(out), want, 16 * EPS * np.abs(want) + 1e-30, "softmax")
        assert np.array_equal(host(kept), host(out))
        return
    assert np.array_equal(host(out), want) and np.array_equal(host(kept), want)


def test_layers_without_bias_and_kept_arrays_of_some_layers_only(launcher, cp):
    check_layers(launcher, cp, 129, (40, 70, 30, 6), ("relu", "elu", "softmax"), seed=5, bias=[False, True, False])
    x, ws, bs = draw(33, (40, 70, 30, 6), seed=6)
    g = Guarded(cp)
    out, y1, z0 = g(np.zeros((33, 6))), g(np.zeros((33, 30))), g(np.zeros((33, 70)))
    launcher.forward(g(x), [g(w) for w in ws], [g(b) for b in bs], ("gelu", "tanh", "linear"), out,
                     keep=[(None, z0), (y1, None), (None, None)])
    z0_ref = x @ ws[0] + bs[0]
    close(host(z0), z0_ref, 1e-4 * (1 + np.abs(z0_ref)), "z0")
    assert g.intact()


def test_one_launch_a_forward_over_32_row_blocks(launcher, cp):
    for batch, widths, acts in [(1000, (17, 65, 1), ("silu", "sigmoid")), (33, (64, 100, 3), ("tanh", "softmax"))]:
        x, ws, bs = draw(batch, widths)
        out = cp.zeros((batch, widths[-1]), np.float32)
        args = (cp.asarray(x), [cp.asarray(w) for w in ws], [cp.asarray(b) for b in bs], acts, out)
        launcher.forward(*args)  # built on first use
        before = len(cp.emulated.launches)
        with fake_cupy.count_device_ops() as ops:
            launcher.forward(*args)
        assert ops.total == 1 and ops.by_kind == {"kernel": 1} and list(ops.names) == [fused_mlp.KERNEL_NAME]
        (launch,) = cp.emulated.launches[before:]
        blocks = -(-batch // 32)
        assert (launch.grid, launch.block) == (blocks, 256)
        # One barrier after loading x, one after each layer but the last; a softmax's row phase one more.
        assert launch.figure("barriers") == blocks * (len(acts) + (acts[-1] == "softmax"))
        assert "race" not in launch.report and "uninitialised" not in launch.report


def test_an_empty_batch_launches_nothing(launcher, cp):
    x, ws, bs = draw(0, (7, 33, 5))
    args = (cp.asarray(x), [cp.asarray(w) for w in ws], [cp.asarray(b) for b in bs], ("relu", "tanh"),
            cp.zeros((0, 5), np.float32))
    with fake_cupy.count_device_ops() as ops:
        launcher.forward(*args)
    assert ops.total == 0


# -- float16 and bfloat16 on tensor cores ----------------------------------------------------------
HALF_CHAINS = [CHAINS[0], CHAINS[1], CHAINS[3], CHAINS[6], CHAINS[7], (33, (17, 128, 48, 16), ("relu", "gelu", "softmax"))]


@pytest.mark.parametrize("dtype", HALVES, ids=HALF_IDS)
@pytest.mark.parametrize("batch,widths,acts", HALF_CHAINS, ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_half_layers_match_the_numpy_dense_forward(launcher, cp, dtype, batch, widths, acts):
    check_layers(launcher, cp, batch, widths, acts, seed=batch + len(widths), dtype=dtype)


@pytest.mark.parametrize("dtype", HALVES, ids=HALF_IDS)
def test_half_every_activation_in_one_chain(launcher, cp, dtype):
    check_layers(launcher, cp, 7, ALL_WIDTHS, ALL_ACTS, seed=4, dtype=dtype)


@pytest.mark.parametrize("dtype", HALVES, ids=HALF_IDS)
def test_half_forward_equals_the_own_wmma_gemm_chain_on_the_emulator(launcher, cp, dtype):
    """The emulator's mma_sync sums in k order, as its own-GEMM one: the same floats, rounded the same
    (on a GPU the tensor cores' order of additions is theirs: the layer checks above hold there)."""
    batch, widths, acts = 129, (128, 128, 128, 10), ("relu", "tanh", "sigmoid")
    out, _, _, (x, ws, bs), _ = run_fused(launcher, cp, batch, widths, acts, seed=2, keep=False, dtype=dtype)
    assert np.array_equal(host(out), own_gemm_chain(cp, x, ws, bs, acts, dtype))


def test_half_one_launch_with_fragment_operations(launcher, cp):
    batch, widths, acts = 100, (7, 33, 5), ("relu", "softmax")
    x, ws, bs = draw(batch, widths, dtype=np.float16)
    args = (cp.asarray(x.astype(np.float16)), [cp.asarray(w.astype(np.float16)) for w in ws],
            [cp.asarray(b.astype(np.float16)) for b in bs], acts, cp.zeros((batch, 5), np.float16))
    launcher.forward(*args)
    before = len(cp.emulated.launches)
    with fake_cupy.count_device_ops() as ops:
        launcher.forward(*args)
    assert ops.total == 1 and list(ops.names) == [fused_mlp.KERNEL_NAME]
    (launch,) = cp.emulated.launches[before:]
    assert (launch.grid, launch.block) == (4, 256) and launch.figure("warp_syncs") > 0


# -- eligibility and the launcher's checks ------------------------------------------------------------
def test_eligible_says_why_not():
    ok = fused_mlp.eligible
    assert ok((784 // 7, 128, 10), ("relu", "softmax")) is None
    assert ok((1, 1), ("linear",), "float32") is None
    assert "1..128" in ok((129, 10), ("relu",))
    assert "1..128" in ok((10, 0), ("relu",))
    assert "float32, float16 or bfloat16, got float64" in ok((4, 4), ("relu",), np.float64)
    assert ok((4, 4), ("relu",), np.float16) is None
    assert "only as the last layer's" in ok((4, 4, 4), ("softmax", "relu"))
    assert "2 layers need 2 activations, got 1" in ok((4, 4, 4), ("relu",))
    assert "at least one layer" in ok((4,), ())
    assert "unknown activation" in ok((4, 4), ("nope",))


def test_the_launcher_refuses_bad_arguments_with_clear_errors(launcher):
    cp = fake_cupy
    x, ws = cp.zeros((4, 3), np.float32), [cp.zeros((3, 5), np.float32), cp.zeros((5, 2), np.float32)]
    bs, acts, out = [None, cp.zeros(2, np.float32)], ("relu", "linear"), cp.zeros((4, 2), np.float32)
    with pytest.raises(TypeError, match="x must be float32, float16 or bfloat16, got float64"):
        launcher.forward(x.astype(np.float64), ws, bs, acts, out)
    with pytest.raises(TypeError, match=r"weights\[1\] must be float32 \(as x\), got float16"):
        launcher.forward(x, [ws[0], ws[1].astype(np.float16)], bs, acts, out)
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape \(5, 2\), got \(4, 2\)"):
        launcher.forward(x, [ws[0], cp.zeros((4, 2), np.float32)], bs, acts, out)
    with pytest.raises(ValueError, match=r"out must have shape \(4, 2\), got \(2, 4\)"):
        launcher.forward(x, ws, bs, acts, cp.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"biases\[1\] must have shape \(2,\), got \(5,\)"):
        launcher.forward(x, ws, [None, cp.zeros(5, np.float32)], acts, out)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        launcher.forward(cp.zeros((3, 4), np.float32).T, ws, bs, acts, out)
    with pytest.raises(ValueError, match="x must be 2-D"):
        launcher.forward(cp.zeros(4, np.float32), ws, bs, acts, out)
    with pytest.raises(ValueError, match="2 weights need 2 biases and activations, got 1 and 2"):
        launcher.forward(x, ws, bs[:1], acts, out)
    with pytest.raises(ValueError, match="every width must be 1..128"):
        launcher.forward(cp.zeros((4, 129), np.float32), [cp.zeros((129, 2), np.float32)], [None], ("relu",), out)
    with pytest.raises(ValueError, match="only as the last layer's"):
        launcher.forward(x, ws, bs, ("softmax", "relu"), out)
    with pytest.raises(ValueError, match=r"keep\[-1\]'s y must be None"):
        launcher.forward(x, ws, bs, acts, out, keep=[(None, None), (cp.zeros((4, 2), np.float32), None)])
    with pytest.raises(ValueError, match=r"keep\[0\] z must have shape \(4, 5\)"):
        launcher.forward(x, ws, bs, acts, out, keep=[(None, cp.zeros((4, 2), np.float32)), (None, None)])
    with pytest.raises(ValueError, match="keep must hold 2"):
        launcher.forward(x, ws, bs, acts, out, keep=[(None, None)])
    with pytest.raises(ValueError, match="overlap"):
        launcher.forward(x, ws, bs, acts, out, keep=[(None, None), (None, out)])
    with pytest.raises(ValueError, match="overlap"):
        buf = cp.zeros(4 * 3 + 8, np.float32)
        launcher.forward(buf[:12].reshape(4, 3), ws, bs, acts, buf[4:12].reshape(4, 2))


def test_the_backend_offers_the_launcher():
    backend = CupyBackend(fake_cupy)
    assert isinstance(backend.fused_mlp, fused_mlp.FusedMlpLauncher) and backend.fused_mlp is backend.fused_mlp
    assert backend.fused_mlp.cp is fake_cupy


def test_the_generated_module_defines_the_kernel_with_a_layer_call_each():
    code = fused_mlp.module_code(np.float32, (7, 33, 5), ("relu", "softmax"))
    assert code is fused_mlp.module_code("float32", [7, 33, 5], ["relu", "softmax"])  # cached
    (params,) = EmulatedRawModule(code).kernels.values()
    assert [p.name for p in params] == ["x", "w0", "b0", "y0", "z0", "flags0", "w1", "b1", "y1", "z1", "flags1",
                                        "out", "B"]
    assert "fc_mlp_layer<7, 33, fc_act_relu, false>(fc_mlp_a, fc_mlp_b" in code
    assert "fc_mlp_layer_softmax<33, 5>(fc_mlp_b, fc_mlp_a" in code


# -- the checks must be able to fail ------------------------------------------------------------------
def _mutated(old: str, new: str) -> fused_mlp.FusedMlpLauncher:
    cp = emulated_cupy()

    def raw_module(code, options=(), **kw):
        assert code.count(old) == 1, old
        return EmulatedRawModule(code.replace(old, new), options)

    cp.RawModule = raw_module
    return fused_mlp.FusedMlpLauncher(cp)


@pytest.mark.parametrize("barrier", ["    }\n    __syncthreads();\n}\n\n// The row", "    if (!LAST) {\n        __syncthreads();\n    }\n}\n\n// A shared"])
def test_a_missing_barrier_is_a_race(barrier):
    broken = _mutated(barrier, barrier.replace("__syncthreads();", ";"))
    with pytest.raises(EmulatorFailure, match="(race on|uninitialised shared read of) fc_mlp_[ab]"):
        run_fused(broken, broken.cp, 33, (7, 33, 5), ("relu", "tanh"))


def test_a_missing_softmax_barrier_is_a_race():
    broken = _mutated("    __syncthreads();\n    if (t < FC_MLP_ROWS && row0 + t < B) {\n        fc_mlp_rows_view",
                      "    if (t < FC_MLP_ROWS && row0 + t < B) {\n        fc_mlp_rows_view")
    with pytest.raises(EmulatorFailure, match="race on fc_mlp_[ab]"):
        run_fused(broken, broken.cp, 33, (7, 33, 5), ("relu", "softmax"))


def test_a_dropped_row_check_writes_past_the_output():
    broken = _mutated("if (live) {\n                    out[at] = v;\n                }\n            } else {\n                dst[r * FC_MLP_LD",
                      "if (1) {\n                    out[at] = v;\n                }\n            } else {\n                dst[r * FC_MLP_LD")
    with pytest.raises(AssertionError, match="a write outside an output"):
        check_layers(broken, broken.cp, 31, (7, 33, 5), ("relu", "tanh"))  # one row past: inside the guard


def test_half_a_missing_barrier_after_staging_the_weights_is_a_race():
    old = "fc_from_float<T>(0.0f);\n        }\n        __syncthreads();"
    broken = _mutated(old, old.replace("__syncthreads();", ";"))
    with pytest.raises(EmulatorFailure, match="(race on|uninitialised shared read of) fc_mlp_ws"):
        run_fused(broken, broken.cp, 33, (7, 33, 5), ("relu", "tanh"), dtype=np.float16)


def test_half_padding_columns_left_unwritten_are_uninitialised_reads():
    old = "                dst[r * FC_MLP_HLD + c] = fc_from_float<T>(0.0f);"
    broken = _mutated(old, "                ;")
    with pytest.raises(EmulatorFailure, match="uninitialised shared read of fc_mlp_b"):
        run_fused(broken, broken.cp, 33, (7, 33, 5), ("relu", "tanh"), dtype=np.float16)


# -- the compile gate: the generated modules, as CuPy's RawModule compiles them ----------------------
GATE_CHAINS = [((1, 1), ("linear",)), ((7, 33, 5), ("relu", "tanh")), ((128, 128, 128, 10), ("gelu", "sigmoid", "softmax")),
               (ALL_WIDTHS, ALL_ACTS)]


@pytest.fixture(scope="module")
def gate():
    from support import cuda_compile as cc
    from support.compile_gate.compilers import require_cupy

    try:
        require_cupy()
        cc.choose_backend()
    except cc.CompileGateUnavailable as e:
        pytest.skip(str(e))
    from cupy._core import core

    assert set(core.assemble_cupy_compiler_options(fused_mlp.COMPILE_OPTIONS)) | {"-ftz=true"} == set(cc.cupy_options())
    return cc


@pytest.mark.parametrize("widths,acts", GATE_CHAINS, ids=["1-1", "7-33-5", "128x3-10-softmax", "every-activation"])
def test_the_generated_kernels_compile_for_sm80_and_sm90(gate, widths, acts):
    code = fused_mlp.module_code(np.float32, widths, acts)
    for arch in gate.ARCHS:
        cubin = gate.compile_source(code, arch, gate.choose_backend())
        assert fused_mlp.KERNEL_NAME.encode() in cubin, f"sm_{arch}"


@pytest.mark.parametrize("dtype", HALVES, ids=HALF_IDS)
def test_the_half_kernels_compile_for_sm80_and_sm90(gate, dtype):
    includes = [o[2:] for o in gate.cupy_options() if o.startswith("-I")]
    if gate.choose_backend() == "nvrtc" and not any(os.path.exists(os.path.join(d, "crt", "mma.h")) for d in includes):
        pytest.skip("crt/mma.h is not on CuPy's include path: install nvidia-cuda-crt==13.0.* (the verify extra)")
    for widths, acts in GATE_CHAINS:
        code = fused_mlp.module_code(dtype, widths, acts)
        assert "#include <mma.h>" in code
        for arch in gate.ARCHS:
            cubin = gate.compile_source(code, arch, gate.choose_backend())
            assert fused_mlp.KERNEL_NAME.encode() in cubin, f"sm_{arch} {widths}"


def test_the_compile_gate_rejects_a_broken_fused_kernel(gate):
    from cupy.cuda.compiler import CompileException

    code = fused_mlp.module_code(np.float32, (7, 33, 5), ("relu", "tanh"))
    broken = code.replace("fmaf(src[r * FC_MLP_LD + k], wk, acc[i])", "fmaf(src[r * FC_MLP_LD + k], wk)")
    assert broken != code
    with pytest.raises(CompileException):
        gate.compile_source(broken, "80", gate.choose_backend())


def _ptx(code: str) -> str:
    """The module's PTX for compute_80 (NVRTC asked for PTX instead of a cubin)."""
    from cupy.cuda import compiler
    from support import cuda_compile as cc

    original = compiler._get_arch_for_options_for_nvrtc
    compiler._get_arch_for_options_for_nvrtc = lambda arch=None: ("-arch=compute_80", "ptx")
    try:
        ptx, _ = compiler.compile_using_nvrtc(code, cc.cupy_options(), arch="80")
    finally:
        compiler._get_arch_for_options_for_nvrtc = original
    return ptx.decode() if isinstance(ptx, bytes) else ptx


def test_float32_runs_fma_and_the_halves_tensor_cores_with_float32_sums(gate):
    if gate.choose_backend() != "nvrtc":
        pytest.skip("the PTX check uses NVRTC")
    widths, acts = (7, 33, 5), ("relu", "softmax")
    f32 = _ptx(fused_mlp.module_code(np.float32, widths, acts))
    assert "wmma" not in f32 and re.search(r"fma\.rn(\.ftz)?\.f32", f32)
    for dtype in HALVES:
        ptx = _ptx(fused_mlp.module_code(dtype, widths, acts))
        assert "wmma.mma.sync.aligned.row.row.m16n16k16.f32." in ptx, dtype
        assert "wmma.store.d.sync.aligned.row.m16n16k16.shared.f32" in ptx, dtype


def test_the_launcher_builds_a_real_cupy_raw_module():
    """On the real CuPy (no device needed until a kernel is fetched): the source and options the
    emulator and the compile gate see."""
    cupy = pytest.importorskip("cupy")
    module = cupy.RawModule(code=fused_mlp.module_code(np.float32, (7, 5), ("relu",)), options=fused_mlp.COMPILE_OPTIONS)
    assert module.code.endswith("}\n") and module.options == fused_mlp.COMPILE_OPTIONS
