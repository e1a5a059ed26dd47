"""A seeded fuzzer of the up-front config check (#28), shared by tests/test_fuzz_config.py (a
bounded number of mutations in CI) and benchmarks/fuzz_config.py (the long version).

Each mutation changes one key of a valid tiny config: a value of another type, out of range,
NaN/inf, huge, unicode or path characters, a key removed or a key added. `xdner run` (in-process)
must then either pass the check, or exit 2 with a one-line `xdner: error:` message (a header and
one line per problem), no traceback, and nothing in the output directory. A mutation that passes
may be run to the end on the tiny data and teacher (`run_tiny`): it must complete.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import random
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

NUMBERS: list[Any] = [0, -1, 1, 2, 0.5, -0.0, 1e-300, 1e300, float("nan"), float("inf"), float("-inf"), 2**31, 2**32,
                      2**63, 2**64, -(2**63)]
STRINGS: list[Any] = ["", " ", "x", "..", ".", "../../../ESCAPED", "a/b", "a\\b", "nul\x00byte", "tab\there", "\u202eevil",
                      "ünïcødé", "日本語", "\ufeffbom", "-1", "nan", "1e3", "~", "/dev/null", "C:\\x", "\U0001F600"]
OTHERS: list[Any] = [None, True, False, [], {}, [1], {"a": 1}, [None], ["x", "y"]]
VALUES = NUMBERS + STRINGS + OTHERS
EXTRA_KEYS = ["bogus", "Seed", "seed ", "teacher.lr", "名前", "", "__class__"]


@dataclass
class Mutation:
    """One change to the base config: `path` (keys and list indices) set to `value`, removed
    (`remove`), or a new key `value` added under `path` (`add`)."""

    path: tuple[Any, ...]
    value: Any = None
    kind: str = "set"  # set | remove | add

    def apply(self, raw: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(raw)
        node = out
        for key in self.path[:-1]:
            node = node[key]
        last = self.path[-1]
        if self.kind == "remove":
            del node[last]
        elif self.kind == "add":
            node[last][self.value] = 1
        else:
            node[last] = self.value
        return out

    def __str__(self) -> str:
        where = ".".join(map(str, self.path))
        return {"remove": f"remove {where}", "add": f"add {where}.{self.value!r}"}.get(self.kind, f"{where} = {self.value!r}")


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) of the config, mappings and lists included."""
    if path:
        yield path, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _leaves(value, (*path, key))


def mutations(base: dict[str, Any], seed: int, count: int) -> Iterator[Mutation]:
    """`count` seeded mutations of `base`: mostly new values for existing keys (of every kind in
    VALUES, plus the key's own value nudged), some removed keys and some added ones."""
    rng = random.Random(seed)
    leaves = list(_leaves(base))
    mappings = [p for p, v in leaves if isinstance(v, dict)]
    for _ in range(count):
        roll = rng.random()
        path, value = rng.choice(leaves)
        if roll < 0.1 and not isinstance(path[-1], int):
            yield Mutation(path, kind="remove")
        elif roll < 0.18:
            yield Mutation(rng.choice(mappings), rng.choice(EXTRA_KEYS), kind="add")
        elif roll < 0.3 and isinstance(value, (int, float)) and not isinstance(value, bool):
            yield Mutation(path, rng.choice([value * 10, -value, value + 1, value - 1, value / 3]))
        else:
            yield Mutation(path, rng.choice(VALUES))


@dataclass
class Outcome:
    """What `xdner run` did with one mutation: passed (the check let it through), refused (exit
    2, one-line message, nothing written), or a failure: a traceback, another exit status, a
    message that is not one line per problem, or files written before refusing."""

    kind: str  # passed | refused | traceback | bad-exit | bad-message | wrote
    detail: str = ""


def tiny_config(data: Path, teacher: Path, out: Path) -> dict[str, Any]:
    """A valid config over tests/conftest.py's tiny data (`data/<lang>/<split>.txt`, en and de)
    and tiny teacher that runs to the end in seconds, with most keys spelled out to be mutated."""
    files = {lang: {split: str(data / lang / f"{split}.txt") for split in ("train", "dev", "test")} for lang in ("en", "de")}
    return {
        "output_dir": str(out), "languages": ["en", "de"], "seed": 7, "mixed_precision": "no", "threads": 1,
        "data": {"files": files, "dev_limit": 20, "test_limit": 20, "strict": False, "include_labeled_in_transfer": True},
        "teacher": {"model": str(teacher), "max_length": 32, "epochs": 2, "min_steps": 0, "batch_size": 8, "eval_batch_size": 64,
                    "lr": 3e-3, "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0, "layer": 1,
                    "checkpoint_every": 0},
        "annotate": {"precision": "fp32", "batch_size": 64, "hidden": "fp16", "hidden_dims": 8},
        "students": [{"name": "s", "type": "bilstm", "embedding_dim": 8, "hidden_dim": 8, "dropout": 0.1, "lr_scale": 1.0}],
        "distil": {"mode": "joint", "batch_size": 32, "eval_batch_size": 64, "max_grad_norm": 5.0, "checkpoint_every": 0,
                   "gold_only_baseline": False,
                   "stages": [{"name": "logits", "loss": "logits_mse", "data": "transfer", "train": "all", "epochs": 1,
                               "lr": 1e-3, "patience": 1, "temperature": 1.0},
                              {"name": "gold", "loss": "gold", "data": "labeled", "train": "all", "epochs": 1, "lr": 1e-3}]},
        "eval": {"latency_batch_size": 4, "latency_seq_len": 8, "latency_repeats": 1},
    }


