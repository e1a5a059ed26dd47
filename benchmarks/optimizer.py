"""The optimizer's share of a distillation step: torch's Adam as a loop over tensors, as one
multi-tensor (`foreach`) pass, and as one fused kernel (`fused`, what `training.fused` asks for
on CPU and CUDA), over the parameters of real BiLSTM students whose embedding tables are as large
as joint students' over many languages (a 48-language run's joint 50/200 has 127,712 rows), how
far the fused update drifts from the loop's after 53 steps, and a whole training step with each
(a batch of 64 windows of 40 pieces, the logits loss, every parameter trainable, as in the last
sub-stages of the default schedule). Run it on an idle machine:

    python benchmarks/optimizer.py            # -> benchmarks/results/optimizer/optimizer.{json,md}
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from xtremedistil_ner.threads import configure_threads

THREADS = configure_threads()  # as xdner sets them, before torch loads

import torch  # noqa: E402

from _common import command_line, markdown_table  # noqa: E402  (benchmarks/_common.py: this script's folder is on sys.path)
from xtremedistil_ner.io import write_json, write_text  # noqa: E402
from xtremedistil_ner.students import student_type  # noqa: E402
from xtremedistil_ner.students.base import config_kwargs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "optimizer"
VARIANTS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
SHAPES = [(50, 200, 30_000), (50, 200, 127_712), (50, 200, 250_002), (300, 600, 127_712)]  # embedding, hidden, rows
LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def student(embedding_dim: int, hidden_dim: int, rows: int) -> torch.nn.Module:
    """A BiLSTM student as distillation builds it (e5-small's 384-wide hidden states, 250,002 ids)."""
    kind = student_type("bilstm")
    base = {"labels": LABELS, "vocab_size": rows, "teacher_vocab_size": 250_002, "teacher_hidden_size": 384,
            "max_length": 128, "teacher_layers": [6]}
    torch.manual_seed(0)
    return kind.model_class(kind.config_class(**config_kwargs(base), embedding_dim=embedding_dim, hidden_dim=hidden_dim))


def run_steps(model: torch.nn.Module, variant: dict[str, bool], steps: int) -> tuple[float, list[torch.Tensor]]:
    """Seconds per optimizer step over `steps` steps (after 3 warm-up steps) with the same
    gradients every step, and the parameters after them."""
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    gen = torch.Generator().manual_seed(1)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-2
    optimizer = torch.optim.Adam(params, lr=1e-3, **variant)
    for _ in range(3):
        optimizer.step()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps, [p.detach() for p in params]


def train_steps(model: torch.nn.Module, variant: dict[str, bool], steps: int, batch: int = 64, length: int = 40) -> float:
    """Seconds per whole training step (forward, backward, Adam) over `steps` steps after 3."""
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(5, model.config.vocab_size, (batch, length), generator=gen)  # compact rows, as the id map gives
    target = torch.randn(batch, length, model.config.num_labels, generator=gen)
    model.id_map = torch.arange(model.config.vocab_size)  # read the rows directly
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, **variant)
    model.train()

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(input_ids=ids).logits, target).backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps timed per variant")
    parser.add_argument("--train-steps", type=int, default=20, help="whole training steps timed per variant")
    args = parser.parse_args()
    rows = []
    for emb, hid, vocab in SHAPES:
        model = student(emb, hid, vocab)
        timed = {name: run_steps(model, kw, args.steps) for name, kw in VARIANTS.items()}
        loop = timed["loop"][1]
        drift = max(float((a - b).abs().max()) for a, b in zip(loop, timed["fused"][1]))
        same_foreach = all(torch.equal(a, b) for a, b in zip(loop, timed["foreach"][1]))
        rounds = [{name: train_steps(student(emb, hid, vocab), VARIANTS[name], args.train_steps) for name in order}
                  for order in (("loop", "fused"), ("fused", "loop"))]  # both orders: the first to run pays no warm-up the second skips
        whole = {name: min(r[name] for r in rounds) for name in ("loop", "fused")}
        rows.append({"student": f"{emb}/{hid}", "embedding_rows": vocab, "parameters": sum(p.numel() for p in model.parameters()),
                     **{f"{name}_ms": round(1e3 * t, 2) for name, (t, _) in timed.items()},
                     "fused_speedup": round(timed["loop"][0] / timed["fused"][0], 2),
                     "fused_max_abs_difference": drift, "foreach_identical": same_foreach,
                     **{f"train_step_{name}_ms": round(1e3 * t, 1) for name, t in whole.items()},
                     "train_step_speedup": round(whole["loop"] / whole["fused"], 2)})
        print(rows[-1], flush=True)
    result = {"command": command_line("benchmarks/optimizer.py", sys.argv[1:]), "torch": torch.__version__,
              "machine": f"{platform.processor() or platform.machine()}, {THREADS} threads", "steps": args.steps, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "optimizer.json", result)
    table = markdown_table(["student", "embedding rows", "parameters", "loop (ms/step)", "foreach", "fused", "fused speed-up",
                            f"fused vs loop after {args.steps + 3} steps (max abs)", "foreach identical",
                            "training step, loop (ms)", "training step, fused (ms)", "training step speed-up"],
                           [[r["student"], f"{r['embedding_rows']:,}", f"{r['parameters'] / 1e6:.2f}M", r["loop_ms"], r["foreach_ms"],
                             r["fused_ms"], f"{r['fused_speedup']}x", f"{r['fused_max_abs_difference']:.1e}", r["foreach_identical"],
                             r["train_step_loop_ms"], r["train_step_fused_ms"], f"{r['train_step_speedup']}x"]
                            for r in rows])
    write_text(RESULTS / "optimizer.md", "\n".join([
        "# Adam's step: a loop over tensors, foreach, fused", "", f"Command: `{result['command']}`", "",
        f"torch {torch.__version__}, {result['machine']}. Optimizer alone: the same gradients every step, after 3 "
        f"warm-up steps. Training step: the faster of two rounds (each order once) of {args.train_steps} steps (after 3) of a batch of 64 windows of 40 pieces, "
        "logits MSE, every parameter trainable, dropout on.", "",
        *table, ""]))


if __name__ == "__main__":
    main()
