"""Closed-form cost model: floating-point operations and bytes moved per layer, model and training step.

Conventions (B batch, M input features, N units, s bytes per element of the dtype):

* A GEMM of an (m, k) by a (k, n) matrix costs 2·m·k·n flops (one multiply and one add per term).
* Dense forward: 2·B·M·N for ``x @ W``, plus B·N for the bias add and B·N for the activation
  (each counted as one flop per element, a nominal figure: a sigmoid costs more cycles).
* Dense backward: B·N for ``dz = dy * act'(y)`` (when there is an activation), 2·B·M·N for
  ``dx = dz @ W.T`` (skipped for a layer whose input needs no gradient), 2·B·M·N for
  ``dW = x.T @ dz`` and B·N for ``db = dz.sum(0)``.
* Bytes: every input, weight and output of an operation is read or written exactly once, i.e. the
  elementwise work is assumed fused into the GEMMs. Real implementations move more; that is what
  makes this a lower bound and the basis of the roofline.
* Optimizers and losses are elementwise; their flop counts per element are nominal and listed in
  ``OPTIMIZER_FLOPS`` / ``LOSS_FLOPS``.

Every count is an exact integer, so the totals can be checked by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "Cost",
    "DenseCost",
    "StepCost",
    "StepPathModel",
    "STEP_MODEL_ASSUMPTIONS",
    "LOSS_FLOPS",
    "LayerSpec",
    "OPTIMIZER_FLOPS",
    "dense_cost",
    "gemm_cost",
    "layer_flops",
    "layer_specs",
    "loss_cost",
    "model_cost",
    "own_gemm_cost",
    "optimizer_cost",
    "roofline_time",
    "step_paths_model",
    "train_step_cost",
]

# Nominal flops per parameter of one update (PyTorch's formulas): SGD p -= lr g is 2; weight decay
# (g += wd p) adds 2; momentum (buf = mu buf + g) adds 2 and Nesterov (g += mu buf) 2 more.
# Adam: two moment updates (3 each), bias-corrected step with sqrt, divide and eps (5), update (2).
OPTIMIZER_FLOPS = {"sgd": 2, "weight_decay": 2, "momentum": 2, "nesterov": 2, "adam": 13}

# Nominal flops per logit for the loss value and its gradient together.
LOSS_FLOPS = {"softmax_cross_entropy": 6, "binary_crossentropy": 6, "mean_squared_error": 4}


@dataclass(frozen=True)
class Cost:
    """Work of one operation: ``flops`` floating-point operations and ``bytes`` moved to or from memory."""

    flops: int = 0
    bytes: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    def __radd__(self, other: Any) -> "Cost":  # lets sum() start from 0
        if other == 0:
            return self
        return NotImplemented

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in flops per byte (inf for an operation that moves nothing)."""
        return self.flops / self.bytes if self.bytes else float("inf")

    def roofline_time(self, peak_flops: float, bandwidth: float) -> float:
        """Seconds this work needs at best on a machine of ``peak_flops`` flop/s and ``bandwidth`` byte/s."""
        return roofline_time(self, peak_flops, bandwidth)


def roofline_time(cost: Cost, peak_flops: float, bandwidth: float) -> float:
    """max(flops / peak_flops, bytes / bandwidth): the time bound of the roofline model, in seconds."""
    if peak_flops <= 0 or bandwidth <= 0:
        raise ValueError(f"peak_flops and bandwidth must be positive, got {peak_flops!r} and {bandwidth!r}")
    return max(cost.flops / peak_flops, cost.bytes / bandwidth)


def _itemsize(dtype: Any) -> int:
    return int(np.dtype(dtype).itemsize)


def gemm_cost(m: int, k: int, n: int, dtype: Any = "float32") -> Cost:
    """(m, k) @ (k, n): 2·m·k·n flops; both operands read and the (m, n) result written once."""
    s = _itemsize(dtype)
    return Cost(2 * m * k * n, s * (m * k + k * n + m * n))


