"""The students as `transformers` token-classification models: one `PreTrainedModel` class per
student type, trained by the distillation stages and loaded by `AutoModelForTokenClassification`
and `pipeline("token-classification")` alike. Self-contained (see the configuration module).

`forward` returns a `StudentOutput`: a `TokenClassifierOutput` that, with
`output_projections=True`, also carries the projections stage 1 compares with the teacher's
hidden layers (one per entry of `config.teacher_layers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from transformers import BertConfig, BertModel, PreTrainedModel
from transformers.modeling_outputs import TokenClassifierOutput

from .configuration_xtremedistil import (
    BiLSTMStudentConfig,
    TransformerStudentConfig,
    XtremeDistilConfig,
)

IGNORE_INDEX = -100


@dataclass
class StudentOutput(TokenClassifierOutput):
    """`projections`: the student's states projected to the teacher's width, one tensor
    [batch, length, teacher_hidden_size] per matched teacher layer."""

    projections: tuple[torch.Tensor, ...] | None = None


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first `lengths[b]` steps, leaving padding in place; a gather, so
    it exports to ONNX (unlike pack_padded_sequence)."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    idx = torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


class XtremeDistilPreTrainedModel(PreTrainedModel):
    """The student contract: teacher ids in (mapped to compact rows by `id_map`), logits out;
    parameter groups named top-down for gradual unfreezing."""

    config: XtremeDistilConfig
    config_class = XtremeDistilConfig
    base_model_prefix = ""
    main_input_name = "input_ids"

    def _init_id_map(self, config: XtremeDistilConfig) -> None:
        self.register_buffer("id_map", torch.ones(int(config.teacher_vocab_size), dtype=torch.long))

    def set_vocabulary(self, kept_ids: Sequence[int], pad_id: int) -> None:
        """Map teacher ids to the compact vocabulary: 0 = pad, 1 = unknown, 2.. = `kept_ids`."""
        id_map = torch.ones_like(self.id_map)
        id_map[torch.as_tensor(kept_ids, dtype=torch.long)] = torch.arange(2, 2 + len(kept_ids))
        id_map[pad_id] = 0
        self.id_map.copy_(id_map)
        self.config.pad_token_id = int(pad_id)

    @property
    def labels(self) -> list[str]:
        return [self.config.id2label[i] for i in range(self.config.num_labels)]

    @property
    def groups(self) -> tuple[str, ...]:
        """Parameter-group names, top-down: the order of gradual unfreezing."""
        return tuple(self.group_parameters())

    def group_parameters(self) -> dict[str, list[nn.Parameter]]:
        raise NotImplementedError

    def aliases(self) -> dict[str, tuple[str, ...]]:
        """Names that stand for several groups in a stage's `train` list (e.g. `encoder` for
        every transformer layer), so one schedule fits every student type."""
        return {}

    def representation_only(self) -> tuple[str, ...]:
        """Groups only the representation loss reaches; gradual unfreezing under any other loss
        skips them (a sub-stage that adds only them would train nothing new)."""
        return ()

    def expand(self, names: Sequence[str]) -> tuple[str, ...]:
        aliases = self.aliases()
        out: list[str] = []
        for name in names:
            out += [g for g in aliases.get(name, (name,)) if g not in out]
        return tuple(out)

    def max_positions(self) -> int | None:
        """The longest window this student can read (None: any length)."""
        return None

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
        output_projections: bool = False, **kwargs: Any,
    ) -> StudentOutput:
        """`kwargs` (e.g. `token_type_ids` from tokenizers that emit them) are accepted and unused."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        logits, projections = self.tag(self.id_map[input_ids], attention_mask, output_projections)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)
        return StudentOutput(loss=loss, logits=logits, projections=projections)

    def tag(self, ids: torch.Tensor, mask: torch.Tensor, output_projections: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Logits (and, if asked, the projections) for compact-vocabulary `ids`."""
        raise NotImplementedError


class BiLSTMForTokenClassification(XtremeDistilPreTrainedModel):
    """XtremeDistil's BiLSTM: compact subword embeddings -> BiLSTM -> GELU projection to the
    teacher's hidden size (the representation-loss head) -> linear classifier."""

    config: BiLSTMStudentConfig
    config_class = BiLSTMStudentConfig

    def __init__(self, config: BiLSTMStudentConfig) -> None:
        super().__init__(config)
        e, h = int(config.embedding_dim), int(config.hidden_dim)
        self._init_id_map(config)
        self.embeddings = nn.Embedding(int(config.vocab_size), e, padding_idx=0)
        self.dropout = nn.Dropout(float(config.dropout))
        self.forward_lstm = nn.LSTM(e, h, batch_first=True)
        self.backward_lstm = nn.LSTM(e, h, batch_first=True)
        self.projection = nn.Sequential(nn.Linear(2 * h, int(config.teacher_hidden_size)), nn.GELU())
        self.classifier = nn.Linear(int(config.teacher_hidden_size), config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's own initialisation for every layer (the embeddings are replaced by a PCA
        of the teacher's when distillation builds the student)."""
        if isinstance(module, (nn.LSTM, nn.Linear, nn.Embedding)):
            module.reset_parameters()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def group_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {
            "classifier": list(self.classifier.parameters()),
            "projection": list(self.projection.parameters()),
            "encoder": list(self.forward_lstm.parameters()) + list(self.backward_lstm.parameters()),
            "embeddings": list(self.embeddings.parameters()),
        }

    def tag(self, ids: torch.Tensor, mask: torch.Tensor, output_projections: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        x = self.dropout(self.embeddings(ids))
        lengths = mask.sum(1)
        fwd, _ = self.forward_lstm(x)
        bwd, _ = self.backward_lstm(reverse_padded(x, lengths))
        h = self.dropout(torch.cat([fwd, reverse_padded(bwd, lengths)], dim=-1))
        projection = self.projection(h)
        return self.classifier(projection), (projection,) if output_projections else None


class TransformerForTokenClassification(XtremeDistilPreTrainedModel):
    """A small BERT over the compact vocabulary, a linear classifier on its last layer, and one
    learned projection per layer to the teacher's width for stage 1 (identity where the widths
    already match)."""

    config: TransformerStudentConfig
    config_class = TransformerStudentConfig

    def __init__(self, config: TransformerStudentConfig) -> None:
        super().__init__(config)
        h, t = int(config.hidden_dim), int(config.teacher_hidden_size)
        bert = BertConfig(
            vocab_size=int(config.vocab_size), hidden_size=h, num_hidden_layers=int(config.num_layers),
            num_attention_heads=int(config.num_heads), intermediate_size=int(config.ff_dim),
            max_position_embeddings=int(config.max_length), type_vocab_size=1, pad_token_id=0,
            hidden_dropout_prob=float(config.dropout), attention_probs_dropout_prob=float(config.dropout),
        )
        self._init_id_map(config)
        self.encoder = BertModel(bert, add_pooling_layer=False)
        self.projection = nn.ModuleList(nn.Identity() if h == t else nn.Linear(h, t) for _ in config.teacher_layers or [])
        self.dropout = nn.Dropout(float(config.dropout))
        self.classifier = nn.Linear(h, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialiser (the encoder's own `_init_weights`) for every layer."""
        self.encoder._init_weights(module)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.embeddings.word_embeddings

    def max_positions(self) -> int | None:
        return int(self.config.max_length)

    def _layer_groups(self) -> tuple[str, ...]:
        """`layerL-1` … `layer0`: top-down, as gradual unfreezing walks them."""
        return tuple(f"layer{i}" for i in reversed(range(int(self.config.num_layers))))

    def aliases(self) -> dict[str, tuple[str, ...]]:
        return {"encoder": self._layer_groups()}

    def representation_only(self) -> tuple[str, ...]:
        return ("projection",)

    def group_parameters(self) -> dict[str, list[nn.Parameter]]:
        groups = {"classifier": list(self.classifier.parameters())}
        for i in reversed(range(int(self.config.num_layers))):
            groups[f"layer{i}"] = list(self.encoder.encoder.layer[i].parameters())
        groups["projection"] = list(self.projection.parameters())
        groups["embeddings"] = list(self.encoder.embeddings.parameters())
        return groups

    def tag(self, ids: torch.Tensor, mask: torch.Tensor, output_projections: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        out = self.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=output_projections)
        projections = None
        if output_projections:
            states = out.hidden_states[1:]  # [0] is the embedding output
            projections = tuple(proj(states[i]) for i, proj in enumerate(self.projection))
        return self.classifier(self.dropout(out.last_hidden_state)), projections
