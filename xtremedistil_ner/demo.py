"""`xdner demo`: the whole pipeline offline on the embedded e5-small teacher and synthetic
multilingual data, sized to finish in about ten minutes on two CPU cores."""

from __future__ import annotations

import time
from pathlib import Path

from .config import DistilConfig, RunConfig, StageConfig, StudentConfig, TeacherConfig
from .demo_data import DEFAULT_DEMO_LANGUAGES, generate_demo_corpus
from .pipeline import Run

BANNER = """\
xdner demo: SYNTHETIC demo data (faker names + sentence templates in {n} languages), generated in
{data}. It shows the pipeline working end to end; it is not a benchmark. For real data, see the
README: `xdner run languages/...` on WikiANN from the Hub or on your own CoNLL files.
"""


def demo_config(out_dir: Path, quick: bool) -> tuple[RunConfig, dict[str, int]]:
    sizes = dict(n_train=40, n_dev=20, n_test=20, n_transfer=60) if quick else dict(n_train=250, n_dev=80, n_test=100, n_transfer=700)
    epochs = 1 if quick else 2
    stages = [
        StageConfig("representation", "representation", "transfer", ["embeddings", "encoder", "projection"], epochs, 2e-3),
        StageConfig("logits", "logits_mse", "transfer", "gradual", 1 if quick else 2, 2e-3),
        StageConfig("gold", "gold", "labeled", "gradual", 1 if quick else 2, 1e-3),
    ]
    cfg = RunConfig(
        output_dir=str(out_dir / "run"),
        languages=list(DEFAULT_DEMO_LANGUAGES),
        teacher=TeacherConfig(max_length=64, epochs=epochs + 1, batch_size=16, eval_batch_size=64, lr=1e-4, warmup_ratio=0.1),
        students=[StudentConfig("bilstm-300-600", "bilstm", 300, 600), StudentConfig("bilstm-50-200", "bilstm", 50, 200)],
        distil=DistilConfig(batch_size=32, eval_batch_size=128, stages=stages),
    )
    return cfg, sizes


def run_demo(out_dir: Path, quick: bool = False) -> dict:
    out_dir = Path(out_dir)
    cfg, sizes = demo_config(out_dir, quick)
    data_dir = out_dir / "data"
    t0 = time.time()
    paths = generate_demo_corpus(data_dir, cfg.languages, **sizes)
    print(BANNER.format(n=len(cfg.languages), data=data_dir), flush=True)
    cfg.data.files = {lang: {s: str(p[s]) for s in ("train", "dev", "test")} for lang, p in paths.items()}
    cfg.data.transfer_files = {lang: [str(p["transfer"])] for lang, p in paths.items()}
    run = Run(cfg, command=f"xdner demo --output-dir {out_dir}" + (" --quick" if quick else ""))
    report = run.run_all()
    assert report is not None
    print((run.out / "report.md").read_text(encoding="utf-8"))
    print(f"demo finished in {time.time() - t0:.0f} s; report: {run.out / 'report.md'}", flush=True)
    return report
