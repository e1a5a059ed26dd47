"""Per-language configs (``languages/<code>.yaml``) and run-level language sets (``languages/sets/``).

Languages are data, not code: adding one means adding a YAML file, and every loader here
validates eagerly so a typo fails at startup with the file name rather than mid-run.
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .errors import XdnerError

ENV_VAR = "XDNER_LANGUAGES_DIR"
PACKAGED = "xtremedistil_ner.language_files"  # the repository's languages/, see pyproject.toml
SEGMENTATIONS = ("whitespace", "character")
_TOP_KEYS = {"code", "name", "script", "word_segmentation", "sources"}
_ENTRY_KEYS = {"hub", "local"}
_SET_KEYS = {"name", "description", "dataset", "languages"}


class LanguageConfigError(XdnerError, ValueError):
    """A language or set YAML is malformed, or a requested language/source does not exist."""


@dataclass(frozen=True)
class LanguageSpec:
    """One language and where its NER data lives.

    ``sources`` maps a dataset name to an entry ``{"hub": {...}, "local": "..."}``, or, for
    datasets with several corpora per language (UNER treebanks), to ``{variant: entry}``.
    """

    code: str
    name: str
    script: str
    word_segmentation: str
    sources: Mapping[str, Mapping[str, Any]]

    def variants(self, dataset: str) -> list[str]:
        """Variant (treebank) names of ``dataset``; empty when it has a single entry."""
        source = self._source(dataset)
        return [] if _is_entry(source) else sorted(source)

    def local_dir(self, dataset: str, root: Path, treebank: str | None = None) -> Path:
        """Directory of ``dataset`` under the data ``root``; checks it exists so a wrong root fails here."""
        entry = self._entry(dataset, treebank)
        if "local" not in entry:
            where = f"{dataset}/{treebank}" if treebank else dataset
            raise LanguageConfigError(
                f"{self.code} ({self.name}): {where} has no local copy, only a hub entry; "
                f"datasets with local data: {', '.join(self._local_datasets()) or 'none'}"
            )
        path = Path(root) / entry["local"]
        if not path.is_dir():
            raise FileNotFoundError(f"{self.code} ({self.name}): {dataset} data directory {path} does not exist")
        return path

    def hub(self, dataset: str) -> dict[str, Any]:
        """Keyword arguments for ``datasets.load_dataset`` (``path`` and ``name``, which may be None)."""
        source = self._source(dataset)
        if not _is_entry(source) or "hub" not in source:
            with_hub = [d for d, s in self.sources.items() if _is_entry(s) and "hub" in s]
            raise LanguageConfigError(
                f"{self.code} ({self.name}): {dataset} has no Hugging Face hub entry; "
                f"datasets with one: {', '.join(with_hub) or 'none'}"
            )
        return {"path": source["hub"]["path"], "name": source["hub"].get("name")}

    def _source(self, dataset: str) -> Mapping[str, Any]:
        if dataset not in self.sources:
            raise LanguageConfigError(
                f"{self.code} ({self.name}) has no {dataset!r} source; available: {', '.join(self.sources)}"
            )
        return self.sources[dataset]

    def _entry(self, dataset: str, treebank: str | None) -> Mapping[str, Any]:
        source = self._source(dataset)
        if _is_entry(source):
            if treebank is not None:
                raise LanguageConfigError(f"{self.code} ({self.name}): {dataset} has no treebanks, got {treebank!r}")
            return source
        if treebank is None and len(source) == 1:
            return next(iter(source.values()))
        if treebank not in source:
            problem = "several treebanks, pass one" if treebank is None else f"no treebank {treebank!r}"
            raise LanguageConfigError(
                f"{self.code} ({self.name}): {dataset} has {problem}; available: {', '.join(sorted(source))}"
            )
        return source[treebank]

    def _local_datasets(self) -> list[str]:
        return [d for d, s in self.sources.items() if any("local" in e for e in _entries(s))]


def languages_dir() -> Path:
    """``$XDNER_LANGUAGES_DIR`` if set, else the YAMLs installed with the package.

    They are the package ``xtremedistil_ner.language_files``: the repository's ``languages/``
    folder itself in an editable install, a copy inside the wheel otherwise.
    """
    env = os.environ.get(ENV_VAR)
    path = Path(env) if env else _packaged_dir()
    if not path.is_dir():
        how = f"${ENV_VAR}={env}" if env else f"default location (set ${ENV_VAR} to override)"
        raise FileNotFoundError(f"languages directory {path} not found ({how})")
    return path


def _packaged_dir() -> Path:
    try:
        files = importlib.resources.files(PACKAGED)
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            f"{PACKAGED} (the language YAMLs) is not installed: install the project "
            f"(pip install -e .) or set ${ENV_VAR} to a languages directory"
        ) from exc
    if not isinstance(files, Path):  # e.g. imported from a zip: the loaders need real files
        raise FileNotFoundError(f"{PACKAGED} is not a directory on disk ({files!r}); set ${ENV_VAR}")
    return files


def available_languages(directory: Path | None = None) -> list[str]:
    """Codes that have a ``<code>.yaml`` file, sorted."""
    return sorted(p.stem for p in (directory or languages_dir()).glob("*.yaml"))


def load_language(code: str, directory: Path | None = None) -> LanguageSpec:
    """Load and validate ``<directory>/<code>.yaml``; unknown codes get close-match suggestions."""
    directory = directory or languages_dir()
    path = directory / f"{code}.yaml"
    if not code or Path(code).name != code or not path.is_file():
        raise LanguageConfigError(_unknown_language_message(code, directory))
    data = _read_mapping(path)
    missing = sorted(_TOP_KEYS - data.keys())
    if missing:
        raise LanguageConfigError(f"{path}: missing key(s) {', '.join(missing)}")
    unknown = sorted(map(str, data.keys() - _TOP_KEYS))
    if unknown:
        raise LanguageConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    for key in ("code", "name", "script", "word_segmentation"):
        _check_str(path, key, data[key])
    if data["code"] != path.stem:
        raise LanguageConfigError(f"{path}: code {data['code']!r} does not match the file name {path.name!r}")
    if data["word_segmentation"] not in SEGMENTATIONS:
        raise LanguageConfigError(
            f"{path}: word_segmentation must be one of {', '.join(SEGMENTATIONS)}, got {data['word_segmentation']!r}"
        )
    sources = data["sources"]
    if not isinstance(sources, dict) or not sources:
        raise LanguageConfigError(f"{path}: 'sources' must be a non-empty mapping of dataset name to entry")
    for dataset, source in sources.items():
        _check_source(path, str(dataset), source)
    return LanguageSpec(data["code"], data["name"], data["script"], data["word_segmentation"], sources)


def load_language_set(name_or_path: str, directory: Path | None = None) -> list[str]:
    """Language codes of a set: a name in ``<directory>/sets/`` or a path to a YAML file.

    Every listed code must have a spec (and the set's ``dataset``, if given) so a run fails
    before training rather than at its 30th language.
    """
    directory = directory or languages_dir()
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or len(candidate.parts) > 1:
        path = candidate
        if not path.is_file():
            raise FileNotFoundError(f"language set file {path} not found")
    else:
        path = directory / "sets" / f"{name_or_path}.yaml"
        if not path.is_file():
            names = sorted(p.stem for p in (directory / "sets").glob("*.yaml"))
            raise LanguageConfigError(f"unknown language set {name_or_path!r} ({path}); available: {', '.join(names)}")
    data = _read_mapping(path)
    unknown = sorted(map(str, data.keys() - _SET_KEYS))
    if unknown:
        raise LanguageConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_SET_KEYS))}")
    for key in ("name", "description", "dataset"):
        if key in data:
            _check_str(path, key, data[key])
    codes = data.get("languages")
    if not isinstance(codes, list) or not codes:
        raise LanguageConfigError(f"{path}: 'languages' must be a non-empty list of language codes")
    for code in codes:
        _check_str(path, "languages[]", code)
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise LanguageConfigError(f"{path}: duplicate language(s) {', '.join(duplicates)}")
    known = set(available_languages(directory))
    missing = [c for c in codes if c not in known]
    if missing:
        raise LanguageConfigError(
            f"{path}: no spec in {directory} for " + "; ".join(_unknown_language_message(c, directory) for c in missing)
        )
    if "dataset" in data:
        lacking = [c for c in codes if data["dataset"] not in load_language(c, directory).sources]
        if lacking:
            raise LanguageConfigError(f"{path}: dataset {data['dataset']!r} is not a source of {', '.join(lacking)}")
    return codes


def _is_entry(source: Mapping[str, Any]) -> bool:
    """A dataset entry (hub/local keys) as opposed to a mapping of treebank name to entry."""
    return bool(source) and source.keys() <= _ENTRY_KEYS


def _entries(source: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The entries of a source: itself, or one per treebank."""
    return [source] if _is_entry(source) else [e for e in source.values() if isinstance(e, Mapping)]


def _check_source(path: Path, dataset: str, source: Any) -> None:
    if not isinstance(source, dict) or not source:
        raise LanguageConfigError(f"{path}: sources.{dataset} must be a non-empty mapping")
    if _is_entry(source):
        _check_entry(path, f"sources.{dataset}", source)
        return
    for variant, entry in source.items():
        where = f"sources.{dataset}.{variant}"
        if not isinstance(entry, dict) or not entry or not entry.keys() <= _ENTRY_KEYS:
            raise LanguageConfigError(
                f"{path}: {where} must be an entry with keys {'/'.join(sorted(_ENTRY_KEYS))} "
                f"(sources.{dataset} is read as a mapping of treebank name to entry because its keys are not all hub/local)"
            )
        _check_entry(path, where, entry)


def _check_entry(path: Path, where: str, entry: Mapping[str, Any]) -> None:
    if "local" in entry:
        _check_str(path, f"{where}.local", entry["local"])
        local = PurePosixPath(entry["local"])
        if local.is_absolute() or ".." in local.parts:
            raise LanguageConfigError(f"{path}: {where}.local must be relative to the data root, got {entry['local']!r}")
    if "hub" in entry:
        hub = entry["hub"]
        if not isinstance(hub, dict) or "path" not in hub or not hub.keys() <= {"path", "name"}:
            raise LanguageConfigError(f"{path}: {where}.hub must be a mapping with 'path' and optional 'name'")
        for key, value in hub.items():
            _check_str(path, f"{where}.hub.{key}", value)


def _check_str(path: Path, key: str, value: Any) -> None:
    if isinstance(value, bool):
        raise LanguageConfigError(
            f"{path}: {key} is the boolean {value}; quote it (YAML 1.1 reads bare no/yes/on/off as booleans)"
        )
    if not isinstance(value, str) or not value:
        raise LanguageConfigError(f"{path}: {key} must be a non-empty string, got {value!r}")


def _read_mapping(path: Path) -> dict[Any, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise LanguageConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise LanguageConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _unknown_language_message(code: str, directory: Path) -> str:
    """Suggest close codes, plus languages whose dataset-specific names match (MasakhaNER 'swa' -> sw)."""
    codes = available_languages(directory)
    close = difflib.get_close_matches(code, codes, n=5, cutoff=0.5)
    aliased = [c for c in codes if c not in close and code in _dataset_names(directory / f"{c}.yaml")]
    suggestions = close + aliased
    hint = f"did you mean {', '.join(suggestions)}?" if suggestions else f"available: {', '.join(codes)}"
    return f"unknown language {code!r} (no {directory / (code + '.yaml')}); {hint}"


def _dataset_names(path: Path) -> set[str]:
    """Names a dataset uses for this language: hub config names and local folder names."""
    try:
        sources = _read_mapping(path).get("sources") or {}
    except LanguageConfigError:
        return set()
    entries = [e for s in sources.values() if isinstance(s, dict) for e in _entries(s)]
    names = {PurePosixPath(str(e["local"])).name for e in entries if "local" in e}
    names |= {str(e["hub"].get("name")) for e in entries if isinstance(e.get("hub"), dict)}
    return names
