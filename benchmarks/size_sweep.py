"""Student-size sweep (issues #5, #6): every student of `benchmarks/configs/size-sweep.yaml`
distilled from ONE teacher and ONE transfer cache (the wikiann6 low-resource run's; `xdner run`
skips the teacher and the annotation when they are already there and scores only new
students), then F1, parameters, compression and speedup side by side and a Pareto plot.

    python benchmarks/size_sweep.py --output-dir runs/wikiann6-lowres --data-root ../shared/data/ner
    python benchmarks/size_sweep.py --output-dir runs/wikiann6-lowres --reuse   # report and plot only

Speedups come from the run's own batch-32/length-32 timing (`benchmarks/latency.py` gives the
full latency grid on an idle machine).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _common import DATA_ROOT, FinishedRun, command_line  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.config import load_config
from xtremedistil_ner.io import write_json, write_text
from xtremedistil_ner.pipeline import Run

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "benchmarks" / "configs" / "wikiann6-lowres.yaml"
GRID = ROOT / "benchmarks" / "configs" / "size-sweep.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "size-sweep"


def sweep_config(output_dir: Path, data_root: str):
    return load_config([BASE, GRID], [f"output_dir={output_dir}", f"data.root={data_root}"])


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model of the sweep, teacher first: F1, size, compression, speed."""
    teacher = report["models"]["teacher"]
    t_f1, t_ms = teacher["test_f1"]["macro"], teacher["latency"]["median_ms"]
    out = []
    for name, m in report["models"].items():
        out.append({
            "model": name,
            "family": "teacher" if name == "teacher" else m["type"],
            "parameters": m["parameters"],
            "compression": teacher["parameters"] / m["parameters"],
            "macro_f1": m["test_f1"]["macro"],
            "f1_vs_teacher": 100 * m["test_f1"]["macro"] / t_f1,
            "test_f1": m["test_f1"],
            "latency_ms": m["latency"]["median_ms"],
            "speedup": t_ms / m["latency"]["median_ms"],
            "distil_seconds": report["timings"].get(f"distil:{name}:joint"),
        })
    return out


def pareto(points: list[dict[str, Any]]) -> list[str]:
    """Models no other model beats on both speedup and F1."""
    return [p["model"] for p in points
            if not any(q["speedup"] >= p["speedup"] and q["macro_f1"] >= p["macro_f1"] and q is not p
                       and (q["speedup"] > p["speedup"] or q["macro_f1"] > p["macro_f1"]) for q in points)]


def render(report: dict[str, Any], table: list[dict[str, Any]], front: list[str]) -> str:
    lat = report["models"]["teacher"]["latency"]
    langs = report["languages"]
    lines = [
        "# Student-size sweep: WikiANN, 6 languages, low-resource setting", "",
        f"Command: `{report['command']}`", "", f"Machine: {report['machine']}", "",
        "One teacher, one transfer cache, the same stages for every student "
        "(`benchmarks/configs/wikiann6-lowres.yaml` + `benchmarks/configs/size-sweep.yaml`); "
        "checkpoints selected on dev, F1 on the full test sets (seqeval, strict IOB2). *distil s*: wall time of the "
        "student's three stages (on a 2-core CPU shared with other jobs at times).", "",
        f"Speed: batch {lat['batch_size']}, length {lat['seq_len']}, {lat['threads']} threads, median of "
        f"{lat['repeats']} timed runs; speedup vs the fine-tuned teacher. * = on the Pareto front (F1 vs speedup).", "",
        "| model | params | compression | " + " | ".join(langs) + " | macro F1 | % of teacher | ms | speedup | distil s |",
        "|" + "---|" * (len(langs) + 8),
    ]
    for r in table:
        star = " *" if r["model"] in front else ""
        cells = " | ".join(f"{r['test_f1'][l]:.2f}" for l in langs)
        lines.append(f"| {r['model']}{star} | {r['parameters'] / 1e6:.2f}M | {r['compression']:.1f}x | {cells} | "
                     f"{r['macro_f1']:.2f} | {r['f1_vs_teacher']:.1f}% | {r['latency_ms']:.1f} | {r['speedup']:.1f}x | "
                     + (f"{r['distil_seconds']:.0f} |" if r["distil_seconds"] else "– |"))
    return "\n".join(lines) + "\n"


def plot(table: list[dict[str, Any]], front: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"teacher": "black", "bilstm": "tab:blue", "transformer": "tab:orange"}
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for family, color in colors.items():
        pts = [r for r in table if r["family"] == family]
        if pts:
            ax.scatter([r["speedup"] for r in pts], [r["macro_f1"] for r in pts], s=[20 + r["parameters"] / 2e5 for r in pts],
                       c=color, alpha=0.6, label=family, edgecolors="k")
    for r in table:
        ax.annotate(r["model"], (r["speedup"], r["macro_f1"]), textcoords="offset points", xytext=(6, 4), fontsize=7)
    on_front = sorted((r for r in table if r["model"] in front), key=lambda r: r["speedup"])
    ax.plot([r["speedup"] for r in on_front], [r["macro_f1"] for r in on_front], "k--", lw=0.8, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("speedup vs teacher (batch 32, length 32, CPU; log scale)")
    ax.set_ylabel("macro test F1 (6 WikiANN languages)")
    ax.set_title("Student size sweep: F1 vs speed (point area ~ parameters)")
    ax.grid(True, which="both", alpha=0.3)
    legend = ax.legend(loc="lower left", fontsize=8)
    for handle in legend.legend_handles:  # one marker size in the legend, whatever the point sizes
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([40])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="runs/wikiann6-lowres")
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument("--reuse", action="store_true", help="take report.json from a finished run instead of running")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    out = Path(args.output_dir)
    if args.reuse:
        report = FinishedRun.open(out).report()
    else:
        cmd = command_line("benchmarks/size_sweep.py", ["--output-dir", str(out)])
        report = Run(sweep_config(out, args.data_root), command=cmd).run_all()
    table = rows(report)
    front = pareto(table)
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "report.json", {**report, "sweep": table, "pareto_front": front})
    write_text(args.results / "report.md", render(report, table, front))
    plot(table, front, args.results / "pareto.png")
    print((args.results / "report.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
