"""Flat parameter buffers: layers hold views of one buffer per dtype, optimizers update each
buffer in one call, and everything per parameter (weights, state, moves, saving) still works."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc


def _trained(opt, rng, dtype="float32"):
    model = fc.Sequential([fc.Dense(6, activation="tanh", dtype=dtype), fc.Dense(3, dtype=dtype)])
    model.compile(loss="softmax_cross_entropy", optimizer=opt)
    x, y = rng.normal(size=(32, 4)), rng.integers(0, 3, size=32)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model, x, y


def test_layers_hold_views_of_one_buffer_per_dtype(backend, rng):
    model, _, _ = _trained(fc.optimizers.SGD(lr=0.1), rng)
    flat = model.flat_parameters()
    (dtype,) = flat.params
    buffer = fc.to_numpy(flat.params[dtype])
    assert sum(stop - start for _, start, stop in flat.slices.values()) == model.count_params()
    parts = [buffer[start:stop] for _, start, stop in flat.slices.values()]
    np.testing.assert_array_equal(np.concatenate([w.ravel() for w in model.get_weights()]), np.concatenate(parts))
    flat.params[dtype][...] = backend.from_numpy(np.zeros(buffer.size, np.float32))
    assert not any(w.any() for w in model.get_weights())  # the layers see the buffer


def test_mixed_dtypes_get_a_buffer_each(backend, rng):
    model = fc.Sequential([fc.Dense(5, activation="relu", dtype="float64"), fc.Dense(2, dtype="float32")])
    model.compile(loss="mse", optimizer="adam")
    model.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), epochs=1, batch_size=4, verbose=0)
    assert set(model.flat_parameters().params) == {np.dtype("float64"), np.dtype("float32")}


@pytest.mark.parametrize("make", [lambda: fc.optimizers.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
                                  lambda: fc.optimizers.Adam(lr=0.01, weight_decay=1e-3),
                                  lambda: fc.optimizers.AdamW(lr=0.01)])
def test_one_update_per_buffer_equals_one_per_parameter(backend, rng, make):
    fc.set_seed(5)
    flat_model = fc.Sequential([fc.Dense(6, activation="tanh"), fc.Dense(3)])
    flat_model.build((None, 4))
    layers_model = fc.Sequential([fc.Dense(6, activation="tanh"), fc.Dense(3)])
    layers_model.build((None, 4))
    layers_model.set_weights(flat_model.get_weights())
    x, dy = rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    flat_opt, layer_opt = make(), make()
    for _ in range(5):
        for model, opt, target in ((flat_model, flat_opt, flat_model), (layers_model, layer_opt, None)):
            model(x)
            model.backward(dy)
            opt.step(target if target is not None else model.layers)  # a list of layers: per parameter
    for a, b in zip(flat_model.get_weights(), layers_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    sa, sb = flat_opt.state_dict(), layer_opt.state_dict()
    assert sa["steps"] == sb["steps"] and set(sa["state"]) == set(sb["state"])
    for name in sa["state"]:
        for slot in sa["state"][name]:
            np.testing.assert_allclose(sa["state"][name][slot], sb["state"][name][slot], rtol=1e-6, atol=1e-7)


def test_rebuilt_moved_or_reloaded_models_get_new_buffers(backend, backend_named, rng, tmp_path):
    model, x, y = _trained(fc.optimizers.Adam(lr=0.01), rng)
    first = model.flat_parameters()
    before = model.get_weights()
    other = backend_named("cupy-standin" if backend.name == "numpy" else "numpy")
    model.to(other)
    model.to(backend)
    second = model.flat_parameters()
    assert second is not first
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # the optimizer lays its state out again
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "float64"])
def test_every_slice_starts_256_byte_aligned_in_every_buffer(backend, policy):
    """784-100-10 in half put W2 at byte 157000 before slices were padded (issue 18, 7)."""
    with fc.use_backend(backend):
        model = fc.Sequential([fc.Dense(100, activation="relu", dtype=policy), fc.Dense(10, dtype=policy)])
        model.build(784)
    model.compile(loss="softmax_cross_entropy", optimizer="adam")
    model.fit(np.zeros((4, 784), np.float32), np.zeros(4, np.int64), epochs=1, batch_size=4, verbose=0)
    flat = model.flat_parameters()
    buffers = [*flat.params.values(), *flat.grads.values(), *flat.halves.values()]
    assert len(buffers) == (3 if policy == "mixed_float16" else 2)
    for dtype, start, stop in flat.slices.values():
        for buffer in buffers:
            if buffer.size == flat.params[dtype].size:
                assert (start * buffer.dtype.itemsize) % 256 == 0, (start, buffer.dtype)
        assert fc.to_numpy(flat.grads[dtype][stop:stop + 1]).sum() == 0 or stop == flat.grads[dtype].size
