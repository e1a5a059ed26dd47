"""`xdner demo --quick`: the README's main command, shrunk, on the real embedded teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xtremedistil_ner.cli import main


def test_quick_demo_runs_the_whole_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--quick", "--output-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "SYNTHETIC demo data" in err and "| teacher |" in out and "speedup vs teacher" in out
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "bilstm-50-200", "bilstm-50-200-gold-only"}
    assert "## What distillation buys" in out
    assert set(report["languages"]) == {"de", "en", "es", "hi", "ru", "zh"}
    student = report["models"]["bilstm-50-200"]
    assert student["compression"] > 50 and student["speedup"] > 1
    assert (tmp_path / "data" / "README.md").exists()
    assert (tmp_path / "run" / "students" / "bilstm-50-200" / "joint" / "model" / "model.safetensors").exists()
