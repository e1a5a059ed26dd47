"""Sentences -> model windows of teacher subword ids, for training and evaluation.

Windows are cut by the runtime (`xdner_runtime.windows`), so a deployed tagger sees exactly the
windows a student was trained and scored on. Labels sit on each word's first subword. Sentences
longer than the model's maximum length are split into overlapping windows on word boundaries;
each word's prediction is later taken from the window where it sits most centrally
(`merge_predictions`), so every word gets exactly one prediction and nothing is truncated away.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Iterator, Sequence

import numpy as np
from transformers import PreTrainedTokenizerBase
from xdner_runtime.windows import SpecialIds, Window, WordPieces, check_max_length

from .data.conll import Sentence

IGNORE = -100


def special_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int, int]:
    """(cls, sep, pad) ids; sentencepiece tokenizers call them bos/eos."""
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if cls_id is None or sep_id is None:
        raise ValueError("the tokenizer defines neither cls/sep nor bos/eos tokens")
    return int(cls_id), int(sep_id), int(pad_id)


def word_pieces(tokenizer: PreTrainedTokenizerBase) -> WordPieces:
    """The runtime's word-piece encoder over a `transformers` fast tokenizer's backend, set as a
    `transformers` call without truncation or padding sets it (it does so again on every call)."""
    if not tokenizer.is_fast:
        raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer; students need the teacher's fast (tokenizers) tokenizer")
    backend = tokenizer.backend_tokenizer
    if backend.truncation is not None:
        backend.no_truncation()
    if backend.padding is not None:
        backend.no_padding()
    backend.encode_special_tokens = bool(tokenizer.split_special_tokens)
    cls_id, sep_id, pad_id = special_ids(tokenizer)
    unk = tokenizer.unk_token_id
    return WordPieces(backend, SpecialIds(cls_id, sep_id, pad_id, int(unk if unk is not None else pad_id)))


def encode_stream(sentences: Iterable[Sentence], tokenizer: PreTrainedTokenizerBase, max_length: int,
                  batch: int = 2048) -> Iterator[tuple[Window, Sentence]]:
    """Each sentence's windows with the sentence, in order, tokenized `batch` sentences at a time,
    so a pass over a transfer set of any size holds one batch (`Window.sent` counts from 0)."""
    check_max_length(max_length)
    pieces = word_pieces(tokenizer)
    it = iter(sentences)
    b0 = 0
    while chunk := list(itertools.islice(it, batch)):
        for win in pieces.windows([s.tokens for s in chunk], max_length, first_sent=b0):
            yield win, chunk[win.sent - b0]
        b0 += len(chunk)


def encode(
    sentences: Sequence[Sentence],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    label2id: dict[str, int] | None = None,
) -> list[Window]:
    """Windows for every sentence, in sentence order. With `label2id`, gold tags become labels."""
    windows: list[Window] = []
    for win, sent in encode_stream(sentences, tokenizer, max_length):
        if label2id is not None and sent.tags is not None:
            win.labels = np.full(len(win), IGNORE, dtype=np.int64)
            win.labels[win.word_pos] = [label2id[t] for t in sent.tags[win.first_word : win.first_word + len(win.word_pos)]]
        windows.append(win)
    return windows
