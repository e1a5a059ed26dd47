"""The goals the benchmarks report (benchmarks/_common.py): measured values against each goal,
met or not, in either direction."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import specialised_targets, targets_section  # noqa: E402


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
