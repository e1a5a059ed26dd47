"""What the steps of one run share: the config, the Accelerator, the corpus and tokenizer, the
fine-tuned teacher (checked and loaded once per process), the step timings and the log. Steps
read it; none of them owns it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sys
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from xdner_runtime.windows import Window

from ..cache import Scan
from ..config import RunConfig, StudentConfig, counted, run_students, to_dict
from ..data.corpus import Corpus, build_corpus
from ..encoding import encode, special_ids
from ..errors import XdnerError
from ..io import check_manifest, read_json, sha256_file, write_json
from ..layout import TEACHER_MANIFEST, RunLayout
from ..preflight import require_valid
from ..provenance import check_inputs, flatten, sentences_fingerprint
from ..teacher import RETRAIN, is_trained, load_teacher, load_tokenizer
from ..threads import configure_threads

logger = logging.getLogger("xtremedistil_ner.pipeline")


def make_accelerator(cfg: RunConfig) -> Accelerator:
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # Several processes and no CUDA (torchrun / accelerate launch on CPU machines): Accelerate only
    # sets up gloo when told to run on CPU; otherwise every process would act as the only one.
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(mixed_precision=mp, cpu=cpu, log_with=cfg.log_with or None,
                       project_dir=str(Path(cfg.output_dir) / "logs") if cfg.log_with else None)


class RunContext(RunLayout):
    """One run's shared state; everything lazily loaded lands in `cfg.output_dir`."""

    def __init__(self, cfg: RunConfig, accelerator: Accelerator | None = None, command: str | None = None, overwrite: bool = False) -> None:
        require_valid(cfg, accelerator.num_processes if accelerator else int(os.environ.get("WORLD_SIZE", "1")))
        self.cfg = cfg
        configure_threads(cfg.threads)  # torch is loaded by now: an explicit count only (the CLI set the rest)
        self.overwrite = overwrite  # rebuild artifacts made from other settings instead of refusing
        self.root = Path(cfg.output_dir)
        self.acc = accelerator or make_accelerator(cfg)
        self.command = command or shlex.join(sys.orig_argv)  # the interpreter's own command line
        self._verified: dict[str, Any] | None = None  # the teacher record whose files were last verified
        self._teacher: torch.nn.Module | None = None
        self.scan: Scan | None = None  # the transfer set's fingerprint pass (steps/annotate.py), once per process
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
        self.require_teacher()
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
        """What the fine-tuned teacher depends on: its settings that change its weights (config.py
        marks the others) and its labeled and dev sentences."""
        c = self.corpus
        return {"teacher": counted(self.cfg.teacher, train_sentences=len(c.train)), "seed": self.cfg.seed,
                "labels": list(c.labels.tags), "train_sentences": sentences_fingerprint(c.train),
                "dev_sentences": sentences_fingerprint(c.dev)}

    def verify_teacher(self) -> dict[str, Any]:
        """The fine-tuned teacher's record, its files checked against it (sizes and sha256) once
        per record, so the steps' loads skip the hashing: a flipped byte or an edited config is
        named as damaged, never trained on or blamed on settings."""
        record = self.teacher_record()
        if record != self._verified:
            check_manifest(self.teacher_dir, TEACHER_MANIFEST, what="teacher checkpoint", remedy=RETRAIN)
            self._verified, self._teacher = record, None
        return record

    def require_teacher(self) -> dict[str, Any]:
        """The record of an intact fine-tuned teacher made from this config's settings and data."""
        if not is_trained(self.teacher_dir):
            raise XdnerError(f"{self.teacher_dir}: no fine-tuned teacher yet; run `xdner teach` first")
        record = self.verify_teacher()
        check_inputs(self.teacher_dir, "fine-tuned teacher", record.get("inputs"), self.teacher_inputs)
        if record["best_dev_macro_f1"] <= 0:
            raise XdnerError(
                f"{self.teacher_dir}: the fine-tuned teacher scored 0.00 macro F1 on dev after {len(record.get('history', []))} "
                "epoch(s): it learned nothing to distil. Train it longer (teacher.min_steps, teacher.epochs) or with a higher "
                "teacher.lr, or check the labels, then rerun `xdner teach --overwrite`")
        return record

    def teacher_file_sha256(self, name: str) -> str:
        """A file of the teacher's folder by its sha256: as its verified manifest lists it (so it is
        hashed once per process), or hashed here if the manifest does not list it."""
        listed = self.require_teacher().get("files", {}).get(name)
        return listed["sha256"] if listed else sha256_file(self.teacher_dir / name)

    @property
    def teacher(self) -> torch.nn.Module:
        """The fine-tuned teacher on the CPU, loaded once per process (verified by `require_teacher`)."""
        self.require_teacher()
        if self._teacher is None:
            self._teacher = load_teacher(str(self.teacher_dir), self.corpus.labels, self.cfg.teacher.trust_remote_code, False)[0]
        return self._teacher

    @contextlib.contextmanager
    def lent_teacher(self, altered: bool = False) -> Iterator[torch.nn.Module]:
        """The teacher for a step that moves it to the accelerator or (`altered`) changes it in
        place, as int8 annotation quantises it: afterwards it is back on the CPU, or forgotten."""
        try:
            yield self.teacher
        finally:
            if altered:
                self._teacher = None
            elif self._teacher is not None:
                self._teacher.cpu()

    def time(self, step: str, seconds: float) -> dict[str, float]:
        """Record a step's wall time in `timings.json`; returns every time recorded so far."""
        timings = read_json(self.timings_path) if self.timings_path.exists() else {}
        timings[step] = round(seconds, 1)
        if self.acc.is_main_process:
            write_json(self.timings_path, timings)
        return timings

    def start_trackers(self) -> None:
        """The trackers (`log_with`), started once something is about to train: a run the checks
        refuse, or one that finds every step done, writes no log files. They take the config as
        `a.b.c: value` scalars (lists as JSON)."""
        if self.cfg.log_with and not self.acc.trackers:
            flat = {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
                    for k, v in flatten(to_dict(self.cfg)).items() if v is not None}
            self.acc.init_trackers(self.root.name, config=flat)

    def log(self, msg: str) -> None:
        if self.acc.is_main_process:
            logger.info(msg)
