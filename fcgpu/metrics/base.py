"""The metric interface the trainer uses, Keras's standalone API on top of it, and ``Metric``
subclasses written by users (``add_variable``/``add_weight``, ``update_state``, ``result``).

A metric's state is a small float64 array on the model's backend (sums and counts, confusion
counts per threshold, ...), every entry a sum over the samples seen, so states of batches and of
ranks add. What the trainer calls, the same for every metric:

- ``state_size(outputs)``: the entries of state for a model with ``outputs`` outputs;
- ``bind(state, backend)``: adopt ``state`` (a float64 device view of that size, zeroed by its
  owner) as its state; the trainer binds all metrics to views of one device array, so that one
  read gives every figure;
- ``update(backend, y_pred, y_true, sample_weight=None)``: add one batch into the state where the
  arrays live (``sample_weight``: None or a per-row weight vector (B,) of the same backend);
- ``result_from(state)``: the figure from a host copy of the state (a float, or an array for a
  metric with several thresholds), no device work.

Keras's standalone API is built on these: ``update_state(y_true, y_pred, sample_weight=None)``
(arrays of any kind, onto the active backend), ``result()`` (one read) and ``reset_state()``.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from ..backends import Backend, get_backend, use_backend
from ..backends.base import Array

__all__ = ["Metric", "Variable", "Mean", "Sum", "SampleMean", "MeanMetricWrapper", "EPSILON", "unique_name", "as_weights"]

#: Keras's backend.epsilon(), the clip bound of its probabilistic metrics.
EPSILON = 1e-7
NAME_COUNTS: dict[str, int] = {}


def snake_case(name: str) -> str:
    """Keras's to_snake_case: 'TruePositives' -> 'true_positives', 'AUC' -> 'auc'."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(cls_name: str) -> str:
    """Keras's auto_name: the class's snake-case name, '_1', '_2', ... appended after the first."""
    base = snake_case(cls_name)
    count = NAME_COUNTS.get(base, 0)
    NAME_COUNTS[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def as_weights(backend: Backend, sample_weight: Any, rows: int) -> Array | None:
    """``sample_weight`` (None, a number, or a (B,) / (B, 1) vector) as a float64 (B,) device array."""
    if sample_weight is None:
        return None
    xp = backend.xp
    w = sample_weight if backend.owns(sample_weight) else backend.from_numpy(np.asarray(sample_weight, np.float64))
    w = w.astype(np.float64) if w.dtype != np.float64 else w
    if w.ndim == 0 or w.size == 1:
        return xp.full((rows,), float(backend.to_numpy(w).reshape(-1)[0]), np.float64)
    w = w.reshape(-1)
    if w.shape[0] != rows:
        raise ValueError(f"sample_weight: expected {rows} weights (one per sample), got shape {np.shape(sample_weight)}")
    return w


def add_into(view: Array, value: Any) -> None:
    """``view += value`` in place (a device view: no copy back)."""
    view += value


class Variable:
    """A metric variable (``Metric.add_variable``): a float64 array of the metric's backend,
    ``assign``/``assign_add``/``assign_sub``, ``value``, ``numpy()``; arithmetic goes through
    ``fcgpu.ops``. When the trainer binds the metric, its storage is a view of the trainer's state."""

    def __init__(self, value: Array, name: str | None, dtype: Any) -> None:
        self._value = value
        self.name = name
        self.dtype = dtype

    @property
    def value(self) -> Array:
        return self._value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._value.shape)

    def _operand(self, v: Any) -> Any:
        from .. import ops  # ops import nothing of metrics: no cycle

        v = v.value if isinstance(v, Variable) else v
        return ops.convert_to_numpy(v) if isinstance(v, ops.Tensor) else v

    def _as_array(self, v: Any) -> Any:
        """``v`` as an array beside the storage (a number stays a number)."""
        v = self._operand(v)
        if isinstance(v, (bool, int, float)):
            return v
        if type(self._value) is np.ndarray:
            return np.asarray(v)
        backend = get_backend()
        return v if backend.owns(v) else backend.xp.asarray(np.asarray(v))

    def assign(self, v: Any) -> "Variable":
        self._value[...] = self._as_array(v)
        return self

    def assign_add(self, v: Any) -> "Variable":
        target = self._value
        target += self._as_array(v)
        return self

    def assign_sub(self, v: Any) -> "Variable":
        target = self._value
        target -= self._as_array(v)
        return self

    def numpy(self) -> np.ndarray:
        value = self._value
        return value.get() if hasattr(value, "get") and not type(value) is np.ndarray else np.asarray(value)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        host = np.array(self.numpy())
        return host if dtype is None else host.astype(dtype)

    def __float__(self) -> float:
        return float(self.numpy())

    def __repr__(self) -> str:
        return f"<Variable {self.name} shape={self.shape}>"

    def _op(name: str, swap: bool = False) -> Callable[..., Any]:  # noqa: N805 - builds the operators below
        def op(self: "Variable", other: Any) -> Any:
            from .. import ops

            fn = getattr(ops, name)
            return fn(other if not isinstance(other, Variable) else other.value, self._value) if swap else fn(
                self._value, other.value if isinstance(other, Variable) else other)
        return op

    __add__, __radd__ = _op("add"), _op("add", True)
    __sub__, __rsub__ = _op("subtract"), _op("subtract", True)
    __mul__, __rmul__ = _op("multiply"), _op("multiply", True)
    __truediv__, __rtruediv__ = _op("divide"), _op("divide", True)
    __pow__ = _op("power")
    del _op


