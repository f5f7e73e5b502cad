"""``python -m fcgpu``: the ``fcgpu`` command line (info, train, bench)."""
import sys

from .cli import main

sys.exit(main())
