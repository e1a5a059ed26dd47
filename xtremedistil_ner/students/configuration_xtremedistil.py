"""The students' `transformers` configurations. This file and `modeling_xtremedistil.py` are
copied into every saved student folder (`register_for_auto_class`), so they import nothing
from this package: a folder loads with `trust_remote_code=True` where the package is absent.

Both students read the teacher's subword ids: `teacher_vocab_size` ids map onto `vocab_size`
compact embedding rows (0 = pad, 1 = unknown, 2.. = the pieces seen in distillation) through
the model's `id_map` buffer, so the teacher's tokenizer is the student's tokenizer.
"""

from __future__ import annotations

from transformers import PreTrainedConfig


class XtremeDistilConfig(PreTrainedConfig):
    """What every student shares: the compact vocabulary, the teacher it was distilled from
    and the teacher layers its stage-1 projections match."""

    vocab_size: int = 2
    teacher: str = ""
    teacher_vocab_size: int = 2
    teacher_hidden_size: int = 384
    teacher_layers: list[int] | None = None
    max_length: int = 128
    dropout: float = 0.1
    pad_token_id: int | None = None  # the teacher tokenizer's padding id (maps to compact row 0)


class BiLSTMStudentConfig(XtremeDistilConfig):
    """Compact embeddings (E) -> BiLSTM (H units per direction) -> GELU projection to the
    teacher's width -> linear classifier."""

    model_type = "xtremedistil-bilstm"

    embedding_dim: int = 300
    hidden_dim: int = 600


class TransformerStudentConfig(XtremeDistilConfig):
    """A BERT-shaped encoder of `num_layers` layers, width `hidden_dim`, over the compact
    vocabulary; `init` records how it was initialised (`teacher` layers, `pca` embeddings or `random`)."""

    model_type = "xtremedistil-transformer"

    num_layers: int = 4
    hidden_dim: int = 384
    num_heads: int = 6
    ff_dim: int = 1536
    init: str = "random"
