"""The long fuzz of the up-front config check (#28); tests/test_fuzz_config.py runs the same
fuzzer (benchmarks/_fuzz_config.py) with a bounded count in CI.

    python benchmarks/fuzz_config.py [--count 20000] [--runs 50] [--seed 28] [--out DIR]

Mutates a valid tiny config COUNT times (types, ranges, NaN/inf, missing and extra keys,
unicode, path characters) and checks each through `xdner run` up to the point it would write;
then runs the first RUNS cheap mutations that passed to the end. Writes the counts (mutations
tried, passed, refused, tracebacks, late failures) and one line per failure to
OUT/fuzz-config.{json,md} (default benchmarks/results/fuzz-config/). Offline: the Hub is never
asked (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: a mutated Hub id stays offline

ROOT = Path(__file__).resolve().parents[1]
sys.path[1:1] = [str(ROOT), str(ROOT / "tests")]  # this checkout's package (not another install); the tests' tiny inputs

from _fuzz_config import fuzz, tiny_config  # noqa: E402  (benchmarks/: this script's folder is on sys.path)
from conftest import build_tiny_teacher, make_sentences, write_conll  # noqa: E402


def tiny_inputs(work: Path) -> tuple[Path, Path]:
    """tests/conftest.py's tiny data (en, de) and tiny teacher, built under `work`."""
    data = work / "data"
    for k, lang in enumerate(("en", "de")):
        for split, n in (("train", 120), ("dev", 30), ("test", 30)):
            write_conll(data / lang / f"{split}.txt", make_sentences(n, seed=100 * k + len(split)))
    texts = [" ".join(w for w, _ in s) for s in make_sentences(300, seed=1)]
    return data, build_tiny_teacher(work / "teacher", texts)


def report(counts: dict[str, int], failures: list[str], args: argparse.Namespace, seconds: float) -> str:
    tracebacks = counts.get("traceback", 0) + counts.get("run-traceback", 0)
    lines = [
        "# Fuzz of the up-front config check (#28)", "",
        f"`python benchmarks/fuzz_config.py --count {args.count} --runs {args.runs} --seed {args.seed}`, {seconds:.0f} s.", "",
        "| mutations tried | passed the check | refused (exit 2, one line, nothing written) | tracebacks | other failures "
        "| passing runs | completed | late failures |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {counts.get('tried', 0)} | {counts.get('passed', 0)} | {counts.get('refused', 0)} | {tracebacks} "
        f"| {counts.get('tried', 0) - counts.get('passed', 0) - counts.get('refused', 0) - counts.get('traceback', 0)} "
        f"| {counts.get('runs', 0)} | {counts.get('run-completed', 0)} | {counts.get('run-late-failure', 0)} |", "",
    ]
    return "\n".join(lines + (["## Failures", ""] + [f"- `{f}`" for f in failures] if failures else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="mutations checked")
    parser.add_argument("--runs", type=int, default=50, help="passing mutations run to the end")
    parser.add_argument("--seed", type=int, default=28)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz-config")
    args = parser.parse_args()
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="xdner-fuzz-") as tmp:
        work = Path(tmp)
        data, teacher = tiny_inputs(work)
        (work / "fuzz").mkdir()
        counts, failures = fuzz(tiny_config(data, teacher, work / "fuzz" / "base"), work / "fuzz", args.seed, args.count, args.runs)
    seconds = time.time() - start
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"count": args.count, "runs": args.runs, "seed": args.seed, "seconds": round(seconds, 1),
              "counts": dict(counts), "failures": failures}
    (args.out / "fuzz-config.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (args.out / "fuzz-config.md").write_text(report(dict(counts), failures, args, seconds) + "\n", encoding="utf-8")
    print(report(dict(counts), failures, args, seconds))


if __name__ == "__main__":
    main()
