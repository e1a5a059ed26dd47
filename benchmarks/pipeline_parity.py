"""A student folder in `transformers.pipeline("token-classification")` next to our `Tagger`
(issue #13): on the first N WikiANN test sentences of each language, joined with spaces as raw
text, how often both give the same entities (label and character span), why they differ, and
the test F1 of each on the gold tags; then end-to-end throughput (raw text in, entities out,
tokenisation included) of the pipeline with the student, the Tagger, and the pipeline with the
fine-tuned teacher, on the same texts in one process. Writes pipeline/results.{json,md}.

    python benchmarks/pipeline_parity.py --run RUN_DIR --student RUN_DIR/students/bilstm-50-200/joint/model
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2
from transformers import pipeline

from xdner_runtime.tags import entity_spans
from xdner_runtime.words import split_words

from _common import DATA_ROOT, FinishedRun, command_line, markdown_table  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.data.conll import Sentence
from xtremedistil_ner.io import write_json, write_text
from xtremedistil_ner.report import machine_description
from xtremedistil_ner.tagger import Tagger

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("first", "simple")
Entities = list[tuple[str, int, int]]  # (label, start, end) character offsets, per text


def token_spans(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of `tokens` in `" ".join(tokens)`."""
    spans, pos = [], 0
    for tok in tokens:
        spans.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return spans


def to_tags(entities: Entities, spans: Sequence[tuple[int, int]]) -> list[str]:
    """IOB2 tags of the gold tokens an entity list covers (a token overlapping an entity is in it)."""
    tags = ["O"] * len(spans)
    for label, start, end in entities:
        inside = [i for i, (s, e) in enumerate(spans) if s < end and e > start]
        for k, i in enumerate(inside):
            tags[i] = ("B-" if k == 0 else "I-") + label
    return tags


def trimmed(text: str, label: str, start: int, end: int) -> tuple[str, int, int]:
    """The span without surrounding whitespace: for sentencepiece tokenizers the pipeline's
    offsets of a word's first piece ("▁Paris") start at the space before it."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return label, start, end


def tagger_entities(tagger: Tagger, texts: Sequence[str]) -> list[Entities]:
    return [[(e["label"], e["start"], e["end"]) for e in ents] for ents in tagger(list(texts))]


def token_entities(tagger: Tagger, sents: Sequence[Sentence]) -> list[Entities]:
    """The Tagger on the gold tokens (`tag_tokens`, IOB2), as character spans in the joined text."""
    out = []
    for sent, tags in zip(sents, tagger.tag_tokens([s.tokens for s in sents])):
        spans = token_spans(sent.tokens)
        out.append([(label, spans[first][0], spans[last - 1][1]) for label, first, last in entity_spans(tags)])
    return out


def pipeline_entities(ner: Any, texts: Sequence[str], batch_size: int) -> list[Entities]:
    return [[trimmed(text, e["entity_group"], int(e["start"]), int(e["end"])) for e in ents]
            for text, ents in zip(texts, ner(list(texts), batch_size=batch_size))]


def throughput(fn: Callable[[], Any], sentences: int, words: int, repeats: int) -> dict[str, Any]:
    """The median of `repeats` timed passes over every text (each pass: all of them, end to end)."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    seconds = statistics.median(runs)
    return {"seconds": round(seconds, 2), "runs": [round(r, 2) for r in runs],
            "sentences_per_s": round(sentences / seconds, 1), "words_per_s": round(words / seconds, 1)}


