"""distil: train the students through the distillation stages, each scope (the joint student, or
one tagger per language) in its own folder."""

from __future__ import annotations

import dataclasses
import shutil
import time
from typing import Any

import numpy as np
import torch
from xdner_runtime.windows import Window

from .. import cache as cache_mod
from ..config import StudentConfig
from ..distiller import FINAL, Distiller, StageData, is_distilled, recorded_inputs
from ..errors import StaleArtifactError
from ..io import remove_dir
from ..layout import CHECKPOINT, JOINT
from ..students import (LanguageCounts, Neighbours, XtremeDistilPreTrainedModel, load_student, map_to_nearest, piece_probabilities,
                        piece_scripts, specialise, specialised_vocabulary, student_type)
from .annotate import transfer_scan
from .base import Artifact, Verdict
from .context import RunContext
from .students import inputs, restrict, scopes, stages_of, teacher_layers, write_card


def token_counts(transfer: cache_mod.TransferCache, labeled: list[Window], size: int) -> np.ndarray:
    """How often each of the teacher's `size` ids occurs in these transfer and labeled windows."""
    counts = transfer.token_counts(size)
    if labeled:
        counts += np.bincount(np.concatenate([w.input_ids for w in labeled]), minlength=size)
    return counts


def build_student(ctx: RunContext, scfg: StudentConfig, kept_ids: np.ndarray, teacher: torch.nn.Module) -> XtremeDistilPreTrainedModel:
    base = {"vocab_size": len(kept_ids) + 2, "teacher_vocab_size": teacher.get_input_embeddings().weight.shape[0],
            "teacher_hidden_size": teacher.config.hidden_size, "teacher_layers": teacher_layers(ctx, scfg, teacher),
            "labels": ctx.corpus.labels.tags, "max_length": ctx.cfg.teacher.max_length, "teacher": ctx.cfg.teacher.model}
    student = student_type(scfg.type).from_teacher(scfg, teacher, base, kept_ids, ctx.pad_id, ctx.cfg.seed)
    if scfg.unseen == "nearest" and scfg.init != "random":
        unseen = torch.nonzero(student.id_map == 1).squeeze(1)
        special = torch.as_tensor(ctx.tokenizer.all_special_ids, dtype=torch.long)
        map_to_nearest(student, unseen[~torch.isin(unseen, special)], teacher.get_input_embeddings().weight.detach())
    return student


class Specialiser:
    """Taggers specialised from one joint student: the source, every language's piece counts and
    the nearest-piece lists are loaded, counted and searched once for all its languages, and for
    every student of the run specialised from the same source (schedules compared side by side
    pay the set-up once). Every tagger keeps pieces of the run's text (the pool); the ids it
    drops find their nearest kept piece in those lists."""

    def __init__(self, ctx: RunContext, source: str, labeled: dict[str, list[Window]], teacher_emb: torch.Tensor) -> None:
        self.source = load_student(ctx.student_dir(source, None) / FINAL)
        size = teacher_emb.shape[0]
        counts = {lang: token_counts(cache_mod.TransferCache(ctx.cache_dir, [lang]), lab, size) for lang, lab in labeled.items()}
        self.counts = LanguageCounts(counts, piece_scripts(ctx.tokenizer, size), piece_probabilities(ctx.tokenizer, size))
        pool = torch.as_tensor(np.nonzero(self.counts.run)[0], dtype=torch.long)
        self.neighbours = Neighbours(torch.nonzero(self.source.id_map.cpu() >= 2).squeeze(1), pool, teacher_emb)
        self.pad_id, self.teacher_emb = ctx.pad_id, teacher_emb

    def __call__(self, lang: str, share: float) -> tuple[np.ndarray, XtremeDistilPreTrainedModel]:
        kept = specialised_vocabulary(self.source, lang, self.counts, share)
        return kept, specialise(self.source, kept, self.pad_id, self.teacher_emb, self.neighbours)


