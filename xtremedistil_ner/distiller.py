"""One loop runs every distillation stage: per sub-stage, freeze all but its groups, train with
the stage's loss, select on dev F1 (or held-out loss before a classifier exists) with patience,
restore the best weights and checkpoint, so an interrupted run resumes at the next sub-stage.
Within a sub-stage, every `checkpoint_every` optimizer steps the full training state (model,
optimizer, RNG states, position in the epoch, early-stopping state and best weights) is saved
too, so a killed run resumes mid-epoch and ends with the weights an uninterrupted run gets."""

from __future__ import annotations

import copy
import functools
import logging
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, Subset
from transformers import PreTrainedTokenizerBase, get_scheduler
from xdner_runtime.windows import Window

from .batching import LengthBatchSampler, WindowDataset, batch_loader, check_global_batch, to_device
from .config import DistilConfig, StageConfig
from .data.conll import Sentence
from .scoring import entity_counts, logits_fn, predict_tags, score, share_better
from .io import atomic_dir, damaged, read_json, remove_dir, settled_dir, sha256_file, write_json
from .layout import CHECKPOINT, FINAL, PROGRESS, RESUME
from .provenance import NOTHING
from .stages import LOSSES, guarded, sub_stages, unguarded_keys, validate_stage
from .students import XtremeDistilPreTrainedModel, load_student, save_student
from .training import EarlyStopping, ResumeState, TrainLoop, Track, cpu_copy, fused, interpolate

ENTRY = "stage_entry.safetensors"  # the model that entered a guarded stage, in checkpoints

if TYPE_CHECKING:
    from .cache import TransferCache

logger = logging.getLogger(__name__)


@dataclass
class StageData:
    """What the stages read: teacher-annotated transfer windows and gold-labeled windows, plus
    dev sentences for selection."""

    transfer: TransferCache | None  # or any dataset with its `logits_only()`
    transfer_lengths: list[int]
    labeled: Sequence[Window]
    dev: Sequence[Sentence]
    dev_windows: Sequence[Window]
    pad_id: int
    transfer_languages: Sequence[str] | None = None  # each window's language, for `language_alpha`
    labeled_languages: Sequence[str] | None = None


def _split_heldout(n: int, seed: int, fraction: float = 0.02) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    k = max(1, int(n * fraction)) if n > 1 else 0
    return sorted(order[k:]), sorted(order[:k])


