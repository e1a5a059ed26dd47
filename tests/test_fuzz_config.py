"""#28: a seeded fuzz of the up-front config check (benchmarks/_fuzz_config.py). Every mutation of
a valid tiny config either passes the check or is refused with exit status 2, a one-line message
and nothing written; never a traceback. A few that pass are run to the end and must complete.
The long version is benchmarks/fuzz_config.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _fuzz_config import fuzz, mutations, tiny_config  # noqa: E402

CHECKS = 200  # mutations checked (about 0.1 s each)
RUNS = 3  # passing mutations run to the end on the tiny data and teacher (a few seconds each)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mutated teacher.model is often a valid Hub id: the check must not go to the network."""
    monkeypatch.setattr("xtremedistil_ner.preflight.hub_reachable", lambda: False)


def test_mutations_are_seeded_and_varied(tiny_data: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    base = tiny_config(tiny_data, tiny_teacher, tmp_path / "out")
    first = [str(m) for m in mutations(base, seed=1, count=CHECKS)]
    assert first == [str(m) for m in mutations(base, seed=1, count=CHECKS)]
    assert {m.kind for m in mutations(base, seed=1, count=CHECKS)} == {"set", "remove", "add"}
    assert any("nan" in m for m in first) and any("inf" in m for m in first)


def test_every_mutation_passes_or_is_refused_cleanly(tiny_data: Path, tiny_teacher: Path, tmp_path: Path, offline,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "fuzz"
    work.mkdir()
    counts, failures = fuzz(tiny_config(tiny_data, tiny_teacher, work / "base"), work, seed=28, count=CHECKS, runs=RUNS)
    with capsys.disabled():
        print(f"\nfuzz-config: {dict(counts)}")
    assert failures == []
    assert counts["tried"] == CHECKS and counts["passed"] + counts["refused"] == CHECKS
    assert counts["passed"] >= 20 and counts["refused"] >= 100  # both sides are exercised
    assert counts["runs"] == RUNS and counts["run-completed"] == RUNS
