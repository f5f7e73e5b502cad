"""Device operations as a GPU would launch them: the stand-in's counter (``count_device_ops``),
the per-step count of a training step inside fit (``launches_per_step``) and ``fcgpu bench --launches``."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.testing import count_device_ops, stand_in_backend
from fcgpu.bench.launches import launches_per_step
from fcgpu.testing import fake_cupy as cp

# The target for a 784-512-10 MLP at batch 128 with softmax cross-entropy: forward (2 GEMMs, 2 bias +
# activation kernels), the fused loss step, backward (3 GEMMs, 2 bias sums, 1 activation kernel)
# and one optimizer kernel.
STEP_TARGET = 12
STEP_CEILING = 40  # far above today's count: a regression in the step shows here first


def test_a_known_sequence_gives_known_counts():
    plus_one = cp.ElementwiseKernel("T x", "T y", "y = x + (T)1", "plus_one")
    host = np.arange(12, dtype=np.float32).reshape(4, 3)
    with count_device_ops() as ops:
        a = cp.asarray(host)  # to_device
        plus_one(a)  # kernel
        cp.matmul(a, a.T)  # gemm (a.T is a view)
        a * 2  # ufunc
        a[1:3], a.reshape(3, 4), a.T, a[0]  # views: nothing
        cp.empty((2, 2))  # allocation only: nothing
        a[cp.asarray(np.array([0, 2]))]  # to_device, gather
        float(a.sum())  # reduction, to_host
        cp.asnumpy(a)  # to_host, once (not again for the .get() inside)
    assert ops.calls == [
        ("to_device", "asarray"),
        ("kernel", "plus_one"),
        ("gemm", "matmul"),
        ("ufunc", "multiply"),
        ("to_device", "asarray"),
        ("gather", "gather"),
        ("reduction", "sum"),
        ("to_host", "float"),
        ("to_host", "asnumpy"),
    ]
    assert ops.total == 5
    assert ops.by_kind == Counter(kernel=1, gemm=1, ufunc=1, gather=1, reduction=1)
    assert ops.names == Counter(plus_one=1, matmul=1, multiply=1, gather=1, sum=1)
    assert ops.transfers == Counter(to_device=2, to_host=2)
    assert "5 device ops" in ops.summary()


def test_fills_copies_setitem_and_masks():
    a = cp.zeros((4, 3), np.float32)
    with count_device_ops() as ops:
        cp.zeros(3), cp.full((2,), 1.0), cp.zeros_like(a)  # fill x3
        a.astype(np.float64)  # copy
        a.astype(np.float32, copy=False)  # already float32: nothing
        cp.asarray(a)  # a device array passes through: nothing
        cp.asarray(a, dtype=np.float64)  # one copy (the astype inside is not counted again)
        cp.copyto(a, 0.5)  # fill
        cp.copyto(a, a + 1)  # ufunc, copy
        a[0] = 2.0  # setitem
        a[a > 1]  # ufunc, gather (mask), to_host (the selected count)
    assert ops.by_kind == Counter(fill=4, copy=3, ufunc=2, setitem=1, gather=1)
    assert ops.transfers == Counter(to_host=1)
    assert ops.names["mask"] == 1


def test_one_call_counts_once_whatever_it_does_inside():
    half = cp.ones((8, 8), np.float16)
    with count_device_ops() as outer:
        cp.sum(half)  # a float accumulator and a cast inside: one reduction, as in CuPy
        half.mean()  # NumPy's sum and divide inside: one reduction
        with count_device_ops() as inner:
            cp.max(half, axis=0)
        with pytest.raises(TypeError):
            cp.asarray(half) + np.ones(8, np.float16)  # refused, as CuPy does: nothing launched
    assert inner.calls == [("reduction", "max")]
    assert outer.calls == [("reduction", "sum"), ("reduction", "mean"), ("reduction", "max")]
    with count_device_ops() as after:
        pass
    half + half  # outside every block: not counted anywhere
    assert after.total == 0 and outer.total == 3


def test_recording_kernel_calls_still_works_alongside_counting():
    with cp.record_kernel_calls(execute=False) as calls, count_device_ops() as ops:
        stand_in_backend().kernel("fcgpu_relu_fwd")(cp.zeros((2, 3), np.float32))
    assert [c.name for c in calls] == ["fcgpu_relu_fwd"]
    assert ops.calls[-1] == ("kernel", "fcgpu_relu_fwd")


@pytest.fixture(scope="module", params=["sgd", "adam"])
def mlp_report(request):
    """The 784-512-10 MLP at batch 128, softmax cross-entropy, measured once per optimizer."""
    return launches_per_step((784, 512, 10), batch=128, loss="softmax_cross_entropy", optimizer=request.param)


def test_a_784_512_10_training_step_stays_below_a_loose_ceiling(mlp_report):
    print("\n" + mlp_report.format())
    step = mlp_report.per_step
    assert 0 < step.total <= STEP_CEILING
    assert step.by_kind["gemm"] == 5  # x W1, h W2 forward; dW2, dh, dW1 backward (no input gradient)
    assert sum(step.transfers.values()) <= 1
    assert mlp_report.per_fit.transfers["to_device"] >= 2  # the data set is copied once per fit


def test_a_784_512_10_training_step_is_at_most_12_device_operations(mlp_report):
    assert mlp_report.per_step.total <= STEP_TARGET, mlp_report.format()


def test_launches_per_step_takes_a_model_and_refuses_one_elsewhere():
    with fc.use_backend(stand_in_backend()):
        model = fc.Sequential([fc.Dense(3)])
        model.build(5)
    model.compile(loss="mse", optimizer="sgd")
    report = launches_per_step(model, batch=4, steps=3)
    assert report.widths == (5, 3) and report.loss == "mean_squared_error" and report.optimizer == "SGD"
    assert report.per_step.by_kind["gemm"] == 2
    assert "device ops per training step" in report.format()
    with fc.use_backend("numpy"):
        host = fc.Sequential([fc.Dense(3)])
        host.build(5)
    with pytest.raises(ValueError, match="stand_in_backend"):
        launches_per_step(host)
    with pytest.raises(ValueError, match="steps"):
        launches_per_step((5, 3), steps=2)


def test_bench_launches_prints_the_breakdown_without_timing(capsys):
    from fcgpu import bench

    assert bench.main(["--launches", "--model", "6-4-3", "--model-batch", "8", "--sizes", "8x6x3"]) == 0
    out = capsys.readouterr().out
    assert out.count("device ops per training step in fit") == 4  # two models, SGD and Adam
    assert "6-4-3 batch 8" in out and "6-3 batch 8" in out and "Adam" in out and "SGD" in out
    assert bench.main(["--launches", "--json", "x.json"]) == 2
