"""Model: what Sequential and functional models share (weights, lookup, files, the layer protocol
for a model used as a layer); training is inherited from ``training.Trainer``.

``fcgpu.Model(inputs, outputs)`` makes a functional model (``models.functional``), as
``keras.Model`` does. A model is also a ``Layer``: it can be a layer of another model (Sequential
or functional). Its parameters then keep their names inside it, prefixed by its own name
('encoder/dense/kernel') so that they cannot clash with the outer model's.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Sequence

import numpy as np

from .. import distributed
from ..backends import Backend, get_backend
from ..backends.base import Array
from ..layers import Layer
from ..layers.base import trainable_flag
from ..layers.context import INFERENCE, TRAINING
from ..layers.fusion import Plan, plan_chain
from ..layers.symbolic import is_symbolic
from ..interop.keras_config import UnsupportedKeras, model_from_keras
from ..saving import save_model
from ..saving.serialization import deserialize
from ..backends.validation import float_array
from ..training import Trainer
from . import summary as summary_module

__all__ = ["Model", "model_from_config"]


class Model(Trainer, Layer):
    """Base of Sequential and the functional model; ``Model(inputs, outputs, name)`` makes the latter."""

    any_rank = True  # a nested model takes what its own input takes

    def __new__(cls, *args: Any, **kwargs: Any) -> "Model":
        if cls is Model:
            if not args and "inputs" not in kwargs:
                raise TypeError(
                    "Model: expected Model(inputs, outputs, name=None) (the functional API); subclassed models with a "
                    "call() method are not supported: build the model from fcgpu.Input and layers, or use Sequential"
                )
            return super().__new__(Model.graph_class)
        return super().__new__(cls)

    graph_class: type = None  # type: ignore[assignment]  # what Model(inputs, outputs) makes: models.functional sets it

    @staticmethod
    def makes_graphs(cls: type) -> type:
        """Class decorator: ``cls`` is what ``Model(inputs, outputs)`` makes (the functional model)."""
        Model.graph_class = cls
        return cls

    def __init__(self, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"name: expected a non-empty string without '/', got {name!r}")
        Trainer.__init__(self)
        Layer.__init__(self, name)
        self._layers: list[Layer] = []
        # The layers that compute, in order (``layers`` without the inputs a functional model lists):
        # the model's own list (a Sequential's is ``_layers`` itself): read it, do not change it.
        self.compute_layers: list[Layer] = self._layers
        self._target: Backend | None = None
        self.nested_in: Any = None  # the model this one is a layer of (its parameters then carry its name)

    # -- structure ---------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> "Model":  # type: ignore[override]
        """``keras.Model.from_config``: the Sequential or functional model ``config`` describes."""
        if cls is not Model:
            raise NotImplementedError  # Sequential and Functional have their own
        return model_from_config(config, custom_objects)

    def sublayers(self) -> list[Layer]:
        return self.compute_layers

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name``, or at position ``index`` of ``layers`` (Keras's ``get_layer``)."""
        layers = self._layers
        if (name is None) == (index is None):
            raise ValueError("get_layer: give a layer name or an index, one of them")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(layers) <= index < len(layers):
                raise ValueError(f"index: expected an int in [0, {len(layers)}) for model '{self.name}', got {index!r}")
            return layers[int(index)]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"name: no layer named {name!r} in model '{self.name}'; its layers: {[l.name for l in layers]}")

    def to_json(self, **kwargs: Any) -> str:
        """The architecture as a JSON string (``fcgpu.models.model_from_json`` reads it back)."""
        return json.dumps(self.get_config(), **kwargs)

    @property
    def backend(self) -> Backend:  # type: ignore[override]
        """The backend the parameters live on (before the model is built: the one given to ``to``, else the active one)."""
        for layer in self.compute_layers:
            if layer.built:
                return layer.backend
        return self._target or get_backend()

    @property
    def output_layer(self) -> Layer:
        """The layer whose output is the model's (the loss meets its activation)."""
        self._require_layers()
        return self.compute_layers[-1]

    @property
    def input_dtype(self) -> np.dtype:
        """The dtype inputs are checked and uploaded in: the first computing layer's."""
        self._require_layers()
        return np.dtype(self.compute_layers[0].dtype)

    @property
    def trainable(self) -> bool:
        """The model's own flag; setting it sets every layer's (Keras's ``model.trainable = False``
        freezes the whole model, e.g. a base model inside another)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        flag = trainable_flag(value)
        for layer in self.compute_layers:
            layer.trainable = flag
        self._trainable = flag

    # -- fusion plans --------------------------------------------------------------------
    #: The plan the last forward ran (its backward runs the same groups); None before one.
    forward_plan: Plan | None = None
    _chain_plans: dict[bool, Plan] | None = None

    def chain_plan(self, chain: list[Layer], training: bool) -> Plan:
        """The fusion plan (``layers.fusion``) of ``chain`` for a forward with ``training``: the one
        made before while it still holds (same layers, switch and fusion settings), else a new one."""
        plans = self._chain_plans
        if plans is None:
            plans = self._chain_plans = {}
        plan = plans.get(training)
        if plan is None or not plan.current(chain):
            plan = plans[training] = plan_chain(chain, training)
        return plan

    def fusion_plan(self, training: bool) -> Plan | None:
        """The plan of the model's layers where they form a chain, else None (a graph runs node by node)."""
        return None

    def _require_layers(self) -> None:
        if not self.compute_layers:  # noqa: SIM102
            raise ValueError(f"model '{self.name}' has no layers: add some with model.add(Dense(...))")

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(
                f"{what}: model '{self.name}' is not built yet: call model.build((None, in_features)) or call the "
                f"model on a batch of data first"
            )

    # -- inputs ----------------------------------------------------------------------
    @property
    def declared_input_shape(self) -> tuple[int, ...] | None:  # type: ignore[override]
        """A model used as a first layer declares its own input (a Sequential's Input then has its shape)."""
        specs = self.input_specs()
        return specs[0][1] if len(specs) == 1 else None

    def input_specs(self) -> list[tuple[str, tuple[int, ...] | None]]:
        """[(name, sample shape or None where not yet known)] of each input, in order."""
        raise NotImplementedError

    def flattens_input(self) -> bool:
        """Whether samples of rank > 1 reach a Flatten before any layer that needs flat features."""
        return False

    def host_inputs(self, x: Any, argument: str = "x", width: int | None = None) -> np.ndarray:
        """x checked on the host as one (samples, features) array of the input dtype: several inputs
        (a list in input order, or a dict by input name) side by side, samples of rank > 1 flattened,
        and a 1-D x one feature per sample (as Keras). ``width``: the features expected where the
        model does not know them yet."""
        specs = self.input_specs()
        owner = f"model '{self.name}'"
        if len(specs) == 1:
            name, shape = specs[0]
            if isinstance(x, dict):
                if set(x) != {name}:
                    raise ValueError(f"{argument}: model '{self.name}' has one input named {name!r}, got keys {sorted(x)}")
                x = x[name]
            return self._one_input(x, argument, shape, width, owner)
        names = [name for name, _ in specs]
        if isinstance(x, dict):
            if set(x) != set(names):
                raise ValueError(
                    f"{argument}: model '{self.name}' takes the inputs {names}; got a dict with keys {sorted(x)}"
                )
            parts = [(x[name], f"{argument}[{name!r}]") for name in names]
        elif isinstance(x, (list, tuple)) and len(x) == len(specs):
            parts = [(part, f"{argument}[{i}]") for i, part in enumerate(x)]
        else:
            got = f"a list of {len(x)}" if isinstance(x, (list, tuple)) else type(x).__name__
            raise ValueError(
                f"{argument}: model '{self.name}' takes {len(specs)} inputs {names}: expected a list of {len(specs)} "
                f"arrays or a dict by input name, got {got}"
            )
        arrays = [self._one_input(part, where, shape, None, owner) for (part, where), (_, shape) in zip(parts, specs)]
        rows = {a.shape[0] for a in arrays}
        if len(rows) > 1:
            raise ValueError(f"{argument}: expected the same number of samples in every input, got {[a.shape[0] for a in arrays]}")
        return np.concatenate(arrays, axis=1)

    def _one_input(self, x: Any, argument: str, shape: tuple[int, ...] | None, width: int | None, owner: str) -> np.ndarray:
        host = float_array(x, argument, self.input_dtype, owner=owner)
        if host.ndim == 0:
            raise ValueError(f"{argument}: expected shape (samples, features), got a scalar")
        if host.ndim == 1:  # Keras: a 1-D x is one feature per sample
            host = host.reshape(-1, 1)
        if host.shape[0] < 1:
            raise ValueError(f"{argument}: expected at least one sample, got shape {host.shape}")
        if shape is not None and len(shape) > 1 or host.ndim > 2:
            if shape is None and not self.flattens_input():
                raise ValueError(
                    f"{argument}: expected shape (samples, features), got {host.shape} ({owner} has no Flatten before "
                    f"its first layer that needs flat features)"
                )
            if shape is not None and tuple(host.shape[1:]) != tuple(shape):
                raise ValueError(f"{argument}: {owner} takes samples of shape {tuple(shape)}, got shape {host.shape}")
            host = host.reshape(host.shape[0], -1)
        expected = int(math.prod(shape)) if shape is not None else width
        if expected is not None and host.shape[1] != expected:
            hint = " (a 1-D x is one feature per sample, as in Keras)" if np.ndim(x) == 1 else ""
            raise ValueError(
                f"{argument}: {owner} takes {expected} features (shape (samples, {expected})), got shape "
                f"{tuple(np.shape(x))}{hint}"
            )
        return host

    # -- weights -------------------------------------------------------------------
    def count_params(self) -> int:
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self.compute_layers)

    def parameters(self) -> list[tuple[str, Array, Array | None]]:
        """[(name, parameter, gradient)] of every layer, as the optimizers take them; inside another
        model, prefixed by this model's name."""
        prefix = f"{self.name}/" if self.nested_in is not None else ""
        return [(prefix + n, p, g) for layer in self.compute_layers for n, p, g in layer.parameters()]

    def variables(self) -> list[tuple[str, Array, bool]]:
        """[(name, live array, trainable)] of every layer in ``get_weights`` order, named as ``parameters``."""
        prefix = f"{self.name}/" if self.nested_in is not None else ""
        return [(prefix + n, v, t) for layer in self.compute_layers for n, v, t in layer.variables()]

    @property
    def updates_state_in_training(self) -> bool:  # type: ignore[override]
        return any(layer.updates_state_in_training for layer in self.compute_layers)

    def adopt_storage(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        self._route(params, grads, lambda layer, p, g: layer.adopt_storage(p, g))

    def half_copies(self) -> dict[str, Array]:
        prefix = f"{self.name}/" if self.nested_in is not None else ""
        return {prefix + n: h for layer in self.compute_layers for n, h in layer.half_copies().items()}

    def adopt_half_storage(self, views: dict[str, Array]) -> None:
        self._route(views, None, lambda layer, v, _: layer.adopt_half_storage(v))

    def _route(self, first: dict[str, Array], second: dict[str, Array] | None, call: Callable[..., None]) -> None:
        """Hand each layer the entries of ``first`` (and ``second``) named after its own parameters."""
        prefix = f"{self.name}/" if self.nested_in is not None else ""
        for layer in self.compute_layers:
            names = {n for n, _, _ in layer.parameters()} | set(layer.half_copies())
            mine = {n: first[prefix + n] for n in names if prefix + n in first}
            other = {n: second[prefix + n] for n in names if second is not None and prefix + n in second}
            if mine:
                call(layer, mine, other)

    @property
    def weights(self) -> list[Array]:
        """Every layer's variables, live backend arrays in layer order (Keras's ``model.weights``)."""
        return [w for layer in self.compute_layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list[Array]:
        return [w for layer in self.compute_layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[Array]:
        return [w for layer in self.compute_layers for w in layer.non_trainable_weights]

    @property
    def losses(self) -> list[float]:
        """The layers' regularization penalties, one float a layer that has one (Keras's ``model.losses``)."""
        values = [layer.regularization_loss() for layer in self.compute_layers]
        return [float(self.backend.to_numpy(v)) for v in values if v is not None]

    def regularization_loss(self, scale: float = 1.0) -> Any:
        total = None
        for layer in self.compute_layers:
            value = layer.regularization_loss(scale)
            if value is not None:
                total = value if total is None else total + value
        return total

    @property
    def trainable_variables(self) -> list[tuple[str, Array]]:
        """[(name, backend array)] such as ('dense/kernel', W): the live parameters, not copies."""
        return [(name, p) for name, p, _ in self.parameters()]

    def get_weights(self) -> list[np.ndarray]:
        """Host copies [kernel_0, bias_0, kernel_1, ...] in layer order."""
        return [w for layer in self.compute_layers for w in layer.get_weights()]

    def weight_count(self) -> int:
        return sum(layer.weight_count() for layer in self.compute_layers)

    def validate_weights(self, weights: Sequence[np.ndarray], first: int = 0) -> list[Any]:
        """Every layer's share of ``weights`` checked (nothing changes); ``first`` offsets the messages."""
        layers = self.compute_layers
        counts = [layer.weight_count() for layer in layers]
        if not isinstance(weights, (list, tuple)) or len(weights) != sum(counts):
            got = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
            raise ValueError(f"weights: expected a list of {sum(counts)} arrays for model '{self.name}', got {got}")
        checked, k = [], 0
        for layer, n in zip(layers, counts):
            checked.append(layer.validate_weights(weights[k : k + n], first + k))
            k += n
        return checked

    def assign_weights(self, checked: Any) -> None:
        for layer, values in zip(self.compute_layers, checked):
            layer.assign_weights(values)

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Load ``get_weights()``-style host arrays; all are checked before any layer changes."""
        self._require_built("set_weights")
        self.assign_weights(self.validate_weights(weights))

    # -- the layer protocol, for a model inside another model -------------------------
    @property
    def in_features(self) -> int | None:  # type: ignore[override]
        return self.input_features

    @in_features.setter
    def in_features(self, value: Any) -> None:
        pass

    @property
    def units(self) -> int:  # type: ignore[override]
        return self.output_features

    @property
    def dtype(self) -> np.dtype:  # type: ignore[override]
        return self.input_dtype

    @property
    def compute_dtype(self) -> np.dtype:  # type: ignore[override]
        return self.output_layer.compute_dtype

    @property
    def mixed(self) -> bool:  # type: ignore[override]
        return any(layer.mixed for layer in self.compute_layers)

    def release(self) -> None:
        for layer in self.compute_layers:
            layer.release()

    def symbolic_output_shape(self, shapes: Sequence[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        """As a layer called on a symbolic input: the input must be what this model takes."""
        width = int(math.prod(shapes[0][1:]))
        if self.input_features is not None and width != self.input_features:
            raise ValueError(f"model '{self.name}' takes {self.input_features} features, got an input of shape {shapes[0]}")
        if not self.built:
            self.build(width)
        return (shapes[0][0], *self.output_shape[1:])

    def take_input_dtype(self, dtype: np.dtype) -> None:
        pass

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        """As a layer: whatever shape it is given (it checks its input itself), its output's."""
        return (tuple(input_shape)[0], *tuple(self.output_shape)[1:])

    @property
    def output_shape(self) -> tuple[int | None, ...]:
        return (None, self.output_features)

    def structure_outputs(self, out: Any) -> Any:
        """What ``forward`` or ``predict`` computed, as Keras returns it (one output: as it is)."""
        return out

    # -- files and calls -----------------------------------------------------------------
    def summary(self, line_length: int | None = None, print_fn: Callable[[str], Any] | None = None, **kwargs: Any) -> None:
        """Print Keras's table: Layer (type) | Output Shape | Param # (| Connected to, for a graph that
        is not a chain), then the parameter totals."""
        self._require_built("summary")
        summary_module.print_summary(self, line_length, print_fn)

    def __call__(self, x: Any, training: bool = False) -> Any:
        """``forward``; ``training=True`` turns on what acts only in training (dropout), as Keras's.
        On a symbolic tensor: this model as a layer of a functional graph. Several inputs (a list or a
        dict by input name) and samples of rank > 1 are checked and arranged as ``fit`` arranges them."""
        if is_symbolic(x):
            return Layer.__call__(self, x, training=training)
        if isinstance(x, (list, tuple, dict)) or len(self.input_specs()) > 1:
            x = self.host_inputs(x)
        elif np.ndim(x) > 2 and self.flattens_input():
            x = x.reshape(x.shape[0], -1)
        return self.structure_outputs(self.forward(x, TRAINING if training else INFERENCE))

    def save(self, path: str | os.PathLike) -> None:
        """Write architecture, weights, and compile settings with optimizer state to ``path`` (see fcgpu.saving).

        Data parallel (``fcgpu.distributed``): rank 0 writes, once, while the other ranks wait; an
        error there is raised on every rank."""
        distributed.world().run_on_root(lambda: save_model(self, path), "model.save")

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write the weights alone to a Keras 3 ``.weights.h5`` file, atomically (``fcgpu.interop.keras_weights``)."""
        from ..interop import keras_weights  # noqa: PLC0415 - h5py only when such a file is used

        distributed.world().run_on_root(lambda: keras_weights.save_weights(self, path), "model.save_weights")

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a Keras 3 ``.weights.h5`` file, or the weights of a ``.keras`` archive (Keras's or fcgpu's),
        checked by layer and shape first: a failure (``ModelFileError``) changes nothing."""
        from ..interop import keras_archive  # noqa: PLC0415

        keras_archive.load_weights(self, path)


def model_from_config(config: dict[str, Any], custom_objects: Any = None) -> Any:
    """The model a ``model.get_config()`` dict describes (unbuilt weights drawn from the seed): an
    fcgpu config, or one Keras wrote (``{"class_name": ..., "config": {...}}``: translated as a
    ``.keras`` file's is, a ValueError naming what fcgpu does not have)."""
    if not isinstance(config, dict):
        raise TypeError(f"config: expected a model config dict, got {type(config).__name__}")
    if isinstance(config.get("config"), dict) and "layers" not in config:  # Keras's layout
        try:
            config, _ = model_from_keras(config, custom_objects)
        except UnsupportedKeras as e:
            raise ValueError(f"config: {e}") from None
    try:
        return deserialize(config, "config")
    except (KeyError, IndexError) as e:
        raise ValueError(f"config: not a model config fcgpu or Keras wrote (missing {e})") from None
