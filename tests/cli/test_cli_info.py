"""`fcgpu info`, the diagnostic command: it says why, and shows what it can, whatever the environment."""
from __future__ import annotations

import importlib.abc
import os
import subprocess
import sys

import pytest

import fcgpu as fc
from fcgpu import backends
from fcgpu.cli import main


def run_info(**env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "FCGPU_BACKEND"}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "fcgpu", "info"], capture_output=True, text=True, env=full_env,
                          timeout=120)


def test_info_with_fcgpu_backend_cupy_and_no_device():
    if "cupy" in fc.available_backends():
        pytest.skip("a CUDA device is usable here")
    probe = run_info(FCGPU_BACKEND="cupy")
    assert probe.returncode == 1 and "Traceback" not in probe.stderr
    assert "active backend : none (FCGPU_BACKEND=cupy: backend 'cupy' is not usable here: " in probe.stdout
    assert "numpy          : " in probe.stdout and "cupy status    : " in probe.stdout  # the rest is still shown
    assert len(probe.stderr.strip().splitlines()) == 1


def test_info_with_a_misspelt_fcgpu_backend():
    probe = run_info(FCGPU_BACKEND="gpu")
    assert probe.returncode == 2 and "Traceback" not in probe.stderr
    assert probe.stderr.strip() == "fcgpu info: FCGPU_BACKEND: expected one of ['numpy', 'cupy', 'auto'], got 'gpu'"
    assert "available      : numpy" in probe.stdout


def test_backend_info_never_raises(monkeypatch):
    monkeypatch.setenv("FCGPU_BACKEND", "tpu")
    monkeypatch.setattr(backends, "_default", backends._Default())
    info = fc.backend_info()
    assert info["active"] is None and "FCGPU_BACKEND: expected one of" in info["error"]
    assert info["numpy"] and info["available"][0] == "numpy"


class _Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def find_spec(self, name, path, target=None):
        if name == "cupy":
            raise self.error


@pytest.mark.parametrize(
    "error, status, shown",
    [
        (ImportError("libcudart.so.13: cannot open shared object file"),
         "cupy failed to import: ImportError: libcudart.so.13", "failed to import"),
        (ModuleNotFoundError("No module named 'cupy_backends.cuda'", name="cupy_backends.cuda"),
         "cupy failed to import: ModuleNotFoundError: No module named 'cupy_backends.cuda'", "failed to import"),
        (ModuleNotFoundError("No module named 'cupy'", name="cupy"), "cupy is not installed", "not installed"),
    ],
)
def test_a_broken_cupy_is_not_reported_as_missing(monkeypatch, fresh_probe, capsys, error, status, shown):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Refuse(error), *sys.meta_path])
    with fc.use_backend("numpy"):
        info = fc.backend_info()
        assert info["cupy_status"].startswith(status) and info["cupy"] is None
        assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"cupy           : {shown}" in out and f"cupy status    : {status}" in out
