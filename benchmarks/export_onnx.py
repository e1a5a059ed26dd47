"""ONNX export of a student (issue #7): test F1 (seqeval strict IOB2, word level, per language
and macro) of PyTorch fp32, ONNX fp32 and ONNX int8 on the run's languages; how far each ONNX
graph is from PyTorch on the real test windows (max |logit difference|, argmax agreement,
sentences whose predicted tags differ); batch-32 and batch-1 latency at length 32; and the
Tagger API's entities for three raw sentences in three scripts. Writes onnx-<student>.json
and .md to --output-dir.

    python benchmarks/export_onnx.py --student runs/wikiann6-lowres/students/bilstm-50-200/joint/model
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from xdner_runtime.onnx import session
from _grid import compare_logits, make_grid, onnx_logits, time_grid  # benchmarks/_grid.py
from _common import FinishedRun, command_line, file_mb, markdown_table  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.encoding import encode, special_ids
from xtremedistil_ner.scoring import LogitsFn, logits_fn, predict_tags, score
from xtremedistil_ner.export import export_onnx, quantize_int8
from xtremedistil_ner.io import write_json, write_text
from xtremedistil_ner.layout import student_parts
from xtremedistil_ner.report import machine_description
from xtremedistil_ner.students import load_student
from xtremedistil_ner.tagger import Tagger
from xtremedistil_ner.teacher import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
# Natural sentences with well-known entities, one per script.
SENTENCES = {
    "de (Latin)": "Angela Merkel besuchte am Montag die Zentrale von Siemens in München.",
    "ru (Cyrillic)": "Владимир Путин встретился с Эммануэлем Макроном в Москве, сообщило агентство ТАСС.",
    "hi (Devanagari)": "महात्मा गांधी ने अहमदाबाद में साबरमती आश्रम की स्थापना की और भारतीय राष्ट्रीय कांग्रेस का नेतृत्व किया।",
}
BATCH_SIZES = (32, 1)
SEQ_LEN = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, required=True, help="student checkpoint directory (RUN/students/NAME/joint/model)")
    parser.add_argument("--run", type=Path, help="its run directory (default: the one the checkpoint sits in)")
    parser.add_argument("--data-root", help="replaces the run config's data.root")
    parser.add_argument("--languages", type=lambda s: [x for x in s.split(",") if x], help="comma-separated (default: the run's)")
    parser.add_argument("--test-limit", type=int, help="first N test sentences per language (default: the run's test set)")
    parser.add_argument("--batch-size", type=int, default=256, help="windows per batch when predicting the test set")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-repeats", type=int, default=5)
    parser.add_argument("--max-repeats", type=int, default=100)
    parser.add_argument("--budget-s", type=float, default=10.0, help="timed seconds per latency cell after which repeats stop")
    parser.add_argument("--threads", type=int, help="torch and onnxruntime CPU threads (default: torch's)")
    parser.add_argument("--keep-onnx", type=Path, help="write the .onnx files here instead of a temporary folder")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    run_dir, name = student_parts(args.student)
    run_dir = args.run or run_dir
    if run_dir is None:
        parser.error(f"{args.student} is not inside a run directory; pass --run")
    run = FinishedRun.open(run_dir, args.data_root)
    student = load_student(args.student)
    tokenizer = load_tokenizer(str(args.student))
    pad_id = special_ids(tokenizer)[2]
    id2label = dict(enumerate(student.labels))
    sentences = run.test_sentences(args.test_limit, args.languages)
    windows = encode(sentences, tokenizer, int(student.config.max_length))
    accelerator = Accelerator(cpu=True)
    grid = make_grid(windows, BATCH_SIZES, (SEQ_LEN,), pad_id)
    timing = {"warmup": args.warmup, "min_repeats": args.min_repeats, "repeats": args.max_repeats, "budget_s": args.budget_s}

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep_onnx or Path(tmp)
        fp32 = export_onnx(student, out / f"{name.replace('/', '_')}.onnx")
        int8 = quantize_int8(fp32, fp32.with_suffix(".int8.onnx"))
        variants: dict[str, tuple[LogitsFn, Path]] = {
            "pytorch-fp32": (logits_fn(student), args.student / "model.safetensors"),
            "onnx-fp32": (onnx_logits(session(fp32, torch.get_num_threads())), fp32),
            "onnx-int8": (onnx_logits(session(int8, torch.get_num_threads())), int8),
        }
        print("comparing ONNX logits with PyTorch on the test windows", file=sys.stderr, flush=True)
        onnx = {v: fn for v, (fn, _) in variants.items() if v != "pytorch-fp32"}
        diffs = compare_logits(logits_fn(student), onnx, windows, pad_id, args.batch_size)
        results: dict[str, dict[str, Any]] = {}
        tags: dict[str, list[list[str]]] = {}
        for variant, (fn, path) in variants.items():
            print(f"{variant}: predicting {len(sentences)} test sentences, timing", file=sys.stderr, flush=True)
            tags[variant] = predict_tags(fn, sentences, windows, id2label, pad_id, args.batch_size, accelerator, variant)
            entry: dict[str, Any] = {"size_mb": file_mb(path), "test": score(sentences, tags[variant])}
            if variant in diffs:
                ours, ref = tags[variant], tags["pytorch-fp32"]
                entry["vs_pytorch"] = {**diffs[variant], "tags_identical": ours == ref,
                                       "sentences_with_different_tags": sum(a != b for a, b in zip(ours, ref)),
                                       "words_with_different_tags": sum(x != y for a, b in zip(ours, ref) for x, y in zip(a, b))}
            entry["latency"] = list(time_grid(fn, grid, **timing))
            results[variant] = entry

    tagger = Tagger(student, tokenizer)
    tagged = {lang: {"text": text, "entities": tagger(text)} for lang, text in SENTENCES.items()}
    result = {
        "command": command_line("benchmarks/export_onnx.py", sys.argv[1:]),
        "machine": machine_description(),
        "threads": torch.get_num_threads(),
        # Other processes on the CPU distort the timings (PyTorch's multi-threaded LSTM badly).
        "load_average_1min": {"start": load_start[0], "end": os.getloadavg()[0]},
        "student": {"name": name, "path": str(args.student), "parameters": student.num_parameters(),
                    **{k: getattr(student.config, k) for k in ("embedding_dim", "hidden_dim", "num_layers") if hasattr(student.config, k)}},
        "run": str(run.root),
        "languages": sorted({s.lang for s in sentences}),
        "test_sentences": len(sentences),
        "test_limit": args.test_limit if args.test_limit is not None else run.cfg.data.test_limit,
        "timing": {**timing, "seq_len": SEQ_LEN},
        "variants": results,
        "tagger": tagged,
    }
    stem = f"onnx-{name.replace('/', '_')}"
    write_json(args.output_dir / f"{stem}.json", result)
    write_text(args.output_dir / f"{stem}.md", render(result))
    print((args.output_dir / f"{stem}.md").read_text(encoding="utf-8"))


def render(result: dict[str, Any]) -> str:
    variants = result["variants"]
    langs = result["languages"]
    s = result["student"]
    t = result["timing"]
    limit = f"first {result['test_limit']} test sentences per language" if result["test_limit"] else "full test sets"
    lines = [f"# ONNX export: {s['name']} ({s['parameters'] / 1e6:.2f}M parameters)", "",
             f"Command: `{result['command']}`", "", f"Machine: {result['machine']}", "",
             f"Run: `{result['run']}`; {limit} ({result['test_sentences']} sentences).", "",
             "## Test F1 (seqeval, strict IOB2, word level)", ""]
    lines += markdown_table(("runtime", "size MB", *langs, "macro"), (
        (v, f"{e['size_mb']:.1f}", *(f"{e['test'][l]['f1']:.2f}" for l in langs), f"{e['test']['macro']['f1']:.2f}")
        for v, e in variants.items()))
    lines += ["", "## ONNX vs PyTorch on the test windows", ""]
    lines += markdown_table(("runtime", "max abs logit diff", "argmax agreement", "sentences with other tags", "words with other tags", "tags identical"), (
        (v, f"{c['max_abs_logit_diff']:.2e}", f"{100 * c['argmax_agreement']:.3f}%", c["sentences_with_different_tags"],
         c["words_with_different_tags"], "yes" if c["tags_identical"] else "no")
        for v, e in variants.items() if (c := e.get("vs_pytorch"))))
    lines += ["", f"## Latency, length {t['seq_len']} ({result['threads']} threads; median ms [p25–p75], sentences/s)", ""]
    cells = [(c["batch_size"], c["seq_len"]) for c in next(iter(variants.values()))["latency"]]
    base = variants["pytorch-fp32"]["latency"]
    lines += markdown_table(("runtime", *(f"batch {b}" for b, _ in cells), *(f"speedup batch {b}" for b, _ in cells)), (
        (v, *(f"{c['median_ms']:.2f} [{c['p25_ms']:.2f}–{c['p75_ms']:.2f}], {c['sentences_per_s']:.0f}/s" for c in e["latency"]),
         *(f"{r['median_ms'] / c['median_ms']:.1f}x" for r, c in zip(base, e["latency"])))
        for v, e in variants.items()))
    lines += ["", f"Timing: at most {t['warmup']} warm-up calls, then {t['min_repeats']} to {t['repeats']} timed calls "
              f"until {t['budget_s']:g} s are spent; the same real test windows for every runtime. 1-minute load "
              "average {start:.2f} at the start, {end:.2f} at the end.".format(**result["load_average_1min"]), "",
              "## Tagger API (PyTorch fp32) on raw text", ""]
    for lang, item in result["tagger"].items():
        ents = "; ".join(f"{e['text']} → {e['label']} ({e['score']:.2f})" for e in item["entities"]) or "(none)"
        lines += [f"- **{lang}**: {item['text']}", f"  - {ents}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
