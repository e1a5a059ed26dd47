"""Where a run keeps its artifacts under its output directory: the one place that names them,
for the pipeline that writes them and for the benchmarks that read a finished run back."""

from __future__ import annotations

from pathlib import Path

from .distil import FINAL

STUDENTS = "students"
JOINT = "joint"  # the scope folder of a student distilled over all languages together


class RunLayout:
    """Paths under `root`, the output directory of `xdner run`."""

    root: Path

    @property
    def teacher_dir(self) -> Path:
        return self.root / "teacher"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def timings_path(self) -> Path:
        return self.root / "timings.json"

    def student_dir(self, name: str, lang: str | None = None) -> Path:
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
