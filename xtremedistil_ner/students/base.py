"""The student contract: forward -> logits and the representation projection; parameter groups
ordered top-down for gradual unfreezing; save/load as a directory (safetensors + JSON, no pickle)
that also holds the teacher's tokenizer, so inference needs nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..io import ArtifactError, atomic_dir, check_manifest, write_json, write_manifest

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ..config import StudentConfig

CONFIG = "student.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer"
REGISTRY: dict[str, type["Student"]] = {}


class Student(nn.Module):
    """Subclasses set `kind`, build from `config` (a JSON-able dict), name their parameter
    groups top-down in `groups` and build themselves from a teacher in `from_teacher`."""

    kind: ClassVar[str]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        REGISTRY[cls.kind] = cls

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        self.register_buffer("id_map", torch.ones(int(config["teacher_vocab_size"]), dtype=torch.long))

    def set_vocabulary(self, kept_ids: np.ndarray, pad_id: int) -> None:
        """Map teacher ids to the compact vocabulary: 0 = pad, 1 = unknown, 2.. = `kept_ids`."""
        id_map = torch.ones_like(self.id_map)
        id_map[torch.as_tensor(kept_ids, dtype=torch.long)] = torch.arange(2, 2 + len(kept_ids))
        id_map[pad_id] = 0
        self.id_map.copy_(id_map)

    @classmethod
    def check_spec(cls, spec: "StudentConfig") -> None:
        """Raise ValueError for a config this student type cannot be built from; run before
        any long step, so a typo does not surface after the teacher has trained."""

    @classmethod
    def teacher_layers(cls, spec: "StudentConfig", num_teacher_layers: int, default_layer: int) -> list[int]:
        """The teacher layers (0 = embeddings .. N = last) whose hidden states stage 1 matches,
        one per entry of the forward's `projections`."""
        raise NotImplementedError

    @classmethod
    def from_teacher(cls, spec: "StudentConfig", teacher: "PreTrainedModel", base: dict[str, Any], kept_ids: np.ndarray, pad_id: int, seed: int) -> "Student":
        """A new student for `spec` whose config extends `base` (vocabulary, labels, teacher
        sizes and layers), initialised from `teacher` as far as the architecture allows."""
        raise NotImplementedError

    def max_positions(self) -> int | None:
        """The longest window this student can read (None: any length)."""
        return None

    @property
    def groups(self) -> tuple[str, ...]:
        """Parameter-group names, top-down: the order of gradual unfreezing."""
        raise NotImplementedError

    def aliases(self) -> dict[str, tuple[str, ...]]:
        """Names that stand for several groups in a stage's `train` list (e.g. `encoder` for
        every transformer layer), so one schedule fits every student type."""
        return {}

    def representation_only(self) -> tuple[str, ...]:
        """Groups only the representation loss reaches; gradual unfreezing under any other loss
        skips them (a sub-stage that adds only them would train nothing new)."""
        return ()

    def expand(self, names: "Sequence[str]") -> tuple[str, ...]:
        aliases = self.aliases()
        out: list[str] = []
        for name in names:
            out += [g for g in aliases.get(name, (name,)) if g not in out]
        return tuple(out)

    def group_parameters(self) -> dict[str, list[nn.Parameter]]:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self(input_ids, attention_mask)["logits"]

    @property
    def labels(self) -> list[str]:
        return list(self.config["labels"])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, path: Path, tokenizer: "PreTrainedTokenizerBase | None" = None) -> None:
        """Weights, config and (given `tokenizer`, the teacher's) tokenizer files in `TOKENIZER/`,
        written as one directory so a reader never sees a model without its tokenizer, with a
        manifest of every file's size and sha256 so `load` can tell a damaged copy."""
        with atomic_dir(Path(path)) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS))
            write_json(tmp / CONFIG, {"kind": self.kind, **self.config, "parameters": self.num_parameters()})
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp / TOKENIZER))
            write_manifest(tmp, kind=self.kind)

    @staticmethod
    def load(path: Path, map_location: str = "cpu") -> "Student":
        """Checked against its manifest first (sizes and sha256: students are small), so a
        truncated or altered file is an `ArtifactError` naming it, not a cryptic parse error."""
        path = Path(path)
        if not (path / CONFIG).exists():
            raise FileNotFoundError(f"{path}: not a student checkpoint (no {CONFIG})")
        check_manifest(path, what="student checkpoint")
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
        kind = config.pop("kind")
        config.pop("parameters", None)
        if kind not in REGISTRY:
            raise ValueError(f"{path / CONFIG}: unknown student kind {kind!r}; known: {sorted(REGISTRY)}")
        model = REGISTRY[kind](config)
        try:
            state = load_file(str(path / WEIGHTS), device=map_location)
        except SafetensorError as exc:  # a damaged file in a checkpoint written without a manifest
            raise ArtifactError(f"{path / WEIGHTS}: unreadable student weights ({exc}); the file is damaged: "
                                "delete the checkpoint and rerun the step that writes it") from exc
        model.load_state_dict(state)
        return model.eval()


def pca_embeddings(teacher_emb: torch.Tensor, kept_ids: np.ndarray, dim: int, seed: int = 0) -> torch.Tensor:
    """Rows for [pad, unk, *kept_ids]: the kept teacher embeddings projected on their top `dim`
    principal components (the paper's SVD compression), scaled to unit average variance;
    dimensions beyond the teacher's width are small random values."""
    sub = teacher_emb[torch.as_tensor(kept_ids, dtype=torch.long)].float()
    centered = sub - sub.mean(0, keepdim=True)
    k = min(dim, centered.shape[1], max(1, centered.shape[0] - 1))
    _, _, v = torch.linalg.svd(centered, full_matrices=False)
    proj = centered @ v[:k].T
    proj = proj / proj.std().clamp_min(1e-6)
    gen = torch.Generator().manual_seed(seed)
    out = torch.randn(len(kept_ids) + 2, dim, generator=gen) * 0.1
    out[0] = 0.0
    out[2:, :k] = proj
    return out
