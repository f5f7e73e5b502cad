"""The captured step's device scalars give the numbers of the step-by-step path.

Graph mode (``CupyBackend.graph_mode``) reads what changes between steps from the device: the
learning rate (a table of the schedule) and Adam's bias corrections from a device step count, the
dropout Philox step as the step at capture plus the device counter, the batch's rows gathered by the
epoch's order. Where the arithmetic is the same it must be bit-identical: the corrections, the
masks, the updates, the gather. The capture GEMM (no cuBLAS) is checked against NumPy's product.
"""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.backends.base import Backend
from fcgpu.testing import count_device_ops, stand_in_backend

B = stand_in_backend()
STEP_SIZE, BC2_SQRT, T, LR = 6, 7, 5, 8  # kernels/optimizers.cuh FC_LS_*, kernels/graphs.cuh FC_GS_LR


def _scalars(ctr0, ctr1=0):
    g = B.graph_scalars()
    g.ctr[...] = B.from_numpy(np.array([ctr0, ctr1], np.int64))
    return g


@pytest.mark.parametrize("beta1, beta2", [(0.9, 0.999), (0.5, 0.9), (0.0, 0.0)])
def test_the_step_scalars_are_the_hosts_bias_corrections_and_learning_rate(beta1, beta2):
    schedule = fc.optimizers.schedules.ExponentialDecay(1e-3, 7, 0.5)
    it_fit, total = 3, 40
    lrs = np.array([schedule(it_fit + j) for j in range(total)], np.float64)
    for it_base, t_base, ctr0 in [(3, 0, 0), (3, 0, 5), (10, 7, 2), (20, 100, 19), (3, 0, 1000)]:
        g = _scalars(ctr0)
        B.graph_begin(g, B.from_numpy(lrs), it_base, it_fit, t_base, beta1, beta2)
        gs = B.to_numpy(g.gs)
        j = min(it_base - it_fit + ctr0, total - 1)  # clamped at the table's end
        step = t_base + ctr0 + 1
        assert gs[LR] == lrs[j]
        assert gs[T] == step
        assert (gs[STEP_SIZE], gs[BC2_SQRT]) == Backend.adam_bias_corrections(lrs[j], beta1, beta2, step)
        assert gs[2] == 0.0 and gs[3] == 1.0  # never skipped, unscaled by 1


def _random(shape, dtype=np.float32, seed=0):
    return B.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


@pytest.mark.parametrize("offset", [0, 96])
def test_dropout_masks_are_those_of_the_step_by_step_path(offset):
    x = _random((8, 12))
    seed, base = 2**64 - 5, 41
    for ctr0 in (0, 1, 7):
        step = base + ctr0
        eager = B.dropout_forward(x, B.empty(x.shape, x.dtype), seed, step, 0.3, offset)
        with B.graph_mode(_scalars(ctr0)):
            graph = B.dropout_forward(x, B.empty(x.shape, x.dtype), seed, base, 0.3, offset)
        np.testing.assert_array_equal(B.to_numpy(graph), B.to_numpy(eager))
        bias = _random((12,), seed=1)
        fused = []
        for mode in (False, True):
            z, out = B.from_numpy(B.to_numpy(x)), B.empty(x.shape, x.dtype)
            scalars = _scalars(ctr0)
            if mode:
                with B.graph_mode(scalars):
                    B.bias_act_dropout_forward(z, bias, "relu", z, out, seed, base, 0.3, offset)
                    dz = B.act_dropout_backward(z, x, "relu", B.empty(x.shape, x.dtype), seed, base, 0.3, offset)
            else:
                B.bias_act_dropout_forward(z, bias, "relu", z, out, seed, step, 0.3, offset)
                dz = B.act_dropout_backward(z, x, "relu", B.empty(x.shape, x.dtype), seed, step, 0.3, offset)
            fused.append([B.to_numpy(a) for a in (z, out, dz)])
        for a, b in zip(*fused):
            np.testing.assert_array_equal(b, a)
    # the counter moves the mask: another step, another mask
    with B.graph_mode(_scalars(1)):
        moved = B.to_numpy(B.dropout_forward(x, B.empty(x.shape, x.dtype), seed, base, 0.3, offset))
    assert not np.array_equal(moved, B.to_numpy(B.dropout_forward(x, B.empty(x.shape, x.dtype), seed, base, 0.3, offset)))


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("update", ["sgd", "sgd_momentum", "adam", "adamw"])
def test_updates_with_the_device_learning_rate_are_bit_identical(update, half):
    lr, t = 0.0125, 4
    lrs = B.from_numpy(np.array([0.5, lr, 0.25], np.float64))
    outs = []
    for mode in (False, True):
        p, g = _random((6, 5), seed=2), _random((6, 5), seed=3)
        m, v = _random((6, 5), seed=4), B.from_numpy(np.abs(B.to_numpy(_random((6, 5), seed=5))))
        h = B.zeros((6, 5), np.float16) if half else None
        kw = {"half": h} if half else {}
        scalars = _scalars(ctr0=2)
        B.graph_begin(scalars, lrs, it_base=-1, it_fit=0, t_base=t - 3, beta1=0.9, beta2=0.999)  # lr index 1, t = 4
        call = {
            "sgd": lambda: B.sgd_update(p, g, None, lr, 0.0, 1e-3, False, **kw),
            "sgd_momentum": lambda: B.sgd_update(p, g, m, lr, 0.9, 1e-3, True, **kw),
            "adam": lambda: B.adam_update(p, g, m, v, lr, 0.9, 0.999, 1e-8, 1e-2, t, False, **kw),
            "adamw": lambda: B.adam_update(p, g, m, v, lr, 0.9, 0.999, 1e-8, 1e-2, t, True, **kw),
        }[update]
        if mode:
            with B.graph_mode(scalars):
                call()
        else:
            call()
        outs.append([B.to_numpy(a) for a in (p, m, v) + ((h,) if half else ())])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(b, a)


