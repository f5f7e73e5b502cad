"""``fcgpu convert IN OUT``: one model between fcgpu's, Keras's, ONNX's and PyTorch's files.

The format is the file name's ending: ``.fcgpu`` (fcgpu's own), ``.keras`` (Keras 3), ``.weights.h5``
(Keras 3 weights: the architecture comes from ``--model``), ``.pt``/``.pth`` (a PyTorch state dict of
an nn.Sequential of nn.Linear, written with ``torch.save`` of tensors only and read with
``weights_only=True``, so no pickled code runs; the architecture from ``--model``) and ``.onnx``
(written only). Every file is checked as its reader checks it; every output is written atomically.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from ..saving.archive import ModelFileError
from ..saving.fileio import atomic_write, check_output_path

__all__ = ["FORMATS", "add_arguments", "convert", "run_from_args"]

FORMATS = {".fcgpu": "fcgpu", ".keras": "keras", ".weights.h5": "weights", ".pt": "torch", ".pth": "torch",
           ".onnx": "onnx"}
_NEEDS_ARCHITECTURE = ("weights", "torch")


def file_format(path: str, argument: str) -> str:
    """The format of ``path`` by its ending, or a ValueError listing the endings."""
    for ending, kind in sorted(FORMATS.items(), key=lambda e: -len(e[0])):
        if str(path).lower().endswith(ending):
            return kind
    raise ValueError(f"{argument}: {path!r} has none of the endings {', '.join(FORMATS)}")


def _torch() -> Any:
    try:
        import torch  # noqa: PLC0415 (optional: only for .pt files)
    except ImportError:
        raise ImportError("PyTorch state dicts (.pt) need torch: pip install torch") from None
    return torch


def _read(path: str, kind: str, model_path: str | None) -> Any:
    from ..saving import load_model

    if kind == "onnx":
        raise ValueError(f"IN: {path!r}: ONNX files are written, not read")
    if kind in _NEEDS_ARCHITECTURE:
        if model_path is None:
            raise ValueError(f"IN: {path!r} holds weights only: give the architecture with --model FILE (.fcgpu or .keras)")
        if file_format(model_path, "--model") not in ("fcgpu", "keras"):
            raise ValueError(f"--model: expected a .fcgpu or .keras file, got {model_path!r}")
        model = load_model(model_path, compile=False)
        if kind == "weights":
            model.load_weights(path)
        else:
            if not os.path.exists(path):
                raise FileNotFoundError(f"IN: no file at {path!r}")
            try:
                state = _torch().load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # an unpickler refusing code, a damaged zip, ...
                raise ModelFileError(f"IN: {path!r} is not a state dict of tensors ({type(e).__name__}: {e})") from None
            from .torch_state import import_torch_state_dict

            try:
                import_torch_state_dict(model, state)
            except (TypeError, ValueError) as e:
                raise ModelFileError(f"IN: {path!r} does not fit the model of {model_path!r}: {e}") from None
        return model
    if model_path is not None:
        raise ValueError(f"--model: {path!r} holds its own architecture; --model is for .weights.h5 and .pt inputs")
    return load_model(path)


def _write(model: Any, path: str, kind: str, opset: int | None) -> None:
    if kind in ("fcgpu", "keras"):
        model.save(path)
    elif kind == "weights":
        model.save_weights(path)
    elif kind == "onnx":
        from .onnx_export import export_onnx

        export_onnx(model, path, opset=opset)
    else:
        torch = _torch()
        from .torch_state import export_torch_state_dict

        state = {k: torch.from_numpy(v) for k, v in export_torch_state_dict(model).items()}
        check_output_path(path, "OUT", probe=False)
        with atomic_write(path, "OUT") as f:
            torch.save(state, f)


def convert(src: str, dst: str, model_path: str | None = None, opset: int | None = None) -> Any:
    """Read ``src`` and write ``dst``, each in the format its name ends in; returns the model."""
    src_kind, dst_kind = file_format(src, "IN"), file_format(dst, "OUT")
    if opset is not None and dst_kind != "onnx":
        raise ValueError("--opset: only for an .onnx output")
    check_output_path(dst, "OUT")
    model = _read(src, src_kind, model_path)
    _write(model, dst, dst_kind, opset)
    return model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help=f"the model to read ({', '.join(e for e in FORMATS if e != '.onnx')})")
    p.add_argument("output", metavar="OUT", help=f"the file to write ({', '.join(FORMATS)})")
    p.add_argument("--model", default=None, help="the architecture (.fcgpu or .keras) for a .weights.h5 or .pt input")
    p.add_argument("--opset", type=int, default=None, help="the ONNX opset of an .onnx output (default 17)")


def run_from_args(args: argparse.Namespace) -> int:
    from ..cli.args import report_usage_error

    try:
        model = convert(args.input, args.output, args.model, args.opset)
    except (OSError, ImportError, ValueError) as e:  # ModelFileError is a ValueError
        return report_usage_error("fcgpu convert", e)
    print(f"{args.input} -> {args.output} ({model.name}: {len(model.layers)} layers, {model.count_params():,} params)")
    return 0
