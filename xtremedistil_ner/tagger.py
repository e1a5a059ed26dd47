"""A distilled student as a tagger: raw text or pre-tokenised sentences in, entities or IOB2
tags out, from the student folder alone (weights, config, the teacher's tokenizer).

`pipeline("token-classification", model=DIR)` loads the same folder; the Tagger is for what the
pipeline does not do: split raw text into the words the students were trained on (the
pipeline's words are the tokenizer's whitespace-separated pieces, so "Paris." is one word
there and two here, and Han or Thai text has no word boundaries at all), tag pre-tokenised
sentences with IOB2 tags, and batch many documents by length.

Raw text is split into words the way the training data (WikiANN, CoNLL) is tokenised: at
whitespace (and controls or zero-width spaces), then punctuation and symbols are split off
the start and end of each piece (a run of one repeated character, such as `''`, stays one
word), while punctuation inside a word stays (`Nordrhein-Westfalen`, `d'Italia`, `6:4`, `3.5`).
A final period stays on a short abbreviation or ordinal (`St.`, `B.`, `U.S.`, `1.`), and a piece
that is only punctuation (`''`, `===`) is one word. Devanagari's danda and abbreviation sign
(`है।`, `डॉ॰`) stay attached, as in WikiANN's Hindi. Scripts written without spaces (Han,
Hiragana, Katakana, Thai, Lao, Khmer) are split into single characters (with their combining
marks), as WikiANN's zh and ja are tokenised. Zero-width (non-)joiners stay inside words:
Persian and Indic spellings need them. On the WikiANN training sentences of de/es/fr/hi/ru/tr
(first 3,000 each, tokens joined by spaces) these rules give back the gold tokens in 92.3-95.5%
of sentences, against 45-71% for splitting off every punctuation character.

Long inputs are cut into the same overlapping windows as in training (`encoding.encode`) and
merged with `encoding.merge_predictions`, so nothing is truncated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, TypedDict, overload

import numpy as np
import regex
import torch
from transformers import PreTrainedTokenizerBase

from .batching import map_windows
from .data.conll import Sentence
from .data.labels import repair_iob2
from .encoding import encode, merge_predictions, special_ids
from .evaluate import LogitsFn, logits_fn
from .students import XtremeDistilPreTrainedModel, load_student
from .teacher import load_tokenizer

_UNSPACED = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}"
# A piece: one character of a script written without spaces, or a run of anything else visible.
_PIECE = regex.compile(
    rf"[{_UNSPACED}]\p{{M}}*"
    rf"|(?:(?![{_UNSPACED}])[\p{{L}}\p{{M}}\p{{N}}\p{{P}}\p{{S}}\u200c\u200d])+"
)
_EDGE = regex.compile(r"(?![\u0964\u0965\u0970])[\p{P}\p{S}]")  # split off a piece's ends (not danda, ॰)
_RUNS = regex.compile(r"(.)\1*", regex.DOTALL)


class Entity(TypedDict):
    label: str
    start: int  # character offsets into the input text: text[start:end] == entity text
    end: int
    text: str
    score: float  # mean probability of the predicted tag over the entity's words


def split_words(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of `text` (see the module docstring for the rules)."""
    out: list[tuple[int, int]] = []
    for m in _PIECE.finditer(text):
        start, piece = m.start(), m.group()
        i, j = 0, len(piece)
        while i < j and _EDGE.match(piece[i]):
            i += 1
        while j > i and _EDGE.match(piece[j - 1]):
            j -= 1
        if i == j or len(piece) == 1:  # only punctuation, or a single character
            out.append(m.span())
            continue
        core = piece[i:j]
        if j < len(piece) and piece[j] == "." and (len(core) <= 2 or "." in core or (core.isdigit() and len(core) <= 3)):
            j += 1  # an abbreviation's or ordinal's period
        out += _runs(piece[:i], start) + [(start + i, start + j)] + _runs(piece[j:], start + j)
    return out


