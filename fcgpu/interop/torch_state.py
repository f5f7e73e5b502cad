"""PyTorch interop: nn.Sequential-of-nn.Linear state dicts to and from fcgpu models, without importing torch.

nn.Linear stores its weight as (out, in): the transpose of a Dense kernel (in, out).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["export_torch_state_dict", "import_torch_state_dict"]


def _linear_layers(model: Any) -> list[Any]:
    """The layers with weights (Dense): each becomes an nn.Linear."""
    return [layer for layer in model.layers if layer.weight_count()]


def _torch_prefixes(model: Any) -> list[str]:
    # The module indices of the matching nn.Sequential: each Dense is a Linear followed by its
    # activation module unless it is linear; a Dropout or Activation layer is one module.
    prefixes, index = [], 0
    for layer in model.layers:
        if layer.weight_count():
            prefixes.append(str(index))
            index += 1 if layer.activation.name == "linear" else 2
        else:
            index += 1
    return prefixes


def export_torch_state_dict(model: Any, prefixes: list[str] | None = None) -> dict[str, np.ndarray]:
    """NumPy arrays keyed like an nn.Sequential of nn.Linear (weight (out, in): the kernel transposed).

    By default the prefixes are the module indices of ``nn.Sequential(Linear, ReLU, Linear, ...)`` for
    the model's activations ('0.weight', '2.weight', ...); load with
    ``module.load_state_dict({k: torch.from_numpy(v) for k, v in d.items()})``.
    """
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built")
    linear = _linear_layers(model)
    prefixes = prefixes or _torch_prefixes(model)
    if len(prefixes) != len(linear):
        raise ValueError(f"prefixes: expected {len(linear)} names, one per Dense layer, got {len(prefixes)}")
    out: dict[str, np.ndarray] = {}
    for prefix, layer in zip(prefixes, linear):
        weights = layer.get_weights()
        out[f"{prefix}.weight"] = np.ascontiguousarray(weights[0].T)
        if layer.use_bias:
            out[f"{prefix}.bias"] = weights[1]
    return out


def import_torch_state_dict(model: Any, state_dict: Mapping[str, Any]) -> None:
    """Load nn.Linear weights (out, in) and biases, matched to the Dense layers in order.

    Keys are grouped by their prefix before '.weight' / '.bias'. Prefixes that differ only in
    module indices ('0', '2', ..., '10' or 'net.0', 'net.10') are taken in numeric order, whatever
    order the dict lists them in (a file format may sort keys as strings); other prefixes in the
    dict's order, as ``module.state_dict()`` lists them. Values may be NumPy arrays or CPU
    tensors. Every array is checked before any layer changes; an unbuilt model is built from the
    first weight.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        prefix, _, kind = str(key).rpartition(".")
        if kind not in ("weight", "bias"):
            raise ValueError(f"state_dict: key {key!r} is neither a '.weight' nor a '.bias'")
        try:
            groups.setdefault(prefix, {})[kind] = _host(value)
        except (TypeError, ValueError) as e:
            raise ValueError(f"state_dict[{key!r}]: expected a numeric array or CPU tensor, got {e}") from None
    groups = {p: groups[p] for p in _module_order(list(groups))}
    layers = _linear_layers(model)
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
    model.set_weights(weights)  # checks every array, then builds an unbuilt model, then loads


def _host(value: Any) -> np.ndarray:
    """A NumPy array from a NumPy array or a CPU tensor (``.numpy()``), without importing torch."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"dtype {a.dtype}")
    return a


def _module_order(prefixes: list[str]) -> list[str]:
    """``prefixes`` in numeric module order when they differ only in integer parts, else as given."""
    split = [p.split(".") for p in prefixes]
    if len(split) < 2 or len({len(s) for s in split}) != 1:
        return prefixes
    varying = [i for i in range(len(split[0])) if len({s[i] for s in split}) > 1]
    if not all(all(s[i].isdigit() for s in split) for i in varying):
        return prefixes
    return sorted(prefixes, key=lambda p: [int(part) if part.isdigit() else part for part in p.split(".")])