class Distiller:
    """`tokenizer` (the teacher's) is saved with the final model, a self-contained tagger; the
    checkpoint (a resume state) goes without it: its 17 MB would be copied into every student
    and, with one tagger per language, every language."""

    def __init__(self, student: XtremeDistilPreTrainedModel, cfg: DistilConfig, data: StageData, out_dir: Path, accelerator: Accelerator,
                 seed: int, tokenizer: PreTrainedTokenizerBase | None = None, inputs: dict[str, Any] | None = None, trained: bool = False,
                 setup_seconds: float = 0.0) -> None:
        for stage in cfg.stages:
            validate_stage(stage, student)
            if stage.data == "transfer" and data.transfer is None:
                raise ValueError(f"stage {stage.name!r} reads transfer data but there is no transfer cache")
        for si, stage in enumerate(cfg.stages):  # once every loss is known
            if keys := unguarded_keys(cfg.stages, si, trained):
                raise ValueError(f"stage {stage.name!r}: {keys[0]} needs a stage that starts from a trained classifier")
        check_global_batch(cfg.batch_size, accelerator.num_processes, "distil.batch_size")
        if cfg.checkpoint_every < 0:
            raise ValueError(f"distil.checkpoint_every must be >= 0 (got {cfg.checkpoint_every})")
        self.student = student
        self.cfg = cfg
        self.data = data
        self.out_dir = Path(out_dir)
        self.acc = accelerator
        self.seed = seed
        self.tokenizer = tokenizer
        self.inputs = inputs or {}  # what the student is made from, kept in its progress (see provenance)
        self.trained = trained  # the student enters with a trained classifier (specialised from another)
        self.setup_seconds = setup_seconds  # building the student before its first stage (a specialised tagger's vocabulary)
        self.resume = ResumeState(accelerator, self.out_dir / RESUME, cfg.checkpoint_every, self.inputs, "sub-stage")
        self.entry_state: dict[str, torch.Tensor] | None = None  # see `_keep_the_better`
        self.id2label = dict(enumerate(student.labels))

    # -- selection -------------------------------------------------------------------------
    def dev_f1(self, model: XtremeDistilPreTrainedModel) -> dict[str, Any]:
        return score(self.data.dev, self.dev_tags(model))

    def dev_tags(self, model: XtremeDistilPreTrainedModel) -> list[list[str]]:
        model.eval()
        return predict_tags(logits_fn(model), self.data.dev, self.data.dev_windows, self.id2label, self.data.pad_id,
                            self.cfg.eval_batch_size, self.acc, "student dev")

    @torch.no_grad()
    def heldout_loss(self, model: XtremeDistilPreTrainedModel, loader: DataLoader, stage: StageConfig) -> float:
        """The stage's loss averaged over every held-out token of every process."""
        model.eval()
        total = torch.zeros(2, device=self.acc.device)
        for batch in loader:
            loss, units = LOSSES[stage.loss](model, to_device(batch, self.acc.device), stage.temperature)
            total += torch.stack([loss.float() * units.float(), units.float()])
        loss_sum, units = self.acc.reduce(total, "sum").tolist()
        return loss_sum / max(units, 1.0)

    # -- training --------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, lengths: Sequence[int], batch_size: int, train: bool, seed: int,
                max_steps: int | None = None, languages: Sequence[str] | None = None,
                alpha: float | None = None) -> tuple[DataLoader, LengthBatchSampler]:
        """Training loaders shuffle (at most `max_steps` batches an epoch, drawn by language with
        `alpha`) and keep processes in lockstep; `batch_size` is global."""
        sampler = LengthBatchSampler(
            lengths, batch_size, shuffle=train, seed=seed,
            num_replicas=self.acc.num_processes, rank=self.acc.process_index, pad=train, max_batches=max_steps,
            groups=languages if alpha is not None else None, alpha=alpha,
        )
        return batch_loader(dataset, sampler, self.data.pad_id), sampler

    def _stage_loaders(self, stage: StageConfig, si: int, ki: int = 0) -> tuple[DataLoader, LengthBatchSampler, DataLoader | None]:
        """Training loader and sampler of sub-stage `ki` of stage `si`, and a held-out loader when
        the loss selects on held-out loss. Each sub-stage shuffles (and, with `max_steps` or
        `language_alpha`, draws its subset) from its own seed: otherwise the first epoch of every
        sub-stage would see the same windows."""
        if stage.data == "labeled":
            dataset, lengths = WindowDataset(self.data.labeled), [len(w) for w in self.data.labeled]
            languages = self.data.labeled_languages
        else:  # the teacher's hidden states only for a loss that reads them
            dataset = self.data.transfer if LOSSES[stage.loss].reads_hidden else self.data.transfer.logits_only()
            lengths, languages = self.data.transfer_lengths, self.data.transfer_languages
        if stage.language_alpha is not None and languages is None:
            raise ValueError(f"stage {stage.name!r}: language_alpha needs each {stage.data} window's language")
        held = None
        if LOSSES[stage.loss].select_on_loss:
            train_idx, held_idx = _split_heldout(len(lengths), self.seed)
            held, _ = self._loader(Subset(dataset, held_idx), [lengths[i] for i in held_idx], self.cfg.eval_batch_size, False, 0)
            dataset, lengths = Subset(dataset, train_idx), [lengths[i] for i in train_idx]
            languages = [languages[i] for i in train_idx] if languages is not None else None
        loader, sampler = self._loader(dataset, lengths, self.cfg.batch_size, True, self.seed + si + 1000 * ki, stage.max_steps,
                                       languages, stage.language_alpha)
        return loader, sampler, held

    def run(self) -> dict[str, Any]:
        progress = self._load_progress()
        progress["inputs"] = self.inputs
        # Paid again by a rerun that builds the student again: its time counts like a stage's.
        progress["setup_seconds"] = round(progress.get("setup_seconds", 0.0) + self.setup_seconds, 1)
        # Every process has read the checkpoint before the main one rewrites it.
        self.acc.wait_for_everyone()
        if self.setup_seconds:  # kept now, so a kill before the next sub-stage ends does not lose it
            self._checkpoint(progress, clear_resume=False)
            self.acc.wait_for_everyone()
        groups = self.student.group_parameters()
        for si, stage in enumerate(self.cfg.stages):
            subs = sub_stages(stage, self.student)
            if self._guarded(si) and f"{si}.0" not in progress["done"]:
                # The model entering the stage, kept (on disk too) until the stage is done.
                progress["entry"] = {"stage": si, "dev": self._current_dev(progress)}
                self.entry_state = cpu_copy(self.student)
            for ki, trainable in enumerate(subs):
                key = f"{si}.{ki}"
                if key in progress["done"]:
                    continue
                for name, params in groups.items():
                    for p in params:
                        p.requires_grad_(name in trainable)
                # Seeded per sub-stage, so a run resumed at a sub-stage boundary draws the same
                # dropout masks as one that never stopped.
                set_seed(self.seed + 100 * si + ki)
                record = self._train_sub_stage(stage, si, ki, trainable, stage.epochs_at(ki))
                progress["done"].append(key)
                progress["history"].append(record)
                if ki == len(subs) - 1 and progress.get("entry", {}).get("stage") == si:
                    self._keep_the_better(si, stage, progress)
                self._checkpoint(progress)
        for p in self.student.parameters():
            p.requires_grad_(True)
        # The last sub-stage's best weights are the final ones: its dev scores, when it selected
        # on dev F1, need no second pass.
        progress["final_dev"] = self._current_dev(progress)
        if self.acc.is_main_process:
            save_student(self.student, self.out_dir / FINAL, self.tokenizer)
            write_json(self.out_dir / PROGRESS, progress)
            # The final model and its progress supersede the checkpoint: a copy of the weights
            # per tagger that nothing reads again (a third of 48 taggers' disk).
            remove_dir(self.out_dir / CHECKPOINT)
        self.acc.wait_for_everyone()
        return progress

    def _guarded(self, si: int) -> bool:
        return guarded(self.cfg.stages, si, self.trained)

    def _current_dev(self, progress: dict[str, Any]) -> dict[str, Any]:
        """Dev scores of the student as it is: the last sub-stage's, when it selected on dev F1
        (or a stage was rolled back to known scores), else one dev pass."""
        last = progress["history"][-1] if progress["history"] else {}
        return last.get("best_dev") or self.dev_f1(self.student)

    def _keep_the_better(self, si: int, stage: StageConfig, progress: dict[str, Any]) -> None:
        """After a guarded stage (with `interpolate`, its mix with the model that entered it): if it
        lowered macro dev F1 (or, with `keep_confidence`, beat the model that entered it in too few
        resamplings of the dev set), that model comes back (a stage must not silently replace a
        better model); the record says so either way."""
        entry = progress.pop("entry")
        record = progress["history"][-1]
        if stage.interpolate is not None:
            record["trained_dev_macro_f1"] = self._current_dev(progress)["macro"]["f1"]
            interpolate(self.student, self.entry_state, stage.interpolate)
            after = self.dev_f1(self.student)
        else:
            after = self._current_dev(progress)
        record["best_dev"] = after
        record["stage_entry_dev_macro_f1"] = entry["dev"]["macro"]["f1"]
        record["rolled_back"] = after["macro"]["f1"] < entry["dev"]["macro"]["f1"]
        if stage.keep_confidence is not None and not record["rolled_back"]:
            record["share_better"] = self._share_better(si)
            record["rolled_back"] = record["share_better"] < stage.keep_confidence
        if record["rolled_back"]:
            self.student.load_state_dict(self.entry_state)
            record["best_dev"] = entry["dev"]
            if self.acc.is_main_process:
                why = (f"lowered macro dev F1 ({entry['dev']['macro']['f1']:.2f} -> {after['macro']['f1']:.2f})" if "share_better" not in record
                       else f"beat the model that entered it in {record['share_better']:.0%} of dev resamplings, "
                            f"not {stage.keep_confidence:.0%}")
                logger.info(f"  stage {stage.name!r} {why}: keeping the model that entered it")
        self.entry_state = None

    def _share_better(self, si: int) -> float:
        """How often the student beats the model that entered stage `si` over resamplings of the
        dev sentences (`keep_confidence`)."""
        before, after = (entity_counts(self.data.dev, self.dev_tags(m)) for m in (self._entered(), self.student))
        return share_better(before, after, seed=self.seed + si)

    def _anchor(self, stage: StageConfig) -> tuple[torch.nn.Module, float] | None:
        """The model that entered the stage, frozen on the student's device, and the stage's
        `anchor` weight; None without one."""
        if stage.anchor is None:
            return None
        return self._entered().to(self.acc.device).eval().requires_grad_(False), stage.anchor

    def _entered(self) -> XtremeDistilPreTrainedModel:
        """A copy of the model that entered the current guarded stage."""
        entered = copy.deepcopy(self.student)
        entered.load_state_dict(self.entry_state)
        return entered

    def _freeze_unreached(self, loader: DataLoader, stage: StageConfig) -> None:
        """Freeze trainable parameters the stage's loss never reaches (the classifier under the
        representation loss): they would not change anyway, and DDP fails on parameters that
        get no gradient. Probed on one batch with the RNG state put back afterwards."""
        params = [p for p in self.student.parameters() if p.requires_grad]
        with torch.random.fork_rng(devices=[self.acc.device] if self.acc.device.type == "cuda" else []):
            loss, _ = LOSSES[stage.loss](self.student, to_device(next(iter(loader)), self.acc.device), stage.temperature)
            if not loss.requires_grad:
                raise ValueError(f"stage {stage.name!r}: the {stage.loss} loss reaches none of the parameters it would train")
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            if g is None:
                p.requires_grad_(False)

    def _train_sub_stage(self, stage: StageConfig, si: int, ki: int, trainable: tuple[str, ...], epochs: int) -> dict[str, Any]:
        acc = self.acc
        acc.free_memory()  # the accelerator's state is exactly this sub-stage's model and optimizer
        key = f"{si}.{ki}"
        loader, sampler, held = self._stage_loaders(stage, si, ki)
        self.student.to(acc.device).train()
        self._freeze_unreached(loader, stage)
        adam = torch.optim.Adam([p for p in self.student.parameters() if p.requires_grad], lr=stage.lr, **fused(acc.device))
        # A fresh DDP wrapper per sub-stage: DDP registers the parameters that require grad
        # when it is built, and gradual unfreezing changes that set between sub-stages.
        model, optimizer = acc.prepare(self.student, adam)
        st, best_state = self.resume.restore(key)
        # The learning rate is a function of the step: built after the optimizer's state is
        # restored and moved to the step a resumed run had reached, it continues exactly.
        total = epochs * len(sampler)
        scheduler = get_scheduler(stage.scheduler, adam, num_warmup_steps=int(stage.warmup_ratio * total), num_training_steps=total)
        with warnings.catch_warnings():  # the catch-up precedes this optimizer's first step by design
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before `optimizer.step()`"))
            for _ in range(st.steps):
                scheduler.step()
        loss = functools.partial(LOSSES[stage.loss], temperature=stage.temperature, anchor=self._anchor(stage))

        def select(m: torch.nn.Module) -> tuple[float, dict[str, Any] | None, dict[str, float]]:
            if held is not None:
                value = self.heldout_loss(m, held, stage)
                return -value, None, {"heldout_loss": value}
            dev = self.dev_f1(m)
            return dev["macro"]["f1"], dev, {"dev_macro_f1": dev["macro"]["f1"]}

        label = f"{stage.name}[{'+'.join(trainable)}]"
        tag = f"{self.out_dir.parent.name}/{self.out_dir.name}/{stage.name}/{'-'.join(trainable)}"  # the trackers' prefix
        loop = TrainLoop(acc, model, optimizer, scheduler, loader, sampler, loss, epochs, label, st,
                         select=select if epochs > 1 else None,  # a one-epoch sub-stage has nothing to select from
                         max_grad_norm=self.cfg.max_grad_norm, best_state=best_state,
                         plugins=[EarlyStopping(stage.patience), self.resume, Track(tag)])
        st = loop.run()
        acc.free_memory()
        return {"stage": stage.name, "loss": stage.loss, "trainable": list(trainable), "best_epoch": st.best_epoch, "epochs": st.epochs,
                "best_dev": st.best_dev, "seconds": round(st.seconds, 1)}

    # -- resume ----------------------------------------------------------------------------
    def _load_progress(self) -> dict[str, Any]:
        path = settled_dir(self.out_dir / CHECKPOINT)
        if path is not None and (path / PROGRESS).exists():
            progress = read_json(path / PROGRESS)
            self.student.load_state_dict(load_student(path).state_dict())
            if progress.get("entry") is not None:
                if sha256_file(path / ENTRY) != progress.pop("entry_sha256", None):
                    raise damaged(path / ENTRY, "distillation checkpoint", f"sha256 differs from {PROGRESS}")
                self.entry_state = load_file(str(path / ENTRY))
            if self.acc.is_main_process:
                logger.info(f"resuming distillation in {self.out_dir}: {len(progress['done'])} sub-stages already done")
            return progress
        return {"done": [], "history": []}

    def _checkpoint(self, progress: dict[str, Any], clear_resume: bool = True) -> None:
        """Student and progress in one atomic directory (a kill between two separate writes
        could pair a sub-stage's weights with progress that says it still has to run); after a
        finished sub-stage its mid-run state is obsolete (`clear_resume`)."""
        if self.acc.is_main_process:
            with atomic_dir(self.out_dir / CHECKPOINT) as tmp:
                save_student(self.student, tmp)
                if progress.get("entry") is not None:
                    save_file(self.entry_state, str(tmp / ENTRY))
                    progress = {**progress, "entry_sha256": sha256_file(tmp / ENTRY)}  # verified on resume
                write_json(tmp / PROGRESS, progress)
        if clear_resume:
            self.resume.clear()


def recorded_inputs(out_dir: Path) -> Any:
    """The inputs recorded with a student's finished or checkpointed distillation (None if it
    recorded none), or NOTHING when the folder holds no distillation work."""
    for path in (Path(out_dir) / PROGRESS, settled_dir(Path(out_dir) / CHECKPOINT), settled_dir(Path(out_dir) / RESUME)):
        if path is not None and path.is_dir():
            path = path / PROGRESS
        if path is not None and path.is_file():
            return read_json(path).get("inputs")
    return NOTHING


def is_distilled(out_dir: Path) -> bool:
    """The final model and the progress that says it is final (a kill between their two writes
    leaves the model alone: not distilled, so the checkpoint resumes)."""
    progress = Path(out_dir) / PROGRESS
    return (Path(out_dir) / FINAL / "config.json").exists() and progress.is_file() and "final_dev" in read_json(progress)
