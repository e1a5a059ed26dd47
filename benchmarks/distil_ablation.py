"""The distillation ablation (#15): 50/200 BiLSTMs on wikiann6 (1,000 labeled + 5,000 transfer
sentences per language), every row distilled from ONE teacher and ONE transfer cache, each
changing one lever against the schedule in `benchmarks/configs/distil-ablation.yaml`. Writes
`benchmarks/results/distil-ablation/ablation.{json,md,png}`: change, dev and test macro F1,
retention (test F1 / the teacher's) and distillation wall time per row. Rows are selected on
dev; test is reported, never used to choose.

    python benchmarks/distil_ablation.py --output-dir runs/distil-ablation --data-root ../shared/data/ner
    python benchmarks/distil_ablation.py --output-dir runs/distil-ablation --reuse   # tables and plot only

Wall times are the run's own (2-core CPU, with whatever else ran beside it), so read them as
costs relative to each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import FinishedRun, benchmark_parser, command_line, save_figure  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.config import load_config, run_students
from xtremedistil_ner.io import write_json, write_text
from xtremedistil_ner.log import configure as configure_logging
from xtremedistil_ner.pipeline import Run

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "benchmarks" / "configs" / "wikiann6-lowres.yaml"
ABLATION = ROOT / "benchmarks" / "configs" / "distil-ablation.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "distil-ablation"

CHANGES = {  # student -> what it changes against the first row
    "bilstm-50-200": "reference: representation 1 ep, logits [1,1,1,2], gold [1,1,1,2], constant lr",
    "abl-new-default": "logits [1,1,1,3] (the new default schedule)",
    "abl-tuned-wikiann6": "logits [1,1,1,6], gold [1,1,1,3] (the old hand-tuned schedule)",
    "abl-logits-all": "logits: everything trainable from the start, 5 epochs (no gradual unfreezing)",
    "abl-kl-t2": "logits loss: KL at temperature 2 instead of MSE",
    "abl-cosine": "cosine decay with 10% warm-up per sub-stage instead of a constant rate",
    "abl-no-representation": "no representation stage",
    "abl-gold-only": "gold labels only, PCA-initialised embeddings, 12 epochs (no teacher outputs)",
    "bilstm-50-200-gold-only": "gold labels only, random init, up to 20 epochs (no teacher at all)",
}


def ablation_config(output_dir: Path, data_root: str):
    return load_config([BASE, ABLATION], [f"output_dir={output_dir}", f"data.root={data_root}"])


def rows(run: FinishedRun, report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per student of the run, in the config's order."""
    teacher = report["models"]["teacher"]["test_f1"]["macro"]
    out = []
    for name, m in report["models"].items():
        if name == "teacher":
            continue
        progress = run.progress(name)
        out.append({
            "student": name,
            "change": CHANGES.get(name, "(see the config)"),
            "dev_macro_f1": progress["final_dev"]["macro"]["f1"],
            "test_macro_f1": m["test_f1"]["macro"],
            "retention": 100 * m["test_f1"]["macro"] / teacher,
            "distil_seconds": report["timings"][f"distil:{name}:joint"],
            "test_f1": m["test_f1"],
        })
    return out


def markdown(table: list[dict[str, Any]], report: dict[str, Any], missing: list[str]) -> str:
    t = report["models"]["teacher"]["test_f1"]["macro"]
    lines = ["# Distillation ablation: 50/200 BiLSTM, wikiann6, 1,000 labeled + 5,000 transfer sentences per language", "",
             f"One teacher (test macro F1 {t:.2f}, dev {report['teacher_dev']:.2f}) and one transfer cache for every row. "
             "Retention = test macro F1 / the teacher's. Wall time: the student's distillation on a 2-core CPU.", "",
             "| student | change | dev macro F1 | test macro F1 | retention | wall time (s) |", "|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['student']} | {r['change']} | {r['dev_macro_f1']:.2f} | {r['test_macro_f1']:.2f} | "
                     f"{r['retention']:.1f}% | {r['distil_seconds']:.0f} |")
    if missing:
        lines += ["", "Not in this run's report yet (rerun the script without --reuse to add them): "
                  + "; ".join(f"{name} ({CHANGES.get(name, 'see the config')})" for name in missing) + "."]
    return "\n".join(lines) + "\n"


def plot(table: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in table:
        ax.scatter(r["distil_seconds"], r["dev_macro_f1"], s=40)
        ax.annotate(r["student"], (r["distil_seconds"], r["dev_macro_f1"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("distillation wall time (s, 2-core CPU)")
    ax.set_ylabel("dev macro F1")
    ax.set_title("Distillation levers, 50/200 BiLSTM on wikiann6 (5k transfer/lang)", fontsize=10)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main() -> None:
    parser = benchmark_parser(__doc__, "tabulate the finished run's report.json instead of running")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/distil-ablation"))
    args = parser.parse_args()
    configure_logging(0)
    if args.reuse:
        report = FinishedRun.open(args.output_dir).report()
    else:
        report = Run(ablation_config(args.output_dir, args.data_root),
                     command=command_line("benchmarks/distil_ablation.py", ["--output-dir", str(args.output_dir)])).run_all()
    table = rows(FinishedRun.open(args.output_dir), report)
    missing = [s.name for s in run_students(ablation_config(args.output_dir, args.data_root)) if s.name not in report["models"]]
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "ablation.json", {"teacher_test_macro_f1": report["models"]["teacher"]["test_f1"]["macro"],
                                           "teacher_dev_macro_f1": report["teacher_dev"], "rows": table})
    write_text(RESULTS / "ablation.md", markdown(table, report, missing))
    plot(table, RESULTS / "ablation.png")
    print((RESULTS / "ablation.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