def own_gemm_cost(m: int, k: int, n: int, dtype: Any = "float32", tile: int = 64, k_step: int = 16) -> Cost:
    """A model (not a measurement) of fcgpu's own tiled GEMM (``kernels/gemm.cuh``) on an (m, n) output:
    the flops of the padded tiles (a 64 x 64 tile of C a block, the inner dimension in steps of 16,
    32 for the 16-bit kernels) and the global reads if no cache helped, each A row block read once
    per column tile and each B column block once per row tile, plus the output written once."""
    if np.dtype(dtype).itemsize == 2:
        k_step = 32
    rows, cols, steps = -(-m // tile), -(-n // tile), -(-k // k_step)
    s = _itemsize(dtype)
    flops = 2 * rows * tile * cols * tile * steps * k_step
    return Cost(flops, s * (m * k * cols + k * n * rows) + s * m * n)


@dataclass(frozen=True)
class DenseCost:
    """The cost of one Dense layer for a batch; ``backward`` is ``backward_input + backward_params``."""

    batch: int
    in_features: int
    units: int
    itemsize: int
    forward: Cost
    backward_input: Cost  # dz = dy * act'(y) and dx = dz @ W.T (empty when no input gradient)
    backward_params: Cost  # dW = x.T @ dz and db = sum of dz (plus dz when there is no dx)
    has_bias: bool = True
    has_activation: bool = False

    @property
    def backward(self) -> Cost:
        return self.backward_input + self.backward_params

    @property
    def forward_backward(self) -> Cost:
        return self.forward + self.backward

    @property
    def params(self) -> int:
        """Number of parameters: M·N weights plus N biases when the layer has them."""
        return self.in_features * self.units + (self.units if self.has_bias else 0)


def dense_cost(
    batch: int,
    in_features: int,
    units: int,
    dtype: Any = "float32",
    use_bias: bool = True,
    activation: str | None = None,
    input_grad: bool = True,
) -> DenseCost:
    """Flops and bytes of a Dense layer ``y = act(x @ W + b)`` for x of shape (batch, in_features).

    ``input_grad=False`` models the first layer of a network, whose input needs no gradient.
    """
    for name, value in (("batch", batch), ("in_features", in_features), ("units", units)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    B, M, N, s = int(batch), int(in_features), int(units), _itemsize(dtype)
    act = activation is not None and activation != "linear"
    bias = bool(use_bias)
    bn = B * N

    fwd_flops = 2 * B * M * N + (bn if bias else 0) + (bn if act else 0)
    fwd_bytes = s * (B * M + M * N + (N if bias else 0) + bn)  # x, W, b read; y written

    # dz: dy (and y, for act') read; fused into whichever GEMM reads it first.
    dz_flops = bn if act else 0
    dz_bytes = s * (bn + (bn if act else 0))
    if input_grad:
        bwd_in = Cost(dz_flops + 2 * B * M * N, dz_bytes + s * (M * N + B * M))  # W read, dx written
        bwd_params = Cost(2 * B * M * N + (bn if bias else 0), s * (B * M + M * N + (N if bias else 0)))
    else:
        bwd_in = Cost()
        bwd_params = Cost(
            dz_flops + 2 * B * M * N + (bn if bias else 0), dz_bytes + s * (B * M + M * N + (N if bias else 0))
        )
    return DenseCost(B, M, N, s, Cost(fwd_flops, fwd_bytes), bwd_in, bwd_params, has_bias=bias, has_activation=act)


@dataclass(frozen=True)
class LayerSpec:
    """What the cost model needs of a Dense layer: its shape, activation, bias and dtype."""

    in_features: int
    units: int
    activation: str = "linear"
    use_bias: bool = True
    dtype: str = "float32"
    name: str = "dense"

    @classmethod
    def of(cls, dense: Any, in_features: int | None = None) -> "LayerSpec":
        """The spec of a Dense, from its public attributes; ``in_features`` stands in for a layer
        not built yet (the previous layer's units)."""
        m = dense.in_features if dense.in_features is not None else in_features
        if m is None:
            raise ValueError(f"layer '{dense.name}' is not built: build the model (model.build((None, features))) first")
        return cls(int(m), int(dense.units), dense.activation.name, bool(dense.use_bias), np.dtype(dense.dtype).name,
                   dense.name)


def layer_specs(model: Any) -> list[LayerSpec]:
    """The LayerSpecs of a Sequential, or of a list of Dense layers or LayerSpecs (kept as they are)."""
    layers: Iterable[Any] = getattr(model, "layers", model)
    specs: list[LayerSpec] = []
    for layer in layers:
        previous = specs[-1].units if specs else None
        specs.append(layer if isinstance(layer, LayerSpec) else LayerSpec.of(layer, previous))
    if not specs:
        raise ValueError("model: expected at least one layer")
    return specs


@dataclass(frozen=True)
class StepCost:
    """A model's cost for one batch: per-layer costs and the totals of each phase."""

    layers: tuple[DenseCost, ...]
    loss: Cost = field(default_factory=Cost)
    optimizer: Cost = field(default_factory=Cost)

    @property
    def forward(self) -> Cost:
        return sum((c.forward for c in self.layers), Cost())

    @property
    def backward(self) -> Cost:
        return sum((c.backward for c in self.layers), Cost())

    @property
    def total(self) -> Cost:
        """Forward, loss, backward and optimizer together."""
        return self.forward + self.loss + self.backward + self.optimizer

    @property
    def params(self) -> int:
        return sum(c.params for c in self.layers)


def model_cost(model: Any, batch: int, input_grad: bool = True) -> StepCost:
    """Forward and backward cost of a Sequential, or a list of built Dense layers or LayerSpecs, for one batch.

    ``input_grad`` says whether the first layer computes the gradient of the model's input
    (``model.backward`` returns it; a training step does not need it).
    """
    costs = tuple(
        dense_cost(batch, spec.in_features, spec.units, spec.dtype, spec.use_bias, spec.activation,
                   input_grad=input_grad or i > 0)
        for i, spec in enumerate(layer_specs(model))
    )
    return StepCost(costs)


def optimizer_cost(
    params: int,
    dtype: Any = "float32",
    optimizer: str = "sgd",
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> Cost:
    """One update of ``params`` parameters: per parameter, the parameter and its gradient are read and
    the parameter written, plus each state slot (momentum buffer; Adam's m and v) read and written."""
    s = _itemsize(dtype)
    name = optimizer.lower()
    if name == "sgd":
        flops = OPTIMIZER_FLOPS["sgd"] + (OPTIMIZER_FLOPS["weight_decay"] if weight_decay else 0)
        slots = 0
        if momentum:
            flops += OPTIMIZER_FLOPS["momentum"] + (OPTIMIZER_FLOPS["nesterov"] if nesterov else 0)
            slots = 1
    elif name in ("adam", "adamw"):
        flops = OPTIMIZER_FLOPS["adam"] + (OPTIMIZER_FLOPS["weight_decay"] if weight_decay else 0)
        slots = 2
    else:
        raise ValueError(f"optimizer: expected 'sgd', 'adam' or 'adamw', got {optimizer!r}")
    return Cost(flops * params, s * params * (3 + 2 * slots))


def loss_cost(batch: int, outputs: int, dtype: Any = "float32", loss: str = "softmax_cross_entropy") -> Cost:
    """Loss value and gradient for (batch, outputs) predictions: predictions read, gradient written, and
    one label per row (class ids) or per element (targets) read."""
    if loss not in LOSS_FLOPS:
        raise ValueError(f"loss: expected one of {sorted(LOSS_FLOPS)}, got {loss!r}")
    s = _itemsize(dtype)
    n = batch * outputs
    labels = batch * 8 if loss == "softmax_cross_entropy" else n * s  # int64 class ids, or float targets
    return Cost(LOSS_FLOPS[loss] * n, 2 * s * n + labels)


def train_step_cost(
    model: Any,
    batch: int,
    loss: str = "softmax_cross_entropy",
    optimizer: str = "sgd",
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    input_grad: bool = False,
) -> StepCost:
    """Forward, loss, backward and one optimizer update of every parameter, for one batch.

    By default the first layer computes no input gradient, as a training step needs none.
    """
    step = model_cost(model, batch, input_grad=input_grad)
    last = step.layers[-1]
    dtype = np.dtype(f"f{last.itemsize}")
    opt = sum(
        (optimizer_cost(c.in_features * c.units, dtype, optimizer, momentum, nesterov, weight_decay)
         + (optimizer_cost(c.units, dtype, optimizer, momentum, nesterov, weight_decay) if c.has_bias else Cost())
         for c in step.layers),
        Cost(),
    )
    return StepCost(step.layers, loss_cost(batch, last.units, dtype, loss), opt)


def layer_flops(model: Any, batch: int = 1) -> list[int]:
    """Forward flops of each layer for ``batch`` rows (what ``summary`` can show as a FLOPs column)."""
    return [c.forward.flops for c in model_cost(model, batch).layers]



# The host-side figures of ``step_paths_model``: assumptions, not measurements (seconds).
STEP_MODEL_ASSUMPTIONS: dict[str, float] = {
    "launch_s": 10e-6,  # CPU time of one CuPy launch (a kernel, a cuBLAS call, a reduction) from Python
    "python_step_s": 30e-6,  # fcgpu's Python per step-by-step step beyond its launches (fit's loop, layers)
    "graph_launch_s": 5e-6,  # one cudaGraphLaunch from Python
    "python_replay_s": 5e-6,  # fit's loop around a replay (host counters)
    "kernel_floor_s": 2e-6,  # least device time of one small kernel (launch latency, ramp, tail)
    "sync_read_s": 10e-6,  # mixed_float16 step by step: the host reads the overflow check once a step
    "torch_launch_s": 10e-6,  # CPU time of one PyTorch eager op (dispatcher, autograd), each launching one kernel
    "torch_python_step_s": 40e-6,  # PyTorch's step beyond its ops (autograd engine, optimizer, zero_grad)
}


@dataclass(frozen=True)
class StepPathModel:
    """The modelled time of one training step on one path (seconds): the host's time (launches and
    Python), the device's (kernel floors, plus each kernel's roofline bound of memory or compute),
    the step (the larger of the two: the host queues work while the device runs) and what dominates."""

    path: str
    launches: int
    host_s: float
    memory_s: float
    compute_s: float
    kernel_floors_s: float
    device_s: float

    @property
    def step_s(self) -> float:
        return max(self.host_s, self.device_s)

    @property
    def bound(self) -> str:
        """The largest term: 'host' (launches and Python), 'kernel floors', 'memory' or 'compute'."""
        terms = {"host": self.host_s, "kernel floors": self.kernel_floors_s, "memory": self.memory_s,
                 "compute": self.compute_s}
        return max(terms, key=terms.__getitem__)


def _step_kernels(widths: list[int], batch: int, dtype: str, optimizer: str, own: bool) -> list[tuple[Cost, bool]]:
    """The GEMMs (True) and elementwise work (False) of a training step, the GEMMs by ``own_gemm_cost``
    when ``own`` else ``gemm_cost``; 16-bit data under 'mixed_float16', float32 master weights."""
    mixed = dtype == "mixed_float16"
    data = "float16" if mixed else dtype
    s = _itemsize(data)
    g = own_gemm_cost if own else gemm_cost
    work: list[tuple[Cost, bool]] = []
    for i, (m, n) in enumerate(zip(widths[:-1], widths[1:])):
        bn = batch * n
        work += [(g(batch, m, n, data), True), (g(m, batch, n, data), True)]  # y = x @ W, dW = x.T @ dz
        if i > 0:
            work.append((g(batch, n, m, data), True))  # dx = dz @ W.T
        hidden = i < len(widths) - 2
        work.append((Cost(2 * bn if hidden else bn, s * (2 * bn + n)), False))  # bias (+ act), y written
        work.append((Cost(bn, s * (bn + n)), False))  # db = dz summed over the batch
        if hidden:
            work.append((Cost(bn, s * 3 * bn), False))  # dz = dy * act'(y)
        if mixed:
            work.append((Cost(0, (4 + s) * (m * n + n)), False))  # the float16 copy of the weights
    params = sum(m * n + n for m, n in zip(widths[:-1], widths[1:]))
    work.append((loss_cost(batch, widths[-1], data), False))
    work.append((optimizer_cost(params, "float32" if mixed else dtype, optimizer), False))
    return work


def step_paths_model(
    widths: Sequence[int],
    batch: int,
    dtype: str = "float32",
    optimizer: str = "sgd",
    device: str = "H100",
    launches: int | None = None,
    torch_launches: int | None = None,
) -> dict[str, StepPathModel]:
    """A model (not a measurement) of one training step of the MLP ``widths`` (relu hidden layers,
    softmax cross-entropy) on a named GPU (``fcgpu.backends.cupy.device_specs.NAMED_DEVICES``), on
    four paths, under the host figures of ``STEP_MODEL_ASSUMPTIONS``:

    * 'step_by_step': fcgpu today, ``launches`` device launches (default 6 a layer, as
      ``fcgpu.bench.launches`` counts them, 2 more under mixed_float16: the input's cast and the
      overflow check, whose answer the host reads each step), cuBLAS GEMMs (``gemm_cost``);
    * 'captured': one graph launch, the same kernels with fcgpu's own tiled GEMMs (``own_gemm_cost``);
    * 'torch_eager': ``torch_launches`` ops (default 7 a layer + 1: 15 for two layers), cuBLAS GEMMs;
    * 'torch_reduce_overhead': ``torch.compile(mode="reduce-overhead")``: one graph launch, the eager
      kernels.

    Each kernel takes the larger of its roofline bound and the kernel floor; float32 GEMMs run on the
    FMA lanes (no TF32), 16-bit GEMMs on the tensor cores. ``dtype``: 'float32' or 'mixed_float16'.
    """
    widths = [int(w) for w in widths] if not isinstance(widths, (str, bytes)) else []
    if len(widths) < 2 or any(w < 1 for w in widths):
        raise ValueError(f"widths: expected two or more positive ints, got {widths!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch: expected a positive int, got {batch!r}")
    if dtype not in ("float32", "mixed_float16"):
        raise ValueError(f"dtype: expected 'float32' or 'mixed_float16', got {dtype!r}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer: expected 'sgd' or 'adam', got {optimizer!r}")
    from ..backends.cupy.device_specs import NAMED_DEVICES

    if device not in NAMED_DEVICES:
        raise ValueError(f"device: expected one of {sorted(NAMED_DEVICES)}, got {device!r}")
    spec, a = NAMED_DEVICES[device], STEP_MODEL_ASSUMPTIONS
    layers = len(widths) - 1
    mixed = dtype == "mixed_float16"
    n_ops = 6 * layers + (2 if mixed else 0) if launches is None else int(launches)
    n_torch = 7 * layers + 1 if torch_launches is None else int(torch_launches)
    gemm_peak = spec["fp16_tensor"] if dtype == "mixed_float16" else spec["fp32_fma"]

    def device_side(path: str, own: bool, kernels: int, host: float) -> StepPathModel:
        memory = compute = busy = 0.0
        for c, is_gemm in _step_kernels(widths, batch, dtype, optimizer, own):
            mem, flo = c.bytes / spec["bandwidth"], c.flops / (gemm_peak if is_gemm else spec["fp32_fma"])
            memory, compute, busy = memory + mem, compute + flo, busy + max(mem, flo)
        floors = kernels * a["kernel_floor_s"]
        return StepPathModel(path, kernels, host, memory, compute, floors, floors + busy)

    return {
        "step_by_step": device_side("step_by_step", False, n_ops, n_ops * a["launch_s"] + a["python_step_s"]
                                    + (a["sync_read_s"] if mixed else 0.0)),
        "captured": device_side("captured", True, n_ops, a["graph_launch_s"] + a["python_replay_s"]),
        "torch_eager": device_side("torch_eager", False, n_torch,
                                   n_torch * a["torch_launch_s"] + a["torch_python_step_s"]),
        "torch_reduce_overhead": device_side("torch_reduce_overhead", False, n_torch,
                                             a["graph_launch_s"] + a["python_replay_s"]),
    }
