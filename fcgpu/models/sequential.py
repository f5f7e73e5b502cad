"""Sequential: the layer stack, build, config (weights, files and summary are ``models.base``'s;
training is ``training``'s).

As in Keras 3, the model class holds the structure and inherits compile/fit/evaluate/predict
from ``Trainer``. The model drives its layers only through the protocol of ``layers.base.Layer``.
An ``Input`` given first (or a first layer declaring ``input_shape``) is kept apart from the layers,
as Keras 3 keeps its InputLayer out of ``model.layers``, and builds each layer as it is added.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import numpy as np

from ..backends import Backend, get_backend, resolve_backend, use_backend
from ..backends.base import Array
from ..initializers import get_rng
from ..layers import Input, Layer
from ..layers.context import INFERENCE, ForwardContext
from ..layers.fusion import Plan
from ..saving.serialization import deserialize, register
from ..backends.validation import input_features
from .base import Model

__all__ = ["Sequential", "backward_chain", "forward_chain", "infer_chain"]


@register
class Sequential(Model):
    """A linear stack of layers.

    Shapes: x (B, *sample) -> layers -> y (B, N_last); layers compute on flat features (B, M), so a
    sample of higher rank (an image) is flattened on the host for a first ``Flatten`` layer.
    Unnamed layers are named 'dense', 'dense_1', ... in the order they are added; names are unique
    within the model. ``layers`` may start with an ``fc.Input(shape=(M,))``.
    """

    def __init__(self, layers: Sequence[Layer | Input] | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self._input: Input | None = None
        if layers is not None:
            if isinstance(layers, Layer) or not isinstance(layers, (list, tuple)):
                raise TypeError(f"layers: expected a list of layers, got {type(layers).__name__}")
            for layer in layers:
                self.add(layer)

    # -- structure ---------------------------------------------------------------
    def add(self, layer: Layer | Input) -> None:
        """Append a layer, naming it if unnamed. Where the input is known (an ``Input`` first, a first
        layer declaring ``input_shape``, or the layers so far built) the new layer is built at once."""
        if isinstance(layer, Input):
            if self._layers or self._input is not None:
                raise ValueError(
                    f"layer: an Input can only be the first entry of a Sequential; model '{self.name}' already "
                    f"has {'an input' if self._input is not None else 'layers'}"
                )
            self._input = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"layer: expected a fcgpu layer such as Dense, got {type(layer).__name__}")
        if any(layer is existing for existing in self._layers):
            raise ValueError(f"layer: '{layer.name}' is already in this model")
        names = {existing.name for existing in self._layers}
        name = layer.name
        if not layer.name_is_set:
            k = 0
            while name in names:
                k += 1
                name = f"{layer.name}_{k}"
        elif name in names:
            raise ValueError(f"layer: the name '{name}' is already used in this model; names must be unique")
        previous = self._layers[-1] if self._layers else None
        declared = int(math.prod(layer.declared_input_shape)) if layer.declared_input_shape else None
        width = self._width_after(self._layers)
        if declared is not None and width is not None and declared != width:
            source = f"'{previous.name}' gives" if previous is not None else "the model's Input has"
            raise ValueError(f"layer: '{name}' declares input_shape {tuple(layer.declared_input_shape)} but {source} {width} features")
        shape = self._shape_after(self._layers)
        if len(shape) > 1 and not layer.any_rank:
            raise ValueError(
                f"layer: '{name}' ({type(layer).__name__}) takes inputs of shape (batch, features), but the model gives "
                f"(None, {', '.join(map(str, shape))}): add a Flatten() before it"
            )
        # The width the new layer is built for now: the input's for a first layer, else a built
        # previous layer's; None while the layers so far wait for build().
        if previous is None:
            build_width = width if width is not None else declared
        else:
            build_width = previous.units if previous.built else None
        if layer.built and build_width is not None and layer.in_features != build_width:
            source = f"'{previous.name}' gives" if previous is not None else "the model's input has"
            raise ValueError(f"layer: '{name}' takes {layer.in_features} features but {source} {build_width}")
        if layer.built and any(existing.built for existing in self._layers):
            _same_backend(next(e for e in reversed(self._layers) if e.built), layer, name)
        # Checked; now change things (a build that fails leaves the layer unbuilt and unnamed).
        if build_width is not None and not layer.built:
            with _using(previous.backend if previous is not None else self.backend):
                layer.build(build_width)
        dtype = previous.compute_dtype if previous is not None else self._input.dtype if self._input is not None else None
        if dtype is not None:
            layer.take_input_dtype(dtype)
        if previous is None and self._input is None and declared is not None:
            self._input = Input(shape=layer.declared_input_shape)
        if not layer.name_is_set:
            layer.name = name
        if isinstance(layer, Model):
            layer.nested_in = self
        self._layers.append(layer)

    def add_input(self, given: Input) -> None:
        """Give the model its Input after its layers (``build`` with a sample shape of rank > 1)."""
        first = self._layers[0] if self._layers else None
        if len(given.sample_shape) > 1 and first is not None and not first.any_rank:
            raise ValueError(
                f"input_shape: layer '{first.name}' ({type(first).__name__}) takes inputs of shape (batch, features), got "
                f"(None, {', '.join(map(str, given.sample_shape))}): add a Flatten() before it"
            )
        self._input = given

    def pop(self) -> Layer:
        """Remove the last layer and return it (Keras's ``pop``); the model keeps its Input."""
        if not self._layers:
            raise TypeError(f"pop: model '{self.name}' has no layers to remove")
        layer = self._layers.pop()
        if isinstance(layer, Model):
            layer.nested_in = None
        if self.optimizer is not None:  # the optimizer's state of it goes with it
            self.optimizer.forget([name for name, _, _ in layer.parameters()])
        return layer

    @property
    def built(self) -> bool:
        return bool(self._layers) and all(layer.built for layer in self._layers)

    @property
    def input_features(self) -> int | None:
        """The features M of an input sample: the Input's, else the first layer's once built."""
        if self._input is not None:
            return self._input.features
        return self._layers[0].in_features if self._layers and self._layers[0].built else None

    @property
    def output_features(self) -> int:
        self._require_layers()
        width = self._width_after(self._layers)
        if width is None:
            raise ValueError(
                f"model '{self.name}' does not know its output width before it is built (no layer of it has "
                f"units of its own): call model.build((None, in_features)) first"
            )
        return width

    def _width_after(self, layers: Sequence[Layer]) -> int | None:
        """The flat features after ``layers`` (from the model's input), or None where not yet known."""
        shape = self._shape_after(layers)
        return None if any(d is None for d in shape) else int(math.prod(shape))

    def _shape_after(self, layers: Sequence[Layer]) -> tuple[int | None, ...]:
        """A sample's shape after ``layers`` (from the model's input); None for a width not yet known."""
        if self._input is not None:
            shape: tuple[int | None, ...] = self._input.sample_shape
        else:
            first = self._layers[0] if self._layers else None
            shape = (first.in_features if first is not None and first.built else None,)
        for layer in layers:
            shape = tuple(layer.compute_output_shape((None, *shape))[1:])
        return shape

    def input_specs(self) -> list[tuple[str, tuple[int, ...] | None]]:
        if self._input is not None:
            return [(self._input.name, self._input.sample_shape)]
        width = self.input_features
        return [("input_layer", None if width is None else (width,))]

    def flattens_input(self) -> bool:
        for layer in self._layers:
            if layer.flattens:
                return True
            if not layer.any_rank:
                return False
        return False

    @property
    def output_shape(self) -> tuple[int | None, ...]:
        return (None, *self._shape_after(self._layers))

    def summary_rows(self) -> tuple[list[tuple[str, str, tuple, int, list[str]]], bool]:
        """(rows of ``summary``: name, class, output shape, parameters, inbound; whether to show inbound)."""
        batch = self._input.batch_size if self._input is not None else None
        rows = []
        for i, layer in enumerate(self._layers):  # the Input has no row, as in Keras 3
            shape = (batch, *self._shape_after(self._layers[: i + 1]))
            rows.append((layer.name, type(layer).__name__, shape, layer.count_params(), []))
        return rows, False

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        """Create every layer's parameters for inputs of ``input_shape`` (an int or e.g. (None, 784))."""
        self._require_layers()
        if isinstance(input_shape, (tuple, list)) and len(input_shape) > 2 and self._input is None:
            self.add_input(Input(shape=tuple(input_shape[1:])))
        features = input_features(input_shape) if not isinstance(input_shape, (tuple, list)) or len(input_shape) <= 2 \
            else int(math.prod(input_shape[1:]))
        if self._input is not None and features != self._input.features:
            raise ValueError(
                f"input_shape: model '{self.name}' takes {self._input.features} features (its Input), got {features}"
            )
        if self.built and self.input_features == features:
            return
        for i, layer in enumerate(self._layers):
            if layer.built and layer.in_features != features:
                source = f"the layer before it gives {features}" if i else f"the input has {features}"
                raise ValueError(
                    f"input_shape: layer '{layer.name}' is built for {layer.in_features} features, but {source}"
                )
            features = layer.compute_output_shape((None, features))[-1]
        built = [layer for layer in self._layers if layer.built]
        for layer in built[1:]:
            _same_backend(built[0], layer, layer.name)
        features = input_features(input_shape)
        with _using(self.backend):
            for layer in self._layers:
                if not layer.built:
                    layer.build(features)
                features = layer.units

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Load ``get_weights()``-style host arrays; all are checked before any layer changes.

        An unbuilt model is built from the first kernel's shape once every array has passed (the
        seeded generator is left as it was: the initial values drawn are overwritten at once).
        Layers without parameters (Dropout, Activation) take no arrays.
        """
        self._require_layers()
        counts = [layer.weight_count() for layer in self._layers]
        if not isinstance(weights, (list, tuple)) or len(weights) != sum(counts):
            got = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
            raise ValueError(f"weights: expected a list of {sum(counts)} arrays, got {got}")
        checked, first = [], 0
        shape: tuple[int | None, ...] = (None, None)  # the whole shape: a Reshape before a Flatten keeps its width
        for layer, n in zip(self._layers, counts):
            values = layer.validate_weights(weights[first : first + n], first)
            rows = np.shape(values[0])[0] if isinstance(values, tuple) and values else None
            features = None if any(d is None for d in shape[1:]) else int(math.prod(shape[1:]))
            if features is not None and rows is not None and rows != features:
                raise ValueError(
                    f"weights[{first}] (kernel): expected {features} rows (the units of the layer before "
                    f"'{layer.name}'), got {rows}"
                )
            shape = tuple(layer.compute_output_shape(shape))
            checked.append(values)
            first += n
        if not self.built:
            kernels = [np.shape(v[0])[0] for v in checked if isinstance(v, tuple) and v]
            width = self.input_features or (kernels[0] if kernels else None)
            if width is None:
                raise ValueError(
                    f"weights: model '{self.name}' has no parameters to take its input size from; build it first"
                )
            rng = get_rng()
            saved = rng.bit_generator.state
            try:
                self.build(width)
            finally:
                rng.bit_generator.state = saved
        for layer, values in zip(self._layers, checked):
            layer.assign_weights(values)

    # -- config ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "class_name": "Sequential",
            "name": self.name,
            "input_features": self.input_features,
            **({"input": self._input.get_config()} if self._input is not None else {}),
            "layers": [layer.get_config() for layer in self._layers],
            **({"trainable": False} if not self.trainable else {}),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Sequential":
        """The model ``get_config()`` describes, built when the config has ``input_features`` (or an
        ``input``)."""
        entries = [deserialize(c, "config['layers']") for c in config["layers"]]
        if config.get("input") is not None:
            entries.insert(0, Input.from_config(config["input"]))
        model = cls(entries, name=config.get("name"))
        if config.get("input_features") is not None:
            model.build(int(config["input_features"]))
        if config.get("trainable", True) is False:
            model._trainable = False  # the layers' own configs carry their flags
        return model

    def __repr__(self) -> str:
        return f"Sequential(name={self.name!r}, layers={self._layers!r})"

    # -- computation -------------------------------------------------------------
    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y (B, N_last) from x (B, M): every layer in turn, by the fusion plan (``layers.fusion``);
        builds the model on the first call. ``ctx`` (``layers.context.ForwardContext``): training or
        not, logits, the rows' offset, and who owns x and y (as ``Dense.forward``)."""
        layers = self._layers
        if not layers or not layers[-1].built:  # built in order: the last one built, all are
            self._require_layers()
            self._build_for(x)
        self.release_loss()
        plan = ctx.plan or self.chain_plan(layers, ctx.training)
        self.forward_plan = plan
        return forward_chain(plan, x, ctx)

    def fusion_plan(self, training: bool) -> Plan:
        """The plan of the layers for a forward with ``training`` (cached, ``Model.chain_plan``)."""
        return self.chain_plan(self._layers, training)

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        """y (B, N_last) from x (B, M) without keeping anything for backward: inference (predict,
        evaluate, validation) never changes what the next ``backward`` uses."""
        self._require_layers()
        self._build_for(x)
        return infer_chain(self._layers, x, logits=logits)

    def _build_for(self, x: Any) -> None:
        if not self.built:
            width = getattr(x, "shape", np.shape(x))
            if len(width) in (1, 2):
                self.build(width[-1])

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx (B, M) from dy = dL/dy (B, N_last); sets every layer's gradients, by the plan of the
        last forward.

        ``input_grad=False`` skips the first layer's input gradient (training does not need it);
        ``scale``: the factor the weight penalties' gradients take (the loss's: its loss scale).
        """
        if not self._layers:
            self._require_layers()
        plan = self.forward_plan
        if plan is None:
            plan = self.chain_plan(self._layers, False)
        return backward_chain(plan, dy, input_grad=input_grad, scale=scale)

    def to(self, backend: str | Backend) -> "Sequential":
        """Move parameters, gradients and optimizer state to 'numpy' | 'cupy' | 'auto' (or a Backend)."""
        target, _ = resolve_backend(backend)
        self._target = target
        for layer in self._layers:
            layer.to(target)
        self.move_training_state(target)
        return self


@contextlib.contextmanager
def _using(backend: Backend | None) -> Iterator[None]:
    """Activate ``backend`` for a block when it is not already the active one."""
    if backend is None or backend is get_backend():
        yield
    else:
        with use_backend(backend):
            yield


def _same_backend(first: Layer, layer: Layer, name: str) -> None:
    if layer.backend is not first.backend:
        raise ValueError(
            f"layer: '{name}' lives on the {layer.backend.name} backend but '{first.name}' on the "
            f"{first.backend.name} backend; move one with .to(...) so that all layers of a model share one"
        )


# -- a chain of layers: the fast path of Sequential and of a functional chain ---------------
# These execute a plan (``layers.fusion.Plan``) and decide nothing: which layers run as one pass
# (a Dense and the active Dropout after it, in training) is the planner's, made once per layout.
def forward_chain(plan: Plan, x: Any, ctx: ForwardContext) -> Array:
    """y (B, N_last) from x (B, M): each group of ``plan`` in turn, keeping what backward needs.

    ``ctx`` as ``Sequential.forward``'s: the first group gets x as the caller owns it, the last
    gives y as the caller wants it (and stops before its activation for ``ctx.logits``); the
    arrays between them are private (``ForwardContext.links``).
    """
    for layer in plan.layers:
        # A layer's cached input is the previous layer's output buffer; dropping all of them
        # first lets every layer write into its own buffer again instead of allocating.
        layer.release()
    groups = plan.groups
    only, first, middle, last = ctx.links
    if len(groups) == 1:
        return groups[0].forward(x, only)
    h = groups[0].forward(x, first)
    for group in groups[1:-1]:
        h = group.forward(h, middle)
    return groups[-1].forward(h, last)


def infer_chain(layers: Sequence[Layer], x: Any, *, logits: bool = False) -> Array:
    """y (B, N_last) from x (B, M) without keeping anything for backward."""
    h, last = x, len(layers) - 1
    for i, layer in enumerate(layers):
        h = layer.infer(h, logits=logits and i == last)
    return h


def backward_chain(plan: Plan, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
    """dx (B, M) from dy = dL/dy (B, N_last): each group of ``plan`` backwards; sets every layer's
    gradients. ``input_grad=False`` skips the first group's input gradient (training does not need
    it); ``scale``: the factor the weight penalties' gradients take."""
    groups = plan.groups
    g = dy
    for i in range(len(groups) - 1, 0, -1):
        g = groups[i].backward(g, input_grad=True, scale=scale)
    return groups[0].backward(g, input_grad=input_grad, scale=scale)
