"""The teacher's outputs over the transfer set, computed once and kept on disk.

Per window: its subword ids, the teacher's logits (fp16) and the hidden states of the layers the
students match, in shards of `.npy` files that training memory-maps. The hidden states dominate
the bytes, so `annotate.hidden` / `hidden_dims` choose how they are kept: fp16 [tokens, layers,
width], or int8 codes with one fp16 scale per token and layer, either of the full width or of
the coefficients in a principal-component basis of each layer (`basis/`, fitted once on the
transfer set). Readers reconstruct fp32 states, so the losses never see the format. Each shard
is written to a temp dir and renamed into place with the sizes and sha256 of its files; the
manifest carries a fingerprint of (teacher, tokenizer, data, layers, max length, annotate
settings) so a rerun reuses the cache only if all match.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import mmap
import resource
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import Dataset
from transformers import PreTrainedModel
from xdner_runtime.windows import Window

from .batching import LengthBatchSampler, WindowDataset, batch_loader
from .config import AnnotateConfig
from .errors import XdnerError
from .io import ArtifactError, atomic_dir, damaged, first_of, read_json, verify_manifest, write_json, write_manifest
from .log import progress
from .teacher import annotation_forward, resolve_precision

MANIFEST = "manifest.json"
SHARD_MANIFEST = "shard.json"
BASIS = "basis"
FIELDS = ("input_ids", "offsets", "sent_lang", "logits", "hidden")
BASIS_SAMPLE = 1024  # windows the principal components are fitted on, spread over the transfer set

# A teacher forward for annotation: (input_ids, attention_mask) -> (logits, hidden_states).
Forward = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, tuple[torch.Tensor, ...]]]
# The transfer set's windows with their languages, in order: each call reads them afresh.
Pairs = Callable[[], Iterable[tuple[Window, str]]]


class CacheError(XdnerError, RuntimeError):
    """A cache that is missing, incomplete, corrupted or built for other inputs."""


@dataclass(frozen=True)
class Scan:
    """One pass over the transfer set: the cache fingerprint of (teacher, tokenizer, windows,
    layers, max length, stored format), a digest of the windows alone, the set's sizes, and
    `sample`: at most BASIS_SAMPLE windows spread evenly over it, which the hidden-state basis is
    fitted on (so annotate reads the set twice, not three times). No other window is kept."""

    fingerprint: str
    content: str
    windows: int
    tokens: int
    languages: list[str]
    sample: list[Window] = field(default_factory=list, repr=False, compare=False)


class _Spread:
    """Every `step`-th window of a stream of unknown length, `step` doubling whenever 2 x BASIS_SAMPLE
    are held, so between BASIS_SAMPLE and twice that many stay spread over all of it."""

    def __init__(self) -> None:
        self.step, self.seen, self.kept = 1, 0, []

    def add(self, w: Window) -> None:
        if self.seen % self.step == 0:
            self.kept.append(w)
            if len(self.kept) == 2 * BASIS_SAMPLE:
                self.kept, self.step = self.kept[::2], 2 * self.step
        self.seen += 1

    def sample(self) -> list[Window]:
        picks = np.unique(np.linspace(0, len(self.kept) - 1, min(BASIS_SAMPLE, len(self.kept))).round().astype(int))
        return [self.kept[i] for i in picks]


class _Digest:
    """sha256 of windows with their languages, fed as they stream past."""

    def __init__(self, header: bytes = b"") -> None:
        self.h = hashlib.sha256(header)
        self.windows = self.tokens = 0
        self.languages: set[str] = set()

    def add(self, w: Window, lang: str) -> None:
        self.h.update(lang.encode())
        self.h.update(w.input_ids.tobytes())
        self.h.update(b"|")
        self.windows += 1
        self.tokens += len(w)
        self.languages.add(lang)


def scan(teacher_id: str, tokenizer_id: str, pairs: Iterable[tuple[Window, str]], layers: Sequence[int], max_length: int,
         fmt: AnnotateConfig = AnnotateConfig()) -> Scan:
    keyed = _Digest(json.dumps([teacher_id, tokenizer_id, list(layers), max_length, stored_format(fmt)]).encode())
    content, spread = _Digest(), _Spread()
    for w, lang in pairs:
        keyed.add(w, lang)
        content.add(w, lang)
        spread.add(w)
    return Scan(keyed.h.hexdigest(), content.h.hexdigest(), keyed.windows, keyed.tokens, sorted(keyed.languages), spread.sample())


def bytes_per_token(num_labels: int, hidden: int, num_layers: int, fmt: AnnotateConfig) -> int:
    """Id, fp16 logits and the kept hidden states of one token."""
    width = min(fmt.hidden_dims or hidden, hidden)
    per_layer = 2 * width if fmt.hidden == "fp16" else width + 2  # int8 codes + an fp16 scale
    return 4 + 2 * num_labels + per_layer * num_layers


def stored_format(fmt: AnnotateConfig) -> dict[str, Any]:
    """The annotate settings that change what the cache holds (not how fast it was written)."""
    return {k: v for k, v in dataclasses.asdict(fmt).items() if k not in ("batch_size", "batch_tokens", "compile")}


def shard_fields(fmt: AnnotateConfig) -> tuple[str, ...]:
    return FIELDS + (("hidden_scale",) if fmt.hidden == "int8" else ())


def annotate(
    model: PreTrainedModel,
    pairs: Pairs,
    transfer: Scan,
    layers: Sequence[int],
    out_dir: Path,
    pad_id: int,
    batch_size: int,
    accelerator: Accelerator,
    shard_size: int = 8192,
    fmt: AnnotateConfig = AnnotateConfig(),
) -> dict[str, Any]:
    """Run the teacher once over the windows `pairs()` streams (`transfer` is its scan) at
    `fmt.precision` (int8 quantises `model` in place). The stream is read shard by shard, so memory
    holds one shard's windows however large the set; shard k is written by process k % world_size,
    so every window is annotated exactly once however many processes run."""
    out_dir, fp = Path(out_dir), transfer.fingerprint
    fmt = dataclasses.replace(fmt, precision=resolve_precision(fmt.precision, accelerator.device))
    lang_names = transfer.languages
    num_labels, hidden = model.config.num_labels, model.config.hidden_size
    layers = list(layers)
    _check_space(out_dir, transfer.tokens * bytes_per_token(num_labels, hidden, len(layers), fmt))
    forward = annotation_forward(model, fmt.precision, accelerator, fmt.compile)
    codec = Codec(fmt, hidden, _basis(forward, transfer, layers, out_dir, pad_id, batch_size, accelerator, hidden, fmt))
    n_shards = max(1, (transfer.windows + shard_size - 1) // shard_size)
    stream, seen = iter(pairs()), _Digest()
    for k in range(n_shards):
        part = list(itertools.islice(stream, shard_size))
        for w, lang in part:
            seen.add(w, lang)
        shard_dir = out_dir / f"shard-{k:05d}"
        if k % accelerator.num_processes != accelerator.process_index or not shard_problems(shard_dir, fp, checksums=True):
            continue  # another process's shard, or one already written (a shard with a flipped byte is rebuilt)
        with atomic_dir(shard_dir) as tmp:
            _write_shard(forward, [w for w, _ in part], [lang_names.index(l) for _, l in part], layers, tmp, pad_id, batch_size,
                         accelerator, num_labels, codec, f"annotate shard {k + 1}/{n_shards}")
            write_manifest(tmp, SHARD_MANIFEST, files=[f"{f}.npy" for f in shard_fields(fmt)], fingerprint=fp, windows=len(part))
    for w, lang in stream:
        seen.add(w, lang)
    if seen.h.hexdigest() != transfer.content:
        raise CacheError(f"{out_dir}: the transfer set changed while it was annotated (its files were edited since the run "
                         "read them); rerun `xdner annotate` to annotate it as it is now")
    accelerator.wait_for_everyone()
    manifest = {
        "fingerprint": fp, "windows": transfer.windows, "shards": [f"shard-{k:05d}" for k in range(n_shards)],
        "languages": lang_names, "hidden_size": hidden, "num_labels": num_labels, "layers": layers,
        "format": stored_format(fmt), "compiled": fmt.compile, "bytes_per_token": bytes_per_token(num_labels, hidden, len(layers), fmt),
    }
    if codec.basis is not None:
        manifest["explained_variance"] = read_json(out_dir / BASIS / MANIFEST_BASIS)["explained_variance"]
    if accelerator.is_main_process:
        write_json(out_dir / MANIFEST, manifest)
    accelerator.wait_for_everyone()
    return manifest


def _check_space(out_dir: Path, need: int) -> None:
    """Refuse before the teacher's pass, not midway, when the cache cannot fit on its disk."""
    out_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out_dir).free
    if need > free:
        raise CacheError(
            f"{out_dir}: the transfer cache needs about {need / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB "
            "is free; free space, point output_dir elsewhere, store less (annotate.hidden: int8, annotate.hidden_dims), "
            "or shrink the transfer set"
        )


