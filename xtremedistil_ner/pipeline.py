"""The pipeline's steps over one output directory: teach -> annotate -> distil -> evaluate.
Each step writes its artifacts atomically and a rerun skips what is already complete."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import sys
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from filelock import FileLock, Timeout
from xdner_runtime.windows import Window

from . import cache as cache_mod
from .card import student_card
from .checks import budget_warning, require_valid
from .config import (
    AnnotateConfig,
    ConfigError,
    RunConfig,
    StageConfig,
    StudentConfig,
    is_baseline,
    run_students,
    save_config,
    student_stages,
    to_dict,
)
from .data.conll import Sentence
from .data.corpus import Corpus, build_corpus
from .distil import (
    FINAL,
    NOTHING,
    Distiller,
    StageData,
    is_distilled,
    recorded_inputs,
)
from .encoding import encode, encode_stream, special_ids
from .errors import RunInUseError, StaleArtifactError, XdnerError
from .evaluate import logits_fn, predict_tags, score
from .figures import curve_points
from .io import MANIFEST, ArtifactError, check_manifest, read_json, settled_dir, sha256_file, sweep_leftovers, write_json, write_text
from .languages import LanguageConfigError, load_language
from .latency import make_batch, measure
from .layout import JOINT, PROGRESS, TEACHER_MANIFEST, RunLayout
from .provenance import changed_keys, check_inputs, flatten, must_rebuild, sentences_fingerprint
from .report import write_report
from .students import (
    CARD,
    StudentType,
    XtremeDistilPreTrainedModel,
    Neighbours,
    load_student,
    map_to_nearest,
    specialise,
    specialised_vocabulary,
    student_type,
)
from .teacher import (
    RETRAIN,
    count_parameters,
    fine_tune,
    is_trained,
    load_teacher,
    load_tokenizer,
    resolve_precision,
)
from .threads import configure_threads

logger = logging.getLogger(__name__)

STEPS = ("teach", "annotate", "distil", "evaluate")
LOCK = ".xdner.lock"
EVAL_RECORD = 2  # what a model's eval/NAME.json holds (2: test_types too); an older record is recomputed
ARCHITECTURE = ("embedding_dim", "hidden_dim", "num_layers", "num_heads", "ff_dim", "init")  # reported per student


def flat_scalars(tree: dict[str, Any]) -> dict[str, Any]:
    """The config as `a.b.c: value` scalars (lists as JSON), the form trackers take hyper-parameters in."""
    return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in flatten(tree).items() if v is not None}


def make_accelerator(cfg: RunConfig) -> Accelerator:
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # Several processes and no CUDA (torchrun / accelerate launch on CPU machines): Accelerate only
    # sets up gloo when told to run on CPU; otherwise every process would act as the only one.
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(mixed_precision=mp, cpu=cpu, log_with=cfg.log_with or None,
                       project_dir=str(Path(cfg.output_dir) / "logs") if cfg.log_with else None)


class Run(RunLayout):
    """Lazily loads what each step needs; everything lands in `cfg.output_dir`."""

    def __init__(self, cfg: RunConfig, accelerator: Accelerator | None = None, command: str | None = None, overwrite: bool = False) -> None:
        require_valid(cfg, accelerator.num_processes if accelerator else int(os.environ.get("WORLD_SIZE", "1")))
        self.cfg = cfg
        configure_threads(cfg.threads)  # torch is loaded by now: an explicit count only (the CLI set the rest)
        self.overwrite = overwrite  # rebuild artifacts made from other settings instead of refusing
        self.root = Path(cfg.output_dir)
        self.acc = accelerator or make_accelerator(cfg)
        self.command = command or shlex.join(sys.orig_argv)  # the interpreter's own command line
        self._verified_teacher: dict[str, Any] | None = None  # the teacher record whose files were last verified
        self._scan: cache_mod.Scan | None = None  # the transfer set's fingerprint pass, once per process
        set_seed(cfg.seed)

    @property
    def students(self) -> list[StudentConfig]:
        """The configured students and the gold-only baseline."""
        return run_students(self.cfg)

    @cached_property
    def corpus(self) -> Corpus:
        return build_corpus(self.cfg.data, self.cfg.languages, self.cfg.seed)

    @cached_property
    def tokenizer(self):
        self._require_teacher()
        return load_tokenizer(str(self.teacher_dir), self.cfg.teacher.trust_remote_code)

    @property
    def pad_id(self) -> int:
        return special_ids(self.tokenizer)[2]

    def windows(self, split: str) -> list[Window]:
        sentences = getattr(self.corpus, split)
        label2id = self.corpus.labels.label2id if split == "train" else None
        return encode(sentences, self.tokenizer, self.cfg.teacher.max_length, label2id)

    @cached_property
    def teacher_inputs(self) -> dict[str, Any]:
        """What the fine-tuned teacher depends on (its evaluation batch size, how often it is
        checkpointed and the layer the students match do not change it, nor does `min_steps`
        where the data is large enough for one pass per epoch)."""
        c = self.corpus
        unused = ("eval_batch_size", "layer", "checkpoint_every") + (("min_steps",) if self.cfg.teacher.passes_for(len(c.train)) == 1 else ())
        teacher = {k: v for k, v in to_dict(self.cfg)["teacher"].items() if k not in unused}
        return {"teacher": teacher, "seed": self.cfg.seed, "labels": list(c.labels.tags),
                "train_sentences": sentences_fingerprint(c.train), "dev_sentences": sentences_fingerprint(c.dev)}

    def _verify_teacher(self) -> dict[str, Any]:
        """The fine-tuned teacher's record, its files checked against it (sizes and sha256) once
        per record, so the step's loads skip the hashing: a flipped byte or an edited config is
        named as damaged, never trained on or blamed on settings."""
        record = self.teacher_record()
        if record != self._verified_teacher:
            check_manifest(self.teacher_dir, TEACHER_MANIFEST, what="teacher checkpoint", remedy=RETRAIN)
            self._verified_teacher = record
        return record

    def _require_teacher(self) -> None:
        """An intact fine-tuned teacher made from this config's settings and data."""
        if not is_trained(self.teacher_dir):
            raise XdnerError(f"{self.teacher_dir}: no fine-tuned teacher yet; run `xdner teach` first")
        record = self._verify_teacher()
        check_inputs(self.teacher_dir, "fine-tuned teacher", record.get("inputs"), self.teacher_inputs)
        if record["best_dev_macro_f1"] <= 0:
            raise XdnerError(
                f"{self.teacher_dir}: the fine-tuned teacher scored 0.00 macro F1 on dev after {len(record.get('history', []))} "
                "epoch(s): it learned nothing to distil. Train it longer (teacher.min_steps, teacher.epochs) or with a higher "
                "teacher.lr, or "
                "check the labels, then rerun `xdner teach --overwrite`")

    def _time(self, step: str, seconds: float) -> dict[str, float]:
        """Record a step's wall time in `timings.json`; returns every time recorded so far."""
        timings = read_json(self.timings_path) if self.timings_path.exists() else {}
        timings[step] = round(seconds, 1)
        if self.acc.is_main_process:
            write_json(self.timings_path, timings)
        return timings

    def fine_tuned_teacher(self) -> torch.nn.Module:
        """The fine-tuned teacher, verified by `_require_teacher`."""
        self._require_teacher()
        return load_teacher(str(self.teacher_dir), self.corpus.labels, self.cfg.teacher.trust_remote_code, checksums=False)[0]

    def _intact_teacher(self) -> bool:
        """Whether a fine-tuned teacher is there with its record and files as written; a damaged
        one is refused, or under --overwrite trained again."""
        try:
            if not is_trained(self.teacher_dir):
                return False
            self._verify_teacher()
            return True
        except ArtifactError as exc:
            if not self.overwrite:
                raise
            self._log(f"teach: {exc.problem}; training it again (--overwrite)")
            return False

    # -- steps -------------------------------------------------------------------------------
    def teach(self) -> None:
        if self._intact_teacher():
            recorded = self.teacher_record().get("inputs")
            if not must_rebuild(self.teacher_dir, "fine-tuned teacher", recorded, self.teacher_inputs, self.overwrite):
                self._log(f"teach: fine-tuned teacher found in {self.teacher_dir}, skipping")
                return
            self._log(f"teach: {self.teacher_dir} was trained with other settings; retraining it (--overwrite)")
        state = settled_dir(self.teacher_resume_dir)
        if state is not None and (state / PROGRESS).exists():
            recorded = read_json(state / PROGRESS).get("inputs")
            if must_rebuild(state, "teacher's mid-training state", recorded, self.teacher_inputs, self.overwrite):
                self._log(f"teach: {state} was saved with other settings; starting over (--overwrite)")
                if self.acc.is_main_process:
                    shutil.rmtree(state, ignore_errors=True)
        self.acc.wait_for_everyone()
        self.start_trackers()
        c = self.corpus
        summary = fine_tune(self.cfg.teacher, c.train, c.dev, c.labels, self.teacher_dir, self.acc, self.cfg.seed,
                            self.teacher_resume_dir, self.teacher_inputs)
        self._time("teach", summary["train_seconds"])  # over every attempt, as a resumed distillation counts it
        self._require_teacher()  # one that learned nothing stops the run here

    def teacher_layer(self, model: torch.nn.Module) -> int:
        """The layer a single-projection student (the BiLSTM) matches: the middle by default."""
        n = model.config.num_hidden_layers
        layer = self.cfg.teacher.layer if self.cfg.teacher.layer is not None else n // 2
        if not 0 <= layer <= n:
            raise ValueError(f"teacher.layer={layer} is outside 0..{n} for this teacher")
        return layer

    def student_class(self, scfg: StudentConfig) -> type[StudentType]:
        try:
            return student_type(scfg.type)
        except ConfigError as exc:
            raise ConfigError(f"student {scfg.name!r}: {exc}") from None

    def student_layers(self, scfg: StudentConfig, model: torch.nn.Module) -> list[int]:
        return self.student_class(scfg).teacher_layers(scfg, model.config.num_hidden_layers, self.teacher_layer(model))

    def cache_layers(self, model: torch.nn.Module) -> list[int]:
        """Every teacher layer some configured student matches, so one annotation serves all."""
        return sorted({g for scfg in self.students for g in self.student_layers(scfg, model)})

    def transfer_pairs(self) -> Iterator[tuple[Window, str]]:
        """The transfer set's windows with their languages, encoded as they are read: a pass
        over it holds one batch of sentences, however large the set."""
        for win, sent in encode_stream(self.corpus.transfer, self.tokenizer, self.cfg.teacher.max_length):
            yield win, sent.lang

    def transfer_scan(self, model: torch.nn.Module) -> cache_mod.Scan:
        """The cache fingerprint for this teacher and transfer set, with the set's sizes: one pass, once per process."""
        if self._scan is None:
            teacher_id = sha256_file(self.teacher_dir / "model.safetensors")
            tok_file = self.teacher_dir / "tokenizer.json"
            tokenizer_id = sha256_file(tok_file) if tok_file.exists() else type(self.tokenizer).__name__
            self._scan = cache_mod.scan(teacher_id, tokenizer_id, self.transfer_pairs(), self.cache_layers(model),
                                        self.cfg.teacher.max_length, self.annotate_format)
        return self._scan

    @property
    def annotate_format(self) -> AnnotateConfig:
        """The annotate settings with `auto` precision resolved for this run's device (what the cache records)."""
        return dataclasses.replace(self.cfg.annotate, precision=resolve_precision(self.cfg.annotate.precision, self.acc.device))

    def annotate(self) -> None:
        model = self.fine_tuned_teacher()
        transfer = self.transfer_scan(model)
        if cache_mod.is_complete(self.cache_dir, transfer.fingerprint):
            self._log(f"annotate: transfer cache in {self.cache_dir} is complete and matches, skipping")
            return
        self._replace_cache(transfer.fingerprint)
        t0 = time.time()
        cache_mod.annotate(model, self.transfer_pairs, transfer, self.cache_layers(model), self.cache_dir, self.pad_id,
                           self.cfg.annotate.batch_size, self.acc, fmt=self.annotate_format)
        self._time("annotate", time.time() - t0)

    def _replace_cache(self, fp: str) -> None:
        """A finished cache made from other inputs is rebuilt only with --overwrite (students
        distilled from it would be refused anyway); a half-written one just continues."""
        path = self.cache_dir / cache_mod.MANIFEST
        manifest = read_json(path) if path.exists() else {"fingerprint": fp}
        if manifest.get("fingerprint") == fp:
            return
        recorded = manifest.get("format", cache_mod.LEGACY_FORMAT)
        changed = changed_keys({"annotate": recorded}, {"annotate": cache_mod.stored_format(self.annotate_format)})
        what = "; ".join(changed) if changed else "the teacher, the transfer set or the layers the students match"
        if not self.overwrite:
            raise StaleArtifactError(f"{self.cache_dir}: the transfer cache there was made from other inputs ({what}); rerun "
                                     "with --overwrite to rebuild it (and the students distilled from it), or choose another --output-dir")
        self._log(f"annotate: {self.cache_dir} was made from other inputs ({what}); rebuilding it (--overwrite)")

    def mode_of(self, scfg: StudentConfig) -> str:
        return scfg.mode or self.cfg.distil.mode

    def _scopes(self, scfg: StudentConfig) -> list[str | None]:
        """None: one joint student; else one tagger per language."""
        mode = self.mode_of(scfg)
        if mode == "joint":
            return [None]
        if mode == "per_language":
            return list(self.corpus.languages)
        raise ValueError(f"{scfg.name}: mode must be 'joint' or 'per_language' (got {mode!r})")

    def build_student(self, scfg: StudentConfig, kept_ids: np.ndarray, teacher: torch.nn.Module) -> XtremeDistilPreTrainedModel:
        base = {
            "vocab_size": len(kept_ids) + 2,
            "teacher_vocab_size": teacher.get_input_embeddings().weight.shape[0],
            "teacher_hidden_size": teacher.config.hidden_size,
            "teacher_layers": self.student_layers(scfg, teacher),
            "labels": self.corpus.labels.tags,
            "max_length": self.cfg.teacher.max_length,
            "teacher": self.cfg.teacher.model,
        }
        student = self.student_class(scfg).from_teacher(scfg, teacher, base, kept_ids, self.pad_id, self.cfg.seed)
        if scfg.unseen == "nearest" and scfg.init != "random":
            unseen = torch.nonzero(student.id_map == 1).squeeze(1)
            special = torch.as_tensor(self.tokenizer.all_special_ids, dtype=torch.long)
            map_to_nearest(student, unseen[~torch.isin(unseen, special)], teacher.get_input_embeddings().weight.detach())
        return student

    def distil(self) -> None:
        teacher = self.fine_tuned_teacher()
        fp = self.transfer_scan(teacher).fingerprint
        if not cache_mod.built_for(self.cache_dir, fp):
            raise StaleArtifactError(f"{self.cache_dir}: the transfer cache is missing, unfinished or was made by another "
                                     "teacher, transfer set or layer set; run `xdner annotate` first")
        cache_mod.check_shards(self.cache_dir, fp)  # every shard a student trains on, hashed once for all of them
        labeled = self.windows("train")
        dev_windows = self.windows("dev")
        train_langs = [self.corpus.train[w.sent].lang for w in labeled]
        teacher_emb = teacher.get_input_embeddings().weight.detach()
        for scfg in self.students:
            source = None  # the joint student a specialised one starts from, loaded once for all its languages
            for lang in self._scopes(scfg):
                out_dir, scope_name = self.student_dir(scfg.name, lang), lang or JOINT
                inputs = self.student_inputs(scfg, lang)
                if self._stale_student(scfg, lang, inputs):
                    self._log(f"distil: {scfg.name} ({scope_name}) was distilled with other settings; starting over (--overwrite)")
                    shutil.rmtree(out_dir)
                if is_distilled(out_dir):
                    self._log(f"distil: {scfg.name} ({scope_name}) already distilled, skipping")
                    continue
                scope = [lang] if lang else None
                transfer = cache_mod.TransferCache(self.cache_dir, scope, self.student_layers(scfg, teacher))
                lab = [w for w, l in zip(labeled, train_langs) if lang is None or l == lang]
                _, dev_sents, dev_w = restrict(self.corpus.dev, dev_windows, lang)
                size = teacher_emb.shape[0]
                counts = self._token_counts(transfer, lab, size)
                kept = np.nonzero(counts)[0]
                kept = kept[kept != self.pad_id]
                if scfg.from_student:
                    if source is None:
                        source = load_student(self.student_dir(scfg.from_student, None) / FINAL)
                        run_counts = self._token_counts(cache_mod.TransferCache(self.cache_dir), labeled, size)
                        # Every tagger keeps pieces of the run's text (the pool); the ids it drops find
                        # their nearest kept piece in lists searched once for all its languages.
                        pool = torch.as_tensor(np.nonzero(run_counts)[0], dtype=torch.long)
                        neighbours = Neighbours(torch.nonzero(source.id_map.cpu() >= 2).squeeze(1), pool, teacher_emb)
                    kept = specialised_vocabulary(source, counts, run_counts, scfg.keep_share)
                    student = specialise(source, kept, self.pad_id, teacher_emb, neighbours)
                else:
                    student = self.build_student(scfg, kept, teacher)
                self._log(f"distil: {scfg.name} ({scope_name}): {student.num_parameters() / 1e6:.2f}M parameters, vocabulary {len(kept) + 2}")
                data = StageData(transfer, transfer.lengths(), lab, dev_sents, dev_w, self.pad_id)
                distil_cfg = dataclasses.replace(self.cfg.distil, stages=self.stages_of(scfg))
                self.start_trackers()
                progress = Distiller(student, distil_cfg, data, out_dir, self.acc, self.cfg.seed, self.tokenizer, inputs,
                                     trained=scfg.from_student is not None).run()
                self.write_card(scfg, lang, student)
                # The sub-stages' own times: right also when the distillation was resumed.
                timings = self._time(f"distil:{scfg.name}:{scope_name}", sum(h["seconds"] for h in progress["history"]))
                # Every student's time, also those distilled by earlier runs.
                self._time("distil", sum(v for k, v in timings.items() if k.startswith("distil:")))

    @staticmethod
    def _token_counts(transfer: cache_mod.TransferCache, labeled: list[Window], size: int) -> np.ndarray:
        """How often each of the teacher's `size` ids occurs in these transfer and labeled windows."""
        counts = transfer.token_counts(size)
        if labeled:
            counts += np.bincount(np.concatenate([w.input_ids for w in labeled]), minlength=size)
        return counts

    def stages_of(self, scfg: StudentConfig) -> list[StageConfig]:
        """The student's schedule: its own stages or `distil.stages`, learning rates scaled."""
        return [dataclasses.replace(st, lr=st.lr * scfg.lr_scale) for st in student_stages(scfg, self.cfg)]

    def student_inputs(self, scfg: StudentConfig, lang: str | None) -> dict[str, Any]:
        """What a distilled student depends on: its architecture and schedule, the training
        settings that change its weights, the transfer cache (which fingerprints the teacher)
        and the labeled and dev sentences of its scope."""
        idle = {"keep_share"} if scfg.from_student is None else set()  # keys that cannot change this student
        if scfg.init == "random" or scfg.from_student:
            idle.add("unseen")  # a random student reads unknown; a specialised one its source's mapping
        spec = {k: v for k, v in dataclasses.asdict(scfg).items() if k not in ("name", "stages", "lr_scale", "mode", *idle)}  # mode: the scope
        in_scope = lambda sents: [s for s in sents if lang is None or s.lang == lang]  # noqa: E731
        if scfg.from_student:  # the joint student it starts from, by its weights
            spec["from_student"] = sha256_file(self.student_dir(scfg.from_student, None) / FINAL / "model.safetensors")
        return {"student": spec, "stages": [dataclasses.asdict(st) for st in self.stages_of(scfg)],
                "batch_size": self.cfg.distil.batch_size, "max_grad_norm": self.cfg.distil.max_grad_norm,
                "scope": lang or JOINT, "seed": self.cfg.seed,
                "transfer_cache": read_json(self.cache_dir / cache_mod.MANIFEST).get("fingerprint"),
                "labeled_sentences": sentences_fingerprint(in_scope(self.corpus.train)),
                "dev_sentences": sentences_fingerprint(in_scope(self.corpus.dev))}

    def _stale_student(self, scfg: StudentConfig, lang: str | None, inputs: dict[str, Any]) -> bool:
        """True if the student's folder holds work from other settings and `--overwrite` allows
        starting over; refuses (naming what changed) without it. Nothing there: not stale."""
        recorded = recorded_inputs(self.student_dir(scfg.name, lang))
        return recorded is not NOTHING and must_rebuild(self.student_dir(scfg.name, lang), f"student {scfg.name!r}", recorded,
                                                        inputs, self.overwrite)

    def evaluate(self) -> dict[str, Any]:
        """Test F1 per language, size and latency of the teacher and every student. A model's
        result is kept in `eval/NAME.json` keyed by its weights and the test data, so adding a
        student to a finished run (the size sweep) scores only what is new."""
        self._require_teacher()
        c = self.corpus
        test_windows = self.windows("test")
        ecfg = self.cfg.eval
        # No model here ever sees a window longer than max_length (transformer students have no
        # positions beyond it), so latency is timed at most at that length.
        seq_len = min(ecfg.latency_seq_len, self.cfg.teacher.max_length)
        lat_ids, lat_mask = make_batch(test_windows, ecfg.latency_batch_size, seq_len, self.pad_id)
        lat_ids, lat_mask = lat_ids.to(self.acc.device), lat_mask.to(self.acc.device)
        test_key = _test_key(c.test, to_dict(self.cfg)["eval"], self.cfg.teacher.max_length)

        def teacher_result() -> dict[str, Any]:
            teacher = self.fine_tuned_teacher()
            teacher.to(self.acc.device).eval()
            pred = predict_tags(logits_fn(teacher), c.test, test_windows, c.labels.id2label, self.pad_id,
                                self.cfg.teacher.eval_batch_size, self.acc, "teacher test")
            return {**_test_scores(score(c.test, pred)), "parameters": count_parameters(teacher), "model": self.cfg.teacher.model,
                    "latency": measure(logits_fn(teacher), lat_ids, lat_mask, ecfg.latency_repeats)}

        models = {"teacher": self._cached_eval("teacher", [self.teacher_dir / "model.safetensors"], test_key, teacher_result)}
        models["teacher"]["compression"] = 1.0
        for scfg in self.students:
            for lang in self._scopes(scfg):
                if not is_distilled(self.student_dir(scfg.name, lang)):
                    raise XdnerError(f"{self.student_dir(scfg.name, lang)}: student {scfg.name!r} is not distilled yet; run `xdner distil` first")
                check_inputs(self.student_dir(scfg.name, lang), f"student {scfg.name!r}",
                             recorded_inputs(self.student_dir(scfg.name, lang)), self.student_inputs(scfg, lang))
            dirs = [self.student_dir(scfg.name, lang) / FINAL for lang in self._scopes(scfg)]
            entry = self._cached_eval(scfg.name, [d / "model.safetensors" for d in dirs], test_key,
                                      lambda scfg=scfg, dirs=dirs: self._student_result(scfg, dirs, test_windows, lat_ids, lat_mask))
            entry["stage_seconds"] = self.stage_seconds(scfg)
            entry["mode"] = self.mode_of(scfg)
            entry["total_parameters"] = sum(read_json(d / MANIFEST)["parameters"] for d in dirs)  # all taggers
            if is_baseline(scfg):
                entry["baseline_of"] = self.students[0].name
            entry["curves"] = {lang or JOINT: curve_points(self.progress(scfg.name, lang)["history"])
                               for lang in self._scopes(scfg)}
            entry["compression"] = models["teacher"]["parameters"] / entry["parameters"]
            entry["speedup"] = models["teacher"]["latency"]["median_ms"] / entry["latency"]["median_ms"]
            models[scfg.name] = entry
        # Each model's own evaluation time, also when an earlier run computed it (as for distil).
        timings = self._time("evaluate", sum(m["eval_seconds"] for m in models.values()))
        report = {
            "name": self.root.name,
            "command": self.command,
            "machine": machine_description(),
            "device": str(self.acc.device),
            "languages": c.languages,
            "scripts": scripts_of(c.languages),
            "models": models,
            "teacher_dev": self.teacher_record().get("best_dev_macro_f1"),
            "timings": timings,
            "data": c.stats,
            "config": to_dict(self.cfg),
        }
        if self.acc.is_main_process:
            write_report(report, self.root)
            for scfg in self.students:
                for lang in self._scopes(scfg):
                    self.write_card(scfg, lang, load_student(self.student_dir(scfg.name, lang) / FINAL), report)
        return report

    def write_card(self, scfg: StudentConfig, lang: str | None, student: XtremeDistilPreTrainedModel, report: dict[str, Any] | None = None) -> None:
        """The student folder's model card, with test results once `report` has them."""
        if self.acc.is_main_process:
            spec = {**dataclasses.asdict(scfg), "stages": [dataclasses.asdict(st) for st in self.stages_of(scfg)]}  # as trained
            card = student_card(to_dict(self.cfg), spec, lang, student.config, student.num_parameters(), report,
                                baseline_of=self.students[0].name if is_baseline(scfg) else None)
            write_text(self.student_dir(scfg.name, lang) / FINAL / CARD, str(card))

    def _student_result(self, scfg: StudentConfig, dirs: list[Path], test_windows: list[Window], lat_ids: torch.Tensor, lat_mask: torch.Tensor) -> dict[str, Any]:
        c = self.corpus
        preds: list[list[str] | None] = [None] * len(c.test)
        params: list[int] = []
        for lang, path in zip(self._scopes(scfg), dirs):
            student = load_student(path, self.acc.device)
            params.append(student.num_parameters())
            idx, sents, wins = restrict(c.test, test_windows, lang)
            out = predict_tags(logits_fn(student), sents, wins, c.labels.id2label, self.pad_id, self.cfg.distil.eval_batch_size, self.acc, f"{scfg.name} test")
            for i, p in zip(idx, out):
                preds[i] = p
        return {
            **_test_scores(score(c.test, preds)),  # type: ignore[arg-type]
            "parameters": int(np.mean(params)),  # per tagger: what one language's user deploys
            "type": scfg.type,
            **{k: getattr(student.config, k) for k in ARCHITECTURE if hasattr(student.config, k)},
            "latency": measure(logits_fn(student), lat_ids, lat_mask, self.cfg.eval.latency_repeats),
        }

    def stage_seconds(self, scfg: StudentConfig) -> dict[str, float]:
        """Distillation wall time per stage (representation, logits, gold, ...), summed over its
        sub-stages and, for per-language students, over languages."""
        out: dict[str, float] = {}
        for lang in self._scopes(scfg):
            for record in self.progress(scfg.name, lang)["history"]:
                out[record["stage"]] = round(out.get(record["stage"], 0.0) + record["seconds"], 1)
        return out

    def _cached_eval(self, name: str, weights: list[Path], test_key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """`compute()`, or its result from an earlier run if the weights and test data are the
        same; either way with the seconds the computation took (`eval_seconds`)."""
        key = hashlib.sha256(json.dumps([test_key, [sha256_file(w) for w in weights]]).encode()).hexdigest()
        path = self.eval_dir / f"{name}.json"
        cached = read_json(path) if path.exists() else {}
        if cached.get("key") == key and "seconds" in cached:  # files without seconds predate them: redo
            self._log(f"evaluate: {name}: weights and test data unchanged, reusing {path}")
            return {**cached["result"], "eval_seconds": cached["seconds"]}
        t0 = time.time()
        result = compute()
        seconds = round(time.time() - t0, 1)
        if self.acc.is_main_process:
            write_json(path, {"key": key, "result": result, "seconds": seconds})
        return {**result, "eval_seconds": seconds}

    def run_all(self, steps: tuple[str, ...] = STEPS) -> dict[str, Any] | None:
        """`steps` in order under the output directory's lock. Every step reads the corpus, so it
        is read first: a data file's problem (named by file and line) stops the run before the
        lock or config.yaml is written."""
        report = None
        train = len(self.corpus.train)  # read for its errors: every step uses it
        warning = budget_warning(self.cfg.teacher, train) if "teach" in steps and self.acc.is_main_process else None
        if warning:
            logger.warning(warning)
        with self.claim():
            for step in steps:
                self._log(f"== {step} ==")
                result = getattr(self, step)()
                if step == "evaluate":
                    report = result
        return report

    @contextlib.contextmanager
    def claim(self) -> Iterator[None]:
        """The output directory for this run alone while it works: a second run on it (whatever
        its config) stops at once instead of mixing its artifacts with this one's. The lock is
        the OS's (flock), released when the process ends, however it ends, so a killed run never
        blocks the next. The resolved config is written only under the lock."""
        if not self.acc.is_main_process:
            self.acc.wait_for_everyone()
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / LOCK))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunInUseError(f"{self.root} is in use by another xdner process (it holds {self.root / LOCK}); "
                                "wait for it to finish, or use another --output-dir") from None
        try:
            left = sweep_leftovers(self.root)
            if left:
                self._log(f"removed {len(left)} unfinished file(s) or folder(s) a killed run left in {self.root}")
            save_config(self.cfg, self.config_path)
            write_json(self.root / "data_stats.json", self.corpus.stats)
            self.acc.wait_for_everyone()
            yield
        finally:
            if self.cfg.log_with:
                self.acc.end_training()
            lock.release()

    def start_trackers(self) -> None:
        """The trackers (`log_with`), started once something is about to train: a run the checks
        refuse, or one that finds every step done, writes no log files."""
        if self.cfg.log_with and not self.acc.trackers:
            self.acc.init_trackers(self.root.name, config=flat_scalars(to_dict(self.cfg)))

    def _log(self, msg: str) -> None:
        if self.acc.is_main_process:
            logger.info(msg)


