"""Command line: ``fcgpu info | train | bench`` (also ``python -m fcgpu``)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import backends


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcgpu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="backends, device, versions, and why 'auto' chose what it chose")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