def test_the_gather_takes_the_epochs_order_from_the_batch_counter():
    x = _random((20, 3))
    y = B.from_numpy(np.arange(20, dtype=np.int64) * 10)
    order = np.random.default_rng(3).permutation(20)
    perm = B.from_numpy(order)
    for batch_index in (0, 2, 4):
        g = _scalars(0, batch_index)
        xb = B.graph_gather(x, perm, g, B.empty((4, 3), np.float16))
        yb = B.graph_gather(y, perm, g, B.empty((4,), np.int64))
        rows = order[4 * batch_index : 4 * batch_index + 4]
        np.testing.assert_array_equal(B.to_numpy(xb), B.to_numpy(x)[rows].astype(np.float16))
        np.testing.assert_array_equal(B.to_numpy(yb), rows * 10)


def test_the_step_end_writes_the_sums_row_and_advances_the_counter():
    g, sums, acc = _scalars(5, 2), B.zeros((6,), np.float64), B.from_numpy(np.array([1.5, 3.0]))
    B.graph_end(g, sums, 3, acc)
    assert B.to_numpy(sums).tolist() == [0, 0, 0, 0, 1.5, 3.0]
    assert B.to_numpy(acc).tolist() == [0, 0] and B.to_numpy(g.ctr).tolist() == [6, 0]  # batch 2 of 3: wraps


@pytest.mark.parametrize("dtype, out_dtype, tol", [(np.float32, np.float32, 1e-5), (np.float64, np.float64, 1e-12),
                                                    (np.float16, np.float32, 1e-5)])
