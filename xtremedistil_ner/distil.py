"""One loop runs every distillation stage: per sub-stage, freeze all but its groups, train with
the stage's loss, select on dev F1 (or held-out loss before a classifier exists) with patience,
restore the best weights and checkpoint, so an interrupted run resumes at the next sub-stage."""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .batching import LengthBatchSampler, WindowDataset, make_collate
from .config import DistilConfig, StageConfig
from .data.conll import Sentence
from .encoding import Window
from .evaluate import predict_tags, score
from .io import read_json, write_json
from .stages import LOSSES, SELECT_ON_LOSS, sub_stages, validate_stage
from .students.base import Student

PROGRESS = "progress.json"
CHECKPOINT = "checkpoint"
FINAL = "model"


@dataclass
class StageData:
    """What the stages read: teacher-annotated transfer windows and gold-labeled windows, plus
    dev sentences for selection."""

    transfer: Dataset | None
    transfer_lengths: list[int]
    labeled: Sequence[Window]
    dev: Sequence[Sentence]
    dev_windows: Sequence[Window]
    pad_id: int


def _split_heldout(n: int, seed: int, fraction: float = 0.02) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    k = max(1, int(n * fraction)) if n > 1 else 0
    return sorted(order[k:]), sorted(order[:k])


def _loader(dataset: Dataset, lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int, pad_id: int) -> tuple[DataLoader, LengthBatchSampler]:
    sampler = LengthBatchSampler(lengths, batch_size, shuffle, seed)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=make_collate(pad_id)), sampler


