"""The peers benchmark's shared protocol (`benchmarks/_peer_protocol.py`, standard library only so
flair's own environment can import it): its IOB2 spans agree with the package's, and the
throughput measurement counts texts, whitespace words and entities as it says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _peer_protocol import BATCH1_TEXTS, iob2_spans, throughput  # noqa: E402

from xdner_runtime.tags import entity_spans, repair_iob2  # noqa: E402


@given(st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]), max_size=30))
def test_spans_agree_with_the_package_on_well_formed_iob2(raw: list[str]) -> None:
    tags = repair_iob2(raw)[0]  # the corpus reader hands the workers repaired tags
    assert iob2_spans(tags) == entity_spans(tags)


def test_throughput_counts_texts_words_and_entities() -> None:
    texts = [f"w{i} x y" for i in range(BATCH1_TEXTS + 40)]
    calls: list[int] = []

    def tag(batch: list[str]) -> list[list[tuple[str, int, int]]]:
        calls.append(len(batch))
        return [[("PER", 0, 2)] for _ in batch]

    b64 = throughput(tag, texts, 64)
    assert (b64["texts"], b64["words"], b64["entities"]) == (len(texts), 3 * len(texts), len(texts))
    assert calls[1:] == [64] * (len(texts) // 64) + [len(texts) % 64]  # after the warm-up call
    calls.clear()
    b1 = throughput(tag, texts, 1)
    assert b1["texts"] == BATCH1_TEXTS and set(calls[1:]) == {1} and len(calls) == BATCH1_TEXTS + 1
    assert b1["sentences_per_s"] > 0 and b1["words_per_s"] == pytest.approx(3 * b1["sentences_per_s"])
