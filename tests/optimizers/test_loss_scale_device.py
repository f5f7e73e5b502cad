"""Loss scaling decided on the device (issue 18, item 8): under mixed_float16 a step reads nothing
on the host. The scale, the good-step count, the overflow flag and Adam's step count live in
LossScaleOptimizer's device state; the loss kernels read the scale there, the guarded fused updates
skip themselves on the flag, and one check kernel a gradient buffer halves or grows the scale."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import mixed_precision as mp
from fcgpu.backends.numpy.backend import NumpyBackend
from fcgpu.testing import count_device_ops, fake_cupy as cp, stand_in_backend
from fcgpu.bench.launches import launches_per_step
from support.block_emulator import emulated_backend

NP = NumpyBackend()


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    mp.set_global_policy("float32")


def _model(backend, optimizer, growth=3, width=8):
    with fc.use_backend(backend):
        fc.set_seed(1)
        model = fc.Sequential([fc.Dense(16, activation="relu", dtype="mixed_float16"),
                               fc.Dense(3, activation="softmax", dtype="mixed_float16")])
        model.build(width)
    opt = fc.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**15, dynamic_growth_steps=growth)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=opt)
    return model


def _batches(n=12, rows=8, width=8):
    """Batches, some of which overflow float16 (inputs of 6e4: an inf forward, a skipped step)."""
    rng = np.random.default_rng(5)
    out = []
    for k in range(n):
        x = rng.standard_normal((rows, width)).astype(np.float32)
        if k in (2, 3, 8):
            x[0, :] = 6e4
        out.append((x, rng.integers(0, 3, rows)))
    return out


def _trajectory(backend, make_opt, host_path):
    model = _model(backend, make_opt())
    if host_path:  # the step decided on the host, with one read a step (the previous behaviour)
        model.optimizer.inner.flat_step_ready = lambda flat: False
    seen = []
    for x, y in _batches():
        model.train_step(x, y)
        if host_path:
            seen.append((model.optimizer.loss_scale, model.optimizer.iterations))
    if not host_path:  # read once at the end: the counts are settled when asked
        seen = None
    return model, seen


@pytest.mark.parametrize("backend", ["numpy", "stand-in"])
@pytest.mark.parametrize("make_opt", [lambda: fc.optimizers.Adam(1e-2), lambda: fc.optimizers.SGD(0.05, momentum=0.9),
                                      lambda: fc.optimizers.RMSprop(1e-3)], ids=["adam", "sgd", "rmsprop"])
def test_the_device_decision_follows_the_host_decision_step_for_step(backend, make_opt):
    """Skipped steps (forced overflow), halving and growth, and Adam's bias correction at the
    applied step count: bit for bit the trajectory of the host-decided step."""
    be = NP if backend == "numpy" else stand_in_backend()
    device, _ = _trajectory(be, make_opt, host_path=False)
    host, seen = _trajectory(be, make_opt, host_path=True)
    # 12 steps, 3 skipped (each halves), growth every 3 finite steps in a row
    assert [s for s, _ in seen][-1] == host.optimizer.loss_scale
    assert host.optimizer.skipped_steps == 3 and host.optimizer.iterations == 9
    assert device.optimizer.skipped_steps == 3 and device.optimizer.iterations == 9
    assert device.optimizer.loss_scale == host.optimizer.loss_scale
    assert device.optimizer.step_counter == host.optimizer.step_counter
    assert device.optimizer.steps == host.optimizer.steps == {n: 9 for n in host.optimizer.steps}
    for a, b in zip(device.get_weights(), host.get_weights()):
        np.testing.assert_array_equal(a, b)
    for name, slots in host.optimizer.state.items():
        for slot, value in slots.items():
            np.testing.assert_array_equal(fc.to_numpy(device.optimizer.state[name][slot]), fc.to_numpy(value))
    for layer_d, layer_h in zip(device.layers, host.layers):  # the half copies, written by the same updates
        for (name, a), b in zip(layer_d.half_copies().items(), layer_h.half_copies().values()):
            np.testing.assert_array_equal(fc.to_numpy(a), fc.to_numpy(b), err_msg=name)


def test_the_scale_halves_and_grows_on_the_device():
    model = _model(stand_in_backend(), fc.optimizers.SGD(0.01), growth=2)
    opt = model.optimizer
    x, y = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32), np.zeros(4, np.int64)
    model.train_step(x, y)
    model.train_step(x, y)
    assert opt.loss_scale == 2.0**16 and opt.step_counter == 0  # two finite steps: doubled
    model.train_step(np.full((4, 8), 6e4, np.float32), y)
    assert opt.loss_scale == 2.0**15 and opt.skipped_steps == 1 and opt.iterations == 2
    state = fc.to_numpy(opt.scale_state)
    assert state[fc.get_backend().LS_SKIP] == 1.0  # the flag of the last step, on the device


def test_a_mixed_float16_step_reads_nothing_on_the_host():
    """50 steps inside fit on the stand-in: the periodic progress reads only (<= 0.1 a step, as
    float32), and 14 device operations a step for 784-512-10 with Adam."""
    model = _model(stand_in_backend(), fc.optimizers.Adam(1e-3), growth=2000, width=32)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50 * 16, 32)).astype(np.float32), rng.integers(0, 3, 50 * 16)
    model.fit(x[:32], y[:32], batch_size=16, epochs=1, verbose=0)  # warm-up: buffers and state made
    with count_device_ops() as ops:
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    reads = ops.transfers["to_host"]
    assert reads <= 0.1 * 50, ops.summary()
    report = launches_per_step((784, 512, 10), batch=128, loss="softmax_cross_entropy", optimizer="adam",
                               dtype="mixed_float16")
    assert report.per_step.total == 14 and sum(report.per_step.transfers.values()) == 0
    assert ("kernel", "fcgpu_loss_scale_check") in report.step_calls
    assert ("kernel", "fcgpu_adam_guarded_mixed") in report.step_calls


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "adam", "rmsprop", "adagrad"])
@pytest.mark.parametrize("half", [False, True])
def test_a_guarded_update_skips_itself_or_equals_the_unscaled_update(name, half):
    be = stand_in_backend()
    rng = np.random.default_rng(2)
    p0, g0 = rng.standard_normal(300).astype(np.float32), (rng.standard_normal(300) * 1024).astype(np.float32)

    def run(**mixed):
        p, g = be.from_numpy(p0), be.from_numpy(g0)
        s1, s2 = be.from_numpy(np.abs(g0) * 0.1), be.from_numpy(np.abs(g0) * 0.2)
        h = be.from_numpy(p0.astype(np.float16)) if half else None
        extra = {"half": h} if half else {}
        if name == "sgd":
            be.sgd_update(p, g, None, 0.1, 0.0, 1e-4, False, **mixed, **extra)
        elif name == "sgd_momentum":
            be.sgd_update(p, g, s1, 0.1, 0.9, 0.0, True, **mixed, **extra)
        elif name == "adam":
            be.adam_update(p, g, s1, s2, 1e-3, 0.9, 0.999, 1e-8, 0.01, 4, True, **mixed, **extra)
        elif name == "rmsprop":
            be.rmsprop_update(p, g, s2, s1, None, 1e-3, 0.9, 0.0, 1e-7, 0.0, **mixed, **extra)
        else:
            be.adagrad_update(p, g, s2, 1e-3, 1e-7, 0.0, **mixed, **extra)
        return [be.to_numpy(a) for a in (p, s1, s2) + ((h,) if half else ())]

    state = np.zeros(8, np.float64)
    state[[be.LS_SCALE, be.LS_UNSCALE, be.LS_T]] = 2048.0, 1 / 1024.0, 4
    state[be.LS_STEP_SIZE], state[be.LS_BC2_SQRT] = be.adam_bias_corrections(1e-3, 0.9, 0.999, 4)
    applied = run(guard=be.from_numpy(state))
    want = run(unscale=1 / 1024.0)
    for a, b in zip(applied, want):
        np.testing.assert_array_equal(a, b)
    state[be.LS_SKIP] = 1.0
    skipped = run(guard=be.from_numpy(state))
    untouched = [p0, np.abs(g0) * 0.1, np.abs(g0) * 0.2] + ([p0.astype(np.float16)] if half else [])
    for a, b in zip(skipped, untouched):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [1, 1000, 300_000])
@pytest.mark.parametrize("spoil", [None, 0, 1])
def test_the_check_kernel_is_race_free_and_applies_the_rules_as_numpy(n, spoil):
    """Two gradient buffers (the first launch clears the flag, the last applies the rules), run by
    the block emulator, against the NumPy backend's loss_scale_check."""
    rng = np.random.default_rng(n)
    grads = [rng.standard_normal(n).astype(np.float32), rng.standard_normal(7).astype(np.float32)]
    if spoil is not None:
        grads[spoil][-1] = np.inf
    for good in (0.0, 2.0):  # growth 3: the third finite step in a row doubles the scale
        start = np.array([1024.0, good, 1.0, 0.0, 4.0, 10.0, 0.0, 0.0])
        want = start.copy()
        NP.loss_scale_check(grads, want, 3, 1e-3, 0.9, 0.999)
        be = emulated_backend()
        got = cp.asarray(start)
        be.loss_scale_check([cp.asarray(g) for g in grads], got, 3, 1e-3, 0.9, 0.999)
        np.testing.assert_allclose(got.get(), want, rtol=1e-15, atol=0)
        assert len(be.launches) == 2
    assert (want[2] == 1.0) == (spoil is not None)


def test_save_and_load_after_device_steps_keep_the_scale_and_counts(tmp_path):
    model = _model(stand_in_backend(), fc.optimizers.Adam(1e-3), growth=2)
    for x, y in _batches(6):
        model.train_step(x, y)
    path = str(tmp_path / "m.fcgpu")
    model.save(path)
    loaded = fc.load_model(path)
    assert loaded.optimizer.loss_scale == model.optimizer.loss_scale
    assert loaded.optimizer.iterations == model.optimizer.iterations == 4  # 6 steps, 2 skipped
    assert loaded.optimizer.state_dict()["good_steps"] == model.optimizer.step_counter
