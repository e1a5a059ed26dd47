"""Synthetic demo corpus: valid CoNLL/IOB2, held-out entities really unseen, native scripts, and
byte-for-byte reproducible, so the offline demo measures something and measures it the same way."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from xtremedistil_ner.demo_data import DEFAULT_DEMO_LANGUAGES, generate_demo_corpus

Sentence = list[tuple[str, str]]
SIZES = dict(n_train=300, n_dev=100, n_test=100, n_transfer=250)
SPLITS = ("train", "dev", "test")


def parse_conll(path: Path) -> list[Sentence]:
    sentences: list[Sentence] = []
    current: Sentence = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line:
            token, tag = line.split("\t")
            current.append((token, tag))
        elif current:
            sentences.append(current)
            current = []
    assert not current, f"{path}: missing blank line after the last sentence"
    return sentences


def spans(sentence: Sentence) -> list[tuple[str, str]]:
    """(type, entity string) for each entity; assumes valid IOB2."""
    out: list[tuple[str, list[str]]] = []
    for token, tag in sentence:
        if tag.startswith("B-"):
            out.append((tag[2:], [token]))
        elif tag.startswith("I-"):
            out[-1][1].append(token)
    return [(kind, " ".join(tokens)) for kind, tokens in out]


def share(tokens: list[str], first: str, last: str) -> float:
    """Share of tokens with letters whose letters fall in [first, last] (one script's block)."""
    worded = [t for t in tokens if any(unicodedata.category(c)[0] == "L" for c in t)]
    inside = [t for t in worded if all(first <= c <= last for c in t if unicodedata.category(c)[0] == "L")]
    return len(inside) / len(worded)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Path]]]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo_corpus(out, **SIZES)


@pytest.fixture(scope="module")
def parsed(corpus: tuple[Path, dict[str, dict[str, Path]]]) -> dict[str, dict[str, list[Sentence]]]:
    return {lang: {s: parse_conll(p[s]) for s in SPLITS} for lang, p in corpus[1].items()}


def test_layout_and_sizes(corpus: tuple[Path, dict[str, dict[str, Path]]], parsed) -> None:
    out, paths = corpus
    assert set(DEFAULT_DEMO_LANGUAGES) >= {"en", "de", "es", "ru", "hi", "zh"}
    assert set(paths) == set(DEFAULT_DEMO_LANGUAGES)
    assert "synthetic" in (out / "README.md").read_text(encoding="utf-8").lower()
    for lang, files in paths.items():
        assert {s: p.name for s, p in files.items()} == {s: f"{s}.txt" for s in (*SPLITS, "transfer")}
        assert all(p.parent == out / lang for p in files.values())
        assert [len(parsed[lang][s]) for s in SPLITS] == [SIZES["n_train"], SIZES["n_dev"], SIZES["n_test"]]
        assert not list((out / lang).glob("*.tmp")), "atomic writes leave no temp files"


def test_tags_are_valid_iob2(parsed) -> None:
    allowed = {"O"} | {f"{p}-{t}" for p in "BI" for t in ("PER", "ORG", "LOC")}
    for lang, splits in parsed.items():
        for split, sentences in splits.items():
            for sentence in sentences:
                prev = "O"
                for token, tag in sentence:
                    assert token and not any(c.isspace() for c in token), (lang, split, token)
                    assert tag in allowed, (lang, split, tag)
                    assert not tag.startswith("I-") or prev[2:] == tag[2:], (lang, split, sentence)
                    prev = tag


def test_train_has_every_type_ambiguity_and_adjacent_entities(parsed) -> None:
    for lang, splits in parsed.items():
        train = splits["train"]
        assert {kind for s in train for kind, _ in spans(s)} == {"PER", "ORG", "LOC"}, lang
        assert any(all(tag == "O" for _, tag in s) for s in train), f"{lang}: no entity-free sentences"
        # Same-type entities back to back: only B- tells where one ends.
        pairs = [(prev, tag) for s in train for (_, prev), (_, tag) in zip(s, s[1:])]
        assert any(tag.startswith("B-") and prev[2:] == tag[2:] for prev, tag in pairs), lang
        types: dict[str, set[str]] = {}
        for sentences in splits.values():
            for s in sentences:
                for kind, text in spans(s):
                    types.setdefault(text, set()).add(kind)
        assert any(len(kinds) > 1 for kinds in types.values()), f"{lang}: no string with two entity types"


def test_dev_and_test_entities_are_unseen_in_train(parsed) -> None:
    for lang, splits in parsed.items():
        seen = {text for s in splits["train"] for _, text in spans(s)}
        for split in ("dev", "test"):
            held = {text for s in splits[split] for _, text in spans(s)}
            assert held and not held & seen, (lang, split, sorted(held & seen)[:5])


def test_native_scripts(parsed) -> None:
    tokens = {lang: [t for s in splits["train"] for t, _ in s] for lang, splits in parsed.items()}
    assert share(tokens["ru"], "\u0400", "\u04ff") > 0.95
    assert share(tokens["hi"], "\u0900", "\u097f") > 0.95
    assert all(len(t) == 1 for t in tokens["zh"])
    assert share(tokens["zh"], "\u4e00", "\u9fff") > 0.95


def test_transfer_is_plain_text(corpus: tuple[Path, dict[str, dict[str, Path]]]) -> None:
    for lang, files in corpus[1].items():
        text = files["transfer"].read_text(encoding="utf-8")
        lines = text.split("\n")
        assert lines[-1] == "" and len(lines) - 1 == SIZES["n_transfer"], lang
        assert "\t" not in text and all(line and "  " not in line for line in lines[:-1]), lang


def test_deterministic_per_seed(tmp_path: Path) -> None:
    small = dict(languages=("en", "zh"), n_train=40, n_dev=10, n_test=10, n_transfer=20)

    def snapshot(out: Path, seed: int) -> dict[str, bytes]:
        generate_demo_corpus(out, seed=seed, **small)
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    first = snapshot(tmp_path / "a", 7)
    assert first == snapshot(tmp_path / "b", 7)
    other = snapshot(tmp_path / "c", 8)
    assert first.keys() == other.keys() and first["en/train.txt"] != other["en/train.txt"]


def test_unknown_language_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="xx"):
        generate_demo_corpus(tmp_path, languages=("en", "xx"))
