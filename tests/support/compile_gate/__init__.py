"""The parts of the compile gate; import them from ``support.cuda_compile``, which describes the gate.

- ``compilers``: the pinned CuPy, NVRTC (or nvcc), CuPy's options and headers, ``compile_source``.
- ``variants``: ``ArgLayout``, ``Variant`` and the exact source CuPy generates for one.
- ``layouts``: the backend's recorded calls, CuPy's ``_reduce_dims`` layouts, ``sweep_variants``.
- ``sweep``: batching, compiling for each architecture, ``SweepReport``.
"""
