"""CoNLL-style files: `token<TAB>tag` or whitespace columns with the tag last, blank line
between sentences. Errors name the file and line; nothing is silently skipped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..io import atomic_path
from .labels import DataError, is_valid_tag, repair_iob2


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


def _read_lines(path: Path) -> list[str]:
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    if not text.strip():
        raise DataError(f"{path}: file is empty (no sentences)")
    # splitlines() would also split on U+2028 and friends, which may sit inside tokens.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _split_columns(line: str) -> list[str]:
    if "\t" in line:
        return [c.strip(" ") for c in line.split("\t")]
    return line.split()


def read_conll(
    path: Path, lang: str, strict: bool = False, stats: ReadStats | None = None, with_tags: bool = True
) -> list[Sentence]:
    """Read a labeled CoNLL file. `I-X` after `O`/another type is repaired to `B-X` (counted in
    `stats.repaired`) unless `strict`, where it is an error. With `with_tags=False` the tag column
    is optional and ignored (unlabeled transfer data in CoNLL form)."""
    stats = stats if stats is not None else ReadStats()
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    lines = _read_lines(path)

    def flush() -> None:
        if not tokens:
            return
        final_tags: list[str] | None = None
        if with_tags:
            final_tags, fixed = repair_iob2(tags)
            if fixed and strict:
                bad = start + fixed[0]
                raise DataError(
                    f"{path}:{bad}: '{tags[fixed[0]]}' does not continue an entity of the same type "
                    "(IOB2 needs B- first); fix the tag or run without strict mode to repair it to B-"
                )
            stats.repaired += len(fixed)
        sentences.append(Sentence(list(tokens), final_tags, lang, f"{path}:{start}"))
        stats.sentences += 1
        stats.tokens += len(tokens)
        tokens.clear()
        tags.clear()

    for lineno, line in enumerate(lines, start=1):
        if not line.strip(" \t"):
            flush()
            continue
        cols = _split_columns(line)
        if cols[0] == "-DOCSTART-":
            flush()
            continue
        if not tokens:
            start = lineno
        if not with_tags:
            tokens.append(cols[0] if len(cols) > 1 else line.strip(" \t"))
            continue
        if len(cols) < 2:
            raise DataError(
                f"{path}:{lineno}: no tag column in {line!r}; expected 'token<TAB>tag' "
                "(or whitespace-separated columns with the tag last)"
            )
        token, tag = cols[0], cols[-1]
        if not token:
            raise DataError(f"{path}:{lineno}: empty token in {line!r}")
        if not is_valid_tag(tag):
            raise DataError(
                f"{path}:{lineno}: tag {tag!r} is outside the IOB2 scheme; expected O, B-TYPE or I-TYPE"
            )
        tokens.append(token)
        tags.append(tag)
    flush()
    if not sentences:
        raise DataError(f"{path}: no sentences found (only blank or -DOCSTART- lines)")
    return sentences


def read_text(path: Path, lang: str) -> list[Sentence]:
    """Unlabeled transfer data: one sentence per line, words separated by whitespace."""
    sentences = [
        Sentence(line.split(), None, lang, f"{path}:{i}")
        for i, line in enumerate(_read_lines(path), start=1)
        if line.strip()
    ]
    if not sentences:
        raise DataError(f"{path}: no sentences found")
    return sentences


def read_transfer(path: Path, lang: str) -> list[Sentence]:
    """Transfer data in either form: CoNLL (tags ignored) if any line has a tab, else plain text."""
    with open(path, "rb") as f:
        head = f.read(65536)
    if b"\t" in head:
        return read_conll(path, lang, with_tags=False)
    return read_text(path, lang)


def format_conll(sentences: Iterable[tuple[Sequence[str], Sequence[str]]]) -> Iterator[str]:
    for tokens, tags in sentences:
        for token, tag in zip(tokens, tags, strict=True):
            yield f"{token}\t{tag}\n"
        yield "\n"


def write_conll(path: Path, sentences: Iterable[tuple[Sequence[str], Sequence[str]]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(format_conll(sentences))
