"""CoNLL-style files: `token<TAB>tag` or whitespace columns with the tag last, blank line
between sentences. Errors name the file and line; nothing is silently skipped (TAB-separated
columns between the token and the tag are dropped with a warning, an error under data.strict)."""

from __future__ import annotations

import codecs
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from xdner_runtime.tags import is_valid_tag, repair_iob2

from ..files import not_regular_message
from ..io import atomic_path
from .labels import DataError

logger = logging.getLogger(__name__)


@dataclass
class Sentence:
    """One sentence: words, optional gold IOB2 tags, its language and where it came from."""

    tokens: list[str]
    tags: list[str] | None
    lang: str
    origin: str = ""


@dataclass
class ReadStats:
    sentences: int = 0
    tokens: int = 0
    repaired: int = 0


@dataclass(frozen=True)
class LineProblem:
    """Why a file or one of its lines cannot be read (`line` is None for whole-file problems).
    A value rather than an exception so `xdner validate` can collect every one of them."""

    line: int | None
    message: str

    def error(self, path: Path) -> DataError:
        where = str(path) if self.line is None else f"{path}:{self.line}"
        return DataError(f"{where}: {self.message}")


@dataclass
class ParsedSentence:
    """One sentence as it appears in the file: each word's line number, token and raw tag
    (tags are empty when read without tags), and the columns between token and tag that are
    not read, by line (the line's text, those columns)."""

    lines: list[int]
    tokens: list[str]
    tags: list[str]
    dropped: dict[int, tuple[str, list[str]]] = field(default_factory=dict)


EMPTY_FILE = LineProblem(None, "file is empty (no sentences)")


def not_utf8(line: int, byte: int, offset: int) -> LineProblem:
    """The problem of an undecodable byte, said the same way by `decode_lines` and `iter_lines`."""
    return LineProblem(line, f"not valid UTF-8 (byte 0x{byte:02x} at offset {offset}); "
                             "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`")


def decode_lines(raw: bytes) -> list[str] | LineProblem:
    """Split a file's bytes into lines (BOM stripped, any line ending), or the problem that
    stops it being read at all."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return not_utf8(raw[: exc.start].count(b"\n") + 1, raw[exc.start], exc.start)
    if not text.strip():
        return EMPTY_FILE
    # splitlines() would also split on U+2028 and friends, which may sit inside tokens.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _require_regular(path: Path) -> None:
    """A data file is opened only if it is a regular file (a FIFO would block the read)."""
    refused = not_regular_message(path)
    if refused:
        raise DataError(f"{refused} (data files must be regular files)")


def iter_lines(path: Path) -> Iterator[str]:
    """A file's lines as `decode_lines` splits them (BOM stripped, any line ending), read as they
    come, so a transfer file of millions of sentences is never whole in memory. The problem that
    stops it being read raises, naming the line."""
    _require_regular(path)
    offset, lineno, any_text = 0, 0, False
    with open(path, "rb") as f:
        for raw in f:
            lineno += 1
            body = raw[len(codecs.BOM_UTF8):] if offset == 0 and raw.startswith(codecs.BOM_UTF8) else raw
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise not_utf8(lineno, body[exc.start], offset + len(raw) - len(body) + exc.start).error(path) from None
            offset += len(raw)
            text = text.removesuffix("\n").removesuffix("\r")  # "\r\n" is one line ending; a lone "\r" is one too
            any_text = any_text or bool(text.strip())
            yield from text.split("\r")
    if not any_text:
        raise EMPTY_FILE.error(path)


def is_tab_separated(line: str) -> bool:
    """A line with a TAB splits on TABs only (tokens may hold spaces); otherwise on whitespace."""
    return "\t" in line


def _split_columns(line: str) -> list[str]:
    if is_tab_separated(line):
        return [c.strip(" ") for c in line.split("\t")]
    return line.split()


def _line_problem(line: str, cols: list[str]) -> str | None:
    """What is wrong with a labeled token line, if anything."""
    if len(cols) < 2:
        return (
            f"no tag column in {line!r}; expected 'token<TAB>tag' "
            "(or whitespace-separated columns with the tag last)"
        )
    if not cols[0]:
        return f"empty token in {line!r}; nothing precedes the first TAB: put the word there or delete the line"
    if not is_valid_tag(cols[-1]):
        return f"tag {cols[-1]!r} is outside the IOB2 scheme; expected O, B-TYPE or I-TYPE"
    return None


def parse_conll(lines: Iterable[str], with_tags: bool = True) -> Iterator[ParsedSentence | LineProblem]:
    """The CoNLL line rules, in one place for `read_conll` (which stops at the first problem) and
    `xdner validate` (which reports them all). A bad line is reported and left out of its sentence;
    a file that yields nothing at all gets a final whole-file problem."""
    sent = ParsedSentence([], [], [])
    produced = False
    for lineno, line in enumerate(lines, start=1):
        cols = _split_columns(line) if line.strip(" \t") else []
        if not cols or cols[0] == "-DOCSTART-":  # blank line or document marker: a sentence boundary
            if sent.tokens:
                produced = True
                yield sent
                sent = ParsedSentence([], [], [])
            continue
        if not with_tags:
            sent.lines.append(lineno)
            sent.tokens.append(cols[0] if len(cols) > 1 else line.strip(" \t"))
            continue
        problem = _line_problem(line, cols)
        if problem is not None:
            produced = True
            yield LineProblem(lineno, problem)
            continue
        sent.lines.append(lineno)
        sent.tokens.append(cols[0])
        sent.tags.append(cols[-1])
        if len(cols) > 2 and is_tab_separated(line):  # whitespace columns (CoNLL-2003's POS, chunk) are the format
            sent.dropped[lineno] = (line, cols[1:-1])
    if sent.tokens:
        produced = True
        yield sent
    if not produced:
        yield LineProblem(None, "no sentences found (only blank or -DOCSTART- lines)")


def dropped_columns(dropped: dict[int, tuple[str, list[str]]]) -> LineProblem | None:
    """One problem per file for its lines with columns between the token (first) and the tag
    (last), at the first of them: `New<TAB>York<TAB>B-LOC` is read as the token `New`. Whether it
    is an error is the caller's: `data.strict`."""
    if not dropped:
        return None
    first = min(dropped)
    line, cols = dropped[first]
    more = f" (and on {len(dropped) - 1:,} more line(s))" if len(dropped) > 1 else ""
    return LineProblem(first, f"{len(cols) + 2} columns in {line!r}: only the first (the token) and the last (the tag) are "
                              f"read, so {', '.join(map(repr, cols))} {'is' if len(cols) == 1 else 'are'} dropped{more}; "
                              "if that is part of the token, separate its words with a space, not a TAB")


