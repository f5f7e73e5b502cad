"""BatchNormalization and LayerNormalization, with Keras 3's arguments, weights and behaviour.

BatchNormalization normalizes each feature over the batch. A training forward (``training=True``:
fit, train_step, ``model(x, training=True)``) uses the batch's mean and biased variance and moves
the moving statistics toward them (moving = moving * momentum + batch * (1 - momentum)); every
other forward uses the moving statistics. Its weights, in Keras's order: gamma (scale), beta
(center), moving_mean, moving_variance; the last two are non-trainable. LayerNormalization
normalizes each row over its features, the same in training and inference. Both take
(batch, features) inputs and axis=-1 only. On CuPy the statistics are column reductions
(BatchNormalization) and warp-per-row reductions (LayerNormalization), ``kernels/layers.cuh``.
"""
from __future__ import annotations

from typing import Any

from .. import constraints, regularizers
from ..backends.base import Array
from ..saving.serialization import register
from .context import INFERENCE, ForwardContext
from .variables import VariableLayer, VariableSpec, check_axis, check_flag, check_number, initializer_entry

__all__ = ["BatchNormalization", "LayerNormalization"]


class _Normalization(VariableLayer):
    """What the two normalization layers share: epsilon, center, scale, gamma and beta."""

    def __init__(self, axis: Any, epsilon: float, center: bool, scale: bool, beta_initializer: Any,
                 gamma_initializer: Any, beta_regularizer: Any, gamma_regularizer: Any, beta_constraint: Any,
                 gamma_constraint: Any, dtype: Any, name: str | None) -> None:
        self.axis = check_axis(axis, type(self).__name__)
        self.epsilon = check_number(epsilon, "epsilon", 0.0, low_open=True)
        self.center = check_flag(center, "center")
        self.scale = check_flag(scale, "scale")
        self.beta_initializer = initializer_entry(beta_initializer, "beta_initializer")
        self.gamma_initializer = initializer_entry(gamma_initializer, "gamma_initializer")
        self.beta_regularizer = regularizers.get(beta_regularizer, "beta_regularizer")
        self.gamma_regularizer = regularizers.get(gamma_regularizer, "gamma_regularizer")
        self.beta_constraint = constraints.get(beta_constraint, "beta_constraint")
        self.gamma_constraint = constraints.get(gamma_constraint, "gamma_constraint")
        super().__init__(dtype, name)
        self._x: Array | None = None

    def affine_specs(self) -> list[VariableSpec]:
        specs = []
        if self.scale:
            specs.append(VariableSpec("gamma", self.gamma_initializer, True, self.gamma_regularizer))
        if self.center:
            specs.append(VariableSpec("beta", self.beta_initializer, True, self.beta_regularizer))
        return specs

    def config_entries(self) -> dict[str, Any]:
        return {
            "axis": self.axis, "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
            "beta_initializer": self.beta_initializer, "gamma_initializer": self.gamma_initializer,
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            **{k: constraints.serialize(c) for k, c in (("beta_constraint", self.beta_constraint),
                                                          ("gamma_constraint", self.gamma_constraint)) if c is not None},
        }

    def weight_constraints(self) -> dict[str, Any]:
        """{parameter name: its constraint} (gamma's, beta's), applied by the optimizer after each update."""
        found = {f"{self.name}/gamma": self.gamma_constraint if self.scale else None,
                 f"{self.name}/beta": self.beta_constraint if self.center else None}
        return {name: c for name, c in found.items() if c is not None}

    def release(self) -> None:
        super().release()
        self._x = None

    def keep_input(self, x: Any, x_dev: Array, ctx: ForwardContext) -> None:
        """Keep x for backward: the layer's own copy where x is the caller's array."""
        if not ctx.input_owned and self.borrowed(x, x_dev):
            x_dev = self.backend.copy(x_dev, out=self._buffers.get(self.backend, "x", x_dev.shape, self.dtype))
        self._x = x_dev

    def sums(self, n: int) -> tuple[Array, Array]:
        """Where backward writes sum(dy) and sum(dy * xhat): beta's and gamma's gradients (scratch when absent)."""
        b = self.backend
        sdy = self.gradient_buffer("beta") if self.center else self._buffers.get(b, "sdy", (n,), self.dtype)
        sdyx = self.gradient_buffer("gamma") if self.scale else self._buffers.get(b, "sdyx", (n,), self.dtype)
        return sdy, sdyx


