"""Length-bucketed batches and padding shared by teacher, cache and student loops."""

from __future__ import annotations

import random
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .encoding import IGNORE, Window


class LengthBatchSampler(Sampler[list[int]]):
    """Batches of similar length (little padding), in shuffled order when training.
    `set_epoch` reshuffles deterministically so a resumed run sees the same batches."""

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        rng = random.Random(self.seed * 1000003 + self.epoch)
        idx = list(range(n))
        rng.shuffle(idx)
        chunk = self.batch_size * 50
        batches: list[list[int]] = []
        for c in range(0, n, chunk):
            part = sorted(idx[c : c + chunk], key=lambda i: self.lengths[i])
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


class WindowDataset(Dataset):
    """Windows as model inputs (with gold labels when they have them)."""

    def __init__(self, windows: Sequence[Window]) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        w = self.windows[i]
        item: dict[str, Any] = {"input_ids": w.input_ids, "index": i}
        if w.labels is not None:
            item["labels"] = w.labels
        return item


def make_collate(pad_id: int) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
    """Pad every per-token field to the batch's longest item; add `attention_mask`."""
    pads = {"input_ids": pad_id, "labels": IGNORE}

    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(it["input_ids"]) for it in items)
        out: dict[str, torch.Tensor] = {}
        for key in items[0]:
            if key == "index":
                out[key] = torch.tensor([it[key] for it in items], dtype=torch.long)
                continue
            first = np.asarray(items[0][key])
            shape = (len(items), longest) + first.shape[1:]
            arr = np.full(shape, pads.get(key, 0), dtype=first.dtype)
            for r, it in enumerate(items):
                v = np.asarray(it[key])
                arr[r, : len(v)] = v
            out[key] = torch.from_numpy(arr)
        if out["input_ids"].dtype != torch.long:
            out["input_ids"] = out["input_ids"].long()
        mask = np.zeros((len(items), longest), dtype=np.int64)
        for r, it in enumerate(items):
            mask[r, : len(it["input_ids"])] = 1
        out["attention_mask"] = torch.from_numpy(mask)
        return out

    return collate
