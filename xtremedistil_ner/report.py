"""The run's report: teacher and students side by side per language (test F1, and per entity
type precision and recall), parameter counts, compression, latency and speedup, stage wall times; JSON + Markdown, with a manifest of
both files' sizes and sha256 (the report is what gets copied around and quoted)."""

from __future__ import annotations

import functools
import os
import platform
import statistics
from pathlib import Path
from typing import Any, Sequence

from .figures import LANGUAGES_PNG, PNG, by_share, first_student, percent, plot_curves, plot_languages, share_of_teacher
from .io import write_json, write_manifest, write_text
from .layout import JOINT
from .stages import SETUP

REPORT_FILES = ("report.json", "report.md")
WIDE = 10  # with more languages than this, languages become rows
MANIFEST = "report.manifest.json"


def render_markdown(report: dict[str, Any], appendix: Sequence[str] = ()) -> str:
    """The report as Markdown; `appendix` (Markdown lines) is what a benchmark adds at the end."""
    models = report["models"]
    langs = report["languages"]
    lines = [f"# xtremedistil-ner report: {report.get('name', '')}".rstrip(), ""]
    if report.get("command"):
        lines += [f"Command: `{report['command']}`", ""]
    if report.get("machine"):
        lines += [f"Machine: {report['machine']}", ""]
    lines += ["## Test F1 (seqeval, strict IOB2, word level)", ""]
    wide = len(langs) > WIDE
    shown = [] if wide else langs  # many languages: one row each, below, instead of a column each
    header = "| model | params | compression | " + "".join(f"{l} | " for l in shown) + "macro |" + (" median |" if wide else "")
    lines += [header, "|" + "---|" * (len(shown) + 4 + wide)]
    for name, m in models.items():
        f1 = m["test_f1"]
        cells = "".join(f"{f1[l]:.2f} | " if l in f1 else "– | " for l in shown)
        label = f"{name} (one per language)" if m.get("mode") == "per_language" else name
        lines.append(f"| {label} | {m['parameters'] / 1e6:.2f}M | {m.get('compression', 1.0):.1f}x | {cells}"
                     f"{f1.get('macro', float('nan')):.2f} |" + (f" {_median(f1, langs):.2f} |" if wide else ""))
    if wide:
        lines += per_language_table(report) + ["", f"![test F1 per language]({LANGUAGES_PNG})"]
    for name, m in models.items():
        if m.get("baseline_of") in models:
            distilled = models[m["baseline_of"]]["test_f1"]
            gain = [f"{distilled[l] - m['test_f1'][l]:+.2f}" if l in m["test_f1"] else "–" for l in [*shown, "macro"]]
            if wide:
                gain.append(f"{_median(distilled, langs) - _median(m['test_f1'], langs):+.2f}")
            lines += ["", "## What distillation buys", "",
                      f"`{name}` is `{m['baseline_of']}` trained on the labeled sentences alone (random initialisation, no "
                      "teacher): what a user gets without distillation. Test F1 gained by distilling"
                      + (" (per language: the table above)" if wide else "") + ":", "",
                      "| | " + "".join(f"{l} | " for l in shown) + "macro |" + (" median |" if wide else ""),
                      "|" + "---|" * (len(shown) + 2 + wide),
                      f"| {m['baseline_of']} vs {name} | " + " | ".join(gain) + " |"]
    lines += joint_vs_per_language(report) + entity_type_table(report) + latency_table(report) + stage_table(models)
    if any(m.get("curves") for m in models.values()):
        lines += ["", "## Training curves", "", "Train loss and dev macro F1 per epoch over each student's sub-stages "
                  "(stage boundaries dashed):", "", f"![training curves]({PNG})"]
    if report.get("timings"):
        lines += ["", "## Wall time per step", "", "| step | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in step_times(report["timings"]).items()]
    if report.get("data"):
        lines += ["", "## Data", "", "| lang | train | dev | test | transfer | repaired tags |", "|---|---|---|---|---|---|"]
        for lang, d in report["data"]["languages"].items():
            lines.append(f"| {lang} | {d['train']} | {d['dev']} | {d['test']} | {d['transfer']} | {d['repaired_tags']} |")
        if report["data"].get("labels_not_in_train"):
            lines += ["", f"Labels in dev/test never seen in train: {', '.join(report['data']['labels_not_in_train'])}"]
    return "\n".join([*lines, *appendix]) + "\n"


def latency_table(report: dict[str, Any]) -> list[str]:
    """Each timed model's batch latency and speedup over the teacher, flagged if timed on a busy machine."""
    models = report["models"]
    timed = {name: m for name, m in models.items() if "latency" in m}
    if not timed:
        return []
    lat = next(iter(timed.values()))["latency"]
    lines = ["", f"## Batch-inference latency (batch {lat['batch_size']}, length {lat['seq_len']}, {lat['threads']} threads, {report.get('device', 'cpu')})", ""]
    busy = busy_note(models)
    if busy:
        lines += [busy, ""]
    lines += ["| model | median ms | sentences/s | speedup vs teacher |", "|---|---|---|---|"]
    for name, m in timed.items():
        l = m["latency"]
        lines.append(f"| {name} | {l['median_ms']:.2f} | {l['sentences_per_s']:.0f} | {m.get('speedup', 1.0):.1f}x |")
    return lines


def stage_table(models: dict[str, Any]) -> list[str]:
    """Each student's distillation wall time per stage: where its training time went."""
    stages = {name: m["stage_seconds"] for name, m in models.items() if m.get("stage_seconds")}
    if not stages:
        return []
    names = sorted(dict.fromkeys(st for per in stages.values() for st in per), key=lambda st: st != SETUP)  # set-up first
    lines = ["", "## Distillation wall time per stage (seconds)", "", "| student | " + " | ".join(names) + " | total |",
             "|" + "---|" * (len(names) + 2)]
    for name, per in stages.items():
        lines.append(f"| {name} | " + " | ".join(f"{per[st]:.0f}" if st in per else "–" for st in names)
                     + f" | {sum(per.values()):.0f} |")
    return lines


SIZE = ("type", "embedding_dim", "hidden_dim", "num_layers", "num_heads", "ff_dim")


def joint_vs_per_language(report: dict[str, Any]) -> list[str]:
    """Each joint student, then every set of per-language taggers of its type and size (those
    specialised from it and those trained from scratch): F1, what the taggers weigh together (a
    per-language row's params above are per tagger) and what they took to distil."""
    models, langs = report["models"], report["languages"]
    distilled = {n: m for n, m in models.items() if n != "teacher" and "baseline_of" not in m}
    groups: dict[str, list[str]] = {}  # joint student -> its per-language sets
    for p, m in distilled.items():
        if m.get("mode") == "per_language":
            joint = next((j for j, n in distilled.items() if n.get("mode") == "joint" and all(n.get(k) == m.get(k) for k in SIZE)), None)
            if joint is not None:
                groups.setdefault(joint, []).append(p)
    if not groups:
        return []
    wide = len(langs) > WIDE
    shown = [] if wide else langs
    lines = ["", "## One joint tagger or one per language?", "",
             "Same type and size; parameters and distillation time over all of a model's taggers; *languages better*: "
             "against the joint student (for the joint student: against the first set of taggers).", "",
             "| model | taggers | parameters | distillation (s) | " + "".join(f"{l} | " for l in shown) + "macro |"
             + (" median |" if wide else "") + " languages better |", "|" + "---|" * (len(shown) + 6 + wide)]
    for joint, sets in groups.items():
        for name in (joint, *sets):
            m, f1 = models[name], models[name]["test_f1"]
            other = sets[0] if name == joint else joint
            taggers = len(langs) if m["mode"] == "per_language" else 1
            better = sum(f1[l] > models[other]["test_f1"][l] for l in langs)
            lines.append(f"| {name} | {taggers} | {m.get('total_parameters', m['parameters']) / 1e6:.2f}M | "
                         f"{sum(m.get('stage_seconds', {}).values()):.0f} | " + "".join(f"{f1[l]:.2f} | " for l in shown)
                         + f"{f1['macro']:.2f} |" + (f" {_median(f1, langs):.2f} |" if wide else "") + f" {better} of {len(langs)} |")
    return lines


def entity_type_table(report: dict[str, Any]) -> list[str]:
    """Each model's test F1 per entity type, with precision/recall (report.json has the counts):
    which types a model misses. Over many languages, their mean instead of a column each."""
    models, langs = report["models"], report["languages"]
    per_model = {name: m["test_types"] for name, m in models.items() if m.get("test_types")}
    if not per_model:
        return []
    columns = ["mean over languages"] if len(langs) > WIDE else langs
    lines = ["", "## Test F1 per entity type: F1 (precision/recall)", "", "| model | type | " + " | ".join(columns) + " |",
             "|" + "---|" * (len(columns) + 2)]
    for name, types in per_model.items():
        for kind in sorted({t for per_lang in types.values() for t in per_lang}):
            rows = {lang: types[lang][kind] for lang in langs if kind in types.get(lang, {})}
            if len(langs) > WIDE and rows:
                rows = {columns[0]: {k: statistics.mean(r[k] for r in rows.values()) for k in ("f1", "precision", "recall")}}
            cells = [f"{r['f1']:.1f} ({r['precision']:.0f}/{r['recall']:.0f})" if (r := rows.get(c)) else "–" for c in columns]
            lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    return lines


def step_times(timings: dict[str, float]) -> dict[str, float]:
    """The recorded times, with a per-language student's taggers (`distil:NAME:LANG`) added up
    into one row: 48 languages would otherwise be 48 rows."""
    out: dict[str, float] = {}
    for key, seconds in timings.items():
        parts = key.split(":")
        if len(parts) == 3 and parts[2] != JOINT:
            key = f"{parts[0]}:{parts[1]}:per-language"
        out[key] = out.get(key, 0.0) + seconds
    return out


def _median(f1: dict[str, float], langs: list[str]) -> float:
    return statistics.median(f1[l] for l in langs if l in f1)


def per_language_table(report: dict[str, Any]) -> list[str]:
    """Languages as rows (for runs over many): grouped by script, each group sorted by the first
    student's share of the teacher's F1, lowest first; then the five lowest overall."""
    models, langs = report["models"], report["languages"]
    scripts = report.get("scripts", {})
    teacher = models["teacher"]["test_f1"]
    students = [n for n in models if n != "teacher"]
    key = first_student(models)
    kept = functools.partial(share_of_teacher, models)
    share = by_share(models, key)
    order = sorted(langs, key=lambda l: (scripts.get(l, "–"), share(l)))
    lines = ["", "## Test F1 per language", "",
             f"Grouped by script; within a script, by {key}'s share of the teacher's F1, lowest first.", "",
             "| language | script | teacher | " + " | ".join(f"{n} | % of teacher" for n in students) + " |",
             "|" + "---|" * (3 + 2 * len(students))]
    for lang in order:
        cells = " | ".join(f"{models[n]['test_f1'][lang]:.2f} | {percent(kept(n, lang))}" for n in students)
        lines.append(f"| {lang} | {scripts.get(lang, '–')} | {teacher[lang]:.2f} | {cells} |")
    if students:
        worst = sorted(langs, key=share)[:5]
        lines += ["", f"Lowest five for {key}: " + ", ".join(f"{l} {percent(kept(key, l))}" for l in worst) + "."]
    return lines


def busy_note(models: dict[str, Any]) -> str | None:
    """A warning when some model was timed while other work ran on the CPU (1-minute load
    average above the run's own threads, which the evaluation just before keeps busy, by more
    than half the cores): its speedup then says little; `benchmarks/latency.py` on an idle
    machine is the measurement to quote."""
    others = max(1.0, (os.cpu_count() or 1) / 2)
    loads = {name: (m["latency"].get("load_average_1min"), m["latency"].get("threads", 1)) for name, m in models.items() if "latency" in m}
    busy = {n: l for n, (l, threads) in loads.items() if l is not None and l > threads + others}
    if not busy:
        return None
    return ("**Timed on a busy machine** (1-minute load average " + ", ".join(f"{n} {l:.1f}" for n, l in busy.items())
            + f" on {os.cpu_count()} CPUs): these latencies and speedups are distorted; run `benchmarks/latency.py` "
            "on an idle machine for figures to quote.")


def machine_description() -> str:
    """CPU model, core count, torch version and threads (and the GPU): what timings depend on,
    recorded beside them in the report and in benchmark results. (torch is imported here, so the
    report and the cards load without it.)"""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}"


def write_report(report: dict[str, Any], out_dir: Path, appendix: Sequence[str] = ()) -> None:
    """`verify_manifest(out_dir, MANIFEST)` later tells whether the files are as written. The
    training-curves PNG is drawn from the report's own data, so a copied report.json redraws it.
    `appendix`: Markdown lines a benchmark adds at the end of report.md (its targets, resources)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    curves = {name: m["curves"] for name, m in report["models"].items() if m.get("curves")}
    files = REPORT_FILES
    if curves:
        plot_curves(curves, Path(out_dir) / PNG)
        files += (PNG,)
    if len(report["languages"]) > WIDE:
        plot_languages(report, Path(out_dir) / LANGUAGES_PNG)
        files += (LANGUAGES_PNG,)
    write_json(Path(out_dir) / "report.json", report)
    write_text(Path(out_dir) / "report.md", render_markdown(report, appendix))
    write_manifest(Path(out_dir), MANIFEST, files=files, name=report.get("name", ""))
