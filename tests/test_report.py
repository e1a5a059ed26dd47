"""The report over many languages: languages as rows grouped by script, the lowest five named,
macro and median, and a per-language figure; over few, a column per language."""

from __future__ import annotations

import json
import re
from pathlib import Path

from xtremedistil_ner.io import verify_manifest
from xtremedistil_ner.report import WIDE, render_markdown, step_times, write_report

SCRIPTS = ["Latin", "Cyrillic", "Arabic", "Devanagari"]


def report(n: int) -> dict:
    langs = [f"l{i:02d}" for i in range(n)]
    teacher = {lang: 80.0 for lang in langs}
    student = {lang: 80.0 - i for i, lang in enumerate(langs)}  # l00 keeps 100%, the last the least
    baseline = {lang: 40.0 for lang in langs}
    for f1 in (teacher, student, baseline):
        f1["macro"] = sum(f1.values()) / n
    return {"name": "many", "languages": langs, "scripts": {lang: SCRIPTS[i % 4] for i, lang in enumerate(langs)},
            "models": {"teacher": {"test_f1": teacher, "parameters": 100},
                       "s": {"test_f1": student, "parameters": 10, "compression": 10.0},
                       "s-gold-only": {"test_f1": baseline, "parameters": 10, "compression": 10.0, "baseline_of": "s"}}}


def test_many_languages_become_rows_grouped_by_script(tmp_path: Path) -> None:
    r = report(48)
    text = render_markdown(r)
    first_table = text.split("## Test F1 per language")[0]
    assert "| l00 |" not in first_table and "| s | 0.00M | 10.0x | 56.50 | 56.50 |" in first_table  # macro, median
    rows = [line for line in text.splitlines() if re.match(r"\| l\d\d \|", line)]
    assert len(rows) == 48
    scripts = [row.split(" | ")[1] for row in rows]
    assert scripts == sorted(scripts)  # grouped by script
    latin = [row for row in rows if " | Latin | " in row]
    assert latin[0].startswith("| l44 |") and latin[-1].startswith("| l00 |")  # lowest share first
    assert "Lowest five for s: l47 41.2%, l46 42.5%, l45 43.8%, l44 45.0%, l43 46.2%." in text
    assert "| s vs s-gold-only | +16.50 | +16.50 |" in text
    write_report(r, tmp_path)
    assert (tmp_path / "languages.png").read_bytes()[:4] == b"\x89PNG" and "![test F1 per language](languages.png)" in text
    assert "languages.png" in json.loads((tmp_path / "report.manifest.json").read_text())["files"]
    assert verify_manifest(tmp_path, "report.manifest.json") == []


def test_few_languages_keep_a_column_each(tmp_path: Path) -> None:
    r = report(WIDE)
    text = render_markdown(r)
    assert "## Test F1 per language" not in text and "| model | params | compression | l00 |" in text
    write_report(r, tmp_path)
    assert not (tmp_path / "languages.png").exists()


def test_per_language_taggers_are_set_beside_the_joint_student_of_their_size() -> None:
    r = report(48)
    models = r["models"]
    models["s"].update(mode="joint", type="bilstm", embedding_dim=50, hidden_dim=200, stage_seconds={"gold": 100.0})
    per = {lang: 80.0 - (0.5 if i % 2 else 2.0) * i for i, lang in enumerate(r["languages"])}  # better on odd languages
    per["macro"] = sum(per.values()) / 48
    models["p"] = {"test_f1": per, "parameters": 5, "total_parameters": 240, "compression": 20.0, "mode": "per_language",
                   "type": "bilstm", "embedding_dim": 50, "hidden_dim": 200, "stage_seconds": {"logits": 30.0, "gold": 50.0}}
    models["other-size"] = {**models["p"], "hidden_dim": 100}
    text = render_markdown(r)
    section = text.split("## One joint tagger or one per language?")[1].split("##")[0]
    assert "| s | 1 | 0.00M | 100 | 56.50 | 56.50 | 23 of 48 |" in section  # s wins where p loses 2 points a language
    assert "| p | 48 | 0.00M | 80 |" in section and "| 24 of 48 |" in section
    assert "other-size" not in section  # no joint student of its size
    assert "| p (one per language) |" in text


def test_a_per_language_students_times_are_one_row() -> None:
    timings = {"teach": 10.0, "distil:s:joint": 5.0, "distil:p:de": 2.0, "distil:p:en": 3.0, "distil": 10.0}
    assert step_times(timings) == {"teach": 10.0, "distil:s:joint": 5.0, "distil:p:per-language": 5.0, "distil": 10.0}
