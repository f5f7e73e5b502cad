"""What every layer shares: naming, reusable output buffers, and the protocol the model uses.

The model drives its layers only through the methods of ``Layer`` below (public names, so no
object reaches into another's private state):

- ``build(input_shape)`` / ``built`` / ``in_features`` / ``units`` / ``dtype`` / ``backend``;
  ``compute_output_shape(input_shape)`` (a layer without units of its own, such as Dropout, gives
  its input's width), ``take_input_dtype(dtype)`` (told before build what the layer will receive)
  and ``declared_input_shape`` (Keras's ``input_shape``/``input_dim``: a model whose first layer
  declares it is built at once);
- ``forward(x, ctx)`` (``layers.context.ForwardContext``) and ``backward(dy, input_grad=...,
  scale=...)``, and ``release()`` which drops what the last forward kept for backward, so that
  the next forward may write into the same buffers; ``device_input(x)``, the input checks every layer shares;
- ``parameters()`` [(name, parameter, gradient)], ``validate_weights`` then ``assign_weights``
  (the model checks every layer's weights before it changes any), ``adopt_storage`` (parameters
  and gradients become views of the model's flat buffers, ``fcgpu.backends.params``);
- ``get_config()`` / ``from_config(config)``, symmetric, and ``to(backend)``;
- ``variables()`` [(name, array, trainable)]: every variable in ``get_weights`` order (Keras's
  ``layer.weights`` order), from which ``weights``, ``trainable_weights`` and
  ``non_trainable_weights`` follow. Only the trainable ones are ``parameters()`` (flat buffers,
  gradients, optimizer updates); non-trainable ones (BatchNormalization's moving statistics,
  Normalization's mean and variance) stay the layer's own arrays, saved and loaded with the rest;
- ``epilogue_kinds`` / ``fusion_kind(training)`` / ``fusion_settings``: what the layer can fuse with
  its neighbours, as data; ``layers.fusion``'s planner alone decides;
- ``updates_state_in_training``: whether a training forward changes non-trainable
  variables (BatchNormalization), so a trainer knows the layer is not a pure function of x.
"""
from __future__ import annotations

import re
import functools
import inspect
from typing import Any, Sequence

import numpy as np

from ..activations.table import Activation
from ..backends import Backend
from ..backends.base import Array
from ..backends.buffers import Buffers
from .context import INFERENCE, TRAINING, ForwardContext
from .symbolic import call_layer, is_symbolic
from ..backends.validation import float_array, positive_int

__all__ = ["Buffers", "Layer", "declared_input", "trainable_flag", "snake_case"]


