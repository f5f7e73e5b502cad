"""Sequential: the layer stack, build, weights, config and summary (training is in ``training``).

As in Keras 3, the model class holds the structure and inherits compile/fit/evaluate/predict
from ``Trainer``. The model drives its layers only through the protocol of ``layers.base.Layer``.
An ``Input`` given first (or a first layer declaring ``input_shape``) is kept apart from the layers,
as Keras 3 keeps its InputLayer out of ``model.layers``, and builds each layer as it is added.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import distributed
from .backends import Backend, get_backend, resolve_backend, use_backend
from .backends.base import Array
from .layers import Input, Layer
from .layers.base import refuse_freezing
from .saving import save_model
from .serialization import deserialize, register
from .training import Trainer
from .initializers import get_rng
from .validation import input_features, positive_int

__all__ = ["Sequential"]


@register
class Sequential(Trainer):
    """A linear stack of layers.

    Shapes: x (B, M) -> layers -> y (B, N_last). Unnamed layers are named 'dense', 'dense_1', ...
    in the order they are added; names are unique within the model. ``layers`` may start with an
    ``fc.Input(shape=(M,))``.
    """

    def __init__(self, layers: Sequence[Layer | Input] | None = None, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        super().__init__()
        self.name = name or "sequential"
        self._layers: list[Layer] = []
        self._input: Input | None = None
        self._target: Backend | None = None
        if layers is not None:
            if isinstance(layers, Layer) or not isinstance(layers, (list, tuple)):
                raise TypeError(f"layers: expected a list of layers, got {type(layers).__name__}")
            for layer in layers:
                self.add(layer)

    # -- structure ---------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

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
        declared = layer.declared_input_shape[0] if layer.declared_input_shape else None
        width = self._width_after(self._layers)
        if declared is not None and width is not None and declared != width:
            source = f"'{previous.name}' gives" if previous is not None else "the model's Input has"
            raise ValueError(f"layer: '{name}' declares input_shape ({declared},) but {source} {width} features")
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
        dtype = getattr(previous, "compute_dtype", previous.dtype) if previous is not None else self._input.dtype if self._input is not None else None
        if dtype is not None:
            layer.take_input_dtype(dtype)
        if previous is None and self._input is None and declared is not None:
            self._input = Input(shape=(declared,))
        if not layer.name_is_set:
            layer.name = name
        self._layers.append(layer)

    @property
    def trainable(self) -> bool:
        """Whether fit updates the model's weights: always, in this release."""
        return True

    @trainable.setter
    def trainable(self, value: bool) -> None:
        refuse_freezing(value, f"model '{self.name}'")

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name``, or at position ``index`` of ``layers`` (Keras's ``get_layer``)."""
        if (name is None) == (index is None):
            raise ValueError("get_layer: give a layer name or an index, one of them")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(self._layers) <= index < len(self._layers):
                raise ValueError(f"index: expected an int in [0, {len(self._layers)}) for model '{self.name}', got {index!r}")
            return self._layers[int(index)]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"name: no layer named {name!r} in model '{self.name}'; its layers: {[l.name for l in self._layers]}")

    def to_json(self, **kwargs: Any) -> str:
        """The architecture as a JSON string (``fcgpu.models.model_from_json`` reads it back)."""
        import json

        return json.dumps(self.get_config(), **kwargs)

    def pop(self) -> Layer:
        """Remove the last layer and return it (Keras's ``pop``); the model keeps its Input."""
        if not self._layers:
            raise TypeError(f"pop: model '{self.name}' has no layers to remove")
        layer = self._layers.pop()
        if self.optimizer is not None:  # the optimizer's state of it goes with it
            self.optimizer.forget([name for name, _, _ in layer.parameters()])
        return layer

    @property
    def built(self) -> bool:
        return bool(self._layers) and all(layer.built for layer in self._layers)

    @property
    def backend(self) -> Backend:
        """The backend the parameters live on (before the model is built: the one given to ``to``, else the active one)."""
        for layer in self._layers:
            if layer.built:
                return layer.backend
        return self._target or get_backend()

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
        """The features after ``layers`` (from the model's input), or None where not yet known."""
        width = self.input_features
        for layer in layers:
            width = layer.compute_output_shape((None, width))[-1]
        return width

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        """Create every layer's parameters for inputs of ``input_shape`` (an int or e.g. (None, 784))."""
        self._require_layers()
        features = input_features(input_shape)
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

    def _require_layers(self) -> None:
        if not self._layers:
            raise ValueError(f"model '{self.name}' has no layers: add some with model.add(Dense(...))")

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(
                f"{what}: model '{self.name}' is not built yet: call model.build((None, in_features)) or call the "
                f"model on a batch of data first"
            )

    # -- weights -------------------------------------------------------------------
    def count_params(self) -> int:
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self._layers)

    def parameters(self) -> list[tuple[str, Array, Array | None]]:
        """[(name, parameter, gradient)] of every layer, as the optimizers take them."""
        return [p for layer in self._layers for p in layer.parameters()]

    @property
    def weights(self) -> list[Array]:
        """Every layer's variables, live backend arrays in layer order (Keras's ``model.weights``)."""
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list[Array]:
        return [w for layer in self._layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[Array]:
        return [w for layer in self._layers for w in layer.non_trainable_weights]

    @property
    def losses(self) -> list[float]:
        """The layers' regularization penalties, one float a layer that has one (Keras's ``model.losses``)."""
        values = [layer.regularization_loss() for layer in self._layers]
        return [float(self.backend.to_numpy(v)) for v in values if v is not None]

    @property
    def trainable_variables(self) -> list[tuple[str, Array]]:
        """[(name, backend array)] such as ('dense/kernel', W): the live parameters, not copies."""
        return [(name, p) for name, p, _ in self.parameters()]

    def get_weights(self) -> list[np.ndarray]:
        """Host copies [kernel_0, bias_0, kernel_1, ...] in layer order."""
        return [w for layer in self._layers for w in layer.get_weights()]

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
        features = None
        for layer, n in zip(self._layers, counts):
            values = layer.validate_weights(weights[first : first + n], first)
            rows = np.shape(values[0])[0] if isinstance(values, tuple) and values else None
            if features is not None and rows is not None and rows != features:
                raise ValueError(
                    f"weights[{first}] (kernel): expected {features} rows (the units of the layer before "
                    f"'{layer.name}'), got {rows}"
                )
            features = layer.compute_output_shape((None, features))[-1]
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
        return model

    def summary(self, line_length: int = 65, print_fn: Callable[[str], Any] | None = None) -> None:
        """Print the Keras table: Layer (type) | Output Shape | Param #, then the parameter totals
        (a row for every layer, Dropout and Activation with 0 parameters; none for the Input)."""
        self._require_built("summary")
        line_length = positive_int(line_length, "line_length")
        if line_length < 20:
            raise ValueError(f"line_length: expected at least 20 characters, got {line_length}")
        if print_fn is not None and not callable(print_fn):
            raise TypeError(f"print_fn: expected a callable taking a string, got {type(print_fn).__name__}")
        print_fn = print_fn or print
        positions = [int(line_length * 0.45), int(line_length * 0.85), line_length]

        def row(fields: Sequence[Any]) -> str:
            line = ""
            for field, end in zip(fields, positions):
                if line:
                    line = line[:-1] + " "
                line = (line + str(field))[:end]
                line += " " * (end - len(line))
            return line

        print_fn(f'Model: "{self.name}"')
        print_fn("_" * line_length)
        print_fn(row(["Layer (type)", "Output Shape", "Param #"]))
        print_fn("=" * line_length)
        batch = self._input.batch_size if self._input is not None else None
        for i, layer in enumerate(self._layers):  # the Input has no row, as in Keras 3
            shape = (batch, layer.units)
            print_fn(row([f"{layer.name} ({type(layer).__name__})", str(shape), layer.count_params()]))
            print_fn("=" * line_length if i == len(self._layers) - 1 else "_" * line_length)
        total = self.count_params()
        print_fn(f"Total params: {total:,}")
        print_fn(f"Trainable params: {total:,}")
        print_fn("Non-trainable params: 0")
        print_fn("_" * line_length)

    def __repr__(self) -> str:
        return f"Sequential(name={self.name!r}, layers={self._layers!r})"

    # -- computation -------------------------------------------------------------
    def __call__(self, x: Any, training: bool = False) -> Array:
        """``forward``; ``training=True`` turns on what acts only in training (dropout), as Keras's."""
        return self.forward(x, training=bool(training))

    def forward(
        self,
        x: Any,
        *,
        input_owned: bool = False,
        output_private: bool = False,
        logits: bool = False,
        training: bool = False,
        row_offset: int = 0,
    ) -> Array:
        """y (B, N_last) from x (B, M): every layer in turn; builds the model on the first call.

        As ``Dense.forward``: x and the returned y are copied where backward would otherwise read
        the caller's array, unless ``input_owned`` / ``output_private`` say nobody else sees them.
        ``logits=True``: the last layer stops before its activation. ``training=True`` (fit and
        train_step) turns on what only acts in training, such as dropout; ``row_offset`` is the index
        of x's first row in the whole batch (a data-parallel rank's share: its dropout masks).
        """
        self._require_layers()
        for layer in self._layers:
            # A layer's cached input is the previous layer's output buffer; dropping all of them
            # first lets every layer write into its own buffer again instead of allocating.
            layer.release()
        self.release_loss()
        self._build_for(x)
        h, last, i = x, len(self._layers) - 1, 0
        layers = self._layers
        while i <= last:
            layer = layers[i]
            # A Dense followed by an active Dropout in training: one pass for both (Dense.fuses_with).
            fused = training and i < last and not (logits and i + 1 == last) and getattr(layer, "fuses_with", None)
            if fused and layer.fuses_with(layers[i + 1]):
                h = layer.forward(h, input_owned=input_owned or i > 0, output_private=True, training=True,
                                  row_offset=row_offset, dropout=layers[i + 1])
                i += 1  # the Dropout's output: copied only where the caller gets it
                if not (output_private or i < last):
                    h = self.backend.copy(h)
                i += 1
                continue
            h = layer.forward(
                h,
                input_owned=input_owned or i > 0,
                output_private=output_private or i < last,
                logits=logits and i == last,
                training=training,
                row_offset=row_offset,
            )
            i += 1
        return h

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        """y (B, N_last) from x (B, M) without keeping anything for backward: inference (predict,
        evaluate, validation) never changes what the next ``backward`` uses."""
        self._require_layers()
        self._build_for(x)
        h, last = x, len(self._layers) - 1
        for i, layer in enumerate(self._layers):
            h = layer.infer(h, logits=logits and i == last)
        return h

    def _build_for(self, x: Any) -> None:
        if not self.built:
            width = getattr(x, "shape", np.shape(x))
            if len(width) in (1, 2):
                self.build(width[-1])

    def backward(self, dy: Any, *, input_grad: bool = True) -> Array | None:
        """dx (B, M) from dy = dL/dy (B, N_last); sets every layer's gradients.

        ``input_grad=False`` skips the first layer's input gradient (training does not need it).
        """
        self._require_layers()
        g = dy
        for i in range(len(self._layers) - 1, -1, -1):
            g = self._layers[i].backward(g, input_grad=input_grad or i > 0)
        return g

    def to(self, backend: str | Backend) -> "Sequential":
        """Move parameters, gradients and optimizer state to 'numpy' | 'cupy' | 'auto' (or a Backend)."""
        target, _ = resolve_backend(backend)
        self._target = target
        for layer in self._layers:
            layer.to(target)
        self.move_training_state(target)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write architecture, weights, and compile settings with optimizer state to ``path`` (see fcgpu.saving).

        Data parallel (``fcgpu.distributed``): rank 0 writes, once, while the other ranks wait; an
        error there is raised on every rank."""
        distributed.world().run_on_root(lambda: save_model(self, path), "model.save")

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write the weights alone to a Keras 3 ``.weights.h5`` file, atomically (``fcgpu.interop.keras_weights``)."""
        from .interop import keras_weights

        distributed.world().run_on_root(lambda: keras_weights.save_weights(self, path), "model.save_weights")

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a Keras 3 ``.weights.h5`` file, or the weights of a ``.keras`` archive (Keras's or fcgpu's),
        checked by layer and shape first: a failure (``ModelFileError``) changes nothing."""
        from .interop import keras_archive

        keras_archive.load_weights(self, path)


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
