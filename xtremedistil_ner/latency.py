"""Batch-inference latency: the same real inputs for every model, eval mode, inference mode,
warm-up first, median and spread over repeats; CUDA timings synchronised."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch

from .encoding import Window


def make_batch(windows: Sequence[Window], batch_size: int, seq_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` real windows cut or padded to exactly `seq_len` (cycling if there are fewer)."""
    if not windows:
        raise ValueError("no windows to build a latency batch from")
    ids = torch.full((batch_size, seq_len), pad_id, dtype=torch.long)
    mask = torch.zeros((batch_size, seq_len), dtype=torch.long)
    for r in range(batch_size):
        w = windows[r % len(windows)].input_ids[:seq_len]
        ids[r, : len(w)] = torch.as_tensor(w, dtype=torch.long)
        mask[r, : len(w)] = 1
    return ids, mask


@torch.inference_mode()
def measure(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ids: torch.Tensor,
    mask: torch.Tensor,
    repeats: int = 10,
    warmup: int = 2,
) -> dict[str, float]:
    cuda = ids.is_cuda
    for _ in range(warmup):
        fn(ids, mask)
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(ids, mask)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "median_ms": 1000 * median,
        "min_ms": 1000 * min(times),
        "max_ms": 1000 * max(times),
        "sentences_per_s": ids.shape[0] / median,
        "repeats": repeats,
        "batch_size": int(ids.shape[0]),
        "seq_len": int(ids.shape[1]),
        "threads": torch.get_num_threads(),
    }
