"""The standalone tagger, `xdner predict` and `xdner export` on a tiny untrained student saved
with the tiny teacher's tokenizer: a biased classifier makes the predicted tags deterministic,
so offsets, windowing and the file formats can be checked exactly; ONNX is checked against
PyTorch on random batches."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_student
from xdner_runtime.words import split_words

from xtremedistil_ner.cli import main
from xtremedistil_ner.config import DistilConfig, StageConfig
from xtremedistil_ner.data.conll import Sentence
from xtremedistil_ner.distiller import FINAL, Distiller, StageData
from xtremedistil_ner.encoding import encode, special_ids
from xtremedistil_ner.export import add_parser as add_export_parser
from xtremedistil_ner.export import export_onnx, run_export
from xtremedistil_ner.predict import add_parser as add_predict_parser
from xtremedistil_ner.predict import run_predict
from xtremedistil_ner.students import (
    XtremeDistilPreTrainedModel,
    load_student,
    save_student,
)
from xtremedistil_ner.tagger import Tagger

LABELS = ["O", "B-PER", "I-PER"]


def make_student(tokenizer, winner: str | None = None, max_length: int = 16) -> XtremeDistilPreTrainedModel:
    """An untrained student over the tokenizer's ids; with `winner`, every word gets that tag."""
    vocab = len(tokenizer)
    pad = special_ids(tokenizer)[2]
    kept = np.array([i for i in range(vocab) if i != pad])
    s = tiny_student(LABELS, kept, pad, vocab, max_length=max_length)
    if winner is not None:
        with torch.no_grad():
            s.classifier.weight.zero_()
            s.classifier.bias.copy_(torch.tensor([10.0 if t == winner else 0.0 for t in LABELS]))
    return s.eval()


@pytest.fixture
def model_dir(tmp_path: Path, tiny_tokenizer) -> Path:
    path = tmp_path / "model"
    save_student(make_student(tiny_tokenizer, winner="B-PER"), path, tiny_tokenizer)
    return path


def cli(add_parser, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="xdner")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_checkpoint_is_self_contained(model_dir: Path, tiny_tokenizer) -> None:
    assert (model_dir / "tokenizer.json").exists() and (model_dir / "config.json").exists()
    assert not list(model_dir.parent.glob(".*tmp"))
    tagger = Tagger.load(model_dir)
    assert tagger.tokenizer("Anna Schmidt")["input_ids"] == tiny_tokenizer("Anna Schmidt")["input_ids"]
    assert tagger.labels == LABELS and tagger.max_length == 16


