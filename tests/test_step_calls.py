"""Python calls into fcgpu per steady-state training step (sys.setprofile over fcgpu's files): on a
GPU each costs about as much CPU as a kernel launch, so the count is pinned here. The architecture
target is at most 100 calls in at most 10 modules; this test pins today's figure so it only falls."""
from __future__ import annotations

import collections
import os
import sys

import numpy as np

import fcgpu as fc

PACKAGE = os.path.dirname(fc.__file__)
BUDGET_CALLS, BUDGET_MODULES = 200, 16  # measured: 195 calls in 15 modules (Dense(64, relu) -> Dense(10), Adam)


def traced_step(model, x, y):
    calls, modules = collections.Counter(), collections.Counter()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(PACKAGE):
            name = frame.f_code.co_filename[len(PACKAGE) + 1:]
            calls[(name, frame.f_code.co_name)] += 1
            modules[name] += 1

    sys.setprofile(profile)
    try:
        model.train_batch(x, y)
    finally:
        sys.setprofile(None)
    return calls, modules


def test_a_training_step_stays_within_its_python_call_budget():
    model = fc.Sequential([fc.Dense(64, activation="relu"), fc.Dense(10)])
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x, y = model.prepare_data(rng.random((32, 20), dtype=np.float32), rng.integers(0, 10, 32))
    for _ in range(3):  # steady state: buffers laid out, state made
        model.train_batch(x, y)
    calls, modules = traced_step(model, x, y)
    top = ", ".join(f"{n} {f}.{c}" for (f, c), n in calls.most_common(8))
    assert sum(calls.values()) <= BUDGET_CALLS, f"{sum(calls.values())} calls; most: {top}"
    assert len(modules) <= BUDGET_MODULES, sorted(modules)
