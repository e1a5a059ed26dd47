"""IOB2 tags: validity, the repair conlleval applies (a stray `I-X` starts an entity), and
tagged words -> entities with character offsets."""

from __future__ import annotations

from typing import Sequence, TypedDict

import numpy as np


class Entity(TypedDict):
    label: str
    start: int  # character offsets into the input text: text[start:end] == entity text
    end: int
    text: str
    score: float  # mean probability of the predicted tag over the entity's words


def split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type): ("O", "") for O, ("?", tag) for anything that is not IOB2."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if sep != "-" or prefix not in ("B", "I") or not kind:
        return "?", tag
    return prefix, kind


def is_valid_tag(tag: str) -> bool:
    return split_tag(tag)[0] != "?"


def repair_iob2(tags: Sequence[str]) -> tuple[list[str], list[int]]:
    """Return tags with each `I-X` that does not continue an `X` entity turned into `B-X`,
    and the positions that were changed."""
    out: list[str] = []
    fixed: list[int] = []
    prev_kind = ""
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix == "I" and prev_kind != kind:
            out.append(f"B-{kind}")
            fixed.append(i)
        else:
            out.append(tag)
        prev_kind = kind if prefix in ("B", "I") else ""
    return out, fixed


def strict_iob2(tags: Sequence[str]) -> list[str]:
    """Tags as seqeval's strict IOB2 mode reads them: an `I-X` that continues no `X` entity (after
    `O`, another type, or at the start) belongs to no entity and becomes `O`. A tagger's argmax tags
    read this way give exactly the entities the reported F1 counts."""
    out: list[str] = []
    prev_kind = ""
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "I" and prev_kind != kind:
            out.append("O")
            prev_kind = ""
        else:
            out.append(tag)
            prev_kind = kind if prefix in ("B", "I") else ""
    return out


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word + 1) of each entity; a stray `I-X` starts an entity, as
    `repair_iob2` reads it."""
    spans: list[tuple[str, int, int]] = []
    for i, tag in enumerate(repair_iob2(tags)[0]):
        if tag.startswith("B-"):
            spans.append((tag[2:], i, i + 1))
        elif tag.startswith("I-"):
            kind, start, _ = spans[-1]
            spans[-1] = (kind, start, i + 1)
    return spans


def entities(text: str, spans: Sequence[tuple[int, int]], tags: Sequence[str], scores: np.ndarray) -> list[Entity]:
    """Entities of one document from its word `spans` and their predicted tags and scores."""
    out: list[Entity] = []
    for kind, first, last in entity_spans(tags):
        start, end = spans[first][0], spans[last - 1][1]
        out.append(Entity(label=kind, start=start, end=end, text=text[start:end],
                          score=round(float(scores[first:last].mean()), 6)))
    return out
