"""The optimizer base class: learning rate (a number or a schedule), state, and the two step paths.

A model's parameters live in flat buffers (``fcgpu.backends.params``): a step updates each buffer in one
backend call (``sgd_update``, ``adam_update``, ``rmsprop_update``, ``adagrad_update``: a single
fused kernel pass on CuPy, a few whole-buffer passes on NumPy), with the state kept in flat buffers
beside them. Layers stepped on their own are updated one call per parameter. State (momentum
buffers, moments, accumulators and step counts) is keyed by parameter name ('dense/kernel', ...)
and lives on the parameter's backend; each name is bound to the layer that owns it, so an
optimizer instance serves one model and refuses a second one instead of mixing two models' state.

``iterations`` counts the updates applied (Keras's name); a learning-rate schedule is evaluated at
it once per step, before the update, as Keras does. ``clipnorm``, ``clipvalue`` and
``global_clipnorm`` clip the gradients as Keras 3 does (``clipping``), inside the same updates.
"""
from __future__ import annotations

import math
import weakref
from typing import Any, Callable

import numpy as np

from ..backends import Backend, resolve_backend, to_numpy
from ..constraints import bound_constraints
from ..backends.base import Array
from ..backends.params import FlatParameters
from . import schedules
from .arguments import check_number, checked_rate, one_of
from .clipping import CLIP_ARGUMENTS, ClipPlan, check_clipping
from .ema import EMA_SLOT, check_ema, ema_config, ema_update, finalize
from .schedules import LearningRateSchedule

__all__ = ["Optimizer", "check_number", "flat_of", "layers_of", "one_of", "state_dtype"]


def _layer_class() -> type:
    """``fcgpu.layers.base.Layer``, imported when first asked: layers import the mixed-precision
    module, which imports the optimizers."""
    from ..layers.base import Layer

    return Layer


def _half_copies(layer: Any) -> dict[str, Array]:
    return layer.half_copies()


def layers_of(target: Any) -> list[Any]:
    """The layers of a model, a layer or a list of layers."""
    Layer = _layer_class()
    if isinstance(target, Layer):
        return list(target.sublayers()) or [target]
    try:
        layers = list(target)
    except TypeError:
        raise TypeError(f"model_or_layers: expected a model, a layer or a list of layers, got {type(target).__name__}") from None
    for layer in layers:
        if not isinstance(layer, Layer):
            raise TypeError(f"model_or_layers: expected layers, got a {type(layer).__name__}")
    return layers


def flat_of(target: Any) -> FlatParameters | None:
    """A model's flat parameter buffers; None for a layer or a list of layers."""
    return target.flat_parameters() if isinstance(target, _layer_class()) else None


