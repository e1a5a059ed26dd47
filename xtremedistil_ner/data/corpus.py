"""Assemble the run's data for all languages: labeled train/dev/test, unlabeled transfer,
one shared label set, and counts for the report."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DataConfig
from ..files import not_regular_message
from ..languages import load_language
from .conll import ReadStats, Sentence, read_conll, read_transfer
from .hub import load_hub_split
from .labels import DataError, LabelSet

SPLITS = ("train", "dev", "test")


@dataclass
class Corpus:
    labels: LabelSet
    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]
    transfer: list[Sentence]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return sorted({s.lang for s in self.train + self.dev + self.test})


def split_file(cfg: DataConfig, lang: str, split: str) -> Path | None:
    """The CoNLL file a labeled split is read from, or None when it comes from the Hub. Shared
    with `xdner validate` so that it checks exactly the files a run would read."""
    explicit = cfg.files.get(lang, {})
    if split in explicit:
        return Path(explicit[split])
    if cfg.format == "hub":
        return None
    if cfg.format != "local":
        raise DataError(f"data.format must be 'local' or 'hub' (got {cfg.format!r})")
    if not cfg.root and explicit:
        raise DataError(f"data.files.{lang} has no {split} file and data.root is not set to find one under: add "
                        f"data.files.{lang}.{split} (a run reads train, dev and test for every language)")
    if not cfg.root:
        raise DataError(f"data.root is not set (needed for {lang}): point it at the folder holding "
                        "<dataset>/<lang>/{train,dev,test}.txt, or list the language's files under data.files")
    path = load_language(lang).local_dir(cfg.dataset, Path(cfg.root)) / f"{split}.txt"
    if not path.exists():
        raise DataError(f"data.root: {path}: missing {split} split for language {lang}")
    refused = not_regular_message(path)
    if refused:
        raise DataError(f"data.root: {refused} (the {split} split for language {lang})")
    return path


def _labeled_split(cfg: DataConfig, lang: str, split: str, stats: ReadStats) -> list[Sentence]:
    path = split_file(cfg, lang, split)
    if path is not None:
        return read_conll(path, lang, cfg.strict, stats)
    hub = load_language(lang).hub(cfg.dataset)
    sentences, repaired = load_hub_split(hub["path"], hub.get("name"), split, lang, cfg.strict)
    stats.repaired += repaired
    stats.sentences += len(sentences)
    return sentences


def build_corpus(cfg: DataConfig, languages: list[str], seed: int) -> Corpus:
    """Read every language. In the low-resource setting (`train_per_lang`), a seeded shuffle of
    train gives N labeled sentences and the next `transfer_per_lang` become unlabeled transfer."""
    if not languages:
        raise DataError("no languages selected: set `languages:` in the config or pass --languages")
    train: list[Sentence] = []
    dev: list[Sentence] = []
    test: list[Sentence] = []
    transfer: list[Sentence] = []
    per_lang: dict[str, dict[str, int]] = {}
    for lang in languages:
        stats = ReadStats()
        lang_train = _labeled_split(cfg, lang, "train", stats)
        lang_dev = _labeled_split(cfg, lang, "dev", stats)[: cfg.dev_limit]
        lang_test = _labeled_split(cfg, lang, "test", stats)[: cfg.test_limit]
        lang_transfer: list[Sentence] = []
        if cfg.train_per_lang is not None:
            order = list(range(len(lang_train)))
            random.Random(f"{seed}:{lang}").shuffle(order)
            labeled = [lang_train[i] for i in order[: cfg.train_per_lang]]
            rest = [lang_train[i] for i in order[cfg.train_per_lang :]][: cfg.transfer_per_lang]
            lang_transfer.extend(Sentence(s.tokens, None, lang, s.origin) for s in rest)
            lang_train = labeled
        for path in cfg.transfer_files.get(lang, []):
            lang_transfer.extend(read_transfer(Path(path), lang))
        if cfg.include_labeled_in_transfer:
            lang_transfer.extend(Sentence(s.tokens, None, lang, s.origin) for s in lang_train)
        per_lang[lang] = {
            "train": len(lang_train),
            "dev": len(lang_dev),
            "test": len(lang_test),
            "transfer": len(lang_transfer),
            "repaired_tags": stats.repaired,
        }
        train += lang_train
        dev += lang_dev
        test += lang_test
        transfer += lang_transfer
    labels = LabelSet.from_tags(t for s in train for t in s.tags or [])
    if len(labels.entity_types) == 0:
        raise DataError("the training data has no entities at all (every tag is O)")
    unseen = sorted(
        {(s.lang, t) for s in dev + test for t in s.tags or [] if t not in labels.label2id}
    )
    stats_out: dict[str, Any] = {"languages": per_lang, "labels": labels.tags}
    if unseen:
        stats_out["labels_not_in_train"] = [f"{lang}:{tag}" for lang, tag in unseen]
    return Corpus(labels, train, dev, test, transfer, stats_out)
