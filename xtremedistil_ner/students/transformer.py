"""Small transformer student: a BERT-shaped encoder (L layers, width h) over the compact
vocabulary, a linear classifier on its last layer, and one learned projection per layer to the
teacher's width for stage 1, which matches student layer i to teacher layer g(i).

Initialisation (`init`): `teacher` copies teacher layer g(i) into student layer i and the
teacher's embeddings (needs the teacher's width, heads and FF size); `random` starts from BERT's
initialiser with word embeddings from a PCA of the teacher's; `auto` takes `teacher` when the
shapes allow it, else `random`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertModel

from ..config import ConfigError
from .base import Student, pca_embeddings

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ..config import StudentConfig

INITS = ("auto", "teacher", "random")


def uniform_layer_map(num_layers: int, num_teacher_layers: int) -> list[int]:
    """Student layer i (1-based) -> teacher layer round(i * N / L): every k-th layer, ending on
    the teacher's last (e.g. L=4 of 12 -> 3, 6, 9, 12)."""
    return [round((i + 1) * num_teacher_layers / num_layers) for i in range(num_layers)]


def default_heads(width: int) -> int:
    """About one head per 64 dimensions, rounded down to a divisor of the width."""
    return next(h for h in range(max(1, width // 64), 0, -1) if width % h == 0)


def _heads(spec: "StudentConfig") -> int:
    return spec.num_heads or default_heads(spec.hidden_dim)


def _backbone(teacher: "PreTrainedModel") -> nn.Module:
    base = teacher.base_model
    if not (hasattr(base, "encoder") and hasattr(base.encoder, "layer") and hasattr(base, "embeddings")):
        raise ConfigError(f"init: teacher: {type(base).__name__} is not BERT-shaped (no encoder.layer / embeddings)")
    return base


class TransformerStudent(Student):
    """Config: `num_layers`, `hidden_dim` (h), `num_heads`, `ff_dim`, `dropout`, and the base
    keys (`max_length` sizes the position table; windows never exceed it)."""

    kind = "transformer"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        h, t = int(config["hidden_dim"]), int(config["teacher_hidden_size"])
        bert = BertConfig(
            vocab_size=int(config["vocab_size"]), hidden_size=h, num_hidden_layers=int(config["num_layers"]),
            num_attention_heads=int(config["num_heads"]), intermediate_size=int(config["ff_dim"]),
            max_position_embeddings=int(config["max_length"]), type_vocab_size=1, pad_token_id=0,
            hidden_dropout_prob=float(config.get("dropout", 0.1)), attention_probs_dropout_prob=float(config.get("dropout", 0.1)),
        )
        self.encoder = BertModel(bert, add_pooling_layer=False)
        # Identity where widths already match: the student's states are compared as they are.
        self.projection = nn.ModuleList(
            nn.Identity() if h == t else nn.Linear(h, t) for _ in config.get("teacher_layers", [])
        )
        self.dropout = nn.Dropout(float(config.get("dropout", 0.1)))
        self.classifier = nn.Linear(h, len(config["labels"]))

    @classmethod
    def check_spec(cls, spec: "StudentConfig") -> None:
        if spec.num_layers is None or spec.num_layers < 1:
            raise ConfigError(f"student {spec.name!r}: a transformer needs num_layers >= 1")
        if spec.init not in INITS:
            raise ConfigError(f"student {spec.name!r}: init must be one of {INITS} (got {spec.init!r})")
        heads = _heads(spec)
        if spec.hidden_dim % heads:
            raise ConfigError(f"student {spec.name!r}: hidden_dim {spec.hidden_dim} is not divisible by num_heads {heads}")

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
    def from_teacher(cls, spec: "StudentConfig", teacher: "PreTrainedModel", base: dict[str, Any], kept_ids: np.ndarray, pad_id: int, seed: int) -> "TransformerStudent":
        cls.check_spec(spec)
        tc = teacher.config
        heads = _heads(spec)
        ff = spec.ff_dim or 4 * spec.hidden_dim
        same_shape = (spec.hidden_dim, heads, ff) == (tc.hidden_size, tc.num_attention_heads, tc.intermediate_size)
        if spec.init == "teacher" and not same_shape:
            raise ConfigError(
                f"student {spec.name!r}: init: teacher needs the teacher's hidden_dim/num_heads/ff_dim "
                f"({tc.hidden_size}/{tc.num_attention_heads}/{tc.intermediate_size}); use init: random or auto"
            )
        config = {**base, "num_layers": spec.num_layers, "hidden_dim": spec.hidden_dim, "num_heads": heads, "ff_dim": ff,
                  "dropout": spec.dropout}
        torch.manual_seed(seed)
        student = cls(config)
        student.set_vocabulary(kept_ids, pad_id)
        emb = teacher.get_input_embeddings().weight.detach()
        with torch.no_grad():
            if spec.init != "random" and same_shape:
                student._copy_teacher(teacher, kept_ids, pad_id)
                student.config["init"] = "teacher"
            else:
                rows = pca_embeddings(emb, kept_ids, spec.hidden_dim, seed) * emb.float().std()
                student.encoder.embeddings.word_embeddings.weight.copy_(rows)
                student.config["init"] = "random"
        return student

    def _copy_teacher(self, teacher: "PreTrainedModel", kept_ids: np.ndarray, pad_id: int) -> None:
        """Teacher layer g(i) -> student layer i; embeddings restricted to the kept pieces.
        RoBERTa-style position tables start after the padding index; BERT's at 0."""
        src = _backbone(teacher)
        dst = self.encoder
        words = src.embeddings.word_embeddings.weight
        kept = torch.as_tensor(kept_ids, dtype=torch.long)
        rows = torch.cat([words[pad_id : pad_id + 1], words[kept].mean(0, keepdim=True), words[kept]])
        dst.embeddings.word_embeddings.weight.copy_(rows)
        offset = teacher.config.pad_token_id + 1 if teacher.config.model_type in ("roberta", "xlm-roberta", "camembert") else 0
        n = dst.embeddings.position_embeddings.weight.shape[0]
        dst.embeddings.position_embeddings.weight.copy_(src.embeddings.position_embeddings.weight[offset : offset + n])
        dst.embeddings.token_type_embeddings.weight.copy_(src.embeddings.token_type_embeddings.weight[:1])
        dst.embeddings.LayerNorm.load_state_dict(src.embeddings.LayerNorm.state_dict())
        for i, g in enumerate(self.config["teacher_layers"]):
            dst.encoder.layer[i].load_state_dict(src.encoder.layer[g - 1].state_dict())

    def max_positions(self) -> int | None:
        return int(self.config["max_length"])

    def _layer_groups(self) -> tuple[str, ...]:
        """`layerL-1` … `layer0`: top-down, as gradual unfreezing walks them."""
        return tuple(f"layer{i}" for i in reversed(range(int(self.config["num_layers"]))))

    @property
    def groups(self) -> tuple[str, ...]:
        return ("classifier", *self._layer_groups(), "projection", "embeddings")

    def aliases(self) -> dict[str, tuple[str, ...]]:
        return {"encoder": self._layer_groups()}

    def representation_only(self) -> tuple[str, ...]:
        return ("projection",)

    def group_parameters(self) -> dict[str, list[nn.Parameter]]:
        groups = {"classifier": list(self.classifier.parameters())}
        for i in reversed(range(int(self.config["num_layers"]))):
            groups[f"layer{i}"] = list(self.encoder.encoder.layer[i].parameters())
        groups["projection"] = list(self.projection.parameters())
        groups["embeddings"] = list(self.encoder.embeddings.parameters())
        return groups

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.encoder(input_ids=self.id_map[input_ids], attention_mask=attention_mask, output_hidden_states=True)
        states = out.hidden_states[1:]  # [0] is the embedding output
        projections = [proj(states[i]) for i, proj in enumerate(self.projection)]
        return {"logits": self.classifier(self.dropout(states[-1])), "projections": projections}
