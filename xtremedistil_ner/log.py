"""Logging: the package logs through `logging` under `xtremedistil_ner` (library users route it as
they like); `xdner` shows INFO as plain lines on stderr, only warnings with --quiet and debug
detail with --verbose. Progress bars follow the same switch; on a stderr that is not a terminal
(a log file, CI) they become a plain line every few seconds. The libraries' own bars and load
reports (transformers' LOAD REPORT, with ANSI codes) show only with --verbose."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import warnings
from typing import Any, Iterable, TextIO

from tqdm.auto import tqdm

PACKAGE = "xtremedistil_ner"
LINE_SECONDS = 10  # off a terminal: a bar's first line after this long, then one per this long
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


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
    _libraries(verbose=verbosity > 0)


def _libraries(verbose: bool) -> None:
    """transformers at info with its bars and the Hub's and datasets' bars (verbose), else errors
    only and no bars: their load reports and bars would fill a redirected stderr. A library not
    imported yet reads its environment variable when it is (the CLI configures once, first)."""
    from huggingface_hub import utils as hub_utils  # light; transformers reads its switch on import

    (hub_utils.enable_progress_bars if verbose else hub_utils.disable_progress_bars)()
    logging.getLogger("accelerate").setLevel(logging.INFO if verbose else logging.WARNING)
    os.environ["TRANSFORMERS_VERBOSITY"] = "info" if verbose else "error"
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(logging.INFO if verbose else logging.ERROR)
        (hf_logging.enable_progress_bar if verbose else hf_logging.disable_progress_bar)()
    if "datasets" in sys.modules:
        import datasets

        with warnings.catch_warnings():  # a user's HF_DATASETS_DISABLE_PROGRESS_BARS wins, as datasets warns
            warnings.simplefilter("ignore")
            (datasets.enable_progress_bars if verbose else datasets.disable_progress_bars)()
    elif not verbose:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


class _Lines(io.TextIOBase):
    """A bar's redraws as plain lines, for a stream that is not a terminal: no carriage returns,
    no cursor moves, no repeated line (tqdm's `delay` and `mininterval` keep them seconds apart)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.last = stream, ""

    def write(self, text: str) -> int:
        line = ANSI.sub("", text).replace("\r", "").strip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable | None = None, main_process: bool = True, **kwargs: Any) -> tqdm:
    """A progress bar on the (local) main process, unless logging was set quieter than INFO."""
    shown = main_process and logging.getLogger(PACKAGE).level <= logging.INFO  # unset (library use) included
    if not sys.stderr.isatty():
        kwargs = {"file": _Lines(sys.stderr), "delay": LINE_SECONDS, "mininterval": LINE_SECONDS, **kwargs}
    return tqdm(iterable, disable=not shown, **kwargs)
