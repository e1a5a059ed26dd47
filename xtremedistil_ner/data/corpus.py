"""Assemble the run's data for all languages: labeled train/dev/test, unlabeled transfer,
one shared label set, and counts for the report. The labeled splits are held in memory; the
transfer set is not: it is read again from its sources on every pass over it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..config import DataConfig
from ..files import not_regular_message
from ..languages import load_language
from .conll import ReadStats, Sentence, read_conll, read_transfer
from .hub import load_hub_split
from .labels import DataError, LabelSet

SPLITS = ("train", "dev", "test")


@dataclass
class TransferPart:
    """One language's transfer sentences from one source: `read()` yields them afresh, `count` of them."""

    lang: str
    count: int
    read: Callable[[], Iterable[Sentence]]


@dataclass
class TransferSet:
    """The unlabeled transfer sentences in order. Iterating reads them again from their files (or
    the train split's unlabeled remainder), so a pass over millions of sentences holds only the
    ones being encoded, however large the set."""

    parts: list[TransferPart]

    def __iter__(self) -> Iterator[Sentence]:
        for part in self.parts:
            yield from part.read()

    def __len__(self) -> int:
        return sum(p.count for p in self.parts)


@dataclass
class Corpus:
    labels: LabelSet
    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]
    transfer: TransferSet
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


def _labeled_split(cfg: DataConfig, lang: str, split: str, stats: ReadStats, warn: bool = True) -> list[Sentence]:
    path = split_file(cfg, lang, split)
    if path is not None:
        return read_conll(path, lang, cfg.strict, stats, warn)
    hub = load_language(lang).hub(cfg.dataset)
    sentences, repaired = load_hub_split(hub["path"], hub.get("name"), split, lang, cfg.strict)
    stats.repaired += repaired
    stats.sentences += len(sentences)
    return sentences


def _train_order(n: int, seed: int, lang: str) -> list[int]:
    """The seeded shuffle of a train split: its first `train_per_lang` are labeled, the rest transfer."""
    order = list(range(n))
    random.Random(f"{seed}:{lang}").shuffle(order)
    return order


def _rest_of_train(cfg: DataConfig, lang: str, seed: int) -> Iterator[Sentence]:
    """The train split's sentences after the labeled ones, untagged, read again from its source."""
    train = _labeled_split(cfg, lang, "train", ReadStats(), warn=False)
    for i in _train_order(len(train), seed, lang)[cfg.train_per_lang :][: cfg.transfer_per_lang]:
        yield Sentence(train[i].tokens, None, lang, train[i].origin)


def _untagged(sentences: list[Sentence]) -> Iterator[Sentence]:
    return (Sentence(s.tokens, None, s.lang, s.origin) for s in sentences)


def build_corpus(cfg: DataConfig, languages: list[str], seed: int) -> Corpus:
    """Read every language. In the low-resource setting (`train_per_lang`), a seeded shuffle of
    train gives N labeled sentences and the next `transfer_per_lang` become unlabeled transfer.
    Transfer files are read through once here, so a bad line stops the run before any work."""
    if not languages:
        raise DataError("no languages selected: set `languages:` in the config or pass --languages")
    train: list[Sentence] = []
    dev: list[Sentence] = []
    test: list[Sentence] = []
    transfer: list[TransferPart] = []
    per_lang: dict[str, dict[str, int]] = {}
    for lang in languages:
        stats = ReadStats()
        lang_train = _labeled_split(cfg, lang, "train", stats)
        lang_dev = _labeled_split(cfg, lang, "dev", stats)[: cfg.dev_limit]
        lang_test = _labeled_split(cfg, lang, "test", stats)[: cfg.test_limit]
        parts: list[TransferPart] = []
        if cfg.train_per_lang is not None:
            order = _train_order(len(lang_train), seed, lang)
            rest = len(order[cfg.train_per_lang :][: cfg.transfer_per_lang])
            lang_train = [lang_train[i] for i in order[: cfg.train_per_lang]]
            if rest:
                parts.append(TransferPart(lang, rest, lambda lang=lang: _rest_of_train(cfg, lang, seed)))
        for path in cfg.transfer_files.get(lang, []):
            count = sum(1 for _ in read_transfer(Path(path), lang))
            parts.append(TransferPart(lang, count, lambda path=path, lang=lang: read_transfer(Path(path), lang)))
        if cfg.include_labeled_in_transfer:
            parts.append(TransferPart(lang, len(lang_train), lambda labeled=lang_train: _untagged(labeled)))
        per_lang[lang] = {
            "train": len(lang_train),
            "dev": len(lang_dev),
            "test": len(lang_test),
            "transfer": sum(p.count for p in parts),
            "repaired_tags": stats.repaired,
        }
        train += lang_train
        dev += lang_dev
        test += lang_test
        transfer += parts
    labels = LabelSet.from_tags(t for s in train for t in s.tags or [])
    if len(labels.entity_types) == 0:
        raise DataError("the training data has no entities at all (every tag is O)")
    unseen = sorted(
        {(s.lang, t) for s in dev + test for t in s.tags or [] if t not in labels.label2id}
    )
    stats_out: dict[str, Any] = {"languages": per_lang, "labels": labels.tags}
    if unseen:
        stats_out["labels_not_in_train"] = [f"{lang}:{tag}" for lang, tag in unseen]
    return Corpus(labels, train, dev, test, TransferSet(transfer), stats_out)