def state_dtype(param_dtype: Any) -> np.dtype:
    """The dtype of optimizer state for parameters of ``param_dtype``: float32 for half types (a
    float16 second moment underflows for gradients below ~5e-3), else the parameter's own."""
    dtype = np.dtype(param_dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 and dtype.kind in "fV" else dtype


def _mixed_arguments(half: Array | None, unscale: float, guard: Array | None = None) -> dict[str, Any]:
    """The backend update's mixed-precision keywords, only where they differ from the defaults."""
    mixed: dict[str, Any] = {}
    if half is not None:
        mixed["half"] = half
    if guard is not None:
        mixed["guard"] = guard
    elif unscale != 1.0:
        mixed["unscale"] = unscale
    return mixed


# Attributes that ``apply`` reads each step (or that bind itself): setting one keeps the binding.
_READ_EACH_STEP = frozenset({"iterations", "bound_flat", "learning_rate", "lr", "steps", "state"})


class Optimizer:
    """Base class: per-parameter state slots ``_slots`` and one ``_update`` per parameter or buffer.

    ``learning_rate`` is a number >= 0 or a ``schedules.LearningRateSchedule``; ``lr`` is another
    name for it (give one). Reading ``opt.learning_rate`` (or ``opt.lr``) gives the current value
    as a float; setting it is checked, and a schedule cannot be replaced by a number (as in Keras).
    """

    _slots: tuple[str, ...] = ()
    reduces_gradients = False  # True for a wrapper whose update first all-reduces the gradients
    default_learning_rate = 0.001

    def __init__(
        self, learning_rate: float | LearningRateSchedule | None = None, *, lr: float | None = None,
        clipnorm: float | None = None, clipvalue: float | None = None, global_clipnorm: float | None = None,
        use_ema: bool = False, ema_momentum: float = 0.99, ema_overwrite_frequency: int | None = None,
    ) -> None:
        value, spelling = one_of(learning_rate, lr, "learning_rate", "lr", self.default_learning_rate)
        self._learning_rate: float | LearningRateSchedule = checked_rate(value, spelling)
        # Keras's gradient clipping (at most one; None or 0: none), bound with the flat buffers.
        self.clipnorm, self.clipvalue, self.global_clipnorm = check_clipping(clipnorm, clipvalue, global_clipnorm)
        self._clip_plan: ClipPlan | None = None
        # Keras's moving average of the weights (ema): its bound (backend, weights, average, half copy).
        self.use_ema, self.ema_momentum, self.ema_overwrite_frequency = check_ema(
            use_ema, ema_momentum, ema_overwrite_frequency)
        self._ema_plan: list[tuple] = []
        self._constrained: list[tuple] = []  # (constraint, backend, parameter, half copy): after each update
        self.iterations = 0  # updates applied: the step a schedule is evaluated at
        # name -> {slot: backend array}; name -> step count; name -> the layer the state belongs to
        self.state: dict[str, dict[str, Array]] = {}
        self.steps: dict[str, int] = {}
        self._owners: dict[str, weakref.ref] = {}
        # The flat buffers last stepped, and this optimizer's flat state beside them (the per-name
        # entries of self.state are views of it while they are the same arrays).
        self._flat: Any = None
        self._flat_state: dict[np.dtype, dict[str, Array]] = {}
        self._flat_views: dict[str, dict[str, Array]] = {}
        # The flat buffers ``bind`` bound this optimizer to (None: unbound), and per dtype what
        # ``apply`` updates: (params, grads, state slots, half copy or None); the parameter names.
        self.bound_flat: Any = None
        self._plan: list[tuple[Callable[..., None], tuple, tuple, tuple | None, Array | None]] = []
        self._plan_names: list[str] = []

    # -- learning rate -----------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next update: the schedule's value at ``iterations``, or the number."""
        rate = self._learning_rate
        return float(rate(self.iterations)) if isinstance(rate, LearningRateSchedule) else rate

    @learning_rate.setter
    def learning_rate(self, value: float | LearningRateSchedule) -> None:
        self._set_rate(value, "learning_rate")

    @property
    def lr(self) -> float:
        return self.learning_rate

    @lr.setter
    def lr(self, value: float | LearningRateSchedule) -> None:
        self._set_rate(value, "lr")

    @property
    def schedule(self) -> LearningRateSchedule | None:
        """The learning-rate schedule, or None for a constant learning rate."""
        rate = self._learning_rate
        return rate if isinstance(rate, LearningRateSchedule) else None

    def _set_rate(self, value: Any, argument: str) -> None:
        checked = checked_rate(value, argument)
        if self.schedule is not None and not isinstance(checked, LearningRateSchedule):
            raise TypeError(
                f"{argument}: this optimizer's learning rate is the schedule {self.schedule!r}, which a number cannot "
                f"replace; give the optimizer a number as its learning_rate to set it later"
            )
        self._learning_rate = checked

    # -- config ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """{'class_name', 'learning_rate' (a number, or a schedule's ``schedules.serialize``), ...}: JSON-ready."""
        rate = self._learning_rate
        clipping = {name: getattr(self, name) for name in CLIP_ARGUMENTS if getattr(self, name) is not None}
        return {
            "class_name": type(self).__name__,
            "learning_rate": schedules.serialize(rate) if isinstance(rate, LearningRateSchedule) else rate,
            **clipping,
            **ema_config(self),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Optimizer":
        """The optimizer ``get_config()`` described (without state); 0.1's 'lr' key is read too."""
        config = dict(config)
        config.pop("class_name", None)
        for key in ("learning_rate", "lr"):
            if isinstance(config.get(key), dict):
                config[key] = schedules.deserialize(config[key])
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "class_name")
        return f"{type(self).__name__}({args})"

    # -- ownership ---------------------------------------------------------------
    def check_owner(self, model_or_layers: Any) -> None:
        """Raise if this optimizer holds state for a parameter name of ``model_or_layers`` that
        belongs to a different layer (another model): one optimizer instance serves one model."""
        for layer in layers_of(model_or_layers):
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

    # -- stepping ----------------------------------------------------------------
    def step(self, model_or_layers: Any, *, unscale: float = 1.0, guard: Array | None = None) -> None:
        """Update every parameter of a model, a layer or a list of layers from its gradient.

        Everything is checked (gradients present, shapes, state) before the first parameter
        changes, so an error leaves the model as it was. ``unscale`` (1/loss scale, from
        ``LossScaleOptimizer``) multiplies the gradients inside the update. A mixed-precision
        layer's half copy of its parameters is written by the same update call. ``guard``
        (LossScaleOptimizer's device state, flat buffers only) decides on the device whether the
        update applies (``Backend.sgd_update``).
        """
        lr = self.learning_rate
        flat = flat_of(model_or_layers)
        if flat is not None and self._step_flat(flat, layers_of(model_or_layers), unscale, guard):
            return
        if guard is not None:
            raise RuntimeError("optimizer: a device-guarded step needs the model's flat buffers (flat_step_ready)")
        entries: list[tuple[Any, str, Array, Array]] = []
        seen: set[str] = set()
        for layer in layers_of(model_or_layers):
            for name, param, grad in layer.parameters():
                if name in seen:
                    raise ValueError(f"model_or_layers: two parameters are named {name!r}; give the layers unique names")
                seen.add(name)
                if grad is None or tuple(grad.shape) != tuple(param.shape):
                    raise RuntimeError(f"{name}: no gradient of shape {tuple(param.shape)}; run backward first")
                self._check_owner(name, layer)
                entries.append((layer, name, param, grad))
        states = [self._state_for(layer.backend, name, param) for layer, name, param, _ in entries]
        spans = [(g.reshape(-1), [(0, g.size)]) for *_, g in entries]
        clip = ClipPlan.of(self, entries[0][0].backend, spans) if entries else None
        if clip is not None:
            clip.before(unscale)
        for k, ((layer, name, param, grad), state) in enumerate(zip(entries, states)):
            self._owners[name] = weakref.ref(layer)
            step = self.steps.get(name, 0) + 1
            mixed = _mixed_arguments(layer.half_copies().get(name), unscale)
            if clip is not None:
                mixed["clip"] = clip.arguments[k]
            self._update(layer.backend, param, grad, state, step, lr, **mixed)
            self.steps[name] = step
        if self.use_ema:
            ema_update(self, [(layer.backend, param, state[EMA_SLOT], layer.half_copies().get(name))
                              for (layer, name, param, _), state in zip(entries, states)], self.iterations)
        for constraint, backend, param, half in bound_constraints([e[:3] for e in entries], _half_copies):
            constraint.apply(backend, param, half)
        self.iterations += 1

    def flat_step_ready(self, flat: Any) -> bool:
        """Whether the next step can update ``flat`` one buffer at a time: every parameter has the
        same step count (else each keeps its own bias correction on the per-parameter path)."""
        return flat is not None and flat.grads_ready() and len({self.steps.get(name, 0) for name in flat.slices}) == 1

    def _step_flat(self, flat: Any, layers: list[Any], unscale: float = 1.0, guard: Array | None = None) -> bool:
        """``step`` on a model's flat buffers, everything checked first: bound (again) where needed,
        then one ``apply``; False (nothing changed) where the parameters' step counts differ, so
        that the per-parameter path keeps each one's own bias correction."""
        for layer in layers:
            for name, param, grad in layer.parameters():
                if grad is None:
                    raise RuntimeError(f"{name}: no gradient of shape {tuple(param.shape)}; run backward first")
                self._check_owner(name, layer)
        current = self.bound_flat is flat and self._flat_state_current(flat)
        if not current and not self.bind(flat):
            return False
        self.apply(unscale=unscale, guard=guard)
        return True

    def bind(self, flat: Any) -> bool:
        """Bind the update to a model's flat parameters, gradients, half copies and this optimizer's
        flat state beside them (laid out, with the state so far, where needed), after checking that
        every parameter belongs to this optimizer's model. Once per layout: ``apply`` then updates
        what was bound and checks nothing. False (and unbound) where the parameters' step counts
        differ: each then keeps its own bias correction on the per-parameter path of ``step``."""
        for layer, name, _ in flat.views():
            self._check_owner(name, layer)
        self.bound_flat = None
        if len({self.steps.get(name, 0) for name in flat.slices}) != 1:
            return False
        if flat is not self._flat or not self._flat_state_current(flat):
            self._lay_out_state(flat)
        self._plan = [(*self._update_call(flat.backend, params, flat.grads[dtype], self._flat_state[dtype]),
                       flat.halves.get(dtype)) for dtype, params in flat.params.items()]
        self._plan_names = list(flat.slices)
        self._clip_plan = ClipPlan.of(self, flat.backend, [
            (flat.grads[dtype], [(a, b) for d, a, b in flat.slices.values() if d == dtype]) for dtype in flat.params
        ])
        self._constrained = bound_constraints(flat.views(), _half_copies)
        self._ema_plan = [(flat.backend, params, self._flat_state[dtype][EMA_SLOT], flat.halves.get(dtype))
                          for dtype, params in flat.params.items()] if self.use_ema else []
        for layer, name, _ in flat.views():
            self._owners[name] = weakref.ref(layer)
        self.bound_flat = flat
        return True

    def apply(self, *, unscale: float = 1.0, guard: Array | None = None) -> None:
        """One update of the bound flat buffers from their gradients: one backend call a buffer
        (one fused kernel on CuPy), the step counts and ``iterations`` advanced, nothing checked
        (``bind`` did). ``unscale`` and ``guard`` as in ``step``."""
        rate = self._learning_rate
        lr = rate if type(rate) is float else self.learning_rate
        steps, names = self.steps, self._plan_names
        step = steps.get(names[0], 0) + 1 if names else 1
        clip = self._clip_plan
        plain = guard is None and unscale == 1.0 and clip is None
        if clip is not None:
            clip.before(unscale, guard)
        for k, (method, head, hyper, tail, half) in enumerate(self._plan):
            mixed = {} if plain and half is None else _mixed_arguments(half, unscale, guard)
            if clip is not None:
                mixed["clip"] = clip.arguments[k]
            if tail is None:
                method(*head, lr, *hyper, **mixed)
            else:
                method(*head, lr, *hyper, step, *tail, **mixed)
        if self._ema_plan:  # Keras's: the moving average, then the constraints, after the update
            ema_update(self, self._ema_plan, self.iterations, guard)
        for constraint, backend, param, half in self._constrained:
            constraint.apply(backend, param, half, guard)
        for name in names:
            steps[name] = step
        self.__dict__["iterations"] += 1  # not through __setattr__: nothing to unbind

    def _update_call(
        self, backend: Backend, param: Array, grad: Array, state: dict[str, Array]
    ) -> tuple[Callable[..., None], tuple, tuple, tuple | None]:
        """The update of ``param`` (a parameter or a flat buffer) and its state as one backend call:
        (the backend method, its arguments before the learning rate, those after it, and those
        after the step count, or None for an update that takes no step count). ``bind`` takes it
        once a layout; ``apply`` then adds the learning rate and step count of each step."""
        raise NotImplementedError

    def _update(
        self, backend: Backend, param: Array, grad: Array, state: dict[str, Array], step: int, lr: float, **mixed: Any
    ) -> None:
        """One backend call updating ``param`` and its state; ``mixed`` (``half``, ``unscale``,
        ``guard``) goes to the backend call as it is."""
        method, head, hyper, tail = self._update_call(backend, param, grad, state)
        if tail is None:
            method(*head, lr, *hyper, **mixed)
        else:
            method(*head, lr, *hyper, step, *tail, **mixed)

    def __setattr__(self, name: str, value: Any) -> None:
        # A setting changed after ``bind`` (momentum, betas, ...): bound again at the next step, as
        # ``bind`` reads them. The learning rate and the counts are read each step.
        object.__setattr__(self, name, value)
        if name[0] != "_" and name not in _READ_EACH_STEP and self.__dict__.get("bound_flat") is not None:
            object.__setattr__(self, "bound_flat", None)

    def finalize_variable_values(self, model_or_layers: Any) -> None:
        """With ``use_ema``, every weight of ``model_or_layers`` overwritten by its moving average
        (Keras's; ``fit`` calls it at its end); nothing otherwise."""
        finalize(self, [(name, param, layer.half_copies().get(name))
                        for layer in layers_of(model_or_layers) for name, param, _ in layer.parameters()])

    def state_slots(self) -> tuple[str, ...]:
        """The state kept per parameter: the update's slots, and the moving average with ``use_ema``."""
        return self._slots + ((EMA_SLOT,) if self.use_ema else ())

    def loss_scale_state(self, flat: Any) -> Array | None:
        """The device array whose first element the loss step multiplies its gradient by (a loss
        scale, ``LossScaleOptimizer``), or None: no scaling."""
        return None

    def bias_correction_betas(self) -> tuple[float, float]:
        """(beta1, beta2) of a bias-corrected update (Adam's), whose corrections a device-guarded
        step computes on the device from the applied step count; (0, 0): none."""
        return 0.0, 0.0

    # -- state -------------------------------------------------------------------
    def initial_value(self, slot: str) -> float:
        """The value a state slot starts at (0; Adagrad's accumulator starts higher)."""
        return 0.0

    def _new_slot(self, backend: Backend, shape: tuple[int, ...], dtype: Any, slot: str) -> Array:
        value = backend.zeros(shape, dtype)
        start = self.initial_value(slot)
        if start:
            value[...] = start
        return value

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
        """Flat state buffers beside ``flat``'s, holding the per-name state so far (initial values where none)."""
        backend = flat.backend
        self._flat_state = {
            dtype: {slot: self._new_slot(backend, params.shape, state_dtype(params.dtype), slot) for slot in self.state_slots()}
            for dtype, params in flat.params.items()
        }
        for name, (dtype, start, stop) in flat.slices.items():
            shape = flat.shape(name)
            old = self.state.get(name, {})
            views = {}
            for slot in self.state_slots():
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
        self.bound_flat = None

    def _state_for(self, backend: Backend, name: str, param: Array) -> dict[str, Array]:
        state = self.state.get(name)
        if state is None:
            dtype = state_dtype(param.dtype)
            shape = tuple(param.shape)
            return self.state.setdefault(name, {s: self._new_slot(backend, shape, dtype, s) for s in self.state_slots()})
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

    def to(self, backend: str | Backend) -> "Optimizer":
        """Move the state to another backend ('numpy' | 'cupy' | 'auto' or a Backend)."""
        target, _ = resolve_backend(backend)
        self.bound_flat = None
        for state in self.state.values():
            for slot, value in state.items():
                if not target.owns(value):
                    state[slot] = target.from_numpy(to_numpy(value))
        return self

    def forget(self, names: Any) -> None:
        """Drop the state, step counts and owners of parameters ``names`` (a layer left the model:
        ``pop``), so that nothing of it is saved and a new layer may take the name."""
        for name in names:
            self.state.pop(name, None)
            self.steps.pop(name, None)
            self._owners.pop(name, None)
            self._flat_views.pop(name, None)
        self._flat, self._flat_state, self.bound_flat = None, {}, None

    def reset(self) -> None:
        """Forget all state (and the model it served), as a freshly constructed optimizer."""
        self.state.clear()
        self.steps.clear()
        self._owners.clear()
        self.iterations = 0
        self._flat, self._flat_state, self._flat_views, self.bound_flat = None, {}, {}, None

    def state_dict(self) -> dict[str, Any]:
        """{'config', 'iterations', 'steps', 'state': {name: {slot: NumPy array}}} (host copies)."""
        return {
            "config": self.get_config(),
            "iterations": self.iterations,
            "steps": dict(self.steps),
            "state": {n: {s: np.array(to_numpy(v), copy=True) for s, v in st.items()} for n, st in self.state.items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any], backend: Backend) -> None:
        """Restore ``state_dict()``'s steps, state and iterations onto ``backend``. Without an
        'iterations' entry (a model file keeps the step counts) it is the largest step count: the
        updates applied, as every update steps every parameter a model had then."""
        state: dict[str, dict[str, Array]] = {}
        for name, slots in state_dict.get("state", {}).items():
            if set(slots) != set(self.state_slots()):
                raise ValueError(f"state_dict: parameter {name!r} has slots {sorted(slots)}, expected {sorted(self.state_slots())}")
            state[name] = {s: backend.from_numpy(np.asarray(a)) for s, a in slots.items()}
        steps = {str(k): int(v) for k, v in state_dict.get("steps", {}).items()}
        iterations = state_dict.get("iterations", max(steps.values(), default=0))
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
            raise ValueError(f"state_dict: 'iterations' must be an int >= 0, got {iterations!r}")
        self.state, self.steps, self.iterations = state, steps, int(iterations)
        self._owners = {}  # bound again by the next step
        self.bound_flat = None