def test_distiller_saves_the_tokenizer_with_the_final_model_only(tmp_path: Path, tiny_tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate import Accelerator
    from xtremedistil_ner import distiller

    saves, save = [], distiller.save_student
    monkeypatch.setattr(distiller, "save_student", lambda model, path, tok=None: (saves.append((Path(path).name, tok)), save(model, path, tok)))

    sents = [Sentence(["Anna", "Schmidt", "visited", "Paris"], ["B-PER", "I-PER", "O", "O"], "en")] * 4
    windows = encode(sents, tiny_tokenizer, 16, {t: i for i, t in enumerate(LABELS)})
    dev = sents[:1]
    data = StageData(None, [], windows, dev, encode(dev, tiny_tokenizer, 16), special_ids(tiny_tokenizer)[2])
    cfg = DistilConfig(batch_size=2, stages=[StageConfig("g", "gold", "labeled", "all", epochs=1, lr=0.01)])
    Distiller(make_student(tiny_tokenizer), cfg, data, tmp_path, Accelerator(cpu=True), 0, tiny_tokenizer).run()
    assert (tmp_path / FINAL / "tokenizer.json").exists()
    assert [name for name, tok in saves if tok is not None] == [FINAL] and len(saves) > 1  # the checkpoints went without it
    assert len(Tagger.load(tmp_path / FINAL).tag_tokens([["Anna", "Schmidt"]])[0]) == 2


def test_load_without_tokenizer_says_why(tmp_path: Path, tiny_tokenizer) -> None:
    save_student(make_student(tiny_tokenizer), tmp_path / "bare")
    with pytest.raises(FileNotFoundError, match="without the teacher's tokenizer"):
        Tagger.load(tmp_path / "bare")


def test_entities_have_exact_character_offsets(model_dir: Path) -> None:
    text = "  Anna Schmidt,  visited\tNew-York (again)! "
    ents = Tagger.load(model_dir)(text)
    words = ["Anna", "Schmidt", ",", "visited", "New-York", "(", "again", ")", "!"]
    assert [e["text"] for e in ents] == words  # B-PER everywhere: one entity per word
    for e in ents:
        assert text[e["start"] : e["end"]] == e["text"] and e["label"] == "PER"
        assert e["score"] == pytest.approx(np.exp(10) / (np.exp(10) + 2), abs=1e-5)


def test_inside_tags_join_words_into_one_entity(tiny_tokenizer) -> None:
    """A backend that says B-PER on each text's first piece and I-PER after it: one entity over
    the whole text, from its first word's start to its last word's end."""
    import xdner_runtime

    from xtremedistil_ner.encoding import word_pieces

    def probabilities(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = np.zeros((*ids.shape, len(LABELS)), np.float32)
        out[..., LABELS.index("I-PER")] = 1.0
        out[:, 1, :] = np.eye(len(LABELS))[LABELS.index("B-PER")]
        return out

    tagger = xdner_runtime.Tagger(probabilities, word_pieces(tiny_tokenizer), LABELS, max_length=64)
    texts = ["Li  Wei met Marie Curie.", "", "   "]
    first, empty, blank = tagger(texts)
    assert [(e["label"], e["start"], e["end"], e["text"]) for e in first] == [("PER", 0, 24, texts[0])]
    assert empty == [] and blank == []
    assert tagger.tag_tokens([["Li", "Wei"], []]) == [["B-PER", "I-PER"], []]


def test_inside_tags_that_continue_no_entity_are_outside(tmp_path: Path, tiny_tokenizer) -> None:
    """A model that says I-PER everywhere finds no entity: an I- that continues no entity belongs
    to none, as the strict seqeval scoring behind every reported F1 reads it."""
    save_student(make_student(tiny_tokenizer, winner="I-PER"), tmp_path / "m", tiny_tokenizer)
    tagger = Tagger.load(tmp_path / "m")
    assert tagger(["Li Wei met Marie Curie."]) == [[]]
    assert tagger.tag_tokens([["Li", "Wei"]]) == [["O", "O"]]


def test_long_input_is_windowed_not_truncated(model_dir: Path) -> None:
    tagger = Tagger.load(model_dir)
    words = [f"Berlin{i % 7}" if i % 3 else "Paris" for i in range(1000)]
    tags = tagger.tag_tokens([words, ["Anna"]])
    assert [len(t) for t in tags] == [1000, 1]
    assert set(tags[0]) == {"B-PER"}
    ents = tagger(" ".join(words))
    assert len(ents) == 1000 and ents[-1]["end"] == len(" ".join(words))


def test_unspaced_scripts_split_into_characters() -> None:
    text = "北京是中国的首都。東京タワーへ行く Anna's 3.5km กรุงเทพ"
    words = [text[s:e] for s, e in split_words(text)]
    assert words[:9] == list("北京是中国的首都。")
    assert words[9:17] == list("東京タワーへ行く")
    assert words[17:] == ["Anna's", "3.5km", "ก", "รุ", "ง", "เ", "ท", "พ"]
    assert split_words("می\u200cخواهم") == [(0, 8)]  # ZWNJ stays inside a Persian word


@pytest.mark.parametrize("text, words", [
    ("Er kam nach Berlin.", ["Er", "kam", "nach", "Berlin", "."]),  # a sentence's final period
    ("St. Petersburg, 1. FC Köln, U.S. Army.", ["St.", "Petersburg", ",", "1.", "FC", "Köln", ",", "U.S.", "Army", "."]),
    ("''Der Spiegel'' (2005).", ["''", "Der", "Spiegel", "''", "(", "2005", ")", "."]),  # runs stay whole
    ("Nordrhein-Westfalen d’Italia 6:4 === **", ["Nordrhein-Westfalen", "d’Italia", "6:4", "===", "**"]),
    ("वह डॉ॰ शर्मा है।", ["वह", "डॉ॰", "शर्मा", "है।"]),  # danda and ॰ stay, as in WikiANN's Hindi
])
def test_punctuation_is_split_off_words_as_in_the_training_data(text: str, words: list[str]) -> None:
    assert [text[s:e] for s, e in split_words(text)] == words


def test_predict_text_file_to_jsonl(model_dir: Path, tmp_path: Path) -> None:
    inp = tmp_path / "in.txt"
    inp.write_text("Anna Schmidt lives in Berlin.\n\n北京\n", encoding="utf-8")
    out = tmp_path / "out" / "pred.jsonl"
    args = cli(add_predict_parser, ["predict", "--model", str(model_dir), str(inp), "--output", str(out), "--batch-size", "2"])
    assert run_predict(args) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in records] == ["Anna Schmidt lives in Berlin.", "", "北京"]
    assert [len(r["entities"]) for r in records] == [6, 0, 2]
    for r in records:
        for e in r["entities"]:
            assert r["text"][e["start"] : e["end"]] == e["text"]
    assert not list(out.parent.glob(".*tmp"))


def test_predict_conll_file_to_conll(model_dir: Path, tmp_path: Path) -> None:
    inp = tmp_path / "in.conll"
    inp.write_text("-DOCSTART-\tO\n\nAnna\tB-PER\nSchmidt\tI-PER\n.\tO\n\nNew York\tB-LOC\nis\tO\n", encoding="utf-8")
    out = tmp_path / "pred.conll"
    args = cli(add_predict_parser, ["predict", "--model", str(model_dir), str(inp), "--input-format", "conll", "--output", str(out)])
    assert run_predict(args) == 0
    # token, gold, predicted: the layout conlleval reads
    assert out.read_text(encoding="utf-8") == ("Anna\tB-PER\tB-PER\nSchmidt\tI-PER\tB-PER\n.\tO\tB-PER\n\n"
                                               "New York\tB-LOC\tB-PER\nis\tO\tB-PER\n\n")
    jsonl = tmp_path / "pred.jsonl"
    args = cli(add_predict_parser, ["predict", "--model", str(model_dir), str(inp), "--input-format", "conll", "--format", "jsonl", "--output", str(jsonl)])
    assert run_predict(args) == 0
    second = json.loads(jsonl.read_text(encoding="utf-8").splitlines()[1])
    assert second["text"] == "New York is"
    assert [(e["start"], e["end"], e["text"]) for e in second["entities"]] == [(0, 8, "New York"), (9, 11, "is")]


def test_predict_writes_valid_iob2_and_refuses_conll_passed_as_text(tmp_path: Path, tiny_tokenizer,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A model that says I-PER everywhere writes valid IOB2 (an I- that continues no entity is O,
    as strict seqeval reads it); a CoNLL file given as text is an error, not one-word documents."""
    save_student(make_student(tiny_tokenizer, winner="I-PER"), tmp_path / "m", tiny_tokenizer)
    text = tmp_path / "in.txt"
    text.write_text("Anna Schmidt lives\nBerlin\n", encoding="utf-8")
    out = tmp_path / "pred.conll"
    assert run_predict(cli(add_predict_parser, ["predict", "--model", str(tmp_path / "m"), str(text), "--format", "conll",
                                                "--output", str(out)])) == 0
    assert out.read_text(encoding="utf-8") == "Anna\tO\nSchmidt\tO\nlives\tO\n\nBerlin\tO\n\n"
    conll = tmp_path / "test.txt"
    conll.write_text("Anna\tB-PER\nlacht\tO\n\nBerlin B-LOC\n", encoding="utf-8")
    assert main(["predict", "--model", str(tmp_path / "m"), str(conll), "--output", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "looks like CoNLL" in err and "--input-format conll" in err and not (tmp_path / "x.jsonl").exists()


def random_batches(vocab: int, pad: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    batches = []
    for b, t in ((1, 1), (1, 9), (3, 17), (8, 40), (5, 130)):
        lengths = torch.randint(1, t + 1, (b,), generator=gen)
        lengths[0] = t
        mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).long()
        ids = torch.randint(0, vocab, (b, t), generator=gen).masked_fill(mask == 0, pad)
        batches.append((ids, mask))
    return batches


def test_onnx_matches_pytorch(tmp_path: Path, tiny_tokenizer) -> None:
    ort = pytest.importorskip("onnxruntime")
    student = make_student(tiny_tokenizer)
    path = export_onnx(student, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    worst = 0.0
    for ids, mask in random_batches(len(tiny_tokenizer), special_ids(tiny_tokenizer)[2]):
        (got,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        with torch.no_grad():
            want = student(ids, mask).logits.numpy()
        assert got.shape == want.shape == (*ids.shape, len(LABELS))
        worst = max(worst, float(np.abs(got - want).max()))
        assert np.array_equal(got.argmax(-1), want.argmax(-1))
    print(f"max abs logit difference ONNX vs PyTorch: {worst:.3g}")
    assert worst <= 1e-4


def test_int8_export_runs(model_dir: Path, tmp_path: Path, tiny_tokenizer) -> None:
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "q" / "model.int8.onnx"
    args = cli(add_export_parser, ["export", "--model", str(model_dir), "--format", "onnx", "--int8", "--output", str(out)])
    assert run_export(args) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    student = load_student(model_dir)
    for ids, mask in random_batches(len(tiny_tokenizer), special_ids(tiny_tokenizer)[2]):
        (got,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        with torch.no_grad():
            assert got.shape == student(ids, mask).logits.shape
        assert np.isfinite(got).all()


def test_tagger_and_predict_run_an_exported_graph(tmp_path: Path, tiny_tokenizer) -> None:
    """`Tagger.load(DIR, onnx=FILE)` and `xdner predict --onnx FILE` tag with the graph: the same
    words and tags as PyTorch for an fp32 export of an untrained (so not one-tag) student."""
    pytest.importorskip("onnxruntime")
    path = tmp_path / "model"
    student = make_student(tiny_tokenizer)
    with torch.no_grad():  # large random classifier weights: tags that vary with the input
        student.classifier.weight.copy_(10 * torch.randn(student.classifier.weight.shape, generator=torch.Generator().manual_seed(0)))
    save_student(student, path, tiny_tokenizer)
    graph = export_onnx(load_student(path), path / "model.onnx")
    sentences = [["Anna", "Schmidt", "lives", "in", "Berlin", "."], ["北京"], ["a"] * 40]
    want = Tagger.load(path).tag_tokens(sentences)
    assert Tagger.load(path, onnx=graph).tag_tokens(sentences) == want
    assert len({t for tags in want for t in tags}) > 1  # not a constant tagger: the comparison means something
    inp = tmp_path / "in.txt"
    inp.write_text("Anna Schmidt lives in Berlin.\n北京\n", encoding="utf-8")
    outputs = []
    for extra in ([], ["--onnx", str(graph)]):
        out = tmp_path / f"pred{len(extra)}.jsonl"
        assert run_predict(cli(add_predict_parser, ["predict", "--model", str(path), str(inp), "--output", str(out), *extra])) == 0
        outputs.append([json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()])
    strip = lambda docs: [[{k: v for k, v in e.items() if k != "score"} for e in d["entities"]] for d in docs]  # noqa: E731
    assert strip(outputs[0]) == strip(outputs[1]) and any(strip(outputs[0]))
    scores = [[e["score"] for d in docs for e in d["entities"]] for docs in outputs]
    assert scores[1] == pytest.approx(scores[0], abs=1e-5)  # fp32 graph vs PyTorch: rounding only


def test_tagger_refuses_a_missing_foreign_or_gpu_graph_and_predict_onnx_on_cuda(model_dir: Path, tmp_path: Path, tiny_tokenizer, capsys) -> None:
    pytest.importorskip("onnxruntime")
    with pytest.raises(FileNotFoundError, match=r"nope\.onnx: no such ONNX file .*xdner export"):
        Tagger.load(model_dir, onnx=tmp_path / "nope.onnx")
    pad = special_ids(tiny_tokenizer)[2]
    other = tiny_student(["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG"], np.array([i for i in range(len(tiny_tokenizer)) if i != pad]), pad,
                         len(tiny_tokenizer), max_length=16)
    foreign = export_onnx(other.eval(), tmp_path / "other.onnx")
    with pytest.raises(ValueError, match=r"other\.onnx: the graph was exported from another student than the one in .*model \(5 labels, 3 there"):
        Tagger.load(model_dir, onnx=foreign)
    with pytest.raises(ValueError, match="runs on the CPU"):
        Tagger.load(model_dir, device="cuda", onnx=foreign)
    args = cli(add_predict_parser, ["predict", "--model", str(model_dir), "-", "--onnx", str(tmp_path / "x.onnx"), "--device", "cuda"])
    assert run_predict(args) == 2
    assert "--onnx runs on the CPU" in capsys.readouterr().err


@pytest.mark.parametrize("drop", [(), ("unk_token",), ("pad_token",), ("pad_token", "unk_token")])
def test_the_runtime_reads_the_special_ids_training_used(tmp_path: Path, tiny_teacher: Path, drop: tuple[str, ...]) -> None:
    """A tokenizer config without an unknown (or pad) token: the torch-free runtime falls back
    exactly as the windows the student was trained and evaluated on did (it used to take id 0,
    the pad, for unknown, where `transformers` reads the tokenizer model's own unknown piece)."""
    import shutil

    from transformers import AutoTokenizer
    from xdner_runtime.onnx import word_pieces as runtime_word_pieces

    from xtremedistil_ner.encoding import word_pieces

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_teacher / name).exists():
            shutil.copy(tiny_teacher / name, tmp_path / name)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    for key in drop:
        config.pop(key, None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    if (tmp_path / "special_tokens_map.json").exists():
        (tmp_path / "special_tokens_map.json").unlink()
    trained = word_pieces(AutoTokenizer.from_pretrained(tmp_path)).special
    assert runtime_word_pieces(tmp_path).special == trained
    assert trained.unk == 1  # "[UNK]": named by the config, else by the tokenizer model itself
