"""``ForwardContext``: how a forward runs (training or not, logits, the rows' offset, who owns x and y).

One immutable object replaces the keywords every forward used to repeat. The model's calls use the
two constants below; the training step makes its few contexts once per binding; a chain derives
the contexts of its inner layers once per context (``links``, ``variant``), never per step.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

__all__ = ["INFERENCE", "TRAINING", "ForwardContext"]


@dataclasses.dataclass(frozen=True, eq=False)
class ForwardContext:
    """What a forward needs besides x.

    training: turn on what acts only in training (dropout, noise, batch statistics).
    logits: the last layer stops before its activation (a bool; one per output for a model of
        several outputs): the path to a loss that fuses with that activation.
    row_offset: the index of x's first row in the whole batch (a data-parallel rank's share: its
        dropout masks).
    input_owned / output_private: nobody else sees x / the returned y, so a layer need not copy x
        before keeping it for backward, nor y before handing it on.
    plan: the fusion plan (``layers.fusion.Plan``) of the model this context is made for, already
        checked by its owner (the training step's binding); None: the model checks its own.
    """

    training: bool = False
    logits: Any = False
    row_offset: int = 0
    input_owned: bool = False
    output_private: bool = False
    plan: Any = None

    def variant(self, input_owned: bool, output_private: bool, logits: Any) -> "ForwardContext":
        """This context with other ownership flags and logits, and no plan (an inner layer's or
        model's), made once per combination and kept."""
        cache = self.__dict__.get("variants")
        if cache is None:
            cache = self.__dict__["variants"] = {}  # frozen: its fields, not this cache
        key = (input_owned, output_private, id(logits) if isinstance(logits, list) else logits)
        ctx = cache.get(key)
        if ctx is None:
            ctx = cache[key] = ForwardContext(self.training, logits, self.row_offset, input_owned, output_private)
        return ctx

    @functools.cached_property
    def links(self) -> tuple["ForwardContext", "ForwardContext", "ForwardContext", "ForwardContext"]:
        """(only, first, middle, last): the contexts of a chain's steps: a chain of one step gets this
        context without its plan; the first step x as the caller owns it and y private; the middle
        steps both private; the last step y as the caller wants it and the logits flag. Computed on
        the first use and kept on the context."""
        return (
            self.variant(self.input_owned, self.output_private, self.logits),
            self.variant(self.input_owned, True, False),
            self.variant(True, True, False),
            self.variant(True, self.output_private, self.logits),
        )


INFERENCE = ForwardContext()
TRAINING = ForwardContext(training=True)
