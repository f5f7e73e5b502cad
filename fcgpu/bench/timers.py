"""Timers of the benchmark's worker processes: a host clock per call, the backend's device clock, and
PyTorch's CUDA events; plus the statistics and sample counts drawn from their times."""
from __future__ import annotations

import gc
import math
import time
from typing import Any, Callable, Protocol, Sequence

__all__ = ["DeviceTimer", "HostTimer", "Op", "Timer", "TorchCudaTimer", "calibrate", "summary_stats"]

Op = tuple[Callable[[], Any] | None, Callable[[], Any]]  # (untimed preparation, timed call)


class Timer(Protocol):
    """What a worker's timer does: untimed warm-up calls (the last time of each operation, to
    calibrate the sample count), then ``samples`` timed calls of each operation, in seconds."""

    name: str

    def warm(self, ops: dict[str, Op], repeats: int, budget: float = math.inf) -> dict[str, float]: ...

    def measure(self, ops: dict[str, Op], samples: int) -> dict[str, list[float]]: ...


def summary_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and minimum in milliseconds."""
    xs = sorted(seconds)
    n = len(xs)

    def q(p: float) -> float:
        if n == 1:
            return xs[0]
        k = p * (n - 1)
        lo = math.floor(k)
        hi = min(lo + 1, n - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

    return {"median_ms": q(0.5) * 1e3, "p25_ms": q(0.25) * 1e3, "p75_ms": q(0.75) * 1e3, "min_ms": xs[0] * 1e3, "n": n}


def calibrate(warm: dict[str, float], budget: float, lo: int, hi: int) -> int:
    """Timed calls per operation, so that the slowest of the warm-up times fills ``budget`` seconds."""
    slowest = max(warm.values()) if warm else 0.0
    if slowest <= 0:
        return hi
    return int(min(hi, max(lo, math.ceil(budget / slowest))))


class HostTimer:
    """perf_counter around each call, operations interleaved call by call, garbage collector off."""

    name = "host perf_counter per call"

    def warm(self, ops: dict[str, Op], repeats: int, budget: float = math.inf) -> dict[str, float]:
        last: dict[str, float] = {}
        start = time.perf_counter()
        for _ in range(max(1, repeats)):
            for name, (prep, run) in ops.items():
                if prep is not None:
                    prep()
                t0 = time.perf_counter()
                run()
                last[name] = time.perf_counter() - t0
            if time.perf_counter() - start > budget:  # large sizes: one round warms caches and threads
                break
        return last

    def measure(self, ops: dict[str, Op], samples: int) -> dict[str, list[float]]:
        times: dict[str, list[float]] = {name: [] for name in ops}
        items = list(ops.items())
        clock = time.perf_counter
        gc.collect()
        enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(samples):
                for name, (prep, run) in items:
                    if prep is not None:
                        prep()
                    t0 = clock()
                    run()
                    times[name].append(clock() - t0)
        finally:
            if enabled:
                gc.enable()
        return times


class DeviceTimer:
    """Device time of each call, from the backend's own device clock (CUDA events on CuPy)."""

    name = "backend device clock (CUDA events)"

    def __init__(self, time_calls: Callable[[Callable[[], Any], int], list[float]]) -> None:
        self._time_calls = time_calls

    def warm(self, ops: dict[str, Op], repeats: int, budget: float = math.inf) -> dict[str, float]:
        return {name: self._time_calls(run, max(1, repeats))[-1] for name, (_, run) in ops.items()}

    def measure(self, ops: dict[str, Op], samples: int) -> dict[str, list[float]]:
        return {name: self._time_calls(run, samples) for name, (_, run) in ops.items()}


class TorchCudaTimer:
    """Device time of each call between two ``torch.cuda.Event`` records."""

    name = "torch.cuda.Event per call (device events)"

    def __init__(self, torch: Any) -> None:
        self._torch = torch

    def _times(self, prep: Callable[[], Any] | None, run: Callable[[], Any], n: int) -> list[float]:
        cuda = self._torch.cuda
        out = []
        for _ in range(n):
            if prep is not None:
                prep()
            start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3)
        return out

    def warm(self, ops: dict[str, Op], repeats: int, budget: float = math.inf) -> dict[str, float]:
        return {name: self._times(prep, run, max(1, repeats))[-1] for name, (prep, run) in ops.items()}

    def measure(self, ops: dict[str, Op], samples: int) -> dict[str, list[float]]:
        return {name: self._times(prep, run, samples) for name, (prep, run) in ops.items()}
