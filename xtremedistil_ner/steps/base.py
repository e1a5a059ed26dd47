"""The step protocol, and the one decision every step makes about each artifact it finds on
disk: done (made from these inputs and complete), build (nothing there, or unfinished work from
these inputs to continue), or rebuild (made from other inputs, which only --overwrite allows;
otherwise the run stops naming what changed)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..provenance import NOTHING, changed_keys, must_rebuild
from .context import RunContext


class Verdict(enum.Enum):
    DONE = "done"
    BUILD = "build"
    REBUILD = "rebuild"


@dataclass(frozen=True)
class Artifact:
    """What a step finds at `where`: the inputs it `recorded` (NOTHING if nothing is there) and
    whether it is `complete`, against the inputs it would be made from now (`current`)."""

    where: Path
    what: str
    recorded: Any
    current: dict[str, Any]
    complete: bool

    def verdict(self, overwrite: bool) -> Verdict:
        if self.recorded is NOTHING:
            return Verdict.BUILD
        if must_rebuild(self.where, self.what, self.recorded, self.current, overwrite):
            return Verdict.REBUILD
        return Verdict.DONE if self.complete else Verdict.BUILD

    def decide(self, ctx: RunContext, done: str, rebuild: str) -> Verdict:
        """The verdict under the run's --overwrite, said in its log: `done` when the artifact is
        kept as it is, `rebuild` and the changed keys when it is started over."""
        verdict = self.verdict(ctx.overwrite)
        if verdict is Verdict.DONE:
            ctx.log(done)
        elif verdict is Verdict.REBUILD:
            ctx.log(f"{rebuild}; changed: {'; '.join(changed_keys(self.recorded, self.current))}")
        return verdict


class Step(Protocol):
    """A pipeline step: `run` builds what is missing or stale of its artifacts (deciding each with
    `Artifact.verdict`) from what `ctx` holds, and records its wall time there."""

    name: ClassVar[str]

    def run(self, ctx: RunContext) -> Any: ...
