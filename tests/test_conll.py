"""CoNLL reading: the accepted column layouts, encodings and line endings, and errors that name
the file and line instead of silently skipping or mislabeling anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xtremedistil_ner.data.conll import (
    ReadStats,
    decode_lines,
    iter_lines,
    read_conll,
    read_text,
    read_transfer,
    write_conll,
)
from xtremedistil_ner.data.labels import DataError


def _write(tmp_path: Path, text: str | bytes, name: str = "data.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


def _pairs(sentences) -> list[list[tuple[str, str]]]:
    return [list(zip(s.tokens, s.tags)) for s in sentences]


def test_tab_separated_token_may_contain_spaces(tmp_path: Path) -> None:
    path = _write(tmp_path, "New York\tB-LOC\nCity\tI-LOC\nis\tO\n\nhi there\tO\n")
    sents = read_conll(path, "en")
    assert _pairs(sents) == [[("New York", "B-LOC"), ("City", "I-LOC"), ("is", "O")], [("hi there", "O")]]
    assert all(s.lang == "en" for s in sents)


def test_whitespace_columns_take_tag_from_last_column(tmp_path: Path) -> None:
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
    sents = read_conll(_write(tmp_path, text), "en")
    assert _pairs(sents) == [[("EU", "B-ORG"), ("rejects", "O"), ("German", "B-MISC")]]


def test_tab_columns_with_extra_columns_take_last(tmp_path: Path) -> None:
    sents = read_conll(_write(tmp_path, "EU\tNNP\tB-NP\tB-ORG\nsays\tVBZ\tB-VP\tO\n"), "en")
    assert _pairs(sents) == [[("EU", "B-ORG"), ("says", "O")]]


def test_docstart_is_skipped_and_separates_sentences(tmp_path: Path) -> None:
    text = "-DOCSTART-\tO\n\na\tO\nb\tB-PER\n-DOCSTART-\tO\nc\tB-LOC\n"
    sents = read_conll(_write(tmp_path, text), "en")
    assert _pairs(sents) == [[("a", "O"), ("b", "B-PER")], [("c", "B-LOC")]]
    assert all("-DOCSTART-" not in s.tokens for s in sents)


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = _write(tmp_path, "Anna\tB-PER\r\nSchmidt\tI-PER\r\n\r\nParis\tB-LOC\r\n\r\n")
    sents = read_conll(path, "en")
    assert _pairs(sents) == [[("Anna", "B-PER"), ("Schmidt", "I-PER")], [("Paris", "B-LOC")]]
    assert all("\r" not in t for s in sents for t in s.tokens + s.tags)


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffÄrger\tO\nMünchen\tB-LOC\n")
    sents = read_conll(path, "de")
    assert _pairs(sents) == [[("Ärger", "O"), ("München", "B-LOC")]]


@pytest.mark.parametrize("content", ["", "\n\n  \n\t\n", "\r\n\r\n"])
def test_empty_or_blank_file_is_an_error_naming_the_file(tmp_path: Path, content: str) -> None:
    path = _write(tmp_path, content, "empty_split.txt")
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_conll(path, "en")


def test_docstart_only_file_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "-DOCSTART- -X- -X- O\n\n", "docstart.txt")
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_conll(path, "en")


def test_missing_tag_column_names_path_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "a\tO\nb\tO\n\nlonely\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:4:")) as info:
        read_conll(path, "en")
    assert "lonely" in str(info.value)


@pytest.mark.parametrize("bad", ["B_PER", "X-LOC", "PER", "B-", "o"])
def test_tag_outside_scheme_names_path_and_line(tmp_path: Path, bad: str) -> None:
    path = _write(tmp_path, f"a\tO\n\nb\tB-PER\nc\t{bad}\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:4:")) as info:
        read_conll(path, "en")
    assert repr(bad) in str(info.value)


def test_invalid_iob2_is_repaired_and_counted(tmp_path: Path) -> None:
    text = "x\tO\nAnna\tI-PER\nSmith\tI-PER\n\nAnna\tB-PER\nBerlin\tI-LOC\n\nok\tB-ORG\nok\tI-ORG\n"
    stats = ReadStats()
    sents = read_conll(_write(tmp_path, text), "en", stats=stats)
    assert [s.tags for s in sents] == [["O", "B-PER", "I-PER"], ["B-PER", "B-LOC"], ["B-ORG", "I-ORG"]]
    assert stats.repaired == 2
    assert stats.sentences == 3
    assert stats.tokens == 7


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a\tO\n\nx\tO\nAnna\tI-PER\n", 4),  # I-PER after O
        ("a\tO\nb\tO\n\nc\tO\nAnna\tB-PER\nBerlin\tI-LOC\n", 6),  # I-LOC after B-PER
        ("-DOCSTART-\tO\n\nBerlin\tI-LOC\n", 3),  # I- opens the sentence
    ],
)
def test_strict_mode_rejects_with_line_of_offending_token(tmp_path: Path, text: str, line: int) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=re.escape(f"{path}:{line}:")):
        read_conll(path, "en", strict=True)
    # Without strict the same file loads (and is repaired).
    stats = ReadStats()
    read_conll(path, "en", stats=stats)
    assert stats.repaired == 1


@pytest.mark.parametrize("raw", [b"a\tO\r\nb\rc\r\n\r\nd\te\n\n", b"\xef\xbb\xbfx\r\ry\n\rz", b"one\n", b"\n\nlast line"])
def test_streamed_lines_are_the_whole_file_lines(tmp_path: Path, raw: bytes) -> None:
    """A file read line by line splits (and numbers) lines as the whole-file decode does, so a
    transfer file streamed in names the same line in every error."""
    path = _write(tmp_path, raw)
    whole = decode_lines(raw)
    assert list(iter_lines(path)) == (whole[:-1] if whole[-1] == "" else whole)


def test_bad_byte_in_a_streamed_transfer_file_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "Hello world\nfine\n\nCaf\xe9 ok\n".encode("latin-1"))
    sents = read_transfer(path, "fr")
    assert next(sents).tokens == ["Hello", "world"]
    with pytest.raises(DataError, match=re.escape(f"{path}:4: not valid UTF-8 (byte 0xe9 at offset 21)")):
        list(sents)


def test_latin1_file_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "a\tO\n\nCaf\xe9\tO\n".encode("latin-1"))
    with pytest.raises(DataError, match=re.escape(f"{path}:3:")) as info:
        read_conll(path, "fr")
    assert "UTF-8" in str(info.value)


def test_read_text_plain_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "Anna lives in  Berlin .\n\n  \nHello\tworld\r\n")
    sents = list(read_text(path, "en"))
    assert [s.tokens for s in sents] == [["Anna", "lives", "in", "Berlin", "."], ["Hello", "world"]]
    assert all(s.tags is None and s.lang == "en" for s in sents)


def test_read_transfer_plain_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "Anna lives in Berlin .\nHello world\n")
    sents = list(read_transfer(path, "en"))
    assert [s.tokens for s in sents] == [["Anna", "lives", "in", "Berlin", "."], ["Hello", "world"]]
    assert all(s.tags is None for s in sents)


def test_read_transfer_conll_ignores_tags(tmp_path: Path) -> None:
    # Tags are ignored: even invalid ones, and lines without a tag column are fine.
    path = _write(tmp_path, "New York\tB-LOC\nis\tO\n\nfoo\tBOGUS\nbar\n")
    sents = list(read_transfer(path, "en"))
    assert [s.tokens for s in sents] == [["New York", "is"], ["foo", "bar"]]
    assert all(s.tags is None for s in sents)


def test_one_token_sentence(tmp_path: Path) -> None:
    sents = read_conll(_write(tmp_path, "Hello\tO\n\nParis\tB-LOC"), "en")  # no final newline
    assert _pairs(sents) == [[("Hello", "O")], [("Paris", "B-LOC")]]


def test_very_long_sentence(tmp_path: Path) -> None:
    n = 10_000
    tags = ["B-PER" if i % 3 == 0 else ("I-PER" if i % 3 == 1 else "O") for i in range(n)]
    tokens = [f"w{i}" for i in range(n)]
    path = tmp_path / "long.txt"
    write_conll(path, [(tokens, tags)])
    sents = read_conll(path, "en")
    assert len(sents) == 1
    assert sents[0].tokens == tokens and sents[0].tags == tags


def test_control_and_zero_width_characters_are_kept(tmp_path: Path) -> None:
    tokens = ["a\u200bb", "\u200d", "x\x01y", "\ufeffz", "l\u2028m", "\x0b"]
    path = _write(tmp_path, "".join(f"{t}\tO\n" for t in tokens))
    sents = read_conll(path, "en")
    assert sents[0].tokens == tokens


def test_origin_points_at_first_line_of_sentence(tmp_path: Path) -> None:
    path = _write(tmp_path, "-DOCSTART-\tO\n\na\tO\nb\tO\n\n\nc\tO\n")
    sents = read_conll(path, "en")
    assert [s.origin for s in sents] == [f"{path}:3", f"{path}:7"]


# --- property: write_conll -> read_conll round-trips -------------------------------------

_token = (
    st.text(
        alphabet=st.characters(blacklist_characters="\t\n\r\ufeff", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=8,
    )
    .filter(lambda t: t.strip() == t and t.strip() != "" and t != "-DOCSTART-")
)


@st.composite
def _iob2_tags(draw, n: int) -> list[str]:
    tags: list[str] = []
    for _ in range(n):
        choice = draw(st.sampled_from(["O", "B", "I"]))
        kind = draw(st.sampled_from(["PER", "LOC", "ORG", "MISC"]))
        if choice == "O":
            tags.append("O")
        elif choice == "I" and tags and tags[-1] != "O":
            tags.append("I-" + tags[-1][2:])  # continue the current entity
        else:
            tags.append("B-" + kind)
    return tags


@st.composite
def _sentences(draw) -> list[tuple[list[str], list[str]]]:
    out = []
    for n in draw(st.lists(st.integers(1, 6), min_size=1, max_size=5)):
        out.append((draw(st.lists(_token, min_size=n, max_size=n)), draw(_iob2_tags(n))))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sentences=_sentences())
def test_write_then_read_round_trips(tmp_path: Path, sentences) -> None:
    path = tmp_path / "roundtrip.txt"
    write_conll(path, sentences)
    stats = ReadStats()
    got = read_conll(path, "xx", strict=True, stats=stats)
    assert [(s.tokens, s.tags) for s in got] == [(list(t), list(g)) for t, g in sentences]
    assert stats.repaired == 0
