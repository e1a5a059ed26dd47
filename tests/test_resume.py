"""Mid-loop resume: a distillation killed with SIGKILL after a mid-epoch checkpoint, or a
distillation or the teacher's fine-tuning crashing while it writes one, and then rerun ends with
exactly the weights of a run that was never interrupted (same seed, dropout on, so RNG states
must be restored too)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from xtremedistil_ner.config import DistilConfig, StageConfig
from xtremedistil_ner.distiller import FINAL, RESUME, Distiller, is_distilled
from xtremedistil_ner import training
from xtremedistil_ner.training import POSITION
from xtremedistil_ner.io import settled_dir
from xtremedistil_ner.students import XtremeDistilPreTrainedModel

from test_stages import LABELS, make_data
from conftest import Crash, crashing_accelerator, tiny_student

WORKER = Path(__file__).with_name("mp_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def worker(teacher: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(WORKER), str(teacher), str(out), "--only-distil", "--dropout", "0.3", *extra]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / FINAL / "model.safetensors")


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def read_position(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or being swapped in
        return None


def test_sigkill_mid_sub_stage_then_resume_is_bit_identical(tmp_path: Path, tiny_teacher: Path) -> None:
    ref = subprocess.run(worker(tiny_teacher, tmp_path / "ref"), env=ENV, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    out = tmp_path / "run"
    position = out / "student" / RESUME / POSITION
    proc = subprocess.Popen(worker(tiny_teacher, out, "--checkpoint-every", "3"), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        st = read_position(position)
        if st and st["key"] == "2.0" and st["epoch"] >= 1:  # the gold stage, past its first epoch
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL, "the run ended before a mid-sub-stage checkpoint was seen"
    assert not is_distilled(out / "student") and read_position(position)["key"] == "2.0"
    rerun = subprocess.run(worker(tiny_teacher, out, "--checkpoint-every", "3"), env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming sub-stage 2.0" in rerun.stderr
    assert_identical(weights(out / "student"), weights(tmp_path / "ref" / "student"))


def make_student() -> XtremeDistilPreTrainedModel:
    return tiny_student(LABELS, np.arange(10, 20), 0, 30, embedding_dim=6, hidden_dim=5, dropout=0.3)


STAGES = [StageConfig("logits", "logits_mse", "transfer", "gradual", epochs=1, lr=0.01),
          StageConfig("gold", "gold", "labeled", "all", epochs=3, lr=0.05, patience=3)]


@pytest.mark.parametrize("scheduler", ["constant", "cosine"])
def test_crash_while_saving_keeps_previous_checkpoint_and_resumes_exactly(tmp_path: Path, scheduler: str) -> None:
    """With a learning-rate schedule too: the resumed sub-stage continues at the step it reached."""
    stages = [dataclasses.replace(st, scheduler=scheduler, warmup_ratio=0.2 if scheduler != "constant" else 0.0) for st in STAGES]
    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=stages, checkpoint_every=2)
    Distiller(make_student(), cfg, make_data(), tmp_path / "ref", Accelerator(cpu=True), seed=0).run()
    acc = crashing_accelerator(8)  # 3 saves per logits sub-stage: the 8th is sub-stage 0.2's second, half written
    with pytest.raises(Crash):
        Distiller(make_student(), cfg, make_data(), tmp_path / "run", acc, seed=0).run()
    st = json.loads((tmp_path / "run" / RESUME / POSITION).read_text())
    assert (st["key"], st["steps"], st["batches"]) == ("0.2", 2, 2)  # the previous save, mid-epoch, intact
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")] == []
    st["seconds"] = 1000.0  # as if the crashed run had spent that long in sub-stage 0.2
    (tmp_path / "run" / RESUME / POSITION).write_text(json.dumps(st))
    with warnings.catch_warnings(record=True) as caught:  # the scheduler's catch-up is no mistake to warn of
        warnings.simplefilter("always")
        progress = Distiller(make_student(), cfg, make_data(), tmp_path / "run", Accelerator(cpu=True), seed=0).run()
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    assert_identical(weights(tmp_path / "run"), weights(tmp_path / "ref"))
    # A resumed sub-stage's wall time includes the interrupted run's; a fresh one starts at zero.
    assert progress["history"][2]["seconds"] >= 1000 > progress["history"][3]["seconds"]


def test_set_up_time_survives_a_kill_before_the_first_sub_stage_ends(tmp_path: Path) -> None:
    """The time spent building a student counts as distillation time: an attempt killed in its
    first sub-stage has paid it too, and the resumed run's record adds both."""
    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=STAGES, checkpoint_every=2)
    with pytest.raises(Crash):  # mid-way through sub-stage 0.0: nothing finished
        Distiller(make_student(), cfg, make_data(), tmp_path / "run", crashing_accelerator(1), seed=0, setup_seconds=5.0).run()
    progress = Distiller(make_student(), cfg, make_data(), tmp_path / "run", Accelerator(cpu=True), seed=0, setup_seconds=3.0).run()
    assert progress["setup_seconds"] == 8.0
    assert progress["history"][0]["stage"] == STAGES[0].name


