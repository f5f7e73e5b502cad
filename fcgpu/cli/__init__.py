"""Command line: ``fcgpu info | train | bench | convert`` (also ``python -m fcgpu``).

Bad input (a flag out of range, flags that contradict each other, an output path that cannot be
written, data that does not fit the model) is reported in one line with exit status 2 before any
work starts; see :mod:`fcgpu.cli.args`.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from .. import backends
from .args import CommandParser, UsageError, int_list, integer, number, report_usage_error, require_memory
from ..saving.fileio import check_output_path

MAX_SEED = 2**32 - 1  # scikit-learn's split takes seeds below 2**32


def _backend_name(text: str) -> str:
    name = text.strip().lower()
    if name not in backends.NAMES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(backends.NAMES)}, got {text!r}")
    return name


def _cmd_info(args: argparse.Namespace) -> int:
    """Print what fcgpu sees here; when the default backend cannot be had, say why (and still show the rest)."""
    info = backends.backend_info()
    print(f"fcgpu {__import__('fcgpu').__version__}")
    if info["active"] is None:
        print(f"active backend : none ({info['error']})")
    else:
        print(f"active backend : {info['active']}")
        print(f"why            : {info['reason']}")
    print(f"available      : {', '.join(info['available'])}")
    print(f"device         : {info.get('device')}")
    print(f"numpy          : {info['numpy']}")
    status = info["cupy_status"] or ""
    install = {"not installed": "not installed", "failed to import": "failed to import (see cupy status)"}
    print(f"cupy           : {info.get('cupy') or install.get(info['cupy_install'], '-')}")
    if info.get("cuda_runtime") is not None:
        print(f"CUDA runtime   : {info['cuda_runtime']}  driver: {info.get('cuda_driver')}")
    if info["active"] != "cupy":
        print(f"cupy status    : {status}")
    if info["active"] is None:
        print(f"fcgpu info: {info['error']}", file=sys.stderr)
        misspelt = (os.environ.get("FCGPU_BACKEND") or "auto").strip().lower() not in backends.NAMES
        return 2 if misspelt else 1
    return 0


def _requested_backend(args: argparse.Namespace) -> tuple[str, str]:
    """(backend name, where it came from): --backend, else FCGPU_BACKEND, else 'auto'."""
    if args.backend is not None:
        return args.backend, "--backend"
    env = (os.environ.get("FCGPU_BACKEND") or "").strip()
    if not env:
        return "auto", "the default"
    if env.lower() not in backends.NAMES:
        raise UsageError(f"FCGPU_BACKEND: expected one of {', '.join(backends.NAMES)}, got {env!r}")
    return env.lower(), "FCGPU_BACKEND"


def _check_train_args(args: argparse.Namespace) -> None:
    """What the parser cannot see alone: contradicting flags and the --save path."""
    if args.data_dir is not None and args.dataset != "fashion-mnist":
        raise UsageError(f"--data-dir: only read with --dataset fashion-mnist, got --dataset {args.dataset}")
    if args.save is not None:
        check_output_path(args.save, "--save")


def _model_bytes(widths: Sequence[int], batch_size: int, itemsize: int = 4) -> int:
    """Memory a dense model of ``widths`` takes to train: parameters with their gradients and two
    Adam moments, and a batch's activations and their gradients (twice, for reused buffers)."""
    params = sum((m + 1) * n for m, n in zip(widths[:-1], widths[1:]))
    activations = batch_size * sum(widths)
    return (4 * params + 4 * activations) * itemsize


