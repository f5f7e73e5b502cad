"""The CUDA sources ship inside the wheel, where the CuPy backend looks for them."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import fcgpu
from fcgpu.backends.cupy import gemm, kernel_sources

ROOT = Path(__file__).resolve().parents[1]


def test_every_header_is_found_and_in_the_preamble():
    text = kernel_sources.preamble()
    for name in kernel_sources.HEADERS:
        assert (kernel_sources.kernels_dir() / name).is_file()
        assert kernel_sources.read(name) in text


def test_wheel_contains_the_kernels(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("fcgpu-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for header in kernel_sources.HEADERS + gemm.GEMM_HEADERS + (gemm.WMMA_HEADER,):  # the own GEMMs' RawModules too
        assert f"fcgpu/backends/cupy/kernels/{header}" in names
    assert "fcgpu/backends/cupy/backend.py" in names and "fcgpu/testing/fake_cupy/__init__.py" in names
    assert "fcgpu/testing/fake_cupy/host_runtime.h" in names
    # every package of the source tree is in the wheel, and none of the test lab
    source = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "fcgpu").rglob("__init__.py")}
    for package in source:
        assert f"{package}/__init__.py" in names, package
    assert not [n for n in names if "compile_gate" in n or "kernel_checks" in n or "cuda_compile" in n]
    assert fcgpu.__version__ in wheel.name