def repair_tags(sent: ParsedSentence) -> tuple[list[str], list[LineProblem]]:
    """IOB2-repaired tags, and one problem per `I-X` that had to become `B-X` (an error in
    strict mode; otherwise only counted, or reported as a warning by `xdner validate`)."""
    tags, fixed = repair_iob2(sent.tags)
    return tags, [
        LineProblem(sent.lines[i], f"'{sent.tags[i]}' does not continue an entity of the same type (IOB2 needs B- first)")
        for i in fixed
    ]


def read_conll(path: Path, lang: str, strict: bool = False, stats: ReadStats | None = None, warn: bool = True) -> list[Sentence]:
    """Read a labeled CoNLL file. `I-X` after `O`/another type is repaired to `B-X` (counted in
    `stats.repaired`) unless `strict`, where it is an error. `warn=False` is for a file read again
    in the same run, whose dropped columns were reported the first time."""
    stats = stats if stats is not None else ReadStats()
    sentences: list[Sentence] = []
    dropped: dict[int, tuple[str, list[str]]] = {}
    for item in parse_conll(iter_lines(path)):
        if isinstance(item, LineProblem):
            raise item.error(path)
        dropped.update(item.dropped)
        final_tags, repairs = repair_tags(item)
        if repairs and strict:
            raise DataError(f"{repairs[0].error(path)}; fix the tag or run without strict mode to repair it to B-")
        stats.repaired += len(repairs)
        sentences.append(Sentence(item.tokens, final_tags, lang, f"{path}:{item.lines[0]}"))
        stats.sentences += 1
        stats.tokens += len(item.tokens)
    problem = dropped_columns(dropped)
    if problem is not None and strict:
        raise DataError(f"{problem.error(path)} (data.strict: true refuses this)")
    if problem is not None and warn:
        logger.warning(f"{problem.error(path)}; data.strict: true refuses such files")
    return sentences


def read_text(path: Path, lang: str) -> Iterator[Sentence]:
    """Unlabeled transfer data: one sentence per line, words separated by whitespace; read as it is
    iterated."""
    found = False
    for i, line in enumerate(iter_lines(path), start=1):
        if line.strip():
            found = True
            yield Sentence(line.split(), None, lang, f"{path}:{i}")
    if not found:
        raise DataError(f"{path}: no sentences found")


def read_transfer(path: Path, lang: str) -> Iterator[Sentence]:
    """Transfer data in either form, read as it is iterated: CoNLL (tags ignored) if any line of
    its first 64 KiB has a TAB, else plain text."""
    _require_regular(path)
    with open(path, "rb") as f:
        head = f.read(65536)
    if b"\t" in head:
        for item in parse_conll(iter_lines(path), with_tags=False):
            if isinstance(item, LineProblem):
                raise item.error(path)
            yield Sentence(item.tokens, None, lang, f"{path}:{item.lines[0]}")
        return
    yield from read_text(path, lang)


def format_conll(sentences: Iterable[tuple[Sequence[str], Sequence[str]]]) -> Iterator[str]:
    for tokens, tags in sentences:
        for token, tag in zip(tokens, tags, strict=True):
            yield f"{token}\t{tag}\n"
        yield "\n"


def write_conll(path: Path, sentences: Iterable[tuple[Sequence[str], Sequence[str]]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(format_conll(sentences))
