"""annotate: run the teacher once over the transfer set and cache its outputs."""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator

import torch
from xdner_runtime.windows import Window

from .. import cache as cache_mod
from ..config import AnnotateConfig
from ..encoding import encode_stream
from ..io import read_json
from ..provenance import NOTHING
from ..teacher import resolve_precision
from .base import Artifact, Verdict
from .context import RunContext
from .students import cache_layers

CACHE_INPUTS = "teacher, transfer set and layers"  # what a cache fingerprint stands for, as a changed key names it
TOKENIZER = "tokenizer.json"  # a fast tokenizer's file in the teacher's folder, part of the cache fingerprint


def transfer_pairs(ctx: RunContext) -> Iterator[tuple[Window, str]]:
    """The transfer set's windows with their languages, encoded as they are read: a pass over it
    holds one batch of sentences, however large the set."""
    return ((win, sent.lang) for win, sent in encode_stream(ctx.corpus.transfer, ctx.tokenizer, ctx.cfg.teacher.max_length))


def annotate_format(ctx: RunContext) -> AnnotateConfig:
    """The annotate settings with `auto` precision resolved for this run's device (what the cache records)."""
    return dataclasses.replace(ctx.cfg.annotate, precision=resolve_precision(ctx.cfg.annotate.precision, ctx.acc.device))


def transfer_scan(ctx: RunContext, model: torch.nn.Module) -> cache_mod.Scan:
    """The cache fingerprint for this teacher and transfer set, with the set's sizes: one pass, once per process."""
    if ctx.scan is None:
        tokenizer_id = ctx.teacher_file_sha256(TOKENIZER) if (ctx.teacher_dir / TOKENIZER).exists() else type(ctx.tokenizer).__name__
        ctx.scan = cache_mod.scan(ctx.teacher_file_sha256("model.safetensors"), tokenizer_id, transfer_pairs(ctx),
                                  cache_layers(ctx, model), ctx.cfg.teacher.max_length, annotate_format(ctx))
    return ctx.scan


class Annotate:
    name = "annotate"

    def run(self, ctx: RunContext) -> None:
        fmt = annotate_format(ctx)
        with ctx.lent_teacher(altered=fmt.precision == "int8") as model:  # int8 quantises it in place
            scan = transfer_scan(ctx, model)
            path = ctx.cache_dir / cache_mod.MANIFEST
            manifest = read_json(path) if path.exists() else None
            recorded = NOTHING if manifest is None else {
                "annotate": manifest.get("format"), CACHE_INPUTS: manifest.get("fingerprint")}
            current = {"annotate": cache_mod.stored_format(fmt), CACHE_INPUTS: scan.fingerprint}
            found = Artifact(ctx.cache_dir, "transfer cache", recorded, current, complete=cache_mod.is_complete(ctx.cache_dir, scan.fingerprint))
            if found.decide(ctx, f"annotate: transfer cache in {ctx.cache_dir} is complete and matches, skipping",
                            f"annotate: {ctx.cache_dir} was made from other inputs; rebuilding it (--overwrite)") is Verdict.DONE:
                return
            t0 = time.time()
            cache_mod.annotate(model, lambda: transfer_pairs(ctx), scan, cache_layers(ctx, model),
                               ctx.cache_dir, ctx.pad_id, ctx.cfg.annotate.batch_size, ctx.acc, fmt=fmt)
        ctx.time("annotate", time.time() - t0)
