"""Deprecated alias of ``fcgpu.saving`` and ``fcgpu.interop`` (kept for release 0.2; the name
shadowed the standard library's ``io``)."""
from __future__ import annotations

from .interop import export_torch_state_dict, import_torch_state_dict
from .saving import ModelFileError, load_model, save_model, write_npz

_write_npz = write_npz  # the 0.1 name

__all__ = ["save_model", "load_model", "ModelFileError", "export_torch_state_dict", "import_torch_state_dict"]
