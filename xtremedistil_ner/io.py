"""Atomic file writes: every artifact appears whole or not at all; manifests (each file's size and
sha256) let a reader tell a complete artifact from one damaged after it was written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from xdner_runtime.errors import ArtifactError as RuntimeArtifactError

MANIFEST = "manifest.json"


class ArtifactError(RuntimeArtifactError):
    """A file written by a run that is now missing, truncated or corrupted; the message names it
    (`problem`) and says what to do (`remedy`, kept apart for callers that do it themselves)."""

    def __init__(self, problem: str, remedy: str = "") -> None:
        super().__init__(f"{problem}; {remedy}" if remedy else problem)
        self.problem, self.remedy = problem, remedy


def _umask() -> int:
    """The process's umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: Path) -> None:
    """Give `path` (and, for a folder, everything under it) the modes a plain `open`/`mkdir`
    would: the temp files and folders artifacts are written as start 0600/0700 (mkstemp,
    mkdtemp), and writers such as safetensors create their own 0600 files, which would make
    artifacts private on a shared cluster folder. Called just before an artifact is renamed
    into place, so every writer is covered. Symlinks are left alone (chmod would follow them)."""
    mask = _umask()
    path = Path(path)
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        follow_umask(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block ends, so an interrupted run never stops between
    the two renames that swap a directory (which would leave only `.NAME.old`). Only the main
    thread can set handlers, and a handler other than Python's default is left alone."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp directory beside `path`; swap it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        follow_umask(tmp)
        with _deferred_interrupt():
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


REWRITE = "delete it and rerun the step that writes it"


def damaged(path: Path, what: str, problem: str, remedy: str = REWRITE) -> ArtifactError:
    """The one wording for an artifact altered after it was written: named as damaged, so it is
    never mistaken for one made from other settings."""
    return ArtifactError(f"{path} is a damaged {what}: {problem}", remedy)


def first_of(problems: Sequence[str]) -> str:
    """The first of `problems`, with how many more there are: errors stay on one line."""
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON record a run wrote (every one is an object). One that no longer parses is an
    `ArtifactError` naming it, not a JSONDecodeError traceback."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(path, "JSON record", f"not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise damaged(path, "JSON record", f"a JSON {type(record).__name__}, not the object written there")
    return record


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _file_entries(directory: Path, names: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Size and sha256 of `names` (relative paths), or of every file under `directory` but `exclude`."""
    directory = Path(directory)
    if names is None:
        skip = set(exclude)
        names = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
        names = [n for n in names if n not in skip]
    return {n: {"bytes": (directory / n).stat().st_size, "sha256": sha256_file(directory / n)} for n in names}


def write_manifest(directory: Path, name: str = MANIFEST, /, *, files: Iterable[str] | None = None, **info: Any) -> dict[str, Any]:
    """Write `name` in `directory`: `info` plus the size and sha256 of `files` (default: every
    other file there), so a reader can tell a complete artifact from a truncated or altered one.
    (`directory` and `name` are positional-only, so `info` may hold a `name` of its own.)"""
    manifest = {**info, "files": _file_entries(directory, files, exclude=[name])}
    write_json(Path(directory) / name, manifest)
    return manifest


def verify_manifest(directory: Path, name: str = MANIFEST, checksums: bool = True) -> list[str]:
    """What is wrong with the files `name` lists in `directory` (missing, other size, and with
    `checksums` other sha256), one message per file naming it; empty if all match. Sizes alone
    catch truncation at the cost of a stat; checksums also catch altered bytes."""
    directory = Path(directory)
    try:
        files = json.loads((directory / name).read_text(encoding="utf-8")).get("files", {})  # none listed: from before listings
        listed = {rel: (int(info["bytes"]), str(info["sha256"])) for rel, info in files.items()}
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        return [f"{directory / name}: unreadable manifest ({exc})"]
    problems = []
    for rel, (size, digest) in listed.items():
        path = directory / rel
        if not path.is_file():
            problems.append(f"{path}: missing (listed in {name})")
        elif (found := path.stat().st_size) != size:
            problems.append(f"{path}: {found:,} bytes, {name} says {size:,} (truncated or overwritten)")
        elif checksums and sha256_file(path) != digest:
            problems.append(f"{path}: sha256 differs from {name} (corrupted)")
    return problems


def check_manifest(directory: Path, name: str = MANIFEST, checksums: bool = True, what: str = "artifact", remedy: str = REWRITE) -> None:
    """Every file `directory`'s manifest `name` lists is as written (sizes and, with
    `checksums`, sha256: about 1 GB/s, so a step verifies what it reads every time), or an
    `ArtifactError` on one line naming the first damaged file; artifacts written before
    manifests existed (no manifest, or one without `files`) load unchecked."""
    if not (Path(directory) / name).exists():
        return
    problems = verify_manifest(directory, name, checksums)
    if problems:
        raise damaged(directory, what, first_of(problems), remedy)


def sweep_leftovers(root: Path) -> list[Path]:
    """Remove what killed writers left under `root`: `atomic_path`/`atomic_dir` temp files and
    folders (`.NAME.*.tmp`), and `.NAME.old` once NAME exists (without NAME it is the settled
    version, see `settled_dir`). Only safe while no other process writes there (the run's lock)."""
    removed = []
    for path in sorted(Path(root).rglob(".*"), key=lambda p: len(p.parts), reverse=True):
        name = path.name
        stale_old = name.endswith(".old") and path.with_name(name[1:-len(".old")]).exists()
        if name.endswith(".tmp") or stale_old:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def remove_dir(path: Path) -> None:
    """Remove an `atomic_dir` folder and what killed writers left beside it (`.NAME.*`), those
    first: a kill in between must not leave a `.NAME.old` that `settled_dir` would bring back."""
    path = Path(path)
    for stale in [*path.parent.glob(f".{path.name}.*"), path]:
        shutil.rmtree(stale, ignore_errors=True)


def settled_dir(path: Path) -> Path | None:
    """`path` if it exists; else the previous version that a kill between `atomic_dir`'s two
    renames leaves at `.NAME.old`; else None."""
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    return path if path.exists() else old if old.exists() else None
