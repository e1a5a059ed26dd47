"""`xdner validate PATH...`: find every problem in data files, language YAMLs and run configs
before a long run, instead of stopping at the first one (as reading does) hours into it.

CoNLL files go through the same parser as `read_conll` (`parse_conll`), so the validator and
a run never disagree about what a line means; it only keeps going where reading would stop.
"""

from __future__ import annotations

import argparse
import codecs
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, Sequence

import yaml

from .config import ConfigError, read_config_text, resolve
from .data.conll import (
    LineProblem,
    ParsedSentence,
    decode_lines,
    dropped_columns,
    is_tab_separated,
    parse_conll,
    repair_tags,
)
from .data.corpus import SPLITS, split_file
from .data.labels import LabelSet
from .files import not_regular_message
from .languages import load_language, load_language_set

Severity = Literal["error", "warning"]
LONG_SENTENCE = 1000  # tokens; longer sentences still work (windowed) but usually mean a lost blank line
YAML_SUFFIXES = (".yaml", ".yml")
# Control characters (category Cc, TAB excepted) and zero-width characters: invisible in most
# editors, yet they make identical-looking words different tokens.
_INVISIBLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200b\u200c\u200d\u2060\ufeff]")
_JOINERS = "\u200c\u200d"


@dataclass(frozen=True)
class Problem:
    """One finding; `line` is None when it concerns a whole file, folder or config."""

    path: str
    line: int | None
    message: str
    severity: Severity

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.severity}: {self.message}"


@dataclass
class _FileCheck:
    """A CoNLL file's problems and each tag's first line (None when the file could not be decoded,
    so cross-file comparisons skip it instead of reporting every label as missing)."""

    problems: list[Problem]
    tags: dict[str, int] | None


def validate_paths(paths: Sequence[Path]) -> list[Problem]:
    """Every problem in `paths` (CoNLL files, data folders, language/set YAMLs, run configs)."""
    problems: list[Problem] = []
    for path in map(Path, paths):
        if path.is_dir():
            problems += _check_directory(path)
        elif not path.exists():
            problems.append(Problem(str(path), None, "no such file or directory", "error"))
        elif path.suffix.lower() in YAML_SUFFIXES:
            problems += _check_yaml(path)
        else:
            problems += _check_conll(path).problems
    return list(dict.fromkeys(problems))  # a file named twice (or a shared config error) is reported once


