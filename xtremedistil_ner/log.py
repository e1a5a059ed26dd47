"""Logging: the package logs through `logging` under `xtremedistil_ner` (library users route it as
they like); `xdner` shows INFO as plain lines on stderr, only warnings with --quiet and debug
detail with --verbose. Progress bars follow the same switch."""

from __future__ import annotations

import logging
import sys
from typing import Any, Iterable

from tqdm.auto import tqdm

PACKAGE = "xtremedistil_ner"


class _Stderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record comes (pytest and notebooks swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # set by StreamHandler.__init__; the property wins
        pass


def configure(verbosity: int = 0) -> None:
    """-1 quiet (warnings), 0 normal (progress), 1 verbose (debug, and the libraries' info)."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logger = logging.getLogger(PACKAGE)
    logger.handlers = [_Stderr()]
    logger.handlers[0].setFormatter(logging.Formatter("%(message)s" if verbosity < 1 else "%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logger.setLevel(level)
    logger.propagate = False
    if verbosity > 0:
        for name in ("transformers", "accelerate"):
            logging.getLogger(name).setLevel(logging.INFO)


def progress(iterable: Iterable, main_process: bool = True, **kwargs: Any) -> tqdm:
    """A progress bar on the (local) main process, unless logging was set quieter than INFO."""
    shown = main_process and logging.getLogger(PACKAGE).level <= logging.INFO  # unset (library use) included
    return tqdm(iterable, disable=not shown, **kwargs)
