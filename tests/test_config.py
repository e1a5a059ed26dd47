"""Run configuration: YAML -> typed dataclasses, `--set` overrides, errors that name the key,
and a saved configuration that loads back to the same thing."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import pytest

from xtremedistil_ner.config import (
    ABOVE,
    ConfigError,
    RunConfig,
    StageConfig,
    StudentConfig,
    counted,
    load_config,
    save_config,
    to_dict,
)

README = Path(__file__).resolve().parents[1] / "README.md"

YAML = """\
output_dir: runs/test
languages: [en, de]
seed: 7
data:
  dataset: wikiann
  root: /data/ner
  train_per_lang: 100
  files:
    en: {train: a.txt, dev: b.txt}
teacher:
  model: some/model
  lr: 3.0e-5
  layer: 6
students:
  - {name: small, type: bilstm, embedding_dim: 50, hidden_dim: 100}
distil:
  stages:
    - {name: rep, loss: representation, data: transfer, train: [embeddings, encoder], epochs: 1}
    - {name: gold, loss: gold, data: labeled, train: gradual, lr: 0.0005}
"""


def _cfg_file(tmp_path: Path, text: str = YAML) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_load_builds_typed_config(tmp_path: Path) -> None:
    cfg = load_config(_cfg_file(tmp_path))
    assert cfg.output_dir == "runs/test"
    assert cfg.languages == ["en", "de"]
    assert cfg.seed == 7
    assert cfg.data.root == "/data/ner" and cfg.data.train_per_lang == 100
    assert cfg.data.transfer_per_lang is None  # default kept
    assert cfg.data.files == {"en": {"train": "a.txt", "dev": "b.txt"}}
    assert cfg.teacher.model == "some/model" and cfg.teacher.lr == pytest.approx(3e-5)
    assert cfg.teacher.layer == 6 and cfg.teacher.epochs == 3  # default kept
    assert len(cfg.students) == 1 and cfg.students[0].hidden_dim == 100
    assert cfg.distil.stages == [
        StageConfig("rep", "representation", "transfer", ["embeddings", "encoder"], 1),
        StageConfig("gold", "gold", "labeled", "gradual", lr=0.0005),
    ]


def test_no_file_gives_defaults() -> None:
    assert load_config() == RunConfig()


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    assert load_config(_cfg_file(tmp_path, "")) == RunConfig()


def test_overrides_nested_lists_and_numbers(tmp_path: Path) -> None:
    cfg = load_config(
        _cfg_file(tmp_path),
        [
            "teacher.lr=5e-5",  # YAML 1.1 reads this as a string; must still become a float
            "teacher.warmup_ratio=0",  # int for a float field
            "teacher.epochs=2",
            "data.files.de.test=c.txt",  # creates nested mappings
            "data.files.en.train=z.txt",  # merges into the existing mapping
            "languages=[fr, sw]",
            "data.transfer_per_lang=40",
            "teacher.layer=null",
            "distil.mode=sequential",
        ],
    )
    assert isinstance(cfg.teacher.lr, float) and cfg.teacher.lr == pytest.approx(5e-5)
    assert isinstance(cfg.teacher.warmup_ratio, float) and cfg.teacher.warmup_ratio == 0.0
    assert cfg.teacher.epochs == 2
    assert cfg.data.files == {"en": {"train": "z.txt", "dev": "b.txt"}, "de": {"test": "c.txt"}}
    assert cfg.languages == ["fr", "sw"]
    assert cfg.data.transfer_per_lang == 40
    assert cfg.teacher.layer is None
    assert cfg.distil.mode == "sequential"
    # untouched values from the file survive
    assert cfg.data.train_per_lang == 100 and cfg.teacher.model == "some/model"


def test_language_set_name_as_a_string(tmp_path: Path) -> None:
    assert load_config(_cfg_file(tmp_path, "languages: wikiann41\n")).languages == ["wikiann41"]
    assert load_config(None, ["languages=wikiann6"]).languages == ["wikiann6"]


def test_override_without_file() -> None:
    cfg = load_config(None, ["seed=3", "students=[{name: s, type: bilstm, embedding_dim: 8, hidden_dim: 16}]"])
    assert cfg.seed == 3
    assert [(s.name, s.embedding_dim, s.hidden_dim) for s in cfg.students] == [("s", 8, 16)]


@pytest.mark.parametrize("bad", ["teacher.lr", "=3", "teacher.epochs"])
def test_malformed_override(bad: str) -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, [bad])


def test_override_through_a_non_mapping_is_an_error() -> None:
    with pytest.raises(ConfigError, match="seed is not a mapping"):
        load_config(None, ["seed=3", "seed.x=1"])


@pytest.mark.parametrize(
    ("override", "where", "key"),
    [
        ("teacher.learning_rate=1", "config.teacher", "learning_rate"),
        ("bogus=1", "config", "bogus"),
        ("data.files.en=1", "config.data.files.en", None),
        ("distil.stages=[{name: a, loss: gold, data: labeled, epochz: 1}]", "config.distil.stages[0]", "epochz"),
    ],
)
def test_unknown_key_or_bad_shape_names_key_path(override: str, where: str, key: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    msg = str(info.value)
    assert msg.startswith(where + ":"), msg
    if key:
        assert key in msg


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = _cfg_file(tmp_path, "teacher:\n  modle: x\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}.teacher: unknown key(s) ['modle']")):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ("teacher.epochs=abc", "config.teacher.epochs"),
        ("teacher.epochs=2.5", "config.teacher.epochs"),
        ("teacher.epochs=true", "config.teacher.epochs"),  # a bool is not an int
        ("teacher.lr=fast", "config.teacher.lr"),
        ("teacher.freeze_embeddings=1", "config.teacher.freeze_embeddings"),
        ("data.root=5", "config.data.root"),
        ("teacher=3", "config.teacher"),
        ("data.transfer_files.en=x.txt", "config.data.transfer_files.en"),
    ],
)
def test_wrong_type_names_key_path(override: str, where: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(where) + ":"):
        load_config(None, [override])


def test_a_bare_no_in_a_language_list_says_to_quote_it() -> None:
    """YAML 1.1 reads Norwegian's code as false: the error says why and what to write."""
    with pytest.raises(ConfigError, match=re.escape('config.languages[1]: expected str, got False (YAML reads a bare no')):
        load_config(None, ["languages=[de, no]"])
    assert load_config(None, ['languages=[de, "no"]']).languages == ["de", "no"]


