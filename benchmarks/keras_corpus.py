"""The Keras program corpus (tests/keras_programs/prog_*.py) on fcgpu and on Keras 3 (torch CPU
backend), timed in one interleaved run.

    python benchmarks/keras_corpus.py --reps 3          # writes keras-corpus.json and KERAS_CORPUS.md
    python benchmarks/keras_corpus.py --report benchmarks/keras-corpus.json   # the table again

For each repetition, each program runs once on each library (the order alternates), each run in
a fresh process, so that noise on a shared machine hits both alike. Only what follows a
program's ``# end imports`` line is timed: interpreter start, the import block (Keras imports
torch) and the runner's own set-up are not. The import block is swapped by the test runner's
``swap_imports`` (tests/keras_programs/run_program.py), imported here, not copied.

Where the time goes, per run: a perf_counter pair around each outermost call of the models'
``fit``/``train_on_batch`` (fit), ``evaluate``/``test_on_batch`` (evaluate),
``predict``/``predict_on_batch`` (predict), ``compile``, and model construction (model
``__init__``, ``Sequential.add``, a layer's ``__call__`` outside the others); the
rest is "other" (data, layer objects, weights, prints). Calls nested in another phase count for
the outer one (fit's validation passes count as fit). After the timed repetitions, fcgpu runs
each program twice more: once with timers around its NumPy backend's three GEMM methods (the
share of the time in BLAS GEMMs), once under cProfile (the functions with the most own time).
Keras's GEMMs run inside torch's C++ autograd engine, so only its phase split is reported.
"""
from __future__ import annotations

import argparse
import cProfile
import inspect
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "keras_programs"
PHASES = ("construction", "compile", "fit", "evaluate", "predict")
PHASE_OF = {
    "fit": "fit", "train_on_batch": "fit",
    "evaluate": "evaluate", "test_on_batch": "evaluate",
    "predict": "predict", "predict_on_batch": "predict",
    "compile": "compile",
    "add": "construction", "__call__": "construction",
}
MARK = "KERAS_CORPUS_RESULT "


# -- the worker: one program on one library, in its own process ------------------------------
class Timers:
    """Seconds per phase; a call inside a phase already running counts for the outer one."""

    def __init__(self) -> None:
        self.seconds = {p: 0.0 for p in PHASES}
        self.active = False

    def wrap(self, cls: type, name: str, phase: str) -> None:
        original = cls.__dict__[name]

        def timed(*args, **kwargs):
            if self.active:
                return original(*args, **kwargs)
            self.active = True
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - t0
                self.active = False

        # Keras reads a layer's __init__ arguments with inspect.getfullargspec, which does not
        # follow __wrapped__ but does honour __signature__.
        # No __wrapped__: a bound method passes that attribute on, and Keras would read the
        # unbound function's signature (with self) through it.
        timed.__signature__ = inspect.signature(original)
        timed.__name__, timed.__qualname__, timed.__doc__ = original.__name__, original.__qualname__, original.__doc__
        setattr(cls, name, timed)


def subclasses(cls: type) -> list[type]:
    found, todo = [], [cls]
    while todo:
        c = todo.pop()
        if c not in found:
            found.append(c)
            todo.extend(c.__subclasses__())
    return found


def install_phase_timers(library: str, timers: Timers) -> None:
    if library == "keras":
        from keras.src.layers.layer import Layer
        from keras.src.models.model import Model
    else:
        from fcgpu.layers.base import Layer
        from fcgpu.models.base import Model
    models = subclasses(Model)
    # fit/evaluate/predict/compile live in trainer classes above Model in both libraries.
    for cls in dict.fromkeys([*Model.__mro__, *subclasses(Layer)]):
        for name, phase in PHASE_OF.items():
            if name in cls.__dict__ and callable(cls.__dict__[name]):
                timers.wrap(cls, name, phase)
    for cls in models:
        if "__init__" in cls.__dict__:
            timers.wrap(cls, "__init__", "construction")


def install_gemm_timers() -> dict[str, float]:
    """Seconds and calls in the NumPy backend's GEMMs (an outer call only: the bfloat16 path recurses)."""
    from fcgpu.backends.numpy.backend import NumpyBackend

    gemm = {"seconds": 0.0, "calls": 0, "active": False}
    for name in ("matmul", "matmul_at_b", "matmul_a_bt"):
        original = NumpyBackend.__dict__[name]

        def timed(self, a, b, out, _original=original):
            if gemm["active"]:
                return _original(self, a, b, out)
            gemm["active"] = True
            t0 = time.perf_counter()
            try:
                return _original(self, a, b, out)
            finally:
                gemm["seconds"] += time.perf_counter() - t0
                gemm["calls"] += 1
                gemm["active"] = False

        setattr(NumpyBackend, name, timed)
    return gemm