def compare(sents: list[Sentence], texts: list[str], ours: list[Entities], theirs: list[Entities]) -> dict[str, Any]:
    """Agreement of two entity lists per sentence, and the differing sentences split by whether our
    word splitting differs from the whitespace split (the pipeline's words) in that sentence."""
    same = [a == b for a, b in zip(ours, theirs)]
    resplit = [[text[s:e] for s, e in split_words(text)] != list(s.tokens) for s, text in zip(sents, texts)]
    differ = [i for i, ok in enumerate(same) if not ok]
    return {
        "sentences": len(sents),
        "identical": sum(same),
        "identical_pct": round(100 * sum(same) / len(sents), 2),
        "differing": len(differ),
        "differing_where_word_split_differs": sum(resplit[i] for i in differ),
        "sentences_where_word_split_differs": sum(resplit),
        "examples": [{"text": texts[i], "tagger": ours[i], "pipeline": theirs[i], "word_split_differs": resplit[i]} for i in differ[:8]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="the run directory (its teacher and test data)")
    parser.add_argument("--student", type=Path, required=True, help="a student folder of that run")
    parser.add_argument("--languages", default="de,ru,hi", help="three languages in three scripts")
    parser.add_argument("--sentences", type=int, default=1000, help="first N test sentences per language")
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument("--batch-size", type=int, default=32, help="texts per pipeline forward pass")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per system (the median is reported)")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results" / "pipeline")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    langs = args.languages.split(",")
    run = FinishedRun.open(args.run, args.data_root)
    sents = run.test_sentences(args.sentences, langs)
    texts = [" ".join(s.tokens) for s in sents]
    words = sum(len(s.tokens) for s in sents)
    tagger = Tagger.load(args.student)
    ner = {st: pipeline("token-classification", model=str(args.student), aggregation_strategy=st, device="cpu") for st in STRATEGIES}

    print(f"parity on {len(texts)} sentences", file=sys.stderr, flush=True)
    systems = {"Tagger (raw text)": tagger_entities(tagger, texts), "Tagger (gold tokens, tag_tokens)": token_entities(tagger, sents)}
    systems.update({f"pipeline `{st}`": pipeline_entities(ner[st], texts, args.batch_size) for st in STRATEGIES})
    gold = [s.tags for s in sents]
    f1: dict[str, dict[str, float]] = {}
    parity: dict[str, dict[str, Any]] = {}
    for name, ents in systems.items():
        f1[name] = {}
        for lang in langs:
            idx = [i for i, s in enumerate(sents) if s.lang == lang]
            pred = [to_tags(ents[i], token_spans(sents[i].tokens)) for i in idx]
            f1[name][lang] = round(100 * f1_score([gold[i] for i in idx], pred, mode="strict", scheme=IOB2), 2)
    # Entities whose span does not start and end on gold-token boundaries (e.g. a pipeline entity
    # made of a lone sentencepiece "▁" piece, which its fallback word heuristic takes for a word).
    off_boundary = {}
    for name, ents in systems.items():
        starts = [{s for s, _ in token_spans(x.tokens)} for x in sents]
        ends = [{e for _, e in token_spans(x.tokens)} for x in sents]
        off_boundary[name] = {"entities": sum(len(e) for e in ents),
                              "off_token_boundaries": sum(1 for i, es in enumerate(ents) for _, s, e in es
                                                          if s not in starts[i] or e not in ends[i])}
    for ours in ("Tagger (raw text)", "Tagger (gold tokens, tag_tokens)"):
        for st in STRATEGIES:
            key = f"{ours} vs pipeline `{st}`"
            parity[key] = {}
            for lang in langs:
                idx = [i for i, s in enumerate(sents) if s.lang == lang]
                parity[key][lang] = compare([sents[i] for i in idx], [texts[i] for i in idx],
                                            [systems[ours][i] for i in idx], [systems[f"pipeline `{st}`"][i] for i in idx])

    print("throughput", file=sys.stderr, flush=True)
    load_start = os.getloadavg()
    teacher = pipeline("token-classification", model=str(run.teacher_dir), aggregation_strategy="first", device="cpu")
    for fn in (lambda: tagger(texts[:64]), lambda: ner["first"](texts[:64], batch_size=args.batch_size), lambda: teacher(texts[:64], batch_size=args.batch_size)):
        fn()  # warm-up: first-call allocations and lazy imports stay out of the timings
    speed = {
        "student pipeline (first)": throughput(lambda: ner["first"](texts, batch_size=args.batch_size), len(texts), words, args.repeats),
        "student Tagger": throughput(lambda: tagger(texts), len(texts), words, args.repeats),
        "teacher pipeline (first)": throughput(lambda: teacher(texts, batch_size=args.batch_size), len(texts), words, args.repeats),
    }
    result = {
        "command": command_line("benchmarks/pipeline_parity.py", sys.argv[1:]),
        "machine": machine_description(),
        "threads": torch.get_num_threads(),
        "load_average_1min": {"start": load_start[0], "end": os.getloadavg()[0]},
        "student": str(args.student),
        "teacher": str(run.teacher_dir),
        "languages": langs,
        "sentences": len(texts),
        "words": words,
        "batch_size": args.batch_size,
        "parity": parity,
        "test_f1": f1,
        "entities_off_token_boundaries": off_boundary,
        "throughput": speed,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_json(args.output_dir / "results.json", result)
    write_text(args.output_dir / "results.md", render(result))
    print((args.output_dir / "results.md").read_text(encoding="utf-8"))


def render(r: dict[str, Any]) -> str:
    langs = r["languages"]
    lines = ["# Student in `transformers.pipeline` vs our `Tagger`", "", f"Command: `{r['command']}`", "",
             f"Machine: {r['machine']}, load average {r['load_average_1min']['start']:.2f} → "
             f"{r['load_average_1min']['end']:.2f}", "",
             f"{r['sentences']} WikiANN test sentences ({r['sentences'] // len(langs)} per language), tokens joined with spaces as raw text.", "",
             "## Same entities (label and character span) per sentence", ""]
    rows = []
    for pair, per in r["parity"].items():
        for lang in langs:
            p = per[lang]
            rows.append([pair, lang, f"{p['identical_pct']:.1f}%", p["differing"], p["differing_where_word_split_differs"],
                         p["sentences_where_word_split_differs"]])
    lines += ["Spans compared without surrounding whitespace (the pipeline's offsets of a word's first sentencepiece "
              "piece include the space before it).", ""]
    lines += markdown_table(["pair", "language", "identical", "differing sentences", "of which the Tagger's word split differs",
                             "sentences whose word split differs"], rows)
    lines += ["", "## Test F1 on these sentences (seqeval strict IOB2, entities mapped back to the gold tokens)", ""]
    lines += markdown_table(["system", *langs], [[name, *(f"{per[l]:.2f}" for l in langs)] for name, per in r["test_f1"].items()])
    lines += ["", "## Entities whose span is not a whole run of gold tokens", ""]
    lines += markdown_table(["system", "entities", "not on token boundaries"],
                            [[n, v["entities"], v["off_token_boundaries"]] for n, v in r["entities_off_token_boundaries"].items()])
    lines += ["", f"## End-to-end throughput (raw text in, entities out; pipeline batch {r['batch_size']}; median of the passes)", ""]
    lines += markdown_table(["system", "seconds (passes)", "sentences/s", "words/s"],
                            [[n, f"{t['seconds']} ({', '.join(map(str, t['runs']))})", t["sentences_per_s"], t["words_per_s"]]
                             for n, t in r["throughput"].items()])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
