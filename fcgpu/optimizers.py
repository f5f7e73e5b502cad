"""Optimizers with torch.optim's semantics for the same arguments.

A model's parameters live in flat buffers (``fcgpu.params``): a step updates each buffer in one
backend call (``sgd_update`` / ``adam_update``: a single fused kernel pass on CuPy, a few
whole-buffer passes on NumPy), with the state kept in flat buffers beside them. Layers stepped on
their own are updated one call per parameter. State (momentum buffers, Adam's moments and step counts) is keyed by
parameter name ('dense/kernel', ...) and lives on the parameter's backend; each name is bound
to the layer that owns it, so an optimizer instance serves one model and refuses a second one
instead of mixing two models' state.
"""
from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np

from .backends import Backend, resolve_backend, to_numpy
from .backends.base import Array

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "get"]


def _number(value: Any, argument: str, low: float = 0.0, high: float = math.inf, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{argument}: expected a number, got {value!r}")
    value = float(value)
    if not (low <= value and (value < high if high_open else value <= high)):
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{argument}: expected a value in {bound}, got {value!r}")
    return value


def _layers_of(target: Any) -> list[Any]:
    if hasattr(target, "layers"):
        return list(target.layers)
    if hasattr(target, "parameters"):
        return [target]
    try:
        layers = list(target)
    except TypeError:
        raise TypeError(f"model_or_layers: expected a model, a layer or a list of layers, got {type(target).__name__}") from None
    for layer in layers:
        if not hasattr(layer, "parameters"):
            raise TypeError(f"model_or_layers: expected layers, got a {type(layer).__name__}")
    return layers


def state_dtype(param_dtype: Any) -> np.dtype:
    """The dtype of optimizer state for parameters of ``param_dtype``: float32 for half types (a
    float16 second moment underflows for gradients below ~5e-3), else the parameter's own."""
    dtype = np.dtype(param_dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 and dtype.kind in "fV" else dtype


class Optimizer:
    """Base class: per-parameter state slots ``_slots`` and one ``_update`` per parameter."""

    _slots: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        self.lr = lr
        # name -> {slot: backend array}; name -> step count; name -> the layer the state belongs to
        self.state: dict[str, dict[str, Array]] = {}
        self.steps: dict[str, int] = {}
        self._owners: dict[str, weakref.ref] = {}
        # The flat buffers last stepped, and this optimizer's flat state beside them (the per-name
        # entries of self.state are views of it while they are the same arrays).
        self._flat: Any = None
        self._flat_state: dict[np.dtype, dict[str, Array]] = {}
        self._flat_views: dict[str, dict[str, Array]] = {}

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _number(value, "lr")

    @property
    def learning_rate(self) -> float:
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._lr = _number(value, "learning_rate")

    def check_owner(self, model_or_layers: Any) -> None:
        """Raise if this optimizer holds state for a parameter name of ``model_or_layers`` that
        belongs to a different layer (another model): one optimizer instance serves one model."""
        for layer in _layers_of(model_or_layers):
            for name, _, _ in layer.parameters():
                self._check_owner(name, layer)

    def _check_owner(self, name: str, layer: Any) -> None:
        ref = self._owners.get(name)
        owner = ref() if ref is not None else None
        if owner is not None and owner is not layer:
            raise ValueError(
                f"optimizer: this {type(self).__name__} already updates a parameter {name!r} of another model "
                f"(layer {owner!r}); an optimizer instance serves one model: give each model its own optimizer"
            )

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "class_name")
        return f"{type(self).__name__}({args})"

    def step(self, model_or_layers: Any) -> None:
        """Update every parameter of a model, a layer or a list of layers from its gradient.

        Everything is checked (gradients present, shapes, state) before the first parameter
        changes, so an error leaves the model as it was.
        """
        flat_parameters = getattr(model_or_layers, "flat_parameters", None)
        flat = flat_parameters() if callable(flat_parameters) else None
        if flat is not None and self._step_flat(flat, list(model_or_layers.layers)):
            return
        entries: list[tuple[Backend, str, Array, Array]] = []
        seen: set[str] = set()
        for layer in _layers_of(model_or_layers):
            for name, param, grad in layer.parameters():
                if name in seen:
                    raise ValueError(f"model_or_layers: two parameters are named {name!r}; give the layers unique names")
                seen.add(name)
                if grad is None or tuple(grad.shape) != tuple(param.shape):
                    raise RuntimeError(f"{name}: no gradient of shape {tuple(param.shape)}; run backward first")
                self._check_owner(name, layer)
                entries.append((layer, name, param, grad))
        states = [self._state_for(layer.backend, name, param) for layer, name, param, _ in entries]
        for (layer, name, param, grad), state in zip(entries, states):
            backend = layer.backend
            self._owners[name] = weakref.ref(layer)
            step = self.steps.get(name, 0) + 1
            self._update(backend, param, grad, state, step)
            self.steps[name] = step

    def _step_flat(self, flat: Any, layers: list[Any]) -> bool:
        """One update per flat buffer; False (nothing changed) where the parameters' step counts
        differ, so that the per-parameter path keeps each one's own bias correction."""
        names = list(flat.slices)
        counts = {self.steps.get(name, 0) for name in names}
        if len(counts) != 1:
            return False
        for layer in layers:
            for name, param, grad in layer.parameters():
                if grad is None:
                    raise RuntimeError(f"{name}: no gradient of shape {tuple(param.shape)}; run backward first")
                self._check_owner(name, layer)
        if flat is not self._flat or not self._flat_state_current(flat):
            self._lay_out_state(flat)
        step = counts.pop() + 1
        for dtype, params in flat.params.items():
            self._update(flat.backend, params, flat.grads[dtype], self._flat_state[dtype], step)
        for layer in layers:
            for name, _, _ in layer.parameters():
                self.steps[name] = step
                self._owners[name] = weakref.ref(layer)
        return True

    def _flat_state_current(self, flat: Any) -> bool:
        """Whether every parameter's state entries are still the views laid out for ``flat``."""
        for name in flat.slices:
            state, views = self.state.get(name), self._flat_views.get(name)
            if state is None or views is None or set(state) != set(views):
                return False
            if any(state[slot] is not view for slot, view in views.items()):
                return False
        return True

    def _lay_out_state(self, flat: Any) -> None:
        """Flat state buffers beside ``flat``'s, holding the per-name state so far (zeros where none)."""
        backend = flat.backend
        self._flat_state = {
            dtype: {slot: backend.zeros(params.shape, state_dtype(params.dtype)) for slot in self._slots}
            for dtype, params in flat.params.items()
        }
        for name, (dtype, start, stop) in flat.slices.items():
            shape = flat.shape(name)
            old = self.state.get(name, {})
            views = {}
            for slot in self._slots:
                view = self._flat_state[dtype][slot][start:stop].reshape(shape)
                if slot in old:
                    if tuple(old[slot].shape) != shape:
                        raise ValueError(
                            f"{name}: optimizer state {slot!r} has shape {tuple(old[slot].shape)} but the parameter "
                            f"has {shape}; use a new optimizer for a rebuilt model"
                        )
                    view[...] = backend.from_numpy(to_numpy(old[slot]).astype(view.dtype))
                views[slot] = view
            self.state[name] = views
            self._flat_views[name] = dict(views)
        self._flat = flat

    def _state_for(self, backend: Backend, name: str, param: Array) -> dict[str, Array]:
        state = self.state.get(name)
        if state is None:
            dtype = state_dtype(param.dtype)
            return self.state.setdefault(name, {s: backend.zeros(tuple(param.shape), dtype) for s in self._slots})
        for slot, value in state.items():
            if tuple(value.shape) != tuple(param.shape):
                raise ValueError(
                    f"{name}: optimizer state {slot!r} has shape {tuple(value.shape)} but the parameter has "
                    f"{tuple(param.shape)}; use a new optimizer for a rebuilt model"
                )
            if not backend.owns(value) or value.dtype != state_dtype(param.dtype):
                # The layer was moved without its optimizer: follow it.
                state[slot] = backend.from_numpy(to_numpy(value).astype(state_dtype(param.dtype)))
        return state

    def _update(self, backend: Backend, param: Array, grad: Array, state: dict[str, Array], step: int) -> None:
        raise NotImplementedError

    def to(self, backend: str | Backend) -> "Optimizer":
        """Move the state to another backend ('numpy' | 'cupy' | 'auto' or a Backend)."""
        target, _ = resolve_backend(backend)
        for state in self.state.values():
            for slot, value in state.items():
                if not target.owns(value):
                    state[slot] = target.from_numpy(to_numpy(value))
        return self

    def reset(self) -> None:
        """Forget all state (and the model it served), as a freshly constructed optimizer."""
        self.state.clear()
        self.steps.clear()
        self._owners.clear()
        self._flat, self._flat_state, self._flat_views = None, {}, {}

    def state_dict(self) -> dict[str, Any]:
        """{'config', 'steps', 'state': {name: {slot: NumPy array}}} (host copies)."""
        return {
            "config": self.get_config(),
            "steps": dict(self.steps),
            "state": {n: {s: np.array(to_numpy(v), copy=True) for s, v in st.items()} for n, st in self.state.items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any], backend: Backend) -> None:
        """Restore ``state_dict()``'s steps and state onto ``backend``."""
        state: dict[str, dict[str, Array]] = {}
        for name, slots in state_dict.get("state", {}).items():
            if set(slots) != set(self._slots):
                raise ValueError(f"state_dict: parameter {name!r} has slots {sorted(slots)}, expected {sorted(self._slots)}")
            state[name] = {s: backend.from_numpy(np.asarray(a)) for s, a in slots.items()}
        self.state = state
        self.steps = {str(k): int(v) for k, v in state_dict.get("steps", {}).items()}
        self._owners = {}  # bound again by the next step


class SGD(Optimizer):
    """torch.optim.SGD (dampening 0): g += wd p; buf = mu buf + g; g = g + mu buf if nesterov else buf; p -= lr g."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        self.momentum = _number(momentum, "momentum")
        self.weight_decay = _number(weight_decay, "weight_decay")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected a bool, got {nesterov!r}")
        if nesterov and self.momentum <= 0:
            raise ValueError("nesterov: Nesterov momentum requires momentum > 0")
        self.nesterov = bool(nesterov)
        self._slots = ("momentum_buffer",) if self.momentum else ()

    def get_config(self) -> dict[str, Any]:
        return {
            "class_name": "SGD",
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def _update(self, backend, param, grad, state, step):
        backend.sgd_update(
            param, grad, state.get("momentum_buffer"), self.lr, self.momentum, self.weight_decay, self.nesterov
        )


class Adam(Optimizer):
    """torch.optim.Adam: bias-corrected moments; ``weight_decay`` adds wd p to the gradient (L2)."""

    _slots = ("exp_avg", "exp_avg_sq")
    _decoupled = False
    default_weight_decay = 0.0  # what weight_decay=None means

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float | None = None,
    ) -> None:
        super().__init__(lr)
        self.beta1 = _number(beta1, "beta1", 0.0, 1.0, high_open=True)
        self.beta2 = _number(beta2, "beta2", 0.0, 1.0, high_open=True)
        self.eps = _number(eps, "eps")
        decay = self.default_weight_decay if weight_decay is None else weight_decay
        self.weight_decay = _number(decay, "weight_decay")

    def get_config(self) -> dict[str, Any]:
        return {
            "class_name": type(self).__name__,
            "lr": self.lr,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    def _update(self, backend, param, grad, state, step):
        backend.adam_update(
            param,
            grad,
            state["exp_avg"],
            state["exp_avg_sq"],
            self.lr,
            self.beta1,
            self.beta2,
            self.eps,
            self.weight_decay,
            step,
            self._decoupled,
        )


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled decay p *= 1 - lr wd before the update (default wd 0.01)."""

    _decoupled = True
    default_weight_decay = 0.01


_NAMES = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get(identifier: str | Optimizer | dict[str, Any]) -> Optimizer:
    """An optimizer from an instance, a config dict, or a name ('sgd', 'adam', 'adamw') with defaults."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        config = dict(identifier)
        cls = {c.__name__: c for c in _NAMES.values()}.get(config.pop("class_name", None))
        if cls is None:
            raise ValueError(f"optimizer: unknown config {identifier!r}")
        return cls(**config)
    if isinstance(identifier, str) and identifier.lower() in _NAMES:
        return _NAMES[identifier.lower()]()
    raise ValueError(f"optimizer: expected an Optimizer instance or one of {sorted(_NAMES)}, got {identifier!r}")

