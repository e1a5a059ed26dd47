"""Verify before trusting (#28): every step checks the sha256 manifest of what it reads (the
teacher's weights and config, every cache shard, every JSON record), names a damaged artifact
as damaged (never as other settings), and a resume state that cannot be restored whole
(its RNG states) is discarded with a warning. Every file written follows the umask."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from accelerate import Accelerator

from xtremedistil_ner.cli import main
from xtremedistil_ner.config import DistilConfig, load_config, save_config
from xtremedistil_ner.distiller import RESUME, Distiller
from xtremedistil_ner.errors import StaleArtifactError
from xtremedistil_ner.io import MANIFEST, ArtifactError, write_manifest
from xtremedistil_ner.pipeline import Run

from conftest import Crash, crashing_accelerator

STUDENTS = "students=[{name: s, embedding_dim: 8, hidden_dim: 8}]"
STAGES = ("distil.stages=[{name: logits, loss: logits_mse, data: transfer, train: all, epochs: 1},"
          " {name: gold, loss: gold, data: labeled, train: all, epochs: 1, lr: 0.01}]")


def make_run(out: Path, data: Path, teacher: Path, overwrite: bool = False) -> Run:
    cfg = load_config(None, [f"output_dir={out}", f"teacher.model={teacher}", "languages=[en,de]", "teacher.epochs=1", "teacher.min_steps=0",
                             "teacher.max_length=16", STUDENTS, STAGES, "eval.latency_repeats=1"])
    cfg.data.files = {l: {s: str(data / l / f"{s}.txt") for s in ("train", "dev", "test")} for l in ("en", "de")}
    cfg.data.transfer_files = {l: [str(data / l / "transfer.txt")] for l in ("en", "de")}
    return Run(cfg, overwrite=overwrite)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path, tiny_teacher: Path) -> Path:
    """A whole tiny run, written under umask 002 (a shared group folder)."""
    out = tmp_path_factory.mktemp("verify") / "run"
    previous = os.umask(0o002)
    try:
        make_run(out, tiny_data, tiny_teacher).run_all()
    finally:
        os.umask(previous)
    return out


@pytest.fixture
def copy(finished: Path, tmp_path: Path, tiny_data: Path, tiny_teacher: Path):
    """A fresh copy of the finished run to damage, and a Run over it."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out, lambda overwrite=False: make_run(out, tiny_data, tiny_teacher, overwrite)


