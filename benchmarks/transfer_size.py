"""Retention against transfer-set size (#15; the paper's Table 3 as a plot): the wikiann6
low-resource run (1,000 labeled sentences per language) with 1k, 2.5k, 5k and all remaining
train sentences per language as unlabeled transfer text, the 50/200 BiLSTM on the default
schedule, ONE teacher for every size (fine-tuned once, then linked into each size's run: it
does not depend on the transfer set). Per size: test and dev macro F1, retention, the share of
test subwords the student does not know (its vocabulary is the pieces of the labeled and
transfer sentences), its parameters, and annotate/distil wall time. Writes
`benchmarks/results/transfer-size/transfer-size.{json,md,png}`.

    python benchmarks/transfer_size.py --output-root runs/transfer-size --data-root ../shared/data/ner
    python benchmarks/transfer_size.py --output-root runs/transfer-size --reuse   # tables and plot only
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from _common import FinishedRun, benchmark_parser, command_line, save_figure  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.config import load_config
from xtremedistil_ner.encoding import encode
from xtremedistil_ner.io import write_json, write_text
from xtremedistil_ner.log import configure as configure_logging
from xtremedistil_ner.pipeline import Run
from xtremedistil_ner.students import load_student

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "benchmarks" / "configs" / "wikiann6-lowres.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "transfer-size"
SIZES: list[int | None] = [1000, 2500, 5000, None]  # None: all remaining train sentences
STUDENT = "bilstm-50-200"


def label(size: int | None) -> str:
    return "all" if size is None else str(size)


def size_config(out: Path, size: int | None, data_root: str):
    return load_config(BASE, [f"output_dir={out}", f"data.root={data_root}", f"data.transfer_per_lang={'null' if size is None else size}",
                              f"students=[{{name: {STUDENT}, type: bilstm, embedding_dim: 50, hidden_dim: 200}}]",
                              "distil.gold_only_baseline=false"])


def share_teacher(runs: list[Path]) -> None:
    """The first fine-tuned teacher found, hard-linked into every run that has none yet."""
    source = next((r / "teacher" for r in runs if (r / "teacher" / "xdner_teacher.json").exists()), None)
    for run in runs:
        if source is not None and not (run / "teacher").exists():
            run.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, run / "teacher", copy_function=os.link)


def unknown_share(run: FinishedRun) -> float:
    """% of the test sentences' subwords (specials excluded) that map to the student's unknown row."""
    student = load_student(run.student_dir(STUDENT) / "model")
    windows = encode(run.test_sentences(), run.tokenizer, run.cfg.teacher.max_length)
    ids = np.concatenate([w.input_ids[1:-1] for w in windows])
    return 100 * float((student.id_map.numpy()[ids] == 1).mean())


def row(run: FinishedRun, size: int | None) -> dict[str, Any]:
    report = run.report()
    teacher, student = report["models"]["teacher"]["test_f1"]["macro"], report["models"][STUDENT]
    return {
        "transfer_per_lang": label(size),
        "transfer_sentences": sum(d["transfer"] for d in report["data"]["languages"].values()),
        "dev_macro_f1": run.progress(STUDENT)["final_dev"]["macro"]["f1"],
        "test_macro_f1": student["test_f1"]["macro"],
        "retention": 100 * student["test_f1"]["macro"] / teacher,
        "teacher_test_macro_f1": teacher,
        "test_f1": student["test_f1"],
        "unknown_test_subwords_pct": unknown_share(run),
        "parameters": student["parameters"],
        "annotate_seconds": report["timings"].get("annotate"),
        "distil_seconds": report["timings"][f"distil:{STUDENT}:joint"],
    }


def markdown(rows: list[dict[str, Any]], note: str | None = None) -> str:
    lines = ["# Retention vs transfer-set size: 50/200 BiLSTM, wikiann6, 1,000 labeled sentences per language", "",
             f"One teacher (test macro F1 {rows[0]['teacher_test_macro_f1']:.2f}); the default distillation schedule. "
             "Transfer sentences include the 6,000 labeled ones. Unknown: share of test subwords outside the student's "
             "vocabulary.", "",
             "| transfer / lang | transfer sentences | dev macro F1 | test macro F1 | retention | unknown test subwords | "
             "parameters | annotate (s) | distil (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['transfer_per_lang']} | {r['transfer_sentences']:,} | {r['dev_macro_f1']:.2f} | {r['test_macro_f1']:.2f} | "
                     f"{r['retention']:.1f}% | {r['unknown_test_subwords_pct']:.2f}% | {r['parameters'] / 1e6:.2f}M | "
                     f"{r['annotate_seconds'] or 0:.0f} | {r['distil_seconds']:.0f} |")
    return "\n".join(lines + (["", note] if note else [])) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["transfer_sentences"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(x, [r["retention"] for r in rows], marker="o")
    for r, xi in zip(rows, x):
        left.annotate(r["transfer_per_lang"], (xi, r["retention"]), fontsize=8, xytext=(4, -10), textcoords="offset points")
    left.set_ylabel("test macro F1, % of the teacher's")
    right.plot(x, [r["unknown_test_subwords_pct"] for r in rows], marker="o", color="tab:red")
    right.set_ylabel("test subwords unknown to the student (%)")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("transfer sentences (all languages)")
        ax.grid(alpha=0.3)
    fig.suptitle("50/200 BiLSTM on wikiann6 (1k labeled/lang): transfer-set size", fontsize=10)
    save_figure(fig, path)


def main() -> None:
    parser = benchmark_parser(__doc__, "tabulate finished runs instead of running")
    parser.add_argument("--output-root", type=Path, default=Path("runs/transfer-size"))
    parser.add_argument("--note", help="how the times were taken (e.g. what else ran), printed under the table")
    args = parser.parse_args()
    configure_logging(0)
    runs = [args.output_root / f"transfer-{label(s)}" for s in SIZES]
    if not args.reuse:
        for size, out in zip(SIZES, runs):
            share_teacher(runs)
            Run(size_config(out, size, args.data_root), command=command_line("benchmarks/transfer_size.py", ["--output-root", str(args.output_root)])).run_all()
    rows = [row(FinishedRun.open(out, args.data_root), size) for size, out in zip(SIZES, runs)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "transfer-size.json", {"rows": rows, "note": args.note})
    write_text(RESULTS / "transfer-size.md", markdown(rows, args.note))
    plot(rows, RESULTS / "transfer-size.png")
    print((RESULTS / "transfer-size.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
