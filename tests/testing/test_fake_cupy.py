"""The CuPy stand-in's own semantics: it must behave like cupy.ElementwiseKernel and the cupy module."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fcgpu.backends import BackendMismatch
from fcgpu.backends.numpy.backend import NumpyBackend
from fcgpu.testing import fake_cupy as cp
from fcgpu.testing import stand_in_backend


def dev(a, dtype=None) -> cp.ndarray:
    return cp.asarray(np.asarray(a, dtype=dtype))


ADD = cp.ElementwiseKernel("T x, T y", "T z", "z = x + y", "fc_test_add")


# -- type placeholders ------------------------------------------------------------------------


def test_T_is_resolved_from_the_arrays() -> None:
    for dtype in (np.float32, np.float64, np.float16):
        z = ADD(dev([1, 2], dtype), dev([3, 4], dtype))
        assert type(z) is cp.ndarray and z.dtype == dtype
        assert z.get().tolist() == [4, 6]


def test_a_dtype_clash_between_arrays_sharing_T_raises() -> None:
    with pytest.raises(TypeError, match="Type is mismatched"):
        ADD(dev([1.0], np.float32), dev([1.0], np.float64))
    with pytest.raises(TypeError, match="Type is mismatched"):
        ADD(dev([1.0], np.float32), dev([1.0], np.float32), cp.empty(1, np.float64))


def test_explicit_types_are_checked_and_placeholders_are_independent() -> None:
    k = cp.ElementwiseKernel("T x, raw I idx, int64 n", "T y", "y = x + (T)idx[i % n]", "fc_test_explicit")
    y = k(dev([10.0, 20.0, 30.0], np.float32), dev([1, 2], np.int32), 2)
    assert y.dtype == np.float32 and y.get().tolist() == [11.0, 22.0, 31.0]
    with pytest.raises(TypeError, match="Type is mismatched"):
        cp.ElementwiseKernel("int64 x", "T y", "y = x", "fc_test_i64")(dev([1], np.int32), cp.empty(1, np.float32))


def test_a_scalar_alone_cannot_decide_T() -> None:
    k = cp.ElementwiseKernel("T s", "raw T y", "y[i] = s", "fc_test_scalar_only")
    with pytest.raises(TypeError, match="not determined"):
        k(1.0, size=3)


# -- broadcasting, outputs, loop size -----------------------------------------------------------


def test_broadcasting_and_allocated_output() -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    b = np.array([100.0, 200.0, 300.0, 400.0])
    z = ADD(dev(x), dev(b))
    assert z.shape == (3, 4)
    np.testing.assert_array_equal(z.get(), x + b)
    col = ADD(dev(x), dev(b[:3].reshape(3, 1)))
    np.testing.assert_array_equal(col.get(), x + b[:3].reshape(3, 1))


def test_output_shape_must_match_the_broadcast_shape() -> None:
    with pytest.raises(ValueError, match="Out shape is mismatched"):
        ADD(dev([[1.0, 2.0]] * 2), dev([1.0, 2.0]), cp.empty(2))
    # Outputs take part in broadcasting, as in CuPy: a (1, 2) output widens (2,) inputs.
    assert ADD(dev([1.0, 2.0]), dev([1.0, 2.0]), cp.empty((1, 2))).get().tolist() == [[2.0, 4.0]]
    with pytest.raises(ValueError):
        ADD(dev([1.0, 2.0]), dev([1.0, 2.0, 3.0]))


def test_outputs_are_written_in_place_and_also_read() -> None:
    k = cp.ElementwiseKernel("T g, T lr", "T p, T m", "m = m * T(0.5) + g; p = p - lr * m", "fc_test_inout")
    p, m = dev([1.0, 2.0]), dev([4.0, 8.0])
    ret = k(dev([1.0, 1.0]), 0.25, p, m)
    assert ret[0] is p and ret[1] is m
    assert m.get().tolist() == [3.0, 5.0]
    assert p.get().tolist() == [1.0 - 0.75, 2.0 - 1.25]


def test_in_place_aliasing_of_input_and_output() -> None:
    z = dev([1.0, -2.0, 3.0], np.float32)
    k = cp.ElementwiseKernel("T z", "T y", "y = z > T(0) ? z : T(0)", "fc_test_relu")
    assert k(z, z) is z
    assert z.get().tolist() == [1.0, 0.0, 3.0]


def test_views_are_indexed_through_their_strides() -> None:
    base = np.arange(48, dtype=np.float32).reshape(6, 8)
    x = dev(base)[::2, 1::3]  # non-contiguous view
    y = dev(base)[::-2, ::-3]  # negative strides
    assert not x.flags.c_contiguous
    out_buf = cp.zeros((3, 6), np.float32)
    out = out_buf[:, ::2]
    assert ADD(x, y, out) is out
    np.testing.assert_array_equal(out.get(), base[::2, 1::3] + base[::-2, ::-3])
    np.testing.assert_array_equal(out_buf.get()[:, 1::2], 0)  # the other columns untouched
    row = dev(np.array([1.0, 2.0, 3.0], np.float32))
    np.testing.assert_array_equal(ADD(x, row).get(), base[::2, 1::3] + [1.0, 2.0, 3.0])


def test_raw_arguments_and_i() -> None:
    rev = cp.ElementwiseKernel("raw T x", "T y", "y = x[_ind.size() - 1 - i]", "fc_test_reverse")
    x = dev(np.arange(5, dtype=np.float32))
    assert rev(x, cp.empty(5, np.float32)).get().tolist() == [4.0, 3.0, 2.0, 1.0, 0.0]
    # A raw 2-D view is indexed in C order through its strides.
    m = dev(np.arange(12, dtype=np.float32).reshape(3, 4))[:, ::2]
    flat = cp.ElementwiseKernel("raw T x", "T y", "y = x[i]", "fc_test_rawflat")(m, cp.empty(6, np.float32))
    assert flat.get().tolist() == m.get().ravel().tolist()


def test_size_argument() -> None:
    fill = cp.ElementwiseKernel("raw T x, T s", "raw T y", "y[i] = x[i] * s + (T)_ind.size()", "fc_test_size")
    x = dev(np.arange(6, dtype=np.float64))
    y = cp.zeros(6, np.float64)
    fill(x, 2.0, y, size=4)
    assert y.get().tolist() == [4.0, 6.0, 8.0, 10.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="all of the ndarray are 'raw'"):
        ADD(dev([1.0]), dev([1.0]), size=1)
    with pytest.raises(ValueError, match="Loop size is undecided"):
        fill(x, 2.0, y)
    with pytest.raises(ValueError, match="Output array size is Undecided"):
        cp.ElementwiseKernel("T x", "raw T y", "y[i] = x", "fc_test_rawout")(dev([1.0]))


def test_raw_index_out_of_bounds_is_reported() -> None:
    k = cp.ElementwiseKernel("raw T x", "T y", "y = x[i + 1]", "fc_test_oob")
    with pytest.raises(IndexError, match="out of its bounds"):
        k(dev([1.0, 2.0]), cp.empty(2))


def test_zero_size_returns_without_running() -> None:
    z = ADD(cp.empty((0, 3), np.float32), cp.empty((0, 3), np.float32))
    assert z.shape == (0, 3) and type(z) is cp.ndarray


# -- scalars ------------------------------------------------------------------------------------


def test_scalars_take_their_parameter_type() -> None:
    scale = cp.ElementwiseKernel("T x, T s", "T y", "y = x * s", "fc_test_scale")
    x32 = np.array([1.0, 3.0], np.float32)
    assert scale(dev(x32), 0.1).get().tolist() == (x32 * np.float32(0.1)).tolist()
    x64 = np.array([1.0, 3.0])
    assert scale(dev(x64), 0.1).get().tolist() == (x64 * 0.1).tolist()
    assert scale(dev(x32), np.float64(0.1)).dtype == np.float32  # a NumPy scalar does not promote T


def test_bool_and_int64_scalars() -> None:
    k = cp.ElementwiseKernel("T x, bool neg, int64 k", "T y", "y = (neg ? -x : x) * (T)k", "fc_test_boolint")
    x = dev([1.0, 2.0], np.float32)
    assert k(x, True, 3).get().tolist() == [-3.0, -6.0]
    assert k(x, False, 2).get().tolist() == [2.0, 4.0]
    assert k(x, np.bool_(True), np.int64(1)).get().tolist() == [-1.0, -2.0]


# -- argument checking -------------------------------------------------------------------------


def test_argument_errors_match_cupy() -> None:
    with pytest.raises(TypeError, match="Wrong number of arguments"):
        ADD(dev([1.0]))
    with pytest.raises(TypeError, match="Unsupported type"):
        ADD(np.array([1.0]), dev([1.0]))
    with pytest.raises(TypeError, match="Unsupported type"):  # a 0-d host array is no scalar to CuPy either
        ADD(np.array(1.0), dev([1.0]))
    with pytest.raises(TypeError, match="Unsupported type"):
        ADD(dev([1.0]), dev([1.0]), np.empty(1))
    with pytest.raises(TypeError, match="Output arguments type must be cupy.ndarray"):
        ADD(dev([1.0]), dev([1.0]), 1.0)
    with pytest.raises(ValueError, match="Can not use 'i'"):
        cp.ElementwiseKernel("T i", "T y", "y = i", "fc_test_i")
    with pytest.raises(ValueError, match="Invalid kernel name"):
        cp.ElementwiseKernel("T x", "T y", "y = x", "bad name")


def test_a_kernel_that_does_not_compile_raises_with_the_compiler_output() -> None:
    k = cp.ElementwiseKernel("T x", "T y", "y = fc_no_such_function(x)", "fc_test_broken")
    with pytest.raises(cp.HostCompileError, match="fc_no_such_function"):
        k(dev([1.0]))


def test_half_types_run() -> None:
    k = cp.ElementwiseKernel("T x, T s", "T y", "y = T(float(x) * float(s))", "fc_test_half")
    x = np.array([1.0, 0.1, 65504.0, -3.0], np.float16)
    np.testing.assert_array_equal(k(dev(x), 0.5).get(), (x.astype(np.float32) * 0.5).astype(np.float16))
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs the 'verify' extra (ml_dtypes)")

    xb = np.array([1.0, 0.1, 3.0e38, -3.0], ml_dtypes.bfloat16)
    yb = k(dev(xb), 0.5).get()
    assert yb.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(yb, (xb.astype(np.float32) * 0.5).astype(ml_dtypes.bfloat16))


# -- the module and ndarray ------------------------------------------------------------------


def test_asarray_copies_host_data_and_get_returns_host_arrays() -> None:
    host = np.array([1.0, 2.0])
    d = cp.asarray(host)
    host[0] = 99.0
    assert d.get().tolist() == [1.0, 2.0]
    assert type(d.get()) is np.ndarray and type(cp.asnumpy(d)) is np.ndarray
    assert cp.asarray(d) is d
    assert "__cuda_array_interface__" in dir(d) and d.__cuda_array_interface__["shape"] == (2,)


def test_module_functions_return_stand_in_arrays() -> None:
    a = dev(np.arange(6, dtype=np.float32).reshape(2, 3))
    out = cp.empty((2, 2), np.float32)
    assert cp.matmul(a, a.T, out=out) is out
    np.testing.assert_array_equal(out.get(), a.get() @ a.get().T)
    for r in (cp.sum(a), cp.max(a, axis=1), cp.exp(a), cp.where(cp.isfinite(a), a, 0), cp.square(a), a.sum(), a + 1, a.T):
        assert type(r) is cp.ndarray
    assert cp.sum(a).ndim == 0 and float(cp.sum(a, dtype=cp.float64)) == 15.0
    assert cp.get_array_module(a) is cp and cp.get_array_module(a.get()) is np
    assert cp.arange(3).tolist() == [0, 1, 2] and type(cp.arange(3)) is cp.ndarray
    assert cp.float32 is np.float32
    with pytest.raises(AttributeError):
        cp.random  # noqa: B018 - not part of the stand-in


def test_mixing_with_host_arrays_raises_like_cupy() -> None:
    a = dev([1.0, 2.0])
    with pytest.raises(TypeError, match="real CuPy raises TypeError"):
        a + np.array([1.0, 2.0])
    with pytest.raises(TypeError):
        cp.matmul(a.reshape(1, 2), np.ones((2, 1)))
    with pytest.raises(TypeError):
        np.concatenate([a, np.array([3.0])])
    assert (a + 1.0).get().tolist() == [2.0, 3.0]  # Python scalars are fine


def test_the_numpy_backend_refuses_stand_in_arrays() -> None:
    with pytest.raises(BackendMismatch):
        NumpyBackend().asarray(dev([1.0]), np.float32)


def test_cuda_runtime() -> None:
    rt = cp.cuda.runtime
    assert rt.getDeviceCount() == 1 and rt.getDevice() == 0
    assert rt.getDeviceProperties(0)["name"] == b"host stand-in"
    assert rt.runtimeGetVersion() > 0 and rt.driverGetVersion() > 0
    rt.deviceSynchronize()
    assert stand_in_backend().info()["device"] == "host stand-in"


def test_stand_in_backend_is_shared() -> None:
    assert stand_in_backend() is stand_in_backend()
    assert stand_in_backend().xp is cp


def test_record_kernel_calls_without_running() -> None:
    x = dev([1.0, 2.0])
    y = cp.empty(2)
    y[...] = 7.0
    with cp.record_kernel_calls(execute=False) as calls:
        ADD(x, x, y)
    assert y.get().tolist() == [7.0, 7.0]
    assert calls[0].name == "fc_test_add" and calls[0].kinds == ("a", "a", "a") and calls[0].loop_shape == (2,)


def test_compiled_libraries_are_cached_by_source(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FCGPU_CACHE_DIR", str(tmp_path))
    src = 'extern "C" int fcgpu_host_kernel(void* const*, const long long*) { return 41; }\n'
    first = cp.compile_host_library(src)
    assert first.parent.parent == tmp_path and first.exists()
    mtime = first.stat().st_mtime_ns
    assert cp.compile_host_library(src) == first and first.stat().st_mtime_ns == mtime
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".build-")]


def test_concurrent_processes_share_the_cache(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import ctypes, sys
        from fcgpu.testing import fake_cupy
        src = 'extern "C" int fcgpu_host_kernel(void* const*, const long long*) { return 7; }\\n'
        lib = ctypes.CDLL(str(fake_cupy.compile_host_library(src)))
        sys.exit(0 if lib.fcgpu_host_kernel(None, None) == 7 else 1)
        """
    )
    env = {**__import__("os").environ, "FCGPU_CACHE_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert len(list((tmp_path / "host-kernels").glob("*.so"))) == 1


def test_warm_stand_in_builds_every_backend_kernel() -> None:
    from fcgpu.backends.cupy.backend import KERNEL_SPECS
    from support.cuda_compile import warm_stand_in

    from support.cuda_compile import trace_backend_calls

    # every kernel gets a library (some more than one: half parameters with float32 state)
    assert {call.name for call in trace_backend_calls()} == set(KERNEL_SPECS)
    assert warm_stand_in(("float32",)) >= len(KERNEL_SPECS)


def test_an_integer_index_gives_a_0d_device_view_as_cupy_does() -> None:
    """CuPy returns a 0-d cupy.ndarray for a[i] (a view), not a host scalar: reading it is a
    device-to-host transfer. The stand-in returned NumPy's scalar, hiding that read."""
    a = cp.arange(3.0)
    b = a[1]
    assert type(b) is cp.ndarray and b.shape == ()
    b[...] = 7.0
    assert a.get()[1] == 7.0
    with cp.count_device_ops() as ops:
        float(cp.asnumpy(a[2]))
    assert ops.transfers["to_host"] == 1