def test_invalid_yaml_and_non_mapping_top_level(tmp_path: Path) -> None:
    bad = _cfg_file(tmp_path, "teacher: [unclosed\n")
    with pytest.raises(ConfigError, match=re.escape(str(bad))):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listy)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    cfg = load_config(_cfg_file(tmp_path), ["teacher.lr=5e-5", "data.transfer_files.de=[t1.txt, t2.txt]"])
    out = tmp_path / "out" / "config.yaml"
    save_config(cfg, out)
    again = load_config(out)
    assert again == cfg
    assert to_dict(again) == to_dict(cfg)


def test_save_then_load_round_trips_defaults(tmp_path: Path) -> None:
    out = tmp_path / "config.yaml"
    save_config(RunConfig(), out)
    assert load_config(out) == RunConfig()


# --- each key described once: provenance and README.md's key table come from the field metadata ---


@pytest.mark.parametrize("overrides", [[], ["teacher.min_steps=0"], ["teacher.epochs=1", "teacher.batch_size=1"]])
@pytest.mark.parametrize("train_sentences", [1, 100, 10_000, 1_000_000])
def test_the_teachers_counted_keys_are_what_provenance_recorded(overrides: list[str], train_sentences: int) -> None:
    cfg = load_config(None, overrides)
    unused = ("eval_batch_size", "layer", "checkpoint_every") + (
        ("min_steps",) if cfg.teacher.passes_for(train_sentences) == 1 else ())
    before = {k: v for k, v in to_dict(cfg)["teacher"].items() if k not in unused}  # the old pipeline.Run.teacher_inputs (now RunContext.teacher_inputs)
    after = counted(cfg.teacher, train_sentences=train_sentences)
    assert list(after.items()) == list(before.items())
    assert ("min_steps" in after) == (cfg.teacher.passes_for(train_sentences) > 1)


@pytest.mark.parametrize("scfg", [
    StudentConfig(), StudentConfig("r", init="random"), StudentConfig("s", mode="per_language", from_student="j"),
    StudentConfig("s", init="random", from_student="j", keep_share=0.25), StudentConfig("e", from_student=""),
    StudentConfig("t", "transformer", hidden_dim=16, num_layers=2, init="teacher", unseen="unknown", lr_scale=0.5,
                  stages=[StageConfig("g", "gold", "labeled")], mode="joint"),
])
def test_a_students_counted_keys_are_what_provenance_recorded(scfg: StudentConfig) -> None:
    idle = {"keep_share"} if scfg.from_student is None else set()  # the old pipeline.Run.student_inputs (now steps.students.inputs)
    if scfg.init == "random" or scfg.from_student:
        idle.add("unseen")
    before = {k: v for k, v in dataclasses.asdict(scfg).items() if k not in ("name", "stages", "lr_scale", "mode", *idle)}
    assert list(counted(scfg).items()) == list(before.items())


def _shown(f: dataclasses.Field) -> str:
    """A key's default as the table shows it."""
    if f.metadata.get("shown"):
        return f.metadata["shown"]
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if value is dataclasses.MISSING:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`" if isinstance(value, (str, list, dict)) else str(value)


def _rows(cls: type, prefix: str = "") -> list[list[Any]]:
    """[keys, defaults, doc] per row, in field order; a key whose doc is ABOVE joins the row before."""
    rows: list[list[Any]] = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            rows += _rows(hint, f"{prefix}{f.name}.")
            continue
        if f.metadata["doc"] == ABOVE:
            rows[-1][0].append(f"`{f.name}`")
            rows[-1][1].append(_shown(f))
        else:
            rows.append([[f"`{prefix}{f.name}`"], [_shown(f)], f.metadata["doc"]])
        if get_origin(hint) is list and dataclasses.is_dataclass(get_args(hint)[0]):
            rows += _rows(get_args(hint)[0], f"{prefix}{f.name}[].")
    return rows


def key_table() -> str:
    """README.md's configuration-key table, rendered from the config fields' metadata."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    return "\n".join(lines + [f"| {', '.join(keys)} | {', '.join(shown)} | {doc} |" for keys, shown, doc in _rows(RunConfig)])


def test_every_key_has_a_doc() -> None:
    undocumented = [keys for keys, _, doc in _rows(RunConfig) if not doc]
    assert undocumented == []


def test_the_readme_key_table_is_the_config_fields_metadata() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Configuration keys\n\n", 1)[1]
    table = section[: section.index("\n\n")]
    assert table == key_table(), ("README.md's configuration-key table disagrees with the fields of config.py; "
                                  "replace it with:\n\n" + key_table())
