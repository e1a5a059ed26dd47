"""evaluate: test F1 per language, size and latency of the teacher and every student; the run's
report and the students' cards with their results."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from xdner_runtime.windows import Window

from ..config import StudentConfig, is_baseline, to_dict
from ..distiller import FINAL, is_distilled, recorded_inputs
from ..errors import XdnerError
from ..figures import curve_points
from ..io import MANIFEST, read_json, sha256_file, write_json
from ..languages import LanguageConfigError, load_language
from ..layout import JOINT, PROGRESS
from ..provenance import NOTHING, check_inputs
from ..report import machine_description, write_report
from ..scoring import logits_fn, predict_tags, score
from ..stages import SETUP
from ..speed import make_batch, measure
from ..students import load_student
from ..teacher import count_parameters
from .base import Artifact, Verdict
from .context import RunContext
from .students import inputs, restrict, scopes, write_card

EVAL_RECORD = 2  # what a model's eval/NAME.json holds (2: test_types too); an older record is recomputed
ARCHITECTURE = ("embedding_dim", "hidden_dim", "num_layers", "num_heads", "ff_dim", "init")  # reported per student


@dataclass
class TestBench:
    """The test set as every model is scored on it, and the batch its latency is timed on."""

    windows: list[Window]
    ids: torch.Tensor
    mask: torch.Tensor
    key: str  # the test data and eval settings, part of every cached score's key

    @classmethod
    def of(cls, ctx: RunContext) -> "TestBench":
        windows, ecfg = ctx.windows("test"), ctx.cfg.eval
        # No model here ever sees a window longer than max_length (transformer students have no
        # positions beyond it), so latency is timed at most at that length.
        ids, mask = make_batch(windows, ecfg.latency_batch_size, min(ecfg.latency_seq_len, ctx.cfg.teacher.max_length), ctx.pad_id)
        h = hashlib.sha256(json.dumps([to_dict(ctx.cfg)["eval"], ctx.cfg.teacher.max_length, EVAL_RECORD]).encode())
        for sent in ctx.corpus.test:
            h.update(json.dumps([sent.lang, sent.tokens, sent.tags]).encode())
        return cls(windows, ids.to(ctx.acc.device), mask.to(ctx.acc.device), h.hexdigest())

    def latency(self, ctx: RunContext, model: torch.nn.Module) -> dict[str, Any]:
        return measure(logits_fn(model), self.ids, self.mask, ctx.cfg.eval.latency_repeats)


def cached_scores(ctx: RunContext, name: str, digests: list[str], bench: TestBench, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`compute()`, or its result from an earlier run if the weights (by `digests`) and test data
    are the same; either way with the seconds the computation took (`eval_seconds`)."""
    key = hashlib.sha256(json.dumps([bench.key, digests]).encode()).hexdigest()
    path = ctx.eval_dir / f"{name}.json"
    cached = read_json(path) if path.exists() else {}
    found = Artifact(path, f"scores of {name}", {"key": cached["key"]} if "key" in cached else NOTHING, {"key": key},
                     complete="seconds" in cached)  # files without seconds predate them: redo
    if found.verdict(overwrite=True) is Verdict.DONE:
        ctx.log(f"evaluate: {name}: weights and test data unchanged, reusing {path}")
        return {**cached["result"], "eval_seconds": cached["seconds"]}
    t0 = time.time()
    result = compute()
    seconds = round(time.time() - t0, 1)
    if ctx.acc.is_main_process:
        write_json(path, {"key": key, "result": result, "seconds": seconds})
    return {**result, "eval_seconds": seconds}


def teacher_entry(ctx: RunContext, bench: TestBench) -> dict[str, Any]:
    def compute() -> dict[str, Any]:
        with ctx.lent_teacher() as teacher:
            teacher.to(ctx.acc.device).eval()
            c = ctx.corpus
            pred = predict_tags(logits_fn(teacher), c.test, bench.windows, c.labels.id2label, ctx.pad_id,
                                ctx.cfg.teacher.eval_batch_size, ctx.acc, "teacher test")
            return {**test_scores(score(c.test, pred)), "parameters": count_parameters(teacher), "model": ctx.cfg.teacher.model,
                    "latency": bench.latency(ctx, teacher)}

    return {**cached_scores(ctx, "teacher", [ctx.teacher_file_sha256("model.safetensors")], bench, compute), "compression": 1.0}


