"""What the steps ask of a configured student: its scopes (one joint tagger or one per language),
its schedule, the teacher layers it matches, what its distillation depends on, its card."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from xdner_runtime.windows import Window

from ..card import student_card
from ..config import StageConfig, StudentConfig, counted, is_baseline, student_stages, to_dict
from ..data.conll import Sentence
from ..distiller import FINAL
from ..io import read_json, sha256_file, write_text
from ..layout import JOINT
from ..provenance import sentences_fingerprint
from ..students import CARD, XtremeDistilPreTrainedModel, student_type, vocabulary_ranking
from .. import cache as cache_mod
from .context import RunContext


def scopes(ctx: RunContext, scfg: StudentConfig) -> list[str | None]:
    """None: one joint student; else one tagger per language."""
    mode = scfg.mode or ctx.cfg.distil.mode
    if mode not in ("joint", "per_language"):  # the up-front check refuses it; a config edited since is refused here
        raise ValueError(f"{scfg.name}: mode must be 'joint' or 'per_language' (got {mode!r})")
    return [None] if mode == "joint" else list(ctx.corpus.languages)


def restrict(sentences: list[Sentence], windows: list[Window], lang: str | None) -> tuple[list[int], list[Sentence], list[Window]]:
    """The sentences of one scope (all for None) and their windows, renumbered to match."""
    idx = [i for i, s in enumerate(sentences) if lang is None or s.lang == lang]
    remap = {old: new for new, old in enumerate(idx)}
    wins = [dataclasses.replace(w, sent=remap[w.sent]) for w in windows if w.sent in remap]
    return idx, [sentences[i] for i in idx], wins


def stages_of(ctx: RunContext, scfg: StudentConfig) -> list[StageConfig]:
    """The student's schedule: its own stages or `distil.stages`, learning rates scaled."""
    return [dataclasses.replace(st, lr=st.lr * scfg.lr_scale) for st in student_stages(scfg, ctx.cfg)]


def teacher_layer(ctx: RunContext, model: torch.nn.Module) -> int:
    """The layer a single-projection student (the BiLSTM) matches: the middle by default."""
    n = model.config.num_hidden_layers
    layer = ctx.cfg.teacher.layer if ctx.cfg.teacher.layer is not None else n // 2
    if not 0 <= layer <= n:
        raise ValueError(f"teacher.layer={layer} is outside 0..{n} for this teacher")
    return layer


def teacher_layers(ctx: RunContext, scfg: StudentConfig, model: torch.nn.Module) -> list[int]:
    return student_type(scfg.type).teacher_layers(scfg, model.config.num_hidden_layers, teacher_layer(ctx, model))


def cache_layers(ctx: RunContext, model: torch.nn.Module) -> list[int]:
    """Every teacher layer some configured student matches, so one annotation serves all."""
    return sorted({g for scfg in ctx.students for g in teacher_layers(ctx, scfg, model)})


def inputs(ctx: RunContext, scfg: StudentConfig, lang: str | None) -> dict[str, Any]:
    """What a distilled student depends on: its architecture and schedule (config.py marks the
    keys that cannot change it), the training settings that change its weights, the transfer
    cache (which fingerprints the teacher) and the labeled and dev sentences of its scope."""
    spec = counted(scfg)
    in_scope = lambda sents: [s for s in sents if lang is None or s.lang == lang]  # noqa: E731
    if scfg.from_student:  # the joint student it starts from, by its weights
        spec["from_student"] = sha256_file(ctx.student_dir(scfg.from_student, None) / FINAL / "model.safetensors")
        spec["vocabulary"] = vocabulary_ranking()
    return {"student": spec, "stages": [dataclasses.asdict(st) for st in stages_of(ctx, scfg)],
            "batch_size": ctx.cfg.distil.batch_size, "max_grad_norm": ctx.cfg.distil.max_grad_norm,
            "scope": lang or JOINT, "seed": ctx.cfg.seed,
            "transfer_cache": read_json(ctx.cache_dir / cache_mod.MANIFEST).get("fingerprint"),
            "labeled_sentences": sentences_fingerprint(in_scope(ctx.corpus.train)),
            "dev_sentences": sentences_fingerprint(in_scope(ctx.corpus.dev))}


def write_card(ctx: RunContext, scfg: StudentConfig, lang: str | None, student: XtremeDistilPreTrainedModel,
               report: dict[str, Any] | None = None) -> None:
    """The student folder's model card: written when it is distilled, again with its test results."""
    if ctx.acc.is_main_process:
        spec = {**dataclasses.asdict(scfg), "stages": [dataclasses.asdict(st) for st in stages_of(ctx, scfg)]}  # as trained
        card = student_card(to_dict(ctx.cfg), spec, lang, student.config, student.num_parameters(), report,
                            baseline_of=ctx.students[0].name if is_baseline(scfg) else None)
        write_text(ctx.student_dir(scfg.name, lang) / FINAL / CARD, str(card))