def test_the_capture_gemm_is_the_product_in_each_layout(dtype, out_dtype, tol):
    gemm = B.gemm_for_capture()
    a, b, c = (B.to_numpy(_random(s, dtype, k)) for k, s in enumerate(((7, 5), (5, 3), (7, 3))))
    wide = lambda m: m.astype(np.float64)  # noqa: E731
    cases = [(a, b, False, False, wide(a) @ wide(b)),
             (c, b, False, True, wide(c) @ wide(b).T),
             (a, c, True, False, wide(a).T @ wide(c))]
    for lhs, rhs, ta, tb, expected in cases:
        out = B.empty(expected.shape, out_dtype)
        gemm(B.from_numpy(lhs), B.from_numpy(rhs), out, trans_a=ta, trans_b=tb)
        np.testing.assert_allclose(B.to_numpy(out), expected, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="C-contiguous"):
        gemm(B.from_numpy(a).T, B.from_numpy(a), B.empty((5, 5), out_dtype))
    with pytest.raises(ValueError):
        gemm(B.from_numpy(a), B.from_numpy(a), B.empty((7, 5), out_dtype))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_schedule_gives_the_step_by_step_paths_numbers(optimizer):
    schedules = fc.optimizers.schedules
    results = []
    for graphs in (False, True):
        fc.config.set_graphs(graphs)
        fc.set_seed(0)
        rng = np.random.default_rng(1)
        x, y = rng.standard_normal((160, 24)).astype(np.float32), rng.integers(0, 5, 160)
        try:
            with fc.use_backend(stand_in_backend()):
                model = fc.Sequential([fc.Dense(32, activation="relu"), fc.Dropout(0.2, seed=3),
                                       fc.Dense(5, activation="softmax")])
                model.build(24)
            if optimizer == "adam":
                opt = fc.optimizers.Adam(schedules.ExponentialDecay(1e-2, 3, 0.5))
            else:
                opt = fc.optimizers.SGD(schedules.PiecewiseConstantDecay([4, 9], [0.2, 0.05, 0.01]), momentum=0.5)
            model.compile(loss="sparse_categorical_crossentropy", optimizer=opt)
            with count_device_ops() as ops:
                logs = model.fit(x, y, batch_size=32, epochs=3, verbose=0).history
            assert ops.by_kind["graph"] == (14 if graphs else 0)
        finally:
            fc.config.set_graphs("auto")
        results.append((model, logs))
    (eager, eager_logs), (graph, graph_logs) = results
    np.testing.assert_allclose(graph_logs["loss"], eager_logs["loss"], rtol=1e-5)
    for a, b in zip(eager.get_weights(), graph.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    assert graph.optimizer.iterations == eager.optimizer.iterations == 15
    assert graph.optimizer.learning_rate == eager.optimizer.learning_rate
    assert graph.optimizer.steps == eager.optimizer.steps


class _OwnGemms:
    """A stand-in for ``own_gemm`` (the stand-in has no RawModule): NumPy products, calls recorded."""

    def __init__(self) -> None:
        self.calls = []

    def dense_forward(self, x, W, b, activation, out):
        self.calls.append(("dense_forward", activation, b))
        out[...] = B.from_numpy(B.to_numpy(x) @ B.to_numpy(W))
        return out

    def input_grad(self, dz, W, out):
        self.calls.append(("input_grad",))
        out[...] = B.from_numpy(B.to_numpy(dz) @ B.to_numpy(W).T)
        return out

    def weight_grad(self, x, dz, dW, db=None):
        self.calls.append(("weight_grad",) if db is None else ("weight_grad", "db"))
        dW[...] = B.from_numpy((B.to_numpy(x).astype(np.float32).T @ B.to_numpy(dz).astype(np.float32)).astype(dW.dtype))
        if db is not None:
            db[...] = B.from_numpy(B.to_numpy(dz).astype(np.float32).sum(0).astype(db.dtype))
        return dW


def test_the_capture_hook_takes_the_own_gemms_where_they_serve():
    from fcgpu.backends.cupy.backend import CupyBackend
    from fcgpu.testing import fake_cupy

    backend = CupyBackend(fake_cupy)
    backend._own_gemm = own = _OwnGemms()  # as the backend makes it on first use
    assert backend.gemm_for_capture() == backend.capture_gemm  # the stand-in: no RawModule
    gemm = backend.own_capture_gemm
    x, w, dz = _random((6, 4)), _random((4, 3), seed=1), _random((6, 3), seed=2)
    gemm(x, w, backend.empty((6, 3), np.float32))
    gemm(dz, w, backend.empty((6, 4), np.float32), trans_b=True)
    gemm(x, dz, backend.empty((4, 3), np.float32), trans_a=True)
    h = [backend.from_numpy(B.to_numpy(a).astype(np.float16)) for a in (x, dz)]
    gemm(h[0], h[1], backend.empty((4, 3), np.float32), trans_a=True)  # a mixed-precision weight gradient
    assert own.calls == [("dense_forward", "linear", None), ("input_grad",), ("weight_grad",), ("weight_grad",)]
    wide = backend.from_numpy(B.to_numpy(x).astype(np.float64))
    out = gemm(wide, backend.from_numpy(B.to_numpy(w).astype(np.float64)), backend.empty((6, 3), np.float64))
    assert len(own.calls) == 4  # float64: no own GEMM, the element kernel
    np.testing.assert_allclose(B.to_numpy(out), B.to_numpy(wide) @ B.to_numpy(w).astype(np.float64), rtol=1e-12)
    cupy = pytest.importorskip("cupy")
    assert hasattr(cupy, "RawModule")  # so on real CuPy the captured step takes the own GEMMs


def test_a_dense_weight_gradient_in_graph_mode_is_one_own_launch_with_its_bias_gradient(monkeypatch):
    from fcgpu.backends.cupy.backend import CupyBackend
    from fcgpu.testing import count_device_ops, fake_cupy

    backend = CupyBackend(fake_cupy)
    backend._own_gemm = own = _OwnGemms()
    monkeypatch.setattr(CupyBackend, "own_capture_gemms", property(lambda self: True))  # as on real CuPy
    x, dz = _random((6, 4)), _random((6, 3), seed=2)
    dW, db = backend.empty((4, 3), np.float32), backend.empty((3,), np.float32)
    with backend.graph_mode(backend.graph_scalars()), count_device_ops() as ops:
        backend.weight_grads(x, dz, dW, db)
    assert own.calls == [("weight_grad", "db")] and ops.by_kind["reduction"] == 0  # no CuPy (CUB) reduction
    np.testing.assert_allclose(B.to_numpy(db), B.to_numpy(dz).sum(0), rtol=1e-6)
    backend.weight_grads(x, dz, dW, db)  # outside graph mode: cuBLAS and CuPy's reduction, as before
    assert len(own.calls) == 1
