"""`xdner demo --quick`: the README's main command, shrunk, on the real embedded teacher, run
twice in one folder as a user reruns it; its students run every Python snippet of the README."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from xtremedistil_ner.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_quick_demo_runs_the_whole_pipeline_twice_quietly(tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch) -> None:
    assert main(["demo", "--quick", "--output-dir", str(tmp_path)]) == 0
    out, err = capfd.readouterr()
    assert "SYNTHETIC demo data" in err and "| teacher |" in out and "speedup vs teacher" in out
    # Redirected stderr: plain lines, no bars redrawn, no library load reports or ANSI codes.
    assert "\x1b" not in err and "\r" not in err and "LOAD REPORT" not in err and len(err.encode()) < 5000, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "bilstm-50-200", "bilstm-50-200-gold-only"}
    assert "## What distillation buys" in out and "## Test F1 per entity type" in out
    assert set(report["languages"]) == {"de", "en", "es", "hi", "ru", "zh"}
    student = report["models"]["bilstm-50-200"]
    assert student["compression"] > 50 and student["speedup"] > 1 and "PER" in student["test_types"]["en"]
    model = tmp_path / "run" / "students" / "bilstm-50-200" / "joint" / "model"
    assert model.joinpath("model.safetensors").exists()
    card = model.joinpath("README.md").read_text(encoding="utf-8")
    assert "license: mit" in card and "synthetic data" in card and "nan%" not in card
    # The data's README names commands that work: the rerun (every step skipped, the cards rewritten
    # from plain floats read back: a teacher that scored 0 somewhere once made this a ZeroDivisionError).
    data_readme = (tmp_path / "data" / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"`(xdner (?:validate|demo) [^`]*)`", data_readme)
    assert len(commands) == 2
    monkeypatch.chdir(tmp_path / "data")  # where its README is read
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0, command
    assert "skipping" in capfd.readouterr().err
    for block in PYTHON_BLOCKS:  # every snippet of the README, on the demo's student (model_max_length 64)
        exec(block.replace("runs/mine/students/bilstm-50-200/joint/model", str(model)).replace("PATH_OR_HUB_ID", str(model)), {})
