"""The error family for user mistakes and damaged inputs: the CLI prints their message as one
line (`xdner: error: ...`) with `exit_status` and no traceback. Anything else is a bug and
keeps its traceback."""

from __future__ import annotations


class XdnerError(Exception):
    """Base of every error the user can fix; the message names the file, key or folder."""

    exit_status = 2


class RunInUseError(XdnerError):
    """Another process holds the output directory's lock."""

    exit_status = 3


class StaleArtifactError(XdnerError):
    """An artifact in the output directory was built from other settings than the config's."""
