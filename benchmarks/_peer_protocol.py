"""What `peers.py` and its workers agree on (#17), standard library only, so the flair worker
can import it from flair's own environment: the exchange folder's files, IOB2 spans, and one
throughput measurement for every system (raw texts in, entity spans out, same texts, same
batch sizes)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

BATCH_SIZES = (1, 64)
BATCH1_TEXTS = 300  # batch 1 is timed on the first texts only: the teacher runs ~30/s there
WARMUP_TEXTS = 16

# texts -> per text, its entities as (label, start char, end char)
TagFn = Callable[[list[str]], list[list[tuple[str, int, int]]]]


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def iob2_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) word spans of well-formed IOB2 tags (the corpus reader repairs them)."""
    spans: list[tuple[str, int, int]] = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            spans.append((tag[2:], i, i + 1))
        elif tag.startswith("I-") and spans and spans[-1][2] == i and spans[-1][0] == tag[2:]:
            spans[-1] = (spans[-1][0], spans[-1][1], i + 1)
    return spans


def throughput(tag: TagFn, texts: Sequence[str], batch_size: int) -> dict[str, Any]:
    """Sentences/s and words/s (whitespace words) of `tag` over `texts` in batches of
    `batch_size`, after a warm-up; the entities found are counted so that a system that
    returns nothing cannot pass unnoticed."""
    texts = list(texts[:BATCH1_TEXTS] if batch_size == 1 else texts)
    tag(list(texts[:WARMUP_TEXTS]))
    load = os.getloadavg()[0]
    entities = 0
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        entities += sum(len(found) for found in tag(texts[i : i + batch_size]))
    seconds = time.perf_counter() - start
    words = sum(len(t.split()) for t in texts)
    return {"texts": len(texts), "words": words, "seconds": seconds, "sentences_per_s": len(texts) / seconds,
            "words_per_s": words / seconds, "entities": entities, "load_average_1min": {"start": load, "end": os.getloadavg()[0]}}


def write_result(folder: Path, result: dict[str, Any]) -> None:
    """`folder/result.json`, written whole or not at all (peers.py reruns a worker without one)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "result.json.tmp"
    tmp.write_text(json.dumps(result, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, folder / "result.json")
