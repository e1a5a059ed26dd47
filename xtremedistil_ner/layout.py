"""Where a run keeps its artifacts under its output directory: the one place that names them,
for the steps that write them and for everything that reads a run back (the pipeline checking
what is done, the benchmarks), with the readers of its records. Reading never writes, locks or
seeds anything."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Any

from .errors import XdnerError
from .io import read_json

CONFIG = "config.yaml"  # the resolved config of the run's last command
TEACHER = "teacher"  # the fine-tuned teacher: a transformers folder plus TEACHER_MANIFEST
TEACHER_MANIFEST = "xdner_teacher.json"  # its files, what it was made from, its training record
TEACHER_RESUME = "teacher-resume"  # the fine-tuning's mid-training state, until it is done
CACHE = "cache"  # the teacher's outputs over the transfer set (cache.MANIFEST inside)
STUDENTS = "students"  # students/NAME/SCOPE/: one distillation each
JOINT = "joint"  # the scope folder of a student distilled over all languages together
FINAL = "model"  # in a student's folder: the finished student (a transformers folder)
PROGRESS = "progress.json"  # in a student's folder: its distillation record
CHECKPOINT = "checkpoint"  # in a student's folder: the student as built, then after each finished sub-stage
RESUME = "resume"  # in a student's folder: the mid-sub-stage training state
EVAL = "eval"  # eval/NAME.json: a model's test scores, keyed by its weights and the test data
TIMINGS = "timings.json"  # wall time per step
REPORT = "report.json"  # the run's report (report.md and curves.png beside it)


def _under(name: str) -> property:
    return property(lambda self: self.root / name, doc=f"`root / {name!r}`")


class RunLayout:
    """Paths under `root`, the output directory of `xdner run`."""

    root: Path
    config_path, teacher_dir, teacher_resume_dir = _under(CONFIG), _under(TEACHER), _under(TEACHER_RESUME)
    cache_dir, eval_dir, timings_path, report_path = _under(CACHE), _under(EVAL), _under(TIMINGS), _under(REPORT)

    def teacher_record(self) -> dict[str, Any]:
        """The fine-tuned teacher's manifest: its files, inputs and training record."""
        return read_json(self.teacher_dir / TEACHER_MANIFEST)

    def progress(self, name: str, lang: str | None = None) -> dict[str, Any]:
        """A distilled student's record: sub-stage history, final dev scores, inputs."""
        return read_json(self.student_dir(name, lang) / PROGRESS)

    def timings(self) -> dict[str, float]:
        return read_json(self.timings_path) if self.timings_path.exists() else {}

    def report(self) -> dict[str, Any]:
        return read_json(self.report_path)

    def student_dir(self, name: str, lang: str | None = None) -> Path:
        """students/NAME/SCOPE, refused if the name or language would lead out of `root` (the
        up-front check refuses such names; this keeps any other caller inside too)."""
        for part in (name, lang or JOINT):
            why = unsafe_component(part)
            if why:
                raise XdnerError(f"{part!r} {why}; a student's folder must stay under {self.root}")
        return self.root / STUDENTS / name / (lang or JOINT)

    def final_students(self) -> dict[str, Path]:
        """Every final student checkpoint under this run, by `student_name`."""
        found = sorted(self.root.glob(f"{STUDENTS}/*/*/{FINAL}"))
        return {student_name(p): p for p in found if p.is_dir()}


def student_parts(path: Path | str) -> tuple[Path | None, str]:
    """(run directory, name) of a student checkpoint `RUN/students/NAME/SCOPE/model`: the name
    is NAME for a joint student, NAME/SCOPE for a per-language one; (None, folder name) for a
    checkpoint anywhere else."""
    path = Path(path).resolve()
    if path.name == FINAL and len(path.parents) >= 4 and path.parents[2].name == STUDENTS:
        scope, name = path.parent.name, path.parents[1].name
        return path.parents[3], name if scope == JOINT else f"{name}/{scope}"
    return None, path.name


def student_name(path: Path | str) -> str:
    return student_parts(path)[1]


def unsafe_component(name: str) -> str | None:
    """Why `name` (a student name or a language code, used as one folder name under the output
    directory) is not a safe path component, or None: empty, `.` or `..`, a path separator, a NUL
    or another control character."""
    if name in ("", ".", ".."):
        return "is empty, '.' or '..'"
    seps = sorted({"/", "\\", os.sep, os.altsep or "/"} & set(name))
    if seps:
        return f"contains a path separator {seps[0]!r}"
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return f"contains the control character U+{ord(control):04X}"
    return None