class _Passed(Exception):
    """Raised where `Run.claim` would start writing: the check let the config through."""


def check_only(config: Path, out: Path) -> Outcome:
    """`xdner run CONFIG` up to the moment it would claim the output directory."""
    from unittest import mock

    from accelerate.state import AcceleratorState

    from xtremedistil_ner.cli import main
    from xtremedistil_ner.pipeline import Run

    AcceleratorState._reset_state(reset_partial_state=True)  # each mutation is a fresh process's first Accelerator
    err = io.StringIO()
    try:
        with mock.patch.object(Run, "claim", side_effect=_Passed), contextlib.redirect_stderr(err):
            status = main(["run", str(config), "-q"])
    except _Passed:
        return Outcome("wrote", "files before the claim") if out.exists() else Outcome("passed")
    except BaseException:  # noqa: BLE001 - a traceback is what this looks for
        return Outcome("traceback", traceback.format_exc(limit=-3))
    return _refusal(status, err.getvalue(), out)


def _refusal(status: int, err: str, out: Path) -> Outcome:
    if status != 2:
        return Outcome("bad-exit", f"exit {status}: {err[-500:]}")
    lines = err.strip("\n").split("\n")
    if "Traceback" in err or not lines[0].startswith("xdner: error: ") or any(not ln.startswith("  ") for ln in lines[1:]):
        return Outcome("bad-message", err[-500:])
    if out.exists():
        return Outcome("wrote", str(sorted(p.name for p in out.iterdir())))
    return Outcome("refused", lines[0] if len(lines) == 1 else lines[1].strip())


def run_tiny(config: Path) -> Outcome:
    """`xdner run CONFIG` to the end: a config that passed the check must complete."""
    from accelerate.state import AcceleratorState

    from xtremedistil_ner.cli import main

    AcceleratorState._reset_state(reset_partial_state=True)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(["run", str(config), "-q"])
    except BaseException:  # noqa: BLE001
        return Outcome("traceback", traceback.format_exc(limit=-3))
    return Outcome("completed") if status == 0 else Outcome("late-failure", f"exit {status}: {err.getvalue()[-500:]}")


def cheap_to_run(mutation: Mutation) -> bool:
    """Whether a passing mutation's run stays tiny: no huge counts or sizes (a passing
    `teacher.epochs: 2**63` is valid, just endless)."""
    value = mutation.value
    return not isinstance(value, (int, float)) or isinstance(value, bool) or abs(value) <= 4


def fuzz(base: dict[str, Any], workdir: Path, seed: int, count: int, runs: int) -> tuple[Counter[str], list[str]]:
    """Check `count` mutations of `base` from inside `workdir` (so a relative output_dir lands
    there; an unmutated one is replaced per mutation), then run the first `runs` cheap passing
    ones to the end. Counts per outcome, and one line per failure."""
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        return _fuzz(base, workdir, seed, count, runs)
    finally:
        os.chdir(cwd)


def _output_dir(raw: dict[str, Any], fallback: Path) -> Path:
    """Where the mutated config would write: its output_dir when that is a usable path string."""
    value = raw.get("output_dir")
    return Path(value) if isinstance(value, str) and value.strip() and "\x00" not in value else fallback


def _fuzz(base: dict[str, Any], workdir: Path, seed: int, count: int, runs: int) -> tuple[Counter[str], list[str]]:
    counts: Counter[str] = Counter()
    failures: list[str] = []
    to_run: list[tuple[Mutation, Path]] = []
    for i, mutation in enumerate(mutations(base, seed, count)):
        config = workdir / f"m{i}.yaml"
        raw = mutation.apply(base)
        if raw.get("output_dir") == base["output_dir"]:
            raw["output_dir"] = str(workdir / f"out-{i}")
        out = _output_dir(raw, workdir / f"out-{i}")
        existed = out.exists()
        config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        outcome = check_only(config, workdir / "never" if existed else out)
        counts["tried"] += 1
        counts[outcome.kind] += 1
        if outcome.kind not in ("passed", "refused"):
            failures.append(f"{mutation}: {outcome.kind}: {outcome.detail}")
        elif outcome.kind == "passed" and len(to_run) < runs and cheap_to_run(mutation) and out == workdir / f"out-{i}":
            to_run.append((mutation, config))
    for mutation, config in to_run:
        outcome = run_tiny(config)
        counts["runs"] += 1
        counts[f"run-{outcome.kind}"] += 1
        if outcome.kind != "completed":
            failures.append(f"{mutation}: {outcome.kind}: {outcome.detail}")
    return counts, failures