def _initial(initializer: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The host values of a new variable: 'zeros' (default), 'ones', a number, or an initializer."""
    if initializer is None or initializer == "zeros":
        return np.zeros(shape)
    if initializer == "ones":
        return np.ones(shape)
    if isinstance(initializer, (int, float)) and not isinstance(initializer, bool):
        return np.full(shape, float(initializer))
    from .. import initializers

    init = initializers.get(initializer)
    return np.asarray(init(shape), np.float64)


class Metric:
    """Base class of every metric (Keras 3's ``keras.metrics.Metric``). Subclass it as Keras's guide
    does: create state with ``add_variable(shape, initializer, dtype, name)`` in ``__init__``,
    accumulate it in ``update_state(y_true, y_pred, sample_weight=None)`` with ``fcgpu.ops``, and
    compute the figure in ``result()``. Variables hold float64 values on the backend active when
    they are made; fit and evaluate move them to the model's backend."""

    #: The name Keras gives an instance without one (None: the class's name, made unique).
    default_name: str | None = None
    #: Counted by the loss's own fused step (Keras's 'accuracy' string), not by ``update``.
    fused_with_loss = False
    #: What the labels must be: 'same' (the predictions' shape), 'ids' (class ids), 'rows' or 'any'.
    labels_kind = "any"

    def __init__(self, dtype: Any = None, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        self.name = name or self.default_name or unique_name(type(self).__name__)
        self.dtype = dtype
        self._variables: list[Variable] = []
        self._state: Array | None = None
        self._backend: Backend | None = None
        self._outputs: int | None = None

    # -- the trainer's interface --------------------------------------------------------------
    def state_size(self, outputs: int) -> int:
        """Entries of float64 state for a model with ``outputs`` outputs."""
        return sum(int(np.prod(v.shape)) for v in self._variables)

    def bind(self, state: Array, backend: Backend, outputs: int | None = None) -> None:
        """Adopt ``state`` (float64, ``state_size`` entries, zeroed by its owner) as this metric's."""
        self._state, self._backend, self._outputs = state, backend, outputs
        offset = 0
        for v in self._variables:
            size = int(np.prod(v.shape))
            v._value = state[offset : offset + size].reshape(v.shape)
            offset += size

    def update(self, backend: Backend, y_pred: Array, y_true: Array, sample_weight: Array | None = None) -> None:
        """Add a batch into the state (a subclass's ``update_state``, run on ``backend``)."""
        with use_backend(backend):
            self.update_state(y_true, y_pred, sample_weight=sample_weight)

    def result_from(self, state: np.ndarray) -> Any:
        """The figure from a host copy of the state (a subclass's ``result()`` on host values)."""
        saved = [v._value for v in self._variables]
        try:
            offset = 0
            for v in self._variables:
                size = int(np.prod(v.shape))
                v._value = state[offset : offset + size].reshape(v.shape)
                offset += size
            with use_backend("numpy"):
                return host_value(self.result())
        finally:
            for v, value in zip(self._variables, saved):
                v._value = value

    def custom_reset(self) -> bool:
        """Whether a subclass overrides ``reset_state`` (the trainer then calls it after zeroing)."""
        return type(self).reset_state is not Metric.reset_state

    # -- Keras's API --------------------------------------------------------------------------
    def add_variable(self, shape: Any = (), initializer: Any = "zeros", dtype: Any = None, aggregation: str = "sum",
                     name: str | None = None) -> Variable:
        """A state variable of ``shape`` (float64 here, whatever ``dtype``), made on the active backend."""
        if not hasattr(self, "_variables"):
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before add_variable")
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in (shape or ()))
        backend = self._backend or get_backend()
        host = _initial(initializer, shape)
        value = backend.from_numpy(host.reshape(-1)).reshape(shape) if host.ndim else backend.xp.asarray(host)
        variable = Variable(value, name, dtype)
        self._variables.append(variable)
        return variable

    def add_weight(self, shape: Any = (), initializer: Any = None, dtype: Any = None, name: str | None = None) -> Variable:
        """Keras's older name for ``add_variable``."""
        return self.add_variable(shape=shape, initializer=initializer, dtype=dtype, name=name)

    @property
    def variables(self) -> list[Variable]:
        return list(self._variables)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Keras's standalone update: the arrays onto the active backend (or the one this metric's
        state lives on), then ``update``."""
        backend = self._backend or get_backend()
        y_pred = y_pred if backend.owns(y_pred) else backend.from_numpy(np.asarray(y_pred, np.float64))
        if y_pred.ndim == 1:
            y_pred = y_pred.reshape(-1, 1) if self.labels_kind != "any" else y_pred
        y_true = y_true if backend.owns(y_true) else backend.from_numpy(np.asarray(y_true))
        outputs = int(y_pred.shape[-1]) if y_pred.ndim > 1 else 1
        if self._state is None or self._backend is not backend:
            self.bind(backend.zeros((self.state_size(outputs),), np.float64), backend, outputs)
        self.check(tuple(y_pred.shape), tuple(y_true.shape))
        self.update(backend, y_pred, y_true, as_weights(backend, sample_weight, y_pred.shape[0]))

    def result(self) -> Any:
        """The figure so far (one read of the state): a float, or an array for several thresholds."""
        if self._state is None:
            return self.result_from(np.zeros(self.state_size(self._outputs or 1)))
        return self.result_from(self._backend.to_numpy(self._state))

    def reset_state(self) -> None:
        """Zero the state (one device operation)."""
        if self._state is not None:
            self._state.fill(0)
        else:
            for v in self._variables:
                v.assign(np.zeros(v.shape))

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        self.update_state(y_true, y_pred, sample_weight=sample_weight)
        return self.result()

    def get_config(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__, "name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "class_name")
        return f"{type(self).__name__}({args})"

    # -- label shapes: checked from shapes alone, so per batch without reading the device ----------
    def check(self, pred_shape: tuple[int, ...], labels_shape: tuple[int, ...]) -> None:
        """Refuse labels (as the loss prepared them) that this metric cannot compare with
        predictions of ``pred_shape``: a ValueError saying what it expects."""
        self.labels_shape(pred_shape, labels_shape)

    def labels_shape(self, pred_shape: tuple[int, ...], labels_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape to view the labels as, or a ValueError."""
        pred_shape, labels_shape = tuple(pred_shape), tuple(labels_shape)
        kind, batch = self.labels_kind, pred_shape[0]
        if kind == "same":
            if labels_shape == pred_shape:
                return labels_shape
            if int(np.prod(labels_shape)) == int(np.prod(pred_shape)) and labels_shape[:1] == (batch,) and (
                len(pred_shape) == 1 or pred_shape[1] == 1
            ):
                return pred_shape
            hint = " (class ids: use 'sparse_categorical_accuracy')" if len(labels_shape) == 1 else ""
            expected = f"labels of the predictions' shape{hint}"
        elif len(pred_shape) != 2:
            expected = "predictions of shape (batch, classes)"
        elif kind == "ids":
            if labels_shape in ((batch,), (batch, 1)):
                return (batch,)
            hint = " (one-hot rows: use the metric without 'sparse_')" if labels_shape == pred_shape else ""
            expected = f"class ids of shape ({batch},){hint}"
        elif kind == "rows":
            if labels_shape == pred_shape:
                return labels_shape
            hint = " (class ids: use the 'sparse_' metric)" if len(labels_shape) == 1 else ""
            expected = f"one-hot label rows of the predictions' shape{hint}"
        else:
            return labels_shape
        raise ValueError(
            f"metrics: '{self.name}' expects {expected}; got labels of shape {labels_shape} for predictions of "
            f"shape {pred_shape}"
        )

    def labels(self, pred: Array, labels: Array) -> Array:
        """``labels`` checked and viewed as ``labels_shape`` says."""
        shape = self.labels_shape(pred.shape, labels.shape)
        return labels if labels.shape == shape else labels.reshape(shape)


def host_value(value: Any) -> Any:
    """A result as a host float (or a float64 array when it has several entries)."""
    from .. import ops

    if isinstance(value, Variable):
        value = value.numpy()
    elif isinstance(value, ops.Tensor):
        value = ops.convert_to_numpy(value)
    elif hasattr(value, "get") and not type(value) is np.ndarray:
        value = value.get()
    arr = np.asarray(value, np.float64)
    return float(arr) if arr.size == 1 else arr


def divide_no_nan(a: Any, b: Any) -> Any:
    """a / b, 0 where b is 0 (Keras's ops.divide_no_nan), on host values."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))


class Mean(Metric):
    """The (weighted) mean of values: state [total, count] (Keras's ``Mean``); values of more than
    one axis are first averaged over the non-batch axes, per sample."""

    default_name = "mean"

    def __init__(self, name: str | None = None, dtype: Any = None) -> None:
        super().__init__(dtype=dtype, name=name)

    def state_size(self, outputs: int) -> int:
        return 2

    def bind(self, state, backend, outputs=None):
        super().bind(state, backend, outputs)
        self._total, self._count = state[0:1], state[1:2]

    def add_values(self, backend: Backend, values: Array, sample_weight: Array | None) -> None:
        """Add per-sample ``values`` (B,) (float64) with per-row weights (or a 0-d value: one sample)."""
        xp = backend.xp
        if sample_weight is None:
            add_into(self._total, xp.sum(values, dtype=np.float64))
            add_into(self._count, float(values.shape[0]) if values.ndim else 1.0)
        else:
            if values.ndim == 0:
                values = xp.broadcast_to(values, sample_weight.shape)
            add_into(self._total, xp.sum(values * sample_weight, dtype=np.float64))
            add_into(self._count, xp.sum(sample_weight, dtype=np.float64))

    def update(self, backend, y_pred, y_true=None, sample_weight=None):
        values = y_pred.astype(np.float64)
        if values.ndim > 1:
            values = backend.xp.mean(values.reshape(values.shape[0], -1), axis=1)
        self.add_values(backend, values, sample_weight)

    def update_state(self, values: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        """Keras's ``Mean.update_state(values, sample_weight=None)``."""
        backend = self._backend or get_backend()
        values = values if backend.owns(values) else backend.from_numpy(np.atleast_1d(np.asarray(values, np.float64)))
        if self._state is None:
            self.bind(backend.zeros((self.state_size(1),), np.float64), backend, 1)
        self.update(backend, values, None, as_weights(backend, sample_weight, values.shape[0]))

    def result_from(self, state):
        return float(divide_no_nan(state[0], state[1]))


class Sum(Mean):
    """The (weighted) sum of values (Keras's ``Sum``)."""

    default_name = "sum"

    def update(self, backend, y_pred, y_true=None, sample_weight=None):
        values = y_pred.astype(np.float64)
        if values.ndim > 1:
            values = backend.xp.sum(values.reshape(values.shape[0], -1), axis=1)
        self.add_values(backend, values, sample_weight)

    def result_from(self, state):
        return float(state[0])


class SampleMean(Mean):
    """A weighted mean over samples of a per-sample value (``values``): Keras's metrics built on
    ``MeanMetricWrapper``; updated from (y_true, y_pred) like every other metric."""

    def values(self, backend: Backend, y_pred: Array, y_true: Array) -> Array:
        """Per-sample values, float64 (B,), where the arrays live."""
        raise NotImplementedError

    def update(self, backend, y_pred, y_true=None, sample_weight=None):
        self.add_values(backend, self.values(backend, y_pred, y_true), sample_weight)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        Metric.update_state(self, y_true, y_pred, sample_weight)


class MeanMetricWrapper(SampleMean):
    """The weighted mean over samples of ``fn(y_true, y_pred)`` (Keras's ``MeanMetricWrapper``):
    what ``compile(metrics=[fn])`` makes of a function written with ``fcgpu.ops``; per-sample
    values of several axes are averaged over the non-batch axes, a 0-d value counts as one sample."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, dtype: Any = None, **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"metrics: expected a function fn(y_true, y_pred), got {fn!r}")
        from ..ops.core import callable_name

        super().__init__(name=name or callable_name(fn), dtype=dtype)
        self.fn, self.fn_kwargs = fn, kwargs

    def values(self, backend: Backend, y_pred: Array, y_true: Array) -> Array:
        """Per-sample values (float64, (B,) or 0-d) on ``backend``."""
        from .. import ops
        from ..losses.tracing import squeeze_or_expand_to_same_rank

        with use_backend(backend):
            y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
            out = self.fn(y_true, y_pred, **self.fn_kwargs)
        out = ops.convert_to_numpy(out) if isinstance(out, ops.Tensor) else out
        out = out.value if isinstance(out, Variable) else out
        if not backend.owns(out):
            out = backend.xp.asarray(np.asarray(out, np.float64))
        out = out.astype(np.float64)
        return backend.xp.mean(out.reshape(out.shape[0], -1), axis=1) if out.ndim > 1 else out

    def get_config(self):
        from ..ops.core import callable_name

        return {**super().get_config(), "fn": callable_name(self.fn), **self.fn_kwargs}

