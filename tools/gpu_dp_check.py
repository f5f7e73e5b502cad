"""One rank of the GPU check's data-parallel run: ``mpiexec -n N python tools/gpu_dp_check.py OUT``.

Each rank trains the same small model on the cupy backend (its own device, NCCL between them) under
float32 and mixed_float16 and writes OUT/dp.rank<r>.json; rank 0 then checks that every rank
ended with the same weights, bit for bit, and that the loss went down, and exits non-zero if not.
``--stand-in`` runs it on the host stand-in instead (a dry run of the script).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

import fcgpu as fc


def main(out: str, stand_in: bool = False) -> int:
    comm = fc.distributed.init()
    if stand_in:  # a dry run of this script on the host stand-in
        from fcgpu.testing import stand_in_backend

        backend = stand_in_backend()
        backend.use_device(comm.local_rank)
        fc.set_backend(backend)
    else:
        fc.set_backend("cupy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 20)).astype(np.float32)
    y = (x[:, :4].argmax(axis=1)).astype(np.int64)
    result = {"rank": comm.rank, "size": comm.size, "runs": {}}
    for policy in ("float32", "mixed_float16"):
        fc.set_seed(7)
        model = fc.Sequential([fc.Dense(64, activation="relu", dtype=policy), fc.Dense(4, dtype=policy)])
        model.build((None, 20))
        model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"])
        history = model.fit(x, y, batch_size=64, epochs=3, verbose=0)
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())).hexdigest()
        result["runs"][policy] = {"loss": list(map(float, history.history["loss"])), "weights_sha256": digest}
    Path(out, f"dp.rank{comm.rank}.json").write_text(json.dumps(result, indent=2))
    everyone = comm.allgather_object(result)
    if comm.rank != 0:
        return 0
    ok = True
    for policy in ("float32", "mixed_float16"):
        digests = {r["runs"][policy]["weights_sha256"] for r in everyone}
        loss = everyone[0]["runs"][policy]["loss"]
        print(f"{policy}: {comm.size} ranks, {len(digests)} distinct weight sets, loss {loss[0]:.4f} -> {loss[-1]:.4f}")
        ok = ok and len(digests) == 1 and loss[-1] < loss[0]
    return 0 if ok else 1


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--stand-in"]
    sys.exit(main(args[0] if args else ".", "--stand-in" in sys.argv))
