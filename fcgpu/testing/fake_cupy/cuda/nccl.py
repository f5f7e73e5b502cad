"""``cupy.cuda.nccl`` of the stand-in: ``fcgpu.testing.fake_nccl``'s CuPy names, at the path CuPy serves them."""
from ... import fake_nccl as _impl

_NAMES = [n for n in vars(_impl) if n.startswith("NCCL_")] + [
    "NcclCommunicator", "NcclError", "available", "get_build_version", "get_unique_id", "get_version",
]
globals().update({n: getattr(_impl, n) for n in _NAMES})
__all__ = sorted(_NAMES)
