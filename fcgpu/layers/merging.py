"""Merge layers of the functional API: ``Concatenate``, ``Add``, ``Subtract``, ``Multiply``,
``Average``, ``Maximum``, ``Minimum`` (Keras's names and behaviour; PyTorch's gradients).

A merge layer takes a list of tensors (two or more; ``Subtract`` exactly two) and returns one:
forward takes a list of (B, N_i) arrays, backward returns a list of their gradients. Elementwise
merges need equal shapes; ``Concatenate`` joins flat features (axis -1). Each is one or two array
operations of the backend's array module (CuPy's own elementwise kernels on a GPU), into buffers
reused from step to step. ``Maximum``/``Minimum`` split the gradient of tied inputs equally, as
``torch.maximum`` does (pairwise, left to right, for more than two inputs).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..backends import Backend, get_backend, resolve_backend
from ..backends.base import Array
from ..saving.serialization import register
from .base import Buffers, Layer
from .context import INFERENCE, ForwardContext

__all__ = [
    "Add", "Average", "Concatenate", "Maximum", "Merge", "Minimum", "Multiply", "Subtract",
    "add", "average", "concatenate", "maximum", "minimum", "multiply", "subtract",
]


class Merge(Layer):
    """Base of the merge layers: no parameters, a list of inputs, dtype taken from the inputs."""

    input_count = 0  # a list of at least two tensors
    any_rank = True
    arity: int | None = None  # how many inputs exactly (Subtract: 2), or None for two or more

    def __init__(self, name: str | None = None, dtype: Any = None, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        super().__init__(name)
        self._dtype = None if dtype is None else np.dtype(dtype)
        self.backend: Backend | None = None
        self.in_features: int | None = None
        self.units: int | None = None  # type: ignore[assignment]
        self.widths: list[int] = []
        self._buffers = Buffers()
        self._xs: list[Array] | None = None  # what the last forward kept for backward

    @property
    def dtype(self) -> np.dtype:  # type: ignore[override]
        return self._dtype if self._dtype is not None else np.dtype("float32")

    def take_input_dtype(self, dtype: np.dtype) -> None:
        if self._dtype is None:
            self._dtype = np.dtype(dtype)

    @property
    def built(self) -> bool:
        return self.backend is not None

    def check_shapes(self, shapes: Sequence[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        """The output shape of inputs of ``shapes``; raises where they cannot be merged."""
        if self.arity is not None and len(shapes) != self.arity:
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}): expected {self.arity} inputs, got {len(shapes)}")
        if any(tuple(s[1:]) != tuple(shapes[0][1:]) for s in shapes):
            raise ValueError(
                f"layer '{self.name}' ({type(self).__name__}): expected inputs of one shape, got {[tuple(s) for s in shapes]}"
            )
        return tuple(shapes[0])

    def symbolic_output_shape(self, shapes: Sequence[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        out = self.check_shapes(shapes)
        self.build([int(np.prod(s[1:])) for s in shapes])
        return out

    def build(self, input_shape: Any) -> None:
        """Take the inputs' widths (a list of ints) and the active backend."""
        widths = [int(w) for w in input_shape] if isinstance(input_shape, (list, tuple)) else [int(input_shape)] * 2
        self.widths = widths
        self.in_features = widths[0]
        self.units = self.output_width(widths)
        self.backend = get_backend()
        self._buffers.clear()

    def output_width(self, widths: Sequence[int]) -> int:
        return widths[0]

    def count_params(self) -> int:
        return 0

    def release(self) -> None:
        self._xs = None

    def get_config(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__, "name": self.name, "dtype": None if self._dtype is None else self._dtype.name}

    def to(self, backend: str | Backend) -> "Merge":
        target, _ = resolve_backend(backend)
        self.backend = target if self.built else None
        self._buffers.clear()
        self.release()
        return self

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        return self.check_shapes(input_shape) if isinstance(input_shape, list) else tuple(input_shape)

    # -- computation -------------------------------------------------------------
    def inputs_of(self, xs: Any) -> list[Array]:
        if not isinstance(xs, (list, tuple)) or len(xs) < 2:
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}): expected a list of at least 2 arrays")
        arrays = [self.backend.asarray(x, self.dtype, f"inputs[{i}]") if self.built else x for i, x in enumerate(xs)]
        if not self.built:
            self.build([a.shape[-1] for a in arrays])
            arrays = [self.backend.asarray(x, self.dtype, f"inputs[{i}]") for i, x in enumerate(xs)]
        self.check_shapes([tuple(a.shape) for a in arrays])
        return arrays

    def forward(self, xs: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y (B, N) from the list of inputs, keeping them for backward (copied unless ``ctx.input_owned``)."""
        arrays = self.inputs_of(xs)
        y = self.combine(arrays, self._buffers.get(self.backend, "y", self.out_shape(arrays), self.dtype))
        self._xs = arrays if ctx.input_owned or not self.keeps_inputs else [self.backend.copy(a) for a in arrays]
        return y if ctx.output_private else self.backend.copy(y)

    def infer(self, xs: Any, *, logits: bool = False) -> Array:
        arrays = self.inputs_of(xs)
        return self.combine(arrays, self.backend.empty(self.out_shape(arrays), self.dtype))

    def out_shape(self, arrays: Sequence[Array]) -> tuple[int, ...]:
        return tuple(arrays[0].shape)

    keeps_inputs = False  # whether backward reads the inputs (Multiply, Maximum, Minimum)

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> list[Array] | None:
        """[dx_i (B, N_i)] from dy (B, N)."""
        if self._xs is None:
            raise RuntimeError(f"backward called before forward on layer '{self.name}': run forward(x) first")
        if not input_grad:
            return None
        dy = self.backend.asarray(dy, self.dtype, "dy")
        return self.split(dy, self._xs)

    def combine(self, xs: list[Array], out: Array) -> Array:
        raise NotImplementedError

    def split(self, dy: Array, xs: list[Array]) -> list[Array]:
        raise NotImplementedError


@register
class Add(Merge):
    """y = x_0 + x_1 + ...; each dx_i = dy."""

    def combine(self, xs: list[Array], out: Array) -> Array:
        xp = self.backend.xp
        xp.add(xs[0], xs[1], out=out)
        for x in xs[2:]:
            xp.add(out, x, out=out)
        return out

    def split(self, dy: Array, xs: list[Array]) -> list[Array]:
        return [dy] * len(xs)


@register
class Subtract(Merge):
    """y = x_0 - x_1; dx_0 = dy, dx_1 = -dy."""

    arity = 2

    def combine(self, xs: list[Array], out: Array) -> Array:
        return self.backend.xp.subtract(xs[0], xs[1], out=out)

    def split(self, dy: Array, xs: list[Array]) -> list[Array]:
        return [dy, self.backend.xp.negative(dy, out=self._buffers.get(self.backend, "dx1", dy.shape, self.dtype))]


@register
class Average(Merge):
    """y = (x_0 + ... + x_{n-1}) / n; each dx_i = dy / n."""

    def combine(self, xs: list[Array], out: Array) -> Array:
        xp = self.backend.xp
        xp.add(xs[0], xs[1], out=out)
        for x in xs[2:]:
            xp.add(out, x, out=out)
        return xp.multiply(out, out.dtype.type(1.0 / len(xs)), out=out)

    def split(self, dy: Array, xs: list[Array]) -> list[Array]:
        dx = self.backend.xp.multiply(dy, dy.dtype.type(1.0 / len(xs)), out=self._buffers.get(self.backend, "dx", dy.shape, self.dtype))
        return [dx] * len(xs)


@register
class Multiply(Merge):
    """y = x_0 * x_1 * ...; dx_i = dy * (the product of the others)."""

    keeps_inputs = True

    def combine(self, xs: list[Array], out: Array) -> Array:
        xp = self.backend.xp
        xp.multiply(xs[0], xs[1], out=out)
        for x in xs[2:]:
            xp.multiply(out, x, out=out)
        return out

    def split(self, dy: Array, xs: list[Array]) -> list[Array]:
        xp, grads = self.backend.xp, []
        for i in range(len(xs)):
            g = self._buffers.get(self.backend, f"dx{i}", dy.shape, self.dtype)
            xp.copyto(g, dy)
            for j, x in enumerate(xs):
                if j != i:
                    xp.multiply(g, x, out=g)
            grads.append(g)
        return grads


class _Extreme(Merge):
    """Elementwise maximum or minimum, pairwise from the left; ties split the gradient equally."""

    keeps_inputs = True
    pick = "maximum"

    def operation(self) -> Any:
        xp = self.backend.xp
        return xp.maximum if self.pick == "maximum" else xp.minimum

    def combine(self, xs: list[Array], out: Array) -> Array:
        op = self.operation()
        op(xs[0], xs[1], out=out)
        for x in xs[2:]:
            op(out, x, out=out)
        return out

    def split(self, dy: Array, xs: list[Array]) -> list[Array]:
        xp, op = self.backend.xp, self.operation()
        # The running extreme r_k = op(r_{k-1}, x_k) is a pairwise op: its gradient goes to the
        # winner, half to each on a tie (torch.maximum's rule), from the last pair back to the first.
        running = [xs[0]]
        for x in xs[1:]:
            running.append(op(running[-1], x))
        grads: list[Array] = [None] * len(xs)  # type: ignore[list-item]
        g = dy
        for k in range(len(xs) - 1, 0, -1):
            left, right = running[k - 1], xs[k]
            share = xp.where(left == right, 0.5, xp.where(op(left, right) == right, 1.0, 0.0)).astype(self.dtype)
            grads[k] = g * share
            g = g * (1 - share)
        grads[0] = g
        return grads


@register
class Maximum(_Extreme):
    """y = max(x_0, x_1, ...) elementwise."""

    pick = "maximum"


@register
class Minimum(_Extreme):
    """y = min(x_0, x_1, ...) elementwise."""

    pick = "minimum"


@register
class Concatenate(Merge):
    """y = [x_0, x_1, ...] joined along the features (``axis=-1``): (B, N_0 + N_1 + ...)."""

    any_rank = False

    def __init__(self, axis: int = -1, name: str | None = None, dtype: Any = None, **kwargs: Any) -> None:
        if isinstance(axis, bool) or axis not in (-1, 1):
            raise ValueError(f"axis: fcgpu concatenates flat features: expected -1 (or 1), got {axis!r}")
        super().__init__(name, dtype, **kwargs)
        self.axis = -1

    def check_shapes(self, shapes: Sequence[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        if any(len(s) != 2 for s in shapes):
            raise ValueError(f"layer '{self.name}' (Concatenate): expected (batch, features) inputs, got {list(shapes)}")
        return (shapes[0][0], sum(int(s[-1]) for s in shapes))

    def output_width(self, widths: Sequence[int]) -> int:
        return sum(widths)

    def out_shape(self, arrays: Sequence[Array]) -> tuple[int, ...]:
        return (arrays[0].shape[0], sum(a.shape[1] for a in arrays))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}

    def combine(self, xs: list[Array], out: Array) -> Array:
        start = 0
        for x in xs:
            self.backend.copy(x, out=out[:, start : start + x.shape[1]])
            start += x.shape[1]
        return out

    def split(self, dy: Array, xs: list[Array]) -> list[Array]:
        grads, start = [], 0
        for i, x in enumerate(xs):
            n = x.shape[1]
            # A contiguous copy: the layers before take dy as a dense (B, N_i) array.
            grads.append(self.backend.copy(dy[:, start : start + n], out=self._buffers.get(self.backend, f"dx{i}", x.shape, self.dtype)))
            start += n
        return grads


# Keras's functional forms: ``layers.add([a, b])`` is ``layers.Add()([a, b])``.
def _functional_form(cls: type[Layer]) -> Any:
    def apply(inputs: Any, **kwargs: Any) -> Any:
        return cls(**kwargs)(inputs)

    apply.__name__ = apply.__qualname__ = cls.__name__.lower()
    apply.__doc__ = f"``{apply.__name__}(inputs, **kwargs)`` is ``{cls.__name__}(**kwargs)(inputs)``."
    return apply


add, subtract, multiply, average, maximum, minimum = map(_functional_form, (Add, Subtract, Multiply, Average, Maximum, Minimum))


def concatenate(inputs: Any, axis: int = -1, **kwargs: Any) -> Any:
    return Concatenate(axis=axis, **kwargs)(inputs)