class Layer:
    """Base class of fcgpu's layers: a name (assigned by the model when left None) and the protocol."""

    in_features: int | None
    units: int
    dtype: np.dtype
    backend: Backend | None
    # The input the layer was told at construction, as (M,), or None (see ``declared_input``).
    declared_input_shape: tuple[int] | None = None
    # The activation-table entry the layer's output ends with (Dense, Activation); None for others.
    activation: Activation | None = None
    # The layer's dtype policy (``fcgpu.mixed_precision.Policy``), or None for a layer that takes
    # its input's dtype (Dropout, Activation).
    dtype_policy: Any = None
    #: Whether this is a model's input (an ``Input`` in a functional model's ``layers``): nothing to compute.
    is_input = False
    #: How many tensors a call takes: 1, or 0 for a list of at least two (the merge layers).
    input_count = 1
    #: Whether the layer takes samples of any shape (layers acting elementwise, Flatten, Reshape);
    #: the others take flat features (batch, M).
    any_rank = False
    #: Whether the layer flattens a sample of any shape into flat features (Flatten).
    flattens = False
    _compute_dtype: np.dtype | None = None

    @property
    def compute_dtype(self) -> np.dtype:
        """The dtype the layer computes in: a half type under a mixed policy, else its ``dtype``."""
        return self._compute_dtype if self._compute_dtype is not None else np.dtype(self.dtype)

    @compute_dtype.setter
    def compute_dtype(self, value: Any) -> None:
        self._compute_dtype = np.dtype(value)

    def sublayers(self) -> list["Layer"]:
        """The layers inside this one (a model used as a layer); none for a layer."""
        return []

    def flat_parameters(self) -> Any:
        """The flat parameter buffers a model lays out (``FlatParameters``); None for a layer."""
        return None

    # -- what the layer can fuse, as data (read by ``layers.fusion``'s planner, at planning time) --
    #: The kinds of following layer this one can run inside its own pass (``fusion.MASK``, ...).
    epilogue_kinds: frozenset[str] = frozenset()
    #: The attributes whose values decide ``epilogue_kinds`` and ``fusion_kind``: a plan watches them.
    fusion_settings: tuple[str, ...] = ()
    #: Gradient epilogues across groups (Dense): ``gives_gradient_epilogue``, a layer whose backward
    #: starts with an elementwise pass (its Dropout's mask, its act') that the layer after it may run
    #: in its input-gradient GEMM; ``takes_gradient_epilogue``, a layer whose backward can (its
    #: ``backward(..., prev=layer)``, bound by the planner in training plans).
    gives_gradient_epilogue = False
    takes_gradient_epilogue = False

    def fusion_kind(self, training: bool) -> str | None:
        """What this layer is to the layer before it in a forward with ``training``: a kind that
        layer may list in its ``epilogue_kinds`` (then it runs this one), or None."""
        return None

    def symbolic_output_shape(self, shapes: Sequence[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        """The output shape of a call on symbolic inputs of ``shapes`` [(None, *sample)]: the layer is
        built for them (``build``) and ``compute_output_shape`` says the rest."""
        width = int(np.prod(shapes[0][1:]))
        if not self.built:
            self.build(width)
        return tuple(self.compute_output_shape(shapes[0]))

    _call: tuple[Any, Any] | None = None  # (input tensors, output tensor) of the layer's functional-API call

    def record_call(self, inputs: Any, output: Any) -> None:
        """Keep the symbolic call that made ``output`` (``layers.symbolic``), for ``input``/``output``."""
        self._call = (inputs, output)

    @property
    def input(self) -> Any:
        """The symbolic tensor(s) the layer was called on in a functional graph (Keras's ``layer.input``)."""
        if self._call is None:
            raise AttributeError(f"layer '{self.name}' has never been called on a symbolic tensor, so it has no input")
        return self._call[0]

    @property
    def output(self) -> Any:
        """The symbolic tensor its call returned (Keras's ``layer.output``): e.g. for a feature extractor
        ``Model(model.inputs, model.get_layer('hidden').output)``."""
        if self._call is None:
            raise AttributeError(f"layer '{self.name}' has never been called on a symbolic tensor, so it has no output")
        return self._call[1]

    _trainable = True

    @property
    def trainable(self) -> bool:
        """Whether fit updates the layer's variables (Keras's ``layer.trainable``). A frozen layer's
        variables are not ``parameters()``: no gradient, no update, no optimizer state, no weight
        penalty; its variables are ``non_trainable_weights``; a frozen BatchNormalization runs in
        inference mode. The change takes effect at the next step (the model lays out its flat
        buffers again); recompile to start the optimizer afresh, as Keras programs do."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = trainable_flag(value)

    @property
    def mixed(self) -> bool:
        """Whether the layer keeps float32 variables and computes in a half type (a mixed policy)."""
        return self.dtype_policy is not None and self.dtype_policy.mixed

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every layer takes Keras's ``input_shape=`` / ``input_dim=`` (its input, as a Sequential's
        first layer): a subclass whose ``__init__`` does not name them gets them here."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or "input_shape" in inspect.signature(init).parameters:
            return

        @functools.wraps(init)
        def with_input(self: "Layer", *args: Any, input_shape: Any = None, input_dim: Any = None, **kw: Any) -> None:
            init(self, *args, **kw)
            if input_shape is not None or input_dim is not None:
                if input_dim is not None:
                    self.declared_input_shape = declared_input(None, input_dim)
                else:
                    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else (input_shape,)
                    if not shape or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape):
                        raise ValueError(f"input_shape: expected a tuple of positive ints such as (784,), got {input_shape!r}")
                    self.declared_input_shape = tuple(int(d) for d in shape)

        cls.__init__ = with_input  # type: ignore[method-assign]

    def __init__(self, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"name: expected a non-empty string without '/', got {name!r}")
        self._name = name

    # -- identity ----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name or snake_case(type(self).__name__)

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def name_is_set(self) -> bool:
        """Whether the layer was given a name (else the model names it on ``add``)."""
        return self._name is not None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Layer":
        """The layer ``get_config()`` describes (unbuilt); the inverse of ``get_config``."""
        config = dict(config)
        if config.pop("class_name", cls.__name__) != cls.__name__:
            raise ValueError(f"config: expected class_name {cls.__name__!r}")
        trainable = trainable_flag(config.pop("trainable", True))
        layer = cls(**config)
        layer.trainable = trainable
        return layer

    # -- the model's protocol (see the module docstring) ------------------------
    @property
    def built(self) -> bool:
        raise NotImplementedError

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        raise NotImplementedError

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        """The shape of the output for inputs of ``input_shape`` such as (None, 784): (..., units).
        A width may be None (not known yet); a layer that keeps its input's width passes it on."""
        return (*tuple(input_shape)[:-1], self.units)

    def take_input_dtype(self, dtype: np.dtype) -> None:
        """The dtype of what the layer will receive, from the model before it builds the layer. A
        layer with a dtype of its own (Dense) keeps it; one without (Dropout, Activation) takes it."""

    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y from x, keeping what backward needs; ``ctx`` (``layers.context.ForwardContext``): training
        or not, logits, the rows' offset and who owns x and y (see ``Dense.forward``)."""
        raise NotImplementedError

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        """y from x, keeping nothing (inference)."""
        raise NotImplementedError

    def borrowed(self, x: Any, x_dev: Array) -> bool:
        """Whether ``x_dev`` (x as the backend's array) may share the caller's memory: x itself, a
        view of it or of what it views, or a zero-copy DLPack import. A layer copies such an input
        before keeping it; host data copied to the device, or cast, is the layer's own."""
        if x_dev is x:
            return True
        if self.backend is not None and self.backend.owns(x):
            base = getattr(x_dev, "base", None)
            return base is not None and (base is x or base is getattr(x, "base", None))
        return not isinstance(x, np.ndarray) and hasattr(x, "__dlpack__")

    def device_input(self, x: Any) -> tuple[Array, bool]:
        """(x as a (B, M) array of the layer's backend and compute dtype, whether x was 1-D), checked:
        shape, features, and values that overflow a narrower dtype. Builds the layer on the first call."""
        ndim = getattr(x, "ndim", None)
        if ndim is None:
            try:
                x = np.asarray(x)
            except (ValueError, TypeError) as e:
                raise ValueError(f"x: expected a rectangular numeric array for layer '{self.name}', got {e}") from None
            ndim = x.ndim
        if ndim not in (1, 2):
            raise ValueError(
                f"x: expected shape (batch, in_features) or (in_features,) for layer '{self.name}', "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[-1] < 1 or (self.built and x.shape[-1] != self.in_features):
            expected = self.in_features if self.built else "at least 1"
            raise ValueError(
                f"x: expected {expected} features (shape (batch, {expected})) for layer "
                f"'{self.name}', got shape {tuple(x.shape)}"
            )
        dtype = self.compute_dtype  # mixed policies compute in half
        host = isinstance(x, np.ndarray)
        if host and x.dtype.kind in "iuf" and (x.dtype.kind != "f" or x.dtype.itemsize > dtype.itemsize) and not self.mixed:
            # Integers and wider floats can overflow the layer's dtype (100000 in float16): refused as
            # fit and predict refuse them. Under a mixed policy an overflow to inf is the loss
            # scaler's to catch (skip the step). The checked cast is the one uploaded.
            x = float_array(x, "x", dtype, owner=f"layer '{self.name}'")
        if not self.built:
            self.build(x.shape[-1])
        x_dev = self.backend.asarray(x, dtype, "x")
        if not host and not self.backend.owns(x) and not self.mixed and dtype.itemsize < 4:
            # Another library's tensor (DLPack) cast into a half type: the same check, on its values.
            if not bool(self.backend.to_numpy(self.backend.all_finite(x_dev))):
                raise ValueError(f"x: expected finite values, got NaN, inf or values that overflow {dtype.name}")
        return (x_dev.reshape(1, -1), True) if x_dev.ndim == 1 else (x_dev, False)

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx from dy = dL/dy, setting the parameters' gradients; ``input_grad=False``: no dx (None).
        ``scale``: the factor the weight penalties' gradients take, the one the loss gradient carries
        (the loss scale under mixed_float16), so that unscaling leaves them as they should be."""
        raise NotImplementedError

    def release(self) -> None:
        """Drop the references the last forward kept for backward."""

    def parameters(self) -> list[tuple[str, Array, Array | None]]:
        return []

    #: Whether a training forward changes non-trainable variables (BatchNormalization's moving statistics).
    updates_state_in_training = False

    def variables(self) -> list[tuple[str, Array, bool]]:
        """[(name, live array, trainable)] in ``get_weights`` order; by default the parameters."""
        return [(name, p, True) for name, p, _ in self.parameters()]

    @property
    def weights(self) -> list[Array]:
        """The layer's variables (Dense: kernel, then bias), live backend arrays, as Keras's ``weights``."""
        return [v for _, v, _ in self.variables()]

    @property
    def trainable_weights(self) -> list[Array]:
        return [v for _, v, trainable in self.variables() if trainable]

    @property
    def non_trainable_weights(self) -> list[Array]:
        return [v for _, v, trainable in self.variables() if not trainable]

    @property
    def variable_dtype(self) -> np.dtype:
        """The dtype of the variables (float32 under a mixed policy), as Keras's ``variable_dtype``."""
        return np.dtype(self.dtype)

    def regularization_loss(self, scale: float = 1.0) -> Any:
        """The layer's weight penalties times ``scale`` as a float64 scalar where they live, or None."""
        return None

    def count_params(self) -> int:
        return 0

    def weight_count(self) -> int:
        """How many arrays ``get_weights`` returns (and ``set_weights`` takes)."""
        return 0

    def get_weights(self) -> list[np.ndarray]:
        return []

    def adopt_storage(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """Move the parameters into the given views (by name) of a model's flat buffers."""

    def half_copies(self) -> dict[str, Array]:
        """A mixed-precision layer's half copies of its float32 parameters, by parameter name: what
        forward and backward compute from, and what the optimizer's update writes ({} here)."""
        return {}

    def adopt_half_storage(self, views: dict[str, Array]) -> None:
        """Keep the half copies in the given views (by name) of a model's half buffer."""

    def validate_weights(self, weights: Sequence[np.ndarray], first: int = 0) -> Any:
        """``weights`` checked and cast, changing nothing; ``first`` is their index in the caller's list."""
        return None

    def assign_weights(self, checked: Any) -> None:
        """Load what ``validate_weights`` returned."""

    def get_config(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__, "name": self.name}

    def to(self, backend: str | Backend) -> "Layer":
        return self

    def __call__(self, x: Any, training: bool = False) -> Any:
        """``forward``; ``training=True`` turns on what acts only in training (dropout), as Keras's.
        On symbolic tensors (``fcgpu.Input`` and what layers made of it): the functional API's call,
        which builds the layer and returns the symbolic output (``layers.symbolic``)."""
        if is_symbolic(x):
            return call_layer(self, x)
        return self.forward(x, TRAINING if training else INFERENCE)


@functools.lru_cache(maxsize=None)
def snake_case(name: str) -> str:
    """Keras's default layer name of a class: 'BatchNormalization' -> 'batch_normalization', 'ReLU' -> 're_lu'."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", name))
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def trainable_flag(value: Any) -> bool:
    """``value`` checked as a ``trainable`` setting: True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"trainable: expected True or False, got {value!r}")
    return bool(value)


def declared_input(input_shape: Any, input_dim: Any = None, argument: str = "input_shape") -> tuple[int] | None:
    """(M,) from Keras's ``input_shape=(M,)`` or ``input_dim=M`` (at most one of them), or None;
    ``argument`` names the shape in messages ('shape' for ``Input``).

    fcgpu's layers take flat features, so a shape is one positive int: (784,), not (28, 28).
    """
    if input_dim is not None and input_shape is not None:
        raise ValueError(f"{argument} and input_dim: give one of them, not both")
    if input_dim is not None:
        return (positive_int(input_dim, "input_dim"),)
    if input_shape is None:
        return None
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != 1
        or isinstance(shape[0], bool)
        or not isinstance(shape[0], (int, np.integer))
        or shape[0] < 1
    ):
        raise ValueError(
            f"{argument}: expected a tuple of one positive int such as (784,) (flat features, without "
            f"the batch), got {input_shape!r}"
        )
    return (int(shape[0]),)
