"""Corpus assembly: explicit files, the low-resource split, transfer data, local layout via the
language YAMLs, and the Hugging Face (wikiann schema) conversion."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import make_sentences, write_conll
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from xtremedistil_ner.config import DataConfig
from xtremedistil_ner.data.corpus import build_corpus
from xtremedistil_ner.data.hub import sentences_from_dataset
from xtremedistil_ner.data.labels import DataError
from xtremedistil_ner.preflight import unseen_labels_warning

LANGS = ["en", "de"]
WIKIANN = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def _files(root: Path, langs=LANGS) -> dict[str, dict[str, str]]:
    return {lang: {s: str(root / lang / f"{s}.txt") for s in ("train", "dev", "test")} for lang in langs}


def _low_resource(root: Path, seed: int, **kw):
    cfg = DataConfig(files=_files(root), train_per_lang=50, transfer_per_lang=40, **kw)
    return build_corpus(cfg, LANGS, seed)


def test_counts_per_language(tiny_data: Path) -> None:
    corpus = build_corpus(DataConfig(files=_files(tiny_data)), LANGS, seed=1)
    per = corpus.stats["languages"]
    for lang in LANGS:
        assert per[lang]["train"] == 120 and per[lang]["dev"] == 30 and per[lang]["test"] == 30
        # full-data setting: the labeled train is also the (untagged) transfer set
        assert per[lang]["transfer"] == 120
        assert per[lang]["repaired_tags"] == 0
    assert len(corpus.train) == 240 and len(corpus.dev) == 60 and len(corpus.test) == 60
    assert len(corpus.transfer) == 240 and all(s.tags is None for s in corpus.transfer)
    assert corpus.languages == ["de", "en"]
    assert corpus.labels.tags == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert corpus.stats["labels"] == corpus.labels.tags
    assert "labels_not_in_train" not in corpus.stats
    assert {s.lang for s in corpus.train if s.origin.startswith(str(tiny_data / "de"))} == {"de"}


def test_dev_and_test_limits(tiny_data: Path) -> None:
    cfg = DataConfig(files=_files(tiny_data), dev_limit=5, test_limit=7, include_labeled_in_transfer=False)
    corpus = build_corpus(cfg, LANGS, seed=1)
    assert len(corpus.dev) == 10 and len(corpus.test) == 14
    assert list(corpus.transfer) == [] and len(corpus.transfer) == 0


def test_low_resource_split(tiny_data: Path) -> None:
    corpus = _low_resource(tiny_data, seed=3)
    for lang in LANGS:
        per = corpus.stats["languages"][lang]
        assert per["train"] == 50
        assert per["transfer"] == 40 + 50
        labeled = [s for s in corpus.train if s.lang == lang]
        transfer = [s for s in corpus.transfer if s.lang == lang]
        assert len(labeled) == 50 and len(transfer) == 90
        assert all(s.tags is not None for s in labeled) and all(s.tags is None for s in transfer)
        labeled_origins = {s.origin for s in labeled}
        assert len(labeled_origins) == 50
        transfer_origins = [s.origin for s in transfer]
        rest = [o for o in transfer_origins if o not in labeled_origins]
        # 40 unlabeled 'rest' sentences, distinct from the labeled ones, plus the 50 labeled ones
        assert len(rest) == 40 and len(set(rest)) == 40
        assert sorted(o for o in transfer_origins if o in labeled_origins) == sorted(labeled_origins)
        # every labeled/rest sentence really comes from this language's train file
        train_file = str(tiny_data / lang / "train.txt")
        assert all(o.rsplit(":", 1)[0] == train_file for o in transfer_origins)


def test_low_resource_without_labeled_in_transfer(tiny_data: Path) -> None:
    corpus = _low_resource(tiny_data, seed=3, include_labeled_in_transfer=False)
    labeled = {s.origin for s in corpus.train}
    assert len(corpus.transfer) == 80
    assert not labeled & {s.origin for s in corpus.transfer}


def test_low_resource_is_deterministic_per_seed(tiny_data: Path) -> None:
    def pick(seed: int):
        c = _low_resource(tiny_data, seed)
        return [s.origin for s in c.train], [s.origin for s in c.transfer]

    assert pick(5) == pick(5)
    assert pick(5)[0] != pick(6)[0]
    # and the tokens of the picked sentences follow their origin (no shuffling of content)
    c = _low_resource(tiny_data, 5)
    full = {s.origin: s.tokens for s in build_corpus(DataConfig(files=_files(tiny_data)), LANGS, 5).train}
    assert all(full[s.origin] == s.tokens for s in c.train + list(c.transfer))


def test_transfer_files_are_read(tiny_data: Path) -> None:
    cfg = DataConfig(
        files=_files(tiny_data),
        transfer_files={"en": [str(tiny_data / "en" / "transfer.txt")]},
        include_labeled_in_transfer=False,
    )
    corpus = build_corpus(cfg, LANGS, seed=1)
    assert corpus.stats["languages"]["en"]["transfer"] == 80
    assert corpus.stats["languages"]["de"]["transfer"] == 0
    assert len(corpus.transfer) == 80
    assert all(s.lang == "en" and s.tags is None and s.tokens for s in corpus.transfer)
    first = (tiny_data / "en" / "transfer.txt").read_text(encoding="utf-8").split("\n")[0].split()
    assert next(iter(corpus.transfer)).tokens == first


def test_label_only_in_test_is_reported_not_fatal(tmp_path: Path) -> None:
    no_loc = [s for s in make_sentences(200, seed=4) if all("LOC" not in t for _, t in s)]
    with_loc = [s for s in make_sentences(50, seed=5) if any("LOC" in t for _, t in s)]
    assert no_loc and with_loc
    files = {
        "en": {
            "train": str(write_conll(tmp_path / "train.txt", no_loc)),
            "dev": str(write_conll(tmp_path / "dev.txt", no_loc[:5])),
            "test": str(write_conll(tmp_path / "test.txt", with_loc)),
        }
    }
    corpus = build_corpus(DataConfig(files=files), ["en"], seed=0)
    assert "LOC" not in corpus.labels.entity_types
    expected = sorted({f"en:{t}" for s in with_loc for _, t in s if "LOC" in t})
    assert "en:I-LOC" in expected  # the fixture data has multi-word locations
    assert corpus.stats["labels_not_in_train"] == expected
    assert len(corpus.test) == len(with_loc)
    warning = unseen_labels_warning(corpus.stats)  # said before any training, and in the report
    assert warning is not None and "en:B-LOC, en:I-LOC" in warning
    assert unseen_labels_warning({"languages": {}}) is None


def test_train_without_entities_is_an_error(tmp_path: Path) -> None:
    only_o = [[("Nothing", "O"), ("happened", "O")]]
    p = str(write_conll(tmp_path / "o.txt", only_o))
    with pytest.raises(DataError, match="no entities"):
        build_corpus(DataConfig(files={"en": {"train": p, "dev": p, "test": p}}), ["en"], seed=0)


def test_no_languages_is_an_error() -> None:
    with pytest.raises(DataError, match="no languages"):
        build_corpus(DataConfig(), [], seed=0)


def test_repaired_tags_are_counted(tmp_path: Path) -> None:
    bad = str(write_conll(tmp_path / "bad.txt", [[("x", "O"), ("Anna", "I-PER")]]))
    corpus = build_corpus(DataConfig(files={"en": {"train": bad, "dev": bad, "test": bad}}), ["en"], seed=0)
    assert corpus.stats["languages"]["en"]["repaired_tags"] == 3  # once per split read
    assert corpus.train[0].tags == ["O", "B-PER"]
    with pytest.raises(DataError, match=re.escape(f"{bad}:2:")):
        build_corpus(DataConfig(files={"en": {"train": bad, "dev": bad, "test": bad}}, strict=True), ["en"], 0)


# --- format: local -------------------------------------------------------------------------


def _fake_root(tmp_path: Path, splits=("train", "dev", "test")) -> Path:
    root = tmp_path / "ner"
    for i, split in enumerate(splits):
        write_conll(root / "wikiann" / "de" / f"{split}.txt", make_sentences(20 + i, seed=30 + i))
    return root


def test_local_format_reads_language_yaml_path(tmp_path: Path) -> None:
    root = _fake_root(tmp_path)
    corpus = build_corpus(DataConfig(format="local", dataset="wikiann", root=str(root)), ["de"], seed=0)
    per = corpus.stats["languages"]["de"]
    assert (per["train"], per["dev"], per["test"]) == (20, 21, 22)
    assert corpus.train[0].origin.startswith(str(root / "wikiann" / "de" / "train.txt") + ":")


def test_local_format_without_root_is_an_error() -> None:
    with pytest.raises(DataError, match="data.root is not set"):
        build_corpus(DataConfig(format="local", root=None), ["de"], seed=0)


def test_local_format_with_wrong_root_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises((DataError, FileNotFoundError), match=re.escape(str(missing / "wikiann" / "de"))):
        build_corpus(DataConfig(format="local", root=str(missing)), ["de"], seed=0)


def test_local_format_missing_split_is_an_error(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, splits=("train", "dev"))
    with pytest.raises(DataError, match=re.escape(str(root / "wikiann" / "de" / "test.txt")) + ".*missing test"):
        build_corpus(DataConfig(format="local", root=str(root)), ["de"], seed=0)


def test_unknown_format_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.format"):
        build_corpus(DataConfig(format="parquet", root=str(tmp_path)), ["de"], seed=0)


def test_explicit_files_override_local_layout_per_split(tmp_path: Path) -> None:
    root = _fake_root(tmp_path)
    extra = write_conll(tmp_path / "my_test.txt", make_sentences(3, seed=99))
    cfg = DataConfig(format="local", root=str(root), files={"de": {"test": str(extra)}})
    per = build_corpus(cfg, ["de"], seed=0).stats["languages"]["de"]
    assert (per["train"], per["dev"], per["test"]) == (20, 21, 3)


# --- hub schema ----------------------------------------------------------------------------


def _hub_dataset(tokens, tags, names=WIKIANN) -> Dataset:
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))})
    return Dataset.from_dict({"tokens": tokens, "ner_tags": tags}, features=features)


def test_hub_class_label_ids_become_tags() -> None:
    ds = _hub_dataset(
        [["Anna", "Schmidt", "lives", "in", "Berlin"], ["Acme", "Corp"]],
        [[1, 2, 0, 0, 5], [3, 4]],
    )
    sents, repaired = sentences_from_dataset(ds, "de", "wikiann/de:train")
    assert repaired == 0
    assert [s.tags for s in sents] == [["B-PER", "I-PER", "O", "O", "B-LOC"], ["B-ORG", "I-ORG"]]
    assert sents[0].tokens == ["Anna", "Schmidt", "lives", "in", "Berlin"]
    assert [s.origin for s in sents] == ["wikiann/de:train[0]", "wikiann/de:train[1]"]
    assert all(s.lang == "de" for s in sents)


def test_hub_repairs_and_strict() -> None:
    ds = _hub_dataset([["x", "Anna", "Berlin"], []], [[0, 2, 6], []])  # O I-PER I-LOC; empty row
    sents, repaired = sentences_from_dataset(ds, "de", "w")
    assert [s.tags for s in sents] == [["O", "B-PER", "B-LOC"]]  # empty row dropped
    assert repaired == 2
    with pytest.raises(DataError, match=r"w\[0\].*word 1"):
        sentences_from_dataset(ds, "de", "w", strict=True)


def test_hub_string_tags() -> None:
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(Value("string"))})
    ds = Dataset.from_dict({"tokens": [["a", "b"]], "ner_tags": [["I-LOC", "I-LOC"]]}, features=features)
    sents, repaired = sentences_from_dataset(ds, "en", "w")
    assert sents[0].tags == ["B-LOC", "I-LOC"] and repaired == 1
    bad = Dataset.from_dict({"tokens": [["a"]], "ner_tags": [["LOC"]]}, features=features)
    with pytest.raises(DataError, match=r"w\[0\].*'LOC'"):
        sentences_from_dataset(bad, "en", "w")


def test_hub_length_mismatch_is_an_error() -> None:
    ds = _hub_dataset([["a", "b"]], [[0]])
    with pytest.raises(DataError, match=r"w\[0\]: 2 tokens but 1 tags"):
        sentences_from_dataset(ds, "en", "w")


@pytest.mark.parametrize("missing", ["tokens", "ner_tags"])
def test_hub_missing_column_is_an_error(missing: str) -> None:
    ds = _hub_dataset([["a"]], [[0]]).remove_columns(missing)
    with pytest.raises(DataError, match=f"where: dataset has no '{missing}' column"):
        sentences_from_dataset(ds, "en", "where")
