"""The training step, read top to bottom (``accumulate_batch``), and what it is bound to (``StepBinding``).

One step: forward -> the loss's fused step (the loss scale an argument) -> backward -> the
optimizer's update of the flat buffers it is bound to. Data parallel, the optimizer updating is the
all-reduce wrapper around the compiled one (``fcgpu.distributed.AllReduceOptimizer``, made by
``all_reducing`` when the world has more than one rank): its update averages the gradients over the
ranks first; in a world of one it is the compiled optimizer, and the step is the same as without
data parallelism. Everything the step needs that does not change from one step to the next (the
loss and whether it takes logits, the fused correct count, the layers with weight penalties, the
flat parameters, the optimizer bound to them, the loss scale's device state, the fusion plan and the
forward's contexts) is decided once, when the step is bound, and bound again only when the layout
changes: a layer rebuilt, renamed, added, popped or moved, a setting the fusion plan read or the
fusion switch, a new loss, optimizer or metrics (``compile``), or another world. ``Trainer`` (and so
the model class) inherits ``TrainingStep``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backends.base import Array, Scalar
from ..config import settings
from ..distributed.allreduce import AllReduceOptimizer, all_reducing
from ..distributed.communicator import World
from ..layers.context import ForwardContext
from ..optimizers import LossScaleOptimizer, Optimizer
from ..distributed.data_parallel import train_global_batch

__all__ = ["StepBinding", "TrainingStep", "layout_watch"]


class StepBinding:
    """What the step is bound to, for one layout of one compiled model.

    ``watch`` holds (namespace, key, value) for every place a layer keeps one of its parameters,
    gradients, half copies or its name: a layer rebuilt, moved or renamed replaces one of them,
    which ``current`` sees without calling into the layer.
    """

    def __init__(self, model: Any) -> None:
        self.layers = list(model.compute_layers)  # a copy: a Sequential's list changes in place
        self.source_loss, self.optimizer, self.metrics = model.loss, model.optimizer, model.metric_objects
        self.flat = flat = model.flat_parameters()
        self.backend = flat.backend
        self.loss, self.on_logits = model.output_loss()
        self.count = any(m.fused_with_loss for m in self.metrics)
        self.other_metrics = len(self.metrics) > self.count
        self.columns = model.metric_columns()
        # What updates: the compiled optimizer, or on N ranks the all-reduce around it.
        self.world = World.current
        self.update = update = all_reducing(self.optimizer, self.world)
        self.all_reduce = update if isinstance(update, AllReduceOptimizer) else None  # takes each step's share
        core = update.inner if self.all_reduce is not None else update
        # False: parameters with different step counts, or a subclass's own step (called as it is)
        own_step = type(core).step not in (Optimizer.step, LossScaleOptimizer.step)
        self.flat_update = not own_step and update.bind(flat)
        self.scale = update.loss_scale_state(flat)  # mixed_float16: the scaler's device state
        self.regularized = [layer for layer in self.layers if layer.regularization_loss(1.0) is not None]
        # backward's scale: a penalty's gradient is scaled as the loss's is (its loss scale)
        self.penalty_scale = 1.0 if self.scale is None else self.scale
        # The fusion plan of a chain's training forward (None for a graph), and its settings watched
        # with the layout: the step's forward takes it in its context and checks nothing more.
        self.plan = model.fusion_plan(True)
        self.fusion = settings.fusion
        self.watch = layout_watch(self.layers)
        if self.plan is not None:
            self.watch += self.plan.watch
        self.contexts: dict[int, ForwardContext] = {}

    def context(self, row_offset: int) -> ForwardContext:
        """The training forward's context for rows from ``row_offset``: made once, then kept."""
        ctx = self.contexts.get(row_offset)
        if ctx is None:
            ctx = self.contexts[row_offset] = ForwardContext(
                training=True, logits=self.on_logits, row_offset=row_offset, input_owned=True, output_private=True,
                plan=self.plan,
            )
        return ctx

    def current(self, model: Any) -> bool:
        """Whether ``model`` still has this layout, loss, optimizer and metrics (no call into a layer)."""
        if model.loss is not self.source_loss or model.optimizer is not self.optimizer or World.current is not self.world:
            return False
        if model.metric_objects is not self.metrics or (self.flat_update and self.update.bound_flat is not self.flat):
            return False
        if model.compute_layers != self.layers or self.fusion is not settings.fusion:
            return False
        for namespace, key, value in self.watch:
            if namespace.get(key) is not value:
                return False
        return True


def layout_watch(layers: Any) -> list[tuple[dict, str, Any]]:
    """(namespace, key, value) for every place ``layers`` (and the layers inside them) keep a
    parameter, gradient, half copy or name: one replaced (rebuilt, moved, renamed) shows as
    ``namespace.get(key) is not value``."""
    return [entry for layer in _leaves(layers) for entry in _places(layer)]


