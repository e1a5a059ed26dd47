"""One IOB2 label set shared by every language (tag validity and repair come from the runtime,
which tags with the same rules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from xdner_runtime.tags import is_valid_tag, split_tag

from ..errors import XdnerError


class DataError(XdnerError, ValueError):
    """Bad input data; the message names the file, the line and what is wrong."""


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
        return cls(tuple({split_tag(t)[1] for t in tags if t != "O" and is_valid_tag(t)}))

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
