"""Compare fcgpu's backends (and PyTorch, when installed) on Dense forward/backward and a training step.

The same as ``fcgpu bench``; see ``python benchmarks/compare_backends.py --help`` and RESULTS.md.
Example: python benchmarks/compare_backends.py --json results.json --plot results.png
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Runs from a source checkout without installing fcgpu.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from fcgpu.bench import main

    sys.exit(main())
