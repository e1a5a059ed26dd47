"""Student types by name, and a student folder's save/load.

A student *type* (`bilstm`, `transformer`) pairs a `transformers` config and model class (in
`modeling_xtremedistil`) with what distillation needs to build one: checking a config entry,
the teacher layers stage 1 matches, and initialising the model from the teacher. Types are
registered by name (`@register`); a second type under a taken name is an error.

A student folder is what `save_pretrained` writes (config.json, model.safetensors, the two
model-code files for `trust_remote_code`), the teacher's tokenizer at the top level, a model
card (README.md) and `manifest.json` with every other file's size and sha256, checked on load.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

import numpy as np
import torch
from safetensors import SafetensorError
from transformers import AutoModelForTokenClassification
from transformers.utils import logging as hf_logging

from ..config import ConfigError
from ..io import MANIFEST, ArtifactError, atomic_dir, check_manifest, read_json, write_manifest
from .configuration_xtremedistil import XtremeDistilConfig
from .modeling_xtremedistil import XtremeDistilPreTrainedModel

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ..config import StudentConfig

CARD = "README.md"  # the model card: left out of the manifest, so users may edit it before sharing
REGISTRY: dict[str, type["StudentType"]] = {}


def register(name: str):
    """Class decorator: make a `StudentType` available as `type: NAME` in a run config."""

    def wrap(cls: type["StudentType"]) -> type["StudentType"]:
        if name in REGISTRY:
            raise ValueError(f"student type {name!r} is registered twice ({REGISTRY[name].__qualname__}, {cls.__qualname__})")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return wrap


def student_type(name: str) -> type["StudentType"]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown type {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


NEAREST_BLOCK = 1 << 24


class StudentType:
    """How distillation builds one kind of student."""

    name: ClassVar[str]
    config_class: ClassVar[type[XtremeDistilConfig]]
    model_class: ClassVar[type[XtremeDistilPreTrainedModel]]

    @classmethod
    def check_spec(cls, spec: "StudentConfig") -> None:
        """Raise ConfigError for a config entry this type cannot be built from; run before
        any long step, so a typo does not surface after the teacher has trained."""

    @classmethod
    def check_teacher(cls, spec: "StudentConfig", teacher_config: dict[str, Any]) -> None:
        """Raise ConfigError where `spec` cannot be built from this teacher (its config.json's
        keys); run up front when the teacher's config is on disk, and again when it is built."""

    @classmethod
    def teacher_layers(cls, spec: "StudentConfig", num_teacher_layers: int, default_layer: int) -> list[int]:
        """The teacher layers (0 = embeddings .. N = last) whose hidden states stage 1 matches,
        one per projection the model returns."""
        raise NotImplementedError

    @classmethod
    def sizes(cls, spec: "StudentConfig") -> dict[str, Any]:
        """The config sizes of the model `spec` asks for (what `from_teacher` builds, and what
        the up-front check counts its parameters from)."""
        raise NotImplementedError

    @classmethod
    def probe_sizes(cls, spec: "StudentConfig") -> dict[str, Any]:
        """Config sizes for a model with `spec`'s parameter groups but the smallest widths, on
        which the up-front check tries a stage's `train` list at no cost."""
        raise NotImplementedError

    @classmethod
    def from_teacher(cls, spec: "StudentConfig", teacher: "PreTrainedModel", base: dict[str, Any], kept_ids: np.ndarray, pad_id: int, seed: int) -> XtremeDistilPreTrainedModel:
        """A new student for `spec` whose config extends `base` (vocabulary, labels, teacher
        sizes and layers), initialised from `teacher` as far as the architecture allows."""
        raise NotImplementedError


