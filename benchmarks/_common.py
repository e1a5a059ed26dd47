"""What the benchmark scripts share (`from _common import ...`: a script's folder is on sys.path):
a finished run directory read back (config, teacher, tokenizer, students, test sentences), the
data root, the command a result records, sizes of checkpoints, Markdown tables and figures.

A run is read here rather than through `pipeline.Run`, which validates and claims (locks) the
directory it runs in: a benchmark must leave the run it measures untouched.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xtremedistil_ner.config import RunConfig, load_config
from xtremedistil_ner.data.conll import Sentence, read_conll
from xtremedistil_ner.data.corpus import Corpus, build_corpus, split_file
from xtremedistil_ner.data.labels import LabelSet
from xtremedistil_ner.figures import share_of_teacher
from xtremedistil_ner.io import read_json
from xtremedistil_ner.layout import CONFIG, RunLayout
from xtremedistil_ner.teacher import load_teacher, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "data" / "ner"  # the shared data beside the checkout: <dataset>/<lang>/{train,dev,test}.txt


@dataclass
class FinishedRun(RunLayout):
    """An output directory of `xdner run`, opened read-only."""

    root: Path
    cfg: RunConfig

    @classmethod
    def open(cls, path: Path | str, data_root: str | None = None) -> "FinishedRun":
        """`data_root` replaces the config's `data.root` (the data may have moved since)."""
        path = Path(path)
        return cls(path, load_config(path / CONFIG, [f"data.root={data_root}"] if data_root else []))

    @property
    def name(self) -> str:
        return self.root.name

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return load_tokenizer(str(self.teacher_dir), self.cfg.teacher.trust_remote_code)

    @cached_property
    def labels(self) -> LabelSet:
        id2label = read_json(self.teacher_dir / "config.json")["id2label"]
        return LabelSet.from_list([id2label[str(i)] for i in range(len(id2label))])

    @cached_property
    def corpus(self) -> Corpus:
        """The run's sentences (labeled, dev, test, transfer), selected as the run selected them."""
        return build_corpus(self.cfg.data, self.cfg.languages, self.cfg.seed)

    def load_teacher(self) -> PreTrainedModel:
        return load_teacher(str(self.teacher_dir), self.labels, self.cfg.teacher.trust_remote_code)[0].eval()

    def test_sentences(self, limit: int | None = None, languages: Sequence[str] | None = None) -> list[Sentence]:
        """The first `limit` test sentences per language (default: the run's own `test_limit`),
        read from local CoNLL files with the package's reader, tags repaired as the run did."""
        limit = limit if limit is not None else self.cfg.data.test_limit
        out: list[Sentence] = []
        for lang in languages or self.cfg.languages:
            path = split_file(self.cfg.data, lang, "test")
            if path is None:
                raise ValueError(f"{self.root}: test data for {lang} comes from the Hub; benchmarks read local files (pass --data-root)")
            out += read_conll(path, lang, self.cfg.data.strict)[:limit]
        return out


def retention_targets(report: dict[str, Any], retention: Mapping[str, float], floor: float,
                      baseline: str | None = None, over_baseline: float | None = None) -> list[dict[str, Any]]:
    """Benchmark goals with their measured values (goals, not test assertions): each student's
    macro test F1 as a % of the teacher's against `retention[name]`, its lowest language against
    `floor` (languages the teacher scored 0 on have no share and are left out, and counted), and
    optionally its lead in macro F1 points over the gold-only `baseline`."""
    models, teacher = report["models"], report["models"]["teacher"]["test_f1"]
    if not teacher.get("macro"):
        raise ValueError("the teacher scored 0 macro F1 on test: there is no share of it to keep")
    scored = [lang for lang in report["languages"] if teacher.get(lang)]
    left_out = len(report["languages"]) - len(scored)
    targets = []
    for name, goal in retention.items():
        if name not in models:
            continue
        f1 = models[name]["test_f1"]
        kept = 100 * f1["macro"] / teacher["macro"]
        targets.append({"name": f"{name} macro F1 / teacher's", "value": kept, "goal": goal, "unit": "%", "met": bool(kept >= goal)})
        worst = min(scored, key=lambda lang: share_of_teacher(models, name, lang))
        low = share_of_teacher(models, name, worst)
        note = f"; {left_out} language(s) where the teacher scored 0 left out" if left_out else ""
        targets.append({"name": f"{name} lowest language ({worst}) / teacher's{note}", "value": low, "goal": floor,
                        "unit": "%", "met": bool(low >= floor)})
        if baseline in models and over_baseline is not None:
            gap = f1["macro"] - models[baseline]["test_f1"]["macro"]
            targets.append({"name": f"{name} over {baseline} (macro F1 points)", "value": gap, "goal": over_baseline,
                            "unit": " pts", "met": bool(gap >= over_baseline)})
    return targets


