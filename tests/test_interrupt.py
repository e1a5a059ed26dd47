"""Ctrl-C during `xdner run`: the process stops with status 130, says which command resumes,
leaves the last distillation checkpoint whole (no temp directories), and rerunning that
command finishes the run from the checkpoint. The interrupted run is a real process; the rerun
calls the same entry point in-process with the same arguments (a second interpreter start with
torch and transformers would double the test's time)."""

from __future__ import annotations

import os
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xtremedistil_ner.cli import main, resume_command
from xtremedistil_ner.distiller import CHECKPOINT, PROGRESS
from xtremedistil_ner.io import verify_manifest
from xtremedistil_ner.students import load_student

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
STAGES = [  # three sub-stages: the signal lands after the first, two remain for the rerun
    {"name": "rep", "loss": "representation", "data": "transfer", "train": ["embeddings", "encoder", "projection"], "epochs": 1},
    {"name": "logits", "loss": "logits_mse", "data": "transfer", "train": "all", "epochs": 1},
    {"name": "gold", "loss": "gold", "data": "labeled", "train": "all", "epochs": 1, "lr": 0.01},
]


def write_config(tmp: Path, data: Path, teacher: Path) -> Path:
    """The tiny pipeline of tests/test_pipeline.py as a config file, one language to keep it short."""
    cfg = {
        "output_dir": str(tmp / "run"), "languages": ["en"], "mixed_precision": "no",
        "data": {"files": {"en": {s: str(data / "en" / f"{s}.txt") for s in ("train", "dev", "test")}},
                 "transfer_files": {"en": [str(data / "en" / "transfer.txt")]}, "include_labeled_in_transfer": False,
                 "dev_limit": 10, "test_limit": 10},
        "teacher": {"model": str(teacher), "epochs": 3, "min_steps": 0, "lr": 0.01, "max_length": 16},
        "students": [{"name": "s", "embedding_dim": 8, "hidden_dim": 8}],
        "distil": {"stages": STAGES, "batch_size": 32},
        "eval": {"latency_repeats": 1},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def done(progress: Path) -> list[str]:
    """The finished sub-stages a checkpoint's progress names ([] while it is being swapped in)."""
    try:
        return json.loads(progress.read_text())["done"]
    except (OSError, ValueError):
        return []


def test_sigint_during_distil_keeps_the_checkpoint_and_names_the_resume_command(
    tmp_path: Path, tiny_data: Path, tiny_teacher: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = [sys.executable, "-m", "xtremedistil_ner.cli", "run", str(write_config(tmp_path, tiny_data, tiny_teacher))]
    checkpoint = tmp_path / "run" / "students" / "s" / "joint" / CHECKPOINT
    # SIGINT's default action restored in the child: inherited as ignored (a test run started in
    # the background by a shell), Python would install no KeyboardInterrupt handler at all.
    proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if (checkpoint / PROGRESS).exists() and done(checkpoint / PROGRESS):  # the first finished sub-stage
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "xdner: interrupted" in stderr and "Traceback" not in stderr
    assert f"To resume, run the same command again:\n  {shlex.join(command)}" in stderr
    assert verify_manifest(checkpoint) == [] and load_student(checkpoint).labels
    assert [p.name for p in checkpoint.parent.iterdir() if p.name.endswith((".tmp", ".old"))] == []
    capsys.readouterr()
    assert main(command[3:]) == 0
    log = capsys.readouterr().err
    assert "teach: fine-tuned teacher found" in log and "resuming distillation" in log and "1 sub-stages already done" in log
    assert (tmp_path / "run" / "report.json").exists()


def test_resume_command_is_the_command_line_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/xdner", "run", "my config.yaml"])
    assert resume_command() == "xdner run 'my config.yaml'"
    assert resume_command(["distil", "--config", "c.yaml"]) == "xdner distil --config c.yaml"
    monkeypatch.setattr(sys, "argv", [str(ROOT / "xtremedistil_ner" / "cli.py"), "run", "c.yaml"])
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-m", "xtremedistil_ner.cli", "run", "c.yaml"])
    assert resume_command() == "python3 -m xtremedistil_ner.cli run c.yaml"


def test_a_teacher_that_learned_nothing_stops_the_run(tmp_path: Path, tiny_data: Path, tiny_teacher: Path, capsys) -> None:
    config = write_config(tmp_path, tiny_data, tiny_teacher)
    assert main(["run", str(config), "--set", "teacher.epochs=1", "--set", "teacher.lr=1e-6"]) == 2
    err = capsys.readouterr().err
    assert "scored 0.00 macro F1 on dev after 1 epoch(s): it learned nothing to distil" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "cache").exists()  # nothing annotated or distilled from it


def test_one_go_step_by_step_and_after_a_killed_annotate_give_the_same_student(tmp_path: Path, tiny_data: Path, tiny_teacher: Path) -> None:
    """Every random choice is seeded from the run's seed and what it is for, never from the global
    RNG state a process happens to have: `xdner run` in one process, the steps as separate
    commands, and a rerun after `annotate` was killed mid-shard (its unfinished shard folder left
    behind) give byte-identical students."""
    config = write_config(tmp_path, tiny_data, tiny_teacher)

    def xdner(*args: str, out: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "xtremedistil_ner.cli", *args, "--output-dir", str(tmp_path / out)],
                              cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]

    def student(out: str) -> bytes:
        return (tmp_path / out / "students" / "s" / "joint" / "model" / "model.safetensors").read_bytes()

    xdner("run", str(config), out="one-go")
    for step in ("teach", "annotate", "distil"):
        xdner(step, "--config", str(config), out="steps")
    assert student("steps") == student("one-go")
    xdner("teach", "--config", str(config), out="killed")
    unfinished = tmp_path / "killed" / "cache" / ".shard-00000.x1y2.tmp"  # what a kill -9 mid-shard leaves
    unfinished.mkdir(parents=True)
    (unfinished / "logits.npy").write_bytes(b"\x93NUMPY" + b"\0" * 100)
    xdner("run", str(config), out="killed")
    assert not unfinished.exists() and student("killed") == student("one-go")
