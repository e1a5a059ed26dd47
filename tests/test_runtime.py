"""The torch-free runtime (`runtime/`, `xdner_runtime`) on a tiny student: a folder it cannot use
is a one-line error naming the file, `xdner-serve` reports it without a traceback, and empty
input gives empty output. Its tags equal the PyTorch Tagger's in tests/test_wheel.py (in a venv
without torch) and tests/test_serve.py (behind `xdner serve`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_tagger import make_student
from xdner_runtime import Tagger
from xdner_runtime.command import main as serve_main
from xdner_runtime.errors import ArtifactError

from xtremedistil_ner.export import export_onnx
from xtremedistil_ner.students import save_student


@pytest.fixture
def exported(tmp_path: Path, tiny_tokenizer) -> tuple[Path, Path]:
    folder = tmp_path / "model"
    student = make_student(tiny_tokenizer, winner="B-PER")
    save_student(student, folder, tiny_tokenizer)
    return folder, export_onnx(student, tmp_path / "model.onnx")


def test_empty_input_gives_empty_output(exported: tuple[Path, Path]) -> None:
    tagger = Tagger.load(*map(str, exported))
    assert tagger([]) == [] and tagger("") == [] and tagger(["", " \t "]) == [[], []]
    assert tagger.tag_tokens([[], ["Anna"]]) == [[], ["B-PER"]]


@pytest.mark.parametrize("damage", ["no tokenizer", "no config", "config not json", "config of another model"])
def test_a_folder_the_runtime_cannot_use_is_a_one_line_error(exported: tuple[Path, Path], damage: str, capsys) -> None:
    folder, graph = exported
    expected: tuple[type[Exception], str]
    if damage == "no tokenizer":
        (folder / "tokenizer.json").unlink()
        expected = FileNotFoundError, f"{folder}: no tokenizer.json; this student was saved without the teacher's fast tokenizer"
    elif damage == "no config":
        (folder / "config.json").unlink()
        expected = FileNotFoundError, f"{folder}: no config.json; pass the folder of a saved student"
    elif damage == "config not json":
        (folder / "config.json").write_text("{", encoding="utf-8")
        expected = ArtifactError, f"{folder / 'config.json'}: damaged ("
    else:
        (folder / "config.json").write_text(json.dumps({"model_type": "bert"}), encoding="utf-8")
        expected = ArtifactError, f"{folder / 'config.json'}: not a student's config (no id2label or max_length)"
    with pytest.raises(expected[0]) as exc:
        Tagger.load(str(folder), str(graph))
    assert str(exc.value).startswith(expected[1]) and "\n" not in str(exc.value)
    assert serve_main(["--model", str(folder), "--onnx", str(graph)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xdner-serve: error: {expected[1]}") and err.count("\n") == 1
