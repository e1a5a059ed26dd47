"""Wall time of one distillation stage in 1 process vs N data-parallel processes (issue #4).

Reuses a finished run's teacher and transfer cache (linked, not copied) and runs `xdner distil`
with one student and one stage — logits on the transfer set, all parameters, one epoch, the same
global batch — once in a single process and once under `torchrun` with N processes (gloo on CPU,
NCCL on GPUs). The CPU threads are split evenly (a 2-core machine: 1 process x 2 threads vs 2
processes x 1 thread), so the comparison is what a user sees on the same machine.

    python benchmarks/distributed_timing.py --run runs/wikiann6-lowres --processes 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from xtremedistil_ner.io import read_json, write_json, write_text
from _common import command_line  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.report import machine_description

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def stage_config(run: Path, out: Path, student: dict, epochs: int, batch_size: int) -> Path:
    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    cfg.update(output_dir=str(out), students=[student])
    cfg["distil"].update(
        batch_size=batch_size, checkpoint_every=0,
        stages=[{"name": "logits", "loss": "logits_mse", "data": "transfer", "train": "all", "epochs": epochs, "lr": 1e-3}],
    )
    out.mkdir(parents=True)
    for part in ("teacher", "cache"):
        (out / part).symlink_to((run / part).resolve())
    path = out / "stage.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def time_stage(config: Path, processes: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cli = ["-m", "xtremedistil_ner.cli", "distil", "--config", str(config)]
    if processes == 1:
        cmd = [sys.executable, *cli]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *cli]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    out = Path(yaml.safe_load(config.read_text(encoding="utf-8"))["output_dir"])
    (progress_path,) = out.glob("students/*/joint/progress.json")
    progress = read_json(progress_path)
    (stage,) = progress["history"]
    return {
        "processes": processes,
        "threads_per_process": threads,
        "stage_seconds": stage["seconds"],
        "command_seconds": round(wall, 1),
        "epochs": stage["epochs"],
        "final_dev_macro_f1": progress["final_dev"]["macro"]["f1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished run directory (teacher + transfer cache)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--student", default="{name: bilstm-50-200, type: bilstm, embedding_dim: 50, hidden_dim: 200}")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64, help="global windows per optimizer step")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="CPU threads split over the processes")
    parser.add_argument("--name", default="distributed-cpu")
    args = parser.parse_args()
    student = yaml.safe_load(args.student)
    results = []
    with tempfile.TemporaryDirectory(prefix="xdner-dist-") as tmp:
        for n in args.processes:
            config = stage_config(args.run, Path(tmp) / f"p{n}", student, args.epochs, args.batch_size)
            results.append(time_stage(config, n, max(1, args.cores // n)))
            print(json.dumps(results[-1]), flush=True)
    windows = read_json(args.run / "cache" / "manifest.json")["windows"]
    base = results[0]["stage_seconds"]
    for r in results:
        r["windows_per_s"] = round(windows * args.epochs / r["stage_seconds"], 1)
        r["speedup_vs_first"] = round(base / r["stage_seconds"], 2)
    report = {"command": command_line("benchmarks/distributed_timing.py", sys.argv[1:]), "machine": machine_description(), "run": str(args.run), "student": student,
              "transfer_windows": windows, "global_batch_size": args.batch_size, "results": results}
    write_json(RESULTS / f"{args.name}.json", report)
    lines = [
        "# One distillation stage: 1 vs N processes", "",
        f"Command: `{report['command']}`", "", f"Machine: {report['machine']}", "",
        f"Stage: logits (MSE) on {windows:,} transfer windows, all parameters, {args.epochs} epoch(s), global batch "
        f"{args.batch_size}, student `{student['name']}`; the stage time includes its dev evaluation.", "",
        "| processes | threads each | stage s | windows/s | speedup | whole command s | final dev macro F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['processes']} | {r['threads_per_process']} | {r['stage_seconds']:.1f} | {r['windows_per_s']:.0f} | "
              f"{r['speedup_vs_first']:.2f}x | {r['command_seconds']:.1f} | {r['final_dev_macro_f1']:.2f} |" for r in results]
    write_text(RESULTS / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
