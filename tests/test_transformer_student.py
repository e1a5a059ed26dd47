"""Transformer student: layer mapping, initialisation from the teacher (layers copied when the
shapes match, PCA embeddings when they do not), gradual unfreezing over its layers, every
parameter trained by some stage, save -> load -> identical predictions, ONNX parity."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForTokenClassification

from test_stages import FakeTransfer, make_data

from xtremedistil_ner.config import DistilConfig, StageConfig, StudentConfig
from xtremedistil_ner.distiller import FINAL, Distiller
from xtremedistil_ner.stages import sub_stages, validate_stage
from xtremedistil_ner.students import TransformerType, XtremeDistilPreTrainedModel, TransformerForTokenClassification, load_student
from xtremedistil_ner.students.transformer import uniform_layer_map

from conftest import tiny_student

LABELS = ["O", "B-PER", "I-PER"]


def test_uniform_layer_map_takes_every_kth_layer_ending_on_the_last() -> None:
    assert uniform_layer_map(4, 12) == [3, 6, 9, 12]
    assert uniform_layer_map(3, 12) == [4, 8, 12]
    assert uniform_layer_map(6, 12) == [2, 4, 6, 8, 10, 12]
    assert uniform_layer_map(1, 2) == [2]


def test_layer_map_is_checked() -> None:
    spec = StudentConfig("t", "transformer", hidden_dim=16, num_layers=2, layer_map=[1, 5])
    with pytest.raises(ValueError, match="one teacher layer in 1..4"):
        TransformerType.teacher_layers(spec, 4, 2)
    assert TransformerType.teacher_layers(StudentConfig("t", "transformer", num_layers=2, layer_map=[1, 3]), 4, 2) == [1, 3]


def base_config(teacher, kept: np.ndarray, layers: list[int]) -> dict:
    return {"vocab_size": len(kept) + 2, "teacher_vocab_size": teacher.config.vocab_size,
            "teacher_hidden_size": teacher.config.hidden_size, "teacher_layers": layers, "labels": LABELS, "max_length": 16}


@pytest.fixture
def teacher(tiny_teacher: Path):
    return AutoModelForTokenClassification.from_pretrained(tiny_teacher, num_labels=3, ignore_mismatched_sizes=True).eval()


def test_same_shape_student_starts_from_the_mapped_teacher_layers(teacher) -> None:
    kept = np.arange(10, 60)
    spec = StudentConfig("t", "transformer", hidden_dim=32, num_layers=1, num_heads=2, ff_dim=64, dropout=0.0)
    layers = TransformerType.teacher_layers(spec, 2, 1)
    assert layers == [2]
    student = TransformerType.from_teacher(spec, teacher, base_config(teacher, kept, layers), kept, 0, seed=0)
    assert student.config.init == "teacher"
    src = teacher.bert.encoder.layer[1].state_dict()
    for k, v in student.encoder.encoder.layer[0].state_dict().items():
        assert torch.equal(v, src[k]), k
    words = teacher.bert.embeddings.word_embeddings.weight
    assert torch.equal(student.encoder.embeddings.word_embeddings.weight[2:], words[torch.as_tensor(kept)])
    assert isinstance(student.projection[0], torch.nn.Identity)  # same width: compared as is
    # A same-shape teacher of another layout (DeBERTa's attention, DistilBERT's names): `auto`
    # falls back to PCA embeddings, `teacher` is refused, up front as when built.
    other = {**teacher.config.to_dict(), "model_type": "deberta-v2"}
    with pytest.raises(ValueError, match="init: teacher copies layers laid out as BERT's .*this teacher is 'deberta-v2'"):
        TransformerType.check_teacher(dataclasses.replace(spec, init="teacher"), other)
    TransformerType.check_teacher(spec, other)  # auto: nothing to refuse
    teacher.config.model_type = "deberta-v2"
    try:
        assert TransformerType.from_teacher(spec, teacher, base_config(teacher, kept, layers), kept, 0, seed=0).config.init == "pca"
    finally:
        del teacher.config.model_type  # the class's again


def test_full_depth_copy_reproduces_the_teacher(teacher) -> None:
    """Every layer mapped 1:1: on pieces it kept, the student computes the teacher's states."""
    kept = np.arange(10, 60)
    spec = StudentConfig("t", "transformer", hidden_dim=32, num_layers=2, num_heads=2, ff_dim=64, dropout=0.0)
    student = TransformerType.from_teacher(spec, teacher, base_config(teacher, kept, [1, 2]), kept, 0, seed=0).eval()
    ids = torch.as_tensor(kept[[3, 9, 1, 40, 22]])[None]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ref = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        out = student(ids, mask, output_projections=True).projections
    for k in range(2):
        assert torch.allclose(out[k], ref[k + 1], atol=1e-5)


