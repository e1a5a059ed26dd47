"""What the resource-measuring benchmarks share: `xdner STEP` in a child process with its wall
time and peak resident memory (from wait4), and a run folder's disk use. A long step also
reports its record so far every minute: a process stopped from outside (SIGKILL, the machine
going away) cannot write its own, and its hours would vanish from a resumed run's totals."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

TICK_S = 60.0  # how often a running step's record so far is reported


def gib(n_bytes: float) -> float:
    return round(n_bytes / 2**30, 3)


def disk_use(out: Path) -> dict[str, float]:
    """GiB on disk per top-level entry of the run folder (teacher, cache, students, ...) and in all."""
    sizes: dict[str, float] = {}
    for entry in sorted(out.iterdir()) if out.exists() else []:
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        sizes[entry.name] = gib(sum(p.stat().st_blocks * 512 for p in files))
    return {**sizes, "total": round(sum(sizes.values()), 3)}


def peak_rss_so_far(pid: int) -> float:
    """A running process's peak resident memory in GiB (Linux's VmHWM; 0 where /proc is absent)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    return gib(kib * 1024)


def run_step(step: str, config: Path, out: Path, data_root: str, overrides: list[str], env: dict[str, str] | None = None,
             on_tick: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """`xdner STEP` in a child process (`env` added to this one's): its exit status, wall time and
    peak RSS (from wait4). While it runs, `on_tick` gets the record so far every `TICK_S` seconds,
    with `exit: None` and no disk use (walking a run folder of thousands of files each minute
    would cost more than it tells)."""
    cmd = [sys.executable, "-m", "xtremedistil_ner.cli", step, "--config", str(config), "--output-dir", str(out), "--data-root", data_root,
           *(arg for o in overrides for arg in ("--set", o))]
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, env={**os.environ, **(env or {})})
    done = threading.Event()

    def tick() -> None:
        while not done.wait(TICK_S):
            so_far = {"step": step, "started": started, "seconds": round(time.perf_counter() - t0, 1), "exit": None,
                      "peak_rss_gib": peak_rss_so_far(child.pid), "disk_gib_after": None}
            if done.is_set():  # the child ended (and may be reaped) while this was read: the final record follows
                return
            try:
                on_tick(so_far)
            except OSError as exc:  # a full disk, say: the step goes on, and the next tick tries again
                print(f"could not record {step}'s progress: {exc}", file=sys.stderr)

    ticker = threading.Thread(target=tick, daemon=True)
    if on_tick:
        ticker.start()
    try:
        _, status, usage = os.wait4(child.pid, 0)
    except KeyboardInterrupt:  # Ctrl-C reached the child too: let it save its state, then record the attempt
        _, status, usage = os.wait4(child.pid, 0)
    finally:
        done.set()
        if on_tick:
            ticker.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    return {"step": step, "started": started, "seconds": round(time.perf_counter() - t0, 1), "exit": child.returncode,
            "peak_rss_gib": gib(usage.ru_maxrss * 1024), "disk_gib_after": disk_use(out)}
