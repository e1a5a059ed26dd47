"""The shared IOB2 label set: canonical order (ids depend on it) and repair of bad sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xdner_runtime.tags import entity_spans, is_valid_tag, repair_iob2, strict_iob2

from xtremedistil_ner.data.labels import LabelSet


def test_order_is_O_then_B_I_per_sorted_type() -> None:
    labels = LabelSet(("PER", "LOC", "ORG", "LOC"))
    assert labels.entity_types == ("LOC", "ORG", "PER")
    assert labels.tags == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert len(labels) == 7
    assert labels.label2id == {t: i for i, t in enumerate(labels.tags)}
    assert labels.id2label[0] == "O" and labels.id2label[6] == "I-PER"


def test_from_tags_collects_types_and_ignores_O_and_invalid() -> None:
    labels = LabelSet.from_tags(["O", "I-PER", "B-ORG", "B-PER", "O", "BOGUS", "X-LOC", "B_MISC"])
    assert labels.entity_types == ("ORG", "PER")
    assert labels.tags == ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_from_tags_order_does_not_depend_on_input_order() -> None:
    a = LabelSet.from_tags(["B-PER", "B-LOC", "B-ORG"])
    b = LabelSet.from_tags(["I-ORG", "I-LOC", "B-PER"])
    assert a.tags == b.tags


def test_from_list_accepts_canonical_order() -> None:
    tags = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert LabelSet.from_list(tags).tags == tags


@pytest.mark.parametrize(
    "tags",
    [
        ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"],  # wikiann order
        ["B-LOC", "I-LOC", "O"],  # O not first
        ["O", "B-LOC"],  # I-LOC missing
        ["O", "B-LOC", "I-LOC", "B-LOC", "I-LOC"],  # duplicates
        ["O", "B-LOC", "I-LOC", "BOGUS"],  # foreign entry
    ],
)
def test_from_list_rejects_non_canonical(tags: list[str]) -> None:
    with pytest.raises(ValueError, match="canonical"):
        LabelSet.from_list(tags)


@pytest.mark.parametrize(
    ("tag", "ok"),
    [("O", True), ("B-PER", True), ("I-MISC", True), ("B-", False), ("PER", False), ("B_PER", False),
     ("X-LOC", False), ("o", False), ("", False)],
)
def test_is_valid_tag(tag: str, ok: bool) -> None:
    assert is_valid_tag(tag) is ok


@pytest.mark.parametrize(
    ("tags", "expected", "fixed"),
    [
        ([], [], []),
        (["O", "B-PER", "I-PER", "O"], ["O", "B-PER", "I-PER", "O"], []),
        (["I-PER"], ["B-PER"], [0]),
        (["O", "I-PER", "I-PER"], ["O", "B-PER", "I-PER"], [1]),
        (["B-PER", "I-LOC", "I-LOC"], ["B-PER", "B-LOC", "I-LOC"], [1]),
        (["B-PER", "I-PER", "O", "I-PER"], ["B-PER", "I-PER", "O", "B-PER"], [3]),
        (["I-ORG", "O", "I-ORG", "I-LOC"], ["B-ORG", "O", "B-ORG", "B-LOC"], [0, 2, 3]),
        # B- of another type right after an entity is fine as is
        (["B-PER", "B-PER", "B-LOC", "I-LOC"], ["B-PER", "B-PER", "B-LOC", "I-LOC"], []),
    ],
)
def test_repair_iob2(tags: list[str], expected: list[str], fixed: list[int]) -> None:
    out, positions = repair_iob2(tags)
    assert out == expected
    assert positions == fixed
    assert repair_iob2(out) == (out, [])  # repaired output is valid IOB2


@given(st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]), max_size=12))
def test_strict_reading_keeps_exactly_the_entities_strict_seqeval_counts(tags: list[str]) -> None:
    """What the Tagger outputs (its argmax tags read strictly) holds the entities the reported F1
    counts for those argmax tags, as valid IOB2 that needs no repair."""
    from seqeval.scheme import IOB2, Entities

    def strict(seq: list[str]) -> set[tuple[int, int, str]]:
        return {(e.start, e.end, e.tag) for e in Entities([seq], IOB2).entities[0]}

    out = strict_iob2(tags)
    assert strict(out) == strict(tags) and repair_iob2(out) == (out, [])
    assert {(s, e, t) for t, s, e in entity_spans(out)} == strict(out)
