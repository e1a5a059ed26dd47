"""The paper's scale (#16): one joint student over the 48 WikiANN languages of the local snapshot,
low-resource (`benchmarks/configs/wikiann48-lowres.yaml`), with the 50/200 also as one tagger
per language from the same teacher and cache. Runs each step (`xdner teach`, `annotate`,
`distil`, `evaluate`) in its own process and records its wall time, peak resident memory and
the run folder's disk use after it; a step that is interrupted resumes when the script is run
again, and every attempt is kept. Writes the report with the targets (joint 50/200 >= 95% of
the teacher's macro test F1, 300/600 >= 97%; for both, no language below 85%; the specialised taggers
against the joint student, as #24 asks) and the resources per
step to `benchmarks/results/wikiann48-lowres/`. A step recorded as finished is not run again.

    python benchmarks/wikiann48_lowres.py --output-dir runs/wikiann48-lowres     # hours on 2 cores; rerun to resume
    python benchmarks/wikiann48_lowres.py --output-dir runs/wikiann48-lowres --reuse   # report only
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _steps import run_step  # benchmarks/_steps.py: this script's folder is on sys.path
from _common import FinishedRun, benchmark_parser, resources_section, retention_targets, specialised_targets, targets_section  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.io import read_json, write_json
from xtremedistil_ner.log import configure as configure_logging
from xtremedistil_ner.pipeline import STEPS
from xtremedistil_ner.report import write_report

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "configs" / "wikiann48-lowres.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "wikiann48-lowres"
RETENTION = {"bilstm-50-200": 95.0, "bilstm-300-600": 97.0}  # % of the teacher's macro test F1
LANGUAGE_FLOOR = 85.0
SPECIALISED = ("bilstm-50-200-specialised", "bilstm-50-200")  # the taggers and the joint student they start from (#24)
ATTEMPTS = "resources.json"  # in the run folder: {"attempts": [one record per step attempt]}


def per_step(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per step: every attempt's time added up (a resumed step took all of them; one stopped from
    outside counts as far as its last report, a minute at most before it stopped), the highest
    peak RSS, and the disk use after the last attempt that ended (None if none did)."""
    out = []
    for step in STEPS:
        mine = [a for a in attempts if a["step"] == step]
        ended = [a for a in mine if a["disk_gib_after"] is not None]
        if mine:
            out.append({"step": step, "attempts": len(mine), "seconds": round(sum(a["seconds"] for a in mine), 1),
                        "peak_rss_gib": max(a["peak_rss_gib"] for a in mine),
                        "disk_gib": ended[-1]["disk_gib_after"]["total"] if ended else None})
    return out


def main() -> None:
    parser = benchmark_parser(__doc__, "write the report from the finished run without running a step")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/wikiann48-lowres"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to every step (e.g. a smaller trial: --set data.train_per_lang=20); the results "
                             "then go to --output-dir/results, not benchmarks/results")
    args = parser.parse_args()
    configure_logging(0)
    record = args.output_dir / ATTEMPTS
    attempts: list[dict[str, Any]] = read_json(record)["attempts"] if record.exists() else []
    if not args.reuse:
        for step in STEPS:
            if any(a["step"] == step and a["exit"] == 0 for a in attempts):
                continue  # finished in an earlier go
            attempts.append(run_step(step, CONFIG, args.output_dir, args.data_root, args.set,
                                     on_tick=lambda so_far: write_json(record, {"attempts": [*attempts, so_far]})))
            write_json(record, {"attempts": attempts})
            if attempts[-1]["exit"] != 0:
                raise SystemExit(f"xdner {step} stopped (exit {attempts[-1]['exit']}); rerun this script to resume")
    report = FinishedRun.open(args.output_dir, args.data_root).report()
    report["targets"] = retention_targets(report, RETENTION, LANGUAGE_FLOOR) + specialised_targets(report, *SPECIALISED)
    report["resources"] = per_step(attempts)
    results = args.output_dir / "results" if args.set else RESULTS
    write_report(report, results, targets_section(report["targets"]) + resources_section(report["resources"], report["timings"]))
    write_json(results / ATTEMPTS, {"attempts": attempts})
    print((results / "report.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