MANIFEST_BASIS = "basis.json"


class Codec:
    """Hidden states [tokens, layers, width] to the stored arrays and back (fp32)."""

    def __init__(self, fmt: AnnotateConfig, hidden: int, basis: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.fmt, self.hidden, self.basis = fmt, hidden, basis  # basis: (components [L, D, H], mean [L, H])

    @property
    def width(self) -> int:
        return self.hidden if self.basis is None else self.basis[0].shape[1]

    def encode(self, states: torch.Tensor) -> dict[str, np.ndarray]:
        """`states` [tokens, layers, hidden] (fp32) -> the shard's `hidden` (and `hidden_scale`)."""
        if self.basis is not None:
            comps, mean = (torch.from_numpy(a) for a in self.basis)
            states = torch.einsum("tlh,ldh->tld", states - mean, comps)
        if self.fmt.hidden == "fp16":
            return {"hidden": states.half().numpy()}
        scale = (states.abs().amax(-1) / 127).half().clamp_min(torch.finfo(torch.float16).tiny)  # never 0 in fp16
        codes = torch.round(states / scale.float().unsqueeze(-1)).clamp_(-127, 127).to(torch.int8)
        return {"hidden": codes.numpy(), "hidden_scale": scale.numpy()}

    def decode(self, hidden: np.ndarray, scale: np.ndarray | None, layer_index: Sequence[int]) -> np.ndarray:
        """A window's stored rows (all cached layers) -> fp32 [tokens, len(layer_index), hidden]."""
        out = hidden[:, layer_index].astype(np.float32)
        if scale is not None:
            out *= scale[:, layer_index, None].astype(np.float32)
        if self.basis is not None:  # one BLAS product per layer (np.einsum here was 3x slower and cost distil 10-25%)
            comps, mean = self.basis[0][layer_index], self.basis[1][layer_index]
            out = np.stack([out[:, k] @ comps[k] for k in range(len(layer_index))], 1) + mean
        return out


def _basis(forward: Forward, transfer: Scan, layers: list[int], out_dir: Path, pad_id: int, batch_size: int,
           accelerator: Accelerator, hidden: int, fmt: AnnotateConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """Each layer's top `fmt.hidden_dims` principal components (and mean) of the teacher's states,
    fitted once on the scan's windows spread evenly over the transfer set and kept in `basis/` (fingerprinted)."""
    if fmt.hidden_dims is None or fmt.hidden_dims >= hidden:
        return None
    where, fp = out_dir / BASIS, transfer.fingerprint
    if accelerator.is_main_process and (verify_manifest(where, MANIFEST_BASIS) or _basis_fp(where) != fp):
        sample = transfer.sample
        comps, mean, explained = _fit_basis(forward, sample, layers, pad_id, batch_size, accelerator, fmt)
        with atomic_dir(where) as tmp:
            np.save(tmp / "components.npy", comps)
            np.save(tmp / "mean.npy", mean)
            write_manifest(tmp, MANIFEST_BASIS, fingerprint=fp, windows=len(sample), explained_variance=explained)
    accelerator.wait_for_everyone()
    return np.load(where / "components.npy"), np.load(where / "mean.npy")


def _basis_fp(where: Path) -> str | None:
    try:
        return read_json(where / MANIFEST_BASIS).get("fingerprint")
    except (OSError, ValueError):
        return None


def _fit_basis(forward: Forward, sample: list[Window], layers: list[int], pad_id: int, batch_size: int, accelerator: Accelerator,
               fmt: AnnotateConfig) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """`fmt.hidden_dims` principal components from the exact second moments (float64) of every real token."""
    loader = batch_loader(WindowDataset(sample), in_order(sample, batch_size, fmt.batch_tokens), pad_id)
    n, total, outer = 0, None, None
    for batch in progress(loader, accelerator.is_local_main_process, desc="annotate: fitting the hidden-state basis", leave=False):
        mask = batch["attention_mask"].bool()
        _, states = forward(batch["input_ids"].to(accelerator.device), batch["attention_mask"].to(accelerator.device))
        x = torch.stack([states[k] for k in layers], dim=2)[mask.to(accelerator.device)].double().cpu()  # [tokens, L, H]
        n += x.shape[0]
        total = x.sum(0) if total is None else total + x.sum(0)
        batch_outer = torch.einsum("tlh,tlg->lhg", x, x)
        outer = batch_outer if outer is None else outer + batch_outer
    mean = total / n
    cov = outer / n - torch.einsum("lh,lg->lhg", mean, mean)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    dims = fmt.hidden_dims
    comps = vectors.flip(-1)[..., :dims].transpose(1, 2)  # [L, D, H], largest first
    explained = (values.flip(-1)[:, :dims].sum(-1) / values.sum(-1)).tolist()
    return comps.float().numpy(), mean.float().numpy(), [round(e, 4) for e in explained]


def in_order(windows: Sequence[Window], batch_size: int, batch_tokens: int | None) -> LengthBatchSampler:
    """The teacher's batches in this pass: by length, `batch_size` windows of at most
    `batch_tokens` padded subwords (AnnotateConfig)."""
    return LengthBatchSampler([len(w) for w in windows], batch_size, shuffle=False, max_tokens=batch_tokens)


def _write_shard(forward: Forward, part, lang_ids, layers, tmp: Path, pad_id, batch_size, accelerator: Accelerator, num_labels: int,
                 codec: Codec, desc: str) -> None:
    lengths = np.array([len(w) for w in part], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    total = int(offsets[-1])
    open_mm = np.lib.format.open_memmap
    ids = open_mm(tmp / "input_ids.npy", mode="w+", dtype=np.int32, shape=(total,))
    logits = open_mm(tmp / "logits.npy", mode="w+", dtype=np.float16, shape=(total, num_labels))
    hidden_dtype = np.float16 if codec.fmt.hidden == "fp16" else np.int8
    stored = {"hidden": open_mm(tmp / "hidden.npy", mode="w+", dtype=hidden_dtype, shape=(total, len(layers), codec.width))}
    if codec.fmt.hidden == "int8":
        stored["hidden_scale"] = open_mm(tmp / "hidden_scale.npy", mode="w+", dtype=np.float16, shape=(total, len(layers)))
    np.save(tmp / "offsets.npy", offsets)
    np.save(tmp / "sent_lang.npy", np.asarray(lang_ids, dtype=np.int16))
    loader = batch_loader(WindowDataset(part), in_order(part, batch_size, codec.fmt.batch_tokens), pad_id)
    device = accelerator.device
    for batch in progress(loader, accelerator.is_local_main_process, desc=desc, leave=False):
        out_logits, states = forward(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        lg = out_logits.float().cpu().numpy()
        hs = torch.stack([states[k] for k in layers], dim=2).float().cpu()  # [B, T, L, H]
        enc = {name: arr.reshape(hs.shape[:2] + arr.shape[1:]) for name, arr in codec.encode(hs.flatten(0, 1)).items()}
        for r, i in enumerate(batch["index"].tolist()):
            a, b = offsets[i], offsets[i + 1]
            ids[a:b] = part[i].input_ids
            logits[a:b] = lg[r, : b - a]
            for name, arr in enc.items():
                stored[name][a:b] = arr[r, : b - a]
    for arr in (ids, logits, *stored.values()):
        arr.flush()
    del ids, logits, stored


def shard_problems(shard_dir: Path, fp: str, checksums: bool = False) -> list[str]:
    """What is wrong with one shard, empty if it was built for `fp` and its files match its
    manifest (sizes; with `checksums` also sha256). Shards written before shard manifests listed
    file names (`input_ids` rather than `input_ids.npy`) read as missing files and are rebuilt."""
    meta = Path(shard_dir) / SHARD_MANIFEST
    if not meta.exists():
        return [f"{shard_dir}: unfinished (no {SHARD_MANIFEST})"]
    try:
        if read_json(meta).get("fingerprint") != fp:
            return [f"{shard_dir}: built for another teacher, data or layer set"]
    except ArtifactError as exc:  # annotate rebuilds it like any damaged shard
        return [exc.problem]
    return verify_manifest(shard_dir, SHARD_MANIFEST, checksums)


def _problems(out_dir: Path, fp: str, checksums: bool) -> list[str]:
    return [p for s in read_json(Path(out_dir) / MANIFEST)["shards"] for p in shard_problems(Path(out_dir) / s, fp, checksums)]


def built_for(out_dir: Path, fp: str) -> bool:
    """Whether annotate finished a cache for `fp` at `out_dir` (its shards not yet checked)."""
    path = Path(out_dir) / MANIFEST
    return path.exists() and read_json(path).get("fingerprint") == fp


def is_complete(out_dir: Path, fp: str) -> bool:
    """True if the cache at `out_dir` was built for `fp` and every shard checks out (size and
    sha256); a damaged shard makes this False so the caller rebuilds it."""
    return built_for(out_dir, fp) and not _problems(out_dir, fp, checksums=True)


def check_shards(out_dir: Path, fp: str) -> None:
    """Every shard of the finished cache for `fp` at `out_dir` as annotate wrote it (sizes and
    sha256, about 1 GB/s: 30 s for the 28.6 GiB cache of 7.2M sentences, against hours of
    distillation), or an `ArtifactError` naming the first damaged file: a student never
    trains on altered teacher outputs."""
    problems = _problems(out_dir, fp, checksums=True)
    if problems:
        raise damaged(out_dir, "transfer cache", first_of(problems), "rerun `xdner annotate` to rebuild its damaged shards")


class _Rows:
    """One `.npy` array of a shard, read a row range at a time through a read-only mapping whose
    pages are released after each read (MADV_DONTNEED), so the pages an epoch touches are not
    counted against the process: memory stays flat however large the cache (page cache keeps
    them for the next read)."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            self.start = f.tell()
            self.map = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) if shape[0] else None
        self.array = np.ndarray(shape, dtype, buffer=self.map, offset=self.start) if self.map is not None else np.empty(shape, dtype)
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def __getitem__(self, rows: slice) -> np.ndarray:
        out = np.array(self.array[rows])
        if self.map is not None and len(out):
            lo = (self.start + rows.start * self.row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
            self.map.madvise(mmap.MADV_DONTNEED, lo, self.start + rows.stop * self.row_bytes - lo)
        return out


def _allow_open_files(needed: int) -> None:
    """Each mapped array holds a file descriptor: raise the soft limit toward the hard one when a
    large cache needs more than it allows, or say which limit to raise."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise CacheError(f"reading the transfer cache needs {needed} open files but the hard limit is {hard}; raise it "
                         "(ulimit -Hn, or LimitNOFILE for a service)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class TransferCache(Dataset):
    """A finished cache read in place, optionally restricted to some languages and to some of
    its teacher layers (in the order given: a student's stage-1 targets). Items carry the
    window's ids with the teacher's logits and hidden states (only the logits in a
    `logits_only` view). Per window it holds 10 bytes in memory (its shard, row and language); the arrays stay on disk."""

    def __init__(self, out_dir: Path, languages: Sequence[str] | None = None, layers: Sequence[int] | None = None) -> None:
        out_dir = Path(out_dir)
        if not (out_dir / MANIFEST).exists():
            raise CacheError(f"{out_dir}: no transfer cache here (run `xdner annotate` first)")
        self.manifest = read_json(out_dir / MANIFEST)
        problems = _problems(out_dir, self.manifest["fingerprint"], checksums=False)  # sizes: `check_shards` hashed them
        if problems:
            raise CacheError(f"{out_dir}: damaged transfer cache: {'; '.join(problems)}; rerun `xdner annotate` to rebuild it")
        cached = self.manifest.get("layers", [])
        missing = sorted(set(layers or []) - set(cached))
        if missing:
            raise CacheError(f"{out_dir}: teacher layers {missing} are not in this cache (it holds {cached}); rerun `xdner annotate`")
        self.layer_index = [cached.index(g) for g in layers] if layers is not None else list(range(len(cached)))
        if "format" not in self.manifest:
            raise CacheError(f"{out_dir}: this cache does not record its format (written before `annotate` settings); "
                             "rerun `xdner annotate --overwrite` to rebuild it")
        fmt = AnnotateConfig(**self.manifest["format"])
        basis = None
        if fmt.hidden_dims is not None and fmt.hidden_dims < self.manifest["hidden_size"]:
            problems = verify_manifest(out_dir / BASIS, MANIFEST_BASIS)
            if problems:
                raise CacheError(f"{out_dir}: damaged transfer cache: {'; '.join(problems)}; rerun `xdner annotate` to rebuild it")
            basis = np.load(out_dir / BASIS / "components.npy"), np.load(out_dir / BASIS / "mean.npy")
        self.codec = Codec(fmt, self.manifest["hidden_size"], basis)
        mapped = [f for f in shard_fields(fmt) if f not in ("offsets", "sent_lang")]
        _allow_open_files(len(self.manifest["shards"]) * len(mapped) + 256)
        self.offsets = [np.load(out_dir / s / "offsets.npy") for s in self.manifest["shards"]]
        self.shards = [{f: _Rows(out_dir / s / f"{f}.npy") for f in mapped} for s in self.manifest["shards"]]
        names = self.manifest["languages"]
        wanted = None if languages is None else [names.index(l) for l in languages if l in names]
        langs = [np.load(out_dir / s / "sent_lang.npy") for s in self.manifest["shards"]]  # one per window
        where = [np.flatnonzero(np.isin(lang, wanted) if wanted is not None else np.ones(len(lang), dtype=bool)) for lang in langs]
        self.lang_of = np.concatenate([lang[w] for lang, w in zip(langs, where)])
        self.shard_of = np.concatenate([np.full(len(w), k, dtype=np.int32) for k, w in enumerate(where)])
        self.row_of = np.concatenate(where).astype(np.int32)
        self.bounds = np.searchsorted(self.shard_of, np.arange(len(where) + 1))  # shard k's items: bounds[k]:bounds[k + 1]
        if not len(self.row_of):
            raise CacheError(f"{out_dir}: no cached windows for languages {list(languages or [])}")
        self.with_hidden = True  # items carry the teacher's hidden states (see `logits_only`)

    def lengths(self) -> list[int]:
        return np.concatenate([np.diff(o)[self.row_of[self.bounds[k] : self.bounds[k + 1]]] for k, o in enumerate(self.offsets)]).tolist()

    def languages(self) -> list[str]:
        """Each window's language, in item order."""
        names = self.manifest["languages"]
        return [names[i] for i in self.lang_of.tolist()]

    def __len__(self) -> int:
        return len(self.row_of)

    def __getitem__(self, j: int) -> dict[str, Any]:
        k, i = int(self.shard_of[j]), int(self.row_of[j])
        sh, rows = self.shards[k], slice(int(self.offsets[k][i]), int(self.offsets[k][i + 1]))
        item = {"input_ids": sh["input_ids"][rows], "teacher_logits": sh["logits"][rows], "index": j}
        if self.with_hidden:
            item["teacher_hidden"] = self.codec.decode(sh["hidden"][rows], sh["hidden_scale"][rows] if "hidden_scale" in sh else None,
                                                       self.layer_index)
        return item

    def logits_only(self) -> TransferCache:
        """This view without the teacher's hidden states, for the losses that never read them:
        reading, decoding and padding them was a tenth of a 50/200's logits step."""
        view = copy.copy(self)
        view.with_hidden = False
        return view

    def token_counts(self, size: int) -> np.ndarray:
        """How often each of `size` subword ids occurs in the windows of this view (only its
        languages' windows, so a per-language student's vocabulary holds only its own pieces);
        counted a shard at a time."""
        counts = np.zeros(size, dtype=np.int64)
        for k, o in enumerate(self.offsets):
            rows = self.row_of[self.bounds[k] : self.bounds[k + 1]]
            if len(rows):
                in_view = np.repeat(np.isin(np.arange(len(o) - 1), rows), np.diff(o))
                ids = self.shards[k]["input_ids"][slice(0, int(o[-1]))]
                counts += np.bincount(ids[in_view], minlength=size)
        return counts
