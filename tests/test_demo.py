"""`xdner demo --quick`: the README's main command, shrunk, on the real embedded teacher, run
twice in one folder as a user reruns it, stderr to a file; its students run every Python snippet
of the README."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from xtremedistil_ner.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def demo(out: Path) -> tuple[str, bytes]:
    """`xdner demo --quick` as a user runs it, in its own process (the CLI settles the threads
    before torch loads) with stderr redirected to a file: its stdout, and that file's bytes."""
    err = out.parent / f"{out.name}.stderr"
    with open(err, "wb") as sink:
        done = subprocess.run([sys.executable, "-m", "xtremedistil_ner.cli", "demo", "--quick", "--output-dir", str(out)],
                              stdout=subprocess.PIPE, stderr=sink, text=True, timeout=1800)
    assert done.returncode == 0, err.read_text(encoding="utf-8")
    return done.stdout, err.read_bytes()


def test_quick_demo_runs_the_whole_pipeline_twice_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "demo"
    out, err = demo(run_dir)
    assert b"SYNTHETIC demo data" in err and "| teacher |" in out and "speedup vs teacher" in out
    # Redirected stderr: plain lines, no bars redrawn, no library load reports or ANSI codes.
    assert b"\x1b" not in err and b"\r" not in err and b"LOAD REPORT" not in err and len(err) < 5000, err.decode()
    report = json.loads((run_dir / "run" / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "bilstm-50-200", "bilstm-50-200-gold-only"}
    assert "## What distillation buys" in out and "## Test F1 per entity type" in out
    assert set(report["languages"]) == {"de", "en", "es", "hi", "ru", "zh"}
    student = report["models"]["bilstm-50-200"]
    assert student["compression"] > 50 and student["speedup"] > 1 and "PER" in student["test_types"]["en"]
    model = run_dir / "run" / "students" / "bilstm-50-200" / "joint" / "model"
    assert model.joinpath("model.safetensors").exists()
    card = model.joinpath("README.md").read_text(encoding="utf-8")
    assert "license: mit" in card and "synthetic data" in card and "nan%" not in card
    # The rerun in the same folder skips every step and rewrites the cards from plain floats read
    # back (a teacher that scored 0 somewhere once made this a ZeroDivisionError).
    assert b"skipping" in demo(run_dir)[1]
    # The data's README names commands that work: that rerun, and the check of its files.
    commands = re.findall(r"`(xdner (?:validate|demo) [^`]*)`", (run_dir / "data" / "README.md").read_text(encoding="utf-8"))
    assert sorted(c.split()[1] for c in commands) == ["demo", "validate"]
    assert shlex.split(next(c for c in commands if " demo " in c))[1:] == ["demo", "--output-dir", str(run_dir), "--quick"]
    monkeypatch.chdir(run_dir / "data")  # where its README is read
    assert main(shlex.split(next(c for c in commands if " validate " in c))[1:]) == 0
    assert main(["export", "--model", str(model), "--int8"]) == 0  # the graph the README's runtime snippet loads
    for block in PYTHON_BLOCKS:  # every snippet of the README, on the demo's student (model_max_length 64)
        exec(block.replace("runs/mine/students/bilstm-50-200/joint/model", str(model)).replace("PATH_OR_HUB_ID", str(model)), {})
