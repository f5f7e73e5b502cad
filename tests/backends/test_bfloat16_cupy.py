"""bfloat16 on the CuPy backend needs what CuPy needs for it: ml_dtypes and NumPy >= 2.1.2 (issue 18, 4)."""
from __future__ import annotations

import pathlib
import sys


import numpy as np
import pytest

from fcgpu.mixed_precision import bfloat16, cupy_bfloat16_problem
from fcgpu.testing import stand_in_backend

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_cuda_extras_bring_what_cupy_needs_for_bfloat16():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name in ("cuda12", "cuda13"):
        assert "numpy>=2.1.2" in extras[name] and any(r.startswith("ml_dtypes") for r in extras[name]), name


def test_bfloat16_buffers_on_the_cupy_backend_fail_clearly_with_an_old_numpy(monkeypatch):
    dtype = bfloat16()
    backend = stand_in_backend()
    assert cupy_bfloat16_problem() is None and backend.zeros((2,), dtype).dtype == dtype
    monkeypatch.setattr(np, "__version__", "2.0.2")
    for make in (lambda: backend.zeros((2,), dtype), lambda: backend.empty((2,), dtype),
                 lambda: backend.from_numpy(np.zeros(2, dtype))):
        with pytest.raises(TypeError, match=r"NumPy >= 2.1.2 \(this is NumPy 2.0.2\).*fcgpu\[cuda13\]"):
            make()
    assert backend.zeros((2,), np.float32).shape == (2,)  # other dtypes are not concerned


def test_the_message_names_ml_dtypes_when_it_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    assert "the ml_dtypes package" in cupy_bfloat16_problem()
