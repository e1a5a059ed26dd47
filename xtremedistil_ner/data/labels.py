"""One IOB2 label set shared by every language, with validation and repair of bad sequences."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..errors import XdnerError


class DataError(XdnerError, ValueError):
    """Bad input data; the message names the file, the line and what is wrong."""


def _split_tag(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if sep != "-" or prefix not in ("B", "I") or not kind:
        return "?", tag
    return prefix, kind


def is_valid_tag(tag: str) -> bool:
    return _split_tag(tag)[0] != "?"


def repair_iob2(tags: Sequence[str]) -> tuple[list[str], list[int]]:
    """Return tags with each `I-X` that does not continue an `X` entity turned into `B-X`,
    and the positions that were changed."""
    out: list[str] = []
    fixed: list[int] = []
    prev_kind = ""
    for i, tag in enumerate(tags):
        prefix, kind = _split_tag(tag)
        if prefix == "I" and prev_kind != kind:
            out.append(f"B-{kind}")
            fixed.append(i)
        else:
            out.append(tag)
        prev_kind = kind if prefix in ("B", "I") else ""
    return out, fixed


@dataclass
class LabelSet:
    """Entity types -> the ordered IOB2 tag list (O first, then B-/I- per type, sorted)."""

    entity_types: tuple[str, ...]
    tags: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.entity_types = tuple(sorted(set(self.entity_types)))
        self.tags = ["O"] + [f"{p}-{t}" for t in self.entity_types for p in ("B", "I")]

    @classmethod
    def from_tags(cls, tags: Iterable[str]) -> "LabelSet":
        return cls(tuple({_split_tag(t)[1] for t in tags if t != "O" and is_valid_tag(t)}))

    @classmethod
    def from_list(cls, tags: Sequence[str]) -> "LabelSet":
        """Rebuild from a stored tag list and check it round-trips (order matters for ids)."""
        labels = cls.from_tags(tags)
        if labels.tags != list(tags):
            raise ValueError(f"stored label list {list(tags)} is not a canonical IOB2 label set")
        return labels

    @property
    def label2id(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tags)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.tags))

    def __len__(self) -> int:
        return len(self.tags)
