"""The stand-in's CUDA-graph capture holds code to CuPy 14.2's and CUDA's rules.

While a non-default stream captures, device work is recorded, not run; every action CuPy or CUDA
refuses during capture raises here too (same exception types, same message gist), and invalidates
the capture; ``Graph.launch()`` replays the recorded work on the arrays' current contents and
counts as one device operation.
"""
from __future__ import annotations

import numpy as np
import pytest

from fcgpu.testing import count_device_ops
from fcgpu.testing import fake_cupy as cp

ADD = cp.ElementwiseKernel("T x", "T y", "y = y + x", "graph_test_add")


def _capture(body):
    """The graph of ``body()`` captured on a new non-blocking stream."""
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            body()
        finally:
            graph = stream.end_capture()
    return graph


def test_capture_records_instead_of_running_and_a_launch_is_one_operation():
    a = cp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = cp.zeros((2, 3), np.float32)
    col = cp.zeros((3,), np.float32)
    c = cp.zeros((2, 3), np.float32)

    def body():
        ADD(a, b)  # a kernel with its output given
        cp.multiply(b, 2.0, out=b)  # a ufunc into b
        cp.sum(b, axis=0, out=col)  # a reduction into col
        cp.copyto(c, b)
        c[0] = 1.0  # a fill of a row
        b[...] = b  # a copy onto itself

    with count_device_ops() as during:
        graph = _capture(body)
    assert during.total == 0 and not during.transfers
    assert not b.any() and not col.any() and not c.any()  # nothing ran
    with count_device_ops() as ops:
        graph.launch()
    assert ops.calls == [("graph", "graph_launch")] and ops.total == 1
    expected_b = 2 * a.get()
    np.testing.assert_array_equal(b.get(), expected_b)
    np.testing.assert_array_equal(col.get(), expected_b.sum(axis=0))
    np.testing.assert_array_equal(c.get(), np.vstack([np.ones(3), expected_b[1]]))
    a[...] = 1.0  # the next launch reads the arrays' contents at launch time
    graph.launch()
    np.testing.assert_array_equal(b.get(), 2 * (expected_b + 1))


def test_capture_on_a_default_stream_is_refused():
    for stream in (cp.cuda.Stream.null, cp.cuda.Stream(null=True), cp.cuda.Stream.ptds):
        with pytest.raises(RuntimeError, match="cannot capture on the default"):
            stream.begin_capture()
    assert not cp.cuda.Stream.null.is_capturing()


def test_a_graph_cannot_be_made_directly():
    with pytest.raises(NotImplementedError, match="stream capture"):
        cp.cuda.Graph()


def _refusals():
    a = cp.ones((4, 4), np.float32)
    out = cp.zeros((4, 4), np.float32)
    half = cp.ones((4, 4), np.float16)
    host = np.ones((4, 4), np.float32)
    d2h = (RuntimeError, "D2H transfers are disallowed")
    h2d = (RuntimeError, "H2D transfers are disallowed")
    unsupported = (cp.cuda.runtime.CUDARuntimeError, "cudaErrorStreamCaptureUnsupported")
    cublas = (NotImplementedError, "calling cuBLAS API during stream capture is currently unsupported")
    pointer = cp.cuda.device.get_cublas_handle

    def gemm_ex():
        cb = cp.cuda.cublas
        addr = half.__cuda_array_interface__["data"][0]
        one = np.ones(1, np.float32)
        cb.gemmEx(pointer(), 0, 0, 4, 4, 4, one.ctypes.data, addr, 2, 4, addr, 2, 4, one.ctypes.data,
                  out.__cuda_array_interface__["data"][0], 0, 4, cb.CUBLAS_COMPUTE_32F, cb.CUBLAS_GEMM_DEFAULT)

    return {
        ".get()": (lambda: a.get(), d2h),
        "asnumpy": (lambda: cp.asnumpy(a), d2h),
        "float(x)": (lambda: float(a[0, 0]), d2h),
        "item": (lambda: a.sum(out=out[0, 0]).item(), d2h),
        "set": (lambda: a.set(host), h2d),
        "asarray of host data": (lambda: cp.asarray(host), h2d),
        "stream synchronize": (lambda: cp.cuda.get_current_stream().synchronize(), unsupported),
        "device synchronize": (lambda: cp.cuda.Device().synchronize(), unsupported),
        "runtime synchronize": (lambda: cp.cuda.runtime.deviceSynchronize(), unsupported),
        "zeros": (lambda: cp.zeros(4), unsupported),
        "empty": (lambda: cp.empty(4), unsupported),
        "a ufunc that allocates": (lambda: a + a, unsupported),
        "a kernel that allocates its output": (lambda: ADD(a), unsupported),
        "astype": (lambda: a.astype(np.float64), unsupported),
        "a gather": (lambda: a[cp.arange(2)], unsupported),
        "matmul": (lambda: cp.matmul(a, a, out=out), cublas),
        "dot": (lambda: cp.dot(a, a, out=out), cublas),
        "the matmul operator": (lambda: a @ a, cublas),
        "cublas.gemmEx": (gemm_ex, cublas),
    }


@pytest.mark.parametrize("action", sorted(_refusals()))
def test_each_forbidden_action_raises_as_cupy_does_and_invalidates_the_capture(action):
    call, (error, message) = _refusals()[action]
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        assert stream.is_capturing() and cp.cuda.get_current_stream() is stream
        with pytest.raises(error, match=message):
            call()
        with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="cudaErrorStreamCaptureInvalidated") as info:
            stream.end_capture()
    assert info.value.status == 901
    assert not stream.is_capturing()


def test_outside_a_capture_everything_runs_as_before():
    for name, (call, _) in _refusals().items():
        if name not in ("set", "cublas.gemmEx"):
            call()
    assert cp.cuda.get_current_stream() is cp.cuda.Stream.null


def test_another_stream_runs_eagerly_and_a_graph_launches_on_any_stream():
    b = cp.zeros(3, np.float32)
    one = cp.ones(3, np.float32)
    graph = _capture(lambda: ADD(one, b))
    other = cp.cuda.Stream()
    with other:
        graph.launch()
        ADD(one, b)  # not capturing: runs now
    graph.launch(stream=other)
    np.testing.assert_array_equal(b.get(), [3, 3, 3])
