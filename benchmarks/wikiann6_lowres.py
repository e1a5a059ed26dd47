"""The core issue's acceptance benchmark: WikiANN, 6 languages, low-resource setting.

Runs (or, with an existing finished run directory, reuses) `xdner run` on
`benchmarks/configs/wikiann6-lowres.yaml`, checks the targets — student 300/600 macro test F1
≥ 95% of the teacher's, student 50/200 ≥ 92% — and writes the report with the targets to
`benchmarks/results/wikiann6-lowres/report.{json,md}`.

    python benchmarks/wikiann6_lowres.py --output-dir runs/wikiann6-lowres --data-root ../shared/data/ner
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xtremedistil_ner.config import load_config
from xtremedistil_ner.pipeline import Run
from xtremedistil_ner.report import write_report

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "configs" / "wikiann6-lowres.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "wikiann6-lowres"
TARGETS = {"bilstm-300-600": 95.0, "bilstm-50-200": 92.0}


def with_targets(report: dict) -> dict:
    teacher = report["models"]["teacher"]["test_f1"]["macro"]
    report["targets"] = [
        {
            "name": f"{name} macro F1 / teacher's",
            "value": 100 * report["models"][name]["test_f1"]["macro"] / teacher,
            "goal": goal,
            "met": 100 * report["models"][name]["test_f1"]["macro"] / teacher >= goal,
        }
        for name, goal in TARGETS.items()
        if name in report["models"]
    ]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="runs/wikiann6-lowres")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "ner"))
    parser.add_argument("--reuse", action="store_true", help="take report.json from a finished run instead of running")
    args = parser.parse_args()
    out = Path(args.output_dir)
    if args.reuse:
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    else:
        cfg = load_config(CONFIG, [f"output_dir={out}", f"data.root={args.data_root}"])
        report = Run(cfg, command=f"python benchmarks/wikiann6_lowres.py --output-dir {out}").run_all()
    report = with_targets(report)
    write_report(report, RESULTS)
    print((RESULTS / "report.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