@register
class BatchNormalization(_Normalization):
    """Keras's ``BatchNormalization`` for (batch, features) inputs.

    Args:
        axis: -1 (the features; 1 is the same axis), the only one fcgpu's 2-D inputs have.
        momentum: of the moving averages, in [0, 1]. epsilon: added to the variance, > 0.
        center, scale: learn beta (an offset) and gamma (a factor).
        beta_initializer, gamma_initializer, moving_mean_initializer, moving_variance_initializer:
            as Keras's ('zeros', 'ones', 'zeros', 'ones').
        beta_regularizer, gamma_regularizer: as Dense's regularizers; beta_constraint,
            gamma_constraint: as Dense's constraints (applied after each optimizer update). Renorm
            and synchronized (TensorFlow only in Keras) are not supported.
        dtype: None (the layer before it), 'float32' or 'float64'. name: as every layer's.

    Shapes: x (B, N) or (N,) -> y of the same shape.
    """

    updates_state_in_training = True

    def __init__(self, axis: Any = -1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer: Any = "zeros", gamma_initializer: Any = "ones",
                 moving_mean_initializer: Any = "zeros", moving_variance_initializer: Any = "ones",
                 beta_regularizer: Any = None, gamma_regularizer: Any = None, beta_constraint: Any = None,
                 gamma_constraint: Any = None, synchronized: bool = False, dtype: Any = None,
                 name: str | None = None) -> None:
        self.momentum = check_number(momentum, "momentum", 0.0, 1.0)
        if check_flag(synchronized, "synchronized"):
            raise ValueError("synchronized: only Keras's TensorFlow backend supports synchronized=True")
        self.moving_mean_initializer = initializer_entry(moving_mean_initializer, "moving_mean_initializer")
        self.moving_variance_initializer = initializer_entry(moving_variance_initializer, "moving_variance_initializer")
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, beta_constraint, gamma_constraint, dtype, name)
        self._batch_stats = False  # whether the last forward used the batch's statistics

    def variable_specs(self) -> list[VariableSpec]:
        return self.affine_specs() + [
            VariableSpec("moving_mean", self.moving_mean_initializer, False),
            VariableSpec("moving_variance", self.moving_variance_initializer, False),
        ]

    def config_entries(self) -> dict[str, Any]:
        return {**super().config_entries(), "momentum": self.momentum,
                "moving_mean_initializer": self.moving_mean_initializer,
                "moving_variance_initializer": self.moving_variance_initializer}

    @property
    def moving_mean(self) -> Array | None:
        return self.variable("moving_mean")

    @property
    def moving_variance(self) -> Array | None:
        return self.variable("moving_variance")

    @property
    def gamma(self) -> Array | None:
        return self.variable("gamma")

    @property
    def beta(self) -> Array | None:
        return self.variable("beta")

    # -- computation -------------------------------------------------------------
    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y (B, N) = (x - mean) / sqrt(var + epsilon) * gamma + beta: the batch's statistics (and
        the moving ones updated) when ``training``, else the moving statistics."""
        x_dev, squeeze = self.start_forward(x)
        b, n = self.backend, x_dev.shape[1]
        training = ctx.training and self.trainable  # Keras: a frozen BatchNormalization runs in inference mode
        if training:
            mean = self._buffers.get(b, "mean", (n,), self.dtype)
            var = self._buffers.get(b, "var", (n,), self.dtype)
            b.bn_stats(x_dev, mean, var, self.moving_mean, self.moving_variance, self.momentum)
        else:
            mean, var = self.moving_mean, self.moving_variance
        y = self._buffers.get(b, "y", x_dev.shape, self.dtype)
        b.bn_forward(x_dev, mean, var, self.gamma, self.beta, self.epsilon, y)
        self.keep_input(x, x_dev, ctx)
        self._stats, self._batch_stats = (mean, var), bool(training)
        return self.output(y, squeeze, ctx)

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        """y from the moving statistics, keeping nothing (predict, evaluate)."""
        x_dev, squeeze = self.device_input(x)
        y = self._buffers.get(self.backend, "y_infer", x_dev.shape, self.dtype)
        self.backend.bn_forward(x_dev, self.moving_mean, self.moving_variance, self.gamma, self.beta, self.epsilon, y)
        return y[0] if squeeze else y

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx (B, N); gamma's gradient sum(dy * xhat) and beta's sum(dy) over the batch."""
        dy_dev = self.device_dy(dy)
        b = self.backend
        sdy, sdyx = self.sums(dy_dev.shape[1])
        dx = self._buffers.get(b, "dx", dy_dev.shape, self.dtype) if input_grad else None
        mean, var = self._stats
        b.bn_backward(self._x, dy_dev, mean, var, self.gamma, self.epsilon, self._batch_stats, sdy, sdyx, dx)
        self.add_regularization_gradients(scale)
        return None if dx is None else self.gradient(dx)


