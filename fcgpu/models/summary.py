"""``model.summary()``: Keras's table of layers, output shapes and parameter counts.

Rows come from the model (``summary_rows``: name, class, output shape, parameters, and for a
functional graph the layers each is connected to); a graph that is not a chain gets Keras's
fourth column, "Connected to", and the Inputs of a functional model get rows of their own.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ..backends.validation import positive_int

__all__ = ["print_summary"]


def print_summary(model: Any, line_length: int | None, print_fn: Callable[[str], Any] | None) -> None:
    rows, connected = model.summary_rows()
    line_length = (98 if connected else 65) if line_length is None else positive_int(line_length, "line_length")
    if line_length < 20:
        raise ValueError(f"line_length: expected at least 20 characters, got {line_length}")
    if print_fn is not None and not callable(print_fn):
        raise TypeError(f"print_fn: expected a callable taking a string, got {type(print_fn).__name__}")
    print_fn = print_fn or print
    fractions = (0.3, 0.6, 0.7, 1.0) if connected else (0.45, 0.85, 1.0)
    positions = [int(line_length * f) for f in fractions]

    def row(fields: Sequence[Any]) -> str:
        line = ""
        for field, end in zip(fields, positions):
            if line:
                line = line[:-1] + " "
            line = (line + str(field))[:end]
            line += " " * (end - len(line))
        return line

    header = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if connected else [])
    print_fn(f'Model: "{model.name}"')
    print_fn("_" * line_length)
    print_fn(row(header))
    print_fn("=" * line_length)
    for i, (name, kind, shape, params, inbound) in enumerate(rows):
        fields = [f"{name} ({kind})", str(shape), params]
        if connected:
            fields.append(", ".join(inbound) if inbound else "-")
        print_fn(row(fields))
        print_fn("=" * line_length if i == len(rows) - 1 else "_" * line_length)
    total = model.count_params()
    trainable = sum(int(w.size) for w in model.trainable_weights)
    print_fn(f"Total params: {total:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {total - trainable:,}")
    print_fn("_" * line_length)
