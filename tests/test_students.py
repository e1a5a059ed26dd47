"""BiLSTM student: train -> save -> load gives identical predictions, every parameter gets a
gradient, padding never changes a sequence's output, PCA init keeps the teacher's geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xtremedistil_ner.students import BiLSTMStudent, Student, pca_embeddings
from xtremedistil_ner.students.bilstm import reverse_padded

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def tiny_student(seed: int = 0) -> BiLSTMStudent:
    torch.manual_seed(seed)
    s = BiLSTMStudent({"embedding_dim": 8, "hidden_dim": 6, "dropout": 0.0, "vocab_size": 12,
                       "teacher_vocab_size": 50, "teacher_hidden_size": 10, "labels": LABELS})
    s.set_vocabulary(np.arange(10, 20), pad_id=0)
    return s


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[10, 11, 12, 13, 14], [15, 16, 17, 0, 0]])
    return ids, (ids != 0).long()


def test_vocabulary_maps_teacher_ids_to_compact_ids() -> None:
    s = tiny_student()
    assert s.id_map[0].item() == 0  # pad
    assert s.id_map[10].item() == 2 and s.id_map[19].item() == 11
    assert s.id_map[42].item() == 1  # never seen -> unk


def test_reverse_padded_reverses_only_real_steps() -> None:
    x = torch.arange(10.0).reshape(2, 5, 1)
    out = reverse_padded(x, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[1, :, 0].tolist() == [7, 6, 5, 8, 9]


def test_padding_does_not_change_outputs() -> None:
    s = tiny_student().eval()
    ids, mask = batch()
    full = s.logits(ids, mask)[1, :3]
    alone = s.logits(ids[1:, :3], mask[1:, :3])[0]
    assert torch.allclose(full, alone, atol=1e-6)


def test_every_parameter_gets_a_gradient() -> None:
    s = tiny_student().train()
    ids, mask = batch()
    out = s(ids, mask)
    loss = out["logits"].pow(2).mean() + out["projections"][0].pow(2).mean()
    loss.backward()
    for name, p in s.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_train_save_load_gives_identical_predictions(tmp_path: Path) -> None:
    s = tiny_student()
    ids, mask = batch()
    labels = torch.tensor([[0, 1, 2, 0, 3], [3, 4, 0, -100, -100]])
    opt = torch.optim.Adam(s.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        logits = s.logits(ids, mask)
        loss = F.cross_entropy(logits.reshape(-1, len(LABELS)), labels.reshape(-1), ignore_index=-100)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 2
    s.eval()
    s.save(tmp_path / "student")
    loaded = Student.load(tmp_path / "student")
    assert isinstance(loaded, BiLSTMStudent)
    assert loaded.labels == LABELS
    assert torch.equal(s.logits(ids, mask), loaded.logits(ids, mask))
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left behind


def test_load_rejects_non_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a student checkpoint"):
        Student.load(tmp_path)


def test_pca_embeddings_keep_principal_directions() -> None:
    gen = torch.Generator().manual_seed(0)
    basis = torch.randn(2, 16, generator=gen)
    teacher = torch.randn(100, 2, generator=gen) @ basis * 5 + 0.01 * torch.randn(100, 16, generator=gen)
    kept = np.arange(20, 80)
    emb = pca_embeddings(teacher, kept, dim=4)
    assert emb.shape == (len(kept) + 2, 4)
    assert torch.all(emb[0] == 0)
    # two real directions carry nearly all variance; the others are near zero
    var = emb[2:].var(0)
    assert var[:2].min() > 50 * var[2:].max()
    # wider than the teacher: extra columns are small random values, not NaN
    wide = pca_embeddings(teacher, kept, dim=20)
    assert wide.shape == (62, 20) and torch.isfinite(wide).all()
