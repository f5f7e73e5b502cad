"""Command line: ``fcgpu info | train | bench`` (also ``python -m fcgpu``)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import backends


def _positive_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _widths(text: str) -> list[int]:
    try:
        return [_positive_int(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 256,128, got {text!r}") from None


def _cmd_info(args: argparse.Namespace) -> int:
    info = backends.backend_info()
    print(f"fcgpu {__import__('fcgpu').__version__}")
    print(f"active backend : {info['active']}")
    print(f"why            : {info['reason']}")
    print(f"available      : {', '.join(info['available'])}")
    print(f"device         : {info.get('device')}")
    print(f"numpy          : {info['numpy']}")
    print(f"cupy           : {info.get('cupy') or 'not installed'}")
    if info.get("cuda_runtime") is not None:
        print(f"CUDA runtime   : {info['cuda_runtime']}  driver: {info.get('cuda_driver')}")
    if info["active"] != "cupy":
        print(f"cupy status    : {info['cupy_status']}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import fcgpu as fc
    from . import data

    digits = args.dataset == "digits"
    epochs = args.epochs if args.epochs is not None else (30 if digits else 10)
    batch_size = args.batch_size if args.batch_size is not None else (32 if digits else 128)
    try:
        backend, reason = backends.resolve_backend(args.backend)
        fc.set_backend(backend)
        (x_train, y_train), (x_test, y_test) = (
            data.load_digits(seed=args.seed) if digits else data.load_fashion_mnist(args.data_dir)
        )
    except (fc.BackendUnavailable, FileNotFoundError, ImportError, ValueError) as e:
        print(f"fcgpu train: {e}", file=sys.stderr)
        return 2
    print(f"backend: {backend.name} ({reason})")
    fc.set_seed(args.seed)
    hidden = args.hidden or ([64] if digits else [512])
    model = fc.Sequential([fc.Dense(h, activation="relu") for h in hidden] + [fc.Dense(10)])
    model.build((None, x_train.shape[1]))
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.Adam(lr=args.lr), metrics=["accuracy"])
    sizes = "-".join(str(n) for n in [x_train.shape[1], *hidden, 10])
    print(f"data: {args.dataset}, {len(x_train)} train / {len(x_test)} test samples")
    print(f"model: {sizes} ({model.count_params():,} params), Adam lr={args.lr}, batch size {batch_size}, {epochs} epochs")
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=1 if args.progress else 2)
    result = model.evaluate(x_test, y_test)
    times = history.epoch_times
    print(f"test accuracy: {result['accuracy']:.4f} (loss {result['loss']:.4f})")
    if times:
        rest = times[1:] or times
        print(f"time per epoch: {sum(rest) / len(rest):.3f} s on {backend.name} (first epoch {times[0]:.3f} s)")
    if args.save:
        model.save(args.save)
        print(f"saved: {args.save}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcgpu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="backends, device, versions, and why 'auto' chose what it chose")
    p.set_defaults(func=_cmd_info)
    from . import bench  # light: PyTorch and CuPy load only in its worker processes

    p = sub.add_parser("bench", help="throughput of each backend (and PyTorch, if installed) against its bare GEMMs")
    bench.add_arguments(p)
    p.set_defaults(func=bench.run_from_args)
    p = sub.add_parser("train", help="train an MLP on a real data set and report test accuracy and time per epoch")
    p.add_argument("--dataset", choices=["digits", "fashion-mnist"], default="digits")
    p.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--backend", default="auto", help="numpy | cupy | auto (default)")
    p.add_argument("--epochs", type=_non_negative_int, default=None, help="default: 30 for digits, 10 for fashion-mnist")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="default: 32 for digits, 128 for fashion-mnist")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--hidden", type=_widths, default=None, help="hidden layer sizes, e.g. 256,128 (default: 64 / 512)")
    p.add_argument("--save", default=None, help="save the trained model to this file")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="one line per epoch, no bar")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
