"""Worker for tests/test_distributed.py and tests/test_resume.py, run as a script under one
process or under `torchrun` with several (CPU, gloo): evaluation, transfer annotation and a short
distillation on a tiny teacher. The main process writes what the tests compare into OUT.

    python tests/mp_worker.py TEACHER_DIR OUT [--checkpoint-every N] [--dropout P] [--only-distil]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from xtremedistil_ner import cache as cache_mod
from xtremedistil_ner.config import DistilConfig, RunConfig, StageConfig
from xtremedistil_ner.data.conll import Sentence
from xtremedistil_ner.data.labels import LabelSet
from xtremedistil_ner.distiller import Distiller, StageData
from xtremedistil_ner.encoding import encode, special_ids
from xtremedistil_ner.scoring import predict_tags, predict_windows, score
from xtremedistil_ner.log import configure as configure_logging
from xtremedistil_ner.steps.context import make_accelerator

from conftest import make_sentences, tiny_student

MAX_LENGTH = 10  # short windows, so some sentences span several
STAGES = [
    # `all` under the representation loss: the classifier gets no gradient (the DDP corner case).
    StageConfig("rep", "representation", "transfer", "all", epochs=1, lr=0.01),
    StageConfig("logits", "logits_mse", "transfer", "gradual", epochs=1, lr=0.01),
    StageConfig("gold", "gold", "labeled", "all", epochs=3, lr=0.03, patience=3),
]


def sentences(n: int, seed: int, lang: str, tagged: bool) -> list[Sentence]:
    return [Sentence([w for w, _ in s], [t for _, t in s] if tagged else None, lang) for s in make_sentences(n, seed)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("teacher", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--only-distil", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    acc = make_accelerator(RunConfig())  # what `xdner` uses, so launching it is tested too
    out: Path = args.out
    tokenizer = AutoTokenizer.from_pretrained(args.teacher)
    pad_id = special_ids(tokenizer)[2]
    labels = LabelSet(("LOC", "ORG", "PER"))
    torch.manual_seed(0)
    teacher = AutoModelForTokenClassification.from_pretrained(args.teacher, num_labels=len(labels), ignore_mismatched_sizes=True).eval()
    dev = sentences(9, 5, "en", True) + sentences(4, 6, "de", True)
    dev_windows = encode(dev, tokenizer, MAX_LENGTH)
    # The tiny tokenizer's segmentation can vary between runs; keep the window count uneven over
    # 2 processes and over batches of 6, which is what the evaluation check is about.
    while len(dev_windows) % 2 == 0 or len(dev_windows) % 6 == 0:
        dev = dev[:-1]
        dev_windows = encode(dev, tokenizer, MAX_LENGTH)
    results: dict = {"world_size": acc.num_processes, "dev_windows": len(dev_windows)}

    # Transfer cache: an odd number of shards, shared by the processes.
    transfer = sentences(12, 8, "en", False) + sentences(8, 9, "de", False)
    t_windows = encode(transfer, tokenizer, MAX_LENGTH)
    t_langs = [transfer[w.sent].lang for w in t_windows]
    scanned = cache_mod.scan("tiny", "tiny", zip(t_windows, t_langs), [1], MAX_LENGTH)
    cache_mod.annotate(teacher, lambda: zip(t_windows, t_langs), scanned, [1], out / "cache", pad_id, 8, acc, shard_size=12)

    if not args.only_distil:
        preds = predict_windows(lambda i, m: teacher(input_ids=i, attention_mask=m).logits, dev_windows, pad_id, 6, acc)
        tags = predict_tags(lambda i, m: teacher(input_ids=i, attention_mask=m).logits, dev, dev_windows, labels.id2label, pad_id, 6, acc)
        results["teacher_dev"] = score(dev, tags)
        if acc.is_main_process:
            np.savez(out / "preds.npz", *preds)

    cache = cache_mod.TransferCache(out / "cache")
    train = sentences(16, 3, "en", True) + sentences(8, 4, "de", True)
    labeled = encode(train, tokenizer, MAX_LENGTH, labels.label2id)
    kept = np.union1d(np.nonzero(cache.token_counts(teacher.config.vocab_size))[0], np.unique(np.concatenate([w.input_ids for w in labeled])))
    kept = kept[kept != pad_id]
    student = tiny_student(labels.tags, kept, pad_id, teacher.config.vocab_size, hidden_dim=8, dropout=args.dropout,
                           teacher_hidden_size=teacher.config.hidden_size, max_length=128)
    cfg = DistilConfig(batch_size=8, eval_batch_size=10, stages=STAGES, checkpoint_every=args.checkpoint_every)
    data = StageData(cache, cache.lengths(), labeled, dev, dev_windows, pad_id)
    t0 = time.time()
    progress = Distiller(student, cfg, data, out / "student", acc, seed=1).run()
    results["distil_seconds"] = round(time.time() - t0, 2)
    results["final_dev"] = progress["final_dev"]
    results["sub_stage_seconds"] = [h["seconds"] for h in progress["history"]]
    if acc.is_main_process:
        (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    configure_logging(0)
    main()
