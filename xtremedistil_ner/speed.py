"""Batch-inference latency: the same real inputs for every model, eval mode, inference mode,
warm-up first, median and spread over repeats; CUDA timings synchronised. With a time budget
the repeat count adapts, so a grid can hold both sub-millisecond and minute-long cells."""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np
import torch
from xdner_runtime.windows import Window

from .scoring import LogitsFn


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
    fn: LogitsFn,
    ids: torch.Tensor,
    mask: torch.Tensor,
    repeats: int = 10,
    warmup: int = 2,
    budget_s: float | None = None,
    min_repeats: int = 3,
) -> dict[str, float]:
    """Time `fn(ids, mask)`. With `budget_s`, `repeats` is an upper bound: timing stops once
    `min_repeats` runs are done and together took `budget_s`, and warm-up stops after its first
    call once it has used a tenth of the budget, so a cell that takes minutes per call stays
    bounded while fast cells still get many repeats."""
    sync = torch.cuda.synchronize if ids.is_cuda else (lambda: None)

    def once() -> float:
        sync()
        t0 = time.perf_counter()
        fn(ids, mask)
        sync()
        return time.perf_counter() - t0

    spent = 0.0
    for _ in range(warmup):
        spent += once()
        if budget_s is not None and spent >= budget_s / 10:
            break
    times: list[float] = []
    while len(times) < repeats:
        times.append(once())
        if budget_s is not None and len(times) >= min_repeats and sum(times) >= budget_s:
            break
    ms = 1000 * np.asarray(times)
    median = float(np.median(ms))
    return {
        "median_ms": median,
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "p25_ms": float(np.percentile(ms, 25)),
        "p75_ms": float(np.percentile(ms, 75)),
        "sentences_per_s": 1000 * ids.shape[0] / median,
        "repeats": len(times),
        "batch_size": int(ids.shape[0]),
        "seq_len": int(ids.shape[1]),
        "threads": torch.get_num_threads(),
        # Other work on the CPU distorts these timings: the report says so when it did.
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