def config_kwargs(base: dict[str, Any]) -> dict[str, Any]:
    """`base` (the pipeline's vocabulary, teacher and label facts) as config keyword arguments."""
    labels = list(base["labels"])
    rest = {k: v for k, v in base.items() if k != "labels"}
    return {**rest, "id2label": dict(enumerate(labels)), "label2id": {t: i for i, t in enumerate(labels)}}


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Saving and loading a student takes milliseconds: no progress bars for it in a run's log."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def save_student(model: XtremeDistilPreTrainedModel, path: Path, tokenizer: "PreTrainedTokenizerBase | None" = None, card: str | None = None) -> None:
    """Write the student folder atomically (a reader never sees a model without its tokenizer).
    The tokenizer's `model_max_length` is set to the windows the student was trained on, so
    `pipeline(..., stride=...)` cuts long texts the same way."""
    with atomic_dir(Path(path)) as tmp, _no_progress_bars():
        model.save_pretrained(str(tmp))
        if tokenizer is not None:
            caller_max = tokenizer.model_max_length
            try:
                tokenizer.model_max_length = int(model.config.max_length)
                tokenizer.save_pretrained(str(tmp))
            finally:
                tokenizer.model_max_length = caller_max
        if card is not None:
            (tmp / CARD).write_text(card, encoding="utf-8")
        files = sorted(p.name for p in tmp.iterdir() if p.is_file() and p.name not in (CARD, MANIFEST))
        write_manifest(tmp, files=files, model_type=model.config.model_type, parameters=model.num_parameters())


