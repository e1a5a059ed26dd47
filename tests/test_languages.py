"""Language configs: every YAML loads, matches the shared data, and bad configs fail with the file named."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest

from xtremedistil_ner.languages import (
    LanguageConfigError,
    available_languages,
    languages_dir,
    load_language,
    load_language_set,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ner"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared NER data not found at {DATA}")

PAPER41 = (
    "af ar bg bn bs ca cs da de el en es et fa fi fr he hi hr hu id it lt lv mk ms nl no pl pt ro ru sk sl sq "
    "sv ta tl tr uk vi"
).split()
SETS = ["wikiann41", "wikiann-local", "wikiann6", "small"]
CODES = available_languages()

GOOD = """\
code: xx
name: Test
script: Latin
word_segmentation: whitespace
sources:
  wikiann:
    hub: {path: wikiann, name: xx}
"""


def _data_dirs(dataset: str) -> list[str]:
    return sorted(p.name for p in (DATA / dataset).iterdir() if p.is_dir())


def _token_lengths(path: Path, limit: int = 20000) -> list[int]:
    with path.open(encoding="utf-8") as f:
        return [len(line.split("\t")[0]) for line in islice(f, limit) if line.strip()]


def test_default_dir_is_repo_languages() -> None:
    # The editable install maps xtremedistil_ner.language_files to the repository's languages/;
    # tests/test_wheel.py checks the wheel's copy.
    assert languages_dir() == REPO / "languages"


def test_missing_package_data_names_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDNER_LANGUAGES_DIR", raising=False)
    monkeypatch.setattr("xtremedistil_ner.languages.PACKAGED", "xtremedistil_ner.no_such_package")
    with pytest.raises(FileNotFoundError, match="XDNER_LANGUAGES_DIR"):
        languages_dir()


def test_env_var_overrides_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDNER_LANGUAGES_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="XDNER_LANGUAGES_DIR"):
        languages_dir()
    monkeypatch.setenv("XDNER_LANGUAGES_DIR", str(tmp_path))
    (tmp_path / "xx.yaml").write_text(GOOD)
    assert available_languages() == ["xx"]


@pytest.mark.parametrize("code", CODES)
def test_every_language_loads(code: str) -> None:
    spec = load_language(code)
    assert spec.code == code
    assert spec.sources


def test_paper_languages_have_wikiann_hub() -> None:
    assert len(PAPER41) == 41
    for code in PAPER41:
        assert load_language(code).hub("wikiann") == {"path": "wikiann", "name": code}
    assert load_language_set("wikiann41") == PAPER41


@pytest.mark.parametrize("name", SETS)
def test_sets_load(name: str) -> None:
    codes = load_language_set(name)
    assert all(code in CODES for code in codes)


def test_set_sizes_and_path_form() -> None:
    assert len(load_language_set("wikiann6")) == 6
    assert load_language_set("small") == ["en", "de", "es", "ru", "hi", "zh"]
    assert load_language_set(str(languages_dir() / "sets" / "wikiann6.yaml")) == load_language_set("wikiann6")


def test_norwegian_is_a_string_not_false() -> None:
    assert "no" in load_language_set("wikiann41")
    assert load_language("no").hub("wikiann")["name"] == "no"


@needs_data
def test_wikiann_local_languages_have_data() -> None:
    local = _data_dirs("wikiann")
    assert len(local) == 48
    assert sorted(load_language_set("wikiann-local")) == local
    for code in local:
        path = load_language(code).local_dir("wikiann", DATA)
        assert {p.name for p in path.iterdir()} >= {"train.txt", "dev.txt", "test.txt"}, code


@needs_data
def test_every_local_entry_exists_and_every_data_folder_is_covered() -> None:
    referenced: set[str] = set()
    for code in CODES:
        spec = load_language(code)
        for dataset in spec.sources:
            for treebank in spec.variants(dataset) or [None]:
                try:
                    path = spec.local_dir(dataset, DATA, treebank)
                except LanguageConfigError:
                    continue  # hub-only entry
                assert any(path.glob("*.txt")), path
                referenced.add(str(path.relative_to(DATA)))
    on_disk = {f"{d}/{sub}" for d in ("wikiann", "uner", "conll2002", "conll2003", "masakhaner") for sub in _data_dirs(d)}
    assert on_disk == referenced


@needs_data
@pytest.mark.parametrize("code", CODES)
def test_word_segmentation_matches_wikiann_data(code: str) -> None:
    spec = load_language(code)
    wikiann = spec.sources.get("wikiann", {})
    if "local" not in wikiann:
        pytest.skip(f"{code}: no local WikiANN data")
    lengths = _token_lengths(spec.local_dir("wikiann", DATA) / "train.txt")
    single = sum(n == 1 for n in lengths) / len(lengths)
    if spec.word_segmentation == "character":
        assert single > 0.9, f"{code}: only {single:.0%} of tokens are single characters"
    else:
        assert single < 0.5, f"{code}: {single:.0%} of tokens are single characters; character-tokenised?"


def test_uner_treebanks() -> None:
    zh = load_language("zh")
    assert zh.variants("uner") == ["zh_gsd", "zh_gsdsimp", "zh_pud"]
    assert zh.variants("wikiann") == []
    root = Path("/nonexistent")
    with pytest.raises(LanguageConfigError, match="zh_gsd, zh_gsdsimp, zh_pud"):
        zh.local_dir("uner", root)
    with pytest.raises(FileNotFoundError, match="/nonexistent/uner/zh_pud"):
        zh.local_dir("uner", root, "zh_pud")


@needs_data
def test_single_treebank_needs_no_name() -> None:
    assert load_language("de").local_dir("uner", DATA) == DATA / "uner" / "de_pud"


def test_missing_sources_name_language_and_alternatives() -> None:
    de = load_language("de")
    with pytest.raises(LanguageConfigError, match=r"de \(German\).*conll2002.*wikiann, conll2003, uner"):
        de.local_dir("conll2002", Path("."))
    with pytest.raises(LanguageConfigError, match="conll2003 has no Hugging Face hub entry"):
        de.hub("conll2003")
    with pytest.raises(LanguageConfigError, match="bn .*no local copy"):
        load_language("bn").local_dir("wikiann", Path("."))
    assert load_language("en").hub("conll2003") == {"path": "conll2003", "name": None}


@pytest.mark.parametrize(
    ("code", "suggested"), [("dee", "de"), ("swa", "sw"), ("kin", "rw"), ("zh_gsd", "zh")]
)
def test_unknown_code_suggests_close_matches(code: str, suggested: str) -> None:
    with pytest.raises(LanguageConfigError, match=rf"unknown language '{code}'.*did you mean .*\b{suggested}\b"):
        load_language(code)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (GOOD.replace("name: Test\n", ""), "missing key.*name"),
        (GOOD.replace("code: xx", "code: yy"), "code 'yy' does not match"),
        (GOOD.replace("code: xx", "code: 7"), "code must be a non-empty string"),
        (GOOD.replace("code: xx", "code: no"), "boolean False; quote it"),
        (GOOD.replace("whitespace", "spaces"), "word_segmentation must be one of"),
        (GOOD + "extra: 1\n", "unknown key.*extra"),
        (GOOD.replace("sources:\n  wikiann:\n    hub: {path: wikiann, name: xx}\n", "sources: []\n"), "'sources' must be"),
        (GOOD + "    local: /abs/path\n", "must be relative"),
        (GOOD.replace("{path: wikiann, name: xx}", "wikiann"), "hub must be a mapping"),
        (GOOD + "  uner:\n    xx_tb:\n      locl: uner/xx_tb\n", "sources.uner.xx_tb must be an entry"),
        ("code: [", "invalid YAML"),
    ],
)
def test_bad_yaml_names_file_and_problem(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "xx.yaml").write_text(text)
    with pytest.raises(LanguageConfigError, match=rf"xx\.yaml.*{problem}"):
        load_language("xx", tmp_path)


def test_bad_sets(tmp_path: Path) -> None:
    (tmp_path / "xx.yaml").write_text(GOOD)
    (tmp_path / "sets").mkdir()
    cases = {
        "unknown": "languages: [xx, de]\n",
        "dataset": "dataset: uner\nlanguages: [xx]\n",
        "dup": "languages: [xx, xx]\n",
        "empty": "languages: []\n",
    }
    problems = {"unknown": "no spec .* for unknown language 'de'", "dataset": "'uner' is not a source of xx",
                "dup": "duplicate language.*xx", "empty": "non-empty list"}
    for name, text in cases.items():
        (tmp_path / "sets" / f"{name}.yaml").write_text(text)
        with pytest.raises(LanguageConfigError, match=rf"{name}\.yaml.*{problems[name]}"):
            load_language_set(name, tmp_path)
    with pytest.raises(LanguageConfigError, match="unknown language set 'nope'.*available: dataset, dup"):
        load_language_set("nope", tmp_path)
    with pytest.raises(FileNotFoundError):
        load_language_set(str(tmp_path / "missing.yaml"), tmp_path)
