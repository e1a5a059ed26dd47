"""What kind of file a user-named path is, asked with `os.stat` before opening it: reading a FIFO
blocks until a writer appears (forever, for `xdner validate`) and a device may never end, so
only regular files are read as configs or data."""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device",
          stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}


def special_kind(path: Path | str) -> str | None:
    """'a FIFO (named pipe)', 'a folder', ... for anything but a regular file (links followed);
    None for a regular file or a path that does not exist (opening it then says so)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, unreadable, or a NUL in the name: the open reports it
        return None
    return next((kind for test, kind in _KINDS.items() if test(mode)), None if stat.S_ISREG(mode) else "a special file")


def not_regular_message(path: Path | str) -> str | None:
    """The one-line refusal for a path that is not a regular file (None when it is one)."""
    kind = special_kind(path)
    return None if kind is None else f"{path} is {kind}, not a regular file; it is not read"
