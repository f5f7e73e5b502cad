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

In a training plan, two or more Dense layers in a row (no active Dropout between them) form one
'mlp' group where their backend runs the chain's forward as one kernel (``fuses_chain``: real CuPy,
every width <= 128, ``backends/cupy/fused_mlp.py``): in a captured step its forward is that kernel,
each layer's y (and z) kept for backward; anywhere else the group runs its layers one by one.

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

    kind: 'layer' (one layer, its own forward and backward), 'epilogue' (the first layer runs the
        others inside its own pass; its backward applies their gradients too) or 'mlp' (a chain of
        Dense layers whose training forward is one fused kernel where the backend runs it).
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
    if enabled and training:
        groups = _chains(groups)
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


def _chains(groups: list[Group]) -> list[Group]:
    """Runs of two or more single-layer groups of layers that take part in a fused chain forward
    (``chain_member``, Dense), where their backend runs the chain as one kernel (``fuses_chain``:
    real CuPy, widths <= 128), as one 'mlp' group each."""
    out: list[Group] = []
    run: list[Group] = []
    for group in [*groups, None]:
        if group is not None and group.kind == "layer" and group.layers[0].takes_gradient_epilogue:
            run.append(group)
            continue
        layers = [g.layers[0] for g in run]
        widths = [layers[0].in_features, *(layer.units for layer in layers)] if layers else []
        if len(run) >= 2 and len({layer.compute_dtype for layer in layers}) == 1 and layers[0].backend.fuses_chain(
                widths, [layer.activation.name for layer in layers], layers[0].compute_dtype):
            out.append(_mlp_group(layers, run[0].backward))
        else:
            out += run
        run = []
        if group is not None:
            out.append(group)
    return out


def _mlp_group(layers: list[Any], first_backward: Callable[..., Any]) -> Group:
    """A chain of Dense layers whose training forward is one fused kernel where the backend has GEMM
    epilogues (a captured step on real CuPy) and the step owns its arrays, else layer by layer;
    backward layer by layer, each taking the one before as its gradient epilogue's ``prev``."""
    last = len(layers) - 1

    def forward(x: Any, ctx: Any) -> Any:
        first = layers[0]
        backend = first.backend
        if not (backend.gemm_epilogues and ctx.input_owned and ctx.output_private and x.ndim == 2):
            only, first_ctx, middle, last_ctx = ctx.links
            h = x
            for i, layer in enumerate(layers):
                h = layer.forward(h, first_ctx if i == 0 else last_ctx if i == last else middle)
            return h
        h, activations, keep, weights, biases = x, [], [], [], []
        for i, layer in enumerate(layers):
            act, y, z = layer.chain_member(h, ctx.logits and i == last)
            kernel, bias = layer.compute_weights()
            activations.append(act)
            weights.append(kernel)
            biases.append(bias)
            keep.append((None if i == last else y, z))
            h = y
        return backend.fused_chain_forward(x, weights, biases, activations, h, keep)

    def backward(dy: Any, input_grad: bool = True, scale: Any = 1.0) -> Any:
        g = dy
        for i in range(last, 0, -1):
            g = layers[i].backward(g, input_grad=True, scale=scale, prev=layers[i - 1])
        return first_backward(g, input_grad=input_grad, scale=scale)

    return Group("mlp", tuple(layers), forward, backward)
