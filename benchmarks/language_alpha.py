"""Language sampling (#24): what `language_alpha` on the transfer stages does to a joint 50/200
BiLSTM when its languages' text is very unequal. Nine WikiANN languages with the 48-language run's
imbalance (`benchmarks/configs/language-alpha.yaml`: 100 to 20,000 transfer sentences a
language), one teacher and one transfer cache, one student per alpha. Writes
`benchmarks/results/language-alpha/alpha.{json,md}`: per language, its transfer sentences and
each student's dev and test F1 with their shares of the teacher's. Chosen on dev; test is
reported, never used to choose.

    python benchmarks/language_alpha.py --output-dir runs/language-alpha
    python benchmarks/language_alpha.py --output-dir runs/language-alpha --reuse   # tables only
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import FinishedRun, benchmark_parser, command_line, markdown_table  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.config import load_config
from xtremedistil_ner.io import write_json, write_text
from xtremedistil_ner.log import configure as configure_logging
from xtremedistil_ner.pipeline import Run

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "configs" / "language-alpha.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "language-alpha"


def table(run: FinishedRun, report: dict[str, Any]) -> dict[str, Any]:
    """Per student and language: dev and test F1 and their shares of the teacher's."""
    teacher_dev = run.teacher_record()["best_dev"]
    teacher_test = report["models"]["teacher"]["test_f1"]
    languages = sorted(run.cfg.languages, key=lambda lang: report["data"]["languages"][lang]["transfer"])
    students = {}
    for s in run.cfg.students:
        dev, test = run.progress(s.name)["final_dev"], report["models"][s.name]["test_f1"]
        alpha = next((st.language_alpha for st in s.stages or [] if st.language_alpha is not None), None)
        students[s.name] = {"language_alpha": alpha, **{lang: {
            "dev_f1": dev[lang]["f1"], "dev_share": 100 * dev[lang]["f1"] / teacher_dev[lang]["f1"],
            "test_f1": test[lang], "test_share": 100 * test[lang] / teacher_test[lang]}
            for lang in [*languages, "macro"]}}
    return {"languages": languages, "transfer": {lang: report["data"]["languages"][lang]["transfer"] for lang in languages},
            "teacher": {lang: {"dev_f1": teacher_dev[lang]["f1"], "test_f1": teacher_test[lang]} for lang in [*languages, "macro"]},
            "students": students}


def markdown(result: dict[str, Any]) -> str:
    names = list(result["students"])
    header = ["language", "transfer sentences", "teacher", *[f"{n} (alpha {result['students'][n]['language_alpha'] or 'unset'})" for n in names]]

    def rows(split: str) -> list[list[object]]:
        out = []
        for lang in [*result["languages"], "macro"]:
            cells = [f"{s[lang][f'{split}_f1']:.2f} ({s[lang][f'{split}_share']:.1f}%)" for s in result["students"].values()]
            out.append([lang, result["transfer"].get(lang, ""), f"{result['teacher'][lang][f'{split}_f1']:.2f}", *cells])
        return out

    return "\n".join([
        "# Language sampling: a joint 50/200 BiLSTM on nine languages of very unequal text", "",
        f"Command: `{result['command']}`", "",
        "F1 (seqeval, strict IOB2) and its share of the teacher's. `language_alpha` is set on the representation and logits "
        "stages; the gold stage reads the labeled sentences as they come. Chosen on dev; test is reported, never used to choose.", "",
        "## Dev", "", *markdown_table(header, rows("dev")), "",
        "## Test", "", *markdown_table(header, rows("test")), ""])


def main() -> None:
    parser = benchmark_parser(__doc__, "tabulate the finished run's report.json instead of running")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/language-alpha"))
    args = parser.parse_args()
    configure_logging(0)
    command = command_line("benchmarks/language_alpha.py", ["--output-dir", str(args.output_dir)])
    if args.reuse:
        report = FinishedRun.open(args.output_dir).report()
    else:
        cfg = load_config(CONFIG, [f"output_dir={args.output_dir}", f"data.root={args.data_root}"])
        report = Run(cfg, command=command).run_all()
    result = {"command": command, **table(FinishedRun.open(args.output_dir), report)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "alpha.json", result)
    write_text(RESULTS / "alpha.md", markdown(result))
    print((RESULTS / "alpha.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
