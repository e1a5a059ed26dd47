"""The goals the benchmarks report (benchmarks/_common.py): measured values against each goal,
met or not, in either direction."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import resources_section, specialised_targets, targets_section  # noqa: E402


def report(spec_f1: dict[str, float], spec_params: int, spec_seconds: float) -> dict:
    joint = {"test_f1": {"a": 70.0, "b": 60.0, "macro": 65.0}, "parameters": 1000, "stage_seconds": {"logits": 90.0, "gold": 10.0}}
    spec = {"test_f1": {**spec_f1, "macro": sum(spec_f1.values()) / 2}, "parameters": spec_params, "stage_seconds": {"gold": spec_seconds}}
    return {"languages": ["a", "b"], "models": {"j": joint, "s": spec}}


def test_specialised_taggers_meet_the_goals_or_say_which_they_miss() -> None:
    met = specialised_targets(report({"a": 70.5, "b": 59.6}, 500, 40.0), "s", "j")
    assert [t["met"] for t in met] == [True, True, True, True, True]
    assert met[1]["name"].startswith("s lowest language (b)") and round(met[1]["value"], 1) == -0.4
    missed = specialised_targets(report({"a": 71.0, "b": 0.0}, 501, 120.0), "s", "j")
    assert [t["met"] for t in missed] == [False, False, False, False, False]
    lines = targets_section(missed)
    assert "| s parameters per tagger / j's | 50.1% | ≤ 50% | no |" in lines
    assert "| s macro F1 - j's | -29.5 pts | ≥ 0 pts | no |" in lines
    assert specialised_targets(report({"a": 1.0, "b": 1.0}, 1, 1.0), "absent", "j") == []


def test_the_resources_table_says_when_an_attempt_went_unrecorded() -> None:
    """A step's attempts are added up; where the run's own timings hold more (an attempt stopped
    from outside before it could report, or work done outside the runner), the table says so
    instead of passing the recorded part off as the whole."""
    from wikiann48_lowres import per_step
    attempts = [{"step": "distil", "seconds": 100.0, "peak_rss_gib": 2.0, "disk_gib_after": None, "exit": None},
                {"step": "distil", "seconds": 50.0, "peak_rss_gib": 1.5, "disk_gib_after": {"total": 3.0}, "exit": 0}]
    rows = per_step(attempts)
    assert rows == [{"step": "distil", "attempts": 2, "seconds": 150.0, "peak_rss_gib": 2.0, "disk_gib": 3.0}]
    assert not any("recorded more time" in line for line in resources_section(rows, {"distil": 160.0}))
    assert resources_section(rows, {"distil": 1000.0})[-1].startswith(
        "The run recorded more time than this runner for distil (1,000 s in the run's timings, 150 s here)")
    running = per_step([{**attempts[0], "step": "evaluate"}])  # stopped before any attempt ended: no disk use to show
    assert running[0]["disk_gib"] is None and resources_section(running, {})[-1] == "| evaluate | 1 | 100 | 2.00 | – |"


def test_a_running_step_reports_its_record_so_far(tmp_path: Path, monkeypatch) -> None:
    """A step's record is reported while it runs, so a runner killed from outside keeps it."""
    import _steps
    monkeypatch.setattr(_steps, "TICK_S", 0.01)
    ticks: list[dict] = []
    rec = _steps.run_step("--help", tmp_path / "config.yaml", tmp_path / "out", "data", [], on_tick=ticks.append)  # `xdner --help`: a short real child
    assert rec["exit"] == 0 and rec["disk_gib_after"] == {"total": 0}
    assert ticks and all(t["exit"] is None and t["disk_gib_after"] is None and t["seconds"] <= rec["seconds"] for t in ticks)
    assert max(t["peak_rss_gib"] for t in ticks) > 0


def test_the_paired_bootstrap_tells_a_loss_from_noise() -> None:
    """A language where the other student misses entities in most sentences of a large test set is
    a loss the test set can tell; the same gap on two sentences is not."""
    import numpy as np
    from paired_bootstrap import MARGIN, compare, markdown
    right = np.array([[1, 1, 1]] * 400)  # correct, predicted, gold entities per sentence
    worse = np.array([[1, 1, 1]] * 380 + [[0, 1, 1]] * 20)
    base = {"big": right, "small": right[:2]}
    other = {"big": worse, "small": np.array([[1, 1, 1], [0, 1, 1]])}
    result = compare(base, other, seed=0)
    assert result["big"]["difference"] == -5.0 and result["big"]["interval_90"][1] < 0
    assert result["small"]["difference"] == -50.0 and result["small"]["interval_90"][1] == 0.0
    assert result["big"]["share_within_margin"] < 0.01 and MARGIN == 0.5
    text = markdown({"run": "r", "base": "j", "other": "s", "command": "python x", "languages": result})
    assert "- 2 of 2 languages more than 0.5 below j: small, big" in text
    assert "- with the 90% interval wholly below 0 (a loss the test set can tell): big" in text