def specialised_targets(report: dict[str, Any], specialised: str, joint: str) -> list[dict[str, Any]]:
    """#24's goals for taggers specialised from a joint student, with their measured values: a
    macro test F1 at least the joint's, no language more than 0.5 points below it, none at 0, at
    most half the joint's parameters per tagger, and specialising all languages in no more time
    than distilling the joint student took."""
    models = report["models"]
    if specialised not in models or joint not in models:
        return []
    spec, base = models[specialised], models[joint]
    langs = report["languages"]
    worst = min(langs, key=lambda lang: spec["test_f1"][lang] - base["test_f1"][lang])
    zero = sum(1 for lang in langs if not spec["test_f1"][lang])
    share = 100 * spec["parameters"] / base["parameters"]
    time = 100 * sum(spec["stage_seconds"].values()) / sum(base["stage_seconds"].values())
    rows = [(f"{specialised} macro F1 - {joint}'s", spec["test_f1"]["macro"] - base["test_f1"]["macro"], 0.0, " pts", False),
            (f"{specialised} lowest language ({worst}) - {joint}'s", spec["test_f1"][worst] - base["test_f1"][worst], -0.5, " pts", False),
            (f"{specialised} languages at 0 F1", zero, 0, "", True),
            (f"{specialised} parameters per tagger / {joint}'s", share, 50.0, "%", True),
            (f"{specialised} time to specialise all taggers / {joint}'s distillation", time, 100.0, "%", True)]
    return [{"name": name, "value": value, "goal": goal, "unit": unit, "at_most": at_most,
             "met": bool(value <= goal if at_most else value >= goal)} for name, value, goal, unit, at_most in rows]


def targets_section(targets: Sequence[Mapping[str, Any]]) -> list[str]:
    """The Markdown of `retention_targets` (or any goals of that shape), for a report's appendix."""
    lines = ["", "## Targets", "", "| target | value | goal | met |", "|---|---|---|---|"]
    for t in targets:
        unit, bound = t.get("unit", "%"), "≤" if t.get("at_most") else "≥"
        lines.append(f"| {t['name']} | {t['value']:.1f}{unit} | {bound} {t['goal']:g}{unit} | {'yes' if t['met'] else 'no'} |")
    return lines


def resources_section(resources: Sequence[Mapping[str, Any]], timings: Mapping[str, float]) -> list[str]:
    """Per step (each run in its own process by `_steps.run_step`): attempts, time, memory, disk.
    Where the run's own record (`timings`, its timings.json: for distil, every student's training
    time wherever it ran) holds more than the recorded attempts, some work went unrecorded here,
    and the table says so."""
    lines = ["", "## Resources per step", "",
             "Each step in its own process; a resumed step's attempts added up, one stopped from outside as far as its "
             "last report (a minute at most before it stopped).", "",
             "| step | attempts | wall time (s) | peak RSS (GiB) | run folder after (GiB) |", "|---|---|---|---|---|"]
    lines += [f"| {r['step']} | {r['attempts']} | {r['seconds']:.0f} | {r['peak_rss_gib']:.2f} | "
              f"{'–' if r['disk_gib'] is None else format(r['disk_gib'], '.2f')} |"
              for r in resources]
    missing = [f"{r['step']} ({timings[r['step']]:,.0f} s in the run's timings, {r['seconds']:,.0f} s here)"
               for r in resources if timings.get(r["step"], 0) > r["seconds"] + 120]
    if missing:
        lines += ["", f"The run recorded more time than this runner for {', '.join(missing)}: attempts stopped from outside "
                  "before the runner reported as it went, or work done outside it (`xdner` run directly); their time and "
                  "memory are missing above."]
    return lines


def command_line(script: str, argv: Sequence[str]) -> str:
    """`python SCRIPT ARGS` as a result records it: absolute paths relative to the checkout, so
    the line says how to rerun it from any checkout, not where one machine kept its files."""
    return " ".join(["python", script, *(os.path.relpath(a, ROOT) if os.path.isabs(a) else a for a in argv)])


def file_mb(path: Path) -> float:
    return Path(path).stat().st_size / 2**20


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """Lines of a Markdown table; cells are written with `str`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def benchmark_parser(doc: str | None, reuse_help: str) -> argparse.ArgumentParser:
    """The options every run-based benchmark takes: where the data is and whether to reuse finished runs."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument("--reuse", action="store_true", help=reuse_help)
    return parser


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib figure as PNG and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
