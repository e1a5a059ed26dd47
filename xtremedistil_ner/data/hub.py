"""Hugging Face `datasets` in the wikiann schema: `tokens` and `ner_tags` (ClassLabel ids or strings)."""

from __future__ import annotations

from typing import Any

from xdner_runtime.tags import is_valid_tag, repair_iob2

from .conll import Sentence
from .labels import DataError

HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def sentences_from_dataset(ds: Any, lang: str, where: str, strict: bool = False) -> tuple[list[Sentence], int]:
    """Convert a `datasets.Dataset` to sentences; returns them and the number of repaired tags."""
    for col in ("tokens", "ner_tags"):
        if col not in ds.column_names:
            raise DataError(f"{where}: dataset has no '{col}' column (columns: {ds.column_names})")
    feature = ds.features["ner_tags"]
    names = getattr(getattr(feature, "feature", None), "names", None)
    out: list[Sentence] = []
    repaired = 0
    for i, row in enumerate(ds):
        tags = [names[t] for t in row["ner_tags"]] if names else list(row["ner_tags"])
        if len(tags) != len(row["tokens"]):
            raise DataError(f"{where}[{i}]: {len(row['tokens'])} tokens but {len(tags)} tags")
        bad = [t for t in tags if not is_valid_tag(t)]
        if bad:
            raise DataError(f"{where}[{i}]: tag {bad[0]!r} is outside the IOB2 scheme")
        fixed_tags, fixed = repair_iob2(tags)
        if fixed and strict:
            raise DataError(f"{where}[{i}]: '{tags[fixed[0]]}' at word {fixed[0]} does not continue an entity")
        repaired += len(fixed)
        if row["tokens"]:
            out.append(Sentence(list(row["tokens"]), fixed_tags, lang, f"{where}[{i}]"))
    return out, repaired


def load_hub_split(path: str, name: str | None, split: str, lang: str, strict: bool = False) -> tuple[list[Sentence], int]:
    """`load_dataset(path, name, split=...)` -> sentences (needs Hub access or a local HF cache)."""
    from datasets import load_dataset

    ds = load_dataset(path, name, split=HUB_SPLITS.get(split, split))
    return sentences_from_dataset(ds, lang, f"{path}/{name or ''}:{split}", strict)
