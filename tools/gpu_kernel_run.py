"""Launch every block-level kernel and one mixed-precision training step on the GPU, for
compute-sanitizer (``tools/gpu_check.py`` runs it under racecheck, synccheck and memcheck);
``--stand-in`` runs it on the host stand-in instead (a dry run of the script).

Rows of 1, 10, 1000 and 100,000 columns for the softmax kernels (a warp a row) and the loss steps
(block-reduced sums), each compared with the NumPy backend so that a wrong result fails too.
"""
from __future__ import annotations

import sys

import numpy as np

import fcgpu as fc
from fcgpu.backends.numpy.backend import NumpyBackend


def main() -> int:
    if "--stand-in" in sys.argv:  # a dry run of this script on the host stand-in
        from fcgpu.testing import stand_in_backend

        gpu = stand_in_backend()
    else:
        from fcgpu.backends.cupy.backend import CupyBackend

        gpu = CupyBackend()
    host = NumpyBackend()
    rng = np.random.default_rng(0)
    failures = []
    for cols in (1, 10, 1000, 100_000):
        z = (rng.standard_normal((4, cols)) * 3).astype(np.float32)
        labels = rng.integers(0, cols, 4)
        p, y = z, (rng.random(z.shape) > 0.5).astype(np.float32)
        cases = {
            "softmax_xent_step": lambda b, a, l, o, acc: b.softmax_xent_step(a, l, 0.25, 1.0, True, o, acc),
            "mse_step": lambda b, a, l, o, acc: b.mse_step(a, l, 0.25, 1.0, o, acc),
            "bce_logits_step": lambda b, a, l, o, acc: b.bce_logits_step(a, l, 0.25, 1.0, True, o, acc),
        }
        for name, call in cases.items():
            second = labels if name == "softmax_xent_step" else y
            want, want_acc = np.zeros_like(z), np.zeros(2)
            call(host, p, second, want, want_acc)
            out, acc = gpu.zeros(z.shape, np.float32), gpu.zeros((2,), np.float64)
            call(gpu, gpu.from_numpy(p), gpu.from_numpy(second), out, acc)
            gpu.synchronize()
            if not (np.allclose(gpu.to_numpy(out), want, rtol=1e-3, atol=1e-6)
                    and np.allclose(gpu.to_numpy(acc), want_acc, rtol=1e-3)):
                failures.append(f"{name} at {cols} columns")
        ys = gpu.bias_act_forward(gpu.from_numpy(z), None, "softmax", gpu.zeros(z.shape, np.float32))
        if not np.allclose(gpu.to_numpy(ys), host.bias_act_forward(z.copy(), None, "softmax", np.zeros_like(z)),
                           rtol=1e-3, atol=1e-7):
            failures.append(f"softmax at {cols} columns")
    with fc.use_backend(gpu):
        model = fc.Sequential([fc.Dense(512, activation="relu", dtype="mixed_float16"), fc.Dense(10, dtype="mixed_float16")])
        model.build((None, 784))
    model.compile(loss="softmax_cross_entropy", optimizer="adam")
    model.fit(rng.normal(size=(256, 784)).astype(np.float32), rng.integers(0, 10, 256), batch_size=128, epochs=1, verbose=0)
    print("failures:", failures or "none")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
