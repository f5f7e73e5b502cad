"""Command-line input checking shared by ``fcgpu train`` and ``fcgpu bench``.

Every value is checked before any work starts: ``CommandParser`` reports a bad argument in one
line and exits with status 2 (no usage dump, never a traceback); the argument types here refuse
what is not a finite number in range, naming the range; ``UsageError`` is the same kind of
error found after parsing (flags that contradict each other, an output path that cannot be
written, sizes that would not fit in memory), which the commands print in the same one-line form.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from typing import Callable, NoReturn, Sequence

__all__ = [
    "CommandParser",
    "UsageError",
    "available_memory",
    "format_bytes",
    "integer",
    "int_list",
    "name_list",
    "number",
    "report_usage_error",
    "require_memory",
]

_INT = re.compile(r"[+]?[0-9]{1,30}")


class UsageError(ValueError):
    """Bad command-line input found after parsing; the command exits with status 2."""


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        from ..distributed import launcher_rank

        if launcher_rank() not in (None, 0):  # under mpiexec every rank fails alike: rank 0 says why
            self.exit(2)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def report_usage_error(prog: str, error: Exception) -> int:
    """Print ``error`` as ``prog: error: ...`` on one line of stderr; the exit status 2."""
    text = " ".join(str(error).split())
    print(f"{prog}: error: {text}", file=sys.stderr)
    return 2


def integer(lo: int, hi: int) -> Callable[[str], int]:
    """An argument type: a decimal integer in [lo, hi]."""

    def parse(text: str) -> int:
        value = int(text) if _INT.fullmatch(text.strip()) else None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {text!r}")
        return value

    return parse


def number(lo: float, hi: float, *, lo_open: bool = True) -> Callable[[str], float]:
    """An argument type: a finite number in (lo, hi] (or [lo, hi] with ``lo_open=False``)."""
    bracket = "(" if lo_open else "["

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value > lo if lo_open else value >= lo
        if not math.isfinite(value) or not above or value > hi:
            raise argparse.ArgumentTypeError(f"expected a finite number in {bracket}{lo:g}, {hi:g}], got {text!r}")
        return value

    return parse


def int_list(lo: int, hi: int, separators: str = ",", example: str = "256,128", min_len: int = 1,
             max_len: int = 64) -> Callable[[str], list[int]]:
    """An argument type: ``min_len`` to ``max_len`` integers in [lo, hi] separated by any of ``separators``."""
    check = integer(lo, hi)
    pattern = "|".join(re.escape(s) for s in separators)

    def parse(text: str) -> list[int]:
        try:
            values = [check(part) for part in re.split(pattern, text)]
        except argparse.ArgumentTypeError:
            values = []
        if not min_len <= len(values) <= max_len:
            raise argparse.ArgumentTypeError(
                f"expected {min_len} to {max_len} integers in [{lo}, {hi}] such as {example}, got {text!r}"
            )
        return values

    return parse


def name_list(known: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """An argument type: comma-separated names from ``known`` (any case), at least one."""

    def parse(text: str) -> list[str]:
        names = [n.strip().lower() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            got = f"unknown {unknown[0]!r}" if unknown else f"got {text!r}"
            raise argparse.ArgumentTypeError(f"expected comma-separated {what} from {','.join(known)}; {got}")
        return names

    return parse


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux's MemAvailable, else the free
    physical pages), or None where the OS does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes as '1.5 GiB' and the like."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def require_memory(needed: int, what: str) -> None:
    """Raise UsageError when ``what`` needs more than the memory available now."""
    available = available_memory()
    if available is not None and needed > available:
        raise UsageError(
            f"{what} needs about {format_bytes(needed)} of memory, but {format_bytes(available)} is available"
        )
