"""The error family for user mistakes and damaged inputs: the CLI prints their message as one
line (`xdner: error: ...`) with `exit_status` and no traceback. Anything else is a bug and
keeps its traceback."""

from __future__ import annotations

from xdner_runtime.errors import XdnerError

__all__ = ["RunInUseError", "StaleArtifactError", "XdnerError"]


class RunInUseError(XdnerError):
    """Another process holds the output directory's lock."""

    exit_status = 3


class StaleArtifactError(XdnerError):
    """An artifact in the output directory was built from other settings than the config's."""
