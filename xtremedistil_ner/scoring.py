"""Word-level predictions for whole sentences (windows merged) and seqeval strict-IOB2 F1
per language (overall and per entity type) plus the macro average."""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2, Entities
from xdner_runtime.windows import Window, merge_predictions

from .batching import map_windows
from .data.conll import Sentence
from .log import progress

LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def logits_fn(model: torch.nn.Module) -> LogitsFn:
    """A token-classification model (the teacher or a student) as a `LogitsFn`."""

    def fn(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits

    return fn


def predict_windows(
    logits_fn: LogitsFn,
    windows: Sequence[Window],
    pad_id: int,
    batch_size: int,
    accelerator: Accelerator,
    desc: str = "predict",
) -> list[np.ndarray]:
    """Argmax label id per position of every window, in window order, on every process. Each
    process predicts its share of every batch (no padding samples, so nothing is counted twice)
    and the shares are exchanged once at the end; `logits_fn` must be an unwrapped model, as
    processes may run different numbers of batches."""
    bar = partial(progress, main_process=accelerator.is_local_main_process, desc=desc, leave=False)
    local = list(map_windows(lambda ids, mask: logits_fn(ids, mask).argmax(-1), windows, pad_id, batch_size,
                             accelerator.device, accelerator.num_processes, accelerator.process_index, bar))
    out: list[np.ndarray | None] = [None] * len(windows)
    for i, row in gather_object(local):
        out[i] = row
    missing = [i for i, o in enumerate(out) if o is None]
    if missing:
        raise RuntimeError(f"{len(missing)} windows got no prediction (first: {missing[0]})")
    return out  # type: ignore[return-value]


def predict_tags(
    logits_fn: LogitsFn,
    sentences: Sequence[Sentence],
    windows: Sequence[Window],
    id2label: dict[int, str],
    pad_id: int,
    batch_size: int,
    accelerator: Accelerator,
    desc: str = "predict",
) -> list[list[str]]:
    preds = predict_windows(logits_fn, windows, pad_id, batch_size, accelerator, desc)
    merged = merge_predictions(windows, preds, [len(s.tokens) for s in sentences])
    return [[id2label[int(i)] for i in row] for row in merged]


def score(sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> dict[str, dict[str, Any]]:
    """seqeval strict IOB2 precision/recall/F1 (in %) per language, with the same per entity type
    (and its gold count) under `types`, plus `macro` over languages."""
    by_lang: dict[str, tuple[list[list[str]], list[list[str]]]] = defaultdict(lambda: ([], []))
    for sent, pred in zip(sentences, predicted, strict=True):
        if sent.tags is None:
            raise ValueError(f"{sent.origin}: cannot score a sentence without gold tags")
        gold_list, pred_list = by_lang[sent.lang]
        gold_list.append(list(sent.tags))
        pred_list.append(list(pred))
    result: dict[str, dict[str, Any]] = {}
    for lang in sorted(by_lang):
        gold, pred = by_lang[lang]
        with np.errstate(invalid="ignore"):  # its macro average over no entity types at all is nan; unused
            table = classification_report(gold, pred, mode="strict", scheme=IOB2, zero_division=0, output_dict=True)
        result[lang] = {**_prf(table["micro avg"]), "sentences": len(gold),
                        "types": {t: {**_prf(v), "support": int(v["support"])} for t, v in table.items() if not t.endswith(" avg")}}
    if result:
        result["macro"] = {
            k: float(np.mean([v[k] for v in result.values()])) for k in ("f1", "precision", "recall")
        }
    return result


def entity_counts(sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """Per language, one row per sentence: its correctly predicted, predicted and gold entities
    (strict IOB2, as `score` reads them). A language's F1 is 2 * correct / (predicted + gold)
    summed over its rows, so resampling rows resamples the score."""
    rows: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    gold = Entities([list(s.tags or ()) for s in sentences], IOB2).entities
    pred = Entities([list(p) for p in predicted], IOB2).entities
    for sent, g, p in zip(sentences, gold, pred, strict=True):
        g_set, p_set = {e.to_tuple() for e in g}, {e.to_tuple() for e in p}
        rows[sent.lang].append((len(g_set & p_set), len(p_set), len(g_set)))
    return {lang: np.array(r, dtype=np.int64).reshape(-1, 3) for lang, r in sorted(rows.items())}


def entity_f1(totals: np.ndarray) -> np.ndarray:
    """F1 in points from summed entity counts (last axis: correct, predicted, gold), 0 where
    there is nothing predicted or gold, as seqeval scores it."""
    tp, pred, gold = np.moveaxis(totals, -1, 0)
    return np.where(pred + gold > 0, 200 * tp / np.maximum(pred + gold, 1), 0.0)


def f1_differences(before: dict[str, np.ndarray], after: dict[str, np.ndarray], resamples: int = 1000,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Paired bootstrap: per language, `resamples` draws of its sentences (with replacement) and,
    in each, `after`'s F1 minus `before`'s (in points), both scored on the same draw."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for lang in before:
        n, diff = len(before[lang]), np.zeros(resamples)
        for lo in range(0, resamples, 100):  # 100 draws at a time: a draw of n sentences is n x 3 counts
            idx = rng.integers(0, n, (min(100, resamples - lo), n))
            for sign, counts in ((-1, before[lang]), (1, after[lang])):
                diff[lo : lo + len(idx)] += sign * entity_f1(counts[idx].sum(axis=1))
        out[lang] = diff
    return out


def share_better(before: dict[str, np.ndarray], after: dict[str, np.ndarray], resamples: int = 1000, seed: int = 0) -> float:
    """The share of paired-bootstrap draws of the dev sentences (within each language) in which
    `after`'s macro F1 is above `before`'s."""
    return float((sum(f1_differences(before, after, resamples, seed).values()) > 1e-10).mean())


def _prf(row: dict[str, Any]) -> dict[str, float]:
    """One row of seqeval's report as precision, recall and F1 in %."""
    return {"f1": 100 * float(row["f1-score"]), "precision": 100 * float(row["precision"]), "recall": 100 * float(row["recall"])}
