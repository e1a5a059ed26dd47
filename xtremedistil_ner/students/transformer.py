"""Small transformer student: a BERT-shaped encoder (L layers, width h) over the compact
vocabulary, a linear classifier on its last layer, and one learned projection per layer to the
teacher's width for stage 1, which matches student layer i to teacher layer g(i).

Initialisation (`init`): `teacher` copies teacher layer g(i) into student layer i and the
teacher's embeddings (needs the teacher's width, heads and FF size); `auto` does that when the
shapes allow it, else starts from BERT's initialiser with word embeddings from a PCA of the
teacher's (recorded as `pca`); `random` is BERT's initialiser alone, owing the teacher nothing but
its tokenizer (the gold-only baseline).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..config import ConfigError
from .base import StudentType, config_kwargs, pca_embeddings, register
from .configuration_xtremedistil import TransformerStudentConfig
from .modeling_xtremedistil import TransformerForTokenClassification

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ..config import StudentConfig



def uniform_layer_map(num_layers: int, num_teacher_layers: int) -> list[int]:
    """Student layer i (1-based) -> teacher layer round(i * N / L): every k-th layer, ending on
    the teacher's last (e.g. L=4 of 12 -> 3, 6, 9, 12)."""
    return [round((i + 1) * num_teacher_layers / num_layers) for i in range(num_layers)]


