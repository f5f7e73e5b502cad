"""The functional model: ``fcgpu.Model(inputs, outputs)`` over a directed acyclic graph of layers
(Keras's functional API): chains, fan-out (a tensor used twice: its gradients add), merges and
several inputs.

The graph is fixed when the model is made: the layer calls between the inputs and the outputs in
Keras's order (``layers.symbolic.map_graph``), each a node reading tensors by slot. A graph that is
a chain runs exactly as a Sequential does (``models.sequential``'s chain: the same fusion, buffers and device
operations per step). Several inputs reach the trainer side by side in one (B, M_1 + M_2 + ...)
array, so that shuffling, batching and data parallel treat them as one; each node that reads an
input gets its own contiguous columns.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..backends import Backend, resolve_backend
from ..backends.base import Array
from ..backends.buffers import Buffers
from ..layers import Input, Layer
from ..layers.symbolic import KerasTensor, map_graph
from ..saving.serialization import deserialize, register
from .. import optimizers as optimizers_module
from ..training.metric_state import restorable
from ..training.outputs import check_one_loss_weight, compile_outputs, metrics_by_output, one_sample_weight
from .base import Model
from ..layers.context import INFERENCE, ForwardContext
from ..layers.fusion import Plan
from .sequential import backward_chain, forward_chain, infer_chain

__all__ = ["Functional"]


class _Node:
    """One layer call: the layer, the slots of the tensors it reads, the slot it writes."""

    __slots__ = ("layer", "inputs", "output")

    def __init__(self, layer: Layer, inputs: list[int], output: int) -> None:
        self.layer, self.inputs, self.output = layer, inputs, output


@register
@Model.makes_graphs
class Functional(Model):
    """A model over a graph of layers, from ``fcgpu.Input`` tensors to one output tensor.

    Args:
        inputs: an ``Input``, or a list (or dict by name) of them.
        outputs: the tensor a layer call returned (or a list of one).
        name: the model's name (default 'functional').

    Shapes: x (B, *sample) or, for several inputs, a list (or dict by input name) of them -> y (B, N).
    """

    def __init__(self, inputs: Any, outputs: Any, name: str | None = None, **kwargs: Any) -> None:
        trainable = kwargs.pop("trainable", True)
        if kwargs:
            raise TypeError(f"Model: unexpected arguments {sorted(kwargs)}")
        super().__init__(name)
        self._inputs = _input_list(inputs)
        self._outputs, self._output_keys = _output_list(outputs)
        order = map_graph(self._inputs, self._outputs)
        seen: dict[int, KerasTensor] = {}
        for t in order:
            if id(t.layer) in seen:
                raise NotImplementedError(
                    f"layer '{t.layer.name}' is called twice in this graph; fcgpu does not share a layer between calls: "
                    f"make a second layer"
                )
            seen[id(t.layer)] = t
        self._name_layers([t.layer for t in order])
        slot = {id(t): i for i, t in enumerate(order)}
        self._tensors = order
        self._layers = [t.layer for t in order]
        self.compute_layers = [layer for layer in self._layers if not layer.is_input]
        self._nodes = [_Node(t.layer, [slot[id(p)] for p in t.inputs], slot[id(t)]) for t in order if t.inputs]
        self._input_slots = [slot[id(t)] for t in self._inputs]
        self._output_slots = [slot[id(t)] for t in self._outputs]
        self._output_slot = self._output_slots[0] if len(self._outputs) == 1 else -1
        out_widths = [t.features for t in self._outputs]
        self._out_columns = list(zip(np.cumsum([0, *out_widths[:-1]]).tolist(), np.cumsum(out_widths).tolist()))
        widths = [t.features for t in self._inputs]
        self._columns = list(zip(np.cumsum([0, *widths[:-1]]).tolist(), np.cumsum(widths).tolist()))
        self._chain = self._as_chain() if len(self._outputs) == 1 else None
        self._joined_buffers = Buffers()
        for layer in self._layers:
            if isinstance(layer, Model):
                layer.nested_in = self
        if trainable is not True:
            self.trainable = trainable

    def _name_layers(self, layers: Sequence[Layer]) -> None:
        """Name unnamed layers 'dense', 'dense_1', ... in order; refuse a name given twice."""
        names: set[str] = set()
        for layer in layers:
            if layer.name_is_set:
                if layer.name in names:
                    raise ValueError(f"layers: the name '{layer.name}' is used twice in the model; names must be unique")
                names.add(layer.name)
        for layer in layers:
            if not layer.name_is_set:
                base, k, name = layer.name, 0, layer.name
                while name in names:
                    k += 1
                    name = f"{base}_{k}"
                layer.name = name
                names.add(name)

    def _as_chain(self) -> list[Layer] | None:
        """The computing layers in order where the graph is a chain from one input, else None."""
        if len(self._inputs) != 1:
            return None
        previous = self._input_slots[0]
        for node in self._nodes:
            if node.inputs != [previous] or node.layer.input_count != 1:
                return None
            previous = node.output
        return [node.layer for node in self._nodes] if previous == self._output_slot else None

    # -- structure ---------------------------------------------------------------
    @property
    def inputs(self) -> list[KerasTensor]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[KerasTensor]:
        return list(self._outputs)

    @property
    def layers(self) -> list[Layer]:
        """Every layer in Keras's order, the Inputs included (as Keras lists its InputLayers)."""
        return list(self._layers)

    @property
    def input(self) -> Any:
        return self._inputs[0] if len(self._inputs) == 1 else list(self._inputs)

    @property
    def output(self) -> Any:
        return self._outputs[0]

    @property
    def input_shape(self) -> Any:
        shapes = [t.shape for t in self._inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def built(self) -> bool:
        return all(layer.built for layer in self.compute_layers)

    def build(self, input_shape: Any = None) -> None:
        """A functional model is built when it is made; ``build`` checks the shape it is given."""
        if input_shape is not None and len(self._inputs) == 1:
            width = input_shape if isinstance(input_shape, int) else int(math.prod(tuple(input_shape)[1:]))
            if width != self.input_features:
                raise ValueError(f"input_shape: model '{self.name}' takes {self.input_features} features, got {input_shape!r}")

    @property
    def input_features(self) -> int:
        return int(sum(t.features for t in self._inputs))

    @property
    def output_features(self) -> int:
        """The output's features; for several outputs, theirs side by side (as ``forward`` returns them)."""
        return int(sum(t.features for t in self._outputs))

    @property
    def output_shape(self) -> Any:
        shapes = [t.shape for t in self._outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_layer(self) -> Layer:
        return self._outputs[0].layer

    @property
    def output_layers(self) -> list[Layer]:
        """The layer of each output, in order."""
        return [t.layer for t in self._outputs]

    @property
    def output_names(self) -> list[str]:
        """Each output's name (its layer's, as Keras's ``model.output_names``)."""
        return [t.layer.name for t in self._outputs]

    @property
    def output_keys(self) -> list[str]:
        """What compile, fit and the logs know each output by, in output order: the keys of a dict
        of outputs (as Keras 3's compile and fit take them), else the layers' names."""
        return list(self._output_keys) if self._output_keys is not None else self.output_names

    @property
    def output_columns(self) -> list[tuple[int, int]]:
        """Each output's columns in what ``forward`` returns: (start, stop)."""
        return list(self._out_columns)

    def structure_outputs(self, out: Any) -> Any:
        """``out`` (B, N_1 + N_2 + ...) as Keras returns several outputs: a list in order, or a dict by
        name where the model was made with a dict; one output as it is."""
        if len(self._outputs) == 1:
            return out
        parts = [out[:, a:b] for a, b in self._out_columns]
        if self._output_keys is not None:
            return dict(zip(self._output_keys, parts))
        return parts

    @property
    def input_dtype(self) -> np.dtype:
        dtypes = [t.dtype for t in self._inputs if t.dtype is not None]
        if dtypes:
            return dtypes[0]
        readers = [node.layer for node in self._nodes if set(node.inputs) & set(self._input_slots)]
        return readers[0].dtype if readers else np.dtype("float32")

    def input_specs(self) -> list[tuple[str, tuple[int, ...] | None]]:
        return [(t.name, t.sample_shape) for t in self._inputs]

    def flattens_input(self) -> bool:
        return True  # the graph was checked when it was made: a sample of rank > 1 reaches a Flatten

    def summary_rows(self) -> tuple[list[tuple[str, str, tuple, int, list[str]]], bool]:
        rows = []
        for t in self._tensors:
            inbound = [f"{p.layer.name}[0][0]" for p in t.inputs]
            kind = "InputLayer" if t.layer.is_input else type(t.layer).__name__
            rows.append((t.layer.name, kind, t.shape, t.layer.count_params(), inbound))
        return rows, self._chain is None

    def compile(self, optimizer: Any = "adam", loss: Any = None, metrics: Any = None, loss_weights: Any = None,
                weighted_metrics: Any = None, **keras_options: Any) -> None:
        """As ``Sequential.compile``; with several outputs, as Keras: ``loss`` one for every output, a
        list in output order or a dict by ``output_keys`` (a dict output's keys), ``loss_weights``
        likewise (the total is sum_k w_k loss_k), ``metrics`` a list with one entry (a metric or a
        list) per output or a dict; logged as 'loss', '<key>_loss' and '<key>_<metric>'."""
        if len(self._outputs) == 1:
            check_one_loss_weight(loss_weights, self.name)
            super().compile(optimizer, loss, metrics, weighted_metrics, **keras_options)
            return
        if loss is None:
            raise ValueError("loss: compile needs a loss, e.g. loss='mse' (one for every output) or one per output")
        outputs_loss, objects, weighted = compile_outputs(self.output_keys, self.output_columns, loss, loss_weights,
                                                          metrics, self._output_keys is not None, weighted_metrics)
        super().compile(optimizer, outputs_loss, objects, weighted, **keras_options)
        self.compiled_metrics_spec = metrics

    def _weights(self, sample_weight: Any, class_weight: Any, y: Any, rows: int, argument: str = "sample_weight") -> Any:
        if len(self._outputs) > 1:  # one array per output (a list, a dict by key), as Keras takes them
            sample_weight = one_sample_weight(self.loss, sample_weight, argument)
        return super()._weights(sample_weight, class_weight, y, rows, argument)

    def output_loss(self) -> tuple[Any, Any]:
        if len(self._outputs) == 1:
            return super().output_loss()
        activations = [_activation_name(layer) for layer in self.output_layers]
        return self.loss.for_outputs(activations)

    def update_metrics(self, out: Any, y: Any, on_logits: Any, sample_weight: Any = None) -> None:
        if len(self._outputs) == 1:
            super().update_metrics(out, y, on_logits, sample_weight)
            return
        if any(on_logits):  # the activation of each output whose loss took its logits
            backend = self.backend
            out = backend.copy(out)
            for flag, layer, (a, b) in zip(on_logits, self.output_layers, self._out_columns):
                if flag:
                    part = backend.copy(out[:, a:b])
                    backend.copy(backend.bias_act_forward(part, None, layer.activation.name, part), out=out[:, a:b])
        weighted = self.weighted_metric_ids
        for metric in self.metric_objects:
            metric.update(self.backend, out, y, sample_weight if id(metric) in weighted else None)

    def logs_from(self, totals: Any, rows: int) -> dict[str, Any]:
        """As the trainer's; with several outputs in Keras's order: 'loss', each output's loss (in
        output order, a dict output's in the loss dict's), then the metrics by name (evaluate's list)."""
        logs = super().logs_from(totals, rows)
        if len(self._outputs) == 1:
            return logs
        keys = self.output_keys
        losses = ["loss", *(f"{keys[k]}_loss" for k in self.loss.log_order)]
        return {**{k: logs[k] for k in losses if k in logs}, **{k: logs[k] for k in sorted(logs) if k not in losses}}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        if len(self._outputs) == 1:
            super().compile_from_config(config)
            return
        metrics, weighted = config.get("metrics") or {}, config.get("weighted_metrics") or {}
        if not set(metrics) <= set(self.output_keys):  # by layer name, as files written before the keys
            metrics = {dict(zip(self.output_names, self.output_keys)).get(n, n): e for n, e in metrics.items()}
        self.compile(loss=config["loss"], optimizer=optimizers_module.get(config["optimizer"]),
                     metrics={name: restorable(entries) for name, entries in metrics.items()} or None,
                     weighted_metrics={name: restorable(entries) for name, entries in weighted.items()} or None)

    def get_compile_config(self) -> dict[str, Any] | None:
        config = super().get_compile_config()
        if config is not None and len(self._outputs) > 1:  # the metrics by output key, as compile takes them
            config["metrics"], weighted = metrics_by_output(self.metric_objects, self.weighted_metric_ids, self.output_keys)
            if any(weighted.values()):
                config["weighted_metrics"] = weighted
        return config

    # -- config ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "class_name": "Functional",
            "name": self.name,
            "layers": [
                {"config": t.layer.get_config(), "inbound": [p.layer.name for p in t.inputs]} for t in self._tensors
            ],
            "input_layers": [t.layer.name for t in self._inputs],
            "output_layers": [t.layer.name for t in self._outputs],
            **({"output_keys": list(self._output_keys)} if self._output_keys is not None else {}),
            **({"trainable": False} if not self.trainable else {}),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Functional":
        """The model ``get_config()`` describes: every layer made from its config and called on its
        inbound tensors in order (weights drawn from the seed)."""
        tensors: dict[str, KerasTensor] = {}
        for entry in config["layers"]:
            layer_config = entry["config"]
            if isinstance(layer_config, dict) and layer_config.get("class_name") in ("Input", "InputLayer"):
                tensors[layer_config["name"]] = Input.from_config(layer_config)
                continue
            # a layer already made (a caller's converter of a Keras class, fcgpu.interop) goes in as it is
            layer = layer_config if isinstance(layer_config, Layer) else deserialize(layer_config, "config['layers']")
            inbound = [tensors[name] for name in entry["inbound"]]
            tensors[layer.name] = layer(inbound if layer.input_count != 1 else inbound[0])
        inputs = [tensors[name] for name in config["input_layers"]]
        outputs = [tensors[name] for name in config["output_layers"]]
        keys = config.get("output_keys")  # outputs made as a dict: its keys, in output order
        structured = dict(zip(keys, outputs)) if keys is not None else outputs[0] if len(outputs) == 1 else outputs
        model = cls(inputs, structured, name=config.get("name"))
        if config.get("trainable", True) is False:
            model._trainable = False  # the layers' own configs carry their flags
        return model

    def __repr__(self) -> str:
        return f"Functional(name={self.name!r}, layers={[l.name for l in self._layers]!r})"

    # -- computation -------------------------------------------------------------
    def _input_values(self, x: Any, owned: bool) -> tuple[list[Any], bool]:
        """The value of each input slot: x itself for one input, else each input's columns (contiguous)."""
        if len(self._inputs) == 1:
            return [x], owned
        backend = self.backend
        x = backend.asarray(x, self.input_dtype, "x")
        return [backend.copy(x[:, a:b]) for a, b in self._columns], True

    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y (B, N) from x (B, M) (several inputs side by side), keeping what backward needs; ``ctx``
        as ``Sequential.forward``'s. A chain runs by its fusion plan, a graph node by node."""
        self.release_loss()
        if self._chain is not None:
            plan = ctx.plan or self.chain_plan(self._chain, ctx.training)
            self.forward_plan = plan
            return forward_chain(plan, x, ctx)
        for layer in self.compute_layers:
            layer.release()
        values: list[Any] = [None] * len(self._tensors)
        parts, owned = self._input_values(x, ctx.input_owned)
        for s, part in zip(self._input_slots, parts):
            values[s] = part
        inputs = set(self._input_slots)
        on_logits = self._logits_by_slot(ctx.logits)
        single = len(self._outputs) == 1
        for node in self._nodes:
            args = [values[s] for s in node.inputs]
            last = single and node.output == self._output_slot
            node_ctx = ctx.variant(owned or not inputs.intersection(node.inputs), ctx.output_private or not last,
                                   on_logits.get(node.output, False))
            values[node.output] = node.layer.forward(args if node.layer.input_count != 1 else args[0], node_ctx)
        return values[self._output_slot] if single else self._joined(values, "y")

    def fusion_plan(self, training: bool) -> Plan | None:
        """The plan of the layers where the graph is a chain (cached, ``Model.chain_plan``), else None."""
        return None if self._chain is None else self.chain_plan(self._chain, training)

    def _logits_by_slot(self, logits: Any) -> dict[int, bool]:
        """{output slot: whether its layer stops before its activation}: ``logits`` is one bool, or
        one per output."""
        flags = list(logits) if isinstance(logits, (list, tuple)) else [bool(logits)] * len(self._outputs)
        return {s: bool(f) for s, f in zip(self._output_slots, flags) if f}

    def _joined(self, values: list[Any], key: str) -> Array:
        """The outputs side by side in one (B, N_1 + N_2 + ...) array (reused from step to step)."""
        first = values[self._output_slots[0]]
        backend = self.backend
        out = self._joined_buffers.get(backend, key, (first.shape[0], self.output_features), first.dtype)
        for s, (a, b) in zip(self._output_slots, self._out_columns):
            backend.copy(values[s], out=out[:, a:b])
        return out

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        """y (B, N) from x (B, M) without keeping anything for backward."""
        if self._chain is not None:
            return infer_chain(self._chain, x, logits=logits)
        values: list[Any] = [None] * len(self._tensors)
        parts, _ = self._input_values(x, True)
        for s, part in zip(self._input_slots, parts):
            values[s] = part
        on_logits = self._logits_by_slot(logits)
        for node in self._nodes:
            args = [values[s] for s in node.inputs]
            values[node.output] = node.layer.infer(args if node.layer.input_count != 1 else args[0],
                                                   logits=on_logits.get(node.output, False))
        if len(self._outputs) == 1:
            return values[self._output_slot]
        return self.backend.copy(self._joined(values, "y_infer"))

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx (B, M) from dy = dL/dy (B, N); sets every layer's gradients. A tensor read by several
        layers gets the sum of their gradients. ``input_grad=False`` skips the inputs' gradients;
        ``scale``: the factor the weight penalties' gradients take."""
        if self._chain is not None:
            plan = self.forward_plan or self.chain_plan(self._chain, False)
            return backward_chain(plan, dy, input_grad=input_grad, scale=scale)
        grads: list[Any] = [None] * len(self._tensors)
        if len(self._outputs) == 1:
            grads[self._output_slot] = dy
        else:  # each output's columns of dy, contiguous, added where an output also feeds another layer
            backend = self.backend
            dy = backend.asarray(dy, self.output_layer.compute_dtype, "dy")
            for s, (a, b) in zip(self._output_slots, self._out_columns):
                part = backend.copy(dy[:, a:b])
                grads[s] = part if grads[s] is None else grads[s] + part
        inputs = set(self._input_slots)
        for node in reversed(self._nodes):
            g = grads[node.output]
            wanted = input_grad or not inputs.issuperset(node.inputs)
            result = node.layer.backward(g, input_grad=wanted, scale=scale)
            if not wanted:
                continue
            for s, d in zip(node.inputs, result if node.layer.input_count != 1 else [result]):
                if s in inputs and not input_grad:
                    continue
                grads[s] = d if grads[s] is None else grads[s] + d
        if not input_grad:
            return None
        backend = self.backend
        parts = [grads[s] if grads[s] is not None else backend.zeros((dy.shape[0], t.features), self.input_dtype)
                 for s, t in zip(self._input_slots, self._inputs)]
        return parts[0] if len(parts) == 1 else backend.xp.concatenate(parts, axis=1)

    def to(self, backend: str | Backend) -> "Functional":
        """Move parameters, gradients and optimizer state to 'numpy' | 'cupy' | 'auto' (or a Backend)."""
        target, _ = resolve_backend(backend)
        self._target = target
        for layer in self.compute_layers:
            layer.to(target)
        self.move_training_state(target)
        return self


def _input_list(inputs: Any) -> list[Input]:
    given = list(inputs.values()) if isinstance(inputs, dict) else list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not given:
        raise ValueError("inputs: expected at least one fcgpu.Input")
    for t in given:
        if not isinstance(t, Input):
            raise TypeError(
                f"inputs: expected fcgpu.Input tensors (keras.Input(shape=...)), got {type(t).__name__}"
                + (f" made by layer '{t.layer.name}'" if isinstance(t, KerasTensor) else "")
            )
    if len({id(t) for t in given}) != len(given):
        raise ValueError("inputs: an Input is given twice")
    return given


def _output_list(outputs: Any) -> tuple[list[KerasTensor], list[str] | None]:
    """(the output tensors in order, their dict keys where ``outputs`` is a dict). A dict's outputs are
    in the order of its sorted keys, as Keras flattens them (its ``outputs``, and the order of its
    layers and weights, which Keras files follow)."""
    keys = None
    if isinstance(outputs, dict):
        if not all(isinstance(k, str) and k for k in outputs):
            raise TypeError(f"outputs: a dict of outputs is keyed by names (str), got keys {list(outputs)!r}")
        keys = sorted(outputs)
    given = [outputs[k] for k in keys] if keys is not None else list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if not all(isinstance(t, KerasTensor) for t in given) or not given:
        raise TypeError(f"outputs: expected the tensor a layer call returned, got {outputs!r}")
    if len({id(t) for t in given}) != len(given):
        raise ValueError("outputs: a tensor is given twice")
    return given, keys


def _activation_name(layer: Layer) -> str:
    """The activation an output layer ends with (Dense, Activation), 'linear' for other layers."""
    activation = layer.activation
    return activation.name if activation is not None else "linear"