def flip(path: Path, at: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_every_file_of_a_run_follows_the_umask(finished: Path) -> None:
    """safetensors writes its own 0600 files: teacher and student weights were private."""
    wrong = {str(p.relative_to(finished)): oct(p.stat().st_mode & 0o777) for p in finished.rglob("*")
             if p.stat().st_mode & 0o777 != (0o775 if p.is_dir() else 0o664) and p.name != ".xdner.lock"}
    assert wrong == {}
    assert (finished / "teacher" / "model.safetensors").stat().st_mode & 0o777 == 0o664


def test_a_flipped_byte_in_the_teachers_weights_is_named_by_every_step(copy) -> None:
    out, run = copy
    weights = out / "teacher" / "model.safetensors"
    flip(weights)
    for step in ("teach", "annotate", "distil", "evaluate"):
        with pytest.raises(ArtifactError, match=rf"damaged teacher checkpoint: {weights}: sha256 differs.*--overwrite") as err:
            run().step(step)
        assert "\n" not in str(err.value)
    run(overwrite=True).step("teach")  # trained again
    run().step("annotate")


@pytest.mark.parametrize("edit", ["activation", "zeroed"])
def test_an_edited_teacher_config_or_zeroed_weights_are_damaged(copy, capsys: pytest.CaptureFixture[str], edit: str) -> None:
    """`gelu` -> `relu` keeps the file's size; a zeroed model.safetensors keeps it too."""
    out, run = copy
    config = out.parent / "run.yaml"
    save_config(run().cfg, config)
    if edit == "activation":
        target = out / "teacher" / "config.json"
        target.write_text(target.read_text().replace('"gelu"', '"relu"'))
    else:
        target = out / "teacher" / "model.safetensors"
        target.write_bytes(bytes(target.stat().st_size))
    capsys.readouterr()
    assert main(["annotate", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2:][0] == "== annotate ==" and err[-1].startswith(f"xdner: error: {out / 'teacher'} is a damaged teacher checkpoint: {target}: sha256")
    assert "Traceback" not in "\n".join(err)


def test_zeroed_weights_without_a_manifest_are_one_line(tiny_teacher: Path, tmp_path: Path) -> None:
    from xtremedistil_ner.data.labels import LabelSet
    from xtremedistil_ner.teacher import load_teacher

    teacher = tmp_path / "base"
    shutil.copytree(tiny_teacher, teacher)
    (teacher / "model.safetensors").write_bytes(bytes((teacher / "model.safetensors").stat().st_size))
    with pytest.raises(ArtifactError, match=rf"{teacher / 'model.safetensors'} is a damaged teacher checkpoint: unreadable weights"):
        load_teacher(str(teacher), LabelSet(("PER",)))


def test_a_flipped_byte_in_a_cache_shard_is_damaged_not_other_settings(copy) -> None:
    out, run = copy
    hidden = out / "cache" / "shard-00000" / "hidden.npy"
    flip(hidden)
    shutil.rmtree(out / "students")
    with pytest.raises(ArtifactError, match=rf"{out / 'cache'} is a damaged transfer cache: {hidden}: sha256 differs.*xdner annotate"):
        run().step("distil")
    assert not (out / "students").exists()  # nothing trained on it
    run().step("annotate")  # rebuilds the damaged shard
    run().step("distil")


GARBAGE_RECORDS = {
    "teacher/xdner_teacher.json": "teach",
    "cache/manifest.json": "distil",
    "cache/shard-00000/shard.json": "distil",
    "students/s/joint/progress.json": "evaluate",
    "eval/teacher.json": "evaluate",
    "timings.json": "evaluate",
}


@pytest.mark.parametrize("record", sorted(GARBAGE_RECORDS))
def test_json_records_that_do_not_parse_are_damaged(copy, capsys: pytest.CaptureFixture[str], record: str) -> None:
    out, run = copy
    path = out / record
    path.write_bytes(b"\x00" * path.stat().st_size)  # same size, not JSON
    with pytest.raises(ArtifactError, match=r"is a damaged (JSON record|transfer cache)") as err:
        run().step(GARBAGE_RECORDS[record])
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not isinstance(err.value, StaleArtifactError)


# -- resume states ---------------------------------------------------------------------------


def interrupted(tmp_path: Path):
    """A distillation crashed mid-sub-stage (its resume state saved) and the reference run."""
    from test_resume import STAGES as RESUME_STAGES, make_student
    from test_stages import make_data

    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=RESUME_STAGES, checkpoint_every=2)
    Distiller(make_student(), cfg, make_data(), tmp_path / "ref", Accelerator(cpu=True), seed=0).run()
    with pytest.raises(Crash):
        Distiller(make_student(), cfg, make_data(), tmp_path / "run", crashing_accelerator(8, after_writing=False), seed=0).run()
    return lambda: Distiller(make_student(), cfg, make_data(), tmp_path / "run", Accelerator(cpu=True), seed=0).run()


@pytest.mark.parametrize("damage", ["planted", "missing"])
def test_a_resume_state_without_its_rng_states_is_discarded(tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str) -> None:
    """Accelerate skips RNG states it cannot load without a word: the resumed sub-stage would
    draw other dropout masks. A state whose manifest was rewritten to match still counts."""
    from test_resume import assert_identical, weights

    rerun = interrupted(tmp_path)
    state = tmp_path / "run" / RESUME
    rng = state / "random_states_0.pkl"
    if damage == "planted":
        rng.write_bytes(b"\x80\x04not a pickle")
    else:
        rng.unlink()
    manifest_files = sorted(p.name for p in state.iterdir() if p.is_file() and p.name not in (MANIFEST, "position.json", "progress.json"))
    write_manifest(state, files=manifest_files)
    capsys.readouterr()
    rerun()
    log = capsys.readouterr().err
    assert "is damaged and is discarded" in log and f"{rng}: " in log
    assert_identical(weights(tmp_path / "run"), weights(tmp_path / "ref"))