def worker(program: str, library: str, mode: str) -> None:
    sys.path.insert(0, str(PROGRAMS))
    os.chdir(PROGRAMS)
    from run_program import swap_imports  # the test runner's own import swap

    path = PROGRAMS / program
    source = swap_imports(path.read_text(), library)
    marker = "\n# end imports\n"
    cut = source.index(marker) + len(marker)
    head, tail = source[:cut], source[cut:]
    namespace = {"__name__": "__main__", "__file__": str(path)}
    exec(compile(head, str(path), "exec"), namespace)  # noqa: S102 - the corpus's own files
    body = compile("\n" * head.count("\n") + tail, str(path), "exec")  # line numbers as in the file
    info: dict = {}
    if library == "fcgpu":
        import fcgpu

        info["backend"] = fcgpu.get_backend().name if hasattr(fcgpu.get_backend(), "name") else str(fcgpu.get_backend())
    timers = Timers()
    install_phase_timers(library, timers)
    gemm = install_gemm_timers() if mode == "gemm" else None
    profiler = cProfile.Profile() if mode == "cprofile" else None
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    exec(body, namespace)  # noqa: S102
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - t0
    result = {"seconds": seconds, "phases": timers.seconds, **info}
    if gemm is not None:
        result["gemm_seconds"], result["gemm_calls"] = gemm["seconds"], gemm["calls"]
    if profiler is not None:
        stats = pstats.Stats(profiler)
        rows = []
        for (file, line, func), (cc, nc, tt, ct, _) in stats.stats.items():
            where = f"{Path(file).name}:{line}({func})" if line else func
            if "fcgpu" in file:
                where = f"{os.path.relpath(file, ROOT)}:{line}({func})"
            rows.append({"function": where, "calls": nc, "own_s": tt, "cumulative_s": ct})
        rows.sort(key=lambda r: -r["own_s"])
        result["profile_total_s"] = seconds
        result["top_own_time"] = rows[:12]
    sys.stdout.flush()
    print("\n" + MARK + json.dumps(result), flush=True)


# -- the driver ---------------------------------------------------------------------------------
def run_one(program: str, library: str, mode: str = "time", timeout: int = 1200) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FCGPU_")}
    env.update(KERAS_BACKEND="torch", CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join([str(ROOT), str(PROGRAMS)]))
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", program, library, mode], capture_output=True,
                              text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {timeout} s"}
    wall = time.perf_counter() - t0
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(MARK)]
    if done.returncode != 0 or not lines:
        tail = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        return {"failed": tail[-1][:300] if tail else f"exit status {done.returncode}"}
    return {**json.loads(lines[-1][len(MARK):]), "process_wall_s": wall}


