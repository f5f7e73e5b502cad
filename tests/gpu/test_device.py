"""What only a real GPU can answer: denormals flushed, many blocks and strided outputs, and the
code CuPy generates on the device being the code the CPU compile gate checked. Every kernel
against the NumPy backend with GPU tolerances is in tests/kernels/test_kernels_host.py (its gpu variant).

Run on a machine with a CUDA device: ``pytest -m gpu`` (every ``backend``-fixture test
elsewhere also has a real-CuPy variant selected by ``-m gpu``). Without a usable device each test
is skipped with the reason fcgpu gives (no cupy / no driver / no device / kernel failed).

Tolerances are kernel_checks.GPU: CuPy compiles with -ftz=true (float32 denormals flush to
zero), the device fuses multiply-adds, and its expf/tanhf are a few ulp from glibc's.
"""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from support import kernel_checks as kc

pytestmark = pytest.mark.gpu

def test_device_is_real(gpu) -> None:
    info = gpu.info()
    assert info["device"] and info["device"] != "host stand-in"
    assert info["cuda_runtime"] > 0 and info["cuda_driver"] > 0
    # the roofline's peaks were read from the device's attributes
    assert "peak_error" not in info, info.get("peak_error")
    assert info["peak_gflops"] > 0 and info["peak_gbps"] > 0


def test_auto_picks_cupy_on_a_gpu(gpu) -> None:
    backend, reason = fc.backends.resolve_backend("auto")
    assert backend.name == "cupy", reason


def test_float32_denormals_are_flushed(gpu) -> None:
    """CuPy compiles with -ftz=true: sigmoid(-87.5) = 9.9e-39 (a denormal) comes out as 0 on the device."""
    z = gpu.from_numpy(np.array([[-87.5, -80.0]], np.float32))
    got = gpu.to_numpy(gpu.bias_act_forward(z, None, "sigmoid", gpu.empty((1, 2), np.float32)))
    assert got[0, 0] == 0.0
    assert got[0, 1] > 0.0  # 1.8e-35 is normal and survives


def test_large_and_strided_arrays(gpu, rng) -> None:
    """Many blocks of the grid-stride loop, and outputs that are views, read and written in place."""
    z = rng.standard_normal((1500, 1100)).astype(np.float32)
    b = rng.standard_normal(1100).astype(np.float32)
    got = gpu.to_numpy(gpu.bias_act_forward(gpu.from_numpy(z), gpu.from_numpy(b), "tanh", gpu.empty(z.shape, np.float32)))
    want = np.tanh(z + b)
    kc.assert_ulp(got, want, kc.GPU.act("tanh").forward + 1, "tanh forward, 1.65M elements")
    buf = gpu.zeros((1500, 2200), np.float32)
    view = buf[:, ::2]
    gpu.bias_act_forward(gpu.from_numpy(z), gpu.from_numpy(b), "relu", view)
    host = gpu.to_numpy(buf)
    np.testing.assert_array_equal(host[:, ::2], np.maximum(z + b, 0))
    assert not host[:, 1::2].any()


def test_cupy_compiles_the_sources_the_compile_gate_checks(gpu) -> None:
    """The code CuPy generated on the device is one of the variants the CPU compile gate compiled."""
    from fcgpu.backends.cupy.backend import KERNEL_SPECS
    from support import cuda_compile as cc

    f = np.float32
    z, b = gpu.zeros((4, 3), f), gpu.zeros((3,), f)
    gpu.bias_act_forward(z, b, "relu", gpu.empty((4, 3), f))
    gpu.act_backward(z, z, "sigmoid", gpu.empty((4, 3), f))
    gpu.softmax_xent_grad(z, gpu.zeros((4, 1), f), gpu.from_numpy(np.zeros(4, np.int64)), 0.25, gpu.empty((4, 3), f))
    gpu.adam_update(z, z, gpu.zeros((4, 3), f), gpu.zeros((4, 3), f), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False)
    for name in ("fcgpu_bias_relu_fwd", "fcgpu_sigmoid_bwd", "fcgpu_softmax_xent_grad_ids", "fcgpu_adam"):
        spec = KERNEL_SPECS[name]
        try:
            swept = {cc.kernel_code(spec, v) for v in cc.sweep_variants({name: spec}, dtypes=("float32",))}
        except cc.CompileGateUnavailable as e:  # another CuPy release than the gate is pinned to
            pytest.skip(f"the compile gate's CuPy is not installed here: {e}")
        generated = set(gpu.kernel(name).cached_codes.values())
        assert generated and generated <= swept, name


def test_every_source_cupy_generated_in_training_was_checked_by_the_gate(gpu, rng) -> None:
    """Train small models in each dtype, loss and optimizer, then compare every source CuPy
    generated on the device (every layout the run used) with the variants the gate compiled."""
    from fcgpu.backends.cupy.backend import KERNEL_SPECS
    from support import cuda_compile as cc

    x = rng.standard_normal((40, 5))
    with fc.use_backend(gpu):
        for dtype in ("float32", "float64", "float16"):
            for act in ("relu", "sigmoid", "tanh"):
                for loss, y, out in (("softmax_cross_entropy", rng.integers(0, 3, 40), 3),
                                     ("binary_crossentropy", rng.integers(0, 2, 40), 1),
                                     ("mse", rng.standard_normal(40), 1)):
                    last = "sigmoid" if loss == "binary_crossentropy" else None
                    for opt in (fc.optimizers.SGD(lr=0.01, momentum=0.9), fc.optimizers.Adam(lr=1e-3)):
                        model = fc.Sequential([fc.Dense(4, activation=act, dtype=dtype), fc.Dense(out, activation=last, dtype=dtype)])
                        model.compile(loss=loss, optimizer=opt, metrics=["accuracy"])
                        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
                        model.evaluate(x, y)
    checked = 0
    for name, spec in KERNEL_SPECS.items():
        generated = set(gpu.kernel(name).cached_codes.values())
        if not generated:
            continue
        try:
            swept = {cc.kernel_code(spec, v) for v in cc.sweep_variants({name: spec})}
        except cc.CompileGateUnavailable as e:
            pytest.skip(f"the compile gate's CuPy is not installed here: {e}")
        assert generated <= swept, name
        checked += 1
    assert checked >= 10
