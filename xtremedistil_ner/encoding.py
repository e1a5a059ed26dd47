"""Sentences -> model windows of teacher subword ids.

Labels sit on each word's first subword (found with the fast tokenizer's `word_ids()`).
Sentences longer than the model's maximum length are split into overlapping windows on word
boundaries; each word's prediction is later taken from the window where it sits most centrally,
so every word gets exactly one prediction and nothing is truncated away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from transformers import PreTrainedTokenizerBase

from .data.conll import Sentence

IGNORE = -100


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


def special_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int, int]:
    """(cls, sep, pad) ids; sentencepiece tokenizers call them bos/eos."""
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if cls_id is None or sep_id is None:
        raise ValueError("the tokenizer defines neither cls/sep nor bos/eos tokens")
    return int(cls_id), int(sep_id), int(pad_id)


def word_pieces(tokenizer: PreTrainedTokenizerBase, words: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Per sentence, per word, its subword ids. A word the tokenizer maps to nothing (control or
    zero-width characters only) becomes the unknown token, so it still gets a prediction."""
    # verbose=False: long sentences are windowed below, so the "longer than maximum" warning misleads.
    enc = tokenizer([list(w) for w in words], is_split_into_words=True, add_special_tokens=False, verbose=False)
    unk = tokenizer.unk_token_id
    out: list[list[list[int]]] = []
    for i, sent in enumerate(words):
        pieces: list[list[int]] = [[] for _ in sent]
        for pid, wid in zip(enc["input_ids"][i], enc.word_ids(i)):
            if wid is not None:
                pieces[wid].append(pid)
        for p in pieces:
            if not p:
                p.append(unk)
        out.append(pieces)
    return out


def plan_windows(lengths: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Split words with piece counts `lengths` into [start, end) word ranges whose pieces fit
    `budget` (a single longer word is clipped to it), consecutive ranges overlapping by about
    half a window so every word has context on both sides in some window."""
    n = len(lengths)
    if n == 0:
        return []
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


def encode(
    sentences: Sequence[Sentence],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    label2id: dict[str, int] | None = None,
    batch: int = 2048,
) -> list[Window]:
    """Windows for every sentence, in sentence order. With `label2id`, gold tags become labels."""
    if max_length < 3:
        raise ValueError(f"max_length must be at least 3 (got {max_length})")
    cls_id, sep_id, _ = special_ids(tokenizer)
    budget = max_length - 2
    windows: list[Window] = []
    for b0 in range(0, len(sentences), batch):
        chunk = sentences[b0 : b0 + batch]
        for offset, (sent, pieces) in enumerate(zip(chunk, word_pieces(tokenizer, [s.tokens for s in chunk]))):
            lengths = [len(p) for p in pieces]
            for start, end in plan_windows(lengths, budget):
                ids = [cls_id]
                pos = []
                for w in range(start, end):
                    pos.append(len(ids))
                    ids.extend(pieces[w][:budget])
                ids.append(sep_id)
                labels = None
                if label2id is not None and sent.tags is not None:
                    labels = np.full(len(ids), IGNORE, dtype=np.int64)
                    labels[pos] = [label2id[t] for t in sent.tags[start:end]]
                windows.append(
                    Window(b0 + offset, np.asarray(ids, np.int32), np.asarray(pos, np.int32), start, labels)
                )
    return windows


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
