"""Moving models between fcgpu and other tools: PyTorch state dicts, Keras 3 files, ONNX.

- ``export_torch_state_dict`` / ``import_torch_state_dict``: nn.Sequential-of-nn.Linear weights
  (``torch_state``), without importing torch;
- ``save_keras_model`` / ``load_keras_model``: Keras 3 ``.keras`` archives of Sequential and
  functional models (``keras_archive``, on ``keras_config`` for the configs: ``keras_layers``,
  ``keras_models``, ``keras_compile``; ``keras_weights`` for the HDF5 weights and ``keras_optimizer``
  for the optimizer state), which ``model.save`` / ``fc.load_model`` use for that extension;
  ``save_weights`` / ``load_weights``: Keras 3 ``.weights.h5`` files;
- ``export_onnx``: an ONNX graph for ONNX Runtime, TensorRT and the like (``onnx_export``, on ``onnx_ops``);
- ``convert``: the ``fcgpu convert IN OUT`` command between all of these.

h5py and onnx are imported only when such a file is written or read.
"""
from __future__ import annotations

from .keras_archive import is_keras_archive, load_keras_model, save_keras_model
from .keras_config import UnsupportedKeras
from .keras_weights import load_weights, save_weights
from .onnx_export import export_onnx
from .torch_state import export_torch_state_dict, import_torch_state_dict

__all__ = [
    "UnsupportedKeras",
    "export_onnx",
    "export_torch_state_dict",
    "import_torch_state_dict",
    "is_keras_archive",
    "load_keras_model",
    "load_weights",
    "save_keras_model",
    "save_weights",
]
