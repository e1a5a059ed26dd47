"""The error family for user mistakes and damaged inputs, shared with the training package: a
command prints their message as one line with `exit_status` and no traceback. Anything else is
a bug and keeps its traceback."""

from __future__ import annotations


class XdnerError(Exception):
    """Base of every error the user can fix; the message names the file, key or folder."""

    exit_status = 2


class ArtifactError(XdnerError, ValueError):
    """A model file that is missing, damaged or paired with the wrong model."""
