"""A tagger: raw text or pre-tokenised sentences in, entities or IOB2 tags out, over any
backend that turns a padded batch of windows into per-piece tag probabilities (an ONNX graph
here; the training package plugs in the PyTorch student).

Long inputs are cut into the same overlapping windows as in training and merged with
`merge_predictions`, so nothing is truncated. The cost of one short text is mostly what
surrounds the model: one tokenizer call for the whole batch, numpy arrays built once per
batch, and a sentence that fits one window (most do) skips the merge.
"""

from __future__ import annotations

from typing import Callable, Sequence, overload

import numpy as np

from .tags import Entity, entities, strict_iob2
from .windows import Window, WordPieces, merge_predictions
from .words import split_words

# (input_ids int64 [B, T], attention_mask int64 [B, T]) -> tag probabilities float [B, T, labels]
Probabilities = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Tagger:
    """`tagger(text)` -> entities, `tagger([text, ...])` -> entities per text,
    `tagger.tag_tokens([[word, ...], ...])` -> IOB2 tags per sentence."""

    def __init__(self, probabilities: Probabilities, pieces: WordPieces, labels: Sequence[str], max_length: int,
                 batch_size: int = 64) -> None:
        self._probabilities = probabilities
        self.pieces = pieces
        self.labels = list(labels)
        self.max_length = int(max_length)
        self.batch_size = batch_size
        self._labels = np.asarray(self.labels, dtype=object)

    @staticmethod
    def load(path: str, onnx: str, batch_size: int = 64, threads: int | None = None) -> "Tagger":
        """A student folder (labels, tokenizer) and a graph `xdner export` wrote from it, run with
        onnxruntime on the CPU; the graph is refused unless it was exported from that folder's weights."""
        from .onnx import load_tagger

        return load_tagger(path, onnx, batch_size, threads)

    @overload
    def __call__(self, text: str) -> list[Entity]: ...
    @overload
    def __call__(self, text: Sequence[str]) -> list[list[Entity]]: ...

    def __call__(self, text: str | Sequence[str]) -> list[Entity] | list[list[Entity]]:
        texts = [text] if isinstance(text, str) else list(text)
        spans = [split_words(t) for t in texts]
        words = [[t[s:e] for s, e in sp] for t, sp in zip(texts, spans)]
        out = [entities(t, sp, tags, scores) for t, sp, (tags, scores) in zip(texts, spans, self.predict(words))]
        return out[0] if isinstance(text, str) else out

    def tag_tokens(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        return [tags for tags, _ in self.predict(sentences)]

    def predict(self, sentences: Sequence[Sequence[str]]) -> list[tuple[list[str], np.ndarray]]:
        """Per sentence, each word's tag and that tag's probability, both from the window the
        training-time merge picks for the word."""
        nonempty = [i for i, s in enumerate(sentences) if len(s)]
        windows = list(self.pieces.windows([sentences[i] for i in nonempty], self.max_length))
        probs = self._run(windows)
        if len(windows) == len(nonempty):  # one window per sentence: each word's row is its first piece
            rows = [w.word_pos for w in windows]
        else:
            flat = np.concatenate(probs)
            offsets = np.cumsum([0] + [len(w) for w in windows])
            rows = merge_predictions(windows, [o + np.arange(len(w)) for o, w in zip(offsets, windows)],
                                     [len(sentences[i]) for i in nonempty])
            probs = [flat] * len(rows)
        out: list[tuple[list[str], np.ndarray]] = [([], np.empty(0)) for _ in sentences]
        for k, (i, r) in enumerate(zip(nonempty, rows)):
            p = probs[k][r]
            best = p.argmax(-1)
            out[i] = (strict_iob2(self._labels[best].tolist()), p[np.arange(len(best)), best])  # as the reported F1 reads them
        return out

    def _run(self, windows: Sequence[Window]) -> list[np.ndarray]:
        """Each window's probabilities [T, labels], computed in batches of similar length (stable
        length order, the order evaluation uses) padded with the pad id."""
        lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
        order = np.argsort(lengths, kind="stable")
        out: list[np.ndarray] = [np.empty(0)] * len(windows)
        pad = self.pieces.special.pad
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            longest = int(lengths[idx].max())
            ids = np.full((len(idx), longest), pad, dtype=np.int64)
            mask = np.zeros((len(idx), longest), dtype=np.int64)
            for r, i in enumerate(idx):
                ids[r, : lengths[i]] = windows[i].input_ids
                mask[r, : lengths[i]] = 1
            probs = self._probabilities(ids, mask)
            for r, i in enumerate(idx):
                out[i] = probs[r, : lengths[i]]
        return out