@register
class LayerNormalization(_Normalization):
    """Keras's ``LayerNormalization`` over the features of (batch, features) inputs.

    Args:
        axis: -1 (or 1, or [-1]); epsilon: > 0; center, scale, the initializers, regularizers and
            constraints of beta and gamma: as Keras's. dtype, name: as BatchNormalization's.

    Shapes: x (B, N) or (N,) -> y of the same shape.
    """

    def __init__(self, axis: Any = -1, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 beta_initializer: Any = "zeros", gamma_initializer: Any = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, beta_constraint: Any = None, gamma_constraint: Any = None,
                 dtype: Any = None, name: str | None = None) -> None:
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, beta_constraint, gamma_constraint, dtype, name)

    def variable_specs(self) -> list[VariableSpec]:
        return self.affine_specs()

    @property
    def gamma(self) -> Array | None:
        return self.variable("gamma")

    @property
    def beta(self) -> Array | None:
        return self.variable("beta")

    def _normalize(self, x_dev: Array, key: str) -> tuple[Array, Array, Array]:
        b, rows = self.backend, x_dev.shape[0]
        y = self._buffers.get(b, key, x_dev.shape, self.dtype)
        mean = self._buffers.get(b, f"{key}_mean", (rows,), self.dtype)
        rstd = self._buffers.get(b, f"{key}_rstd", (rows,), self.dtype)
        b.ln_forward(x_dev, self.gamma, self.beta, self.epsilon, y, mean, rstd)
        return y, mean, rstd

    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y (B, N) = (x - mean_r) / sqrt(var_r + epsilon) * gamma + beta, row r's statistics."""
        x_dev, squeeze = self.start_forward(x)
        y, mean, rstd = self._normalize(x_dev, "y")
        self.keep_input(x, x_dev, ctx)
        self._stats = (mean, rstd)
        return self.output(y, squeeze, ctx)

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        x_dev, squeeze = self.device_input(x)
        y, _, _ = self._normalize(x_dev, "y_infer")
        return y[0] if squeeze else y

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx (B, N); gamma's gradient sum(dy * xhat) and beta's sum(dy) over the rows."""
        dy_dev = self.device_dy(dy)
        sdy, sdyx = self.sums(dy_dev.shape[1])
        dx = self._buffers.get(self.backend, "dx", dy_dev.shape, self.dtype) if input_grad else None
        mean, rstd = self._stats
        self.backend.ln_backward(self._x, dy_dev, mean, rstd, self.gamma, sdy, sdyx, dx)
        self.add_regularization_gradients(scale)
        return None if dx is None else self.gradient(dx)
