"""BiLSTM student (XtremeDistil): compact subword embeddings -> BiLSTM -> GELU projection to the
teacher's hidden size (the representation-loss head) -> linear classifier."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .base import Student, pca_embeddings

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ..config import StudentConfig


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first `lengths[b]` steps, leaving padding in place; a gather, so
    it exports to ONNX (unlike pack_padded_sequence)."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    idx = torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


class BiLSTMStudent(Student):
    """Config: `embedding_dim` (E), `hidden_dim` (H per direction), `dropout`."""

    kind = "bilstm"
    GROUPS = ("classifier", "projection", "encoder", "embeddings")

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        e, h = int(config["embedding_dim"]), int(config["hidden_dim"])
        self.embeddings = nn.Embedding(int(config["vocab_size"]), e, padding_idx=0)
        self.dropout = nn.Dropout(float(config.get("dropout", 0.1)))
        self.forward_lstm = nn.LSTM(e, h, batch_first=True)
        self.backward_lstm = nn.LSTM(e, h, batch_first=True)
        self.projection = nn.Sequential(nn.Linear(2 * h, int(config["teacher_hidden_size"])), nn.GELU())
        self.classifier = nn.Linear(int(config["teacher_hidden_size"]), len(config["labels"]))

    @classmethod
    def teacher_layers(cls, spec: "StudentConfig", num_teacher_layers: int, default_layer: int) -> list[int]:
        return [default_layer]

    @classmethod
    def from_teacher(cls, spec: "StudentConfig", teacher: "PreTrainedModel", base: dict[str, Any], kept_ids: np.ndarray, pad_id: int, seed: int) -> "BiLSTMStudent":
        """Embeddings from a PCA of the teacher's rows for the kept pieces (the paper's SVD)."""
        student = cls({**base, "embedding_dim": spec.embedding_dim, "hidden_dim": spec.hidden_dim, "dropout": spec.dropout})
        student.set_vocabulary(kept_ids, pad_id)
        with torch.no_grad():
            emb = teacher.get_input_embeddings().weight.detach()
            student.embeddings.weight.copy_(pca_embeddings(emb, kept_ids, spec.embedding_dim, seed))
        return student

    @property
    def groups(self) -> tuple[str, ...]:
        return self.GROUPS

    def group_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {
            "classifier": list(self.classifier.parameters()),
            "projection": list(self.projection.parameters()),
            "encoder": list(self.forward_lstm.parameters()) + list(self.backward_lstm.parameters()),
            "embeddings": list(self.embeddings.parameters()),
        }

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.dropout(self.embeddings(self.id_map[input_ids]))
        lengths = attention_mask.sum(1)
        fwd, _ = self.forward_lstm(x)
        bwd, _ = self.backward_lstm(reverse_padded(x, lengths))
        h = self.dropout(torch.cat([fwd, reverse_padded(bwd, lengths)], dim=-1))
        projection = self.projection(h)
        return {"logits": self.classifier(projection), "projections": [projection]}