def test_a_resume_state_keeps_the_loss_sum_not_every_batch_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """position.json is rewritten at every checkpoint: its size must not grow with the steps of
    an epoch (at the paper's scale that list was megabytes), and the epoch's train loss a resumed
    run reports is the uninterrupted run's."""
    monkeypatch.setattr(training, "RECENT", 1)
    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=STAGES, checkpoint_every=2)
    ref = Distiller(make_student(), cfg, make_data(), tmp_path / "ref", Accelerator(cpu=True), seed=0).run()
    with pytest.raises(Crash):
        Distiller(make_student(), cfg, make_data(), tmp_path / "run", crashing_accelerator(8), seed=0).run()
    st = json.loads((tmp_path / "run" / RESUME / POSITION).read_text())
    assert st["batches"] == 2 and len(st["recent"]) == 1 and st["loss_sum"] > 0 and "running" not in st
    resumed = Distiller(make_student(), cfg, make_data(), tmp_path / "run", Accelerator(cpu=True), seed=0).run()
    losses = [[e["train_loss"] for e in h["epochs"]] for h in ref["history"]]
    assert losses == [[e["train_loss"] for e in h["epochs"]] for h in resumed["history"]]
    assert all(np.isfinite(v) for row in losses for v in row)


def test_a_resumed_sub_stage_stops_early_where_the_uninterrupted_one_did(tmp_path: Path) -> None:
    """The patience count is in the resume state: resumed after an epoch without improvement,
    a sub-stage stops after the same epoch, with the same weights."""
    stage = StageConfig("gold", "gold", "labeled", "all", epochs=8, lr=0.1, patience=2)
    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=[stage], checkpoint_every=1)
    ref = Distiller(make_student(), cfg, make_data(), tmp_path / "ref", Accelerator(cpu=True), seed=0).run()
    with pytest.raises(Crash):  # 3 steps an epoch: the 9th save crashes, the 8th (in epoch 3) stays
        Distiller(make_student(), cfg, make_data(), tmp_path / "run", crashing_accelerator(9), seed=0).run()
    st = json.loads((tmp_path / "run" / RESUME / POSITION).read_text())
    assert (st["epoch"], st["batches"], st["bad"]) == (2, 2, 1)
    resumed = Distiller(make_student(), cfg, make_data(), tmp_path / "run", Accelerator(cpu=True), seed=0).run()
    assert len(ref["history"][0]["epochs"]) == len(resumed["history"][0]["epochs"]) == 3 < stage.epochs
    assert_identical(weights(tmp_path / "run"), weights(tmp_path / "ref"))


