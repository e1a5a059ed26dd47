"""teach: fine-tune the teacher jointly on every language's labeled data."""

from __future__ import annotations

import shutil

from ..io import ArtifactError, read_json, settled_dir
from ..layout import PROGRESS
from ..provenance import NOTHING
from ..teacher import fine_tune, is_trained
from .base import Artifact, Verdict
from .context import RunContext


class Teach:
    name = "teach"

    def run(self, ctx: RunContext) -> None:
        found = Artifact(ctx.teacher_dir, "fine-tuned teacher", self._recorded(ctx), ctx.teacher_inputs, complete=True)
        if found.decide(ctx, f"teach: fine-tuned teacher found in {ctx.teacher_dir}, skipping",
                        f"teach: {ctx.teacher_dir} was trained with other settings; retraining it (--overwrite)") is Verdict.DONE:
            return
        state = settled_dir(ctx.teacher_resume_dir)
        recorded = read_json(state / PROGRESS).get("inputs") if state is not None and (state / PROGRESS).exists() else NOTHING
        midway = Artifact(state or ctx.teacher_resume_dir, "teacher's mid-training state", recorded, ctx.teacher_inputs, complete=False)
        if midway.decide(ctx, "", f"teach: {state} was saved with other settings; starting over (--overwrite)") is Verdict.REBUILD:
            if ctx.acc.is_main_process:
                shutil.rmtree(state, ignore_errors=True)
        ctx.acc.wait_for_everyone()
        ctx.start_trackers()
        c = ctx.corpus
        summary = fine_tune(ctx.cfg.teacher, c.train, c.dev, c.labels, ctx.teacher_dir, ctx.acc, ctx.cfg.seed,
                            ctx.teacher_resume_dir, ctx.teacher_inputs)
        ctx.time("teach", summary["train_seconds"])  # over every attempt, as a resumed distillation counts it
        ctx.require_teacher()  # one that learned nothing stops the run here

    @staticmethod
    def _recorded(ctx: RunContext) -> object:
        """The inputs an intact fine-tuned teacher recorded; NOTHING when there is none, or a
        damaged one that --overwrite lets us train again (without it, the damage is named)."""
        try:
            if is_trained(ctx.teacher_dir):
                return ctx.verify_teacher().get("inputs")
        except ArtifactError as exc:
            if not ctx.overwrite:
                raise
            ctx.log(f"teach: {exc.problem}; training it again (--overwrite)")
        return NOTHING
