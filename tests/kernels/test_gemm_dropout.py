"""The own GEMMs' Dropout epilogues (kernels/gemm.cuh, gemm_wmma.cuh), on the host block emulator.

``dense_forward(..., dropout=, dropped=)`` writes y = act(x @ W + b) and yd = dropout(y) in one
launch; ``input_grad(..., dropout=)`` applies the previous layer's Dropout backward to dz @ W.T before
its activation derivative. Both must draw exactly the mask of the elementwise kernels (index offset
+ r * cols + c of the Philox stream of (seed, step + ctr[0])), bit for bit: the references are the
elementwise kernels ``fcgpu_bias_<act>_dropout_fwd`` / ``fcgpu_<act>_dropout_bwd`` / ``fcgpu_dropout``
compiled for the host (the CuPy backend on the stand-in) fed with the plain GEMM's output, and the
NumPy backend's dropout (its own Philox). float32 and the tensor-core float16 / bfloat16 kernels,
odd sizes; every launch is checked by the emulator for shared-memory races.
"""
from __future__ import annotations

import numpy as np
import pytest

from fcgpu.activations import ACTIVATIONS
from fcgpu.backends import philox
from fcgpu.backends.cupy import gemm
from fcgpu.testing import fake_cupy, stand_in_backend
from support.gemm_checks import NP, as_dtype, guarded, guards_intact, kept_values
from support.gemm_emulator import EmulatedRawModule, emulated_cupy