def test_narrower_student_gets_pca_embeddings_and_projections(teacher) -> None:
    kept = np.arange(10, 60)
    spec = StudentConfig("t", "transformer", hidden_dim=16, num_layers=2, num_heads=2, ff_dim=32)
    with pytest.raises(ValueError, match="init: teacher needs"):
        TransformerType.from_teacher(StudentConfig("t", "transformer", hidden_dim=16, num_layers=2, init="teacher"),
                                        teacher, base_config(teacher, kept, [1, 2]), kept, 0, seed=0)
    student = TransformerType.from_teacher(spec, teacher, base_config(teacher, kept, [1, 2]), kept, 0, seed=0)
    assert student.config.init == "pca"
    emb = student.encoder.embeddings.word_embeddings.weight.detach()
    assert torch.all(emb[0] == 0)  # padding row
    # PCA keeps the teacher's geometry: distances between kept pieces correlate strongly.
    t = teacher.bert.embeddings.word_embeddings.weight.detach()[torch.as_tensor(kept)]
    d_t = torch.pdist(t - t.mean(0))
    d_s = torch.pdist(emb[2:] - emb[2:].mean(0))
    assert torch.corrcoef(torch.stack([d_t, d_s]))[0, 1] > 0.6
    assert [tuple(p.weight.shape) for p in student.projection] == [(32, 16), (32, 16)]


def tiny_transformer(layers: int = 2, seed: int = 0) -> XtremeDistilPreTrainedModel:
    return tiny_student(LABELS, np.arange(10, 20), 0, 30, kind="transformer", seed=seed, num_layers=layers,
                        teacher_layers=uniform_layer_map(layers, 4))


def test_groups_unfreeze_layers_top_down_and_skip_projection_after_stage_1() -> None:
    s = tiny_transformer()
    assert s.groups == ("classifier", "layer1", "layer0", "projection", "embeddings")
    names = {id(p) for params in s.group_parameters().values() for p in params}
    assert names == {id(p) for p in s.parameters()}  # every parameter is in exactly one group
    assert sum(len(v) for v in s.group_parameters().values()) == len(list(s.parameters()))
    logits = StageConfig("l", "logits_mse", "transfer", "gradual")
    assert sub_stages(logits, s) == [
        ("classifier",), ("classifier", "layer1"), ("classifier", "layer1", "layer0"),
        ("classifier", "layer1", "layer0", "embeddings"),
    ]
    rep = StageConfig("r", "representation", "transfer", ["embeddings", "encoder", "projection"])
    validate_stage(rep, s)
    assert sub_stages(rep, s) == [("embeddings", "layer1", "layer0", "projection")]
    walk = sub_stages(dataclasses.replace(rep, train="gradual"), s)
    assert walk[0] == ("layer1",) and walk[-1] == s.groups[1:]  # never the classifier, which it cannot reach


def test_padding_does_not_change_outputs() -> None:
    s = tiny_transformer().eval()
    ids = torch.tensor([[10, 11, 12, 13, 14], [15, 16, 17, 0, 0]])
    mask = (ids != 0).long()
    full = s(ids, mask).logits[1, :3]
    alone = s(ids[1:, :3], mask[1:, :3]).logits[0]
    assert torch.allclose(full, alone, atol=1e-5)


