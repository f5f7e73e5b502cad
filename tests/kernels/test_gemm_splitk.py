"""The own GEMMs' split-K weight gradient (fcgpu.backends.cupy.gemm_splitk), on the host block emulator.

The batch is cut into S slices whose partial dW and db go to a caller's float32 workspace, then
an ordered reduce sums them: against float64 NumPy within the float32 summation bound, bit for bit
the plain kernel's result when S = 1, deterministic, two launches, no write outside dW, db or the
workspace's used part; float32 and the tensor-core float16 / bfloat16 kernels, dW/db of the
operands' type or float32.
"""
from __future__ import annotations

import numpy as np
import pytest

from fcgpu.backends.cupy import gemm, gemm_splitk
from fcgpu.testing import fake_cupy
from support.gemm_checks import EPS, as_dtype, close, guarded, guards_intact, host, unit_roundoff
from support.gemm_emulator import EmulatedRawModule, emulated_cupy

ml_dtypes = pytest.importorskip("ml_dtypes")
F32, F16, BF16 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)
# (operand dtype, dW/db dtype)
PAIRS = [(F32, F32), (F16, F16), (F16, F32), (BF16, BF16), (BF16, F32)]
PAIR_IDS = ["f32", "f16", "f16-f32", "bf16", "bf16-f32"]
# (batch, in features, out features, slices or None for the rule)
CASES = [(1, 1, 1, None), (7, 65, 33, 4), (33, 130, 65, 5), (129, 65, 130, 3), (1000, 17, 3, None),
         (1024, 130, 10, None), (4096, 3, 17, None)]


@pytest.fixture(scope="module")
def cp():
    return emulated_cupy()


@pytest.fixture(scope="module")
def launcher(cp):
    return gemm.GemmLauncher(cp)


def operands(shape, dtype, seed=0):
    batch, m, n = shape
    rng = np.random.default_rng(seed)
    return as_dtype(rng.standard_normal((batch, m)), dtype), as_dtype(rng.standard_normal((batch, n)), dtype)


def run_splitk(launcher, cp, x, dz, dtype, out_dtype, slices=None, bias=True, spare=0):
    """(dW, db, workspace) after one split-K call on NaN-guarded arrays (workspace ``spare`` elements longer)."""
    (batch, m), n = x.shape, dz.shape[1]
    need = gemm_splitk.splitk_workspace_shape(batch, m, n, slices)[0]
    ws = guarded(cp, np.zeros(need + spare), np.float32)
    dw, db = guarded(cp, np.zeros((m, n)), out_dtype), guarded(cp, np.zeros(n), out_dtype)
    got = launcher.weight_grad_splitk(guarded(cp, x, dtype), guarded(cp, dz, dtype), dw, db if bias else None, ws,
                                      slices=slices)
    assert got is dw
    assert guards_intact(dw) and guards_intact(db) and guards_intact(ws), "a write outside dW, db or the workspace"
    return dw, db, ws


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:3])) + f"-S{c[3]}")
def test_splitk_matches_float64_numpy(launcher, cp, case, pair):
    *shape, slices = case
    dtype, out_dtype = pair
    x, dz = operands(shape, dtype, seed=sum(shape))
    dw, db, _ = run_splitk(launcher, cp, x, dz, dtype, out_dtype, slices)
    x64, dz64 = x.astype(np.float64), dz.astype(np.float64)
    batch = shape[0]
    u = 0.0 if out_dtype == F32 else unit_roundoff(out_dtype)
    tiny = 1e-30 if out_dtype == F32 else float(np.finfo(out_dtype).smallest_subnormal)
    # Each slice sums its rows (<= batch terms), then S partials: at most batch + S + 2 roundings.
    s = gemm_splitk.splitk_plan(*shape, slices)[0]
    want_w, want_b = x64.T @ dz64, dz64.sum(0)
    tol_w = 2 * (batch + s + 2) * EPS * (np.abs(x64).T @ np.abs(dz64)) + u * np.abs(want_w) + tiny
    tol_b = 2 * (batch + s + 2) * EPS * np.abs(dz64).sum(0) + u * np.abs(want_b) + tiny
    close(host(dw).astype(np.float64), want_w, tol_w, f"dW {shape} S={s} {dtype}->{out_dtype}")
    close(host(db).astype(np.float64), want_b, tol_b, f"db {shape} S={s} {dtype}->{out_dtype}")


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("shape", [(33, 130, 65), (1000, 17, 3), (129, 65, 130)], ids=lambda s: "x".join(map(str, s)))
def test_one_slice_is_the_plain_kernel_bit_for_bit(launcher, cp, shape, pair):
    dtype, out_dtype = pair
    x, dz = operands(shape, dtype, seed=1)
    dw, db, _ = run_splitk(launcher, cp, x, dz, dtype, out_dtype, slices=1)
    dw0, db0 = guarded(cp, np.zeros(dw.shape), out_dtype), guarded(cp, np.zeros(db.shape), out_dtype)
    launcher.weight_grad(guarded(cp, x, dtype), guarded(cp, dz, dtype), dw0, db0)
    assert np.array_equal(host(dw), host(dw0)) and np.array_equal(host(db), host(db0))


def test_the_sums_are_deterministic_and_the_slices_differ_from_one(launcher, cp):
    x, dz = operands((1000, 17, 3), F32, seed=3)
    first = [host(a) for a in run_splitk(launcher, cp, x, dz, F32, F32)[:2]]
    again = [host(a) for a in run_splitk(launcher, cp, x, dz, F32, F32, spare=100)[:2]]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    one = host(run_splitk(launcher, cp, x, dz, F32, F32, slices=1)[0])
    assert not np.array_equal(first[0], one)  # another summation order: the low bits move


