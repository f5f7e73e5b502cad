"""The trainer's side of metrics: compile's ``metrics`` resolved into metric objects, their states
laid out as consecutive views of one float64 device array, and the logs read from a host copy of it.

The accumulator of a step or an evaluation is [loss x rows, the loss's fused correct count, then
each metric's state (``Metric.state_size``) in compile order]; fit's epoch array holds the same
states, then two sums per batch. Every entry is a sum over samples, so copies from several ranks add.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

from .. import metrics as metrics_module
from ..backends import Backend
from ..backends.base import Array

__all__ = ["resolve", "restorable", "state_size", "bind", "logs"]


def resolve(metrics: Any, model_name: str) -> list[metrics_module.Metric]:
    """The metrics ``compile`` was given (a list, one metric, or a dict {output name: metrics}; a
    model has one output, so one entry), resolved by ``fcgpu.metrics.get``, duplicates by name dropped."""
    if isinstance(metrics, dict):
        if len(metrics) > 1:
            raise ValueError(f"metrics: a dict maps output names to metrics, and model '{model_name}' has one "
                             f"output; got entries for {sorted(metrics)}")
        metrics = next(iter(metrics.values()), None)
    if metrics is None:
        return []
    if not isinstance(metrics, (list, tuple)):
        metrics = [metrics]
    objects: list[metrics_module.Metric] = []
    for m in metrics:
        metric = metrics_module.get(m)
        if all(metric.name != o.name for o in objects):
            objects.append(metric)
    return objects


def restorable(configs: Sequence[Any] | None) -> list[Any]:
    """The entries of a stored compile config's metrics that ``get`` rebuilds; the others (functions,
    ``Metric`` subclasses: code is not stored) are left out with a warning naming them."""
    kept, dropped = [], []
    for m in configs or []:
        (kept if metrics_module.restorable(m) else dropped).append(m)
    if dropped:
        names = ", ".join(repr(m.get("name")) for m in dropped)
        warnings.warn(f"compile_from_config: the metrics {names} are code (functions or Metric subclasses), which "
                      f"is not stored; the model is compiled without them", UserWarning, stacklevel=3)
    return kept


def state_size(objects: Sequence[metrics_module.Metric], outputs: int) -> int:
    """Entries of state of the metrics not fused with the loss."""
    return sum(m.state_size(outputs) for m in objects if not m.fused_with_loss)


def bind(objects: Sequence[metrics_module.Metric], state: Array, backend: Backend, outputs: int) -> None:
    """Each metric not fused with the loss bound to its consecutive view of ``state`` (zeroed by the
    caller: Keras's reset at the start of an epoch or an evaluation); a subclass's own
    ``reset_state`` then runs."""
    offset = 0
    for metric in objects:
        if not metric.fused_with_loss:
            size = metric.state_size(outputs)
            metric.bind(state[offset : offset + size], backend, outputs)
            if metric.custom_reset():
                metric.reset_state()
            offset += size


def logs(objects: Sequence[metrics_module.Metric], totals: Any, rows: int, outputs: int) -> dict[str, Any]:
    """{'loss': ..., metric name: ...} from a host copy of the accumulator, without device work."""
    rows = max(rows, 1)
    out: dict[str, Any] = {"loss": float(totals[0] / rows)}
    offset = 2
    for metric in objects:
        if metric.fused_with_loss:
            out[metric.name] = float(totals[1] / rows)
        else:
            size = metric.state_size(outputs)
            out[metric.name] = metric.result_from(totals[offset : offset + size])
            offset += size
    return out
