"""Sentences of words -> model windows of teacher subword ids, and per-window predictions ->
one per word.

Sentences longer than the model's maximum length are split into overlapping windows on word
boundaries; each word's prediction is later taken from the window where it sits most centrally,
so every word gets exactly one prediction and nothing is truncated away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
from tokenizers import Tokenizer


@dataclass
class Window:
    """One model input: `[CLS] pieces [SEP]` covering words `words` of sentence `sent`."""

    sent: int
    input_ids: np.ndarray  # int32 [T]
    word_pos: np.ndarray  # int32 [n_words]: position of each covered word's first piece
    first_word: int  # index in the sentence of the first covered word
    labels: np.ndarray | None = None  # int64 [T], IGNORE except at first pieces

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    pad: int
    unk: int


class WordPieces:
    """A fast (`tokenizers`) tokenizer over words already split: each word's subword ids, a word
    the tokenizer maps to nothing (control or zero-width characters only) as the unknown token,
    so it still gets a prediction."""

    def __init__(self, tokenizer: Tokenizer, special: SpecialIds) -> None:
        self.tokenizer = tokenizer
        self.special = special

    def encode(self, sentences: Sequence[Sequence[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per sentence, (every word's pieces one after another, int32; pieces per word, int64)."""
        words = [list(s) for s in sentences]
        if len(words) == 1:  # one call without the batch's thread pool: the common case of a service
            encs = [self.tokenizer.encode(words[0], is_pretokenized=True, add_special_tokens=False)]
        else:
            encs = self.tokenizer.encode_batch(words, is_pretokenized=True, add_special_tokens=False)
        out = []
        for words, enc in zip(sentences, encs):
            ids = np.asarray(enc.ids, dtype=np.int32)
            lengths = np.bincount(np.asarray(enc.word_ids, dtype=np.int64), minlength=len(words)) if len(ids) else np.zeros(len(words), np.int64)
            if not lengths.all():
                empty = np.flatnonzero(lengths == 0)
                ids = np.insert(ids, np.cumsum(lengths)[empty] - lengths[empty], self.special.unk).astype(np.int32)
                lengths[empty] = 1
            out.append((ids, lengths))
        return out

    def windows(self, sentences: Sequence[Sequence[str]], max_length: int, first_sent: int = 0) -> Iterator[Window]:
        """Windows of every sentence, in order; sentence `i` of `sentences` is `first_sent + i`."""
        check_max_length(max_length)
        for offset, (ids, lengths) in enumerate(self.encode(sentences)):
            yield from sentence_windows(first_sent + offset, ids, lengths, self.special, max_length - 2)


def check_max_length(max_length: int) -> None:
    if max_length < 3:  # [CLS], a piece, [SEP]
        raise ValueError(f"max_length must be at least 3 (got {max_length})")


def sentence_windows(sent: int, ids: np.ndarray, lengths: np.ndarray, special: SpecialIds, budget: int) -> Iterator[Window]:
    """The windows of one sentence from its words' pieces (`ids`, `lengths` as `WordPieces.encode`
    gives them); a word longer than `budget` pieces is clipped to it."""
    starts = np.cumsum(lengths) - lengths
    clipped = np.minimum(lengths, budget)
    for start, end in plan_windows(lengths.tolist(), budget):
        if (lengths[start:end] <= budget).all():  # the words' pieces lie side by side in `ids`
            body = ids[starts[start] : starts[end - 1] + lengths[end - 1]]
        else:
            body = np.concatenate([ids[s : s + c] for s, c in zip(starts[start:end], clipped[start:end])])
        pos = 1 + np.cumsum(clipped[start:end]) - clipped[start:end]
        input_ids = np.empty(len(body) + 2, dtype=np.int32)
        input_ids[0], input_ids[1:-1], input_ids[-1] = special.cls, body, special.sep
        yield Window(sent, input_ids, pos.astype(np.int32), start)


def plan_windows(lengths: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Split words with piece counts `lengths` into [start, end) word ranges whose pieces fit
    `budget` (a single longer word is clipped to it), consecutive ranges overlapping by about
    half a window so every word has context on both sides in some window."""
    n = len(lengths)
    if n == 0:
        return []
    if sum(lengths) <= budget:  # one window: most sentences
        return [(0, n)]
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end, used = start, 0
        while end < n and (end == start or used + lengths[end] <= budget):
            used += min(lengths[end], budget)
            end += 1
        spans.append((start, end))
        if end >= n:
            return spans
        half, acc, nxt = used // 2, 0, start
        while nxt < end and acc + min(lengths[nxt], budget) <= half:
            acc += min(lengths[nxt], budget)
            nxt += 1
        # The next window must reach past `end`, or it would sit inside this one.
        while nxt < end and sum(min(n, budget) for n in lengths[nxt : end + 1]) > budget:
            nxt += 1
        start = max(nxt, start + 1)


def merge_predictions(
    windows: Iterable[Window], predictions: Iterable[np.ndarray], n_words: Sequence[int]
) -> list[np.ndarray]:
    """Per sentence, one label id per word: from the window where that word's first piece is
    farthest from either window edge (ties: the window starting earlier), so the result does
    not depend on the order windows arrive in."""
    best = [np.full(n, -1, dtype=np.int64) for n in n_words]
    score = [np.full(n, -1, dtype=np.int64) for n in n_words]
    owner = [np.full(n, np.iinfo(np.int64).max, dtype=np.int64) for n in n_words]
    for win, pred in zip(windows, predictions, strict=True):
        centrality = np.minimum(win.word_pos, len(win) - 1 - win.word_pos).astype(np.int64)
        idx = np.arange(win.first_word, win.first_word + len(win.word_pos))
        cur = score[win.sent][idx]
        better = (centrality > cur) | ((centrality == cur) & (win.first_word < owner[win.sent][idx]))
        take = idx[better]
        best[win.sent][take] = np.asarray(pred)[win.word_pos[better]]
        score[win.sent][take] = centrality[better]
        owner[win.sent][take] = win.first_word
    for s, arr in enumerate(best):
        if (arr < 0).any():
            raise RuntimeError(f"sentence {s}: {int((arr < 0).sum())} words got no prediction")
    return best
