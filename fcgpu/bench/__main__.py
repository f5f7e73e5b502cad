"""``python -m fcgpu.bench``: the benchmark's command line, and how the runner starts each worker
process (``python -m fcgpu.bench --worker KIND``)."""
import sys

from .command import main

sys.exit(main())
