"""The report of a benchmark result: the table ``fcgpu bench`` prints, and its PNG plot."""
from __future__ import annotations

from typing import Any

from ..saving.fileio import atomic_write

__all__ = ["format_table", "write_plot"]


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def format_table(result: dict[str, Any]) -> str:
    """The stdout table: medians in ms, fwd+bwd throughput, ratio to the same backend's bare GEMMs."""
    ref = {(c["batch"], c["in"], c["out"], c["activation"]): c for c in result["cases"] if c["backend"] == "torch-cpu"}
    head = (f"{'size B x M x N':>16} {'act':>7} {'backend':>10} {'gemm x3':>9} {'forward':>9} {'backward':>9} "
            f"{'fwd+bwd':>9} {'step':>9} {'GFLOP/s':>8} {'fb/gemm':>7} {'fb/torch':>8} {'roofline':>8}")
    lines = ["times in ms (median); GFLOP/s and roofline of fwd+bwd; fb/gemm = fwd+bwd over the same "
             "backend's three bare GEMMs; fb/torch = over torch-cpu's fwd+bwd", head, "-" * len(head)]
    for c in result["cases"]:
        ops = c["ops"]

        def med(op: str) -> float | None:
            return ops[op]["median_ms"] if op in ops else None

        fb = ops.get("fwd_bwd", {})
        r = ref.get((c["batch"], c["in"], c["out"], c["activation"]))
        vs = fb["median_ms"] / r["ops"]["fwd_bwd"]["median_ms"] if fb and r and "fwd_bwd" in r["ops"] else None
        roof = fb.get("roofline_fraction")
        lines.append(
            f"{str(c['batch']) + 'x' + str(c['in']) + 'x' + str(c['out']):>16} {c['activation']:>7} {c['backend']:>10} "
            f"{_fmt(med('gemm'), '9.4f')} {_fmt(med('forward'), '9.4f')} {_fmt(med('backward'), '9.4f')} "
            f"{_fmt(med('fwd_bwd'), '9.4f')} {_fmt(med('step'), '9.4f')} {_fmt(fb.get('gflops'), '8.1f')} "
            f"{_fmt(c.get('fwd_bwd_over_gemm'), '7.3f')} {_fmt(vs, '8.3f')} "
            f"{'-' if roof is None else format(roof * 100, '7.1f') + '%'}"
        )
    for mdl in result.get("models", []):
        s = mdl["ops"]["step"]
        lines.append(
            f"training step {'-'.join(map(str, mdl['widths']))} batch {mdl['batch']} softmax-CE SGD "
            f"{mdl['backend']:>10}: {s['median_ms']:.4f} ms (p25 {s['p25_ms']:.4f}, p75 {s['p75_ms']:.4f}), "
            f"{_fmt(s.get('gflops'), '.1f')} GFLOP/s"
        )
    for g in result.get("graphs", []):
        steps = ", ".join(f"{name} {ms:.4f} ms" for name, ms in g["per_step_ms"].items())
        lines.append(f"graphs: training step {'-'.join(map(str, g['widths']))} batch {g['batch']} "
                     f"{g['backend']:>10}: {steps}")
    for kind, why in result.get("graphs_skipped", {}).items():
        lines.append(f"graphs not measured: {kind}: {why}")
    for kind, why in result.get("skipped", {}).items():
        lines.append(f"not measured: {kind}: {why}")
    for kind, b in result.get("backends", {}).items():
        info = b["info"]
        if info.get("torch_blas"):
            blas = [f"torch's {info['torch_blas']}, {info.get('threads')} threads"]
        else:
            blas = [f"{x.get('internal_api')} {x.get('version')} {x.get('architecture') or ''} x{x.get('num_threads')}"
                    for x in info.get("blas", []) if x.get("user_api") == "blas"]
        lines.append(f"{kind}: timer {b['info'].get('timer')}; BLAS {', '.join(blas) or 'unknown'}; "
                     f"OPENBLAS_CORETYPE={b['env'].get('OPENBLAS_CORETYPE')} OPENBLAS_L2_SIZE={b['env'].get('OPENBLAS_L2_SIZE')}")
    m = result.get("machine", {})
    lines.append(f"machine: {m.get('cpu')}, {m.get('usable_cores', m.get('logical_cores'))} cores; "
                 f"load average {m.get('load_average_start')} -> {m.get('load_average_end')}")
    return "\n".join(lines)


def write_plot(result: dict[str, Any], path: str) -> None:
    """A PNG of fwd+bwd throughput per size per backend, with each backend's bare-GEMM floor marked,
    written atomically to ``path`` (through a link to its target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acts = list(dict.fromkeys(c["activation"] for c in result["cases"]))
    kinds = list(dict.fromkeys(c["backend"] for c in result["cases"]))
    sizes = list(dict.fromkeys((c["batch"], c["in"], c["out"]) for c in result["cases"]))
    fig, axes = plt.subplots(1, max(1, len(acts)), figsize=(6 * max(1, len(acts)), 4.5), squeeze=False)
    width = 0.8 / max(1, len(kinds))
    for ax, act in zip(axes[0], acts):
        for j, kind in enumerate(kinds):
            xs, ys, floors = [], [], []
            for i, s in enumerate(sizes):
                for c in result["cases"]:
                    if (c["batch"], c["in"], c["out"]) == s and c["activation"] == act and c["backend"] == kind:
                        if "fwd_bwd" in c["ops"]:
                            xs.append(i + (j - (len(kinds) - 1) / 2) * width)
                            ys.append(c["ops"]["fwd_bwd"]["gflops"])
                            floors.append(c["ops"].get("gemm", {}).get("gflops"))
            ax.bar(xs, ys, width=width, label=kind)
            fx = [x for x, f in zip(xs, floors) if f]
            ax.scatter(fx, [f for f in floors if f], marker="_", s=300, color="black", zorder=3,
                       label="bare GEMMs (floor)" if j == 0 else None)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels([f"{b}x{m}x{n}" for b, m, n in sizes], rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("GFLOP/s (forward + backward)")
        ax.set_title(f"Dense + {act}: forward+backward throughput")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = result.get("machine", {})
    fig.suptitle(f"fcgpu bench on {m.get('cpu')} ({m.get('usable_cores', m.get('logical_cores'))} cores)", fontsize=9)
    fig.tight_layout()
    try:
        with atomic_write(path, "--plot") as f:
            fig.savefig(f, format="png", dpi=110)
    finally:
        plt.close(fig)