def machine_facts() -> dict:
    import numpy as np
    import threadpoolctl

    facts = {
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas_numpy": [
            {k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "threading_layer")}
            for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]
        ],
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        facts["cpu"] = names[0] if names else facts["cpu"]
    except OSError:
        pass
    probe = ("import json, torch, keras, fcgpu; print(json.dumps({'torch': torch.__version__, 'keras': keras.__version__, "
             "'fcgpu': fcgpu.__version__, 'torch_threads': torch.get_num_threads(), "
             "'torch_blas': [ln.strip() for ln in torch.__config__.show().splitlines() if 'BLAS' in ln or 'MKL' in ln]}))")
    env = {**os.environ, "KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    if done.returncode == 0:
        facts.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return facts


def measure(programs: list[str], reps: int, log) -> dict:
    runs: dict[str, dict[str, list[dict]]] = {p: {"keras": [], "fcgpu": []} for p in programs}
    for r in range(reps):
        for i, program in enumerate(programs):
            order = ("keras", "fcgpu") if (r + i) % 2 == 0 else ("fcgpu", "keras")
            for library in order:
                runs[program][library].append(run_one(program, library))
                got = runs[program][library][-1]
                log(f"rep {r + 1}/{reps} {program} {library}: " + (f"{got['seconds']:.3f} s" if "seconds" in got
                                                                    else f"FAILED {got['failed']}"))
    extra = {}
    for program in programs:
        extra[program] = {"gemm": run_one(program, "fcgpu", "gemm"), "cprofile": run_one(program, "fcgpu", "cprofile")}
        log(f"fcgpu instrumented runs of {program} done")
    return {"runs": runs, "fcgpu_instrumented": extra}


def summarize(data: dict) -> dict:
    out = {}
    for program, libs in data["runs"].items():
        row: dict = {}
        for library, runs in libs.items():
            ok = [x for x in runs if "seconds" in x]
            failed = [x["failed"] for x in runs if "failed" in x]
            row[library] = {"failed": failed[0] if failed else None}
            if ok and not failed:
                total = statistics.median(x["seconds"] for x in ok)
                phases = {p: statistics.median(x["phases"][p] for x in ok) for p in PHASES}
                phases["other"] = max(0.0, total - sum(phases.values()))
                row[library].update(seconds=total, all_seconds=[x["seconds"] for x in ok], phases=phases)
        if row["keras"].get("seconds") and row["fcgpu"].get("seconds"):
            pairs = zip(libs["keras"], libs["fcgpu"])
            row["ratio"] = statistics.median(k["seconds"] / f["seconds"] for k, f in pairs)
        extra = data.get("fcgpu_instrumented", {}).get(program, {})
        gemm = extra.get("gemm", {})
        if "gemm_seconds" in gemm:
            row["fcgpu_gemm"] = {"share": gemm["gemm_seconds"] / gemm["seconds"], "seconds": gemm["gemm_seconds"],
                                 "calls": gemm["gemm_calls"], "run_seconds": gemm["seconds"]}
        prof = extra.get("cprofile", {})
        if "top_own_time" in prof:
            row["fcgpu_top_own_time"] = prof["top_own_time"][:5]
            row["fcgpu_profile_total_s"] = prof["profile_total_s"]
        out[program] = row
    return out


def pct(phases: dict) -> str:
    total = sum(phases.values()) or 1.0
    short = {"construction": "build", "compile": "compile", "fit": "fit", "evaluate": "eval", "predict": "pred",
             "other": "other"}
    return " / ".join(f"{100 * phases[p] / total:.0f}" for p in short)


def torch_blas(lines: list[str]) -> str:
    import re

    found = [m.group(0) for ln in lines for m in [re.search(r"BLAS_INFO=\w+|MKL-DNN v[0-9.]+", ln)] if m]
    return ", ".join(found) or "not reported"


def swing(summary: dict, library: str) -> float:
    runs = [r[library]["all_seconds"] for r in summary.values() if r[library].get("all_seconds")]
    return max(max(x) / min(x) for x in runs)


def min_ratio(data: dict, program: str) -> float:
    libs = data["runs"][program]
    return min(k["seconds"] / f["seconds"] for k, f in zip(libs["keras"], libs["fcgpu"]))


def spread(lib: dict) -> str:
    return f"{min(lib['all_seconds']):.3g}-{max(lib['all_seconds']):.3g}"


def markdown(data: dict, summary: dict) -> str:
    f = data["machine"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']} ({b['num_threads']} threads)"
                     for b in f.get("blas_numpy", []))
    lines = [
        "# The Keras program corpus: fcgpu against Keras 3 (torch CPU backend)",
        "",
        f"Measured by `python benchmarks/keras_corpus.py --reps {data['reps']}` at commit `{data['commit']}` on "
        f"{data['date']}; the figures are in `keras-corpus.json`.",
        "",
        "## Machine",
        "",
        f"- CPU: {f.get('cpu')}, {f.get('cpu_count')} logical CPUs, **shared with other jobs** (run-to-run noise is "
        "large; the runs of one program on the two libraries are interleaved so that it hits both alike)",
        f"- Python {f.get('python')}, NumPy {f.get('numpy')} with {blas}",
        f"- fcgpu {f.get('fcgpu')} on its NumPy backend; Keras {f.get('keras')} on torch {f.get('torch')} "
        f"({f.get('torch_threads')} threads; torch's build: {torch_blas(f.get('torch_blas', []))})",
        "",
        "## Notes on this run",
        "",
        "- The machine was shared during the run: its 1-minute load average (`uptime`) read 2.0 to 4.8 at "
        f"four checks, on 2 CPUs. Between repetitions Keras's time of one program varied by up to {swing(summary, 'keras'):.0f}x "
        f"(max / min), fcgpu's by up to {swing(summary, 'fcgpu'):.0f}x. torch runs its operators on 2 OpenMP threads, "
        "which suffer most when other jobs take the cores, so the largest ratios reflect this contention as "
        "much as per-step overhead; the 'min' column is each program's smallest per-repetition ratio.",
        "- Every program in this corpus is a small model: at most 15 % of fcgpu's time is in GEMMs, so the "
        "corpus has no GEMM-bound program and the 'no slower when GEMM-bound' goal is not exercised here "
        "(`benchmarks/RESULTS.md` covers large layers).",
        "",
        "## How",
        "",
        f"{data['reps']} repetitions; in each, every program runs once on each library (alternating which goes "
        "first), each run a fresh process. Timed: only what follows the program's `# end imports` line "
        "(not the interpreter, not the imports). Seconds are medians over the repetitions; the ratio is the "
        "median of the per-repetition ratios Keras / fcgpu (above 1: fcgpu faster).",
        "",
        "Split (percent of the timed seconds, medians): build (model construction: model `__init__`, "
        "`Sequential.add`, layer calls outside the others) / compile / fit (with `train_on_batch` and "
        "fit's validation) / eval (`evaluate`, `test_on_batch`) / pred (`predict`, `predict_on_batch`) / other "
        "(data, layer objects, weights, prints). GEMM: the share of fcgpu's time in its NumPy backend's three "
        "GEMM methods (one extra run with timers around them). Goal (issue 20): programs whose time is not "
        "in GEMMs at least 3x faster on fcgpu; GEMM-bound ones (GEMM share over half) no slower.",
        "",
        "| program | Keras s (min-max) | fcgpu s (min-max) | Keras / fcgpu | min | goal | fcgpu split % (build/compile/fit/eval/pred/other) "
        "| fcgpu GEMM % | Keras split % (same order) |",
        "|---|---:|---:|---:|---:|---|---|---:|---|",
    ]
    met = missed = 0
    for program, row in summary.items():
        k, g = row["keras"], row["fcgpu"]
        if k.get("failed") or g.get("failed"):
            why = "; ".join(f"{lib} failed: {row[lib]['failed']}" for lib in ("keras", "fcgpu") if row[lib].get("failed"))
            ks = f"{k['seconds']:.3f} ({spread(k)})" if "seconds" in k else "failed"
            gs = f"{g['seconds']:.4f} ({spread(g)})" if "seconds" in g else "failed"
            lines.append(f"| {program} | {ks} | {gs} | - | - | {why.replace('|', '/')} | "
                         f"{pct(g['phases']) if 'phases' in g else '-'} | - | {pct(k['phases']) if 'phases' in k else '-'} |")
            continue
        share = row.get("fcgpu_gemm", {}).get("share")
        bound = share is not None and share > 0.5
        ok = row["ratio"] >= (1.0 if bound else 3.0)
        met, missed = met + ok, missed + (not ok)
        goal = ("GEMM-bound, >= 1x: " if bound else ">= 3x: ") + ("met" if ok else "**missed**")
        gemm = f"{100 * share:.1f}" if share is not None else "-"
        lines.append(f"| {program} | {k['seconds']:.3f} ({spread(k)}) | {g['seconds']:.4f} ({spread(g)}) | "
                     f"{row['ratio']:.0f}x | {min_ratio(data, program):.0f}x | {goal} | {pct(g['phases'])} | {gemm} | {pct(k['phases'])} |")
    ratios = [r["ratio"] for r in summary.values() if "ratio" in r]
    if ratios:
        lines += ["", f"Goal met by {met} of {met + missed} programs that ran on both; ratio median "
                      f"{statistics.median(ratios):.0f}x, range {min(ratios):.0f}x to {max(ratios):.0f}x."]
    lines += ["", "## fcgpu's functions with the most own time (cProfile, one run per program)", "",
              "cProfile adds a cost to every Python call, so these runs take longer than the timed ones and "
              "over-weight Python; read them for where, not for how much.", ""]
    for program, row in summary.items():
        top = row.get("fcgpu_top_own_time")
        if not top:
            continue
        total = row["fcgpu_profile_total_s"]
        lines.append(f"- {program} ({total:.2f} s under cProfile): " + "; ".join(
            f"`{t['function']}` {t['own_s']:.3f} s / {t['calls']} calls" for t in top[:4]))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", nargs=3, metavar=("PROGRAM", "LIBRARY", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--programs", nargs="*", help="prog_*.py names (default: all)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "keras-corpus.json"))
    parser.add_argument("--markdown", default=str(ROOT / "benchmarks" / "KERAS_CORPUS.md"))
    parser.add_argument("--report", metavar="JSON", help="only write the Markdown table from this JSON")
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    if args.report:
        data = json.loads(Path(args.report).read_text())
    else:
        programs = args.programs or sorted(p.name for p in PROGRAMS.glob("prog_*.py"))
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
        data = {"reps": args.reps, "commit": commit, "date": time.strftime("%Y-%m-%d"), "machine": machine_facts()}
        data.update(measure(programs, args.reps, lambda s: print(s, flush=True)))
        data["summary"] = summarize(data)
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    Path(args.markdown).write_text(markdown(data, data.get("summary") or summarize(data)))
    print(Path(args.markdown).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
