"""Helpers of the latency and ONNX benchmarks: adaptive repeat counts, the input grid and vocab
folding, the ONNX session as a logits function (tags identical to PyTorch through
`predict_tags`), export leaving the student in eval mode, and a finished run read back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from xtremedistil_ner.layout import student_parts
from xtremedistil_ner.config import load_config, save_config
from xtremedistil_ner.data.conll import read_conll
from xtremedistil_ner.data.labels import LabelSet
from xtremedistil_ner.encoding import encode, special_ids
from xtremedistil_ner.scoring import logits_fn, predict_tags
from xtremedistil_ner.speed import measure
from xtremedistil_ner.students import XtremeDistilPreTrainedModel, save_student
from xtremedistil_ner.teacher import load_teacher

from conftest import tiny_student

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import FinishedRun, markdown_table  # noqa: E402
from _grid import compare_logits, fit_vocab, make_grid, onnx_logits, time_grid  # noqa: E402

LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def sleeper(seconds: float, calls: list[int]):
    def fn(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        time.sleep(seconds)
        return ids

    return fn


def test_budget_bounds_slow_cells() -> None:
    calls: list[int] = []
    ids = torch.zeros(2, 3, dtype=torch.long)
    out = measure(sleeper(0.02, calls), ids, ids, repeats=50, warmup=5, budget_s=0.05, min_repeats=3)
    # One warm-up call already uses a tenth of the budget; three timed calls exceed it.
    assert out["repeats"] == 3 and len(calls) == 4
    assert out["min_ms"] <= out["p25_ms"] <= out["median_ms"] <= out["p75_ms"] <= out["max_ms"]
    assert out["batch_size"] == 2 and out["seq_len"] == 3
    assert out["sentences_per_s"] == pytest.approx(2000 / out["median_ms"])


def test_fast_cells_repeat_up_to_the_cap_and_no_budget_means_fixed_repeats() -> None:
    ids = torch.zeros(1, 4, dtype=torch.long)
    calls: list[int] = []
    assert measure(sleeper(0.0, calls), ids, ids, repeats=7, warmup=2, budget_s=10.0)["repeats"] == 7
    assert len(calls) == 9
    calls.clear()
    assert measure(sleeper(0.0, calls), ids, ids, repeats=1, warmup=0)["repeats"] == 1 and len(calls) == 1


@pytest.fixture
def windows(tiny_data: Path, tiny_tokenizer):
    return encode(read_conll(tiny_data / "en" / "test.txt", "en"), tiny_tokenizer, 16)


def test_grid_folds_ids_for_smaller_vocabularies(windows, tiny_tokenizer) -> None:
    pad = special_ids(tiny_tokenizer)[2]
    grid = make_grid(windows, [1, 4], [8, 12], pad)
    assert [ids.shape for ids, _ in grid.values()] == [(1, 8), (4, 8), (1, 12), (4, 12)]
    ids = grid[(4, 12)][0]
    assert fit_vocab(ids, len(tiny_tokenizer)) is ids
    folded = fit_vocab(ids, 7)
    assert int(folded.max()) < 7 and torch.equal(folded, ids % 7)

    seen: list[int] = []

    def fn(i: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        seen.append(int(i.max()))
        return i

    cells = list(time_grid(fn, grid, vocab_size=7, repeats=1, warmup=0))
    assert [(c["batch_size"], c["seq_len"]) for c in cells] == list(grid)
    assert max(seen) < 7


def dropout_student(tokenizer, max_length: int = 16) -> XtremeDistilPreTrainedModel:
    """An untrained student with real dropout, so training mode would change its outputs."""
    vocab, pad = len(tokenizer), special_ids(tokenizer)[2]
    kept = np.array([i for i in range(vocab) if i != pad])
    return tiny_student(LABELS, kept, pad, vocab, dropout=0.5, max_length=max_length).eval()


def test_onnx_logits_give_pytorchs_tags(tmp_path: Path, tiny_data: Path, tiny_tokenizer, windows) -> None:
    pytest.importorskip("onnxruntime")
    from accelerate import Accelerator

    from xdner_runtime.onnx import session as onnx_session

    from xtremedistil_ner.export import export_onnx

    student = dropout_student(tiny_tokenizer)
    path = export_onnx(student, tmp_path / "m.onnx")
    assert not any(m.training for m in student.modules()), "export must leave the student in eval mode"
    session = onnx_session(path, threads=1)
    assert session.get_session_options().intra_op_num_threads == 1
    fn = onnx_logits(session)
    pad = special_ids(tiny_tokenizer)[2]
    sents = read_conll(tiny_data / "en" / "test.txt", "en")
    id2label = dict(enumerate(LABELS))
    acc = Accelerator(cpu=True)
    assert predict_tags(fn, sents, windows, id2label, pad, 8, acc) == predict_tags(logits_fn(student), sents, windows, id2label, pad, 8, acc)
    diff = compare_logits(logits_fn(student), {"onnx": fn}, windows, pad, batch_size=8)["onnx"]
    assert diff["max_abs_logit_diff"] <= 1e-4 and diff["argmax_agreement"] == 1.0
    assert diff["positions"] == sum(len(w) for w in windows)


@pytest.fixture
def run_dir(tmp_path: Path, tiny_data: Path, tiny_teacher: Path, tiny_tokenizer) -> Path:
    """A finished run: config, teacher, a joint student saved without its tokenizer (as older
    checkpoints are) and a per-language one with it."""
    run_dir = tmp_path / "run"
    cfg = load_config(None, [f"output_dir={run_dir}", "languages=[en,de]"])
    cfg.data.files = {l: {"test": str(tiny_data / l / "test.txt")} for l in ("en", "de")}
    save_config(cfg, run_dir / "config.yaml")
    teacher, _ = load_teacher(str(tiny_teacher), LabelSet.from_list(LABELS))
    teacher.save_pretrained(run_dir / "teacher")
    tiny_tokenizer.save_pretrained(run_dir / "teacher")
    save_student(dropout_student(tiny_tokenizer), run_dir / "students" / "s" / "joint" / "model", tiny_tokenizer)
    save_student(dropout_student(tiny_tokenizer), run_dir / "students" / "s" / "de" / "model", tiny_tokenizer)
    return run_dir


def test_finished_run_read_back(tmp_path: Path, run_dir: Path, tiny_tokenizer) -> None:
    joint = run_dir / "students" / "s" / "joint" / "model"
    run = FinishedRun.open(run_dir)
    assert run.labels.tags == LABELS and run.load_teacher().config.num_labels == len(LABELS)
    assert run.final_students() == {"s": joint, "s/de": run_dir / "students" / "s" / "de" / "model"}
    assert student_parts(joint) == (run_dir.resolve(), "s") and student_parts(tmp_path) == (None, tmp_path.name)
    sents = run.test_sentences(limit=5)
    assert [s.lang for s in sents] == ["en"] * 5 + ["de"] * 5
    assert len(run.test_sentences(languages=["de"])) == 30


def test_latency_refuses_lengths_beyond_the_runs_windows(run_dir: Path) -> None:
    root = Path(__file__).resolve().parents[1]  # the script and the package beside it
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "latency.py"), "--run", str(run_dir), "--seq-lens", "32,256"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 2 and "--seq-lens [256] exceed the runs' teacher.max_length (128)" in proc.stderr


def test_markdown_table() -> None:
    assert markdown_table(("a", "b"), [(1, "x")]) == ["| a | b |", "|---|---|", "| 1 | x |"]