def format_problems(problems: Sequence[Problem]) -> str:
    """One `path:line: severity: message` line per problem, then a count."""
    errors = sum(p.severity == "error" for p in problems)
    files = len({p.path for p in problems})
    summary = f"{_count(errors, 'error')}, {_count(len(problems) - errors, 'warning')}"
    if files:  # how many of the checked files (or directories) they are in
        summary += f" in {_count(files, 'file')}"
    return "\n".join([*map(str, problems), summary])


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`xdner validate`, handled by `run_validate`."""
    text = "check data files, language YAMLs and run configs, reporting every problem at once"
    parser = subparsers.add_parser(
        "validate", help=text, description=f"{text}. Exit status 1 if there is any error; warnings alone give 0."
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH",
        help="a CoNLL file, a data folder (<lang>/{train,dev,test}.txt), languages/<code>.yaml, a language set or a run config",
    )
    parser.set_defaults(handler=run_validate)
    return parser


def run_validate(args: argparse.Namespace) -> int:
    """Print the report; exit status 1 only for errors, so warnings never block a scripted run."""
    problems = validate_paths(args.paths)
    print(format_problems(problems))
    return int(any(p.severity == "error" for p in problems))


# --- CoNLL files ------------------------------------------------------------------------------


def _check_conll(path: Path) -> _FileCheck:
    """Every problem in one labeled CoNLL file; undecodable files stop at that one problem."""
    where = str(path)
    refused = not_regular_message(path)
    if refused:  # never opened: reading a FIFO would wait for a writer forever
        return _FileCheck([Problem(where, None, refused.removeprefix(f"{where} "), "error")], None)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return _FileCheck([Problem(where, None, f"cannot read: {exc.strerror}", "error")], None)
    lines = decode_lines(raw)
    if isinstance(lines, LineProblem):
        return _FileCheck([_from_line_problem(where, lines, "error")], None)
    problems = _encoding_notes(where, raw)
    tags: dict[str, int] = {}
    by_separator: dict[bool, list[int]] = {True: [], False: []}  # TAB-separated? -> token lines
    invisible: dict[str, list[tuple[int, str]]] = {}  # character -> (line, token) of each token holding it
    dropped: dict[int, tuple[str, list[str]]] = {}
    for item in parse_conll(lines):
        if isinstance(item, LineProblem):
            problems.append(_from_line_problem(where, item, "error"))
            continue
        dropped.update(item.dropped)
        problems += _sentence_problems(where, item)
        for lineno, token, tag in zip(item.lines, item.tokens, item.tags):
            tags.setdefault(tag, lineno)
            by_separator[is_tab_separated(lines[lineno - 1])].append(lineno)
            for char in set(_INVISIBLE.findall(token)):
                invisible.setdefault(char, []).append((lineno, token))
    problems += _mixed_separators(where, by_separator[True], by_separator[False])
    columns = dropped_columns(dropped)
    if columns is not None:
        problems.append(_from_line_problem(where, columns, "warning", "; a run reads the file so, unless data.strict: true "
                                                                      "(then it is an error)"))
    problems += [_invisible_characters(where, char, hits) for char, hits in sorted(invisible.items())]
    return _FileCheck(sorted(problems, key=lambda p: p.line or 0), tags)


def _encoding_notes(where: str, raw: bytes) -> list[Problem]:
    """A BOM and CRLF line endings are read correctly; reported because other tools may not."""
    notes: list[Problem] = []
    if raw.startswith(codecs.BOM_UTF8):
        notes.append(Problem(where, 1, "UTF-8 byte-order mark at the start; handled (stripped on read), "
                             "nothing to fix unless other tools trip over it", "warning"))
    crlf = raw.find(b"\r\n")
    if crlf >= 0:
        notes.append(Problem(where, raw[:crlf].count(b"\n") + 1, "Windows (CRLF) line endings (first here); handled "
                             "on read, nothing to fix (`dos2unix` converts them for other tools)", "warning"))
    return notes


def _sentence_problems(where: str, sent: ParsedSentence) -> list[Problem]:
    """IOB2 repairs and over-long sentences: a run copes with both, so they are warnings."""
    problems = [
        _from_line_problem(where, p, "warning",
                           "; it is repaired to B- on read, but strict mode (data.strict: true) rejects it: fix the tag")
        for p in repair_tags(sent)[1]
    ]
    if len(sent.tokens) > LONG_SENTENCE:
        problems.append(Problem(
            where, sent.lines[0],
            f"sentence has {len(sent.tokens):,} tokens (over {LONG_SENTENCE:,}); it will be split into overlapping "
            "windows, which works but is slow; check for a missing blank line between sentences", "warning"))
    return problems


def _mixed_separators(where: str, tab: list[int], space: list[int]) -> list[Problem]:
    if not tab or not space:
        return []
    minority, style = (space, "space") if len(space) <= len(tab) else (tab, "TAB")
    return [Problem(
        where, minority[0],
        f"mixed column separators: {len(tab):,} token lines use TAB, {len(space):,} use spaces (first {style}-separated "
        "line here); a line without TAB is split at every space, so use TAB throughout", "warning")]


def _invisible_characters(where: str, char: str, hits: list[tuple[int, str]]) -> Problem:
    """One warning per character and file, at its first token: ZWJ/ZWNJ are normal inside Indic
    and Arabic-script words, so real data can hold thousands of them."""
    (first, token), more = hits[0], [str(lineno) for lineno, _ in hits[1:]]
    where_else = ""
    if more:
        where_else = f" (also line{'s' if len(more) > 1 else ''} {', '.join(more[:5])}{', ...' if len(more) > 5 else ''})"
    tokens = f"{len(hits):,} tokens, first {token!r}" if more else repr(token)
    joiner = " (joiners are normal inside Indic and Arabic-script words)" if char in _JOINERS else ""
    return Problem(
        where, first,
        f"U+{ord(char):04X} ({unicodedata.name(char, 'control character')}) in {tokens}{where_else}; invisible "
        f"characters make identical-looking words different tokens: remove them unless intended{joiner}", "warning")


# --- folders and languages -------------------------------------------------------------------


def _check_directory(path: Path) -> list[Problem]:
    """`path` and each subfolder holding train/dev/test.txt is one language."""
    folders = [path, *sorted(p for p in path.iterdir() if p.is_dir())]
    groups = {d: {s: d / f"{s}.txt" for s in SPLITS if (d / f"{s}.txt").is_file()} for d in folders}
    groups = {d: splits for d, splits in groups.items() if splits}
    if not groups:
        return [Problem(str(path), None, f"no {', '.join(f'{s}.txt' for s in SPLITS)} here or in its subfolders; "
                        "point at a data folder such as <root>/wikiann/de or <root>/wikiann", "error")]
    problems = [
        Problem(str(d), None, f"no {', '.join(f'{s}.txt' for s in missing)}; a run reads train, dev and test for "
                "every language, so this folder can only be used for evaluation or via data.files", "warning")
        for d, splits in groups.items()
        if (missing := [s for s in SPLITS if s not in splits])
    ]
    return problems + _check_languages(str(path), {d.name or str(d): splits for d, splits in groups.items()})


def _check_languages(where: str, groups: Mapping[str, Mapping[str, Path]]) -> list[Problem]:
    """Check each language's files, then that all languages use the same entity types."""
    problems: list[Problem] = []
    types: dict[str, set[str]] = {}
    for lang, splits in groups.items():
        checks = {split: _check_conll(path) for split, path in splits.items()}
        for check in checks.values():
            problems += check.problems
        problems += _unseen_labels(splits, checks)
        if all(c.tags is not None for c in checks.values()):
            types[lang] = set(LabelSet.from_tags(t for c in checks.values() for t in c.tags or {}).entity_types)
    gaps = _type_gaps(types)
    if gaps:
        problems.append(Problem(
            where, None, f"entity types differ between languages: {'; '.join(gaps)}; trained jointly, the languages "
            "without a type learn to tag such entities O: harmonise the types or map the extra ones to O", "warning"))
    return problems


