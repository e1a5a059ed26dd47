"""The teacher's budget on small data (#27): each epoch passes over few labeled sentences as often
as `teacher.min_steps` needs, a budget set below that is warned about before any training, and
`min_steps` counts for provenance only where it changes the teacher."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from accelerate import Accelerator

from xtremedistil_ner.preflight import budget_warning
from xtremedistil_ner.cli import main
from xtremedistil_ner.config import MIN_TEACHER_STEPS, TeacherConfig, load_config
from xtremedistil_ner.pipeline import Run


def test_small_data_passes_as_often_as_the_minimum_steps_need() -> None:
    cfg = TeacherConfig()  # the defaults: 3 epochs, batches of 32, at least MIN_TEACHER_STEPS steps
    # 100 sentences in each of 3 languages: 10 batches an epoch, 30 steps without the floor.
    assert cfg.passes_for(300) == 17 and cfg.steps_for(300) == 510 >= MIN_TEACHER_STEPS
    assert cfg.passes_for(30_000) == 1 and cfg.steps_for(30_000) == 3 * 938  # large data: epochs alone
    assert TeacherConfig(min_steps=0).passes_for(300) == 1
    assert TeacherConfig(epochs=10, min_steps=500).passes_for(300) == 5  # the epochs count toward the floor


def test_a_budget_below_the_floor_is_warned_about() -> None:
    assert budget_warning(TeacherConfig(), 300) is None
    warning = budget_warning(TeacherConfig(min_steps=0), 300)
    assert warning is not None and "300 labeled sentences in batches of 32 give 30 optimizer steps over 3 epoch(s)" in warning
    assert "with teacher.min_steps: 0, under the 500 that its default gives small data" in warning
    assert budget_warning(TeacherConfig(min_steps=0), 30_000) is None


def test_fine_tuning_trains_the_minimum_steps(tmp_path: Path, tiny_data: Path, tiny_teacher: Path) -> None:
    from test_pipeline import make_run
    from xtremedistil_ner.teacher import fine_tune

    run = make_run(tmp_path, tiny_data, tiny_teacher, "joint")  # 240 labeled sentences: 8 batches of 32
    c = run.corpus

    def steps(min_steps: int) -> dict:
        cfg = dataclasses.replace(run.cfg.teacher, epochs=2, min_steps=min_steps, checkpoint_every=0)
        out = tmp_path / f"t{min_steps}"
        return fine_tune(cfg, c.train, c.dev, c.labels, out, Accelerator(cpu=True), 0, tmp_path / f"r{min_steps}")

    one, three = steps(0), steps(40)  # 40 steps over 2 epochs of 8 batches: 3 passes an epoch
    assert one["optimizer_steps"] < 40 <= three["optimizer_steps"]
    assert three["optimizer_steps"] >= 2.5 * one["optimizer_steps"]
    assert len(three["history"]) == len(one["history"]) == 2  # dev is scored once an epoch, however many passes


def test_the_up_front_check_warns_before_training(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["teach", "--config", str(base), "--set", "teacher.min_steps=0"]) == 0
    err = capsys.readouterr().err
    assert "240 labeled sentences in batches of 32 give 24 optimizer steps over 3 epoch(s)" in err
    assert err.index("optimizer steps over") < err.index("== teach ==")


def test_min_steps_counts_for_provenance_only_where_it_changes_the_teacher(base: Path) -> None:
    inputs = Run(load_config(base)).teacher_inputs  # the base config sets min_steps 0: one pass an epoch
    assert "min_steps" not in inputs["teacher"]
    assert Run(load_config(base, ["teacher.min_steps=1"])).teacher_inputs == inputs  # does not bind either
    binding = Run(load_config(base, ["teacher.min_steps=500"])).teacher_inputs
    assert binding["teacher"]["min_steps"] == 500 and binding != inputs
