"""A run: the steps in order over one output directory (teach -> annotate -> distil ->
evaluate), under that directory's lock. Each step writes its artifacts atomically and a rerun
skips what is already complete (see `steps/`)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

from filelock import FileLock, Timeout

from .config import ConfigError, save_config
from .errors import RunInUseError
from .io import sweep_leftovers, write_json
from .preflight import budget_warning, transfer_problems, unseen_labels_warning
from .steps.annotate import Annotate
from .steps.base import Step
from .steps.context import RunContext
from .steps.distil import Distil
from .steps.evaluate import Evaluate
from .steps.teach import Teach

logger = logging.getLogger(__name__)

STEP_TYPES: dict[str, Step] = {step.name: step for step in (Teach(), Annotate(), Distil(), Evaluate())}  # in the data flow's order
STEPS = tuple(STEP_TYPES)
LOCK = ".xdner.lock"


class Run(RunContext):
    """One run's steps over its output directory; what they share is the `RunContext`."""

    def step(self, name: str) -> Any:
        """One step, without the lock (`run_all` holds it for the command line)."""
        return STEP_TYPES[name].run(self)

    def run_all(self, steps: tuple[str, ...] = STEPS) -> dict[str, Any] | None:
        """`steps` in order under the output directory's lock. Every step reads the corpus, so it
        is read first: a data file's problem (named by file and line) stops the run before the
        lock or config.yaml is written."""
        report = None
        train = len(self.corpus.train)  # read for its errors: every step uses it
        problems = transfer_problems(self.cfg, self.corpus.stats) if {"annotate", "distil"} & set(steps) else []
        if problems:
            raise ConfigError("the run's data has a problem (nothing was run):\n  " + "\n  ".join(problems))
        warnings = [budget_warning(self.cfg.teacher, train) if "teach" in steps else None,
                    unseen_labels_warning(self.corpus.stats)]
        for warning in warnings if self.acc.is_main_process else []:
            if warning:
                logger.warning(warning)
        with self.claim():
            for step in steps:
                self.log(f"== {step} ==")
                result = self.step(step)
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
                self.log(f"removed {len(left)} unfinished file(s) or folder(s) a killed run left in {self.root}")
            save_config(self.cfg, self.config_path)
            write_json(self.root / "data_stats.json", self.corpus.stats)
            self.acc.wait_for_everyone()
            yield
        finally:
            if self.cfg.log_with:
                self.acc.end_training()
            lock.release()
