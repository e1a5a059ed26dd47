"""Smoke checks of an installed wheel, run by `tests/test_wheel.py` with the python of a fresh
virtual environment, from a scratch folder outside the repository (the current directory).

Each check is a function listed in CHECKS; they run in order and each prints `ok NAME (SECONDS)`.
To check more of the installed package, add a function and list it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

VENV = Path(sys.prefix).resolve()
XDNER = Path(sys.executable).parent / "xdner"  # the console script the wheel installed
WORK = Path.cwd()


def _in_venv(path: str | Path) -> bool:
    return Path(path).resolve().is_relative_to(VENV)


def _xdner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(XDNER), *args], capture_output=True, text=True, timeout=300)


def installed_copy_is_imported() -> None:
    """The package, its language files and everything imported from it come from the venv,
    and no editable-install finder (of a checkout) is active."""
    import xtremedistil_ner
    from xtremedistil_ner import cli  # noqa: F401  (imports most of the package)
    from xtremedistil_ner.languages import languages_dir

    assert sys.prefix != sys.base_prefix, "not running in a virtual environment"
    assert _in_venv(xtremedistil_ner.__file__), f"xtremedistil_ner imported from {xtremedistil_ner.__file__}, not {VENV}"
    outside = [m.__name__ for m in list(sys.modules.values())
               if m.__name__.startswith("xtremedistil_ner") and getattr(m, "__file__", None) and not _in_venv(m.__file__)]
    assert not outside, f"modules imported from outside {VENV}: {outside}"
    editable = [f for f in sys.meta_path if "__editable__" in getattr(f, "__module__", "")]
    assert not editable, f"an editable install's finder is active: {editable}"
    assert _in_venv(languages_dir()), f"language files at {languages_dir()}, not in {VENV}"


def cli_help() -> None:
    proc = _xdner("--help")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for command in ("run", "validate", "predict", "export", "serve"):
        assert command in proc.stdout, proc.stdout


def validate_language_set_and_config() -> None:
    """`xdner validate` on the installed wikiann6 set YAML and on a run config naming the set
    (`languages: wikiann6`, local data): the set expands from package data and each language's
    YAML says where its files are. A BOM in the last language's train file is a warning (exit 0)
    that shows the check got that far."""
    from xtremedistil_ner.languages import languages_dir, load_language_set

    set_yaml = languages_dir() / "sets" / "wikiann6.yaml"
    langs = load_language_set("wikiann6")
    root = WORK / "data"
    for lang in langs:
        for split in ("train", "dev", "test"):
            path = root / "wikiann" / lang / f"{split}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            bom = "\ufeff" if (lang, split) == (langs[-1], "train") else ""
            path.write_text(f"{bom}Anna\tB-PER\nlebt\tO\nin\tO\nBerlin\tB-LOC\n\n", encoding="utf-8")
    config = WORK / "run.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(WORK / "run"), "languages": "wikiann6",
        "data": {"dataset": "wikiann", "format": "local", "root": str(root)},
    }))
    proc = _xdner("validate", str(set_yaml), str(config))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert out.strip().endswith("0 errors, 1 warning in 1 file"), out
    assert f"wikiann/{langs[-1]}/train.txt" in out and "byte-order mark" in out, out


def student_loads_with_auto_classes_and_pipeline() -> None:
    """A tiny student saved by the installed package loads through `AutoModelForTokenClassification`
    (the package registers its classes on import) and tags raw text in `pipeline`."""
    import numpy as np
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import AutoModelForTokenClassification, BertTokenizerFast, pipeline

    from xtremedistil_ner.students import BiLSTMForTokenClassification, BiLSTMStudentConfig, save_student
    from xtremedistil_ner.students.base import config_kwargs

    wp = BertWordPieceTokenizer(lowercase=False)
    wp.train_from_iterator(["Anna lives in Berlin", "Siemens is in Munich"], vocab_size=60, min_frequency=1)
    tokenizer = BertTokenizerFast(tokenizer_object=wp._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                  cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    vocab = len(tokenizer)
    config = BiLSTMStudentConfig(embedding_dim=8, hidden_dim=6, teacher_hidden_size=10, teacher_vocab_size=vocab,
                                 vocab_size=vocab + 1, teacher_layers=[1], max_length=32,
                                 **config_kwargs({"labels": ["O", "B-PER", "I-PER"]}))
    torch.manual_seed(0)
    student = BiLSTMForTokenClassification(config).eval()
    student.set_vocabulary(np.array([i for i in range(vocab) if i != tokenizer.pad_token_id]), tokenizer.pad_token_id)
    save_student(student, WORK / "student", tokenizer)
    loaded = AutoModelForTokenClassification.from_pretrained(WORK / "student")
    assert _in_venv(sys.modules[type(loaded).__module__].__file__), type(loaded)
    ids = torch.tensor([tokenizer("Anna lives in Berlin")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, student(ids).logits)
    tagged = pipeline("token-classification", model=str(WORK / "student"), aggregation_strategy="first")("Anna lives in Berlin")
    assert all(set(e) >= {"entity_group", "start", "end", "score"} for e in tagged), tagged


CHECKS = [installed_copy_is_imported, cli_help, validate_language_set_and_config, student_loads_with_auto_classes_and_pipeline]


def main() -> None:
    for check in CHECKS:
        start = time.perf_counter()
        check()
        print(f"ok {check.__name__} ({time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
