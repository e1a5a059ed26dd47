"""`xdner demo`: the whole pipeline offline on the embedded e5-small teacher and synthetic
multilingual data, sized to finish in about ten minutes on two CPU cores."""

from __future__ import annotations

import argparse
import logging
import shlex
import time
from pathlib import Path
from typing import Sequence

from .config import (
    MIN_TEACHER_STEPS,
    DataConfig,
    DistilConfig,
    EvalConfig,
    RunConfig,
    StageConfig,
    StudentConfig,
    TeacherConfig,
)

logger = logging.getLogger(__name__)

BANNER = """\
xdner demo: SYNTHETIC demo data (faker names + sentence templates in {n} languages), generated in
{data}. It shows the pipeline working end to end; it is not a benchmark. For real data, write a
run config as in the README ("Running on real data") and run `xdner run CONFIG`.
"""


def demo_config(out_dir: Path, quick: bool, languages: Sequence[str]) -> tuple[RunConfig, dict[str, int]]:
    """Sizes chosen from measured 2-core throughput (e5-small trains ~30 sentences/s, annotates
    ~100/s): the full demo stays near ten minutes; `quick` is a smoke test of a minute or two."""
    if quick:
        sizes = dict(n_train=60, n_dev=8, n_test=8, n_transfer=24)
        # A smoke test: a teacher that learns something in 69 steps at a high learning rate (the
        # budget floor would make it 550 and minutes longer; the up-front check says it is short).
        teacher_epochs, teacher_min_steps, teacher_lr, rep, logits, gold = 3, 0, 5e-4, 1, 1, 1
    else:
        sizes = dict(n_train=200, n_dev=60, n_test=100, n_transfer=500)
        teacher_epochs, teacher_min_steps, teacher_lr, rep, logits, gold = 5, MIN_TEACHER_STEPS, 1.5e-4, 2, 1, 2
    stages = [
        StageConfig("representation", "representation", "transfer", ["embeddings", "encoder", "projection"], rep, 2e-3, 1),
        StageConfig("logits", "logits_mse", "transfer", "gradual", logits, 2e-3, 1),
        StageConfig("gold", "gold", "labeled", "gradual", gold, 1e-3, 1),
    ]
    cfg = RunConfig(
        output_dir=str(out_dir / "run"),
        languages=list(languages),
        data=DataConfig(synthetic=True),
        teacher=TeacherConfig(max_length=64, epochs=teacher_epochs, min_steps=teacher_min_steps, batch_size=16, eval_batch_size=64,
                              lr=teacher_lr),
        students=[StudentConfig("bilstm-50-200", "bilstm", 50, 200)],
        distil=DistilConfig(batch_size=32, eval_batch_size=128, stages=stages),
        eval=EvalConfig(latency_repeats=3 if quick else 10),
    )
    return cfg, sizes


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`xdner demo`, handled by `run_demo`."""
    p = subparsers.add_parser("demo", help="the whole pipeline offline on synthetic multilingual data (~10 min on 2 CPUs)")
    p.add_argument("--output-dir", type=Path, default=Path("xdner-demo"), help="where the demo's data, teacher and outputs go")
    p.add_argument("--quick", action="store_true", help="a much smaller run (for smoke tests)")
    p.set_defaults(handler=run_demo)
    return p


def run_demo(args: argparse.Namespace) -> int:
    from .demo_data import DEFAULT_DEMO_LANGUAGES, generate_demo_corpus  # faker, and torch with the
    from .pipeline import Run  # pipeline: only once the demo runs, so `xdner --help` does without them

    out_dir, quick = args.output_dir, args.quick
    cfg, sizes = demo_config(out_dir, quick, DEFAULT_DEMO_LANGUAGES)
    data_dir = out_dir / "data"
    command = shlex.join(["xdner", "demo", "--output-dir", str(out_dir), *(["--quick"] if quick else [])])
    t0 = time.time()
    paths = generate_demo_corpus(data_dir, cfg.languages, **sizes, command=command)
    logger.warning(BANNER.format(n=len(cfg.languages), data=data_dir))
    cfg.data.files = {lang: {s: str(p[s]) for s in ("train", "dev", "test")} for lang, p in paths.items()}
    cfg.data.transfer_files = {lang: [str(p["transfer"])] for lang, p in paths.items()}
    run = Run(cfg, command=command)
    report = run.run_all()
    assert report is not None
    print((run.root / "report.md").read_text(encoding="utf-8"))
    logger.info(f"demo finished in {time.time() - t0:.0f} s; report: {run.root / 'report.md'}")
    return 0