class Distiller:
    def __init__(self, student: Student, cfg: DistilConfig, data: StageData, out_dir: Path, accelerator: Accelerator, seed: int) -> None:
        for stage in cfg.stages:
            validate_stage(stage, student.GROUPS)
            if stage.data == "transfer" and data.transfer is None:
                raise ValueError(f"stage {stage.name!r} reads transfer data but there is no transfer cache")
        self.student = student
        self.cfg = cfg
        self.data = data
        self.out_dir = Path(out_dir)
        self.acc = accelerator
        self.seed = seed
        self.id2label = dict(enumerate(student.labels))

    # -- selection -------------------------------------------------------------------------
    def dev_f1(self, model: Student) -> dict[str, Any]:
        model.eval()
        pred = predict_tags(
            model.logits, self.data.dev, self.data.dev_windows, self.id2label, self.data.pad_id,
            self.cfg.eval_batch_size, self.acc, "student dev",
        )
        return score(self.data.dev, pred)

    @torch.no_grad()
    def heldout_loss(self, model: Student, loader: DataLoader, stage: StageConfig) -> float:
        model.eval()
        total, n = 0.0, 0
        for batch in loader:
            loss = LOSSES[stage.loss](model(batch["input_ids"], batch["attention_mask"]), batch, stage.temperature)
            total += float(self.acc.gather_for_metrics(loss.detach().reshape(1)).mean()) * len(batch["input_ids"])
            n += len(batch["input_ids"])
        return total / max(n, 1)

    # -- training --------------------------------------------------------------------------
    def _stage_loaders(self, stage: StageConfig, si: int) -> tuple[DataLoader, LengthBatchSampler, DataLoader | None]:
        bs = self.cfg.batch_size
        if stage.data == "labeled":
            windows = self.data.labeled
            loader, sampler = _loader(WindowDataset(windows), [len(w) for w in windows], bs, True, self.seed + si, self.data.pad_id)
            return loader, sampler, None
        lengths = self.data.transfer_lengths
        if stage.loss not in SELECT_ON_LOSS:
            loader, sampler = _loader(self.data.transfer, lengths, bs, True, self.seed + si, self.data.pad_id)
            return loader, sampler, None
        train_idx, held_idx = _split_heldout(len(lengths), self.seed)
        loader, sampler = _loader(Subset(self.data.transfer, train_idx), [lengths[i] for i in train_idx], bs, True, self.seed + si, self.data.pad_id)
        held, _ = _loader(Subset(self.data.transfer, held_idx), [lengths[i] for i in held_idx], self.cfg.eval_batch_size, False, 0, self.data.pad_id)
        return loader, sampler, held

    def run(self) -> dict[str, Any]:
        progress = self._load_progress()
        groups = self.student.group_parameters()
        for si, stage in enumerate(self.cfg.stages):
            for ki, trainable in enumerate(sub_stages(stage, self.student.GROUPS)):
                key = f"{si}.{ki}"
                if key in progress["done"]:
                    continue
                t0 = time.time()
                for name, params in groups.items():
                    for p in params:
                        p.requires_grad_(name in trainable)
                record = self._train_sub_stage(stage, si, ki, trainable)
                record["seconds"] = round(time.time() - t0, 1)
                progress["done"].append(key)
                progress["history"].append(record)
                self._checkpoint(progress)
        for p in self.student.parameters():
            p.requires_grad_(True)
        final = self.dev_f1(self.student)
        progress["final_dev"] = final
        if self.acc.is_main_process:
            self.student.save(self.out_dir / FINAL)
            write_json(self.out_dir / PROGRESS, progress)
        self.acc.wait_for_everyone()
        return progress

    def _train_sub_stage(self, stage: StageConfig, si: int, ki: int, trainable: tuple[str, ...]) -> dict[str, Any]:
        acc = self.acc
        loader, sampler, held = self._stage_loaders(stage, si)
        params = [p for p in self.student.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=stage.lr)
        model, optimizer, loader = acc.prepare(self.student, optimizer, loader)
        if held is not None:
            held = acc.prepare(held)
        loss_fn = LOSSES[stage.loss]
        label = f"{stage.name}[{'+'.join(trainable)}]"
        best_metric, best_state, best_epoch, bad = -float("inf"), None, 0, 0
        epochs: list[dict[str, Any]] = []
        for epoch in range(stage.epochs):
            sampler.set_epoch(epoch)
            model.train()
            bar = tqdm(loader, desc=f"{label} epoch {epoch + 1}/{stage.epochs}", disable=not acc.is_local_main_process, leave=False)
            running = []
            for batch in bar:
                loss = loss_fn(model(batch["input_ids"], batch["attention_mask"]), batch, stage.temperature)
                acc.backward(loss)
                if self.cfg.max_grad_norm:
                    acc.clip_grad_norm_(params, self.cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
                running.append(loss.item())
                bar.set_postfix(loss=f"{np.mean(running[-50:]):.4f}")
            unwrapped = acc.unwrap_model(model)
            if held is not None:
                metric_name, metric = "heldout_loss", self.heldout_loss(unwrapped, held, stage)
                better = -metric
            else:
                dev = self.dev_f1(unwrapped)
                metric_name, metric = "dev_macro_f1", dev["macro"]["f1"]
                better = metric
            epochs.append({"epoch": epoch + 1, "train_loss": float(np.mean(running)), metric_name: metric})
            if acc.is_main_process:
                print(f"  {label} epoch {epoch + 1}: train loss {np.mean(running):.4f}, {metric_name} {metric:.4f}", flush=True)
            if better > best_metric:
                best_metric, best_epoch, bad = better, epoch + 1, 0
                best_state = copy.deepcopy(unwrapped.state_dict())
            else:
                bad += 1
                if bad >= stage.patience:
                    break
        if best_state is not None:
            self.student.load_state_dict(best_state)
        acc.free_memory()
        return {"stage": stage.name, "loss": stage.loss, "trainable": list(trainable), "best_epoch": best_epoch, "epochs": epochs}

    # -- resume ----------------------------------------------------------------------------
    def _load_progress(self) -> dict[str, Any]:
        path = self.out_dir / PROGRESS
        if path.exists() and (self.out_dir / CHECKPOINT).exists():
            progress = read_json(path)
            self.student.load_state_dict(Student.load(self.out_dir / CHECKPOINT).state_dict())
            if self.acc.is_main_process:
                print(f"resuming distillation in {self.out_dir}: {len(progress['done'])} sub-stages already done", flush=True)
            return progress
        return {"done": [], "history": []}

    def _checkpoint(self, progress: dict[str, Any]) -> None:
        if self.acc.is_main_process:
            self.student.save(self.out_dir / CHECKPOINT)
            write_json(self.out_dir / PROGRESS, progress)
        self.acc.wait_for_everyone()


def is_distilled(out_dir: Path) -> bool:
    return (Path(out_dir) / FINAL / "student.json").exists() and "final_dev" in read_json(Path(out_dir) / PROGRESS)
