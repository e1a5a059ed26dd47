"""Distillation stages as data. A stage names a loss, the data it reads (teacher-annotated
transfer windows or gold-labeled windows) and what trains: a fixed list of parameter groups,
`all`, or `gradual` (top-down unfreezing: sub-stage k trains the student's k top groups)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from transformers import SchedulerType

from .config import StageConfig, key_problems
from .encoding import IGNORE

if TYPE_CHECKING:
    from .students import XtremeDistilPreTrainedModel

Batch = dict[str, torch.Tensor]
LossTerm = Callable[[dict[str, torch.Tensor], Batch, float], torch.Tensor]


def tokens(batch: Batch) -> torch.Tensor:
    return batch["attention_mask"].sum()


def labeled_positions(batch: Batch) -> torch.Tensor:
    return (batch["labels"] != IGNORE).sum()


@dataclass(frozen=True)
class Loss:
    """A distillation loss and all a stage asks of it, registered once by name (`@register`)."""

    name: str
    fn: LossTerm
    data: str  # what it reads: the teacher's outputs (transfer) or gold labels (labeled)
    units: Callable[[Batch], torch.Tensor] = tokens  # what it averages over, so per-process losses combine into the global mean
    projections: bool = False  # it reads the student's projections, not its logits: it reaches them, never the classifier
    select_on_loss: bool = False  # sub-stages select on held-out loss: before the classifier is trained, dev F1 says nothing
    reads_hidden: bool = False  # it reads the teacher's hidden states: other losses get the cache's lean view (`logits_only`)

    @property
    def reaches_classifier(self) -> bool:
        """Whether it trains the classifier, so dev F1 means something after it."""
        return not self.projections

    def __call__(self, model: torch.nn.Module, batch: Batch, temperature: float,
                 anchor: tuple[torch.nn.Module, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's mean loss on `batch` and the units it averages over; with `anchor` (a
        frozen reference model and a weight), plus the weighted KL divergence of the student's
        predictions from the reference's, per token (`anchor_loss`)."""
        out = model(batch["input_ids"], batch["attention_mask"], output_projections=self.projections)
        loss = self.fn(out, batch, temperature)
        if anchor is not None:
            reference, weight = anchor
            loss = loss + weight * anchor_loss(out["logits"], reference, batch)
        return loss, self.units(batch)


LOSSES: dict[str, Loss] = {}


def register(name: str, data: str, **facts: Any) -> Callable[[LossTerm], LossTerm]:
    """Function decorator: the loss a stage names as `loss: NAME`; a taken name is an error."""

    def wrap(fn: LossTerm) -> LossTerm:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice ({LOSSES[name].fn.__qualname__}, {fn.__qualname__})")
        LOSSES[name] = Loss(name, fn, data, **facts)
        return fn

    return wrap


def _mask(batch: Batch) -> torch.Tensor:
    return batch["attention_mask"].bool()


def anchor_loss(logits: torch.Tensor, reference: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """KL(reference || student) over the batch's tokens: how far the student's tag
    distributions have moved from the reference model's (in eval mode, no gradient)."""
    with torch.no_grad():
        target = F.softmax(reference(batch["input_ids"], batch["attention_mask"])["logits"].float(), -1)
    m = _mask(batch)
    return F.kl_div(F.log_softmax(logits[m].float(), -1), target[m], reduction="batchmean")


@register("representation", "transfer", projections=True, select_on_loss=True, reads_hidden=True)
def representation_loss(out: dict[str, torch.Tensor], batch: Batch, temperature: float) -> torch.Tensor:
    """Mean over matched layers: `projections[k]` [B, T, H] against `teacher_hidden[:, :, k]`
    [B, T, K, H] (the cache view returns the student's teacher layers in its order)."""
    m = _mask(batch)
    target = batch["teacher_hidden"][m].float()
    losses = [F.mse_loss(p[m], target[:, k]) for k, p in enumerate(out["projections"])]
    return torch.stack(losses).mean()


@register("logits_mse", "transfer")
def logits_mse_loss(out: dict[str, torch.Tensor], batch: Batch, temperature: float) -> torch.Tensor:
    m = _mask(batch)
    return F.mse_loss(out["logits"][m], batch["teacher_logits"][m].float())


@register("logits_kl", "transfer")
def logits_kl_loss(out: dict[str, torch.Tensor], batch: Batch, temperature: float) -> torch.Tensor:
    m = _mask(batch)
    student = F.log_softmax(out["logits"][m] / temperature, -1)
    teacher = F.softmax(batch["teacher_logits"][m].float() / temperature, -1)
    return F.kl_div(student, teacher, reduction="batchmean") * temperature**2


@register("hard", "transfer")
def hard_loss(out: dict[str, torch.Tensor], batch: Batch, temperature: float) -> torch.Tensor:
    m = _mask(batch)
    return F.cross_entropy(out["logits"][m], batch["teacher_logits"][m].float().argmax(-1))


@register("gold", "labeled", units=labeled_positions)
def gold_loss(out: dict[str, torch.Tensor], batch: Batch, temperature: float) -> torch.Tensor:
    logits = out["logits"]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1), ignore_index=IGNORE)