def test_without_a_bias_db_is_left_alone(launcher, cp):
    x, dz = operands((129, 65, 130), F16, seed=4)
    _, db, _ = run_splitk(launcher, cp, x, dz, F16, F32, slices=3, bias=False)
    assert (host(db) == 0).all()


def test_two_launches_the_slices_grid_then_the_reduce(launcher, cp):
    x, dz = fake_cupy.zeros((1000, 65), np.float32), fake_cupy.zeros((1000, 130), np.float32)
    xh, dzh = x.astype(np.float16), dz.astype(np.float16)
    dw, db = fake_cupy.zeros((65, 130), np.float32), fake_cupy.zeros(130, np.float32)
    s, rows = gemm_splitk.splitk_plan(1000, 65, 130)
    ws = fake_cupy.zeros(gemm_splitk.splitk_workspace_shape(1000, 65, 130), np.float32)
    before = len(cp.emulated.launches)
    with fake_cupy.count_device_ops() as ops:
        launcher.weight_grad_splitk(x, dz, dw, db, ws)
        launcher.weight_grad_splitk(xh, dzh, dw, db, ws)
    assert ops.total == 4 and ops.by_kind == {"kernel": 4}
    assert list(ops.names) == ["fcgpu_gemm_dw_splitk", "fcgpu_gemm_dw_reduce", "fcgpu_gemm_dw_splitk_f16",
                               "fcgpu_gemm_dw_reduce_f16_f32"]
    launches = cp.emulated.launches[before:]
    reduce_blocks = -(-(65 * 130 + 130) // 256)
    assert [(a.grid, a.block) for a in launches] == [(6 * s, 256), (reduce_blocks, 256), (6 * s, 128),
                                                     (reduce_blocks, 256)]


def test_the_slice_rule():
    plan = gemm_splitk.splitk_plan
    s, rows = plan(4096, 784, 10)  # the narrow case: 13 tiles
    assert 13 * s >= gemm_splitk.TARGET_BLOCKS * 0.9 and s <= gemm_splitk.MAX_SLICES
    assert rows % gemm_splitk.ROW_STEP == 0 and rows >= gemm_splitk.MIN_SLICE_ROWS and s * rows >= 4096 > (s - 1) * rows
    assert plan(4096, 1024, 1024)[0] <= 2  # 256 tiles already fill the GPU
    assert plan(100, 3, 3) == (1, 128)  # too few rows to split
    assert plan(0, 3, 3) == (1, 0)
    assert plan(4096, 3, 17)[0] == gemm_splitk.MAX_SLICES
    assert plan(5, 2, 2, slices=4) == (3, 2)  # forced: ceil(5 / 4) = 2 rows a slice, 3 slices
    assert gemm_splitk.splitk_workspace_shape(4096, 784, 10) == (s * (784 * 10 + 10),)


def test_the_splitk_arguments_are_checked(launcher):
    cp = fake_cupy
    x, dz = cp.zeros((256, 3), np.float32), cp.zeros((256, 5), np.float32)
    dw, db = cp.zeros((3, 5), np.float32), cp.zeros(5, np.float32)
    need = gemm_splitk.splitk_workspace_shape(256, 3, 5)[0]
    with pytest.raises(ValueError, match=f"workspace must have at least {need} elements"):
        launcher.weight_grad_splitk(x, dz, dw, db, cp.zeros(need - 1, np.float32))
    with pytest.raises(TypeError, match="workspace must be float32, got float16"):
        launcher.weight_grad_splitk(x, dz, dw, db, cp.zeros(need, np.float16))
    with pytest.raises(ValueError, match="workspace must be 1-D"):
        launcher.weight_grad_splitk(x, dz, dw, db, cp.zeros((need, 1), np.float32))
    with pytest.raises(ValueError, match="slices must be >= 1"):
        launcher.weight_grad_splitk(x, dz, dw, db, cp.zeros(need, np.float32), slices=0)
    with pytest.raises(ValueError, match="different batches"):
        launcher.weight_grad_splitk(x, dz[:5], dw, db, cp.zeros(need, np.float32))
    ws = cp.zeros(need + 15, np.float32)
    with pytest.raises(ValueError, match="dW and workspace overlap"):
        launcher.weight_grad_splitk(x, dz, ws[:15].reshape(3, 5), db, ws[10:10 + need])


def test_an_empty_batch_gives_zeros(launcher):
    cp = fake_cupy
    dw, db = cp.full((3, 5), np.nan, np.float32), cp.full(5, np.nan, np.float32)
    launcher.weight_grad_splitk(cp.zeros((0, 3), np.float32), cp.zeros((0, 5), np.float32), dw, db,
                                cp.zeros(gemm_splitk.splitk_workspace_shape(0, 3, 5), np.float32))
    assert (host(dw) == 0).all() and (host(db) == 0).all()


# -- the checks must be able to fail -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("old, new", [
    ("r.row0 = (long long)s * R;", "r.row0 = 0;"),  # every slice over the first rows
    ("for (int s = 1; s < S; ++s)", "for (int s = 1; s < S - 1; ++s)"),  # the last slice left out of the sum
])
def test_a_wrong_slice_or_reduce_is_caught(dtype, old, new):
    code = gemm.module_code(dtype)
    assert code.count(old) == 1, old
    cp = emulated_cupy()
    cp.RawModule = lambda code, options=(), **kw: EmulatedRawModule(code.replace(old, new), options)
    broken = gemm.GemmLauncher(cp)
    pair = (np.dtype(dtype), np.dtype(dtype))
    with pytest.raises(AssertionError, match="differ"):
        test_splitk_matches_float64_numpy(broken, cp, (129, 65, 130, 3), pair)
