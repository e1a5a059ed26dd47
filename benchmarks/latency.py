"""Batch-inference latency (issue #5): the fine-tuned teacher and every student of finished runs,
optionally the students' ONNX fp32 and int8 exports, and two architecture references built from
their configs with random weights (latency does not depend on weight values): mBERT-base
(12x768, vocabulary 119,547) and XLM-R-base (12x768, vocabulary 250,002).

Every model times the same real inputs: test windows of the first run, round-robin over its
languages, cut or padded to each length of a batch-size x length grid. Writes NAME.json, .md
(params, size, latency, sentences/s, speedup vs the teacher and vs each reference, the issue's
targets) and .png to --output-dir (default NAME: latency-cpu or latency-cuda).

    python benchmarks/latency.py --run runs/wikiann6-lowres --onnx
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import transformers
from transformers import (
    BertConfig,
    BertForTokenClassification,
    XLMRobertaConfig,
    XLMRobertaForTokenClassification,
)

from xdner_runtime.onnx import session
from xdner_runtime.windows import Window
from _grid import make_grid, onnx_logits, time_grid  # benchmarks/_grid.py
from _common import FinishedRun, command_line, file_mb, markdown_table  # benchmarks/_common.py: this script's folder is on sys.path
from xtremedistil_ner.data.conll import Sentence
from xtremedistil_ner.encoding import encode, special_ids
from xtremedistil_ner.scoring import LogitsFn, logits_fn
from xtremedistil_ner.export import export_onnx, quantize_int8
from xtremedistil_ner.io import atomic_path, write_json, write_text
from xtremedistil_ner.layout import student_parts
from xtremedistil_ner.report import machine_description
from xtremedistil_ner.students import XtremeDistilPreTrainedModel, load_student
from xtremedistil_ner.teacher import count_parameters

ROOT = Path(__file__).resolve().parents[1]
# name -> (label, model class, config): the published base configurations.
REFERENCES: dict[str, tuple[str, type, Callable[[], Any]]] = {
    "mbert-base": ("mBERT-base", BertForTokenClassification, lambda: BertConfig(vocab_size=119_547)),
    "xlmr-base": ("XLM-R-base", XLMRobertaForTokenClassification, lambda: XLMRobertaConfig(
        vocab_size=250_002, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=1, bos_token_id=0, eos_token_id=2)),
}
# Issue #5: the E=50/H=200 student against the mBERT-base architecture, length 32.
TARGETS = {(32, 32): 51.0, (1, 32): 16.0}
TARGET_STUDENT = {"embedding_dim": 50, "hidden_dim": 200}
TARGET_REFERENCE = "mbert-base"

Loader = Callable[[], tuple[LogitsFn, dict[str, Any]]]


@dataclass
class Model:
    name: str
    kind: str  # teacher | student | onnx-fp32 | onnx-int8 | reference
    load: Loader  # called only when the model's turn comes: one large model in memory at a time


def interleave(windows: list[Window], sentences: list[Sentence]) -> list[Window]:
    """Windows round-robin over languages, so every batch mixes scripts and typical lengths."""
    by_lang: dict[str, list[Window]] = {}
    for w in windows:
        by_lang.setdefault(sentences[w.sent].lang, []).append(w)
    return [w for group in itertools.zip_longest(*by_lang.values()) for w in group if w is not None]


def teacher_loader(run: FinishedRun, device: torch.device) -> Loader:
    def load() -> tuple[LogitsFn, dict[str, Any]]:
        model = run.load_teacher().to(device)
        return logits_fn(model), {
            "parameters": count_parameters(model), "size_mb": file_mb(run.teacher_dir / "model.safetensors"),
            "vocab_size": model.config.vocab_size, "path": str(run.teacher_dir), "model": run.cfg.teacher.model,
            "attn_implementation": model.config._attn_implementation,
        }
    return load


def student_info(student: XtremeDistilPreTrainedModel, path: Path) -> dict[str, Any]:
    keys = ("embedding_dim", "hidden_dim", "num_layers")
    return {"parameters": student.num_parameters(), "vocab_size": int(student.config.teacher_vocab_size),
            "path": str(path), "type": student.config.model_type, **{k: getattr(student.config, k) for k in keys if hasattr(student.config, k)}}


def student_loader(path: Path, device: torch.device) -> Loader:
    def load() -> tuple[LogitsFn, dict[str, Any]]:
        student = load_student(path, device)
        return logits_fn(student), {**student_info(student, path), "size_mb": file_mb(path / "model.safetensors")}
    return load


def onnx_loader(path: Path, stem: Path, int8: bool) -> Loader:
    """Export to `stem`.onnx (once; the int8 variant quantises that file), then an
    onnxruntime session."""
    def load() -> tuple[LogitsFn, dict[str, Any]]:
        student = load_student(path)
        fp32 = stem.with_name(stem.name + ".onnx")
        if not fp32.exists():
            export_onnx(student, fp32)
        graph = quantize_int8(fp32, stem.with_name(stem.name + ".int8.onnx")) if int8 else fp32
        return onnx_logits(session(graph, torch.get_num_threads())), {**student_info(student, path), "size_mb": file_mb(graph)}
    return load


def reference_loader(key: str, num_labels: int, device: torch.device) -> Loader:
    def load() -> tuple[LogitsFn, dict[str, Any]]:
        label, cls, make_config = REFERENCES[key]
        config = make_config()
        config.num_labels = num_labels
        torch.manual_seed(0)
        model = cls(config).eval().to(device)
        params = count_parameters(model)
        return logits_fn(model), {
            "label": f"{label} architecture reference (random weights)", "parameters": params,
            "size_mb": 4 * params / 2**20, "size_note": "fp32 weights, not saved",
            "vocab_size": config.vocab_size, "layers": config.num_hidden_layers, "hidden": config.hidden_size,
            "attn_implementation": model.config._attn_implementation,
        }
    return load


def build_models(args: argparse.Namespace, runs: list[FinishedRun], device: torch.device, work: Path) -> list[Model]:
    models = [Model("teacher" if len(runs) == 1 else f"teacher ({r.name})", "teacher", teacher_loader(r, device)) for r in runs]
    found: dict[Path, tuple[str, str]] = {}  # checkpoint -> (run name, student name)
    for run in runs:
        found |= {p.resolve(): (run.name, name) for name, p in run.final_students().items()}
    for p in args.student:
        run_dir, name = student_parts(p)
        found.setdefault(Path(p).resolve(), (run_dir.name if run_dir else "", name))
    counts = {n: sum(1 for _, m in found.values() if m == n) for _, n in found.values()}
    for path, (run_name, name) in found.items():
        name = f"{run_name}/{name}" if counts[name] > 1 and run_name else name
        models.append(Model(name, "student", student_loader(path, device)))
        if args.onnx is not None and device.type == "cpu" and (not args.onnx or name in args.onnx):
            stem = work / name.replace("/", "_")
            models += [Model(f"{name} onnx-fp32", "onnx-fp32", onnx_loader(path, stem, int8=False)),
                       Model(f"{name} onnx-int8", "onnx-int8", onnx_loader(path, stem, int8=True))]
    num_labels = len(runs[0].labels)
    return models + [Model(k, "reference", reference_loader(k, num_labels, device)) for k in args.references]


def add_speedups(models: dict[str, dict[str, Any]], baselines: list[str]) -> None:
    """Each cell's speedup vs each baseline's same cell (its median over this model's median)."""
    for m in models.values():
        for i, cell in enumerate(m["latency"]):
            cell["speedup_vs"] = {b: models[b]["latency"][i]["median_ms"] / cell["median_ms"] for b in baselines}


def targets(models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's goals (speedup vs the mBERT-base architecture) for every runtime of the
    E=50/H=200 student, with the same cells' speedups vs the other baselines alongside."""
    out = []
    for name, m in models.items():
        if m["kind"] == "reference" or any(m.get(k) != v for k, v in TARGET_STUDENT.items()):
            continue
        for cell in m["latency"]:
            goal = TARGETS.get((cell["batch_size"], cell["seq_len"]))
            if goal is None:
                continue
            value = cell["speedup_vs"].get(TARGET_REFERENCE)
            out.append({"model": name, "batch_size": cell["batch_size"], "seq_len": cell["seq_len"], "goal": goal,
                        "met": None if value is None else value >= goal, "speedup_vs": cell["speedup_vs"]})
    return out


def label(name: str, m: dict[str, Any]) -> str:
    return f"{REFERENCES[name][0]} (arch. ref.)" if m["kind"] == "reference" else name


def render(result: dict[str, Any]) -> str:
    models = result["models"]
    teacher = result["teacher"]
    cells = [(c["batch_size"], c["seq_len"]) for c in result["inputs"]["cells"]]
    t = result["timing"]
    lines = [f"# Batch-inference latency ({result['device']})", "",
             f"Command: `{result['command']}`", "", f"Machine: {result['machine']}; transformers {result['transformers']}"
             + (f", onnxruntime {result['onnxruntime']}" if result.get("onnxruntime") else ""), "",
             f"Timing: eval mode, `torch.inference_mode`, fp32, {result['threads']} threads (ONNX: as many intra-op threads, "
             f"1 inter-op); per cell at most {t['warmup']} warm-up call(s) (none after one that used a tenth of the budget), "
             f"then at least {t['min_repeats']} and at most {t['max_repeats']} timed calls, stopping once they took "
             f"{t['budget_s']:g} s; median with [p25–p75]." + (" CUDA timings synchronised." if result["device"] != "cpu" else "")
             + " 1-minute load average {start:.2f} at the start, {end:.2f} at the end.".format(**result["load_average_1min"]), "",
             f"Inputs: {result['inputs']['description']}", ""]

    lines += ["## Targets (issue #5)", "",
              f"The E={TARGET_STUDENT['embedding_dim']}/H={TARGET_STUDENT['hidden_dim']} student's speedup on this machine; "
              f"the goals are vs the {REFERENCES[TARGET_REFERENCE][0]} architecture.", ""]
    bases = result["baselines"]
    rows = [(x["model"], f"{x['batch_size']}×{x['seq_len']}", f"≥ {x['goal']:.0f}x",
             "–" if x["met"] is None else ("yes" if x["met"] else "no"),
             *(f"{x['speedup_vs'][b]:.1f}x" for b in bases)) for x in result["targets"]]
    header = ("model", "batch×length", "goal", "met", *(f"vs {label(b, models[b])}" for b in bases))
    cells_wanted = " or ".join(f"{b}×{s}" for b, s in TARGETS)
    lines += markdown_table(header, rows) if rows else [f"Not measured: no such student, or no cell {cells_wanted}."]

    lines += ["", "## Models", ""]
    t_params = models[teacher]["parameters"]
    rows = [(label(n, m), m["kind"], f"{m['parameters'] / 1e6:.2f}M", f"{t_params / m['parameters']:.1f}x",
             f"{m['size_mb']:.1f}" + (f" ({m['size_note']})" if m.get("size_note") else ""),
             "yes" if m["ids_folded"] else "no") for n, m in models.items()]
    lines += markdown_table(("model", "kind", "params", "compression vs teacher", "size MB", "ids folded"), rows)

    for seq_len in dict.fromkeys(s for _, s in cells):
        idx = [i for i, c in enumerate(cells) if c[1] == seq_len]
        real = [result["inputs"]["cells"][i]["real"] for i in idx]
        header = ("model", *(f"batch {cells[i][0]} ({100 * r:.0f}% real)" for i, r in zip(idx, real)))
        lines += ["", f"## Latency, length {seq_len}: median ms [p25–p75]", ""]
        lines += markdown_table(header, ((label(n, m), *(f"{m['latency'][i]['median_ms']:.2f} [{m['latency'][i]['p25_ms']:.2f}–{m['latency'][i]['p75_ms']:.2f}]" for i in idx)) for n, m in models.items()))
        lines += ["", f"## Throughput, length {seq_len}: sentences/s", ""]
        lines += markdown_table(header, ((label(n, m), *(f"{m['latency'][i]['sentences_per_s']:.0f}" for i in idx)) for n, m in models.items()))

    header = ("model", *(f"{b}×{s}" for b, s in cells))
    for base in result["baselines"]:
        lines += ["", f"## Speedup vs {label(base, models[base])} (batch×length)", ""]
        lines += markdown_table(header, ((label(n, m), *(f"{c['speedup_vs'][base]:.1f}x" for c in m["latency"])) for n, m in models.items()))
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Median latency vs batch size, one panel per length, log-log, p25–p75 as error bars; a
    student's runtimes share its colour, line styles tell runtimes apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seq_lens = list(dict.fromkeys(c["seq_len"] for c in result["inputs"]["cells"]))
    fig, axes = plt.subplots(1, len(seq_lens), figsize=(5 * len(seq_lens), 4.5), sharey=True, squeeze=False)
    styles = {"teacher": "-", "student": "-", "onnx-fp32": "--", "onnx-int8": ":", "reference": "-."}
    families = list(dict.fromkeys(m.get("path", n) for n, m in result["models"].items()))
    colours = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    for ax, seq_len in zip(axes[0], seq_lens):
        for name, m in result["models"].items():
            cells = [c for c in m["latency"] if c["seq_len"] == seq_len]
            x = [c["batch_size"] for c in cells]
            y = [c["median_ms"] for c in cells]
            err = [[c["median_ms"] - c["p25_ms"] for c in cells], [c["p75_ms"] - c["median_ms"] for c in cells]]
            ax.errorbar(x, y, yerr=err, linestyle=styles[m["kind"]], color=colours[m.get("path", name)],
                        marker="o", markersize=3, capsize=2, label=label(name, m))
        ax.set(xscale="log", yscale="log", xlabel="batch size", title=f"length {seq_len}")
        ax.set_xticks(x, [str(b) for b in x])
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(f"median latency, ms ({result['device']}, {result['threads']} threads)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, type=Path,
                        help="finished run directory: its teacher and every student (repeatable; the first one's test data are the inputs)")
    parser.add_argument("--student", action="append", default=[], type=Path, help="an extra student checkpoint directory (repeatable)")
    parser.add_argument("--onnx", nargs="?", const="", type=lambda s: [x for x in s.split(",") if x],
                        help="also time ONNX fp32 and int8 exports (CPU only) of every student, or of those named (comma-separated)")
    parser.add_argument("--references", type=lambda s: [x for x in s.split(",") if x], default=list(REFERENCES),
                        help=f"architecture references to time, comma-separated from {','.join(REFERENCES)} ('' for none)")
    parser.add_argument("--batch-sizes", type=int_list, default=[1, 32, 256])
    parser.add_argument("--seq-lens", type=int_list, default=[32, 64, 128])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-repeats", type=int, default=3)
    parser.add_argument("--max-repeats", type=int, default=30)
    parser.add_argument("--budget-s", type=float, default=20.0, help="timed seconds per cell after which repeats stop (at least --min-repeats)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch (and onnxruntime) CPU threads (default: torch's)")
    parser.add_argument("--data-root", help="replaces the run config's data.root")
    parser.add_argument("--sentences-per-lang", type=int, default=64, help="test sentences per language the input windows come from")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", help="output file stem (default: latency-<device type>)")
    args = parser.parse_args()
    unknown = set(args.references) - set(REFERENCES)
    if unknown:
        parser.error(f"unknown references {sorted(unknown)}; known: {sorted(REFERENCES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.onnx is not None and device.type != "cpu":
        print("--onnx: onnxruntime timings are CPU-only here; skipped on", device, file=sys.stderr)

    runs = [FinishedRun.open(r, args.data_root) for r in args.run]
    base = runs[0]
    too_long = [n for n in args.seq_lens if n > min(r.cfg.teacher.max_length for r in runs)]
    if too_long:  # transformer students have no positions beyond it, and no model is ever fed more
        parser.error(f"--seq-lens {too_long} exceed the runs' teacher.max_length "
                     f"({min(r.cfg.teacher.max_length for r in runs)}): inputs are cut into windows no longer than that")
    pad_id = special_ids(base.tokenizer)[2]
    sentences = base.test_sentences(args.sentences_per_lang)
    windows = interleave(encode(sentences, base.tokenizer, base.cfg.teacher.max_length), sentences)
    grid = make_grid(windows, args.batch_sizes, args.seq_lens, pad_id)
    max_id = max(int(ids.max()) for ids, _ in grid.values())
    timing = {"warmup": args.warmup, "min_repeats": args.min_repeats, "max_repeats": args.max_repeats, "budget_s": args.budget_s}

    load_start = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as work:
        for m in build_models(args, runs, device, Path(work)):
            fn, info = m.load()
            cells = []
            for cell in time_grid(fn, grid, device, info["vocab_size"], repeats=args.max_repeats, warmup=args.warmup,
                                  budget_s=args.budget_s, min_repeats=args.min_repeats):
                print(f"{m.name:<28} batch {cell['batch_size']:>4} length {cell['seq_len']:>4}: {cell['median_ms']:10.2f} ms "
                      f"({cell['repeats']} runs)", file=sys.stderr, flush=True)
                cells.append(cell)
            results[m.name] = {"kind": m.kind, **info, "ids_folded": max_id >= info["vocab_size"], "latency": cells}
            del fn
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

    teacher = next(n for n, m in results.items() if m["kind"] == "teacher")
    baselines = [teacher] + [n for n, m in results.items() if m["kind"] == "reference"]
    add_speedups(results, baselines)
    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    langs = sorted({s.lang for s in sentences})
    result = {
        "command": command_line("benchmarks/latency.py", sys.argv[1:]),
        "machine": machine_description(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        # Other processes on the CPU distort the timings (PyTorch's multi-threaded LSTM badly).
        "load_average_1min": {"start": load_start[0], "end": os.getloadavg()[0]},
        "transformers": transformers.__version__,
        "onnxruntime": ort_version,
        "timing": timing,
        "inputs": {
            "description": (
                f"the first {args.sentences_per_lang} test sentences of each language of {base.name} ({', '.join(langs)}), "
                f"{len(windows)} windows of the teacher's tokenizer taken round-robin over languages, cut or padded to each "
                f"length (`speed.make_batch`); 'real' is the share of unpadded positions. Models with a smaller vocabulary "
                f"(the references) get the same ids folded into it (id mod V): same shapes and masks."),
            "run": str(base.root), "languages": langs, "windows": len(windows),
            "cells": [{"batch_size": b, "seq_len": s, "real": round(float(mask.float().mean()), 3)} for (b, s), (_, mask) in grid.items()],
        },
        "teacher": teacher,
        "baselines": baselines,
        "models": results,
    }
    result["targets"] = targets(results)
    name = args.name or f"latency-{device.type}"
    write_json(args.output_dir / f"{name}.json", result)
    write_text(args.output_dir / f"{name}.md", render(result))
    plot(result, args.output_dir / f"{name}.png")
    print((args.output_dir / f"{name}.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