class LayeredTransfer(FakeTransfer):
    """The fake cache with one hidden-state target per matched teacher layer."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        for it in self.items:
            it["teacher_hidden"] = np.repeat(it["teacher_hidden"], layers, axis=1)


def test_stages_train_every_parameter_and_checkpoint_round_trips(tmp_path: Path) -> None:
    student = tiny_transformer()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    data = make_data()
    data.transfer = LayeredTransfer(2)
    stages = [StageConfig("rep", "representation", "transfer", ["embeddings", "encoder", "projection"], epochs=1, lr=0.01),
              StageConfig("logits", "logits_mse", "transfer", "gradual", epochs=1, lr=0.01),
              StageConfig("gold", "gold", "labeled", "all", epochs=1, lr=0.01)]
    progress = Distiller(student, DistilConfig(batch_size=4, eval_batch_size=8, stages=stages), data, tmp_path,
                         Accelerator(cpu=True), seed=0).run()
    assert [h["trainable"][-1] for h in progress["history"][1:5]] == ["classifier", "layer1", "layer0", "embeddings"]
    for name, value in student.state_dict().items():
        if name != "id_map":
            assert not torch.equal(value, before[name]), f"{name} never trained"
    loaded = load_student(tmp_path / FINAL)
    assert isinstance(loaded, TransformerForTokenClassification)
    ids = torch.tensor([[10, 11, 12, 13], [14, 15, 0, 0]])
    mask = (ids != 0).long()
    student.eval()
    assert torch.equal(loaded(ids, mask).logits, student(ids, mask).logits)


def test_onnx_export_matches_pytorch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from xtremedistil_ner.export import export_onnx

    s = tiny_transformer().eval()
    path = export_onnx(s, tmp_path / "t.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for ids in (torch.tensor([[10, 11, 12]]), torch.tensor([[10, 11, 12, 13, 14, 15, 16], [17, 18, 19, 0, 0, 0, 0]])):
        mask = (ids != 0).long()
        (onnx_logits,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        ref = s(ids, mask).logits.detach().numpy()
        assert np.abs(onnx_logits - ref)[mask.numpy().astype(bool)].max() < 1e-4


@pytest.mark.parametrize("spec, message", [
    (StudentConfig("t", "transformer", hidden_dim=16), "needs num_layers"),
    (StudentConfig("t", "transformer", hidden_dim=16, num_layers=2, init="pretrained"), "init must be one of"),
    (StudentConfig("t", "transformer", hidden_dim=100, num_layers=2, num_heads=3), "not divisible"),
    (StudentConfig("t", "lstm"), "unknown type 'lstm'"),
])
def test_bad_student_configs_fail_before_any_step(tmp_path: Path, spec: StudentConfig, message: str) -> None:
    from xtremedistil_ner.config import RunConfig
    from xtremedistil_ner.pipeline import Run

    with pytest.raises(ValueError, match=message):
        Run(RunConfig(output_dir=str(tmp_path / "run"), students=[spec]))
    assert not (tmp_path / "run").exists()


def test_tagger_windows_long_input_within_the_students_positions(teacher, tiny_tokenizer) -> None:
    from xtremedistil_ner.tagger import Tagger

    kept = np.arange(5, tiny_tokenizer.vocab_size)
    spec = StudentConfig("t", "transformer", hidden_dim=16, num_layers=1, num_heads=2, ff_dim=32)
    student = TransformerType.from_teacher(spec, teacher, base_config(teacher, kept, [2]), kept, tiny_tokenizer.pad_token_id, seed=0)
    words = ("Anna lives in Berlin and works for Siemens " * 5).split()
    (tags,) = Tagger(student, tiny_tokenizer).tag_tokens([words])  # 40 words, windows of at most 16 pieces
    assert len(tags) == len(words) and set(tags) <= set(LABELS)
    with pytest.raises(ValueError, match="longer than the 16 positions"):
        Tagger(student, tiny_tokenizer, max_length=32)