def _runs(punctuation: str, start: int) -> list[tuple[int, int]]:
    """One word per run of a repeated character (`''` is one word, `).` two)."""
    return [(start + m.start(), start + m.end()) for m in _RUNS.finditer(punctuation)]


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word + 1) of each entity; a stray `I-X` starts an entity, as
    `repair_iob2` reads it."""
    spans: list[tuple[str, int, int]] = []
    for i, tag in enumerate(repair_iob2(tags)[0]):
        if tag.startswith("B-"):
            spans.append((tag[2:], i, i + 1))
        elif tag.startswith("I-"):
            kind, start, _ = spans[-1]
            spans[-1] = (kind, start, i + 1)
    return spans


def entities(text: str, spans: Sequence[tuple[int, int]], tags: Sequence[str], scores: np.ndarray) -> list[Entity]:
    """Entities of one document from its word `spans` and their predicted tags and scores."""
    out: list[Entity] = []
    for kind, first, last in entity_spans(tags):
        start, end = spans[first][0], spans[last - 1][1]
        out.append(Entity(label=kind, start=start, end=end, text=text[start:end],
                          score=round(float(scores[first:last].mean()), 6)))
    return out


class Tagger:
    """`tagger(text)` -> entities, `tagger([text, ...])` -> entities per text,
    `tagger.tag_tokens([[word, ...], ...])` -> IOB2 tags per sentence."""

    def __init__(
        self, student: XtremeDistilPreTrainedModel, tokenizer: PreTrainedTokenizerBase, device: str | torch.device = "cpu",
        batch_size: int = 64, max_length: int | None = None, logits: LogitsFn | None = None,
    ) -> None:
        self.student = student.to(device).eval()
        self._logits = logits or logits_fn(self.student)
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.max_length = int(max_length or student.config.max_length)
        limit = student.max_positions()
        if limit is not None and self.max_length > limit:
            raise ValueError(f"max_length {self.max_length} is longer than the {limit} positions this {student.config.model_type} student has")
        self.labels = student.labels
        self.pad_id = special_ids(tokenizer)[2]

    @classmethod
    def load(cls, path: Path | str, device: str | torch.device = "cpu", batch_size: int = 64, onnx: Path | str | None = None) -> "Tagger":
        """From a student folder (e.g. `students/NAME/joint/model`) saved with its tokenizer.
        `onnx`: a graph `xdner export` wrote from that student (e.g. `model.int8.onnx`), run with
        onnxruntime on the CPU instead of PyTorch; the folder still gives labels and tokenizer."""
        path = Path(path)
        student = load_student(path)
        if not (path / "tokenizer_config.json").is_file():
            raise FileNotFoundError(
                f"{path}: no tokenizer files; this student was saved without the teacher's tokenizer "
                f"(re-save it with save_student(model, path, tokenizer))"
            )
        if onnx is None:
            return cls(student, load_tokenizer(str(path)), device, batch_size)
        if torch.device(device).type != "cpu":
            raise ValueError(f"an ONNX graph runs on the CPU (onnxruntime), not on {device}")
        if not Path(onnx).is_file():
            raise FileNotFoundError(f"{onnx}: no such ONNX file (write one with `xdner export --model {path} --format onnx`)")
        from .export import check_graph, onnx_logits, onnx_session

        session = onnx_session(Path(onnx))
        check_graph(session, student, Path(onnx), path)
        return cls(student, load_tokenizer(str(path)), "cpu", batch_size, logits=onnx_logits(session))

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

    def _probabilities(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._logits(input_ids, attention_mask).float().softmax(-1)

    def predict(self, sentences: Sequence[Sequence[str]]) -> list[tuple[list[str], np.ndarray]]:
        """Per sentence, each word's tag and that tag's probability. `merge_predictions` picks,
        per word, a row of the flattened window outputs (it is given row numbers instead of tag
        ids), so probabilities and tags come from the same window the training-time merge uses."""
        sents = [Sentence(list(s), None, "") for s in sentences]
        windows = encode([s for s in sents if s.tokens], self.tokenizer, self.max_length)
        nonempty = [i for i, s in enumerate(sents) if s.tokens]
        probs: list[np.ndarray] = [np.empty(0)] * len(windows)
        for i, row in map_windows(self._probabilities, windows, self.pad_id, self.batch_size, self.device):
            probs[i] = row
        offsets = np.cumsum([0] + [len(w) for w in windows])
        rows = merge_predictions(windows, [o + np.arange(len(w)) for o, w in zip(offsets, windows)],
                                 [len(sents[i].tokens) for i in nonempty])
        flat = np.concatenate(probs) if probs else np.empty((0, len(self.labels)))
        out: list[tuple[list[str], np.ndarray]] = [([], np.empty(0)) for _ in sents]
        for i, r in zip(nonempty, rows):
            best = flat[r].argmax(-1)
            out[i] = (repair_iob2([self.labels[k] for k in best])[0], flat[r, best])  # valid IOB2, as conlleval reads it
        return out
