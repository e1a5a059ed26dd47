"""The flair peer of `benchmarks/peers.py` (#17), run by it in flair's own virtual environment:
flair 0.15 requires transformers<5 and this package transformers>=5, so they cannot share one.
Reads the exchange folder `peers.py` wrote (labeled data as JSONL, the throughput texts), trains
flair's BiLSTM-CRF `SequenceTagger` from scratch, and writes `flair/result.json`: test tags on
the gold tokens (peers.py scores them with the package's seqeval scorer), parameters, training
time, and end-to-end throughput (raw text in, entities out). Imports flair and torch only.

    python -m venv .venv-flair && .venv-flair/bin/pip install torch==2.13.0 flair
    .venv-flair/bin/python benchmarks/peers_flair.py --work runs/peers   # what peers.py runs

No pretrained embeddings can be downloaded here, so the tagger reads word embeddings learned
from the training sentences (`OneHotEmbeddings`: words seen 3+ times, flair's default) and
character embeddings over the training sentences' characters; everything else is flair's
documented default (but embeddings_storage_mode "none", as both embeddings are trained):
BiLSTM 256, CRF, SGD at 0.1 annealed by half after 3 epochs without dev
improvement, stopping below 1e-4 or after `--max-epochs`; the best epoch on dev is kept
(`--dev-per-lang` caps the dev sentences flair scores after every epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import flair
import torch
from flair.data import Corpus, Dictionary, Sentence
from flair.datasets import FlairDatapointDataset
from flair.embeddings import CharacterEmbeddings, OneHotEmbeddings, StackedEmbeddings
from flair.models import SequenceTagger
from flair.trainers import ModelTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer_protocol import BATCH_SIZES, iob2_spans, read_jsonl, throughput, write_result  # noqa: E402


def labeled(record: dict) -> Sentence:
    sentence = Sentence(record["tokens"])
    for label, start, end in iob2_spans(record["tags"]):
        sentence[start:end].add_label("ner", label)
    return sentence


def tags_of(sentence: Sentence) -> list[str]:
    tags = ["O"] * len(sentence)
    for span in sentence.get_spans("ner"):
        for k, token in enumerate(span.tokens):
            tags[token.idx - 1] = ("B-" if k == 0 else "I-") + span.tag
    return tags


def epochs_run(loss_file: Path) -> list[dict[str, str]]:
    """flair's per-epoch log (learning rate, train loss, dev score) as records."""
    lines = loss_file.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def first_per_lang(records: list[dict], n: int | None) -> list[dict]:
    """The first `n` records of each language, in their order (all when `n` is None)."""
    seen: dict[str, int] = {}
    kept = []
    for r in records:
        seen[r["lang"]] = seen.get(r["lang"], 0) + 1
        if n is None or seen[r["lang"]] <= n:
            kept.append(r)
    return kept


def char_dictionary(sentences: list[Sentence]) -> Dictionary:
    """The training sentences' characters (flair's own list is a download)."""
    chars = Dictionary()
    for sentence in sentences:
        for token in sentence:
            for ch in token.text:
                chars.add_item(ch)
    return chars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="the exchange folder peers.py prepared")
    parser.add_argument("--max-epochs", type=int, default=100, help="flair's default; annealing usually stops it first")
    parser.add_argument("--dev-per-lang", type=int, help="select on the first N dev sentences of each language (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("PEERS_THREADS", torch.get_num_threads())))
    flair.set_seed(42)
    data, out = args.work / "data", args.work / "flair"
    train = [labeled(r) for r in read_jsonl(data / "train.jsonl")]
    dev = [labeled(r) for r in first_per_lang(read_jsonl(data / "dev.jsonl"), args.dev_per_lang)]
    corpus = Corpus(train=FlairDatapointDataset(train), dev=FlairDatapointDataset(dev), sample_missing_splits=False)
    embeddings = StackedEmbeddings([OneHotEmbeddings.from_corpus(corpus), CharacterEmbeddings(path_to_char_dict=char_dictionary(train))])
    tagger = SequenceTagger(hidden_size=256, embeddings=embeddings, tag_dictionary=corpus.make_label_dictionary("ner", add_unk=False),
                            tag_type="ner", use_crf=True)
    trained = out / "training.json"  # a tagger trained before is reused, so its timing can be redone alone
    if trained.is_file():
        record = json.loads(trained.read_text(encoding="utf-8"))
    else:
        t0 = time.perf_counter()
        # Both embeddings are trained: with flair's default storage mode ("cpu") the one-hot vectors
        # computed in epoch 1 stay on the sentences and are reused, so training and the dev score
        # that drives annealing and selection see stale embeddings (the kept weights scored 0.357
        # micro dev F1 while training and 0.562 on fresh sentences).
        ModelTrainer(tagger, corpus).train(str(out / "model"), max_epochs=args.max_epochs, eval_batch_size=256,
                                           embeddings_storage_mode="none")
        best = out / "model" / "best-model.pt"  # flair saves it when dev improves; else, as flair does, the final model
        record = {"seconds": time.perf_counter() - t0, "kept": best.name if best.exists() else "final-model.pt"}
        trained.write_text(json.dumps(record), encoding="utf-8")
    train_seconds, kept = record["seconds"], out / "model" / record["kept"]
    # Its weights go into the tagger built above: a tagger rebuilt by `SequenceTagger.load` from
    # these embeddings scores near 0 (flair issue #3459; dev F1 0.286 in memory, 0.007 reloaded).
    tagger.load_state_dict(SequenceTagger.load(kept).state_dict())
    tagger.eval()

    test = [Sentence(r["tokens"]) for r in read_jsonl(data / "test.jsonl")]
    tagger.predict(test, mini_batch_size=256)
    texts = json.loads((data / "texts.json").read_text(encoding="utf-8"))["texts"]

    def run(batch: list[str], size: int) -> list[list[tuple[str, int, int]]]:
        sentences = [Sentence(t) for t in batch]  # flair's default tokenizer (segtok)
        tagger.predict(sentences, mini_batch_size=size)
        return [[(sp.tag, sp.start_position, sp.end_position) for sp in s.get_spans("ner")] for s in sentences]

    write_result(out, {
        "system": "flair BiLSTM-CRF",
        "versions": {"flair": flair.__version__, "torch": torch.__version__},
        "settings": {"embeddings": "OneHotEmbeddings (min_freq 3, 300 d) + CharacterEmbeddings (25 d, training characters)",
                     "hidden_size": 256, "crf": True, "learning_rate": 0.1, "mini_batch_size": 32, "anneal_factor": 0.5,
                     "patience": 3, "max_epochs": args.max_epochs, "embeddings_storage_mode": "none",
                     "selection": f"best dev micro F1 (flair's default) on {len(dev):,} dev sentences",
                     "threads": torch.get_num_threads()},
        "training": {"seconds": train_seconds, "kept": kept.name, "epochs": epochs_run(out / "model" / "loss.tsv")},
        "parameters": sum(p.numel() for p in tagger.parameters()),
        "test_tags": [tags_of(s) for s in test],
        "throughput": {str(b): throughput(lambda batch, b=b: run(batch, b), texts, b) for b in BATCH_SIZES},
    })


if __name__ == "__main__":
    main()
