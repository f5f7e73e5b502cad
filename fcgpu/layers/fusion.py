"""The fusion planner: which neighbouring layers of a chain run as one pass, decided once per layout.

``plan_chain(layers, training)`` turns a chain of layers into a ``Plan``: a tuple of ``Group``s,
each one or more neighbouring layers run by one forward callable and one backward callable. The
chain functions (``models.sequential``) only execute a plan: they call each group's ``forward``
and ``backward`` and know nothing of what a group holds, so a later kind of group (a whole small
MLP run by one fused kernel or one captured CUDA graph) needs a new branch here, not there.

Layers declare what they can fuse as data and never name each other's classes:

- ``layer.epilogue_kinds``: the kinds of following layer the layer can run inside its own pass,
  after its main operation (Dense: ``MASK``, when its activation is elementwise and its backward
  reads y);
- ``layer.fusion_kind(training)``: the kind a layer is to the layer before it, or None (Dropout:
  ``MASK`` when active, i.e. training with rate > 0);
- ``layer.fusion_settings``: the names of the attributes those two read (Dense's ``activation``,
  Dropout's ``rate``); a plan watches their values, and a changed one makes it stale.

In a training plan, a group whose first layer ``takes_gradient_epilogue`` after a group whose first
layer ``gives_gradient_epilogue`` (Dense after Dense) backwards with ``prev=`` that layer: where the
backend runs GEMM epilogues (a captured step on real CuPy) its input-gradient GEMM applies the
previous layer's Dropout mask and act' and hands it its dz, one elementwise pass fewer.

A layer that takes a follower of kind ``MASK`` calls ``follower.fused_mask(shape, row_offset)`` (the
follower's output buffer and its mask's Philox key, with the follower's step counter advanced) and
applies the mask, and its gradient in backward, in its own kernels: the follower's own forward and
backward are not called. The planner alone decides; ``fcgpu.config.set_fusion(False)`` makes every
group a single layer.

Plans are built and cached by the model (``Model.chain_plan``, one per training flag), and the
training step takes the training plan at binding (``training.step.StepBinding``), whose checks of
the layout also cover the plan's watched settings: no step plans again or checks its plan twice.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

from ..config import settings

__all__ = ["MASK", "Group", "Plan", "plan_chain"]

#: A layer applying a per-element mask keyed by (row, column) that needs neither x nor y in
#: backward (Dropout): y = x * mask / keep, dx = dy * mask / keep.
MASK = "elementwise_mask"


@dataclasses.dataclass(frozen=True, eq=False)
class Group:
    """One step of a plan: ``layers`` run by one pass.

    kind: 'layer' (one layer, its own forward and backward) or 'epilogue' (the first layer runs the
        others inside its own pass; its backward applies their gradients too).
    forward(x, ctx) -> y: the group's output, as the last of its layers gives it.
    backward(dy, input_grad=..., scale=...) -> dx: the group's input gradient, every layer's
        parameter gradients set (``scale``: the factor the weight penalties' gradients take).
    """

    kind: str
    layers: tuple[Any, ...]
    forward: Callable[..., Any]
    backward: Callable[..., Any]


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """The groups of a chain, for one training flag, with what they were decided from.

    layers: the chain the plan is for (compared by identity); enabled: the fusion switch when it was
    made; watch: (a layer's ``vars``, attribute, value) of every setting the planner read and of
    the methods it bound.
    """

    layers: tuple[Any, ...]
    groups: tuple[Group, ...]
    training: bool
    enabled: bool
    watch: tuple[tuple[dict, str, Any], ...]

    def current(self, layers: Sequence[Any]) -> bool:
        """Whether the plan still holds for ``layers``: the same layers, switch and settings."""
        if self.enabled is not settings.fusion or len(layers) != len(self.layers):
            return False
        if any(a is not b for a, b in zip(layers, self.layers)):
            return False
        return all(namespace.get(key) is value for namespace, key, value in self.watch)


def plan_chain(layers: Sequence[Any], training: bool) -> Plan:
    """The plan of ``layers`` (a chain, in order) for a forward with ``training`` as given."""
    enabled = settings.fusion
    groups, i, n = [], 0, len(layers)
    while i < n:
        layer = layers[i]
        if enabled and i + 1 < n:
            follower = layers[i + 1]
            kind = follower.fusion_kind(training)
            if kind is not None and kind in layer.epilogue_kinds:
                groups.append(Group("epilogue", (layer, follower), functools.partial(layer.forward_with, (follower,)),
                                    _backward(layer, groups, training)))
                i += 2
                continue
        groups.append(Group("layer", (layer,), layer.forward, _backward(layer, groups, training and enabled)))
        i += 1
    # The settings the planner read, and the methods it bound (a method replaced on an instance, as
    # a test's probe does, makes the plan stale rather than bypassed).
    keys = ("forward", "forward_with", "backward")
    watch = tuple((vars(layer), key, vars(layer).get(key)) for layer in layers for key in (*layer.fusion_settings, *keys))
    return Plan(tuple(layers), tuple(groups), bool(training), enabled, watch)


def _backward(layer: Any, groups: list[Group], training: bool) -> Callable[..., Any]:
    """``layer``'s backward, bound to the previous group's first layer (``prev=``) where a training
    plan lets it run that layer's gradient epilogue."""
    prev = groups[-1].layers[0] if groups else None
    if training and prev is not None and layer.takes_gradient_epilogue and prev.gives_gradient_epilogue:
        return functools.partial(layer.backward, prev=prev)
    return layer.backward
