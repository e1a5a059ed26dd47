"""`evaluate.score`: seqeval strict IOB2 span F1 per language and the macro average, checked
against values worked out by hand."""

from __future__ import annotations

import pytest

from xtremedistil_ner.data.conll import Sentence
from xtremedistil_ner.scoring import score


def _s(tags: list[str], lang: str = "en") -> Sentence:
    return Sentence([f"w{i}" for i in range(len(tags))], tags, lang, "test")


def test_perfect_prediction() -> None:
    gold = [_s(["B-PER", "I-PER", "O", "B-LOC"])]
    r = score(gold, [["B-PER", "I-PER", "O", "B-LOC"]])
    assert r["en"]["f1"] == pytest.approx(100) and r["en"]["precision"] == pytest.approx(100)
    assert r["en"]["sentences"] == 1
    assert r["macro"]["f1"] == pytest.approx(100)


def test_one_of_two_entities_found() -> None:
    # gold: PER(0-1), LOC(3); predicted: PER(0-1) only -> P = 1/1, R = 1/2, F1 = 2/3
    r = score([_s(["B-PER", "I-PER", "O", "B-LOC"])], [["B-PER", "I-PER", "O", "O"]])
    assert r["en"]["precision"] == pytest.approx(100)
    assert r["en"]["recall"] == pytest.approx(50)
    assert r["en"]["f1"] == pytest.approx(200 / 3)


def test_wrong_type_and_wrong_boundary_count_as_errors() -> None:
    # gold: PER(0-1), LOC(3), ORG(5); predicted: ORG(0-1) wrong type, LOC(3) right, ORG(5-6) too long
    gold = [_s(["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "O"])]
    pred = [["B-ORG", "I-ORG", "O", "B-LOC", "O", "B-ORG", "I-ORG"]]
    r = score(gold, pred)
    # 1 correct of 3 predicted and 3 gold -> P = R = F1 = 1/3
    assert r["en"]["precision"] == pytest.approx(100 / 3)
    assert r["en"]["recall"] == pytest.approx(100 / 3)
    assert r["en"]["f1"] == pytest.approx(100 / 3)


def test_wrong_type_span_only() -> None:
    r = score([_s(["B-PER", "I-PER"])], [["B-LOC", "I-LOC"]])
    assert r["en"]["f1"] == 0 and r["en"]["precision"] == 0 and r["en"]["recall"] == 0


def test_i_without_b_is_not_an_entity_in_strict_iob2() -> None:
    # Lenient (conlleval-style) scoring would read I-PER as a PER entity and give 100.
    r = score([_s(["O", "B-PER", "O"])], [["O", "I-PER", "O"]])
    assert r["en"]["f1"] == 0
    assert r["en"]["recall"] == 0
    # ... and a predicted span B-PER I-LOC does not match a gold PER-LOC pair either
    r2 = score([_s(["B-PER", "B-LOC"])], [["B-PER", "I-LOC"]])
    assert r2["en"]["precision"] == pytest.approx(100)  # the only valid predicted span (PER) is right
    assert r2["en"]["recall"] == pytest.approx(50)


def test_per_language_and_macro() -> None:
    sents = [
        _s(["B-PER", "I-PER", "O", "B-LOC"], "en"),  # en: 1 of 2 found -> F1 = 2/3
        _s(["B-ORG", "O"], "de"),  # de: perfect over two sentences
        _s(["O", "B-LOC"], "de"),
        _s(["B-PER"], "sw"),  # sw: wrong type -> 0
    ]
    preds = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"], ["O", "B-LOC"], ["B-ORG"]]
    r = score(sents, preds)
    assert set(r) == {"en", "de", "sw", "macro"}
    assert r["en"]["f1"] == pytest.approx(200 / 3)
    assert r["de"]["f1"] == pytest.approx(100) and r["de"]["sentences"] == 2
    assert r["sw"]["f1"] == pytest.approx(0)
    # macro is the unweighted mean over languages, not the pooled (micro) F1
    assert r["macro"]["f1"] == pytest.approx((200 / 3 + 100 + 0) / 3)
    assert r["macro"]["precision"] == pytest.approx((100 + 100 + 0) / 3)
    assert r["macro"]["recall"] == pytest.approx((50 + 100 + 0) / 3)
    pooled_f1 = 2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5) * 100  # 3 right of 4 predicted, 5 gold
    assert r["macro"]["f1"] != pytest.approx(pooled_f1)


def test_no_entities_anywhere_gives_zero_not_error() -> None:
    r = score([_s(["O", "O"])], [["O", "O"]])
    assert r["en"]["f1"] == 0


def test_sentence_without_gold_tags_is_an_error() -> None:
    with pytest.raises(ValueError, match="without gold tags"):
        score([Sentence(["a"], None, "en", "f.txt:3")], [["O"]])


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        score([_s(["O"]), _s(["O"])], [["O"]])


def test_empty_input() -> None:
    assert score([], []) == {}


def test_entity_counts_add_up_to_the_score_and_the_bootstrap_compares_paired_resamples() -> None:
    """Per-sentence counts give `score`'s F1 (strict IOB2: a stray I- is no entity); the paired
    bootstrap says how often one prediction beats another over resampled sentences."""
    from xtremedistil_ner.scoring import entity_counts, share_better

    gold = [_s(["B-PER", "I-PER", "O"]), _s(["B-LOC", "O", "B-ORG"]), _s(["O", "O", "O"]), _s(["B-PER", "O", "O"], "de"),
            _s(["O", "B-LOC", "O"], "de")]
    worse = [["B-PER", "O", "O"], ["B-LOC", "O", "I-ORG"], ["O", "O", "O"], ["B-PER", "O", "O"], ["O", "O", "O"]]
    better = [["B-PER", "I-PER", "O"], ["B-LOC", "O", "B-ORG"], ["O", "O", "O"], ["B-PER", "O", "O"], ["O", "B-LOC", "O"]]
    counts = entity_counts(gold, worse)
    assert counts["en"].tolist() == [[0, 1, 1], [1, 1, 2], [0, 0, 0]] and counts["de"].tolist() == [[1, 1, 1], [0, 0, 1]]
    reported = score(gold, worse)
    for lang, rows in counts.items():
        tp, pred, gold_n = rows.sum(axis=0)
        assert 100 * 2 * tp / (pred + gold_n) == pytest.approx(reported[lang]["f1"])
    assert share_better(counts, counts) == 0.0  # a tie is not a gain
    assert share_better(counts, entity_counts(gold, better)) > 0.9
    assert share_better(entity_counts(gold, better), counts) == 0.0
    one_entity = entity_counts(gold, [better[0], *worse[1:]])  # better on one sentence of three in one language
    assert 0.5 < share_better(counts, one_entity, seed=1) < 0.8  # 1 - (2/3)^3 = 0.70 of draws hold it
