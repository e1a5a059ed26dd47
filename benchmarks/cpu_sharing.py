"""Training speed alone and beside a second run on the same cores (issue #29, item 4).

Each worker trains a 50/200-shaped BiLSTM student (compact vocabulary 30,000 x 50, BiLSTM 200,
projection to 384, 7 labels; batch 64 x 40; Adam; projection MSE + cross-entropy), the step
whose speed collapsed 33x when two runs shared two cores. A setting is an environment (thread
count, OpenMP wait policy, spin count) applied before the worker imports torch; `package`
applies nothing and lets `xtremedistil_ner.threads` choose, as `xdner` does.

For each setting the script times one worker alone, then two side by side over the same wall
window (both start at the same instant; steps are counted after a warm-up), and writes
`results/cpu-sharing/cpu-sharing.{json,md}`. Run it on an otherwise idle machine:

    python benchmarks/cpu_sharing.py --seconds 12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS", "XDNER_THREADS")

# name -> environment; "package" adds nothing: the package's own defaults decide.
SETTINGS: dict[str, dict[str, str]] = {
    "torch-default": {},
    "omp-passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one-thread": {"OMP_NUM_THREADS": "1"},
    "spin-10k": {"GOMP_SPINCOUNT": "10000"},
    "spin-1k": {"GOMP_SPINCOUNT": "1000"},
    "package": {},
}


def setting_env(name: str) -> dict[str, str]:
    """A named setting's environment; `spin-N` is GOMP_SPINCOUNT=N for any N."""
    if name.startswith("spin-") and name[5:].isdigit():
        return {"GOMP_SPINCOUNT": name[5:]}
    if name not in SETTINGS:
        raise SystemExit(f"unknown setting {name!r}; known: {', '.join(SETTINGS)} or spin-N")
    return SETTINGS[name]


def worker(start_at: float, warmup: float, seconds: float, use_package: bool) -> dict[str, float]:
    """Steps/s between `start_at + warmup` and `start_at + warmup + seconds`."""
    if use_package:
        from xtremedistil_ner.threads import configure_threads

        configure_threads()
    import torch

    from xtremedistil_ner.students.configuration_xtremedistil import BiLSTMStudentConfig
    from xtremedistil_ner.students.modeling_xtremedistil import BiLSTMForTokenClassification

    torch.manual_seed(0)
    labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    config = BiLSTMStudentConfig(vocab_size=30_000, teacher_vocab_size=30_000, teacher_hidden_size=384, teacher_layers=[6],
                                 embedding_dim=50, hidden_dim=200, id2label=dict(enumerate(labels)),
                                 label2id={l: i for i, l in enumerate(labels)})
    model = BiLSTMForTokenClassification(config).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ids = torch.randint(2, 30_000, (64, 40))
    target = torch.randn(64, 40, 384)
    gold = torch.randint(0, 7, (64, 40))

    def step() -> None:
        out = model(input_ids=ids, labels=gold, output_projections=True)
        loss = out.loss + torch.nn.functional.mse_loss(out.projections[0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    while time.time() < start_at:
        time.sleep(0.005)
    t_count, t_end = start_at + warmup, start_at + warmup + seconds
    steps, t_first = 0, None
    while True:
        step()
        now = time.time()
        if now >= t_count and t_first is None:
            t_first = now
            continue
        if t_first is not None:
            steps += 1
            if now >= t_end:
                break
    return {"steps_per_s": steps / (now - t_first), "threads": torch.get_num_threads(),
            "wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "spincount": os.environ.get("GOMP_SPINCOUNT", "")}


def launch(setting: str, n: int, warmup: float, seconds: float) -> list[dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update(setting_env(setting))
    start_at = time.time() + 8.0  # time to import torch in every process
    cmd = [sys.executable, __file__, "--worker", str(start_at), str(warmup), str(seconds)] + (["--package"] if setting == "package" else [])
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"{setting}: worker failed ({p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated, from: " + ", ".join(SETTINGS))
    ap.add_argument("--seconds", type=float, default=12.0, help="timed window per measurement")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=2, help="alternate alone/shared measurements this many times")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cpu-sharing")
    ap.add_argument("--note", default="", help="how the machine was (recorded with the results)")
    args = ap.parse_args()
    rows = {}
    for setting in args.settings.split(","):
        alone, shared, info = [], [], {}
        for _ in range(args.repeats):
            a = launch(setting, 1, args.warmup, args.seconds)
            s = launch(setting, 2, args.warmup, args.seconds)
            alone.append(a[0]["steps_per_s"])
            shared += [r["steps_per_s"] for r in s]
            info = {k: a[0][k] for k in ("threads", "wait_policy", "spincount")}
        best_alone = max(alone)
        rows[setting] = {**info, "env": setting_env(setting), "alone": alone, "shared": shared,
                         "alone_steps_per_s": round(best_alone, 2), "shared_steps_per_s": round(sum(shared) / len(shared), 2),
                         "slowdown_shared": round(best_alone / (sum(shared) / len(shared)), 2)}
        print(f"{setting:14s} alone {best_alone:6.2f} steps/s   side by side {rows[setting]['shared_steps_per_s']:6.2f} "
              f"each  ({rows[setting]['slowdown_shared']:.2f}x slower)", flush=True)
    base = rows.get("torch-default", {}).get("alone_steps_per_s")
    for r in rows.values():
        r["alone_vs_torch_default"] = round(r["alone_steps_per_s"] / base, 3) if base else None
    args.out.mkdir(parents=True, exist_ok=True)
    from _common import command_line  # here, not at the top: the workers (this script) import nothing of the package

    argv = [a for i, a in enumerate(sys.argv[1:]) if a != "--note" and sys.argv[i] != "--note"]
    record = {"command": command_line("benchmarks/cpu_sharing.py", argv), "cpus": len(os.sched_getaffinity(0)),
              "note": args.note, "seconds": args.seconds, "warmup": args.warmup, "repeats": args.repeats, "settings": rows}
    (args.out / "cpu-sharing.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# Training speed alone and beside a second run", "",
             f"`{record['command']}` on {record['cpus']} CPUs. {args.note}".rstrip(), "",
             "A 50/200-shaped BiLSTM training step (batch 64 x 40, Adam). *Alone*: the best of the repeats; "
             "*side by side*: the mean of both workers over every repeat; *slowdown*: alone / side by side (2x is a fair share).", "",
             "| setting | environment | threads | alone steps/s | vs torch default | side by side steps/s each | slowdown |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        env = ", ".join(f"{k}={v}" for k, v in r["env"].items()) or ("xtremedistil_ner.threads" if name == "package" else "none")
        lines.append(f"| {name} | {env} | {r['threads']} | {r['alone_steps_per_s']:.2f} | {r['alone_vs_torch_default'] or 0:.3f} | "
                     f"{r['shared_steps_per_s']:.2f} | {r['slowdown_shared']:.2f}x |")
    (args.out / "cpu-sharing.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), "--package" in sys.argv)))
    else:
        main()
