"""Manifests on artifacts: student checkpoints, the teacher directory and the report list each
file's size and sha256; loading a damaged student or teacher is a clear error naming the file,
old artifacts without a manifest still load, and Ctrl-C never splits a directory swap."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from accelerate import Accelerator
from transformers import AutoModelForTokenClassification

from xtremedistil_ner import io as io_mod
from xtremedistil_ner.data.labels import LabelSet
from xtremedistil_ner.io import MANIFEST, ArtifactError, atomic_dir, check_manifest, verify_manifest, write_json, write_manifest
from xtremedistil_ner.report import MANIFEST as REPORT_MANIFEST
from xtremedistil_ner.report import write_report
from xtremedistil_ner.students import load_student, save_student
from xtremedistil_ner.layout import TEACHER_MANIFEST
from xtremedistil_ner.teacher import _save, load_teacher

from conftest import tiny_student

LABELS = ["O", "B-PER", "I-PER"]


def saved_student(path: Path, tokenizer=None) -> Path:
    save_student(tiny_student(LABELS, np.arange(10, 20), 0, 50), path, tokenizer)
    return path


def test_manifest_lists_every_file_and_reports_each_problem(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("hello")
    manifest = write_manifest(tmp_path, kind="test")
    assert manifest["kind"] == "test" and sorted(manifest["files"]) == ["a.bin", "sub/b.txt"]
    assert verify_manifest(tmp_path) == []
    (tmp_path / "a.bin").write_bytes(b"abd")  # same size, other bytes
    (tmp_path / "sub" / "b.txt").unlink()
    assert verify_manifest(tmp_path, checksums=False) == [f"{tmp_path / 'sub' / 'b.txt'}: missing (listed in {MANIFEST})"]
    problems = verify_manifest(tmp_path)
    assert len(problems) == 2 and problems[0].startswith(f"{tmp_path / 'a.bin'}: sha256 differs")


def test_student_checkpoint_has_a_manifest_covering_its_tokenizer(tmp_path: Path, tiny_tokenizer) -> None:
    path = saved_student(tmp_path / "model", tiny_tokenizer)
    files = json.loads((path / MANIFEST).read_text())["files"]
    assert {"model.safetensors", "config.json", "modeling_xtremedistil.py", "tokenizer.json"} <= set(files)
    assert "README.md" not in files  # the model card stays editable
    assert load_student(path).labels == LABELS


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_student_weights_are_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = saved_student(tmp_path / "model")
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-5] ^= 0xFF  # inside a tensor: safetensors itself would load it without complaint
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="damaged student folder") as err:
        load_student(path)
    assert str(weights) in str(err.value) and ("truncated" if damage == "truncate" else "sha256") in str(err.value)


def test_student_without_manifest_still_loads_and_damage_is_named(tmp_path: Path) -> None:
    path = saved_student(tmp_path / "model")
    (path / MANIFEST).unlink()  # written before manifests existed
    assert load_student(path).labels == LABELS
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ArtifactError, match=f"{weights}: unreadable student weights"):
        load_student(path)


def test_teacher_manifest_holds_file_sizes_checked_on_load(tmp_path: Path, tiny_teacher: Path, tiny_tokenizer) -> None:
    labels = LabelSet(("PER",))
    model = AutoModelForTokenClassification.from_pretrained(tiny_teacher, num_labels=len(labels), ignore_mismatched_sizes=True)
    out = tmp_path / "teacher"
    _save(model, tiny_tokenizer, out, Accelerator(cpu=True), {"best_epoch": 1})
    manifest = json.loads((out / TEACHER_MANIFEST).read_text())
    assert manifest["best_epoch"] == 1 and {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])
    load_teacher(str(out), labels)
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16])
    with pytest.raises(ArtifactError, match="damaged teacher checkpoint") as err:
        load_teacher(str(out), labels)
    assert f"{weights}: " in str(err.value) and "truncated" in str(err.value)
    (out / TEACHER_MANIFEST).write_text(json.dumps({"best_epoch": 1}))  # from before file listings
    check_manifest(out, TEACHER_MANIFEST, checksums=False)  # nothing to check: no error


def test_report_manifest(tmp_path: Path) -> None:
    report = {"name": "r", "languages": ["en"], "models": {"teacher": {"test_f1": {"en": 50.0, "macro": 50.0}, "parameters": 10}}}
    write_report(report, tmp_path)
    assert json.loads((tmp_path / REPORT_MANIFEST).read_text())["name"] == "r"
    assert verify_manifest(tmp_path, REPORT_MANIFEST) == []
    (tmp_path / "report.md").write_text("edited\n")
    assert verify_manifest(tmp_path, REPORT_MANIFEST, checksums=False)[0].startswith(f"{tmp_path / 'report.md'}: ")


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler for the test, whatever the test process inherited: a job
    started in the background by a shell (`cmd &` in a script, many CI runners) starts with
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_directory_swap_lands_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python_sigint) -> None:
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "v").write_text("1")
    replace = os.replace

    def interrupted_replace(src, dst) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C between the swap's two renames
        replace(src, dst)

    monkeypatch.setattr(io_mod.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "v").write_text("2")
    assert (target / "v").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_artifacts_follow_the_umask(tmp_path: Path) -> None:
    """Files and folders get the user's umask (0644 / 0755 under 022, 0664 / 0775 under 002
    for a shared group folder), not the 0600 / 0700 of the temp files they are written as."""
    previous = os.umask(0o002)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o775


def test_report_says_when_latency_was_timed_on_a_busy_machine() -> None:
    from xtremedistil_ner.report import busy_note

    lat = {"median_ms": 1.0, "load_average_1min": 0.1, "threads": 2}
    assert busy_note({"teacher": {"latency": lat}}) is None
    # The run's own 2 threads, busy evaluating just before, are not other work.
    assert busy_note({"teacher": {"latency": {**lat, "load_average_1min": 2.0}}}) is None
    busy = busy_note({"teacher": {"latency": lat}, "s": {"latency": {**lat, "load_average_1min": 64.0}}})
    assert busy.startswith("**Timed on a busy machine**") and "s 64.0" in busy


def test_leftovers_of_killed_writers_are_swept(tmp_path: Path) -> None:
    from xtremedistil_ner.io import sweep_leftovers

    (tmp_path / "cache" / ".shard-00003.ab12.tmp").mkdir(parents=True)  # a killed annotate's shard
    (tmp_path / "cache" / ".shard-00003.ab12.tmp" / "logits.npy").write_bytes(b"x" * 10)
    (tmp_path / ".timings.json.cd34.tmp").write_text("{")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / ".ckpt.old").mkdir()  # the swap finished: the old version is garbage
    (tmp_path / ".model.old").mkdir()  # killed between the two renames: this IS the model
    removed = sweep_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == [".ckpt.old", ".shard-00003.ab12.tmp", ".timings.json.cd34.tmp"]
    assert (tmp_path / ".model.old").is_dir() and (tmp_path / "ckpt").is_dir()