def default_heads(width: int) -> int:
    """About one head per 64 dimensions, rounded down to a divisor of the width."""
    return next(h for h in range(max(1, width // 64), 0, -1) if width % h == 0)


def _heads(spec: "StudentConfig") -> int:
    return spec.num_heads or default_heads(spec.hidden_dim)


# Teachers whose layers a same-shape student can start as copies of (`_copy_teacher`'s layout).
BERT_LAYOUT = ("bert", "roberta", "xlm-roberta", "camembert")


def _same_shape(spec: "StudentConfig", teacher_config: dict[str, Any]) -> bool:
    """Whether `spec`'s layers have the teacher's shape, so they can start as copies of its layers."""
    ff = spec.ff_dim or 4 * spec.hidden_dim
    return (spec.hidden_dim, _heads(spec), ff) == tuple(teacher_config.get(k) for k in ("hidden_size", "num_attention_heads", "intermediate_size"))


def _backbone(teacher: "PreTrainedModel") -> nn.Module:
    base = teacher.base_model
    if not (hasattr(base, "encoder") and hasattr(base.encoder, "layer") and hasattr(base, "embeddings")):
        raise ConfigError(f"init: teacher: {type(base).__name__} is not BERT-shaped (no encoder.layer / embeddings)")
    return base


@register("transformer")
class TransformerType(StudentType):
    config_class = TransformerStudentConfig
    model_class = TransformerForTokenClassification

    @classmethod
    def check_spec(cls, spec: "StudentConfig") -> None:
        if spec.num_layers is None or spec.num_layers < 1:
            raise ConfigError(f"student {spec.name!r}: a transformer needs num_layers >= 1")
        if spec.hidden_dim < 1:
            raise ConfigError(f"student {spec.name!r}: hidden_dim must be >= 1 (got {spec.hidden_dim})")
        heads = _heads(spec)
        if spec.hidden_dim % heads:
            raise ConfigError(f"student {spec.name!r}: hidden_dim {spec.hidden_dim} is not divisible by num_heads {heads}")

    @classmethod
    def check_teacher(cls, spec: "StudentConfig", teacher_config: dict[str, Any]) -> None:
        if spec.init != "teacher":
            return
        if teacher_config.get("model_type") not in BERT_LAYOUT:
            raise ConfigError(f"student {spec.name!r}: init: teacher copies layers laid out as BERT's ({', '.join(BERT_LAYOUT)}); "
                              f"this teacher is {teacher_config.get('model_type')!r}: use init: random or auto")
        if not _same_shape(spec, teacher_config):
            shape = "/".join(str(teacher_config.get(k)) for k in ("hidden_size", "num_attention_heads", "intermediate_size"))
            raise ConfigError(f"student {spec.name!r}: init: teacher needs the teacher's hidden_dim/num_heads/ff_dim "
                              f"({shape}); use init: random or auto")

    @classmethod
    def teacher_layers(cls, spec: "StudentConfig", num_teacher_layers: int, default_layer: int) -> list[int]:
        cls.check_spec(spec)
        layers = spec.layer_map or uniform_layer_map(spec.num_layers, num_teacher_layers)
        if len(layers) != spec.num_layers or not all(1 <= g <= num_teacher_layers for g in layers):
            raise ConfigError(
                f"student {spec.name!r}: layer_map {layers} must give one teacher layer in 1..{num_teacher_layers} "
                f"for each of its {spec.num_layers} layers"
            )
        return list(layers)

    @classmethod
    def sizes(cls, spec: "StudentConfig") -> dict[str, Any]:
        return {"num_layers": spec.num_layers, "hidden_dim": spec.hidden_dim, "num_heads": _heads(spec),
                "ff_dim": spec.ff_dim or 4 * spec.hidden_dim, "dropout": spec.dropout}

    @classmethod
    def probe_sizes(cls, spec: "StudentConfig") -> dict[str, Any]:
        return {"num_layers": spec.num_layers, "hidden_dim": 2, "num_heads": 1, "ff_dim": 1}

    @classmethod
    def from_teacher(cls, spec: "StudentConfig", teacher: "PreTrainedModel", base: dict[str, Any], kept_ids: np.ndarray, pad_id: int, seed: int) -> TransformerForTokenClassification:
        cls.check_spec(spec)
        cls.check_teacher(spec, teacher.config.to_dict())
        copyable = teacher.config.model_type in BERT_LAYOUT and _same_shape(spec, teacher.config.to_dict())
        init = "random" if spec.init == "random" else "teacher" if copyable else "pca"
        config = TransformerStudentConfig(**config_kwargs(base), **cls.sizes(spec), init=init)
        torch.manual_seed(seed)
        student = TransformerForTokenClassification(config)
        student.set_vocabulary(kept_ids, pad_id)
        emb = teacher.get_input_embeddings().weight.detach()
        with torch.no_grad():
            if init == "teacher":
                _copy_teacher(student, teacher, kept_ids, pad_id)
            elif init == "pca":
                rows = pca_embeddings(emb, kept_ids, spec.hidden_dim, seed) * emb.float().std()
                student.get_input_embeddings().weight.copy_(rows)
        return student


def _copy_teacher(student: TransformerForTokenClassification, teacher: "PreTrainedModel", kept_ids: np.ndarray, pad_id: int) -> None:
    """Teacher layer g(i) -> student layer i; embeddings restricted to the kept pieces.
    RoBERTa-style position tables start after the padding index; BERT's at 0."""
    src = _backbone(teacher)
    dst = student.encoder
    words = src.embeddings.word_embeddings.weight
    kept = torch.as_tensor(kept_ids, dtype=torch.long)
    rows = torch.cat([words[pad_id : pad_id + 1], words[kept].mean(0, keepdim=True), words[kept]])
    dst.embeddings.word_embeddings.weight.copy_(rows)
    offset = teacher.config.pad_token_id + 1 if teacher.config.model_type in ("roberta", "xlm-roberta", "camembert") else 0
    n = dst.embeddings.position_embeddings.weight.shape[0]
    dst.embeddings.position_embeddings.weight.copy_(src.embeddings.position_embeddings.weight[offset : offset + n])
    dst.embeddings.token_type_embeddings.weight.copy_(src.embeddings.token_type_embeddings.weight[:1])
    dst.embeddings.LayerNorm.load_state_dict(src.embeddings.LayerNorm.state_dict())
    for i, g in enumerate(student.config.teacher_layers):
        dst.encoder.layer[i].load_state_dict(src.encoder.layer[g - 1].state_dict())
