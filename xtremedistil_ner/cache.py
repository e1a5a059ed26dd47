"""The teacher's outputs over the transfer set, computed once and kept on disk.

Per window: its subword ids, the teacher's logits and the hidden states of the layers the
students match (fp16, [tokens, layers, hidden]), in shards of `.npy` files that training
memory-maps. Each shard is written to a temp dir and renamed into place with the sizes and
sha256 of its files; the manifest carries a fingerprint of (teacher, tokenizer, data, layers,
max length) so a rerun reuses the cache only if all match.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import Dataset

from .batching import LengthBatchSampler, WindowDataset, batch_loader
from .encoding import Window
from .errors import XdnerError
from .io import atomic_dir, read_json, verify_manifest, write_json, write_manifest
from .log import progress

MANIFEST = "manifest.json"
SHARD_MANIFEST = "shard.json"
FIELDS = ("input_ids", "offsets", "sent_lang", "logits", "hidden")


class CacheError(XdnerError, RuntimeError):
    """A cache that is missing, incomplete, corrupted or built for other inputs."""


def fingerprint(teacher_id: str, tokenizer_id: str, windows: Sequence[Window], langs: Sequence[str], layers: Sequence[int], max_length: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([teacher_id, tokenizer_id, list(layers), max_length]).encode())
    for w, lang in zip(windows, langs, strict=True):
        h.update(lang.encode())
        h.update(w.input_ids.tobytes())
        h.update(b"|")
    return h.hexdigest()


def estimate_bytes(n_tokens: int, num_labels: int, hidden: int, num_layers: int = 1) -> int:
    return n_tokens * (4 + 2 * num_labels + 2 * hidden * num_layers)


@torch.inference_mode()
def annotate(
    model: torch.nn.Module,
    windows: Sequence[Window],
    langs: Sequence[str],
    layers: Sequence[int],
    out_dir: Path,
    fp: str,
    pad_id: int,
    batch_size: int,
    accelerator: Accelerator,
    shard_size: int = 8192,
) -> dict[str, Any]:
    """Run the teacher once over `windows`; shard k is written by process k % world_size, so
    every window is annotated exactly once however many processes run."""
    out_dir = Path(out_dir)
    lang_names = sorted(set(langs))
    hidden = model.config.hidden_size
    num_labels = model.config.num_labels
    layers = list(layers)
    need = estimate_bytes(sum(len(w) for w in windows), num_labels, hidden, len(layers))
    out_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out_dir).free
    if need > free:
        raise CacheError(
            f"{out_dir}: the transfer cache needs about {need / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB "
            "is free; free space, point output_dir elsewhere, or shrink the transfer set"
        )
    n_shards = max(1, (len(windows) + shard_size - 1) // shard_size)
    model.eval()
    for k in range(accelerator.process_index, n_shards, accelerator.num_processes):
        shard_dir = out_dir / f"shard-{k:05d}"
        if not shard_problems(shard_dir, fp, checksums=True):  # a shard with a flipped byte is rebuilt too
            continue
        lo, hi = k * shard_size, min(len(windows), (k + 1) * shard_size)
        part = windows[lo:hi]
        with atomic_dir(shard_dir) as tmp:
            _write_shard(model, part, [lang_names.index(l) for l in langs[lo:hi]], layers, tmp, pad_id, batch_size, accelerator, f"annotate shard {k + 1}/{n_shards}")
            write_manifest(tmp, SHARD_MANIFEST, files=[f"{f}.npy" for f in FIELDS], fingerprint=fp, windows=hi - lo)
    accelerator.wait_for_everyone()
    manifest = {
        "fingerprint": fp,
        "windows": len(windows),
        "shards": [f"shard-{k:05d}" for k in range(n_shards)],
        "languages": lang_names,
        "hidden_size": hidden,
        "num_labels": num_labels,
        "layers": layers,
    }
    if accelerator.is_main_process:
        write_json(out_dir / MANIFEST, manifest)
    accelerator.wait_for_everyone()
    return manifest


def _write_shard(model, part, lang_ids, layers, tmp: Path, pad_id, batch_size, accelerator: Accelerator, desc: str) -> None:
    lengths = np.array([len(w) for w in part], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    total = int(offsets[-1])
    open_mm = np.lib.format.open_memmap
    ids = open_mm(tmp / "input_ids.npy", mode="w+", dtype=np.int32, shape=(total,))
    logits = open_mm(tmp / "logits.npy", mode="w+", dtype=np.float16, shape=(total, model.config.num_labels))
    hidden = open_mm(tmp / "hidden.npy", mode="w+", dtype=np.float16, shape=(total, len(layers), model.config.hidden_size))
    np.save(tmp / "offsets.npy", offsets)
    np.save(tmp / "sent_lang.npy", np.asarray(lang_ids, dtype=np.int16))
    loader = batch_loader(WindowDataset(part), LengthBatchSampler(lengths, batch_size, shuffle=False), pad_id)
    device = accelerator.device
    for batch in progress(loader, accelerator.is_local_main_process, desc=desc, leave=False):
        with accelerator.autocast():
            out = model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                output_hidden_states=True,
            )
        lg = out.logits.float().cpu().numpy()
        hs = torch.stack([out.hidden_states[k] for k in layers], dim=2).float().cpu().numpy()
        for r, i in enumerate(batch["index"].tolist()):
            a, b = offsets[i], offsets[i + 1]
            ids[a:b] = part[i].input_ids
            logits[a:b] = lg[r, : b - a]
            hidden[a:b] = hs[r, : b - a]
    for arr in (ids, logits, hidden):
        arr.flush()
    del ids, logits, hidden


def shard_problems(shard_dir: Path, fp: str, checksums: bool = False) -> list[str]:
    """What is wrong with one shard, empty if it was built for `fp` and its files match its
    manifest (sizes; with `checksums` also sha256). Shards written before shard manifests listed
    file names (`input_ids` rather than `input_ids.npy`) read as missing files and are rebuilt."""
    meta = Path(shard_dir) / SHARD_MANIFEST
    if not meta.exists():
        return [f"{shard_dir}: unfinished (no {SHARD_MANIFEST})"]
    if read_json(meta).get("fingerprint") != fp:
        return [f"{shard_dir}: built for another teacher, data or layer set"]
    return verify_manifest(shard_dir, SHARD_MANIFEST, checksums)


def is_complete(out_dir: Path, fp: str, verify: bool = True) -> bool:
    """True if the cache at `out_dir` was built for `fp` and every shard checks out (size and,
    with `verify`, sha256); a damaged shard makes this False so the caller rebuilds it."""
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return False
    manifest = read_json(path)
    return manifest.get("fingerprint") == fp and not any(
        shard_problems(Path(out_dir) / s, fp, verify) for s in manifest["shards"]
    )


@dataclass
class _Shard:
    input_ids: np.ndarray
    offsets: np.ndarray
    sent_lang: np.ndarray
    logits: np.ndarray
    hidden: np.ndarray


class TransferCache(Dataset):
    """Memory-mapped view of a finished cache, optionally restricted to some languages and to
    some of its teacher layers (in the order given: a student's stage-1 targets).
    Items carry the window's ids with the teacher's logits and hidden states."""

    def __init__(self, out_dir: Path, languages: Sequence[str] | None = None, layers: Sequence[int] | None = None) -> None:
        out_dir = Path(out_dir)
        if not (out_dir / MANIFEST).exists():
            raise CacheError(f"{out_dir}: no transfer cache here (run `xdner annotate` first)")
        self.manifest = read_json(out_dir / MANIFEST)
        problems = [p for s in self.manifest["shards"] for p in shard_problems(out_dir / s, self.manifest["fingerprint"])]
        if problems:
            raise CacheError(f"{out_dir}: damaged transfer cache: {'; '.join(problems)}; rerun `xdner annotate` to rebuild it")
        cached = self.manifest.get("layers", [])
        missing = sorted(set(layers or []) - set(cached))
        if missing:
            raise CacheError(f"{out_dir}: teacher layers {missing} are not in this cache (it holds {cached}); rerun `xdner annotate`")
        self.layer_index = [cached.index(g) for g in layers] if layers is not None else list(range(len(cached)))
        self.shards = [
            _Shard(**{f: np.load(out_dir / s / f"{f}.npy", mmap_mode="r") for f in FIELDS}) for s in self.manifest["shards"]
        ]
        wanted = None if languages is None else {self.manifest["languages"].index(l) for l in languages if l in self.manifest["languages"]}
        self.index: list[tuple[int, int]] = [
            (k, i) for k, sh in enumerate(self.shards) for i in range(len(sh.offsets) - 1) if wanted is None or int(sh.sent_lang[i]) in wanted
        ]
        if not self.index:
            raise CacheError(f"{out_dir}: no cached windows for languages {list(languages or [])}")

    def lengths(self) -> list[int]:
        return [int(self.shards[k].offsets[i + 1] - self.shards[k].offsets[i]) for k, i in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, j: int) -> dict[str, Any]:
        k, i = self.index[j]
        sh = self.shards[k]
        a, b = int(sh.offsets[i]), int(sh.offsets[i + 1])
        return {
            "input_ids": np.asarray(sh.input_ids[a:b]),
            "teacher_logits": np.asarray(sh.logits[a:b]),
            "teacher_hidden": np.asarray(sh.hidden[a:b][:, self.layer_index]),
            "index": j,
        }

    def token_ids(self) -> np.ndarray:
        """The distinct subword ids of the windows in this view (only its languages' windows,
        so a per-language student's vocabulary holds only its own language's pieces)."""
        parts = [self.shards[k].input_ids[self.shards[k].offsets[i] : self.shards[k].offsets[i + 1]] for k, i in self.index]
        return np.unique(np.concatenate(parts))
