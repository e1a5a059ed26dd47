"""Headless Chromium against a local page: the rendered DOM (for tests of the `xdner serve` page)
and a PNG screenshot (for a benchmark or CI artefact). Standard library only; shared by
tests/test_serve.py and scripts, so the flags that keep Chromium off the network live in one place."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# No GPU, no sandbox (containers), no first-run, sync, component or background fetches; the
# virtual-time budget lets the page's fetch to the server settle before the DOM is dumped.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000")


def chromium() -> str | None:
    """The Chromium binary on PATH, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], timeout: float) -> str:
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium is not on PATH")
    with tempfile.TemporaryDirectory(prefix="xdner-chromium-") as profile:
        proc = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.split()[-30:])
        raise RuntimeError(f"chromium exited with {proc.returncode}: {tail}")
    return proc.stdout


def dump_dom(url: str, timeout: float = 60) -> str:
    """The page's DOM after its scripts ran, as HTML."""
    return _run(["--dump-dom", url], timeout)


def screenshot(url: str, path: Path | str, size: tuple[int, int] = (1100, 800), timeout: float = 60) -> Path:
    """A PNG of the page after its scripts ran, written to `path`."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", url], timeout)
    if not path.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {path}")
    return path
