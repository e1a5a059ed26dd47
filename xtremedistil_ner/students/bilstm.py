"""Building the BiLSTM student (XtremeDistil) for distillation; the model itself is
`modeling_xtremedistil.BiLSTMForTokenClassification`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..config import ConfigError
from .base import StudentType, config_kwargs, pca_embeddings, register
from .configuration_xtremedistil import BiLSTMStudentConfig
from .modeling_xtremedistil import BiLSTMForTokenClassification

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ..config import StudentConfig


@register("bilstm")
class BiLSTMType(StudentType):
    config_class = BiLSTMStudentConfig
    model_class = BiLSTMForTokenClassification

    @classmethod
    def check_spec(cls, spec: "StudentConfig") -> None:
        for key in ("embedding_dim", "hidden_dim"):
            if getattr(spec, key) < 1:
                raise ConfigError(f"student {spec.name!r}: {key} must be >= 1 (got {getattr(spec, key)})")

    @classmethod
    def teacher_layers(cls, spec: "StudentConfig", num_teacher_layers: int, default_layer: int) -> list[int]:
        return [default_layer]

    @classmethod
    def sizes(cls, spec: "StudentConfig") -> dict[str, Any]:
        return {"embedding_dim": spec.embedding_dim, "hidden_dim": spec.hidden_dim, "dropout": spec.dropout}

    @classmethod
    def probe_sizes(cls, spec: "StudentConfig") -> dict[str, Any]:
        return {"embedding_dim": 2, "hidden_dim": 2}

    @classmethod
    def from_teacher(cls, spec: "StudentConfig", teacher: "PreTrainedModel", base: dict[str, Any], kept_ids: np.ndarray, pad_id: int, seed: int) -> BiLSTMForTokenClassification:
        """Embeddings from a PCA of the teacher's rows for the kept pieces (the paper's SVD), or
        PyTorch's random initialisation with `init: random` (a student that owes the teacher
        nothing but its tokenizer, as the gold-only baseline)."""
        config = BiLSTMStudentConfig(**config_kwargs(base), **cls.sizes(spec))
        torch.manual_seed(seed)
        student = BiLSTMForTokenClassification(config)
        student.set_vocabulary(kept_ids, pad_id)
        if spec.init == "random":
            return student
        with torch.no_grad():
            emb = teacher.get_input_embeddings().weight.detach()
            student.embeddings.weight.copy_(pca_embeddings(emb, kept_ids, spec.embedding_dim, seed))
        return student
