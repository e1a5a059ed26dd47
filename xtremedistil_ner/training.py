"""The one training loop: the teacher's fine-tuning and every student sub-stage run it. What
differs between them (the loss, how an epoch is judged) is passed in; side concerns (early
stopping, mid-epoch resume state, saving the best model, trackers) are plugins called at the
loop's events, as in flair's trainer, and one may stop the loop. The loop's position lives in one
`LoopState`; `ResumeState` saves it with the model, optimizer and RNG states every so many
steps, so a killed run restored from it continues exactly."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from accelerate.utils import load as load_checkpoint
from accelerate.utils.constants import RNG_STATE_NAME
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from .batching import LengthBatchSampler, global_batch_loss, to_device
from .io import atomic_dir, read_json, remove_dir, settled_dir, verify_manifest, write_json, write_manifest
from .layout import PROGRESS
from .log import progress

POSITION = "position.json"  # in a resume state: the LoopState
RECENT = 50  # batch losses the progress bar averages
BEST = "best.safetensors"  # in a resume state: the best weights held in memory, if any
RNG_KEYS = {"random_state", "numpy_random_seed", "torch_manual_seed"}  # what every process's RNG file must hold

logger = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]
"""(model, batch) -> (the batch's mean loss on this process, the units it averages over)."""

SelectFn = Callable[[torch.nn.Module], tuple[float, "dict[str, Any] | None", dict[str, float]]]
"""model -> (selection value, higher is better; dev scores if any; fields for the epoch record)."""


@dataclass
class LoopState:
    """Everything about a loop in progress, beyond model, optimizer, scheduler and RNG states,
    that a resumed run needs to continue exactly where the killed one was."""

    key: str
    epoch: int = 0  # current epoch, 0-based
    batches: int = 0  # batches of the current epoch already trained
    steps: int = 0  # optimizer steps so far
    loss_sum: float = 0.0  # the current epoch's batch losses, summed (not kept one by one: a resume state stays small)
    recent: list[float] = field(default_factory=list)  # its last RECENT batch losses, for the progress bar and trackers
    epochs: list[dict[str, Any]] = field(default_factory=list)  # finished epochs' records
    best: float | None = None  # best selection value so far (higher is better)
    best_epoch: int = 0
    bad: int = 0  # epochs without improvement since the best (see EarlyStopping)
    best_dev: dict[str, Any] | None = None  # dev scores of the best epoch, when selected on dev F1
    seconds: float = 0.0  # wall time spent up to the last save, over all runs


def fused(device: torch.device) -> dict[str, bool]:
    """Adam's fused kernel where torch has one: one pass over every parameter instead of a loop
    of small ops per tensor. On 2 CPU cores a 50/200 with 127,712 embedding rows trains a step in
    76.9 ms against 121.2 (`benchmarks/results/optimizer/`); the same update to float rounding."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {}


def cpu_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A snapshot of the model's weights on the CPU, unaffected by further training."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def interpolate(model: torch.nn.Module, other: dict[str, torch.Tensor], weight: float) -> None:
    """`model`'s floating-point weights become `weight` of themselves plus `1 - weight` of `other`'s
    (a snapshot of the same architecture); integer buffers stay."""
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            value.mul_(weight).add_(other[key].to(value.device, value.dtype), alpha=1 - weight)


class Plugin:
    """A side concern of the loop, told of its events; setting `loop.should_stop` ends it after the epoch."""

    def before_train(self, loop: "TrainLoop") -> None:
        """Once, before the first epoch this run trains (resumed: at the restored position)."""

    def before_epoch(self, loop: "TrainLoop") -> None:
        """Before each epoch (resumed mid-epoch: before the rest of it)."""

    def after_step(self, loop: "TrainLoop") -> None:
        """After each optimizer step."""

    def after_epoch(self, loop: "TrainLoop", record: dict[str, Any], improved: bool) -> None:
        """After each epoch's record (and selection) is made."""

    def after_train(self, loop: "TrainLoop") -> None:
        """Once, after the last epoch, with the kept weights back in the model."""

    def after_exception(self, loop: "TrainLoop", exc: BaseException) -> None:
        """When `exc` (an interrupt too) ends the loop; it is raised on afterwards."""


@dataclass
class EarlyStopping(Plugin):
    """Stops the loop after `patience` epochs in a row without a better selection value. Its
    count is the loop state's `bad`, saved with it, so a resumed loop stops where it would have."""

    patience: int

    def before_train(self, loop: "TrainLoop") -> None:
        loop.should_stop |= loop.state.bad >= self.patience  # restored where patience had run out

    def after_epoch(self, loop: "TrainLoop", record: dict[str, Any], improved: bool) -> None:
        loop.state.bad = 0 if improved else loop.state.bad + 1
        loop.should_stop |= loop.state.bad >= self.patience


class Track(Plugin):
    """Each step's loss and learning rate and each epoch's record to the Accelerate trackers the
    run was started with (none: nothing logged), under `prefix` (one per model and sub-stage: a
    sub-stage counts its steps from 0), in the characters TensorBoard takes in a tag."""

    def __init__(self, prefix: str) -> None:
        self.prefix = re.sub(r"[^\w.\-/]", "_", prefix)

    def after_step(self, loop: "TrainLoop") -> None:
        loop.accelerator.log({f"{self.prefix}/step_loss": loop.state.recent[-1], f"{self.prefix}/lr": loop.scheduler.get_last_lr()[0]},
                             step=loop.state.steps)

    def after_epoch(self, loop: "TrainLoop", record: dict[str, Any], improved: bool) -> None:
        loop.accelerator.log({f"{self.prefix}/{k}": v for k, v in record.items() if k != "epoch"}, step=loop.state.steps)


class ResumeState(Plugin):
    """Every `every` optimizer steps, the loop's full training state (model, optimizer and RNG
    states via Accelerate, its `LoopState`, the best weights it holds) replaces the one in `path`
    atomically, with `inputs` (what it belongs to) in PROGRESS; `restore` puts it back into a
    prepared model and optimizer, so a killed run ends with the weights an uninterrupted one gets
    (`what` names the loop in messages).
    Every process writes its part (its RNG states) into the main process's temp directory, so a
    kill at any point leaves the previous state whole."""

    def __init__(self, accelerator: Accelerator, path: Path, every: int, inputs: dict[str, Any], what: str) -> None:
        self.acc, self.path, self.every, self.inputs, self.what = accelerator, Path(path), every, inputs, what

    def after_step(self, loop: "TrainLoop") -> None:
        if self.every and loop.state.steps % self.every == 0:
            loop.state.seconds = loop.elapsed()
            self.save(loop.state, loop.best_state)

    def save(self, st: LoopState, best_state: dict[str, torch.Tensor] | None) -> None:
        acc = self.acc
        with atomic_dir(self.path) if acc.is_main_process else contextlib.nullcontext() as tmp:
            tmp = Path(broadcast_object_list([str(tmp)])[0])
            acc.save_state(str(tmp))
            if acc.is_main_process:
                if best_state is not None:
                    save_file(best_state, str(tmp / BEST))
                write_json(tmp / POSITION, dataclasses.asdict(st))
                write_json(tmp / PROGRESS, {"inputs": self.inputs})  # what this state belongs to (provenance)
            acc.wait_for_everyone()
            if acc.is_main_process:  # every process's part, so a damaged state is caught before it is loaded
                write_manifest(tmp, files=sorted(p.name for p in tmp.iterdir() if p.is_file() and p.name not in (POSITION, PROGRESS)))
        acc.wait_for_everyone()

    def restore(self, key: str) -> tuple[LoopState, dict[str, torch.Tensor] | None]:
        """The saved state of loop `key` loaded into the prepared model, optimizer and RNGs, or
        a fresh start when there is none for it (or it is damaged: then said, and discarded)."""
        path = settled_dir(self.path)
        if path is None or not (path / POSITION).exists():
            return LoopState(key), None
        problems = verify_manifest(path) + self._rng_problems(path)
        try:
            position = read_json(path / POSITION)
        except (OSError, ValueError) as exc:
            problems.append(f"{path / POSITION}: unreadable ({exc})")
        if problems:  # damaged after it was written, or never whole: back to the loop's start
            if self.acc.is_main_process:
                logger.warning(f"the mid-loop state in {path} is damaged and is discarded (it cannot be fully restored); "
                               f"{self.what} {key} starts over:\n  " + "\n  ".join(problems))
            self.clear()
            return LoopState(key), None
        if position["key"] != key:
            return LoopState(key), None
        self.acc.load_state(str(path))
        st = LoopState(**position)
        best_state = load_file(str(path / BEST)) if (path / BEST).exists() else None
        if self.acc.is_main_process:
            logger.info(f"resuming {self.what} {key} at epoch {st.epoch + 1}, batch {st.batches} ({st.steps} steps done)")
        return st, best_state

    def _rng_problems(self, path: Path) -> list[str]:
        """Why some process's RNG states in `path` would not be restored. Accelerate's
        `load_state` skips RNG states it cannot load without a word, and the resumed run then
        draws other dropout masks and shuffles: such a state is half a state. Every process
        checks every process's file, so all of them decide alike."""
        problems = []
        for k in range(self.acc.num_processes):
            file = path / f"{RNG_STATE_NAME}_{k}.pkl"
            if not file.is_file():
                problems.append(f"{file}: missing (process {k}'s RNG states)")
                continue
            try:
                states = load_checkpoint(file)  # as load_state reads it (weights only: no code runs)
            except Exception as exc:  # noqa: BLE001 - anything load_state would swallow
                problems.append(f"{file}: unreadable RNG states ({type(exc).__name__}: {str(exc)[:120]})")
                continue
            missing = sorted(RNG_KEYS - set(states)) if isinstance(states, dict) else sorted(RNG_KEYS)
            if missing:
                problems.append(f"{file}: RNG states without {', '.join(missing)}")
        return problems

    def clear(self) -> None:
        """Remove the state (and leftovers of kills mid-save): its loop is done, or starts over."""
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            remove_dir(self.path)
        self.acc.wait_for_everyone()


@dataclass
class TrainLoop:
    """`model` and `optimizer` come prepared by `accelerator`; the scheduler stays unprepared
    (Accelerate would step it once per process) and is already at `state.steps`. `select` None:
    no dev pass, the last epoch is kept; a plugin may end the loop early (EarlyStopping). With
    `keep_best` the best epoch's weights are held (in `best_state`) and put back at the end."""

    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: DataLoader
    sampler: LengthBatchSampler
    loss: LossFn
    epochs: int
    label: str
    state: LoopState
    select: SelectFn | None = None
    max_grad_norm: float = 0.0
    keep_best: bool = True
    best_state: dict[str, torch.Tensor] | None = None
    plugins: Sequence[Plugin] = ()
    leave_bars: bool = False
    should_stop: bool = field(default=False, init=False)  # a plugin ends the loop (transformers: should_training_stop)

    def elapsed(self) -> float:
        """Wall time of this loop over all runs, resumed ones included."""
        return time.time() - self._started

    def _event(self, name: str, *args: Any) -> None:
        for plugin in self.plugins:
            getattr(plugin, name)(self, *args)

    def run(self) -> LoopState:
        """Train to the last epoch, or until a plugin stops the loop."""
        acc, st = self.accelerator, self.state
        self._started = time.time() - st.seconds
        params = [p for p in self.model.parameters() if p.requires_grad]
        try:
            self._event("before_train")
            while st.epoch < self.epochs and not self.should_stop:
                self._event("before_epoch")
                self.sampler.set_epoch(st.epoch)
                self.model.train()
                batches = acc.skip_first_batches(self.loader, st.batches) if st.batches else self.loader
                bar = progress(batches, acc.is_local_main_process, desc=f"{self.label} epoch {st.epoch + 1}/{self.epochs}",
                               initial=st.batches, total=len(self.sampler), leave=self.leave_bars)
                for batch in bar:
                    loss, value = global_batch_loss(*self.loss(self.model, to_device(batch, acc.device)), acc)
                    acc.backward(loss)
                    if self.max_grad_norm:
                        acc.clip_grad_norm_(params, self.max_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad()
                    st.loss_sum += value
                    st.recent = [*st.recent, value][-RECENT:]
                    st.batches += 1
                    st.steps += 1
                    bar.set_postfix(loss=f"{np.mean(st.recent):.4f}", refresh=False)  # redrawn at the bar's own pace
                    self._event("after_step")
                self._event("after_epoch", *self._end_epoch())
                st.epoch, st.batches, st.loss_sum, st.recent = st.epoch + 1, 0, 0.0, []
            if self.keep_best and self.best_state is not None:
                acc.unwrap_model(self.model).load_state_dict(self.best_state)
            st.seconds = self.elapsed()
            self._event("after_train")
        except BaseException as exc:
            self._event("after_exception", exc)
            raise
        return st

    def _end_epoch(self) -> tuple[dict[str, Any], bool]:
        st = self.state
        record: dict[str, Any] = {"epoch": st.epoch + 1, "train_loss": st.loss_sum / st.batches if st.batches else float("nan")}
        improved = True
        if self.select is None:
            st.best_epoch = st.epoch + 1
        else:
            unwrapped = self.accelerator.unwrap_model(self.model)
            value, dev, fields = self.select(unwrapped)
            record.update(fields)
            improved = st.best is None or value > st.best
            if improved:
                st.best, st.best_epoch, st.best_dev = value, st.epoch + 1, dev
                if self.keep_best:
                    self.best_state = cpu_copy(unwrapped)
        st.epochs.append(record)
        if self.accelerator.is_main_process:
            logger.info(f"  {self.label} epoch " + ", ".join(
                f"{k.replace('_', ' ')} {v:.4f}" if k != "epoch" else str(v) for k, v in record.items()))
        return record, improved