def restrict(sentences: list[Sentence], windows: list[Window], lang: str | None) -> tuple[list[int], list[Sentence], list[Window]]:
    """The sentences of one language (all for None) and their windows, renumbered to match."""
    idx = [i for i, s in enumerate(sentences) if lang is None or s.lang == lang]
    remap = {old: new for new, old in enumerate(idx)}
    wins = [dataclasses.replace(w, sent=remap[w.sent]) for w in windows if w.sent in remap]
    return idx, [sentences[i] for i in idx], wins


def _test_key(test: list[Sentence], eval_cfg: dict[str, Any], max_length: int) -> str:
    h = hashlib.sha256(json.dumps([eval_cfg, max_length, EVAL_RECORD]).encode())
    for sent in test:
        h.update(json.dumps([sent.lang, sent.tokens, sent.tags]).encode())
    return h.hexdigest()


def _test_scores(scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A model's test F1 per language and macro, and per language its precision, recall and F1
    per entity type, rounded as reported (plain floats: a report read back divides the same)."""
    types = {lang: {t: {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()} for t, row in s["types"].items()}
             for lang, s in scores.items() if lang != "macro"}
    return {"test_f1": {lang: round(float(v["f1"]), 2) for lang, v in scores.items()}, "test_types": types}


def scripts_of(languages: list[str]) -> dict[str, str]:
    """Each language's script from its YAML in languages/, for the codes that have one."""
    out = {}
    for lang in languages:
        try:
            out[lang] = load_language(lang).script
        except LanguageConfigError:
            continue
    return out


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}"
