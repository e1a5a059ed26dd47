"""The teacher's budget on a user's own small data (#27): 100, 300 and 1,000 labeled sentences
per language of three WikiANN languages in three scripts (benchmarks/configs/teacher-budget.yaml),
everything else at its default. Two modes:

- `--select 0,250,500,1000`: fine-tune only the teacher on the smallest size once per
  `teacher.min_steps` value and record its dev macro F1 (dev, never test: this chose the default);
- otherwise: the whole run per size on the defaults, recording the teacher's budget (passes per epoch and
  optimizer steps), its dev and test macro F1, and each student's test macro F1.

Writes `benchmarks/results/teacher-budget/{select,budget}.{json,md}`.

    python benchmarks/teacher_budget.py --output-root runs/teacher-budget --select 0,250,500,1000
    python benchmarks/teacher_budget.py --output-root runs/teacher-budget
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import FinishedRun, benchmark_parser, markdown_table  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.config import load_config
from xtremedistil_ner.errors import XdnerError
from xtremedistil_ner.io import write_json, write_text
from xtremedistil_ner.log import configure as configure_logging
from xtremedistil_ner.pipeline import Run

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "configs" / "teacher-budget.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "teacher-budget"
SIZES = [100, 300, 1000]


def config(out: Path, data_root: str, size: int, *extra: str):
    return load_config(CONFIG, [f"output_dir={out}", f"data.root={data_root}", f"data.train_per_lang={size}", *extra])


def teacher_row(run: Run) -> dict[str, Any]:
    """The fine-tuned teacher's budget and dev score, from its record."""
    record = run.teacher_record()
    train = len(run.corpus.train)
    return {"train_sentences": train, "passes_per_epoch": run.cfg.teacher.passes_for(train), "steps": run.cfg.teacher.steps_for(train),
            "best_epoch": record["best_epoch"], "teacher_dev_macro_f1": record["best_dev_macro_f1"],
            "teach_seconds": record["train_seconds"]}


def select(args: Any, values: list[int]) -> None:
    rows = []
    for value in values:
        run = Run(config(args.output_root / f"select-{value}", args.data_root, SIZES[0], f"teacher.min_steps={value}"),
                  command=f"python benchmarks/teacher_budget.py --select {args.select}")
        if not args.reuse:
            try:
                run.run_all(("teach",))
            except XdnerError as exc:  # a teacher that learned nothing is a result here, not a failure
                print(exc)
        rows.append({"min_steps": value, **teacher_row(run)})
    table = markdown_table(["teacher.min_steps", "passes per epoch", "optimizer steps", "best epoch", "teacher dev macro F1", "teach (s)"],
                           [(r["min_steps"], r["passes_per_epoch"], r["steps"], r["best_epoch"], f"{r['teacher_dev_macro_f1']:.2f}",
                             f"{r['teach_seconds']:.0f}") for r in rows])
    write(rows, "select", [f"# Choosing teacher.min_steps on dev: {SIZES[0]} labeled sentences per language (es, ru, hi)", "",
                           "Teacher only, the other settings at their defaults; dev capped at 500 per language.", "", *table],
          args.note)


def budget(args: Any) -> None:
    rows = []
    for size in SIZES:
        out = args.output_root / f"size-{size}"
        run = Run(config(out, args.data_root, size), command="python benchmarks/teacher_budget.py")
        if not args.reuse:
            run.run_all()
        report = FinishedRun.open(out, args.data_root).report()
        models = report["models"]
        students = {name: m["test_f1"]["macro"] for name, m in models.items() if name != "teacher"}
        rows.append({"per_language": size, **teacher_row(run), "teacher_test_macro_f1": models["teacher"]["test_f1"]["macro"],
                     "student_test_macro_f1": students})
    names = list(rows[0]["student_test_macro_f1"])
    table = markdown_table(["labeled / lang", "teacher passes per epoch", "teacher steps", "teacher dev macro F1", "teacher test macro F1",
                            *[f"{n} test macro F1" for n in names]],
                           [(r["per_language"], r["passes_per_epoch"], r["steps"], f"{r['teacher_dev_macro_f1']:.2f}",
                             f"{r['teacher_test_macro_f1']:.2f}", *[f"{r['student_test_macro_f1'][n]:.2f}" for n in names])
                            for r in rows])
    write(rows, "budget", ["# The teacher's default budget on small data: es, ru, hi (three scripts)", "",
                           "Default settings; 2,000 unlabeled transfer sentences per language beside the labeled ones; "
                           "dev capped at 500 per language, test at 2,000.", "", *table], args.note)


def write(rows: list[dict[str, Any]], name: str, lines: list[str], note: str | None) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{name}.json", {"rows": rows, "note": note})
    write_text(RESULTS / f"{name}.md", "\n".join(lines + (["", note] if note else [])) + "\n")
    print((RESULTS / f"{name}.md").read_text(encoding="utf-8"))


def main() -> None:
    parser = benchmark_parser(__doc__, "tabulate finished runs instead of running")
    parser.add_argument("--output-root", type=Path, default=Path("runs/teacher-budget"))
    parser.add_argument("--select", help="comma-separated teacher.min_steps values to compare on dev (teacher only)")
    parser.add_argument("--note", help="how the times were taken (e.g. what else ran), printed under the table")
    args = parser.parse_args()
    configure_logging(0)
    if args.select:
        select(args, [int(v) for v in args.select.split(",")])
    else:
        budget(args)


if __name__ == "__main__":
    main()
