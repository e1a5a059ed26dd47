"""The latency grid the latency and ONNX benchmarks time every model on, and the check that an
exported graph gives the PyTorch student's logits."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from xdner_runtime.onnx import INPUTS, OUTPUT
from xdner_runtime.windows import Window

from xtremedistil_ner.batching import LengthBatchSampler, WindowDataset, batch_loader
from xtremedistil_ner.scoring import LogitsFn
from xtremedistil_ner.speed import make_batch, measure

Grid = dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]


def make_grid(windows: Sequence[Window], batch_sizes: Sequence[int], seq_lens: Sequence[int], pad_id: int) -> Grid:
    """One `make_batch` per (batch size, length) cell, built once so every model times the
    very same inputs."""
    return {(b, t): make_batch(windows, b, t, pad_id) for t in seq_lens for b in batch_sizes}


def fit_vocab(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """`ids` folded into a smaller vocabulary (id mod `vocab_size`) for a model with another
    tokenizer (an architecture reference): same shapes and masks, and an embedding lookup
    costs the same whichever row it reads."""
    return ids if int(ids.max()) < vocab_size else ids % vocab_size


def time_grid(
    fn: LogitsFn, grid: Grid, device: str | torch.device = "cpu", vocab_size: int | None = None, **timing: Any
) -> Iterator[dict[str, float]]:
    """`measure` on every cell of `grid` (inputs moved to `device`, folded into `vocab_size`
    when given), yielded cell by cell so long grids can report progress."""
    for ids, mask in grid.values():
        if vocab_size is not None:
            ids = fit_vocab(ids, vocab_size)
        yield measure(fn, ids.to(device), mask.to(device), **timing)


def onnx_logits(session: Any) -> LogitsFn:
    """An exported graph as a `LogitsFn` (torch tensors in and out), so `predict_tags` and
    `speed.measure` run it exactly like a student's `logits`."""

    def fn(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {name: t.cpu().numpy().astype(np.int64, copy=False) for name, t in zip(INPUTS, (input_ids, attention_mask))}
        (logits,) = session.run([OUTPUT], feeds)
        return torch.from_numpy(logits)

    return fn


@torch.inference_mode()
def compare_logits(
    reference: LogitsFn, others: Mapping[str, LogitsFn], windows: Sequence[Window], pad_id: int, batch_size: int = 64
) -> dict[str, dict[str, float]]:
    """How far each of `others` (exported graphs) is from `reference` (the PyTorch student) on
    real windows: max |logit difference| and the share of positions with the same argmax, over
    unpadded positions only; the reference runs once for all of them."""
    worst = dict.fromkeys(others, 0.0)
    agree = dict.fromkeys(others, 0)
    total = 0
    sampler = LengthBatchSampler([len(w) for w in windows], batch_size, shuffle=False)
    for batch in batch_loader(WindowDataset(windows), sampler, pad_id):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        real = mask.bool()
        want = reference(ids, mask).float().cpu()
        for name, fn in others.items():
            got = fn(ids, mask).float().cpu()
            worst[name] = max(worst[name], float((got - want).abs()[real].max()))
            agree[name] += int((got.argmax(-1) == want.argmax(-1))[real].sum())
        total += int(real.sum())
    return {name: {"max_abs_logit_diff": worst[name], "argmax_agreement": agree[name] / max(total, 1), "positions": total}
            for name in others}
