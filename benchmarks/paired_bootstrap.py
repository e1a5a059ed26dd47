"""Is one student's test F1 on a language really below another's, or within what that
language's test set can tell apart? (#24: per-language taggers are to stay within 0.5 of the
joint student on every language, and eleven WikiANN languages have 100 test sentences.) Both
students of a finished run tag its test sentences once (a per-language student with each
language's own tagger); 2,000 paired draws of each language's test sentences give the F1
difference's 90% interval and how often it is at least -MARGIN. A report, never a choice: test
sentences choose nothing.

    python benchmarks/paired_bootstrap.py --run runs/wikiann48-lowres --base bilstm-50-200 --other bilstm-50-200-specialised
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from xtremedistil_ner.threads import configure_threads

configure_threads()  # before torch loads, as xdner does

from accelerate import Accelerator  # noqa: E402
from _common import FinishedRun, command_line, markdown_table  # noqa: E402  (benchmarks/_common.py: this script's folder is on sys.path)
from xtremedistil_ner.data.conll import Sentence  # noqa: E402
from xtremedistil_ner.encoding import encode  # noqa: E402
from xtremedistil_ner.io import write_json, write_text  # noqa: E402
from xtremedistil_ner.layout import FINAL  # noqa: E402
from xtremedistil_ner.scoring import entity_counts, entity_f1, f1_differences, logits_fn, predict_tags  # noqa: E402
from xtremedistil_ner.steps.students import restrict  # noqa: E402
from xtremedistil_ner.students import load_student  # noqa: E402
from xdner_runtime.windows import Window  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "paired-bootstrap"
RESAMPLES = 2000
MARGIN = 0.5  # #24: a tagger may be this far below the joint student on a language


def student_counts(run: FinishedRun, name: str, tests: list[Sentence], windows: list[Window], acc: Accelerator) -> dict[str, np.ndarray]:
    """Per language, the entity counts of `name`'s test predictions, one row per sentence: its
    joint model over every language, or each language's own tagger on its sentences (as
    `xdner evaluate` tags them)."""
    spec = next((s for s in run.cfg.students if s.name == name), None)
    if spec is None:
        raise SystemExit(f"{run.root}: no student {name!r} in its config (students: {[s.name for s in run.cfg.students]})")
    scopes = run.cfg.languages if (spec.mode or run.cfg.distil.mode) == "per_language" else [None]
    preds: list[list[str]] = [[] for _ in tests]
    for scope in scopes:
        path = run.student_dir(name, scope) / FINAL
        if not path.is_dir():
            raise SystemExit(f"{run.root}: no distilled student {name!r}{f' for {scope}' if scope else ''} ({path} is missing)")
        model = load_student(path)
        idx, sents, wins = restrict(tests, windows, scope)
        out = predict_tags(logits_fn(model), sents, wins, model.config.id2label, run.tokenizer.pad_token_id,
                           run.cfg.distil.eval_batch_size, acc, f"{name} {scope or 'test'}")
        for i, p in zip(idx, out):
            preds[i] = p
    return entity_counts(tests, preds)


def f1(counts: np.ndarray) -> float:
    return float(entity_f1(counts.sum(axis=0)))


def compare(base: dict[str, np.ndarray], other: dict[str, np.ndarray], seed: int) -> dict[str, dict[str, Any]]:
    """Per language: both F1s, the difference, its 90% interval and share of draws within the
    margin, rounded for reading; whether it is below the margin, and whether the interval lies
    wholly below 0, decided before rounding."""
    out = {}
    for lang, d in f1_differences(base, other, RESAMPLES, seed).items():
        diff, (low, high) = f1(other[lang]) - f1(base[lang]), np.percentile(d, [5, 95])
        out[lang] = {"sentences": len(base[lang]), "base": round(f1(base[lang]), 2), "other": round(f1(other[lang]), 2),
                     "difference": round(diff, 2), "interval_90": [round(float(low), 2), round(float(high), 2)],
                     "share_within_margin": round(float((d >= -MARGIN).mean()), 3),
                     "below_margin": bool(diff < -MARGIN), "loss_told": bool(high < 0)}
    return out


def markdown(result: dict[str, Any]) -> str:
    rows = sorted(result["languages"].items(), key=lambda kv: kv[1]["difference"])
    below = [lang for lang, r in rows if r["below_margin"]]
    surely = [lang for lang, r in rows if r["loss_told"]]
    lines = [f"# {result['other']} against {result['base']} on {result['run']}'s test sentences, per language", "",
             f"Command: `{result['command']}`", "",
             f"Paired bootstrap, {RESAMPLES:,} draws of each language's test sentences; report only (test sentences choose "
             "nothing). Sorted by the difference.", "",
             f"- {len(below)} of {len(rows)} languages more than {MARGIN} below {result['base']}: {', '.join(below) or 'none'}",
             f"- with the 90% interval wholly below 0 (a loss the test set can tell): {', '.join(surely) or 'none'}", "",
             *markdown_table(["language", "test sentences", result["base"], result["other"], "difference", "90% interval",
                              f"share of draws ≥ -{MARGIN}"],
                             [[lang, r["sentences"], f"{r['base']:.2f}", f"{r['other']:.2f}", f"{r['difference']:+.2f}",
                               f"[{r['interval_90'][0]:+.2f}, {r['interval_90'][1]:+.2f}]", f"{r['share_within_margin']:.2f}"]
                              for lang, r in rows])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished run's output directory")
    parser.add_argument("--base", required=True, help="the student compared against (e.g. the joint student)")
    parser.add_argument("--other", required=True, help="the student compared (e.g. its specialised taggers)")
    parser.add_argument("--data-root", default=None, help="where the run's local data is now (replaces its data.root)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = FinishedRun.open(args.run, args.data_root)
    tests, acc = run.test_sentences(), Accelerator(cpu=True)
    windows = encode(tests, run.tokenizer, run.cfg.teacher.max_length, None)
    base, other = (student_counts(run, name, tests, windows, acc) for name in (args.base, args.other))
    result = {"run": run.name, "base": args.base, "other": args.other, "command": command_line("benchmarks/paired_bootstrap.py", sys.argv[1:]),
              "resamples": RESAMPLES, "margin": MARGIN, "languages": compare(base, other, args.seed)}
    stem = args.out / f"{run.name}-{args.other}-vs-{args.base}"
    write_json(stem.with_suffix(".json"), result)
    write_text(stem.with_suffix(".md"), markdown(result))
    print(stem.with_suffix(".md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