# Schedulers that need more than warm-up and length (a metric, extra arguments) do not fit a stage.
SETUP = "setup"  # the time spent building a student before its first stage, reported beside the stages'
UNSUPPORTED_SCHEDULERS = {"reduce_lr_on_plateau", "inverse_sqrt", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                          "warmup_stable_decay", "greedy"}


def guarded(stages: list[StageConfig], si: int, trained: bool) -> bool:
    """Whether stage `si` is compared with the model that entered it: only when that model
    already has a trained classifier (it came trained, or an earlier stage trained it), so dev
    F1 means something."""
    reaches = [LOSSES[s.loss].reaches_classifier for s in stages]
    return reaches[si] and (trained or any(reaches[:si]))


GUARD_KEYS = ("keep_confidence", "interpolate", "anchor")  # the keys that need the model that entered a stage


def unguarded_keys(stages: list[StageConfig], si: int, trained: bool) -> list[str]:
    """The guard keys set on stage `si` that cannot apply because nothing guards it (every loss
    must be known): one rule for the up-front check and the Distiller."""
    if guarded(stages, si, trained):
        return []
    return [key for key in GUARD_KEYS if getattr(stages[si], key) is not None]


def validate_stage(stage: StageConfig, student: "XtremeDistilPreTrainedModel") -> None:
    if stage.name == SETUP:
        raise ValueError(f"stage name {SETUP!r} is taken: the report lists the time spent building a student under it")
    if stage.loss not in LOSSES:
        raise ValueError(f"stage {stage.name!r}: unknown loss {stage.loss!r}; choose from {sorted(LOSSES)}")
    problems = key_problems(stage, f"stage {stage.name!r}: ")  # data, warmup_ratio, ...: as their fields allow
    if problems:
        raise ValueError(problems[0])
    if stage.data != (loss := LOSSES[stage.loss]).data:
        raise ValueError(f"stage {stage.name!r}: " + (f"loss {stage.loss!r} needs the teacher's outputs (data: transfer)"
                                                      if loss.data == "transfer" else f"the {stage.loss} loss needs labeled data"))
    epochs = stage.epochs if isinstance(stage.epochs, list) else [stage.epochs]
    if not epochs or any(e < 1 for e in epochs):
        raise ValueError(f"stage {stage.name!r}: epochs must be a positive number or a non-empty list of them (got {stage.epochs!r})")
    if isinstance(stage.epochs, list) and stage.train != "gradual":
        raise ValueError(f"stage {stage.name!r}: a list of epochs needs train: gradual (one entry per sub-stage)")
    schedulers = [s.value for s in SchedulerType]
    if stage.scheduler not in schedulers or stage.scheduler in UNSUPPORTED_SCHEDULERS:
        raise ValueError(f"stage {stage.name!r}: scheduler must be one of "
                         f"{tuple(s for s in schedulers if s not in UNSUPPORTED_SCHEDULERS)} (got {stage.scheduler!r})")
    if stage.warmup_ratio and stage.scheduler == "constant":
        raise ValueError(f"stage {stage.name!r}: scheduler 'constant' has no warm-up; use constant_with_warmup")
    if isinstance(stage.train, list):
        known = [*student.groups, *student.aliases()]
        unknown = sorted(set(stage.train) - set(known))
        if unknown:
            raise ValueError(f"stage {stage.name!r}: unknown parameter groups {unknown}; this student has {known}")
        unreached = set(student.representation_only()) if loss.reaches_classifier else {"classifier"}
        if not set(student.expand(stage.train)) - unreached:
            raise ValueError(f"stage {stage.name!r}: the {stage.loss} loss reaches none of the groups in train "
                             f"({stage.train or 'an empty list'}); list at least one of {[g for g in known if g not in unreached]}")
    elif stage.train not in ("all", "gradual"):
        raise ValueError(f"stage {stage.name!r}: train must be 'all', 'gradual' or a list of groups")


def sub_stages(stage: StageConfig, student: "XtremeDistilPreTrainedModel") -> list[tuple[str, ...]]:
    """Which groups train in each sub-stage. Gradual unfreezing walks the student's groups
    top-down, leaving out groups this stage's loss cannot reach (a loss on projections never
    reaches the classifier)."""
    if stage.train == "gradual":
        skip = student.representation_only() if LOSSES[stage.loss].reaches_classifier else ("classifier",)
        order = [g for g in student.groups if g not in skip]
        return [tuple(order[: k + 1]) for k in range(len(order))]
    if stage.train == "all":
        return [tuple(student.groups)]
    return [student.expand(stage.train)]
