"""Which teacher pieces a tagger specialised from a joint student keeps.

The tagger has room for about half the joint student's embedding rows. Its own language's pieces
come first; the rest of the room goes to the rows its language is likeliest to read in text it
has not seen. A piece's chance in the language is estimated from the language's own text, the
text of the languages whose pieces it shares (`RELATED_WEIGHT`; the closer a language's pieces,
the more, by `OVERLAP_POWER`), and the tokenizer's own
probabilities for pieces of the language's scripts (`SCRIPT_WEIGHT`, as much as the run's text in
each script is the language's). A row's worth is the summed chance of every teacher id that
reads it (an unseen id reads its nearest piece's row), so a row that stands in for many of the
language's unseen pieces is kept even if no text of the run uses it often.

Chosen on the 48-language run's dev sets. When the rest of the room went to the run's most
frequent pieces, the trimmed taggers (before any training) lost 0.175 dev F1 to the joint
student on average, and 13 languages lost more than 0.5; with these weights and the overlaps as
they are, 0.014 and 2 (1 and 1: 0.073 and 6; without the script's share of the run's text, 0.3
and 1: 0.118 and 5, 0.3 and 0.3: 0.061 and 3). Raising the overlaps to the power 8, so that a
language's closest neighbours speak for it rather than the many large languages that share a
little of its alphabet, turns that into a gain of 0.090 and none (powers 2, 4, 16: +0.011, +0.061,
+0.030), and the share of dev piece tokens that read another row than in the joint student
falls from 0.85% to 0.27% (1.90% to 0.58% on the eleven languages with 100 labeled sentences).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..config import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .modeling_xtremedistil import XtremeDistilPreTrainedModel

RELATED_WEIGHT = 0.3
OVERLAP_POWER = 8.0
SCRIPT_WEIGHT = 1.0
SCRIPT_SHARE = 0.05  # a script is the language's if at least this share of its own piece tokens use it


def vocabulary_ranking() -> dict[str, float]:
    """The settings that decide which rows a tagger keeps: recorded with every specialised
    tagger, so a run whose code ranks rows otherwise rebuilds it instead of reusing it."""
    return {"related_weight": RELATED_WEIGHT, "overlap_power": OVERLAP_POWER, "script_weight": SCRIPT_WEIGHT, "script_share": SCRIPT_SHARE}


def piece_scripts(tokenizer: PreTrainedTokenizerBase, size: int) -> np.ndarray:
    """The Unicode script of each of `size` teacher ids' pieces (the first word of its first
    letter's character name: LATIN, MYANMAR, CJK...), '' for special tokens and pieces without
    letters."""
    names = tokenizer.convert_ids_to_tokens(list(range(min(size, len(tokenizer)))))
    special = set(tokenizer.all_special_ids)
    return np.array([_script(p) if i not in special else "" for i, p in enumerate(names)] + [""] * (size - len(names)))


def _script(piece: str) -> str:
    letter = next((ch for ch in piece if ch.isalpha()), None)
    return unicodedata.name(letter, "").split(" ")[0] if letter else ""


def piece_probabilities(tokenizer: PreTrainedTokenizerBase, size: int) -> np.ndarray:
    """The tokenizer's own probability of each of `size` teacher ids, where its model has them
    (a sentencepiece unigram model, as XLM-R's); the same for every piece where it does not."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    model = json.loads(backend.to_str())["model"] if backend is not None else {}
    probs = np.ones(size)
    if model.get("type") == "Unigram":
        scores = np.array([score for _, score in model["vocab"][:size]], dtype=np.float64)
        probs[: len(scores)] = np.exp(scores)
    return probs


@dataclass
class LanguageCounts:
    """How often each teacher id occurs in each language's transfer and labeled text, with what
    the estimates of unseen pieces need from the tokenizer. What every language's estimate reads
    (the run's counts, each language's frequencies and their roots) is derived once."""

    counts: dict[str, np.ndarray]
    scripts: np.ndarray
    probabilities: np.ndarray
    run: np.ndarray = field(init=False)  # every language's counts summed: the run's text, which gave the joint student its rows
    freq: dict[str, np.ndarray] = field(init=False)  # each language's counts as shares of its piece tokens
    roots: dict[str, np.ndarray] = field(init=False)  # their square roots, for the overlaps

    def __post_init__(self) -> None:
        self.run = sum(self.counts.values())
        self.freq = {lang: c / max(c.sum(), 1) for lang, c in self.counts.items()}
        self.roots = {lang: np.sqrt(f) for lang, f in self.freq.items()}

    def chance(self, lang: str) -> np.ndarray:
        """Each teacher id's estimated share of the language's piece tokens."""
        own = self.freq[lang]
        # How much two languages' pieces overlap (Bhattacharyya coefficient of their frequencies),
        # sharpened: the closest languages' text is what the language's unseen text resembles.
        overlap = {m: float(self.roots[lang] @ r) ** OVERLAP_POWER for m, r in self.roots.items() if m != lang}
        total = sum(overlap.values())
        related = sum(w * self.freq[m] for m, w in overlap.items()) / total if total > 0 else np.zeros_like(own)
        return own + RELATED_WEIGHT * related + SCRIPT_WEIGHT * self._script_prior(lang)

    def _script_prior(self, lang: str) -> np.ndarray:
        """The tokenizer's probabilities over each script of the language's text, weighted by
        the script's share of that text and by the language's share of the run's text in it:
        full where no other language writes it (Burmese), faint for the Latin alphabet, whose
        other languages' text already says which of its pieces are likely."""
        own, run = self.counts[lang], self.run
        prior = np.zeros(len(own))
        for script in np.unique(self.scripts[own > 0]):
            mask = self.scripts == script
            share = own[mask].sum() / own.sum()
            if not script or share < SCRIPT_SHARE:
                continue
            probs = np.where(mask, self.probabilities, 0.0)
            prior += share * (own[mask].sum() / run[mask].sum()) * probs / probs.sum()
        return prior


def embedding_room(share: float, total: int, fixed: int, dim: int) -> int:
    """How many pieces' rows a tagger of at most `share` of a `total`-parameter source keeps,
    `fixed` of them outside the embedding rows of width `dim` (pad and unknown have rows too)."""
    return int((share * total - fixed) // dim) - 2


def specialised_vocabulary(source: XtremeDistilPreTrainedModel, lang: str, counts: LanguageCounts, share: float) -> np.ndarray:
    """The teacher ids a tagger for `lang` specialised from `source` keeps, as many as fit in
    `share` of the source's parameters: the pieces of its own text, most frequent first, then
    the other pieces of the run's text (each has a row in `source`) whose rows the language is
    likeliest to read. A piece left out reads its nearest kept piece's row."""
    rows = source.get_input_embeddings().weight
    fixed = source.num_parameters() - rows.numel()  # everything but the embedding rows
    room = embedding_room(share, source.num_parameters(), fixed, rows.shape[1])
    if room < 1:
        raise ConfigError(f"keep_share {share} leaves no room for embedding rows: the joint student's other layers alone are "
                          f"{fixed / source.num_parameters():.3f} of its parameters; raise keep_share above that")
    own_counts = counts.counts[lang]
    own = np.nonzero(own_counts)[0]
    others = np.setdiff1d(np.nonzero(counts.run)[0], own)
    id_map = source.id_map.cpu().numpy()
    reads = id_map >= 2
    worth = np.bincount(id_map[reads], weights=counts.chance(lang)[reads], minlength=rows.shape[0])[id_map[others]]
    ranked = np.concatenate([own[np.argsort(-own_counts[own], kind="stable")], others[np.argsort(-worth, kind="stable")]])
    return np.sort(ranked[:room])