class Distil:
    name = "distil"

    def run(self, ctx: RunContext) -> None:
        teacher = ctx.teacher
        fp = transfer_scan(ctx, teacher).fingerprint
        if not cache_mod.built_for(ctx.cache_dir, fp):
            raise StaleArtifactError(f"{ctx.cache_dir}: the transfer cache is missing, unfinished or was made by another "
                                     "teacher, transfer set or layer set; run `xdner annotate` first")
        cache_mod.check_shards(ctx.cache_dir, fp)  # every shard a student trains on, hashed once for all of them
        labeled, dev_windows = ctx.windows("train"), ctx.windows("dev")
        by_lang: dict[str, list[Window]] = {lang: [] for lang in ctx.corpus.languages}
        for w in labeled:
            by_lang[ctx.corpus.train[w.sent].lang].append(w)
        teacher_emb = teacher.get_input_embeddings().weight.detach()
        specialisers: dict[str, Specialiser] = {}  # by source student, until its last tagger is built
        last_use = {s.from_student: i for i, s in enumerate(ctx.students) if s.from_student}
        for i, scfg in enumerate(ctx.students):
            for lang in scopes(ctx, scfg):
                needs = inputs(ctx, scfg, lang)
                if self._done(ctx, scfg, lang, needs):
                    continue
                transfer = cache_mod.TransferCache(ctx.cache_dir, [lang] if lang else None, teacher_layers(ctx, scfg, teacher))
                lab = by_lang[lang] if lang else labeled
                t0 = time.time()
                if scfg.from_student:  # the first tagger from a source also pays for the set-up shared by all
                    if scfg.from_student not in specialisers:
                        specialisers[scfg.from_student] = Specialiser(ctx, scfg.from_student, by_lang, teacher_emb)
                    kept, student = specialisers[scfg.from_student](lang, scfg.keep_share)
                else:
                    kept = np.nonzero(token_counts(transfer, lab, teacher_emb.shape[0]))[0]
                    kept = kept[kept != ctx.pad_id]
                    student = build_student(ctx, scfg, kept, teacher)
                ctx.log(f"distil: {scfg.name} ({lang or JOINT}): {student.num_parameters() / 1e6:.2f}M parameters, vocabulary {len(kept) + 2}")
                _, dev_sents, dev_w = restrict(ctx.corpus.dev, dev_windows, lang)
                data = StageData(transfer, transfer.lengths(), lab, dev_sents, dev_w, ctx.pad_id, transfer.languages(),
                                 [ctx.corpus.train[w.sent].lang for w in lab])
                self._train(ctx, scfg, lang, student, data, needs, time.time() - t0)
            if scfg.from_student and last_use[scfg.from_student] == i:
                specialisers.pop(scfg.from_student, None)  # its counts over every language are large

    @staticmethod
    def _done(ctx: RunContext, scfg: StudentConfig, lang: str | None, needs: dict[str, Any]) -> bool:
        """Whether this scope is distilled from these inputs; work from other ones is removed under --overwrite."""
        out_dir = ctx.student_dir(scfg.name, lang)
        found = Artifact(out_dir, f"student {scfg.name!r}", recorded_inputs(out_dir), needs, is_distilled(out_dir))
        verdict = found.decide(ctx, f"distil: {scfg.name} ({lang or JOINT}) already distilled, skipping",
                               f"distil: {scfg.name} ({lang or JOINT}) was distilled with other settings; starting over (--overwrite)")
        if ctx.acc.is_main_process:
            if verdict is Verdict.REBUILD:
                shutil.rmtree(out_dir)
            elif verdict is Verdict.DONE:
                remove_dir(out_dir / CHECKPOINT)  # left by a kill between the final save and its removal
        ctx.acc.wait_for_everyone()
        return verdict is Verdict.DONE

    @staticmethod
    def _train(ctx: RunContext, scfg: StudentConfig, lang: str | None, student: XtremeDistilPreTrainedModel, data: StageData,
               needs: dict[str, Any], setup_seconds: float) -> None:
        ctx.start_trackers()
        distil_cfg = dataclasses.replace(ctx.cfg.distil, stages=stages_of(ctx, scfg))
        progress = Distiller(student, distil_cfg, data, ctx.student_dir(scfg.name, lang), ctx.acc, ctx.cfg.seed, ctx.tokenizer,
                             needs, trained=scfg.from_student is not None, setup_seconds=setup_seconds).run()
        write_card(ctx, scfg, lang, student)
        # The sub-stages' own times: right also when the distillation was resumed.
        timings = ctx.time(f"distil:{scfg.name}:{lang or JOINT}", progress["setup_seconds"] + sum(h["seconds"] for h in progress["history"]))
        # Every student's time, also those distilled by earlier runs.
        ctx.time("distil", sum(v for k, v in timings.items() if k.startswith("distil:")))
