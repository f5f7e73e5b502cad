"""PyTorch interop: nn.Sequential-of-nn.Linear state dicts to and from fcgpu models, without importing torch.

nn.Linear stores its weight as (out, in): the transpose of a Dense kernel (in, out).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["export_torch_state_dict", "import_torch_state_dict"]


def _torch_prefixes(model: Any) -> list[str]:
    # The module indices of nn.Sequential(Linear, act, Linear, act, ..., Linear): each Dense is a
    # Linear followed by its activation module unless it is linear.
    prefixes, index = [], 0
    for layer in model.layers:
        prefixes.append(str(index))
        index += 1 if layer.activation.name == "linear" else 2
    return prefixes


def export_torch_state_dict(model: Any, prefixes: list[str] | None = None) -> dict[str, np.ndarray]:
    """NumPy arrays keyed like an nn.Sequential of nn.Linear (weight (out, in): the kernel transposed).

    By default the prefixes are the module indices of ``nn.Sequential(Linear, ReLU, Linear, ...)`` for
    the model's activations ('0.weight', '2.weight', ...); load with
    ``module.load_state_dict({k: torch.from_numpy(v) for k, v in d.items()})``.
    """
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built")
    prefixes = prefixes or _torch_prefixes(model)
    if len(prefixes) != len(model.layers):
        raise ValueError(f"prefixes: expected {len(model.layers)} names, one per layer, got {len(prefixes)}")
    out: dict[str, np.ndarray] = {}
    for prefix, layer in zip(prefixes, model.layers):
        weights = layer.get_weights()
        out[f"{prefix}.weight"] = np.ascontiguousarray(weights[0].T)
        if layer.use_bias:
            out[f"{prefix}.bias"] = weights[1]
    return out


def import_torch_state_dict(model: Any, state_dict: Mapping[str, Any]) -> None:
    """Load nn.Linear weights (out, in) and biases, matched to the Dense layers in order.

    Keys are grouped by their prefix before '.weight' / '.bias' in the dict's order, as
    ``module.state_dict()`` lists them; values may be NumPy arrays or CPU tensors. Every shape is
    checked before any layer changes; an unbuilt model is built from the first weight.
    """
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        prefix, _, kind = str(key).rpartition(".")
        if kind not in ("weight", "bias"):
            raise ValueError(f"state_dict: key {key!r} is neither a '.weight' nor a '.bias'")
        groups.setdefault(prefix, {})[kind] = np.asarray(value)
    layers = model.layers
    if len(groups) != len(layers):
        raise ValueError(f"state_dict: has {len(groups)} linear layers ({list(groups)}), the model has {len(layers)}")
    weights: list[np.ndarray] = []
    features = None
    for (prefix, g), layer in zip(groups.items(), layers):
        if "weight" not in g:
            raise ValueError(f"state_dict: '{prefix}.weight' is missing")
        w = g["weight"]
        if w.ndim != 2 or w.shape[0] != layer.units:
            raise ValueError(f"state_dict['{prefix}.weight']: expected shape ({layer.units}, in), got {w.shape}")
        if features is not None and w.shape[1] != features:
            raise ValueError(f"state_dict['{prefix}.weight']: expected {features} inputs, got shape {w.shape}")
        features = layer.units
        weights.append(np.ascontiguousarray(w.T))
        if layer.use_bias:
            if "bias" not in g:
                raise ValueError(f"state_dict: '{prefix}.bias' is missing for layer '{layer.name}'")
            weights.append(g["bias"])
        elif "bias" in g:
            raise ValueError(f"state_dict: '{prefix}.bias' given but layer '{layer.name}' has no bias")
    if not model.built:
        model.build(weights[0].shape[0])
    model.set_weights(weights)