def student_result(ctx: RunContext, scfg: StudentConfig, bench: TestBench) -> dict[str, Any]:
    c = ctx.corpus
    preds: list[list[str] | None] = [None] * len(c.test)
    params: list[int] = []
    for lang in scopes(ctx, scfg):
        student = load_student(ctx.student_dir(scfg.name, lang) / FINAL, ctx.acc.device)
        params.append(student.num_parameters())
        idx, sents, wins = restrict(c.test, bench.windows, lang)
        out = predict_tags(logits_fn(student), sents, wins, c.labels.id2label, ctx.pad_id, ctx.cfg.distil.eval_batch_size, ctx.acc,
                           f"{scfg.name} test")
        for i, p in zip(idx, out):
            preds[i] = p
    return {
        **test_scores(score(c.test, preds)),  # type: ignore[arg-type]
        "parameters": int(np.mean(params)),  # per tagger: what one language's user deploys
        "type": scfg.type,
        **{k: getattr(student.config, k) for k in ARCHITECTURE if hasattr(student.config, k)},
        "latency": bench.latency(ctx, student),
    }


def student_entry(ctx: RunContext, scfg: StudentConfig, bench: TestBench, teacher: dict[str, Any]) -> dict[str, Any]:
    """A distilled student's scores (all its taggers together), sizes, stage times and curves."""
    dirs = [ctx.student_dir(scfg.name, lang) for lang in scopes(ctx, scfg)]
    for lang, d in zip(scopes(ctx, scfg), dirs):
        if not is_distilled(d):
            raise XdnerError(f"{d}: student {scfg.name!r} is not distilled yet; run `xdner distil` first")
        check_inputs(d, f"student {scfg.name!r}", recorded_inputs(d), inputs(ctx, scfg, lang))
    entry = cached_scores(ctx, scfg.name, [sha256_file(d / FINAL / "model.safetensors") for d in dirs], bench,
                          lambda: student_result(ctx, scfg, bench))
    progress = {lang or JOINT: read_json(d / PROGRESS) for lang, d in zip(scopes(ctx, scfg), dirs)}
    histories = {scope: p["history"] for scope, p in progress.items()}
    # Distillation wall time per stage, over its sub-stages and languages, after the time spent
    # building the student (for a specialised tagger, its vocabulary), where that was recorded.
    seconds: dict[str, float] = {}
    if any("setup_seconds" in p for p in progress.values()):
        seconds[SETUP] = round(sum(p.get("setup_seconds", 0.0) for p in progress.values()), 1)
    for record in (r for history in histories.values() for r in history):
        seconds[record["stage"]] = round(seconds.get(record["stage"], 0.0) + record["seconds"], 1)
    entry["stage_seconds"] = seconds
    entry["mode"] = scfg.mode or ctx.cfg.distil.mode
    entry["total_parameters"] = sum(read_json(d / FINAL / MANIFEST)["parameters"] for d in dirs)  # all taggers
    if is_baseline(scfg):
        entry["baseline_of"] = ctx.students[0].name
    entry["curves"] = {scope: curve_points(history) for scope, history in histories.items()}
    entry["compression"] = teacher["parameters"] / entry["parameters"]
    entry["speedup"] = teacher["latency"]["median_ms"] / entry["latency"]["median_ms"]
    return entry


class Evaluate:
    name = "evaluate"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """A model's result is kept in `eval/NAME.json` keyed by its weights and the test data, so
        adding a student to a finished run (the size sweep) scores only what is new."""
        record = ctx.require_teacher()
        bench = TestBench.of(ctx)
        models = {"teacher": teacher_entry(ctx, bench)}
        for scfg in ctx.students:
            models[scfg.name] = student_entry(ctx, scfg, bench, models["teacher"])
        # Each model's own evaluation time, also when an earlier run computed it (as for distil).
        timings = ctx.time("evaluate", sum(m["eval_seconds"] for m in models.values()))
        report = {
            "name": ctx.root.name, "command": ctx.command, "machine": machine_description(), "device": str(ctx.acc.device),
            "languages": ctx.corpus.languages, "scripts": scripts_of(ctx.corpus.languages), "models": models,
            "teacher_dev": record.get("best_dev_macro_f1"), "timings": timings, "data": ctx.corpus.stats,
            "config": to_dict(ctx.cfg),
        }
        if ctx.acc.is_main_process:
            write_report(report, ctx.root)
            for scfg in ctx.students:
                for lang in scopes(ctx, scfg):
                    write_card(ctx, scfg, lang, load_student(ctx.student_dir(scfg.name, lang) / FINAL), report)
        return report


def test_scores(scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
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
