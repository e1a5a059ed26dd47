"""Provenance: an artifact is rebuilt or refused only when a setting it was built from changed;
a setting added to the package later, left unset, changes nothing about artifacts made before it."""

from __future__ import annotations

from pathlib import Path

import pytest

from xtremedistil_ner.errors import StaleArtifactError
from xtremedistil_ner.provenance import must_rebuild

RECORDED = {"student": {"embedding_dim": 50, "init": "auto"}, "seed": 42, "stages": [{"name": "a", "epochs": [1, 3]}, {"name": "b", "epochs": 2}]}


def test_same_inputs_and_new_unset_keys_need_no_rebuild(tmp_path: Path) -> None:
    assert not must_rebuild(tmp_path, "student", RECORDED, RECORDED, overwrite=False)
    later = {**RECORDED, "student": {**RECORDED["student"], "from_student": None},
             "stages": [{**stage, "max_steps": None} for stage in RECORDED["stages"]]}  # a key added inside the stages too
    assert not must_rebuild(tmp_path, "student", RECORDED, later, overwrite=False)


def test_a_changed_or_new_set_key_refuses_or_rebuilds(tmp_path: Path) -> None:
    budget = [RECORDED["stages"][0], {**RECORDED["stages"][1], "max_steps": 100}]
    for current in ({**RECORDED, "seed": 7}, {**RECORDED, "student": {**RECORDED["student"], "from_student": "x"}},
                    {**RECORDED, "stages": budget}, {**RECORDED, "stages": RECORDED["stages"][:1]},
                    {**RECORDED, "stages": [{"name": "a", "epochs": [1, 2]}, RECORDED["stages"][1]]}):
        with pytest.raises(StaleArtifactError, match="--overwrite"):
            must_rebuild(tmp_path, "student", RECORDED, current, overwrite=False)
        assert must_rebuild(tmp_path, "student", RECORDED, current, overwrite=True)
