"""Provenance: an artifact is rebuilt or refused only when a setting it was built from changed;
a setting added to the package later, left unset, changes nothing about artifacts made before it."""

from __future__ import annotations

from pathlib import Path

import pytest

from xtremedistil_ner.errors import StaleArtifactError
from xtremedistil_ner.provenance import must_rebuild

RECORDED = {"student": {"embedding_dim": 50, "init": "auto"}, "seed": 42}


def test_same_inputs_and_new_unset_keys_need_no_rebuild(tmp_path: Path) -> None:
    assert not must_rebuild(tmp_path, "student", RECORDED, RECORDED, overwrite=False)
    later = {"student": {**RECORDED["student"], "from_student": None}, "seed": 42}
    assert not must_rebuild(tmp_path, "student", RECORDED, later, overwrite=False)


def test_a_changed_or_new_set_key_refuses_or_rebuilds(tmp_path: Path) -> None:
    for current in ({**RECORDED, "seed": 7}, {"student": {**RECORDED["student"], "from_student": "x"}, "seed": 42}):
        with pytest.raises(StaleArtifactError, match="--overwrite"):
            must_rebuild(tmp_path, "student", RECORDED, current, overwrite=False)
        assert must_rebuild(tmp_path, "student", RECORDED, current, overwrite=True)
