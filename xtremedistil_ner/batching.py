"""Length-bucketed batches and padding shared by teacher, cache and student loops."""

from __future__ import annotations

import random
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Dataset, Sampler
from xdner_runtime.windows import Window

from .encoding import IGNORE


class LengthBatchSampler(Sampler[list[int]]):
    """Batches of similar length (little padding), in shuffled order when training.
    `set_epoch` reshuffles deterministically so a resumed run sees the same batches.

    `batch_size` is global: with `num_replicas` processes every process builds the same global
    batches and keeps every `num_replicas`-th window of each (from `rank`), so one optimizer step
    sees the same windows however many processes share it. With `pad`, a global batch smaller
    than `num_replicas` is repeated until every process has a window (training steps must stay
    in lockstep); without it, a process with nothing to do in a batch skips it (evaluation).

    `max_tokens` (in order only) also caps a batch's padded size, windows x longest: the few
    longest windows come in smaller batches, so the memory of a batch is bounded by that cap and
    not by the longest window the data happens to hold.

    `max_batches` (shuffled only) makes an epoch the first that many batches of its shuffled
    order: a step budget that draws other windows each epoch.

    `groups` with `alpha` (shuffled only) draws an epoch by group, XLM-R's language sampling: of
    its N windows, group g (n_g of them) gets round(N * n_g^alpha / sum n^alpha), at least one.
    A small group's windows come several times (whole copies, the rest drawn without
    replacement), a large group gives a fresh subset each epoch; with one group nothing changes."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0,
        num_replicas: int = 1, rank: int = 0, pad: bool = False, max_tokens: int | None = None,
        max_batches: int | None = None, groups: Sequence[Any] | None = None, alpha: float | None = None,
    ) -> None:
        if max_tokens is not None and shuffle:
            raise ValueError("max_tokens caps in-order batches only")
        if max_batches is not None and not shuffle:
            raise ValueError("max_batches budgets shuffled epochs only")
        if alpha is not None and not shuffle:
            raise ValueError("alpha draws shuffled epochs by group: it needs shuffle")
        if alpha is not None and (groups is None or len(groups) != len(lengths)):
            raise ValueError(f"alpha draws epochs by group: give each of the {len(lengths)} windows its group "
                             f"({'none' if groups is None else len(groups)} given)")
        self.lengths = np.asarray(lengths)
        self.alpha = alpha
        if alpha is not None:
            _, group_of = np.unique(np.asarray(groups), return_inverse=True)
            self.members = [np.flatnonzero(group_of == g).tolist() for g in range(group_of.max() + 1)]
            weights = np.array([len(m) for m in self.members], dtype=np.float64) ** alpha
            self.draws = np.maximum(1, np.round(len(self.lengths) * weights / weights.sum())).astype(int).tolist()
        self.size = len(self.lengths) if alpha is None else sum(self.draws)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.num_replicas = num_replicas
        self.rank = rank
        self.pad = pad
        self.max_batches = max_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable").tolist()
            if self.max_tokens is None:
                return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
            batches, batch = [], []
            for i in order:  # ascending: the window joining a batch is its longest
                if batch and (len(batch) == self.batch_size or (len(batch) + 1) * self.lengths[i] > self.max_tokens):
                    batches.append(batch)
                    batch = []
                batch.append(i)
            return batches + [batch] if batch else batches
        rng = random.Random(self.seed * 1000003 + self.epoch)
        idx = self._epoch_windows(rng)
        rng.shuffle(idx)
        chunk = self.batch_size * 50
        batches: list[list[int]] = []
        for c in range(0, len(idx), chunk):
            part = sorted(idx[c : c + chunk], key=lambda i: self.lengths[i])
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        rng.shuffle(batches)
        return batches[: self.max_batches]

    def _epoch_windows(self, rng: random.Random) -> list[int]:
        """The windows of this epoch, before shuffling: each once, or drawn by group."""
        if self.alpha is None:
            return list(range(len(self.lengths)))
        idx: list[int] = []
        for members, draws in zip(self.members, self.draws):
            whole, rest = divmod(draws, len(members))
            idx += members * whole + rng.sample(members, rest)
        return idx

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches():
            if self.pad and len(batch) < self.num_replicas:
                batch = (batch * self.num_replicas)[: self.num_replicas]
            local = batch[self.rank :: self.num_replicas]
            if local:
                yield local

    def __len__(self) -> int:
        """Global batches per epoch (= this process's steps when `pad`)."""
        if self.max_tokens is not None:
            return len(self._batches())
        whole = (self.size + self.batch_size - 1) // self.batch_size
        return whole if self.max_batches is None else min(whole, self.max_batches)


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


def check_global_batch(batch_size: int, num_processes: int, key: str) -> None:
    """Training batch sizes are global; refuse one that does not split evenly over processes,
    so every process carries the same load and per-process memory is what the config says."""
    if batch_size % num_processes:
        raise ValueError(
            f"{key}={batch_size} is the global batch size and must be divisible by the "
            f"{num_processes} processes (each takes {key} / {num_processes} windows per step)"
        )


def batch_loader(dataset: Dataset, sampler: LengthBatchSampler, pad_id: int) -> DataLoader:
    """A loader over `sampler`'s batches. Its own generator keeps DataLoader from drawing from
    the global torch RNG when an iterator starts, so dropout streams do not depend on how many
    loaders were iterated (a resumed run would otherwise diverge)."""
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=make_collate(pad_id), generator=torch.Generator())


def map_windows(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    windows: Sequence[Window],
    pad_id: int,
    batch_size: int,
    device: torch.device,
    num_replicas: int = 1,
    rank: int = 0,
    progress: Callable[[DataLoader], Iterable[dict[str, torch.Tensor]]] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(window index, `fn(input_ids, attention_mask)` cut to the window's length) for this
    process's share of `windows`, run in batches of similar length (the least padding) with no
    gradient; `progress` wraps the batches (e.g. in a progress bar)."""
    sampler = LengthBatchSampler([len(w) for w in windows], batch_size, shuffle=False, num_replicas=num_replicas, rank=rank)
    loader = batch_loader(WindowDataset(windows), sampler, pad_id)
    for batch in progress(loader) if progress else loader:
        with torch.inference_mode():  # not around the yield: the caller's code runs outside it
            out = fn(batch["input_ids"].to(device), batch["attention_mask"].to(device)).cpu().numpy()
        for row, i in zip(out, batch["index"].tolist()):
            yield i, row[: len(windows[i])]


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def global_batch_loss(loss: torch.Tensor, units: torch.Tensor, accelerator: Accelerator) -> tuple[torch.Tensor, float]:
    """`loss`, a mean over this process's `units` (tokens or labels), rescaled so that DDP's
    average of the processes' gradients is the gradient of the mean over the whole global batch,
    exactly what one process would compute; plus that global mean, for logging."""
    if accelerator.num_processes == 1:
        return loss, loss.item()
    units = units.float()
    total, loss_sum = accelerator.reduce(torch.stack([units, loss.detach().float() * units]), "sum")
    return loss * units * accelerator.num_processes / total, (loss_sum / total).item()