def _cmd_train(args: argparse.Namespace) -> int:
    """``fcgpu train``; under mpiexec data parallel (fcgpu.distributed): every rank trains on its
    share of each global batch, and only rank 0 prints and saves."""
    from .. import distributed

    try:
        comm = distributed.init()  # a world of one unless an MPI launcher started this process
    except ImportError as e:
        return report_usage_error("fcgpu train", e)
    import warnings

    import numpy as np

    def one_line(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
        print(f"fcgpu train: warning: {' '.join(str(message).split())}", file=sys.stderr)

    # A diverging run is told once, by fit's own warning on one line; NumPy's overflow warnings on
    # the way there (one per operation) would only repeat it.
    with comm.quiet_unless_root(), warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.showwarning = one_line
        return _train(args, comm)


def _train(args: argparse.Namespace, comm: Any) -> int:
    import fcgpu as fc
    from ..utils import datasets as data

    digits = args.dataset == "digits"
    epochs = args.epochs if args.epochs is not None else (30 if digits else 10)
    batch_size = args.batch_size if args.batch_size is not None else (32 if digits else 128)
    hidden = args.hidden or ([64] if digits else [512])
    try:
        _check_train_args(args)
        if "bfloat16" in args.dtype:
            fc.mixed_precision.bfloat16()  # ImportError naming the package to install, before any work
        name, source = _requested_backend(args)
        backend, reason = backends.resolve_backend(name)
        fc.set_backend(backend)
        split = data.load_digits(seed=args.seed) if digits else data.load_fashion_mnist(args.data_dir)
        data.check_split(split, 10, f"--dataset {args.dataset}")
        (x_train, y_train), (x_test, y_test) = split
        widths = [x_train.shape[1], *hidden, 10]
        require_memory(_model_bytes(widths, batch_size), f"the model {'-'.join(map(str, widths))}")
    except (fc.BackendUnavailable, OSError, ImportError, ValueError) as e:
        return report_usage_error("fcgpu train", e) if comm.rank == 0 else 2  # the same on every rank
    if source == "FCGPU_BACKEND":
        reason += f", from FCGPU_BACKEND={name}"
    print(f"backend: {backend.name} ({reason})")
    fc.set_seed(args.seed)
    policy = args.dtype
    model = fc.Sequential([fc.Dense(h, activation="relu", dtype=policy) for h in hidden] + [fc.Dense(10, dtype=policy)])
    model.build((None, x_train.shape[1]))
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.Adam(lr=args.lr), metrics=["accuracy"])
    print(f"data: {args.dataset}, {len(x_train)} train / {len(x_test)} test samples")
    print(f"model: {'-'.join(map(str, widths))} ({model.count_params():,} params), {policy}, Adam lr={args.lr}, "
          f"batch size {batch_size}, {epochs} epochs")
    if comm.size > 1:
        print(f"data parallel: {fc.distributed.describe(comm)}, each with its share of every batch of {batch_size}")
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=1 if args.progress else 2)
    result = model.evaluate(x_test, y_test, return_dict=True)
    times = history.epoch_times
    print(f"test accuracy: {result['accuracy']:.4f} (loss {result['loss']:.4f})")
    if times:
        rest = times[1:] or times
        print(f"time per epoch: {sum(rest) / len(rest):.3f} s on {backend.name} (first epoch {times[0]:.3f} s)")
    if args.save:
        if history.stopped is not None:  # a diverged run replaces no file, whatever its weights
            where = f"epoch {history.stopped['epoch'] + 1}, batch {history.stopped['batch']}"
            if comm.rank == 0:
                print(f"fcgpu train: error: not saved: the loss was not finite at {where}", file=sys.stderr)
            return 1
        try:
            model.save(args.save)
        except (ValueError, OSError, fc.distributed.RootFailed) as e:  # a diverged run, a full disk
            if comm.rank == 0:
                print(f"fcgpu train: error: not saved: {' '.join(str(e).split())}", file=sys.stderr)
            return 1
        print(f"saved: {args.save}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="fcgpu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="backends, device, versions, and why 'auto' chose what it chose")
    p.set_defaults(func=_cmd_info)
    from .. import bench  # light: PyTorch and CuPy load only in its worker processes

    p = sub.add_parser("bench", help="throughput of each backend (and PyTorch, if installed) against its bare GEMMs")
    bench.add_arguments(p)
    p.set_defaults(func=bench.run_from_args)
    p = sub.add_parser("train", help="train an MLP on a real data set and report test accuracy and time per epoch")
    p.add_argument("--dataset", choices=["digits", "fashion-mnist"], default="digits")
    p.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST IDX files (with --dataset fashion-mnist)")
    p.add_argument("--backend", type=_backend_name, default=None,
                   help="numpy | cupy | auto (default: FCGPU_BACKEND if set, else auto)")
    p.add_argument("--epochs", type=integer(0, 1_000_000), default=None, help="default: 30 for digits, 10 for fashion-mnist")
    p.add_argument("--batch-size", type=integer(1, 2**24), default=None,
                   help="default: 32 for digits, 128 for fashion-mnist")
    p.add_argument("--seed", type=integer(0, MAX_SEED), default=0)
    p.add_argument("--lr", type=number(0, 1e3), default=1e-3, help="Adam's learning rate")
    p.add_argument("--hidden", type=int_list(1, 2**20), default=None,
                   help="hidden layer sizes, e.g. 256,128 (default: 64 / 512)")
    p.add_argument("--dtype", choices=["float32", "float64", "float16", "mixed_float16", "mixed_bfloat16"],
                   default="float32", help="the layers' dtype policy (mixed_*: float32 weights, half compute)")
    p.add_argument("--save", default=None, help="save the trained model to this file (checked before training)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="one line per epoch, no bar")
    p.set_defaults(func=_cmd_train)
    from ..interop import convert  # light: h5py, onnx and torch load only for the files that need them

    p = sub.add_parser("convert", help="a model between .fcgpu, .keras, .weights.h5 (with --model), .pt and .onnx files")
    convert.add_arguments(p)
    p.set_defaults(func=convert.run_from_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
