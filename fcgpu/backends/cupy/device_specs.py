"""Peak FP32 rate and memory bandwidth of a CUDA device, from the attributes it reports.

The CuPy backend puts these two numbers in its ``info()``; ``fcgpu bench`` uses them as the roofs
of the roofline (``fcgpu.bench.cost.roofline_time``). Nothing here needs CuPy or a GPU.
"""
from __future__ import annotations

__all__ = ["FP32_LANES_PER_SM", "NAMED_DEVICES", "device_peak"]

# FP32 lanes per SM by compute capability major version (6.0, 7.x and 8.0 have 64, the others 128).
FP32_LANES_PER_SM: dict[int, int] = {6: 128, 7: 64, 8: 128, 9: 128, 10: 128, 12: 128}

# Published peaks (SXM parts, dense, no sparsity) for the step model of ``fcgpu.bench.cost``, in
# flop/s and byte/s: FP32 on the FMA lanes, FP16 on the tensor cores, HBM bandwidth. Datasheet
# figures, not measurements; a real kernel reaches a fraction of them.
NAMED_DEVICES: dict[str, dict[str, float]] = {
    "H100": {"fp32_fma": 67e12, "fp16_tensor": 989e12, "bandwidth": 3.35e12},
    "H200": {"fp32_fma": 67e12, "fp16_tensor": 989e12, "bandwidth": 4.8e12},
}


def device_peak(clock_khz: int, sm_count: int, mem_clock_khz: int, bus_bits: int, major: int, minor: int) -> dict[str, float]:
    """A CUDA device's FP32 peak (2 flops per FMA lane per cycle) and DRAM bandwidth (double data
    rate), in GFLOP/s and GB/s: the two roofs of ``fcgpu.bench.cost.roofline_time``."""
    lanes = 64 if (major, minor) in ((6, 0), (8, 0)) else FP32_LANES_PER_SM.get(major, 128)
    return {
        "peak_gflops": 2.0 * lanes * sm_count * clock_khz * 1e3 / 1e9,
        "peak_gbps": 2.0 * mem_clock_khz * 1e3 * (bus_bits / 8) / 1e9,
    }