def _leaves(layers: Any) -> list[Any]:
    """The layers and, inside a model used as a layer, its own layers (``Layer.sublayers``)."""
    out = []
    for layer in layers:
        out.append(layer)
        out += _leaves(layer.sublayers())
    return out


def _places(layer: Any) -> list[tuple[dict, str, Any]]:
    """(namespace, key, value) for each attribute of ``layer`` (or dict attribute's entry) holding
    one of its parameters, gradients or half copies, or its name."""
    arrays = {id(a) for _, p, g in layer.parameters() for a in (p, g) if a is not None}
    arrays |= {id(h) for h in layer.half_copies().values()}
    name = layer.name
    namespace = vars(layer)
    places = [(namespace, "_trainable", namespace.get("_trainable"))]  # frozen or unfrozen since
    for key, value in namespace.items():
        if id(value) in arrays or (isinstance(value, str) and value == name):
            places.append((namespace, key, value))
        elif isinstance(value, dict):
            inner = [(value, k, v) for k, v in value.items() if id(v) in arrays]
            if inner:
                places += [(namespace, key, value), *inner]
    return places


class TrainingStep:
    """The step as methods of the model (through ``Trainer``): ``accumulate_batch``, ``train_batch``
    and ``release_loss``. What they use of the model: ``forward``, ``backward``, ``loss``,
    ``optimizer``, ``metric_objects``, ``layers``, ``flat_parameters``, ``output_loss``,
    ``metric_columns``, ``update_metrics``, ``bind_metrics`` and ``add_regularization``."""

    _step_binding: StepBinding | None = None

    def bound_step(self) -> StepBinding:
        """The step's binding, made again where the layout, loss, optimizer or metrics changed."""
        binding = self._step_binding
        if binding is None or not binding.current(self):
            binding = self._step_binding = StepBinding(self)
        return binding

    def accumulate_batch(
        self, x: Array, y: Array, acc: Array | None = None, share: float | None = None, row_offset: int = 0,
        *, sample_weight: Array | None = None,
    ) -> Array:
        """The step ``fit`` takes: forward, the loss's fused step, backward (no input gradient) and
        one optimizer update, adding into ``acc`` (float64, of the model's backend, one column per
        ``metric_columns``; a new one where None) the batch's loss x rows, correct rows and other
        metrics' sums; returns ``acc``. On CuPy a Dense-ReLU-Dense step with 'accuracy' is 12 device
        operations. Data parallel: (x, y) are this rank's rows, ``share`` their part of the global
        batch's rows (the weight of this rank's gradients in the all-reduce optimizer's average;
        None: an equal share), and ``row_offset`` the index of x's first row in the global batch.
        ``sample_weight``: the rows' weights (a device array, or None), read by the loss's fused step."""
        step = self._step_binding
        if step is None or not step.current(self):
            step = self.bound_step()
        if acc is None:
            acc = step.backend.zeros((step.columns,), np.float64)
            if step.other_metrics:
                self.bind_metrics(acc[2:])
        logits = self.forward(x, step.contexts.get(row_offset) or step.context(row_offset))
        if step.other_metrics and share != 0.0:  # the metrics not fused with the loss, into their bound
            # state (``bind_metrics``), weighted by the rows' weights; share 0: a spare row, not data
            self.update_metrics(logits, y, step.on_logits, sample_weight)
        grad = step.loss.step(step.backend, logits, y, acc, step.count, scale=step.scale, sample_weight=sample_weight)
        if step.regularized:  # the penalties into the loss column (their gradients: in backward)
            self.add_regularization(acc, x.shape[0])
        del logits
        self.backward(grad, input_grad=False, scale=step.penalty_scale)
        del grad
        if step.all_reduce is not None:  # data parallel: this rank's weight in the gradients' average
            step.all_reduce.share = share
        if step.flat_update:  # the update (data parallel: the all-reduce first, in the optimizer's)
            step.update.apply()
        else:  # parameters with different step counts: one update each
            step.update.step(self)
        return acc

    def train_batch(self, x: Array, y: Array) -> tuple[Scalar, Scalar]:
        """One forward/backward/update on arrays from ``prepare_data`` (or slices of them), unchecked:
        returns (mean loss, correct count), both left on the device so that a step does not wait."""
        if World.current.size > 1:  # (x, y): the global batch, the same on every rank
            acc = self.backend.zeros((self.metric_columns(),), np.float64)
            if acc.shape[0] > 2:
                self.bind_metrics(acc[2:])
            return tuple(train_global_batch(self, x, y, acc)[:2] / (x.shape[0], 1))
        acc = self.accumulate_batch(x, y)
        return acc[0] / x.shape[0], acc[1]

    def release_loss(self) -> None:
        """Drop what the loss kept of the last standalone ``forward`` (its predictions are a layer's
        output buffer); the training step keeps nothing."""
        loss = self.loss
        if loss is not None and loss.keeps_batch:
            loss.release()