ml_dtypes = pytest.importorskip("ml_dtypes")
DTYPES = [np.dtype(np.float32), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
IDS = ["float32", "float16", "bfloat16"]
# (rows, in features, out features): rows 1, 7, 33, 129, 1000; widths off the 64 tile.
SHAPES = [(1, 3, 17), (7, 65, 130), (33, 130, 65), (129, 17, 100), (1000, 17, 3)]
SEED, STEP, OFFSET, RATE = 0x1234_5678_9ABC, 41, 3_000_000_007, 0.3


@pytest.fixture(scope="module")
def cp():
    return emulated_cupy()


@pytest.fixture(scope="module")
def launcher(cp):
    return gemm.GemmLauncher(cp)


@pytest.fixture(scope="module")
def elementwise():
    """The CuPy backend's elementwise kernels compiled for the host."""
    return stand_in_backend()


def bits(a) -> np.ndarray:
    """The bit patterns of a stand-in array (for exact comparison, NaN and -0.0 included)."""
    h = np.ascontiguousarray(np.asarray(a.get() if hasattr(a, "get") else a))
    return h.view({2: np.uint16, 4: np.uint32}[h.dtype.itemsize])


def same_bits(got, want, what: str) -> None:
    g, w = bits(got), bits(want)
    bad = g != w
    assert not bad.any(), f"{what}: {bad.sum()} of {bad.size} differ, first at {np.argwhere(bad)[0]}"


def counter(cp, value: int):
    """A captured step's device counter: ctr[0] = value (ctr[1] the batch, unread here)."""
    return cp.asarray(np.array([value, 12345], np.int64))


def forward_case(launcher, cp, shape, act, dtype, bias=True, keep=False, ctr_value=None, seed=0):
    """(x, W, b, y, z, yd, plain y, plain z) for one fused forward, all device arrays; the fused one guarded."""
    batch, m, n = shape
    rng = np.random.default_rng(seed)
    x = cp.asarray(as_dtype(rng.standard_normal((batch, m)), dtype).astype(dtype))
    w = cp.asarray(as_dtype(rng.standard_normal((m, n)) / np.sqrt(m), dtype).astype(dtype))
    b = cp.asarray(as_dtype(rng.standard_normal(n), dtype).astype(dtype)) if bias else None
    y, z, yd = (guarded(cp, np.zeros((batch, n)), dtype) for _ in range(3))
    ctr = None if ctr_value is None else counter(cp, ctr_value)
    got = launcher.dense_forward(x, w, b, act, y, z if keep else None,
                                 dropout=gemm.GemmDropout(SEED, STEP, ctr, OFFSET, RATE), dropped=yd)
    assert got is yd
    assert guards_intact(y) and guards_intact(yd) and guards_intact(z), "a write outside y, z or yd"
    y0, z0 = cp.empty((batch, n), dtype), cp.empty((batch, n), dtype)
    launcher.dense_forward(x, w, b, act, y0, z0 if keep else None)
    return x, w, b, y, z, yd, y0, z0


# -- forward -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_keeps_y_and_drops_it_as_the_numpy_backend(launcher, cp, shape, dtype):
    for ctr_value in (None, 7):
        _, _, _, y, _, yd, y0, _ = forward_case(launcher, cp, shape, "relu", dtype, ctr_value=ctr_value, seed=sum(shape))
        same_bits(y, y0, f"y {shape} {dtype}")  # the undropped y, as the GEMM without dropout writes it
        want = np.empty(y0.shape, dtype)
        NP.dropout_forward(np.asarray(y0), want, SEED, STEP + (ctr_value or 0), RATE, OFFSET)
        same_bits(yd, want, f"yd {shape} {dtype} ctr={ctr_value}")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_float32_forward_is_the_elementwise_bias_act_dropout_kernel(launcher, cp, elementwise, shape):
    """fc_bias_act_dropout_forward on the host, fed the GEMM's x @ W (exact in float32): y and yd identical."""
    for act in ("sigmoid", "relu"):  # the fused elementwise kernel exists for the activations whose backward reads y
        x, w, b, y, z, yd, _, _ = forward_case(launcher, cp, shape, act, np.float32, ctr_value=3)
        xw = cp.empty(y.shape, np.float32)
        launcher.dense_forward(x, w, None, "linear", xw)
        y_ref, yd_ref = cp.empty_like(xw), cp.empty_like(xw)
        elementwise.bias_act_dropout_forward(xw, b, act, y_ref, yd_ref, SEED, STEP + 3, RATE, OFFSET)
        same_bits(y, y_ref, f"y ({act})")
        same_bits(yd, yd_ref, f"yd ({act})")


@pytest.mark.parametrize("dtype", DTYPES[1:], ids=IDS[1:])
def test_16_bit_forward_is_the_elementwise_dropout_of_y(launcher, cp, elementwise, dtype):
    _, _, _, y, z, yd, y0, z0 = forward_case(launcher, cp, (33, 130, 65), "gelu", dtype, keep=True, ctr_value=2)
    same_bits(z, z0, "z")
    want = cp.empty(y.shape, dtype)
    elementwise.dropout_forward(y0, want, SEED, STEP + 2, RATE, OFFSET)
    same_bits(yd, want, "yd")


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("act", gemm.fused_activations())
def test_every_activation_then_dropout(launcher, cp, dtype, act):
    keep = ACTIVATIONS[act].backward_from == "z"
    _, _, _, y, z, yd, y0, z0 = forward_case(launcher, cp, (7, 40, 65), act, dtype, keep=keep, seed=len(act))
    same_bits(y, y0, f"y ({act})")
    if keep:
        same_bits(z, z0, f"z ({act})")
    want = np.empty(y0.shape, dtype)
    NP.dropout_forward(np.asarray(y0), want, SEED, STEP, RATE, OFFSET)
    same_bits(yd, want, f"yd ({act})")


def test_the_mask_follows_the_counter_and_the_offset(launcher, cp):
    """ctr[0] is read at run time (a captured step replays with a new step), and each element has its own index."""
    masks = []
    for ctr_value, offset in ((0, OFFSET), (1, OFFSET), (0, OFFSET + 1)):
        yd = cp.empty((33, 65), np.float32)
        x, w = cp.ones((33, 17), np.float32), cp.ones((17, 65), np.float32)
        launcher.dense_forward(x, w, None, "linear", cp.empty((33, 65), np.float32),
                               dropout=(SEED, STEP, counter(cp, ctr_value), offset, RATE), dropped=yd)
        masks.append(np.asarray(yd) == 0)
        assert (masks[-1] == philox.dropped(SEED, STEP + ctr_value, offset, (33, 65),
                                            philox.dropout_constants(RATE)[0])).all()
    assert (masks[0] != masks[1]).any() and (masks[0] != masks[2]).any()
    assert 0.2 < masks[0].mean() < 0.4


# -- input gradient ------------------------------------------------------------------------------------
def input_grad_case(launcher, cp, shape, act, dtype, ctr_value=None, seed=0, in_place=False):
    """(dx fused, dz @ W.T from the plain kernel, kept) for one fused input gradient."""
    batch, m, n = shape
    rng = np.random.default_rng(seed + 1)
    dz = cp.asarray(as_dtype(rng.standard_normal((batch, n)), dtype).astype(dtype))
    w = cp.asarray(as_dtype(rng.standard_normal((m, n)) / np.sqrt(n), dtype).astype(dtype))
    kept = None if act is None else cp.asarray(kept_values(act, (batch, m), rng, dtype).astype(dtype))
    ctr = None if ctr_value is None else counter(cp, ctr_value)
    drop = gemm.GemmDropout(SEED, STEP, ctr, OFFSET, RATE)
    if in_place:
        dx = kept.copy()
        launcher.input_grad(dz, w, dx, act, dx, dropout=drop)
    else:
        dx = guarded(cp, np.zeros((batch, m)), dtype)
        launcher.input_grad(dz, w, dx, act, kept, dropout=drop)
        assert guards_intact(dx), "a write outside dx"
    g = cp.empty((batch, m), dtype)
    launcher.input_grad(dz, w, g)
    return dx, g, kept


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_input_grad_is_the_elementwise_act_dropout_backward(launcher, cp, elementwise, shape, dtype):
    for act, ctr_value in (("tanh", 5), ("relu", None)):
        dx, g, kept = input_grad_case(launcher, cp, shape, act, dtype, ctr_value, seed=sum(shape))
        want = cp.empty(g.shape, dtype)
        elementwise.act_dropout_backward(kept, g, act, want, SEED, STEP + (ctr_value or 0), RATE, OFFSET)
        same_bits(dx, want, f"dx ({act}, {shape}, {dtype})")


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_input_grad_without_activation_is_the_numpy_dropout_backward(launcher, cp, dtype):
    for act in (None, "linear"):
        dx, g, _ = input_grad_case(launcher, cp, (129, 65, 130), act, dtype, ctr_value=9)
        want = np.empty(g.shape, dtype)
        NP.dropout_backward(np.asarray(g), want, SEED, STEP + 9, RATE, OFFSET)
        same_bits(dx, want, f"dx ({act}, {dtype})")


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("act", gemm.fused_activations())
def test_input_grad_applies_every_activation_derivative_after_the_dropout(launcher, cp, elementwise, dtype, act):
    """The two elementwise kernels (fcgpu_dropout on dz @ W.T, then fcgpu_<act>_bwd), for every
    activation: also those whose backward reads z, which have no fused elementwise kernel."""
    dx, g, kept = input_grad_case(launcher, cp, (7, 65, 40), act, dtype, ctr_value=1, seed=len(act))
    masked, want = cp.empty(g.shape, dtype), cp.empty(g.shape, dtype)
    elementwise.dropout_forward(g, masked, SEED, STEP + 1, RATE, OFFSET)
    elementwise.act_backward(kept, masked, act, want)
    same_bits(dx, want, f"dx ({act}, {dtype})")


def test_input_grad_may_overwrite_what_the_previous_layer_kept(launcher, cp, elementwise):
    dx, g, kept = input_grad_case(launcher, cp, (33, 17, 65), "sigmoid", np.float32, ctr_value=4, in_place=True)
    want = cp.empty(g.shape, np.float32)
    elementwise.act_dropout_backward(kept, g, "sigmoid", want, SEED, STEP + 4, RATE, OFFSET)
    same_bits(dx, want, "dx in place")


# -- launches and checks ---------------------------------------------------------------------------------
def test_each_dropout_call_is_one_launch_of_the_tile_grid(launcher, cp):
    x, w = fake_cupy.zeros((129, 65), np.float32), fake_cupy.zeros((65, 130), np.float32)
    y, yd = fake_cupy.zeros((129, 130), np.float32), fake_cupy.zeros((129, 130), np.float32)
    dx = fake_cupy.zeros((129, 65), np.float32)
    xh, wh = x.astype(np.float16), w.astype(np.float16)
    yh, ydh, dxh = y.astype(np.float16), yd.astype(np.float16), dx.astype(np.float16)
    ctr = counter(fake_cupy, 0)
    before = len(cp.emulated.launches)
    with fake_cupy.count_device_ops() as ops:
        launcher.dense_forward(x, w, None, "silu", y, dropout=(1, 2, ctr, 0, 0.5), dropped=yd)
        launcher.input_grad(y, w, dx, "relu", x, dropout=(1, 2, None, 0, 0.5))
        launcher.dense_forward(xh, wh, None, "relu", yh, dropout=(1, 2, None, 0, 0.5), dropped=ydh)
        launcher.input_grad(yh, wh, dxh, None, dropout=(1, 2, ctr, 0, 0.5))
    assert ops.total == 4 and ops.by_kind == {"kernel": 4}
    assert list(ops.names) == ["fcgpu_gemm_fwd_drop_silu", "fcgpu_gemm_dx_drop_relu", "fcgpu_gemm_fwd_drop_relu_f16",
                               "fcgpu_gemm_dx_drop_linear_f16"]
    launches = cp.emulated.launches[before:]
    assert [(a.grid, a.block) for a in launches] == [(9, 256), (6, 256), (9, 128), (6, 128)]


def test_the_dropout_arguments_are_checked(launcher):
    cp = fake_cupy
    x, w, y, yd = (cp.zeros(s, np.float32) for s in ((4, 3), (3, 5), (4, 5), (4, 5)))
    drop = (1, 2, None, 0, 0.5)
    with pytest.raises(TypeError, match="dropout and dropped go together"):
        launcher.dense_forward(x, w, None, "relu", y, dropout=drop)
    with pytest.raises(TypeError, match="dropout and dropped go together"):
        launcher.dense_forward(x, w, None, "relu", y, dropped=yd)
    with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\), got 1.0"):
        launcher.dense_forward(x, w, None, "relu", y, dropout=(1, 2, None, 0, 1.0), dropped=yd)
    with pytest.raises(ValueError, match="dropout offset must be an integer"):
        launcher.dense_forward(x, w, None, "relu", y, dropout=(1, 2, None, -1, 0.5), dropped=yd)
    with pytest.raises(TypeError, match="GemmDropout"):
        launcher.dense_forward(x, w, None, "relu", y, dropout=(1, 2, 0.5), dropped=yd)
    with pytest.raises(TypeError, match="dropout ctr must be int64, got int32"):
        launcher.dense_forward(x, w, None, "relu", y, dropout=(1, 2, cp.zeros(2, np.int32), 0, 0.5), dropped=yd)
    with pytest.raises(ValueError, match="dropout ctr must have at least 1 element"):
        launcher.dense_forward(x, w, None, "relu", y, dropout=(1, 2, cp.zeros(0, np.int64), 0, 0.5), dropped=yd)
    with pytest.raises(ValueError, match="dropped must have shape"):
        launcher.dense_forward(x, w, None, "relu", y, dropout=drop, dropped=cp.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="out and dropped overlap"):
        launcher.dense_forward(x, w, None, "relu", y, dropout=drop, dropped=y)
    with pytest.raises(TypeError, match="needs kept_prev"):
        launcher.input_grad(y, w, x, "relu", dropout=drop)


# -- the checks must be able to fail -----------------------------------------------------------------------
def _mutated(old: str, new: str, dtype=np.float32) -> gemm.GemmLauncher:
    code = gemm.module_code(dtype)
    assert code.count(old) == 1, old
    cp = emulated_cupy()
    cp.RawModule = lambda code, options=(), **kw: EmulatedRawModule(code.replace(old, new), options)
    return gemm.GemmLauncher(cp)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("old, new", [
    ("(unsigned long long)(d.offset + at)", "(unsigned long long)(d.offset + at + 1)"),  # the mask one element off
    ("ctr ? step + (unsigned long long)ctr[0] : step", "step"),  # the device counter ignored
])
def test_a_wrong_mask_is_caught(dtype, old, new):
    broken = _mutated(old, new, dtype)
    with pytest.raises(AssertionError, match="yd .* differ"):
        test_forward_keeps_y_and_drops_it_as_the_numpy_backend(broken, broken.cp, (33, 17, 65), np.dtype(dtype))
    with pytest.raises(AssertionError, match="dx .* differ"):
        test_input_grad_without_activation_is_the_numpy_dropout_backward(broken, broken.cp, np.dtype(dtype))
