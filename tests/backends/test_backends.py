"""The backend switch: names, 'auto' and its reason, FCGPU_BACKEND, scoped switching, errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import backends


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "FCGPU_BACKEND"}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_numpy_is_always_available():
    assert fc.available_backends()[0] == "numpy"
    with fc.use_backend("numpy") as b:
        assert fc.get_backend() is b and b.name == "numpy"


def test_import_with_cupy_installed_but_no_gpu_picks_numpy():
    pytest.importorskip("cupy", reason="this check needs CuPy installed (the 'verify' extra)")
    probe = run_python(
        "import fcgpu, json, sys; import cupy;"
        "b = fcgpu.get_backend();"
        "print(json.dumps({'name': b.name, 'info': fcgpu.backend_info()}))"
    )
    assert probe.returncode == 0, probe.stderr
    out = json.loads(probe.stdout)
    if "cupy" in out["info"]["available"]:
        pytest.skip("this machine has a usable CUDA device")
    assert out["name"] == "numpy"
    assert out["info"]["reason"].startswith("auto: numpy, because ")
    assert "driver" in out["info"]["reason"] or "device" in out["info"]["reason"]


def test_importing_fcgpu_does_not_import_cupy():
    probe = run_python("import sys, fcgpu; fcgpu.Dense(3); print('cupy' in sys.modules)")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "False"


def test_explicit_cupy_without_device_raises_with_reason():
    if "cupy" in fc.available_backends():
        pytest.skip("this machine has a usable CUDA device")
    with pytest.raises(fc.BackendUnavailable, match=r"backend 'cupy' is not usable here: .+"):
        fc.set_backend("cupy")


@pytest.mark.parametrize(
    "module, expected",
    [
        (None, "cupy is not installed"),
        ("broken-import", "cupy failed to import: OSError: libcudart.so.13"),
        ("no-driver", "no usable CUDA driver"),
        ("no-device", "no CUDA device"),
        ("zero-devices", "no CUDA device (cudaGetDeviceCount returned 0)"),
        ("kernel-fails", "a test kernel failed to compile or run on the device"),
    ],
)
def test_auto_records_why_cupy_was_not_chosen(monkeypatch, fresh_probe, module, expected):
    if module is None:
        monkeypatch.setitem(sys.modules, "cupy", None)  # import raises ImportError
    elif module == "broken-import":
        import importlib.abc

        class Broken(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "cupy":
                    raise OSError("libcudart.so.13: cannot open shared object file")

        monkeypatch.delitem(sys.modules, "cupy", raising=False)
        monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    else:
        fake = types.ModuleType("cupy")

        def count():
            if module == "no-driver":
                raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
            if module == "no-device":
                raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
            return 0 if module == "zero-devices" else 1

        fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count))
        fake.ndarray = type("ndarray", (), {})

        def failing_kernel(*args, **kwargs):
            raise RuntimeError("nvrtc: error: invalid value for --gpu-architecture")

        fake.ElementwiseKernel = failing_kernel
        fake.asarray = lambda a: a
        fake.empty = np.empty
        monkeypatch.setitem(sys.modules, "cupy", fake)
    backend, reason = backends.resolve_backend("auto")
    assert backend.name == "numpy"
    assert expected in reason
    assert fc.available_backends() == ["numpy"]
    with pytest.raises(fc.BackendUnavailable, match=expected.replace("(", r"\(").replace(")", r"\)")):
        backends.resolve_backend("cupy")


def test_auto_picks_a_working_device(monkeypatch, fresh_probe):
    from fcgpu.testing import fake_cupy

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    backend, reason = backends.resolve_backend("auto")
    assert backend.name == "cupy" and reason == "auto: a CUDA device is usable"
    assert fc.available_backends() == ["numpy", "cupy"]


def test_use_backend_restores_on_exit_and_on_error():
    with fc.use_backend("numpy"):
        before = fc.get_backend()
        standin = __import__("fcgpu.testing", fromlist=["stand_in_backend"]).stand_in_backend()
        with pytest.raises(ZeroDivisionError):
            with fc.use_backend(standin):
                assert fc.get_backend() is standin
                1 / 0
        assert fc.get_backend() is before


def test_unknown_backend_name():
    with pytest.raises(ValueError, match=r"backend: expected one of \['numpy', 'cupy', 'auto'\], got 'tpu'"):
        fc.set_backend("tpu")


@pytest.mark.parametrize(
    "value, expected", [("numpy", "numpy requested"), ("auto", "numpy auto: numpy, because"), ("NumPy", "numpy requested")]
)
def test_environment_variable_sets_the_default(value, expected):
    probe = run_python("import fcgpu; b = fcgpu.get_backend(); print(b.name, fcgpu.backend_info()['reason'])",
                       FCGPU_BACKEND=value)
    assert probe.returncode == 0, probe.stderr
    if "cupy" in probe.stdout.split()[0]:
        pytest.skip("this machine has a usable CUDA device")
    assert probe.stdout.startswith(expected)


def test_environment_variable_errors_are_clear():
    probe = run_python("import fcgpu; fcgpu.get_backend()", FCGPU_BACKEND="gpu")
    assert probe.returncode != 0
    assert "FCGPU_BACKEND: expected one of ['numpy', 'cupy', 'auto'], got 'gpu'" in probe.stderr
    if "cupy" not in fc.available_backends():
        probe = run_python("import fcgpu; fcgpu.get_backend()", FCGPU_BACKEND="cupy")
        assert "BackendUnavailable: backend 'cupy' is not usable here" in probe.stderr


def test_backend_info_fields():
    with fc.use_backend("numpy"):
        info = fc.backend_info()
    assert info["active"] == "numpy" and info["reason"] == "requested"
    assert info["numpy"] == np.__version__ and "numpy" in info["available"] and "cupy_status" in info


def test_to_numpy_from_every_backend(backend):
    a = backend.from_numpy(np.arange(6.0).reshape(2, 3))
    host = fc.to_numpy(a)
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(fc.to_numpy([1, 2]), [1, 2])


def test_cli_info_says_which_backend_and_why():
    probe = subprocess.run([sys.executable, "-m", "fcgpu", "info"], capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k != "FCGPU_BACKEND"})
    assert probe.returncode == 0, probe.stderr
    assert "active backend" in probe.stdout and "why" in probe.stdout and "numpy" in probe.stdout


def test_device_timer_calls_cupy_benchmark_as_cupy_14_requires(monkeypatch):
    """cupyx.profiler.benchmark(func, args=(), kwargs={}, n_repeat=10000, *, name=None, n_warmup=10, ...)
    reads func.__name__ unless given name=, and refuses an n_repeat that is not a Python int."""
    calls = []

    def benchmark(func, args=(), kwargs={}, n_repeat=10000, *, name=None, n_warmup=10, max_duration=float("inf"),
                  devices=None):
        if name is None:
            name = func.__name__
        if not isinstance(n_repeat, int) or not isinstance(name, str) or not isinstance(n_warmup, int):
            raise ValueError("`n_repeat`, `name` and `n_warmup` must be an int, a str and an int")
        for _ in range(n_repeat):
            func()
        calls.append((name, n_repeat, n_warmup))
        return types.SimpleNamespace(gpu_times=np.full((1, n_repeat), 2e-6))

    profiler = types.ModuleType("cupyx.profiler")
    profiler.benchmark = benchmark
    cupyx = types.ModuleType("cupyx")
    cupyx.profiler = profiler
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    monkeypatch.setitem(sys.modules, "cupyx.profiler", profiler)

    class Op:  # a callable object: no __name__
        count = 0

        def __call__(self):
            Op.count += 1

    time_calls = __import__("fcgpu.testing", fromlist=["stand_in_backend"]).stand_in_backend().device_timer()
    assert time_calls(Op(), np.int64(3)) == [2e-6] * 3
    assert time_calls(lambda: None, 2) == [2e-6] * 2
    assert Op.count == 3 and calls == [("Op", 3, 0), ("<lambda>", 2, 0)]
    with pytest.raises(ValueError, match="n: expected at least one timed call"):
        time_calls(Op(), 0)


def test_to_numpy_does_not_choose_a_backend():
    """Converting a list or a plain array in a fresh process neither probes CuPy nor fails on an
    FCGPU_BACKEND naming an unusable backend."""
    code = "import fcgpu, sys; print(fcgpu.to_numpy([1, 2]).sum(), 'cupy' in sys.modules)"
    out = run_python(code, FCGPU_BACKEND="cupy")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "False"]