def load_student(path: Path | str, device: str | torch.device = "cpu") -> XtremeDistilPreTrainedModel:
    """A student folder, checked against its manifest first (sizes and sha256: students are
    small), so a truncated or altered file is an `ArtifactError` naming it. Our own model code
    is used: a folder's copied code never runs from here."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a student folder (no config.json)")
    check_manifest(path, what="student folder")
    _refuse_foreign(path)
    try:
        with _no_progress_bars():
            model = AutoModelForTokenClassification.from_pretrained(str(path), trust_remote_code=False)
    except SafetensorError as exc:  # a damaged file in a folder without a manifest (e.g. saved by another tool)
        raise ArtifactError(f"{path / 'model.safetensors'}: unreadable student weights ({exc}); the file is damaged: "
                            "delete the folder and rerun the step that writes it") from exc
    return model.to(device).eval()


PICKLES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")  # weight files `torch.load` reads: pickles


def _refuse_foreign(path: Path) -> None:
    """Refuse, before transformers reads it, a folder that is no student: its config names
    another model type (with custom code through `auto_map`, which never runs here), or its
    weights are not model.safetensors (loading a pickle can run code)."""
    model_type = read_json(path / "config.json").get("model_type")
    ours = sorted(t.config_class.model_type for t in REGISTRY.values())
    if model_type not in ours:
        raise ArtifactError(f"{path}: a {model_type!r} model, not an xtremedistil student ({' or '.join(ours)}); "
                            "a folder's own model code (auto_map) is never run")
    if not (path / "model.safetensors").is_file():
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLES)
        raise ArtifactError(f"{path}: no model.safetensors ({', '.join(pickles) or 'no weights at all'}); pickled weights "
                            "are refused, as loading a pickle can run code")


def specialise(source: XtremeDistilPreTrainedModel, kept_ids: np.ndarray, pad_id: int, teacher_embeddings: torch.Tensor,
               neighbours: Neighbours | None = None) -> XtremeDistilPreTrainedModel:
    """A copy of `source` whose compact vocabulary is only `kept_ids` (teacher ids, each a piece
    `source` knows), with their embedding rows and every other weight copied. Each other teacher
    id `source` had a row for maps to the row of its nearest kept piece (cosine in the teacher's
    embedding space) rather than to unknown: it costs no parameters, only `id_map` entries."""
    kept = torch.as_tensor(np.asarray(kept_ids), dtype=torch.long)
    old_map = source.id_map.cpu()
    if bool((old_map[kept] < 2).any()):
        raise ValueError("specialise: some kept pieces are unknown to the source student; it can only keep pieces it knows")
    config = type(source.config).from_dict(source.config.to_dict())
    config.vocab_size = len(kept) + 2
    model = type(source)(config)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    emb_key = next(n for n, p in source.named_parameters() if p is source.get_input_embeddings().weight)
    state[emb_key] = torch.cat([state[emb_key][:2], state[emb_key][old_map[kept]]])
    model.load_state_dict(state)  # id_map too (same shape); set_vocabulary rewrites it
    model.set_vocabulary(kept.numpy(), pad_id)
    known = torch.nonzero(old_map >= 2).squeeze(1)
    map_to_nearest(model, known[model.id_map[known] < 2], teacher_embeddings, neighbours)
    return model.eval()


class Neighbours:
    """Each of `ids`' `k` nearest pieces among `pool` (cosine in the teacher's embedding space), most
    similar first, found once for every tagger specialised from one student: a tagger keeps part
    of `pool`, and an id's nearest kept piece is the first kept one in its list, with none of the
    tagger's own search over all kept pieces (about 95 s a language at 48 languages' vocabulary).
    An id none of whose `k` neighbours is kept is searched in full, so the answer is the same."""

    def __init__(self, ids: torch.Tensor, pool: torch.Tensor, teacher_embeddings: torch.Tensor, k: int = 32) -> None:
        k = min(k, len(pool))
        self.ids = torch.sort(ids).values
        self.near = torch.empty(len(self.ids), k, dtype=torch.long)
        self.sims = torch.empty(len(self.ids), k)
        for rows, sims in _similarities(teacher_embeddings, self.ids, pool):
            self.sims[rows], at = sims.topk(k, dim=-1)
            self.near[rows] = pool[at]

    def resolve(self, model: XtremeDistilPreTrainedModel, ids: torch.Tensor) -> torch.Tensor:
        """Map the `ids` whose nearest kept piece is in their list (ties: the lower id, as a full
        search picks); return the others."""
        pos = torch.searchsorted(self.ids, ids).clamp(max=len(self.ids) - 1)
        listed = self.ids[pos] == ids
        near, sims = self.near[pos[listed]], self.sims[pos[listed]]
        kept = model.id_map[near] >= 2
        best = torch.where(kept, sims, -torch.inf).max(-1, keepdim=True).values
        choice = torch.where(kept & (sims == best), near, torch.iinfo(torch.long).max).min(-1).values
        found = kept.any(-1)
        model.id_map[ids[listed][found]] = model.id_map[choice[found]]
        return torch.cat([ids[~listed], ids[listed][~found]])


def map_to_nearest(model: XtremeDistilPreTrainedModel, ids: torch.Tensor, teacher_embeddings: torch.Tensor,
                   neighbours: Neighbours | None = None) -> None:
    """Point teacher `ids` at the compact row of the kept piece nearest each of them (cosine in
    the teacher's embedding space), in place: ids the student has no row for read a related
    piece's row instead of the unknown one, at no cost in parameters. `neighbours` (whose pool
    must hold every kept piece) answers most ids without a full search."""
    kept = torch.nonzero(model.id_map >= 2).squeeze(1)  # every id that reads a row of its own or another's
    if neighbours is not None and len(ids) and len(kept):
        ids = neighbours.resolve(model, ids)
    if not len(ids) or not len(kept):
        return
    for rows, sims in _similarities(teacher_embeddings, ids, kept):
        model.id_map[ids[rows]] = model.id_map[kept[sims.argmax(-1)]]


def _similarities(teacher_embeddings: torch.Tensor, ids: torch.Tensor, pool: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    """Cosine similarities of `ids`' embeddings to `pool`'s a block at a time (64 MB however large
    the vocabulary), rows normalised as read: no second copy of the teacher's embeddings."""
    emb = teacher_embeddings.detach().cpu()
    targets = _unit(emb[pool]).T.contiguous()
    chunk = max(1, NEAREST_BLOCK // len(pool))
    for i in range(0, len(ids), chunk):
        yield slice(i, i + chunk), _unit(emb[ids[i : i + chunk]]) @ targets


def _unit(rows: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(rows.float(), dim=-1)


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