def _type_gaps(types: Mapping[str, set[str]]) -> list[str]:
    """Per entity type not used by every language, the shorter list: who has it or who lacks it."""
    gaps = []
    for kind in sorted(set().union(*types.values())):
        having = [lang for lang, kinds in types.items() if kind in kinds]
        lacking = [lang for lang in types if lang not in having]
        if lacking:
            short = f"only in {', '.join(having)}" if len(having) <= len(lacking) else f"missing in {', '.join(lacking)}"
            gaps.append(f"{kind} {short}")
    return gaps


def _unseen_labels(splits: Mapping[str, Path], checks: Mapping[str, _FileCheck]) -> list[Problem]:
    """Labels in dev/test outside the label set train gives: the model can never predict them."""
    train = checks.get("train")
    if train is None or train.tags is None:
        return []
    labels = LabelSet.from_tags(train.tags)
    problems: list[Problem] = []
    for split in ("dev", "test"):
        tags = checks[split].tags if split in checks else None
        unseen = {tag: line for tag, line in (tags or {}).items() if tag not in labels.label2id}
        if unseen:
            problems.append(Problem(
                str(splits[split]), min(unseen.values()),
                f"label(s) {', '.join(sorted(unseen))} never seen in {splits['train']} (entity types there: "
                f"{', '.join(labels.entity_types) or 'none'}); the model cannot predict them, so they all count as "
                "misses: add training examples or relabel them", "warning"))
    return problems


# --- YAML: language specs, language sets, run configs -----------------------------------------


def _check_yaml(path: Path) -> list[Problem]:
    """A top-level `code:` marks a language spec, `languages:` with `name:` a language set;
    anything else is a run config."""
    try:
        data = yaml.safe_load(read_config_text(path))
    except ConfigError as exc:  # not a regular file, or not UTF-8
        return [Problem(str(path), None, _without_prefix(str(exc), str(path)), "error")]
    except yaml.YAMLError:
        data = None  # not a readable mapping: load_config below says what is wrong
    try:
        if isinstance(data, dict) and "code" in data:
            load_language(path.stem, path.parent)
            return []
        if isinstance(data, dict) and "languages" in data and "name" in data:
            # A set in some `sets/` folder is checked against the specs beside it, like languages/sets/.
            load_language_set(str(path), path.parent.parent if path.parent.name == "sets" else None)
            return []
        return _check_run_config(path)
    except (ValueError, OSError) as exc:  # ConfigError, LanguageConfigError, DataError, missing files
        return [Problem(str(path), None, _without_prefix(str(exc), str(path)), "error")]


def _check_run_config(path: Path) -> list[Problem]:
    """The config as `xdner run CONFIG` sees it (set names expanded), then the data files it reads."""
    from .preflight import config_problems  # torch and transformers: only for run configs

    cfg = resolve(path)
    problems = [Problem(str(path), None, message, "error") for message in config_problems(cfg)]
    if not cfg.languages or not (cfg.data.root or cfg.data.files):
        return problems
    groups: dict[str, dict[str, Path]] = {}
    for lang in cfg.languages:
        for split in SPLITS:
            try:
                file = split_file(cfg.data, lang, split)
            except (ValueError, OSError) as exc:
                problems.append(Problem(str(path), None, str(exc), "error"))
                continue
            if file is not None:
                groups.setdefault(lang, {})[split] = file
    return problems + _check_languages(str(path), groups)


# --- helpers ----------------------------------------------------------------------------------


def _from_line_problem(where: str, problem: LineProblem, severity: Severity, hint: str = "") -> Problem:
    return Problem(where, problem.line, problem.message + hint, severity)


def _without_prefix(message: str, where: str) -> str:
    """Loader messages start with the file name, which the problem line already shows."""
    return message.removeprefix(f"{where}: ").removeprefix(f"{where} ")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
