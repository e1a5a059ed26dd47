"""Shared fixtures: tiny teachers built from a config with a tokenizer trained in the test
(no Hub), small CoNLL files, and the path to the shared real data when it is present."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import yaml

@pytest.fixture(autouse=True, scope="session")
def package_logging() -> None:
    """The package's messages on stderr at INFO, as `xdner` shows them (tests read them there)."""
    from xtremedistil_ner.log import configure

    configure(0)


SHARED_NER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ner"

PER = ["Anna Schmidt", "John Smith", "Marie Curie", "Ivan Petrov", "Li Wei", "Carlos Ruiz"]
ORG = ["Siemens", "Acme Corp", "Deutsche Bank", "United Nations", "Red Cross"]
LOC = ["Berlin", "New York", "Paris", "Moscow", "Madrid", "Lake Como"]
TEMPLATES = [
    ["{PER}", "works", "for", "{ORG}", "in", "{LOC}", "."],
    ["{PER}", "visited", "{LOC}", "yesterday", "."],
    ["The", "office", "of", "{ORG}", "is", "near", "{LOC}", "."],
    ["Nothing", "happened", "today", "."],
    ["{PER}", "and", "{PER}", "met", "at", "{ORG}", "."],
]


def make_sentences(n: int, seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    pools = {"PER": PER, "ORG": ORG, "LOC": LOC}
    out = []
    for _ in range(n):
        sent: list[tuple[str, str]] = []
        for slot in rng.choice(TEMPLATES):
            if slot.startswith("{"):
                kind = slot[1:-1]
                for j, word in enumerate(rng.choice(pools[kind]).split()):
                    sent.append((word, f"{'B' if j == 0 else 'I'}-{kind}"))
            else:
                sent.append((slot, "O"))
        out.append(sent)
    return out


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(f"{w}\t{t}\n" for w, t in s) + "\n" for s in sentences), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/<lang>/{train,dev,test}.txt for two pseudo-languages (same grammar, different seeds)."""
    root = tmp_path_factory.mktemp("tiny_data")
    for k, lang in enumerate(("en", "de")):
        for split, n in (("train", 120), ("dev", 30), ("test", 30)):
            write_conll(root / lang / f"{split}.txt", make_sentences(n, seed=100 * k + len(split)))
        (root / lang / "transfer.txt").write_text(
            "\n".join(" ".join(w for w, _ in s) for s in make_sentences(80, seed=7 + k)) + "\n", encoding="utf-8"
        )
    return root


def build_tiny_teacher(out_dir: Path, texts: list[str], hidden: int = 32, layers: int = 2) -> Path:
    """A randomly initialised BERT with a WordPiece tokenizer trained on `texts`, saved like a
    Hub checkpoint."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    wp = BertWordPieceTokenizer(lowercase=False)
    wp.train_from_iterator(texts, vocab_size=300, min_frequency=1)
    tokenizer = BertTokenizerFast(tokenizer_object=wp._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                  cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128)
    BertForTokenClassification(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [" ".join(w for w, _ in s) for s in make_sentences(300, seed=1)]
    return build_tiny_teacher(tmp_path_factory.mktemp("tiny_teacher"), texts)


@pytest.fixture
def tiny_tokenizer(tiny_teacher: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_teacher)


TINY_SIZES = {
    "bilstm": {"embedding_dim": 8, "hidden_dim": 6},
    "transformer": {"num_layers": 2, "hidden_dim": 8, "num_heads": 2, "ff_dim": 16, "teacher_layers": [2, 4]},
}


def tiny_student(labels, kept, pad_id: int, teacher_vocab_size: int, kind: str = "bilstm", seed: int = 0,
                 teacher_hidden_size: int = 10, max_length: int = 16, dropout: float = 0.0, **sizes):
    """A randomly initialised student of `kind` over the teacher ids `kept` (the rest map to
    unknown), built from its `transformers` config as distillation builds it."""
    import numpy as np

    from xtremedistil_ner.students import student_type
    from xtremedistil_ner.students.base import config_kwargs

    kind_cls = student_type(kind)
    kept = np.asarray(kept)
    base = {"labels": list(labels), "vocab_size": len(kept) + 2, "teacher_vocab_size": teacher_vocab_size,
            "teacher_hidden_size": teacher_hidden_size, "max_length": max_length, "teacher_layers": [1]}
    config = kind_cls.config_class(**{**config_kwargs(base), "dropout": dropout, **TINY_SIZES[kind], **sizes})
    torch.manual_seed(seed)
    model = kind_cls.model_class(config)
    model.set_vocabulary(kept, pad_id)
    return model


class Crash(Exception):
    """A crash injected into a training run by `crashing_accelerator`."""


def crashing_accelerator(at: int, after_writing: bool = True):
    """A CPU Accelerator whose `at`-th `save_state` raises `Crash`: after writing its files
    (a crash before the state's directory is swapped in) or before writing anything."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    save_state, calls = acc.save_state, []

    def save(path: str) -> None:
        calls.append(path)
        if len(calls) == at and not after_writing:
            raise Crash
        save_state(path)
        if len(calls) == at:
            raise Crash

    acc.save_state = save
    return acc


@pytest.fixture
def base(tmp_path: Path, tiny_data: Path, tiny_teacher: Path) -> Path:
    """A valid config for the tiny data and teacher; each case overrides part of it."""
    files = {lang: {split: str(tiny_data / lang / f"{split}.txt") for split in ("train", "dev", "test")} for lang in ("en", "de")}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "out"), "languages": ["en", "de"], "data": {"files": files},
        "teacher": {"model": str(tiny_teacher), "max_length": 32, "min_steps": 0},
        "students": [{"name": "s", "type": "bilstm", "embedding_dim": 8, "hidden_dim": 8}],
    }))
    return path
