"""predict / export inputs (#28): bad bytes, directories, batch sizes, foreign or non-ONNX
graphs, out-of-range opsets, custom code and pickles are each a one-line error with exit 2
(argparse's usage error for bad numbers), never a traceback; --encoding reads other encodings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from xdner_runtime.errors import ArtifactError
from xdner_runtime.onnx import weights_sha256 as file_weights_sha256

from xtremedistil_ner.cli import main
from xtremedistil_ner.export import WEIGHTS_KEY, export_onnx, weights_sha256
from xtremedistil_ner.io import MANIFEST
from xtremedistil_ner.students import load_student, save_student
from xtremedistil_ner.tagger import Tagger

from test_tagger import make_student, model_dir  # noqa: F401 - the fixture


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The command's error: one `xdner: error:` line on stderr, no traceback."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "predict:" not in line]
    assert len(lines) == 1 and lines[0].startswith("xdner: error: "), lines
    return lines[0]


def predict(model: Path, *args: str) -> int:
    return main(["predict", "--model", str(model), *args])


def test_non_utf8_input_names_the_byte_offset_or_is_read_with_encoding(model_dir: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    latin = tmp_path / "latin.txt"
    latin.write_bytes(("a" * 70_000 + "\nZürich\n").encode("latin-1"))  # past the first 64 KiB chunk
    assert predict(model_dir, str(latin)) == 2
    assert one_error(capsys) == (f"xdner: error: {latin}: not valid utf-8 at byte offset 70002 (byte 0xfc); pass --encoding "
                                 "with the file's encoding (e.g. --encoding latin-1), or re-encode it as UTF-8")
    out = tmp_path / "out.jsonl"
    assert predict(model_dir, str(latin), "--encoding", "latin-1", "--output", str(out)) == 0
    assert [json.loads(line)["text"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a" * 70_000, "Zürich"]
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert predict(model_dir, str(binary)) == 2 and "not valid utf-8 at byte offset 0 (byte 0x89)" in one_error(capsys)
    assert predict(model_dir, str(latin), "--encoding", "klingon") == 2 and "no such encoding" in one_error(capsys)


def test_a_character_cut_by_a_chunk_boundary_and_a_bom_decode_as_before(model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    text = "\ufeff" + "b" * 65_533 + "é ü\r\nzwei\rdrei"  # 'é' straddles bytes 65535-65536
    inp = tmp_path / "in.txt"
    inp.write_text(text, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert predict(model_dir, str(inp), "--output", str(out)) == 0
    assert [json.loads(line)["text"] for line in out.read_text(encoding="utf-8").splitlines()] == ["b" * 65_533 + "é ü", "zwei", "drei"]


def test_directories_are_refused_as_input_and_output(model_dir: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    inp = tmp_path / "in.txt"
    inp.write_text("Anna\n", encoding="utf-8")
    assert predict(model_dir, str(tmp_path)) == 2
    assert one_error(capsys) == f"xdner: error: {tmp_path}: is a directory; the input must be a file"
    assert predict(model_dir, str(inp), "--output", str(tmp_path)) == 2
    assert one_error(capsys) == f"xdner: error: {tmp_path}: is a directory; --output must be a file"


@pytest.mark.parametrize("size", ["0", "-5", "two"])
def test_bad_batch_sizes_are_usage_errors(model_dir: Path, size: str, capsys) -> None:  # noqa: F811
    with pytest.raises(SystemExit) as exc:
        predict(model_dir, "-", "--batch-size", size)
    assert exc.value.code == 2 and "argument --batch-size: " in capsys.readouterr().err


def test_a_graph_carries_its_students_weights_and_another_students_is_refused(model_dir: Path, tmp_path: Path, tiny_tokenizer, capsys) -> None:  # noqa: F811
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    graph = export_onnx(load_student(model_dir), tmp_path / "mine.onnx")
    props = {p.key: p.value for p in onnx.load(str(graph)).metadata_props}
    assert props[WEIGHTS_KEY] == weights_sha256(load_student(model_dir)) == file_weights_sha256(model_dir / "model.safetensors")
    assert Tagger.load(model_dir, onnx=graph).tag_tokens([["Anna"]]) == [["B-PER"]]
    other = tmp_path / "other"  # same labels and tokenizer, other weights
    save_student(make_student(tiny_tokenizer, winner="I-PER"), other, tiny_tokenizer)
    with pytest.raises(ArtifactError, match=rf"{graph}: the graph was exported from another student than the one in {other}"):
        Tagger.load(other, onnx=graph)
    inp = tmp_path / "in.txt"
    inp.write_text("Anna\n", encoding="utf-8")
    assert predict(other, str(inp), "--onnx", str(graph)) == 2 and "exported from another student" in one_error(capsys)
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"hello, not a graph")
    assert predict(model_dir, str(inp), "--onnx", str(not_onnx)) == 2
    assert one_error(capsys).startswith(f"xdner: error: {not_onnx}: not an ONNX graph onnxruntime can run (")


@pytest.mark.parametrize("opset", ["1", "13", "99"])
def test_export_opsets_are_range_checked(model_dir: Path, tmp_path: Path, opset: str, capsys) -> None:  # noqa: F811
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(model_dir), "--opset", opset, "--output", str(out)]) == 2
    assert one_error(capsys) == f"xdner: error: --opset {opset}: students export at opsets 14 to 20 (the transformer student needs 14; this torch's exporter stops at 20)"
    assert not out.exists()


class _Payload:
    """A hostile pickle: loading it creates `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_custom_code_and_pickled_weights_are_refused_on_one_line(model_dir: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    marker = tmp_path / "ran"
    custom = tmp_path / "custom"
    shutil.copytree(model_dir, custom)
    (custom / MANIFEST).unlink()  # a folder from elsewhere
    config = json.loads((custom / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForTokenClassification": "evil.EvilModel"})
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    assert predict(custom, "-") == 2
    assert one_error(capsys) == (f"xdner: error: {custom}: a 'evil' model, not an xtremedistil student (xtremedistil-bilstm or "
                                 "xtremedistil-transformer); a folder's own model code (auto_map) is never run")
    pickled = tmp_path / "pickled"
    shutil.copytree(model_dir, pickled)
    (pickled / MANIFEST).unlink()
    (pickled / "model.safetensors").unlink()
    torch.save({"weights": _Payload(marker)}, pickled / "pytorch_model.bin")
    assert main(["export", "--model", str(pickled)]) == 2
    assert one_error(capsys) == (f"xdner: error: {pickled}: no model.safetensors (pytorch_model.bin); pickled weights are "
                                 "refused, as loading a pickle can run code")
    assert not marker.exists()
