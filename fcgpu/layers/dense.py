"""The fully connected layer: y = act(x @ W + b), W (in_features, units) as in Keras; forward and backward below."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import constraints, mixed_precision, regularizers
from ..activations.table import Activation, get_activation
from ..backends import Backend, get_backend, resolve_backend
from ..backends.base import Array, Scalar
from ..initializers import get_initializer, serialize as serialize_initializer
from ..saving.serialization import register
from ..backends.validation import float_array, input_features, positive_int
from .base import Buffers, Layer, declared_input
from .context import INFERENCE, ForwardContext
from .fusion import MASK

FLOAT_DTYPES = ("float16", "float32", "float64")
_MASK_EPILOGUE = frozenset({MASK})


@register
class Dense(Layer):
    """A fully connected layer.

    Args:
        units: output features N.
        activation: None/'linear', 'relu', 'sigmoid', 'tanh', 'softmax' (over each row), 'gelu',
            'gelu_approximate' (the tanh form), 'leaky_relu' (slope 0.2), 'elu', 'selu', 'silu'
            (also 'swish'), 'softplus' or 'softsign'; case-insensitive (``fcgpu.activations``).
        use_bias: add a bias vector b of shape (N,).
        kernel_initializer, bias_initializer: names ('he_normal', ...) or instances (``HeNormal()``)
            from ``fcgpu.initializers``.
        kernel_regularizer, bias_regularizer: None, 'l1', 'l2', 'l1_l2' or an ``fcgpu.regularizers``
            object: its penalty joins the loss, its gradient the parameter's (as in Keras).
        kernel_constraint, bias_constraint: None, 'max_norm', 'non_neg', 'unit_norm',
            'min_max_norm' or an ``fcgpu.constraints`` object: applied to the weight after each
            optimizer update (as in Keras).
        dtype: a dtype policy (``fcgpu.mixed_precision``): 'float32', 'float64', 'float16',
            'mixed_float16' or 'mixed_bfloat16', or a ``Policy``; default the global policy. Under a
            mixed policy the variables (kernel, bias) are float32 master weights and the layer
            computes in the half type from a half copy of them, which the optimizer's update
            writes; inputs, outputs and dx are half, the gradients (``kernel_grad``, ``bias_grad``)
            float32 (the GEMMs' float accumulation kept, not rounded to half).
        name: unique within a model; assigned ('dense', 'dense_1', ...) when left None.
        input_shape, input_dim: Keras's (M,) or M: as a Sequential's first layer, its ``Input``.

    Shapes: x (B, M) or (M,) -> y (B, N) or (N,); kernel (M, N); bias (N,).
    """

    compute_dtype: np.dtype = None  # type: ignore[assignment]  # set per layer from its policy (a plain attribute)

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        dtype: Any = None,
        name: str | None = None,
        input_dim: int | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        positive_int(units, "units")
        if dtype is not None and not isinstance(dtype, mixed_precision.Policy):
            try:
                name_of = str(np.dtype(dtype))
            except TypeError:
                name_of = dtype
            if name_of not in mixed_precision.POLICY_NAMES:
                raise TypeError(f"dtype: expected one of {list(mixed_precision.POLICY_NAMES)} or a Policy, got {dtype!r}")
            dtype = name_of
        policy = mixed_precision.get_policy(dtype)
        super().__init__(name)
        self.declared_input_shape = declared_input(input_shape, input_dim)
        self.units = int(units)
        self.activation = activation  # the table entry (the property resolves it)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"use_bias: expected True or False, got {use_bias!r}")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = get_initializer(kernel_initializer, "kernel_initializer")
        self.bias_initializer = get_initializer(bias_initializer, "bias_initializer")
        self._kernel_init_name = serialize_initializer(kernel_initializer)  # a name stays a name
        self._bias_init_name = serialize_initializer(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "kernel_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer")
        self.kernel_constraint = constraints.get(kernel_constraint, "kernel_constraint")
        self.bias_constraint = constraints.get(bias_constraint, "bias_constraint")
        self.dtype_policy = policy
        self.dtype = policy.variable_dtype  # Keras's layer.dtype: the variables'
        self.compute_dtype = policy.compute_dtype
        self._halves: dict[str, Array] = {}  # mixed: the half copies of kernel and bias, by attribute
        self.in_features: int | None = None
        self.backend: Backend | None = None
        self.kernel: Array | None = None
        self.bias: Array | None = None
        self.kernel_grad: Array | None = None
        self.bias_grad: Array | None = None
        self._buffers = Buffers()
        self._grad_storage: dict[str, Array] = {}  # gradient views of a model's flat buffer
        self.release()  # what backward reads: x, y, z + b (``_kept``, for an activation whose backward reads it)
        self._squeeze = False
        self._act = self._activation.name  # what the last forward applied (linear when it gave logits)

    @property
    def built(self) -> bool:
        return self.kernel is not None

    def get_config(self) -> dict[str, Any]:
        return {
            "class_name": "Dense",
            "units": self.units,
            "activation": self._activation.name,
            "use_bias": self.use_bias,
            "kernel_initializer": self._kernel_init_name,
            "bias_initializer": self._bias_init_name,
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            **{k: constraints.serialize(c) for k, c in (("kernel_constraint", self.kernel_constraint),
                                                          ("bias_constraint", self.bias_constraint)) if c is not None},
            "dtype": self.dtype_policy.name,
            "name": self.name,
            **({"input_shape": list(self.declared_input_shape)} if self.declared_input_shape else {}),
            **({"trainable": False} if not self.trainable else {}),
        }

    def __repr__(self) -> str:
        shape = f"{self.in_features}->{self.units}" if self.built else f"?->{self.units}"
        return f"Dense({shape}, activation={self._activation.name!r}, name={self.name!r})"

    # -- parameters --------------------------------------------------------------
    def build(self, input_shape: int | Sequence[int | None]) -> None:
        """Create the parameters on the active backend for ``in_features`` or a shape like (None, 784).

        A layer already built for that many features is left as it is (its weights are kept).
        """
        in_features = input_features(input_shape)
        if self.built and self.in_features == in_features:
            return
        backend = get_backend()
        kernel = backend.from_numpy(np.asarray(self.kernel_initializer((in_features, self.units)), dtype=self.dtype))
        bias = None
        if self.use_bias:
            bias = backend.from_numpy(np.asarray(self.bias_initializer((self.units,)), dtype=self.dtype))
        # Nothing changes above this line, so a failure leaves the layer as it was.
        self.backend, self.in_features, self.kernel, self.bias = backend, in_features, kernel, bias
        self._halves = {}
        self._refresh_halves()
        self._grad_storage = {}
        # No gradient until a backward pass: an optimizer step before one is an error, not an
        # update from zeros (which would still apply weight decay).
        self.kernel_grad = self.bias_grad = None
        self.release()

    def count_params(self) -> int:
        if not self.built:
            raise RuntimeError(f"layer '{self.name}' is not built: call build(in_features) or pass it an input first")
        return self.in_features * self.units + (self.units if self.use_bias else 0)

    def weight_count(self) -> int:
        return 2 if self.use_bias else 1

    def variables(self) -> list[tuple[str, Array, bool]]:
        if not self.built:
            return []
        names = ("kernel", "bias") if self.use_bias else ("kernel",)
        return [(f"{self.name}/{attr}", getattr(self, attr), self.trainable) for attr in names]

    def parameters(self) -> list[tuple[str, Array, Array]]:
        """[(name, parameter, gradient)] for the optimizers, e.g. ('dense/kernel', W, dW); none
        while the layer is frozen."""
        if not self.built or not self.trainable:
            return []
        params = [(f"{self.name}/kernel", self.kernel, self.kernel_grad)]
        if self.use_bias:
            params.append((f"{self.name}/bias", self.bias, self.bias_grad))
        return params

    def weight_constraints(self) -> dict[str, Any]:
        """{parameter name: its constraint}, applied by the optimizer after each update."""
        found = {f"{self.name}/kernel": self.kernel_constraint, f"{self.name}/bias": self.bias_constraint}
        return {name: c for name, c in found.items() if c is not None}

    def regularization_loss(self, scale: float = 1.0) -> Scalar | None:
        """The kernel's and bias's regularization penalties summed (Keras's ``layer.losses``) times
        ``scale``, a float64 scalar where the parameters live; None when no regularizer applies."""
        total = None
        if not self.trainable:  # Keras: only trainable variables are penalized
            return None
        for param, regularizer in ((self.kernel, self.kernel_regularizer), (self.bias, self.bias_regularizer)):
            if param is not None and regularizer is not None and regularizer.active:
                value = regularizer.penalty(self.backend, param, scale)
                total = value if total is None else total + value
        return total

    def get_weights(self) -> list[np.ndarray]:
        """[kernel (M, N), bias (N,)] (kernel only without bias) as host copies."""
        if not self.built:
            return []
        return [np.array(self.backend.to_numpy(p), copy=True) for _, p, _ in self.variables()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Load [kernel (M, N), bias (N,)] from host arrays; builds the layer from the kernel's shape if needed."""
        expected = self.weight_count()
        if not isinstance(weights, (list, tuple)) or len(weights) != expected:
            count = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
            raise ValueError(
                f"weights: expected a list of {expected} arrays ([kernel{', bias' if self.use_bias else ''}]) "
                f"for layer '{self.name}', got {count}"
            )
        self.assign_weights(self.validate_weights(weights))

    def validate_weights(self, weights: Sequence[np.ndarray], first: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """(kernel, bias) checked and cast to the layer's dtype, changing nothing; ``first`` is the
        kernel's index in the caller's list, for the messages."""
        kernel = float_array(weights[0], f"weights[{first}] (kernel)", self.dtype, numpy_only=True, copy=True)
        if kernel.ndim != 2 or kernel.shape[1] != self.units:
            raise ValueError(
                f"weights[{first}] (kernel): expected shape (in_features, {self.units}) for layer '{self.name}', "
                f"got {kernel.shape}"
            )
        if self.built and kernel.shape != (self.in_features, self.units):
            raise ValueError(
                f"weights[{first}] (kernel): expected shape {(self.in_features, self.units)} for layer "
                f"'{self.name}', got {kernel.shape}"
            )
        bias = None
        if self.use_bias:
            bias = float_array(weights[1], f"weights[{first + 1}] (bias)", self.dtype, numpy_only=True, copy=True)
            if bias.shape != (self.units,):
                raise ValueError(
                    f"weights[{first + 1}] (bias): expected shape {(self.units,)} for layer '{self.name}', "
                    f"got {bias.shape}"
                )
        return kernel, bias

    def assign_weights(self, checked: tuple[np.ndarray, np.ndarray | None]) -> None:
        kernel, bias = checked
        if not self.built:
            self.build(kernel.shape[0])
        self.kernel[...] = self.backend.from_numpy(kernel)
        if bias is not None:
            self.bias[...] = self.backend.from_numpy(bias)
        self._refresh_halves()

    # -- mixed precision: the half copies of the master weights ------------------------
    def half_copies(self) -> dict[str, Array]:
        """{'<layer>/kernel': its half copy, ...} under a mixed policy ({} otherwise): what the
        optimizer's update writes beside the float32 master weights."""
        if not self.trainable:  # kept by the layer itself, outside the model's buffers
            return {}
        return {f"{self.name}/{attr}": h for attr, h in self._halves.items()}

    def adopt_half_storage(self, views: dict[str, Array]) -> None:
        """Keep the half copies in the given views of a model's half buffer (values copied in)."""
        for name, view in views.items():
            attr = name.rpartition("/")[2]
            view[...] = getattr(self, attr).astype(view.dtype)
            self._halves[attr] = view

    def _refresh_halves(self) -> None:
        """Cast the master weights into their half copies (made where missing): after a build, a
        load or a move, never per forward (the optimizer's update keeps them current)."""
        if not self.mixed or self.kernel is None:
            return
        for attr in ("kernel", "bias"):
            master = getattr(self, attr)
            if master is None:
                continue
            half = self._halves.get(attr)
            if half is None or not self.backend.owns(half) or half.shape != master.shape:
                self._halves[attr] = master.astype(self.compute_dtype)
            else:
                half[...] = master.astype(self.compute_dtype)

    def compute_weights(self) -> tuple[Array, Array | None]:
        """(kernel, bias) as the GEMMs and kernels read them: the half copies under a mixed policy."""
        if self._halves:
            return self._halves["kernel"], self._halves.get("bias")
        return self.kernel, self.bias

    def adopt_storage(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """Keep the parameters (and gradients) in the given views of a model's flat buffers, by
        name ('<layer>/kernel', '<layer>/bias'); current values are copied in."""
        for attr, grad_attr in (("kernel", "kernel_grad"), ("bias", "bias_grad")):
            name = f"{self.name}/{attr}"
            if name not in params:
                continue
            params[name][...] = getattr(self, attr)
            setattr(self, attr, params[name])
            if getattr(self, grad_attr) is not None:
                grads[name][...] = getattr(self, grad_attr)
                setattr(self, grad_attr, grads[name])
        self._grad_storage = {k.rpartition("/")[2]: v for k, v in grads.items()}

    def to(self, backend: str | Backend) -> "Dense":
        """Move parameters and gradients to another backend ('numpy' | 'cupy' | 'auto')."""
        target, _ = resolve_backend(backend)
        if self.built and target is self.backend:
            return self  # already there: the parameters, half copies and buffers stay as they are
        if self.built and target is not self.backend:
            src = self.backend
            for attr in ("kernel", "bias", "kernel_grad", "bias_grad"):
                value = getattr(self, attr)
                if value is not None:
                    setattr(self, attr, target.from_numpy(src.to_numpy(value)))
        self.backend = target if self.built else None
        self._halves = {}
        self._refresh_halves()
        self._grad_storage = {}
        self.release()
        self._buffers.clear()
        return self

    # -- computation -------------------------------------------------------------
    def release(self) -> None:
        self._x = self._y = self._kept = None
        self._dropout: tuple[int, int, float, int] | None = None  # the fused Dropout's mask, if any
        self._dz_given = False  # the layer after this one applied this one's gradient epilogue

    gives_gradient_epilogue = takes_gradient_epilogue = True

    def chain_member(self, x: Array, logits: bool) -> tuple[str, Array, Array | None]:
        """This layer in a fused chain's training forward (``layers.fusion``'s 'mlp' group): (its
        activation, y, z + b or None), the buffers the kernel writes; backward's state set as forward's."""
        act = "linear" if logits else self._activation.name
        y = self._buffers.get(self.backend, "y", (x.shape[0], self.units), self.compute_dtype)
        z = self._buffers.get(self.backend, "y_pre", y.shape, y.dtype) if get_activation(act).backward_from == "z" else None
        self._x, self._y, self._kept, self._squeeze, self._act = x, y, z, False, act
        return act, y, z

    def gradient_epilogue(self) -> tuple[str, Array, tuple | None] | None:
        """(activation, what act' reads: y or z, the fused Dropout's key or None): what this layer's
        backward applies first, for the next layer's input-gradient GEMM; None: nothing to apply."""
        if self._y is None or (self._act == "linear" and self._dropout is None) or get_activation(self._act).rows:
            return None
        return self._act, (self._y if self._kept is None else self._kept), self._dropout

    fusion_settings = ("_activation",)

    @property
    def activation(self) -> Activation:
        """The activation's table entry; set as the constructor takes it (a name, a function of
        fcgpu.activations or an entry), as Keras allows ``layer.activation = ...``."""
        return self._activation

    @activation.setter
    def activation(self, value: Any) -> None:
        self._activation = get_activation(value)

    @property
    def epilogue_kinds(self) -> frozenset[str]:  # type: ignore[override]
        """A following elementwise mask (``fusion.MASK``: an active Dropout) runs inside this layer's
        bias + activation pass and its gradient inside this layer's backward, where the activation
        is elementwise and its backward reads y (``forward_with``)."""
        entry = self._activation
        return _MASK_EPILOGUE if not entry.rows and entry.backward_from == "y" else frozenset()

    def _affine(self, x: Array, key: str, activation: str, keep: bool = False) -> tuple[Array, Array | None]:
        """(y, None), or with ``keep`` (an activation whose backward reads z + b) (y, z + b), the
        latter in a buffer of its own that one fused pass writes beside y."""
        kernel, bias = self.compute_weights()
        y = self._buffers.get(self.backend, key, (x.shape[0], self.units), self.compute_dtype)
        if self.backend.gemm_epilogues:  # (an attribute: no call on a backend without them)
            s = self._buffers.get(self.backend, f"{key}_pre", y.shape, self.compute_dtype) if keep else None
            return self.backend.dense_affine(x, kernel, bias, activation, y, s), s
        if keep:
            s = self._buffers.get(self.backend, f"{key}_pre", y.shape, self.compute_dtype)
            self.backend.matmul(x, kernel, out=s)
            self.backend.bias_act_forward(s, bias, activation, out=y, keep=s)
            return y, s
        self.backend.matmul(x, kernel, out=y)
        if bias is not None or activation != "linear":  # no kernel that copies y onto itself
            self.backend.bias_act_forward(y, bias, activation, out=y)
        return y, None

    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y (B, N) = act(x (B, M) @ kernel (M, N) + bias (N,)); a 1-D x (M,) gives y (N,).

        x may be a NumPy array (copied to the device) or an array of the layer's backend.
        Builds the layer on the first call. What backward will read is the layer's own: an x that
        it would read by reference is copied, and the caller gets a copy of y, so that changing
        either afterwards cannot change the gradients. The model and the trainer, whose arrays
        nobody else sees, say so with ``ctx.input_owned`` / ``ctx.output_private`` and skip the
        copies. ``ctx.logits`` stops before the activation (x @ kernel + bias), and backward
        follows: the model's path to a loss that fuses with this layer's activation.
        """
        self.release()  # (as ``_take_input``, inline: one call fewer in every step)
        x_dev, squeeze = self.device_input(x)
        if not ctx.input_owned and self.borrowed(x, x_dev):
            x_dev = self.backend.copy(x_dev, out=self._buffers.get(self.backend, "x", x_dev.shape, self.compute_dtype))
        act = "linear" if ctx.logits else self._activation.name
        entry = self._activation if act == self._activation.name else get_activation(act)
        y, kept = self._affine(x_dev, "y", act, keep=entry.backward_from == "z")
        self._x, self._y, self._kept, self._squeeze, self._act = x_dev, y, kept, squeeze, act
        if not ctx.output_private:
            y = self.backend.copy(y, out=self._buffers.get(self.backend, "y_out", y.shape, self.compute_dtype))
        return y[0] if squeeze else y

    def forward_with(self, followers: tuple[Any, ...], x: Any, ctx: ForwardContext) -> Array:
        """The forward of this layer and of ``followers`` (one layer of kind ``fusion.MASK``: the
        planner's epilogue group) in one pass: y = act(x @ kernel + bias) kept for backward, and the
        follower's output y * mask / keep written beside it and returned as the follower's (a copy
        unless ``ctx.output_private``). ``ctx.logits`` concerns the follower, the last layer: this
        layer applies its activation. Backward applies the mask's gradient with act' in one pass."""
        x_dev, squeeze = self._take_input(x, ctx)
        backend, act = self.backend, self._activation.name
        kernel, bias = self.compute_weights()
        y = self._buffers.get(backend, "y", (x_dev.shape[0], self.units), self.compute_dtype)
        out, seed, step, rate, offset = followers[0].fused_mask(y.shape, ctx.row_offset)
        if backend.gemm_epilogues:  # one launch: bias, activation and the mask in the GEMM's epilogue
            backend.dense_affine_dropout(x_dev, kernel, bias, act, y, out, seed, step, rate, offset)
        else:
            backend.matmul(x_dev, kernel, out=y)
            backend.bias_act_dropout_forward(y, bias, act, y, out, seed, step, rate, offset)
        self._x, self._y, self._kept, self._squeeze, self._act = x_dev, y, None, squeeze, act
        self._dropout = (seed, step, rate, offset)
        return out if ctx.output_private else backend.copy(out)

    def _take_input(self, x: Any, ctx: ForwardContext) -> tuple[Array, bool]:
        """Drop what the last forward kept; x as (B, M) of the layer's backend, the layer's own
        (copied where it would be read by reference and the caller owns it), and whether it was 1-D."""
        self.release()
        x_dev, squeeze = self.device_input(x)
        if not ctx.input_owned and self.borrowed(x, x_dev):
            x_dev = self.backend.copy(x_dev, out=self._buffers.get(self.backend, "x", x_dev.shape, self.compute_dtype))
        return x_dev, squeeze

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        """forward without keeping anything for backward (predict, evaluate, validation): a
        pending backward still sees the batch of the last ``forward``."""
        x_dev, squeeze = self.device_input(x)
        y, _ = self._affine(x_dev, "y_infer", "linear" if logits else self._activation.name)
        return y[0] if squeeze else y

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0, prev: Any = None) -> Array | None:
        """dx (B, M) from dy = dL/dy (B, N); sets kernel_grad = x.T @ dz and bias_grad = dz.sum(0).

        ``input_grad=False`` skips dx (one of the three GEMMs) and returns None: a first layer's
        input gradient is not needed for training. ``scale``: the factor the regularizers'
        gradients take (the loss scale under mixed_float16, as the loss gradient carries it). After
        ``forward_with``, dy is the follower's and its mask's gradient is applied here too.
        ``prev`` (bound by the planner): the Dense before, whose gradient epilogue dx's GEMM applies
        where the backend has GEMM epilogues (dx is then prev's dz).
        """
        if self._y is None:
            raise RuntimeError(f"backward called before forward on layer '{self.name}': run forward(x) first")
        backend, y = self.backend, self._y
        expected = (self.units,) if self._squeeze else y.shape
        shape = getattr(dy, "shape", None)
        if (tuple(shape) if shape is not None else np.shape(dy)) != expected:
            raise ValueError(
                f"dy: expected shape {expected} (the shape of the last forward output) for layer "
                f"'{self.name}', got {tuple(np.shape(dy)) if not hasattr(dy, 'shape') else tuple(dy.shape)}"
            )
        dy = backend.asarray(dy, self.compute_dtype, "dy").reshape(y.shape)
        if self._dz_given:  # the layer after this one applied the mask and act' in its GEMM: dy is dz
            dz, self._dz_given = dy, False
        elif self._dropout is not None:  # the Dropout after this layer: its mask and act' in one pass
            dz = self._buffers.get(backend, "dz", y.shape, self.compute_dtype)
            backend.act_dropout_backward(y, dy, self._act, dz, *self._dropout)
        elif self._act == "linear":
            dz = dy  # linear: dz is dy, no copy
        else:
            dz = self._buffers.get(backend, "dz", y.shape, self.compute_dtype)
            backend.act_backward(y if self._kept is None else self._kept, dy, self._act, out=dz)
        # dx first, while the kernel is still in cache from the forward pass: writing kernel_grad
        # (as large as the kernel) first evicts it, which costs ~15% at batch 1.
        dx = None
        if input_grad:
            dx = self._buffers.get(backend, "dx", self._x.shape, self.compute_dtype)
            epilogue = prev.gradient_epilogue() if prev is not None and backend.gemm_epilogues else None
            if epilogue is not None:
                backend.dense_input_grad(dz, self.compute_weights()[0], dx, *epilogue)
                prev._dz_given = True
            else:
                backend.matmul_a_bt(dz, self.compute_weights()[0], out=dx)
        if not self._trainable:  # frozen: no parameter gradients
            return dx[0] if self._squeeze and dx is not None else dx
        if self.kernel_grad is None:  # the view of the model's flat gradient buffer, else its own
            g = self._grad_storage.get("kernel")
            self.kernel_grad = g if g is not None else backend.empty(self.kernel.shape, self.dtype)
        if self.use_bias and self.bias_grad is None:
            g = self._grad_storage.get("bias")
            self.bias_grad = g if g is not None else backend.empty(self.bias.shape, self.dtype)
        backend.weight_grads(self._x, dz, self.kernel_grad, self.bias_grad if self.use_bias else None)
        if self.kernel_regularizer is not None:
            self.kernel_regularizer.add_gradient(backend, self.kernel, self.kernel_grad, scale)
        if self.use_bias and self.bias_regularizer is not None:
            self.bias_regularizer.add_gradient(backend, self.bias, self.bias_grad, scale)
        return dx[0] if self._squeeze and dx is not None else dx
