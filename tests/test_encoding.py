"""Sentence -> teacher windows: labels on first subwords only, special tokens at the ends,
windowing of long sentences, and merging window predictions back to one per word."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdner_runtime.windows import Window, merge_predictions, plan_windows

from xtremedistil_ner.data.conll import Sentence
from xtremedistil_ner.data.labels import LabelSet
from xtremedistil_ner.encoding import IGNORE, encode, encode_stream

LABELS = LabelSet(("PER", "LOC", "ORG"))


def _pieces(tokenizer, tokens: list[str]) -> list[list[int]]:
    """Each word's subword ids through `transformers`' own call (the oracle for the runtime's
    encoder, which calls the tokenizer's backend directly); a word with none is the unknown token."""
    enc = tokenizer([tokens], is_split_into_words=True, add_special_tokens=False)
    pieces: list[list[int]] = [[] for _ in tokens]
    for pid, wid in zip(enc["input_ids"][0], enc.word_ids(0)):
        pieces[wid].append(pid)
    return [p or [tokenizer.unk_token_id] for p in pieces]


def _sent(tokens, tags=None, lang="en") -> Sentence:
    return Sentence(list(tokens), list(tags) if tags is not None else None, lang, "test")


def test_labels_only_on_first_subwords(tiny_tokenizer) -> None:
    tokens = ["Anna", "Schmidtschmidt", "works", "for", "Deutsche", "Bank", "in", "Paris", "."]
    tags = ["B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG", "O", "B-LOC", "O"]
    pieces = _pieces(tiny_tokenizer, tokens)
    assert any(len(p) > 1 for p in pieces), "test needs a word split into several subwords"
    (win,) = encode([_sent(tokens, tags)], tiny_tokenizer, max_length=128, label2id=LABELS.label2id)
    ids = win.input_ids.tolist()
    assert ids[0] == tiny_tokenizer.cls_token_id and ids[-1] == tiny_tokenizer.sep_token_id
    assert len(ids) == 2 + sum(len(p) for p in pieces)
    assert ids[1:-1] == [i for p in pieces for i in p]
    # first piece of each word sits at word_pos
    expected_pos, pos = [], 1
    for p in pieces:
        expected_pos.append(pos)
        pos += len(p)
    assert win.word_pos.tolist() == expected_pos
    assert win.first_word == 0 and win.sent == 0
    labeled = np.flatnonzero(win.labels != IGNORE)
    assert len(labeled) == len(tokens)
    assert labeled.tolist() == expected_pos
    assert [LABELS.id2label[int(win.labels[p])] for p in labeled] == tags
    assert win.labels[0] == IGNORE and win.labels[-1] == IGNORE


def test_no_labels_without_label2id_or_tags(tiny_tokenizer) -> None:
    (a,) = encode([_sent(["Anna", "visited", "Paris"], ["B-PER", "O", "B-LOC"])], tiny_tokenizer, 32)
    (b,) = encode([_sent(["Anna", "visited", "Paris"])], tiny_tokenizer, 32, label2id=LABELS.label2id)
    assert a.labels is None and b.labels is None


def test_windows_in_sentence_order(tiny_tokenizer) -> None:
    sents = [_sent(["Anna"]), _sent(["Paris", "is", "nice"]), _sent(["Hi"])]
    pairs = list(encode_stream(iter(sents), tiny_tokenizer, 32, batch=2))  # a stream, batches across sentence boundaries
    assert [w.sent for w, _ in pairs] == [0, 1, 2]
    assert [s is sents[w.sent] for w, s in pairs] == [True] * 3
    assert [len(w.word_pos) for w, _ in pairs] == [1, 3, 1]
    assert [w.input_ids.tolist() for w, _ in pairs] == [w.input_ids.tolist() for w in encode(sents, tiny_tokenizer, 32)]


def test_zero_width_and_control_words_still_get_a_position(tiny_tokenizer) -> None:
    tokens = ["Anna", "\u200b", "\x01\u200d", "visited", "\ufeff"]
    tags = ["B-PER", "O", "O", "O", "O"]
    (win,) = encode([_sent(tokens, tags)], tiny_tokenizer, 64, label2id=LABELS.label2id)
    assert len(win.word_pos) == len(tokens)
    unk = tiny_tokenizer.unk_token_id
    for k in (1, 2, 4):
        assert win.input_ids[win.word_pos[k]] == unk
    assert int((win.labels != IGNORE).sum()) == len(tokens)
    merged = merge_predictions([win], [np.arange(len(win))], [len(tokens)])
    assert merged[0].tolist() == win.word_pos.tolist()


def test_max_length_too_small() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        encode([_sent(["a"])], None, 2)  # type: ignore[arg-type]


def test_long_sentence_is_windowed_and_merged(tiny_tokenizer) -> None:
    rng = random.Random(0)
    vocab = ["Anna", "Schmidt", "works", "for", "Siemens", "in", "Madrid", ".", "yesterday", "Carlos"]
    tokens = [rng.choice(vocab) for _ in range(1000)]
    tags = ["O"] * 1000
    wins = encode([_sent(tokens, tags)], tiny_tokenizer, max_length=32, label2id=LABELS.label2id)
    assert len(wins) > 10
    assert all(len(w) <= 32 for w in wins)
    assert all(w.input_ids[0] == tiny_tokenizer.cls_token_id and w.input_ids[-1] == tiny_tokenizer.sep_token_id for w in wins)
    covered = set()
    for w in wins:
        covered.update(range(w.first_word, w.first_word + len(w.word_pos)))
    assert covered == set(range(1000))
    # each window's prediction at a word's position encodes the word index
    preds = []
    for w in wins:
        p = np.full(len(w), -7, dtype=np.int64)
        p[w.word_pos] = np.arange(w.first_word, w.first_word + len(w.word_pos))
        preds.append(p)
    (merged,) = merge_predictions(wins, preds, [1000])
    assert merged.shape == (1000,)
    assert merged.tolist() == list(range(1000))


def test_word_longer_than_budget_is_clipped_but_predicted(tiny_tokenizer) -> None:
    long_word = "Schmidt" * 12
    tokens = ["Anna", long_word, "visited", "Paris"]
    n_pieces = len(_pieces(tiny_tokenizer, tokens)[1])
    max_length = 8
    assert n_pieces > max_length - 2, "test needs a word with more pieces than the budget"
    wins = encode([_sent(tokens, ["B-PER", "I-PER", "O", "B-LOC"])], tiny_tokenizer, max_length, LABELS.label2id)
    assert all(len(w) <= max_length for w in wins)
    holding = [w for w in wins if w.first_word <= 1 < w.first_word + len(w.word_pos)]
    assert holding and any(len(w) == max_length for w in holding)
    preds = [np.full(len(w), LABELS.label2id["I-PER"]) for w in wins]
    (merged,) = merge_predictions(wins, preds, [len(tokens)])
    assert len(merged) == len(tokens)
    assert (merged == LABELS.label2id["I-PER"]).all()


# --- properties of plan_windows / merge_predictions ----------------------------------------


@settings(max_examples=150, deadline=None)
@given(lengths=st.lists(st.integers(1, 12), min_size=0, max_size=80), budget=st.integers(1, 30))
def test_plan_windows_properties(lengths: list[int], budget: int) -> None:
    spans = plan_windows(lengths, budget)
    n = len(lengths)
    if n == 0:
        assert spans == []
        return
    assert spans[0][0] == 0 and spans[-1][1] == n
    covered = set()
    for i, (start, end) in enumerate(spans):
        assert 0 <= start < end <= n
        assert sum(min(x, budget) for x in lengths[start:end]) <= budget or end - start == 1
        covered.update(range(start, end))
        if i:
            prev_start, prev_end = spans[i - 1]
            assert start > prev_start  # progress
            assert start <= prev_end  # overlap or touch: no gap
            assert end >= prev_end  # never moves backwards
    assert covered == set(range(n))
    assert len(spans) <= n  # start strictly increases, so at most one window per word


def _fake_windows(lengths_per_sent: list[list[int]], budget: int) -> list[Window]:
    """Windows shaped as `encode` makes them, without a tokenizer."""
    wins = []
    for s, lengths in enumerate(lengths_per_sent):
        for start, end in plan_windows(lengths, budget):
            pos, size = [], 1
            for w in range(start, end):
                pos.append(size)
                size += min(lengths[w], budget)
            wins.append(Window(s, np.zeros(size + 1, np.int32), np.asarray(pos, np.int32), start))
    return wins


@settings(max_examples=100, deadline=None)
@given(
    lengths_per_sent=st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=60), min_size=1, max_size=4),
    budget=st.integers(1, 16),
    shuffle_seed=st.integers(0, 2**32 - 1),
)
def test_merge_predictions_properties(lengths_per_sent, budget: int, shuffle_seed: int) -> None:
    wins = _fake_windows(lengths_per_sent, budget)
    n_words = [len(x) for x in lengths_per_sent]
    # prediction = word index * 1000 + window index, so we can see which window each came from
    preds = []
    for k, w in enumerate(wins):
        p = np.full(len(w), -1, dtype=np.int64)
        p[w.word_pos] = (np.arange(w.first_word, w.first_word + len(w.word_pos)) * 1000) + k
        preds.append(p)
    merged = merge_predictions(wins, preds, n_words)
    assert [len(m) for m in merged] == n_words
    for s, m in enumerate(merged):
        # every word got exactly one prediction, from a window of its sentence that covers it
        assert (m // 1000).tolist() == list(range(n_words[s]))
        for word, value in enumerate(m.tolist()):
            w = wins[value % 1000]
            assert w.sent == s and w.first_word <= word < w.first_word + len(w.word_pos)
    order = list(range(len(wins)))
    random.Random(shuffle_seed).shuffle(order)
    shuffled = merge_predictions([wins[i] for i in order], [preds[i] for i in order], n_words)
    assert all(np.array_equal(a, b) for a, b in zip(merged, shuffled))


def test_merge_prefers_the_most_central_window() -> None:
    # a covers words 0-2 (length 5: edge distances 1, 2, 1); b covers words 1-5 (length 7:
    # edge distances 1, 2, 3, 2, 1).
    a = Window(0, np.zeros(5, np.int32), np.asarray([1, 2, 3], np.int32), 0)
    b = Window(0, np.zeros(7, np.int32), np.asarray([1, 2, 3, 4, 5], np.int32), 1)  # words 1..5
    pa = np.asarray([0, 10, 11, 12, 0])
    pb = np.asarray([0, 21, 22, 23, 24, 25, 0])
    (m,) = merge_predictions([a, b], [pa, pb], [6])
    # word 0: only a; word 1: a pos 2 (centrality 2) vs b pos 1 (1) -> a; word 2: a pos 3 (1)
    # vs b pos 2 (2) -> b; word 3: b pos 3 (3); words 4, 5: b only
    assert m.tolist() == [10, 11, 22, 23, 24, 25]
    (m2,) = merge_predictions([b, a], [pb, pa], [6])
    assert m2.tolist() == m.tolist()


def test_merge_ties_go_to_the_earlier_window() -> None:
    a = Window(0, np.zeros(5, np.int32), np.asarray([1, 2, 3], np.int32), 0)  # words 0-2
    b = Window(0, np.zeros(5, np.int32), np.asarray([2, 3], np.int32), 1)  # words 1-2, same distances
    pa, pb = np.asarray([0, 10, 11, 12, 0]), np.asarray([0, 0, 21, 22, 0])
    for order in ([a, b], [b, a]):
        preds = [pa if w is a else pb for w in order]
        (m,) = merge_predictions(order, preds, [3])
        assert m.tolist() == [10, 11, 12]


def test_merge_reports_words_without_prediction() -> None:
    a = Window(0, np.zeros(4, np.int32), np.asarray([1, 2], np.int32), 0)
    with pytest.raises(RuntimeError, match="1 words got no prediction"):
        merge_predictions([a], [np.zeros(4, np.int64)], [3])


def test_merge_requires_one_prediction_per_window() -> None:
    a = Window(0, np.zeros(4, np.int32), np.asarray([1, 2], np.int32), 0)
    with pytest.raises(ValueError):
        merge_predictions([a], [], [2])


def test_windows_hold_exactly_the_pieces_transformers_gives(tiny_tokenizer) -> None:
    """The runtime encodes through the tokenizer's backend; its pieces are `transformers`' own,
    special-token strings in the text and zero-width words included."""
    sentences = [["Anna", "<s>", "visited", "</s>", "<mask>", "Paris", "."], ["\u200b", "東京", "Straße", "\x01"], ["x"]]
    wins = encode([_sent(s) for s in sentences], tiny_tokenizer, max_length=128)
    assert [w.sent for w in wins] == [0, 1, 2]
    for win, tokens in zip(wins, sentences):
        pieces = _pieces(tiny_tokenizer, tokens)
        assert win.input_ids[1:-1].tolist() == [i for p in pieces for i in p]
        assert win.word_pos.tolist() == (1 + np.cumsum([0] + [len(p) for p in pieces[:-1]])).tolist()