def test_a_damaged_resume_state_is_named_and_the_sub_stage_starts_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A truncated optimizer state (a disk filled up, a copy cut short) is caught by the state's
    manifest before anything is loaded; the sub-stage restarts from the last finished one, which
    gives the weights an uninterrupted run gets."""
    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=STAGES, checkpoint_every=2)
    Distiller(make_student(), cfg, make_data(), tmp_path / "ref", Accelerator(cpu=True), seed=0).run()
    acc = crashing_accelerator(8, after_writing=False)
    with pytest.raises(Crash):
        Distiller(make_student(), cfg, make_data(), tmp_path / "run", acc, seed=0).run()
    optimizer = tmp_path / "run" / RESUME / "optimizer.bin"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    capsys.readouterr()
    Distiller(make_student(), cfg, make_data(), tmp_path / "run", Accelerator(cpu=True), seed=0).run()
    out = capsys.readouterr().err
    assert "is damaged and is discarded" in out and f"{optimizer}: " in out
    assert_identical(weights(tmp_path / "run"), weights(tmp_path / "ref"))


def test_settled_dir_falls_back_to_the_previous_version(tmp_path: Path) -> None:
    assert settled_dir(tmp_path / "x") is None
    (tmp_path / ".x.old").mkdir()  # a kill between atomic_dir's two renames
    assert settled_dir(tmp_path / "x") == tmp_path / ".x.old"
    (tmp_path / "x").mkdir()
    assert settled_dir(tmp_path / "x") == tmp_path / "x"


def test_a_schedule_changes_training_and_bad_ones_are_refused(tmp_path: Path) -> None:
    from xtremedistil_ner.stages import validate_stage

    cfg = DistilConfig(batch_size=4, eval_batch_size=8, stages=STAGES, checkpoint_every=0)
    Distiller(make_student(), cfg, make_data(), tmp_path / "constant", Accelerator(cpu=True), seed=0).run()
    linear = [dataclasses.replace(st, scheduler="linear") for st in STAGES]
    Distiller(make_student(), dataclasses.replace(cfg, stages=linear), make_data(), tmp_path / "linear", Accelerator(cpu=True), seed=0).run()
    a, b = weights(tmp_path / "constant"), weights(tmp_path / "linear")
    assert any(not torch.equal(a[k], b[k]) for k in a if k != "id_map")
    for bad, message in ((dict(scheduler="step"), "scheduler must be one of"),
                         (dict(scheduler="reduce_lr_on_plateau"), "scheduler must be one of"),
                         (dict(warmup_ratio=0.1), "use constant_with_warmup"),
                         (dict(name="setup"), "stage name 'setup' is taken"),
                         (dict(scheduler="cosine", warmup_ratio=1.0), "warmup_ratio must be in")):
        with pytest.raises(ValueError, match=message):
            validate_stage(dataclasses.replace(STAGES[0], **bad), make_student())


def test_teacher_fine_tuning_crashed_mid_epoch_resumes_exactly(tmp_path: Path, tiny_data: Path, tiny_teacher: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The teacher's fine-tuning (hours over dozens of languages on a CPU) resumes like a
    sub-stage: a crash while saving its 4th state (step 20, in epoch 2) leaves the 3rd whole
    (step 15: in epoch 2 too, after epoch 1's best model was saved), and the rerun ends with the
    weights of one that never stopped (dropout on: RNG states are restored too); its state is
    removed once the teacher is done."""
    from accelerate.utils import set_seed

    from test_pipeline import make_run
    from xtremedistil_ner.teacher import fine_tune

    run = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    cfg = dataclasses.replace(run.cfg.teacher, epochs=2, checkpoint_every=5)  # 13-14 steps an epoch
    c = run.corpus

    def tune(name: str, acc: Accelerator) -> dict:
        set_seed(0)
        return fine_tune(cfg, c.train, c.dev, c.labels, tmp_path / name, acc, 0, tmp_path / f"{name}-resume")

    ref = tune("ref", Accelerator(cpu=True))
    assert len(ref["history"]) == 2 and not (tmp_path / "ref-resume").exists()
    with pytest.raises(Crash):
        tune("run", crashing_accelerator(4))
    st = json.loads((tmp_path / "run-resume" / POSITION).read_text())
    assert (st["key"], st["steps"], st["epoch"], len(st["epochs"])) == ("fine-tuning", 15, 1, 1) and st["batches"] > 0
    capsys.readouterr()
    assert tune("run", Accelerator(cpu=True))["history"][1] == ref["history"][1]
    assert f"resuming the teacher's fine-tuning at epoch 2, batch {st['batches']} (15 steps done)" in capsys.readouterr().err
    assert_identical(load_file(tmp_path / "run" / "model.safetensors"), load_file(tmp_path / "ref" / "model.safetensors"))
    assert not (tmp_path / "run-resume").exists()


def test_a_teacher_state_saved_with_other_settings_is_refused(tmp_path: Path, tiny_data: Path, tiny_teacher: Path) -> None:
    """Rerun after a change, an interrupted fine-tuning is not continued under the new settings:
    `teach` names the change (nothing is trained or removed); --overwrite starts over."""
    from test_pipeline import make_run
    from xtremedistil_ner.errors import StaleArtifactError

    run = make_run(tmp_path, tiny_data, tiny_teacher, "joint")
    state = run.teacher_resume_dir
    state.mkdir(parents=True)
    (state / "progress.json").write_text(json.dumps({"inputs": {**run.teacher_inputs, "seed": 7}}))
    with pytest.raises(StaleArtifactError, match=r"teacher's mid-training state.*seed: 7 -> 42.*--overwrite"):
        run.step("teach")
    assert state.exists() and not run.teacher_dir.exists()
