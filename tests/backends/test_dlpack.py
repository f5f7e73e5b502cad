"""DLPack input: torch CPU tensors on the NumPy backend and CUDA arrays on the CuPy backend are
taken without a copy, and what backward reads is still the layer's own."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc


class CudaArray:
    """A DLPack producer that reports a CUDA device; its memory is host memory, as the stand-in's
    device memory is (the shape of a torch/JAX CUDA tensor for the CuPy backend's code)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.shape, self.ndim, self.dtype = a.shape, a.ndim, a.dtype

    def __dlpack__(self, **kwargs):
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return (2, 0)


def test_torch_cpu_tensors_on_the_numpy_backend(rng):
    torch = pytest.importorskip("torch")
    with fc.use_backend("numpy") as backend:
        t = torch.from_numpy(rng.normal(size=(5, 3)).astype(np.float32))
        x = backend.asarray(t, np.float32)
        assert isinstance(x, np.ndarray) and np.shares_memory(x, t.numpy())  # no copy
        layer = fc.Dense(4, activation="tanh")
        y = layer(t)
        expected = np.tanh(t.numpy() @ layer.get_weights()[0])
        np.testing.assert_allclose(fc.to_numpy(y), expected, rtol=1e-6)
        dy = np.ones((5, 4), np.float32)
        layer.backward(dy)
        grad = fc.to_numpy(layer.kernel_grad).copy()
        layer(t)
        t.mul_(3.0)  # the caller changes the tensor after forward: backward must not see it
        layer.backward(dy)
        np.testing.assert_array_equal(fc.to_numpy(layer.kernel_grad), grad)
        model = fc.Sequential([fc.Dense(2)])
        model.compile(loss="mse", optimizer="sgd")
        model.fit(t, torch.zeros(5, 2), epochs=1, verbose=0)
        with pytest.raises(TypeError, match="tensor.detach"):
            backend.asarray(torch.ones(2, 3, requires_grad=True), np.float32)


def test_cuda_dlpack_arrays_on_the_cupy_backend_without_a_copy(backend_named, rng):
    backend = backend_named("cupy-standin")
    host = rng.normal(size=(4, 3)).astype(np.float32)
    cuda = CudaArray(host)
    x = backend.asarray(cuda, np.float32)
    assert backend.owns(x) and np.shares_memory(np.asarray(x), host)
    with fc.use_backend(backend):
        layer = fc.Dense(2)
        np.testing.assert_allclose(fc.to_numpy(layer(cuda)), host @ layer.get_weights()[0], rtol=1e-6)
    numpy_backend = backend_named("numpy")
    with pytest.raises(fc.BackendMismatch, match="DLPack device type 2"):
        numpy_backend.asarray(cuda, np.float32)
