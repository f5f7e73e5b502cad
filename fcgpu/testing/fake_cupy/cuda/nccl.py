"""``cupy.cuda.nccl`` of the stand-in: ``fcgpu.testing.fake_nccl`` under the path CuPy serves it at."""
import sys

from ... import fake_nccl

sys.modules[__name__] = fake_nccl
