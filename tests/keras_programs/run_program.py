"""Run one Keras program on 'keras' or 'fcgpu' and print its RESULT as JSON on the last line.

Usage: python run_program.py PROGRAM.py keras|fcgpu
"""
from __future__ import annotations

import json
import os
import re
import sys

import numpy as np

FCGPU_IMPORTS = {
    "import keras": "import fcgpu as keras",
    "from keras import layers": "from fcgpu import layers",
    "from keras import ops": "from fcgpu import ops",
    "from keras import callbacks": "from fcgpu import callbacks",
}


def swap_imports(source: str, library: str) -> str:
    match = re.search(r"^# imports\n(.*?)^# end imports\n", source, flags=re.S | re.M)
    if match is None:
        raise SystemExit("the program has no '# imports' ... '# end imports' block")
    if library == "keras":
        return source
    lines = []
    for line in match.group(1).splitlines():
        if line.strip() and line.strip() not in FCGPU_IMPORTS:
            raise SystemExit(f"no fcgpu counterpart for the import line {line!r}")
        lines.append(FCGPU_IMPORTS.get(line.strip(), line))
    return source[: match.start(1)] + "\n".join(lines) + "\n" + source[match.end(1) :]


def plain(value):
    """RESULT as JSON-ready values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "detach"):  # a torch tensor from Keras's torch backend
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.astype(np.float64).tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def main(path: str, library: str) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    with open(path) as f:
        source = swap_imports(f.read(), library)
    namespace = {"__name__": "__main__", "__file__": path}
    exec(compile(source, path, "exec"), namespace)  # noqa: S102 - the test's own program files
    print(json.dumps(plain(namespace["RESULT"])))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
